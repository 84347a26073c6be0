"""The measured half of a page: the profiles recorded under ``profiles/`` (``--save``), shown
beside the roofline floors of the ceilings they were measured against."""

from __future__ import annotations

import json

from complexo.report.page import Page, _table
from complexo.units import duration, human


def _measured_section(page: Page, *analyses: str) -> None:
    """The recorded profiles of ``analyses``: a table of GPU runs (or how to record them), then
    one of CPU runs, each row with its device, date and the roofline's floor beside the time."""
    from complexo.profile import SHOWN_CONFIG, recorded

    def order(doc):  # by analysis as listed, mode, then the shown options (numbers as numbers)
        shown = [doc["config"].get(k) for k in SHOWN_CONFIG]
        return (
            analyses.index(doc["analysis"]),
            doc["mode"],
            [(isinstance(v, str), v if isinstance(v, int | float) else str(v)) for v in shown],
            doc["date"],
        )

    docs = sorted((d for d in recorded() if d.get("analysis") in analyses), key=order)
    gpu = [d for d in docs if d.get("device") == "cuda"]
    cpu = [d for d in docs if d.get("device") == "cpu"]
    page.add("## Measured", "", "### On GPUs", "")
    if gpu:
        page.add(_profile_table(gpu))
    else:
        how = " or ".join(f"`complexo profile {a} ... --device cuda --save`" for a in analyses)
        page.add(
            "No GPU profile of this analysis is recorded under `profiles/` yet. On a GPU "
            f"machine, {how} (or `scripts/record-gpu.sh`, every one these pages show) records "
            "one and this page shows it.",
            "",
        )
    if cpu:
        page.add(
            "### On a CPU",
            "",
            "Real runs of the reference implementations on this project's CPU box, recorded "
            "with `--save`. The floor is the roofline's, max(FLOPs / peak, bytes / bandwidth) "
            "summed over the terms, from that CPU's calibrated ceilings (`complexo calibrate`); "
            "peak memory is the tensors given to the block (and, in training, the optimizer's "
            "state) plus the most it allocated beyond them, from the profiler's record of every "
            "allocation and free; predicted memory is the formula's: in inference an upper "
            "bound for the image models, in training weights, gradients, optimizer state and "
            "saved activations summed as if all were live at once, which the backward's "
            "freeing keeps the peak below and its temporaries (the naive attention's n×n "
            "gradients) push it above.",
            "",
            _profile_table(cpu),
        )
    ceilings = _ceilings(docs)
    if ceilings:
        page.add("The ceilings these rows were measured against:", "")
        page.add(*(f"- {line}" for line in ceilings), "")


def _ceilings(docs: list[dict]) -> list[str]:
    """The ceilings the tables' rows were measured against, once per device and dtype; for a
    calibration, the rates of the two kernels it took the better of."""
    from complexo.profile import calibration_path

    seen: dict[tuple, str] = {}
    for d in docs:
        c, dtype = d.get("ceilings"), d["dtype"]
        if not c or dtype not in c["peak"] or (d["device_name"], dtype) in seen:
            continue
        text = (
            f"{d['device_name']}, {dtype}: peak {human(c['peak'][dtype], 'flop')}/s, "
            f"bandwidth {human(c['bandwidth'], 'byte')}/s ({c['source']})"
        )
        path = calibration_path(d["device_name"])
        cal = json.loads(path.read_text()) if path.exists() else {}
        if f"calibrated {cal.get('date')}" == c["source"] and cal.get("peak") == c["peak"]:
            rates = {k: v[dtype] for k, v in cal.get("measured", {}).items()}
            text += ": the better of " + " and ".join(
                f"{kernel} {human(rate, 'flop')}/s" for kernel, rate in rates.items()
            )
        seen[(d["device_name"], dtype)] = text
    return list(seen.values())


def _pairs(
    analyses: tuple[str, ...], side: str, names: tuple[str, str] | None = None
) -> list[tuple[dict, dict]]:
    """Recorded profiles of ``analyses`` that differ only in the config's ``side``, one with
    each of its two values ``names``; or, with ``side`` "analysis" (``names`` then ``analyses``
    themselves), runs of the two analyses at the same device, dtype, mode, resolution and batch:
    (first, second) by ``names``' order, GPU runs first."""
    from complexo.profile import recorded

    def key(d):
        if side == "analysis":
            c = d["config"]
            return (d["device_name"], d["dtype"], d["mode"], c.get("res"), c.get("batch"))
        rest = {k: v for k, v in d["config"].items() if k != side}
        return (d["device_name"], d["mode"], json.dumps(rest, sort_keys=True))

    found: dict[tuple, dict[str, dict]] = {}
    for d in recorded():
        if d.get("analysis") in analyses:
            name = d["analysis"] if side == "analysis" else d["config"].get(side)
            found.setdefault((d["device"] != "cuda", *key(d)), {})[name] = d
    names = names or analyses
    return [
        (found[k][names[0]], found[k][names[1]])
        for k in sorted(found, key=lambda k: [(v is None, v) for v in k])
        if set(names) <= set(found[k])
    ]


def _profile_table(docs: list[dict]) -> str:
    from complexo.profile import shown_config

    rows = [
        [
            d["analysis"],
            d["device_name"],
            d["date"],
            d["mode"],
            shown_config(d),
            d["dtype"],
            duration(d["median_s"]),
            duration(d["predicted_s"]) if d.get("predicted_s") else "—",
            f"{human(d['achieved_flops_per_s'], 'flop')}/s",
            f"{d['fraction_of_peak']:.1%}" if "fraction_of_peak" in d else "—",
            human(d["memory_peak"], "byte") if d.get("memory_peak") else "—",
            human(d["memory_predicted"], "byte"),
        ]
        for d in docs
    ]
    header = ["analysis", "device", "date", "mode", "config", "dtype", "median", "floor"]
    return _table([*header, "achieved", "of peak", "peak memory", "predicted memory"], rows)
