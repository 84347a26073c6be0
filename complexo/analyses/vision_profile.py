"""A CNN or a ViT run for real, its time grouped by layer type (:data:`vision.LAYER_GROUPS`)."""

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
    _check_runs,
    _common_notes,
    _floor,
    _graph_note,
    _module_ranges,
    _outside,
    _peak_memory,
    _phased_step,
    _profiled,
    _sgd_phases,
    _timed_phases,
    _total_floor,
)


def profile_image(
    analysis: str,
    cfg,
    *,
    device: str | None = None,
    warmup: int = 3,
    repeat: int = 10,
    trace: str | None = None,
    root: Path = PROFILES,
    cuda_graph: bool = False,
    mode: str = "forward",
) -> Profile:
    """Time a CNN or ViT for real, inference (``mode`` forward) or training steps (forward,
    backward from the logits' sum, SGD): median time, achieved FLOP/s against the formula's
    FLOPs, time per layer type (and per phase in training) beside its FLOPs and fewest bytes,
    peak memory on CUDA."""
    import torch

    from complexo.analyses import cnn, vit
    from complexo.analyses.mhsa import SDPA_KERNELS
    from complexo.analyses.vision import LAYER_GROUPS

    module_of = {"cnn": cnn, "vit": vit}[analysis]
    device = resolve_device(device)
    _check_runs(warmup, repeat, mode, cuda_graph)
    train = mode == "train"
    model = cnn.cost_model(cnn.PRESETS[cfg.model].block) if analysis == "cnn" else vit.cost_model()
    values = cfg.values
    forward = evaluate(model.total(Kind.FORWARD), values)
    backward = evaluate(model.total(Kind.BACKWARD), values)
    flops = forward + (backward if train else 0)
    weights = evaluate(model.total(Kind.PARAMS), values) * values[cnn.e]
    saved = evaluate(model.total(Kind.ACTIVATION), values)
    # an upper bound: weights and every activation saved for a backward (+ gradients, SGD)
    predicted = weights + saved + (weights if train else 0)
    refuse_if_too_big(predicted, device, "this run", "a smaller --res or --batch")
    torch.manual_seed(0)
    net, x = module_of.build(cfg, device=device)
    net.train(train)
    if train:
        opt = torch.optim.SGD(net.parameters(), lr=1e-6)
        step = _phased_step(lambda: net(x), opt)
    else:

        def step():
            with torch.no_grad():
                net(x)

    timing = timed(step, device, warmup, repeat, graph=cuda_graph)
    with _module_ranges(net, LAYER_GROUPS):
        profiled = _profiled(step, device, trace)
    roof = ceilings(device, root)
    prof = _record(analysis, cfg, mode, device, timing, flops, predicted, roof)
    prof.kernels = profiled.top
    _peak_memory(prof, step, [*net.parameters(), *net.buffers(), x])
    _graph_note(prof, cuda_graph)
    if train:
        moved = evaluate(model.total(Kind.MEMORY, tag="moved"), values)
        phases = _sgd_phases(forward, moved, backward, saved, weights)
        rows = _timed_phases(phases, profiled, roof, cfg.dtype)
        prof.by_term |= {f"{name} (step)": row for name, row in rows.items()}
        prof.predicted_s = _total_floor(rows.values())
    ranges = {
        k.removeprefix("complexo::"): v
        for k, v in profiled.by_op.items()
        if k.startswith("complexo::") and k.removeprefix("complexo::") in LAYER_GROUPS.values()
    }
    terms = {t.name: evaluate(t.expr, values) for t in model.terms(Kind.FORWARD)}
    groups = {
        group: (
            seconds,
            sum(v for t, v in terms.items() if _group_of(analysis, t) == group),
            evaluate(model.total(Kind.MEMORY, tag=group), values),
        )
        for group, seconds in ranges.items()
    }
    if analysis == "vit":  # SDPA runs inside the attention module, outside every layer type
        attention = sum(terms[t] for t in ("attention", "scale", "softmax"))
        qkvo = 4 * values[vit.L] * values[vit.B] * cfg.tokens * values[vit.d] * values[cnn.e]
        seconds = max(profiled.by_op.get(k, 0.0) for k in SDPA_KERNELS)
        groups["attention kernel"] = (seconds, attention, qkvo)  # reads q, k, v; writes out
    for group, (seconds, group_flops, group_bytes) in sorted(
        groups.items(), key=lambda g: -g[1][0]
    ):
        row = {
            "measured_s": seconds,
            "share": profiled.share(seconds),
            "flops": group_flops,
            "bytes": group_bytes,
            "intensity": group_flops / group_bytes if group_bytes else None,
            "ops": list(SDPA_KERNELS) if group == "attention kernel" else [f"complexo::{group}"],
        }
        prof.by_term[group] = row | _floor(group_flops, group_bytes, roof, cfg.dtype)
    if not train:
        prof.predicted_s = _total_floor(prof.by_term[g] for g in groups)
        rows = (prof.by_term[g] for g in groups)
        prof.outside = _outside(profiled, rows, model.terms(Kind.FORWARD))
    prof.notes.append(
        "time per layer type from one profiled iteration (profiler ranges around each module "
        f"call{', in the forward' if train else ''}), beside its FLOPs and fewest bytes (each "
        "call reads its input and weights and writes its output once); memory predicted as an "
        "upper bound (weights + training activations"
        + (" + gradients; SGD keeps no state)" if train else ")")
    )
    _common_notes(prof, roof)
    return prof


def _group_of(analysis: str, term: str) -> str:
    """The layer type (profiler range) that carries a forward term of the image formulas."""
    if analysis == "cnn":
        if term == "stem" or term.startswith("layer"):
            return "convolutions"
        cnn_groups = {
            "batchnorm": "batchnorm",
            "relu": "relu",
            "maxpool": "pooling",
            "avgpool": "pooling",
            "fc": "linear layers",
            "fc_bias": "linear layers",
        }
        return cnn_groups.get(term, "other")
    vit_groups = {
        "patch_embed": "convolutions",
        "patch_bias": "convolutions",
        "attn_proj": "linear layers",
        "mlp": "linear layers",
        "bias": "linear layers",
        "head": "linear layers",
        "head_bias": "linear layers",
        "layernorm": "layernorm",
    }
    return vit_groups.get(term, "other")
