"""Terminal presentation of what was run rather than analysed once: sweeps (a row per point, a
grid, variants side by side) and profiles (measured beside predicted, per term)."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text

from complexo.conventions import CONVENTION
from complexo.render import Split, new_table
from complexo.result import COUNTERS
from complexo.units import duration, human


def render_sweep(sweep, quantity: str) -> Group:
    """One row per point (each quantity, and whether the counters agree), or, for two varied
    options, a heat-map table of ``quantity``."""
    parts: list = [
        Text.assemble(
            (f"complexo sweep {sweep.analysis}", "bold"),
            "  " + ", ".join(f"{k}={v}" for k, v in sweep.fixed.items()) + "\n",
            (f"{CONVENTION}; counted on the meta device; {sweep.why}", "dim"),
        )
    ]
    first = sweep.points[0].result
    if len(sweep.vary) == 1:
        name = sweep.vary[0].name
        columns = [(name, "right"), *((q.label.strip(), "right") for q in first.quantities)]
        columns.append(("counters", "left"))
        timed = all(p.profile is not None for p in sweep.points)
        if timed:
            columns.append(("measured", "right"))
        rows = []
        for i, point in enumerate(sweep.points):
            qs = point.result.quantities
            exact = all(q.agrees(c) in (None, True) for q in qs for c in COUNTERS)
            verdict = "all exact" if exact else "gaps explained"
            if any(g.reason == "unexplained" for q in qs for g in q.gaps):
                verdict = "UNEXPLAINED gap"
            if i not in sweep.counted:
                verdict = "formulas"
            cells = [str(point.config[name]), *(human(q.value, q.unit) for q in qs), verdict]
            if timed:
                cells.append(duration(point.profile.median))
            rows.append(cells)
        # as many tables as the terminal's width needs, the swept option first in each
        parts.append(Split(f"{sweep.analysis} against {name}", columns, rows))
        exps = sweep.exponents()
        if exps and sweep.symbol is not None:
            slopes = ", ".join(f"{t} ∝ {sweep.symbol}^{k}" for t, k in exps.items())
            parts.append(Text(f"forward terms: {slopes}"))
    else:
        (a, b), unit = sweep.vary, first.quantity(quantity).unit
        title = f"{quantity}: {a.name} (rows) × {b.name} (columns)"
        columns = [(f"{a.name} \\ {b.name}", "right"), *((str(v), "right") for v in b.values)]
        cells = {
            (pt.config[a.name], pt.config[b.name]): pt.result.quantity(quantity)
            for pt in sweep.points
        }
        rows = [[str(u), *(human(cells[u, v].value, unit) for v in b.values)] for u in a.values]
        parts.append(Split(title, columns, rows))
    return Group(*parts)


def render_variants(variants) -> Group:
    first = next(iter(variants.sweeps.values()))
    name = first.vary[0].name
    unit = first.points[0].result.quantity(variants.quantity).unit
    columns = [(name, "right"), *((label, "right") for label in variants.sweeps)]
    rows = [
        [
            str(point.config[name]),
            *(
                human(s.points[i].result.quantity(variants.quantity).value, unit)
                for s in variants.sweeps.values()
            ),
        ]
        for i, point in enumerate(first.points)
    ]
    table = Split(f"{variants.quantity} against {name}, by variant", columns, rows)
    return Group(
        Text.assemble((f"complexo sweep {variants.analysis}", "bold"), "\n", (CONVENTION, "dim")),
        table,
    )


def render_profile(prof) -> Group:
    """Measured beside predicted, per term and in total; both sides of a LoRA profile."""
    if hasattr(prof, "render"):
        return prof.render()
    if hasattr(prof, "sides"):
        from complexo.profile.machine import NOISY, iqr

        noisy = [n for n, p in prof.sides.items() if iqr(p.times) > NOISY * p.median]
        caveat = f" (NOISY: {', '.join(noisy)}'s runs spread widely; see its note)" if noisy else ""
        return Group(
            *(render_profile(side) for side in prof.sides.values()),
            Text(
                f"{'/'.join(reversed(list(prof.sides)[:2]))}: step time {prof.time_ratio:.1%}, "
                f"FLOPs {prof.flops_ratio:.1%}{caveat}",
                style="bold",
            ),
            *(Text(f"note: {note}", style="dim") for note in prof.notes),
        )
    doc = prof.to_json()
    cfg = ", ".join(f"{k}={v}" for k, v in prof.config.items() if v not in (None, False))
    ran = f"{prof.device_name} ({prof.device}){machine(prof)}, torch {prof.torch}, {prof.date}"
    head = Text.assemble(
        (f"complexo profile {prof.analysis}", "bold"),
        f"  {cfg}, mode={prof.mode}\n",
        (ran, "dim"),
    )
    table = new_table("Per term: measured vs roofline floor, max(FLOPs / peak, bytes / bandwidth)")
    for name, justify in (
        ("term", "left"),
        ("FLOPs", "right"),
        ("bytes", "right"),
        ("FLOP/B", "right"),
        ("measured", "right"),
        ("share", "right"),
        ("floor", "right"),
        ("bound", "left"),
    ):  # numbers never wrap: on a narrow terminal the term names do
        table.add_column(
            name, justify=justify, no_wrap=name != "term", min_width=11 if name == "term" else None
        )
    for name, row in prof.by_term.items():
        table.add_row(
            name,
            human(row["flops"], "flop"),
            human(row["bytes"], "byte") if row["bytes"] is not None else "—",
            f"{row['intensity']:.3g}" if row["intensity"] else "—",
            duration(row["measured_s"]),
            f"{row['share']:.0%}" if row.get("share") is not None else "—",
            duration(row["predicted_s"]) if "predicted_s" in row else "—",
            row.get("bound", "—"),
        )
    if prof.outside:
        out = prof.outside
        share = f"{out['share']:.0%}" if out.get("share") is not None else "—"
        table.add_row("other ops", "—", "—", "—", duration(out["measured_s"]), share, "—", "—")
    lines = [
        Text(
            f"time: median {duration(prof.median)} over {len(prof.times)} "
            f"{'CUDA graph replays' if prof.timing == 'cuda-graph' else 'runs'} "
            f"(IQR {duration(doc['iqr_s'])}); formula {human(prof.flops, 'flop')} per "
            f"iteration → {human(prof.achieved, 'flop')}/s achieved"
            + (f", {doc['fraction_of_peak']:.1%} of peak" if "fraction_of_peak" in doc else "")
        ),
        Text(
            f"memory: predicted {human(prof.memory_predicted, 'byte')}"
            + (
                f", peak allocated {human(prof.memory_peak, 'byte')} "
                f"({(prof.memory_peak - prof.memory_predicted) / prof.memory_predicted:+.1%})"
                + (
                    f", reserved {human(prof.memory_reserved, 'byte')}"
                    if prof.memory_reserved is not None
                    else ""
                )
                if prof.memory_peak is not None
                else ""
            )
        ),
    ]
    if getattr(prof, "runs", None):
        lines.append(Text(f"runs: {runs_text(prof.runs)}", style="dim"))
    if prof.ceilings:
        c = prof.ceilings
        lines.append(
            Text(
                f"ceilings: {human(c['peak'][prof.dtype], 'flop')}/s {prof.dtype}, "
                f"{human(c['bandwidth'], 'byte')}/s ({c['source']})",
                style="dim",
            )
        )
    if prof.outside:
        lines.append(Text(f"note: {outside_note(prof.outside)}", style="dim"))
    lines += [Text(f"note: {note}", style="dim") for note in prof.notes]
    kernels = new_table(
        f"Top {'kernels' if prof.device == 'cuda' else 'ops'} by "
        f"{'GPU' if prof.device == 'cuda' else 'own CPU'} time, one profiled iteration"
    )
    kernels.add_column("kernel" if prof.device == "cuda" else "op", overflow="ellipsis")
    kernels.add_column("time", justify="right")
    for name, seconds in prof.kernels:
        kernels.add_row(name, duration(seconds))
    return Group(head, table, *([kernels] if prof.kernels else []), *lines)


def runs_text(runs: dict) -> str:
    """How often the step ran, and for what: 2 warm-up (the last one the memory pass), 10
    timed, 1 profiled."""
    memory = runs.get("memory_pass")
    warm = f"{runs['warmup']} warm-up" + (
        " (the last one the memory pass)" if memory == "the last warm-up" else ""
    )
    parts = [warm, f"{runs['timed']} timed", f"{runs['profiled']} profiled"]
    if memory == "after the timed runs":
        parts.append("1 memory pass")
    return ", ".join(parts)


def machine(prof) -> str:
    """The threads and load a profile ran with, where it recorded them (older ones did not)."""
    said = []
    if getattr(prof, "threads", None):
        said.append(f"{prof.threads} thread{'s' * (prof.threads != 1)}")
    if getattr(prof, "load", None) is not None:
        said.append(f"load {prof.load:g}")
    return "".join(f", {s}" for s in said)


def outside_note(out: dict, shown: int = 4) -> str:
    """Where the profiled time outside the rows went: the ops by their own time, each with the
    formula terms it carries, and the time between ops (Python and dispatch on the host)."""

    def op(name, seconds, terms):
        carried = f" (term{'s' if len(terms) > 1 else ''} {', '.join(terms)})" if terms else ""
        return f"{name} {duration(seconds)}{carried}"

    ops = [op(*o) for o in out["ops"][:shown]]
    more = len(out["ops"]) - shown
    text = f"other ops, {duration(out['measured_s'])} of the profiled iteration"
    text += ": " + ", ".join(ops) + (f" and {more} more" if more > 0 else "") if ops else ""
    if out["between_ops_s"] >= 5e-7:  # half a microsecond or more
        text += f"; {duration(out['between_ops_s'])} on the host between ops"
    return text + " (an op with no term moves data, or dispatches, but computes nothing counted)"
