"""Full fine-tuning's and LoRA's training steps run for real, each side its own profile: the
configured optimizer (under mixed precision on fp32 master copies of the trained weights, as
the memory formula assumes), timed by phase. :func:`complexo.profile.run` does the rest."""

from __future__ import annotations

from complexo.cost import Kind, evaluate
from complexo.registry import Profiling, Row, Setup
from complexo.symbols import e


def rows(cfg, mode: str, side: str) -> list[Row]:
    """forward, backward, optimizer: each phase's FLOPs (the matrix products of its terms) and
    the fewest bytes it moves: the forward reads every weight once; the backward reads the
    saved activations and the weights again and writes the gradients; the optimizer reads and
    writes its state and the trained weights and reads the gradients (element-wise: its FLOPs
    are not counted)."""
    model = cost_model(cfg, side)

    def total(kind, tag=""):
        return model.total(kind, tag=tag)

    weights, grads = total(Kind.MEMORY, "weights"), total(Kind.MEMORY, "gradients")
    state = total(Kind.MEMORY, "optimizer")  # + fp32 masters
    trained = total(Kind.PARAMS, "trainable") * e

    def terms(kind):
        return tuple((kind, t.name) for t in model.terms(kind))

    return [
        Row("forward", terms(Kind.FORWARD), weights, ("complexo::forward",)),
        Row(
            "backward",
            terms(Kind.BACKWARD),
            total(Kind.ACTIVATION) + weights + grads,
            ("complexo::backward",),
        ),
        Row("optimizer", (), 2 * state + grads + 2 * trained, ("complexo::optimizer",)),
    ]


def cost_model(cfg, side: str):
    from complexo.analyses.lora_cost import cost_model as model

    return model(cfg, side)


def memory(cfg, mode: str, side: str, model) -> tuple[int, int, str]:
    """Weights, gradients, optimizer state and saved activations, all live at once."""
    predicted = evaluate(model.total((Kind.MEMORY, Kind.ACTIVATION)), cfg.values)
    return predicted, predicted, "a smaller --seq or --batch"


def setup(cfg, mode: str, side: str, device: str) -> Setup:
    import torch

    from complexo.analyses.lora_measure import build
    from complexo.profile.trace import _training_step

    module, inputs = build(cfg, side, device=device)
    for m in module.modules():  # a trained adapter, not B = 0 (the work is the same)
        if hasattr(m, "lora_B"):
            torch.nn.init.normal_(m.lora_B.weight, std=1e-3)
    step = _training_step(module, inputs, cfg.optimizer, cfg.master_fp32)
    note = (
        "per phase: its FLOPs (matrix products) and fewest bytes: the forward reads every "
        "weight once, the backward reads the saved activations and the weights again and "
        "writes the gradients, the optimizer reads and writes its state and the trained "
        "weights and reads the gradients"
    )
    return Setup(step, [*module.parameters(), *module.buffers(), *inputs], notes=[note])


PROFILING = Profiling(
    ("train",),
    model=cost_model,
    rows=rows,
    memory=memory,
    setup=setup,
    sweep=False,
    iteration="training step",
    warmup=2,
    repeat=5,
)


def profile_lora(cfg, **runs):
    """Both sides' training steps at ``cfg`` (:func:`complexo.profile.run`)."""
    from complexo.analyses.lora import ANALYSIS
    from complexo.profile import run

    return run(ANALYSIS, cfg, **runs)
