"""The MHSA block run for real (:func:`complexo.profile.run` reaches it through the registry)."""

from __future__ import annotations

from pathlib import Path

from complexo.cost import Kind, evaluate
from complexo.profile.core import (
    PROFILES,
    Profile,
    _record,
    ceilings,
    refuse_if_too_big,
    resolve_device,
    timed,
)
from complexo.profile.trace import (
    _by_term,
    _check_runs,
    _common_notes,
    _graph_note,
    _outside,
    _peak_memory,
    _phased_step,
    _profiled,
    _sgd_phases,
    _timed_phases,
    _total_floor,
)


def profile_mhsa(
    cfg,
    *,
    device: str | None = None,
    mode: str = "forward",
    warmup: int = 3,
    repeat: int = 10,
    trace: str | None = None,
    root: Path = PROFILES,
    cuda_graph: bool = False,
) -> Profile:
    """Run the MHSA block for real and set the measurements beside the formulas.
    ``cuda_graph``: time replays of a captured CUDA graph (forward mode)."""
    import torch

    from complexo.analyses import mhsa
    from complexo.render import human

    device = resolve_device(device)
    _check_runs(warmup, repeat, mode, cuda_graph)
    model, values = cfg.model(), cfg.values
    kinds = (Kind.FORWARD,) if mode == "forward" else (Kind.FORWARD, Kind.BACKWARD)
    flops = evaluate(model.total(kinds), values)
    weights = evaluate(model.total(Kind.PARAMS), values) * values[mhsa.e]
    x_bytes = cfg.batch * cfg.seq * cfg.dim * values[mhsa.e]
    if mode == "train":  # x, its output, saved activations, gradients; SGD keeps no state
        predicted = 2 * weights + 2 * x_bytes + evaluate(model.total(Kind.ACTIVATION), values)
    else:  # what the block was given, and its high-water mark above that
        predicted = weights + x_bytes + mhsa.forward_peak(cfg)
    # n×n matrices: two coexist in the forward (each element-wise pass is out of place); the
    # probabilities are saved for the backward
    matrix = evaluate(model.total(Kind.MEMORY, tag="matrix"), values)
    scores = 2 * matrix if mode == "forward" else matrix
    hint = "a smaller --seq or --batch" + (
        f", or --impl sdpa: its n×n score matrices are {human(scores, 'byte')} of it"
        if not cfg.fused and scores > predicted / 2
        else ""
    )
    refuse_if_too_big(predicted, device, "this run", hint)
    torch.manual_seed(0)
    block, x = mhsa.build(cfg, device=device)
    x = x.detach().requires_grad_(mode == "train")
    if mode == "train":
        step = _phased_step(lambda: block(x), torch.optim.SGD(block.parameters(), lr=1e-6))
    else:

        def step():
            with torch.no_grad():
                block(x)

    timing = timed(step, device, warmup, repeat, graph=cuda_graph)
    profiled = _profiled(step, device, trace)
    roof = ceilings(device, root)
    prof = _record("mhsa", cfg, mode, device, timing, flops, predicted, roof)
    prof.kernels = profiled.top
    _peak_memory(prof, step, [*block.parameters(), x])
    _graph_note(prof, cuda_graph)
    # the terms' ops in the forward: in training, inside its range, not the backward's too
    ops = profiled.by_op if mode == "forward" else profiled.in_range.get("complexo::forward", {})
    prof.by_term = _by_term(mhsa.roofline_groups(cfg), ops, values, roof, cfg.dtype, mode)
    for row in prof.by_term.values():
        row["share"] = profiled.share(row["measured_s"])
    prof.predicted_s = _total_floor(prof.by_term.values())
    if mode == "forward":
        prof.outside = _outside(profiled, prof.by_term.values(), model.terms(Kind.FORWARD))
    if mode == "train":  # the terms above are the forward's; the step's phases as a whole
        phases = _sgd_phases(
            evaluate(model.total(Kind.FORWARD), values),
            sum(row["bytes"] for row in prof.by_term.values()),
            evaluate(model.total(Kind.BACKWARD), values),
            evaluate(model.total(Kind.ACTIVATION), values),
            weights,
        )
        rows = _timed_phases(phases, profiled, roof, cfg.dtype)
        prof.by_term |= {f"{name} (step)": row for name, row in rows.items()}
        prof.predicted_s = _total_floor(rows.values())
        prof.notes.append(
            "training: the terms' times are their ops' inside the forward's range; the phases "
            "(forward, backward, optimizer) are the whole step, timed by range"
        )
    _common_notes(prof, roof)
    return prof
