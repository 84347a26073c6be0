"""The one way a registered analysis runs for real: build its step on the device, time it (and
what it times beside it), profile one iteration, and set each declared row's measured time
beside its FLOPs (the terms it carries), its fewest bytes and the roofline's floor. What differs
between analyses (the module, the step, the rows, the memory prediction) is declared in its
:class:`~complexo.registry.Profiling`; nothing here names an analysis."""

from __future__ import annotations

import contextlib
import statistics
from pathlib import Path

from complexo.cost import evaluate
from complexo.profile.core import (
    PROFILES,
    Ceilings,
    Profile,
    _record,
    ceilings,
    refuse_if_too_big,
    resolve_device,
    timed,
)
from complexo.profile.machine import load, spread_warning
from complexo.profile.trace import (
    PROFILED_RUNS,
    _check_runs,
    _common_notes,
    _floor,
    _graph_note,
    _outside,
    _peak_memory,
    _profiled,
    _total_floor,
    memory_pass_peak,
)


def row_flops(row, model, values) -> int | None:
    """A row's FLOPs: the sum of its terms at the config; None for a row of uncounted work."""
    if not row.terms:
        return None
    return sum(evaluate(model.term(kind, name).expr, values) for kind, name in row.terms)


def row_table(rows, model, values, profiled, roof: Ceilings | None, dtype: str) -> dict:
    """Each row's FLOPs, bytes, FLOPs per byte, its time in the profiled iteration (its ops' or
    ranges', inside ``within`` where given), its share of the iteration, and its floor."""
    out = {}
    for row in rows:
        flops, moved = row_flops(row, model, values), evaluate(row.bytes, values)
        times = profiled.in_range.get(row.within, {}) if row.within else profiled.by_op
        seconds = sum(times.get(op, 0.0) for op in row.ops)
        out[row.name] = {
            "flops": flops,
            "bytes": moved,
            "intensity": flops / moved if flops is not None and moved else None,
            "measured_s": seconds,
            "share": profiled.share(seconds),
            "ops": list(row.ops),
        } | _floor(flops or 0, moved, roof, dtype)
    return out


def side_path(trace: str | None, side: str) -> str | None:
    """trace.json -> trace-<side>.json: one trace per side of a two-sided analysis."""
    if trace is None or not side:
        return trace
    path = Path(trace)
    return str(path.with_name(f"{path.stem}-{side}{path.suffix}"))


def profile_side(
    analysis,
    cfg,
    *,
    side: str = "",
    device: str | None = None,
    mode: str = "forward",
    warmup: int | None = None,
    repeat: int | None = None,
    trace: str | None = None,
    root: Path = PROFILES,
    cuda_graph: bool = False,
) -> Profile:
    """One side of ``analysis`` at ``cfg`` run for real in ``mode``: median time over the timed
    runs, achieved FLOP/s against the step's formula FLOPs, the declared rows, peak memory
    against the prediction, and the time no row accounts for (inference)."""
    import torch

    how = analysis.profiling
    warmup = how.warmup if warmup is None else warmup
    repeat = how.repeat if repeat is None else repeat
    device = resolve_device(device)
    _check_runs(warmup, repeat, mode, cuda_graph)
    model, values = how.model(cfg, side), cfg.values
    step_terms = how.step(model, mode)
    flops = sum(evaluate(t.expr, values) for t in step_terms)
    predicted, needs, hint = how.memory(cfg, mode, side, model)
    refuse_if_too_big(needs, device, f"the {side} step" if side else "this run", hint)
    torch.manual_seed(0)
    setup = how.setup(cfg, mode, side, device)
    record = torch.profiler.record_function

    def ranged(name, run):
        def step():
            with record(f"complexo::{name}"):
                run()

        return step

    rows = how.rows(cfg, mode, side)
    first = rows[0].name if setup.beside else ""
    step = ranged(first, setup.step) if first else setup.step
    beside = {name: ranged(name, run) for name, run in setup.beside.items()}
    busy = load()  # before the runs, which would count themselves
    # The CPU's memory pass is a run of the step: it takes the last warm-up's place when one
    # warm-up came before it (a training step's optimizer state exists only after a step).
    peak: list[int] = []
    early = device == "cpu" and warmup >= 2 and not cuda_graph

    def memory_pass():
        peak.append(memory_pass_peak(setup.step, setup.given))

    last = memory_pass if early else None
    timing = timed(step, device, warmup, repeat, graph=cuda_graph, last=last)
    runs = {name: timed(run, device, warmup, repeat) for name, run in beside.items()}
    if device == "cpu" and not early:
        memory_pass()
    roof = ceilings(device, root)

    def iteration():
        step()
        for run in beside.values():
            run()

    # Several profiled iterations (the median one read) guard against a hiccup on a busy
    # machine; where the timed runs were steady, one says the same.
    steady = spread_warning(timing.times, None, None) is None
    profiled_runs = 1 if steady else PROFILED_RUNS
    with setup.ranges() if setup.ranges else contextlib.nullcontext():
        profiled = _profiled(iteration, device, side_path(trace, side), profiled_runs)
    prof = _record(analysis.name, cfg, mode, device, timing, flops, predicted, roof)
    if side:
        prof.config["side"] = side
    prof.dtype = setup.dtype or prof.dtype
    prof.kernels = profiled.top
    _peak_memory(prof, setup.step, peak[0] if peak else None)
    prof.runs = {
        "warmup": warmup,
        "timed": repeat,
        "profiled": profiled_runs,
        "memory_pass": ("the last warm-up" if early else "after the timed runs") if peak else None,
    }
    _graph_note(prof, cuda_graph)
    prof.by_term = row_table(rows, model, values, profiled, roof, prof.dtype)
    if beside:  # each timed on its own: its median, and its range in the profiled iteration
        medians = {first: prof.median} | {k: statistics.median(r.times) for k, r in runs.items()}
        for name, row in prof.by_term.items():
            row["profiled_s"] = row["measured_s"]
            row["measured_s"] = medians.get(name, row["measured_s"])
    in_step = [prof.by_term[r.name] for r in rows if r.step]
    prof.predicted_s = _total_floor(in_step)
    if mode == "forward" and not beside:
        prof.outside = _outside(profiled, in_step, step_terms)
    prof.threads, prof.load = torch.get_num_threads(), busy
    noisy = spread_warning(prof.times, prof.threads, prof.load)
    prof.notes += [*([noisy] if noisy else []), *setup.notes]
    _common_notes(prof, roof)
    return prof
