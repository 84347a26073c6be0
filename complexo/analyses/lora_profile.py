"""Full fine-tuning's and LoRA's training steps run for real, side by side."""

from __future__ import annotations

from pathlib import Path

from complexo.cost import Kind, evaluate
from complexo.profile.core import (
    PROFILES,
    SidesProfile,
    _record,
    ceilings,
    refuse_if_too_big,
    resolve_device,
    timed,
)
from complexo.profile.trace import (
    _check_runs,
    _common_notes,
    _peak_memory,
    _profiled,
    _timed_phases,
    _total_floor,
    _training_step,
)


def profile_lora(
    cfg,
    *,
    device: str | None = None,
    warmup: int = 2,
    repeat: int = 5,
    trace: str | None = None,
    root: Path = PROFILES,
) -> SidesProfile:
    """Full fine-tuning's and LoRA's training steps for real (forward, backward, the configured
    optimizer; under mixed precision on fp32 master copies of the trained weights, as the memory
    formula assumes): time per step and per phase beside each side's FLOPs, bytes and memory."""
    import torch

    from complexo.analyses import lora

    device = resolve_device(device)
    _check_runs(warmup, repeat)
    roof = ceilings(device, root)
    sides = {}
    for side in lora.SIDES:
        model, values = lora.cost_model(cfg, side), cfg.values
        memory = evaluate(model.total((Kind.MEMORY, Kind.ACTIVATION)), values)
        refuse_if_too_big(memory, device, f"the {side} step", "a smaller --seq or --batch")
        torch.manual_seed(0)
        module, inputs = lora.build(cfg, side, device=device)
        for m in module.modules():  # a trained adapter, not B = 0 (the work is the same)
            if hasattr(m, "lora_B"):
                torch.nn.init.normal_(m.lora_B.weight, std=1e-3)
        step = _training_step(module, inputs, cfg.optimizer, cfg.master_fp32)
        timing = timed(step, device, warmup, repeat)
        profiled = _profiled(step, device, _side_path(trace, side))
        phases = _lora_phases(model, values)
        flops = sum(f for f, _ in phases.values() if f is not None)
        prof = _record("lora", cfg, "train", device, timing, flops, memory, roof)
        prof.config["side"] = side
        prof.kernels = profiled.top
        _peak_memory(prof, step, [*module.parameters(), *module.buffers(), *inputs])
        prof.by_term = _timed_phases(phases, profiled, roof, cfg.dtype)
        prof.predicted_s = _total_floor(prof.by_term.values())
        prof.notes.append(
            "per phase: its FLOPs (matrix products) and fewest bytes: the forward reads every "
            "weight once, the backward reads the saved activations and the weights again and "
            "writes the gradients, the optimizer reads and writes its state and the trained "
            "weights and reads the gradients"
        )
        _common_notes(prof, roof)
        sides[side] = prof
    return SidesProfile("lora", sides)


def _side_path(trace: str | None, side: str) -> str | None:
    """trace.json -> trace-full.json, trace-lora.json: one trace per side."""
    if trace is None:
        return None
    path = Path(trace)
    return str(path.with_name(f"{path.stem}-{side}{path.suffix}"))


def _lora_phases(model, values) -> dict[str, tuple[int, int]]:
    """forward, backward, optimizer: (FLOPs, the fewest bytes each moves)."""
    from complexo.symbols import e

    weights = evaluate(model.total(Kind.MEMORY, tag="weights"), values)
    grads = evaluate(model.total(Kind.MEMORY, tag="gradients"), values)
    state = evaluate(model.total(Kind.MEMORY, tag="optimizer"), values)  # + fp32 masters
    trained = evaluate(model.total(Kind.PARAMS, tag="trainable"), values) * values[e]
    saved = evaluate(model.total(Kind.ACTIVATION), values)
    return {
        "forward": (evaluate(model.total(Kind.FORWARD), values), weights),
        "backward": (evaluate(model.total(Kind.BACKWARD), values), saved + weights + grads),
        "optimizer": (None, 2 * state + grads + 2 * trained),  # element-wise: not counted
    }
