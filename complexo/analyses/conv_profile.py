"""A standard convolution and its depthwise-separable factorisation run for real, each side its
own profile: a profiler range around each convolution (the standard one; the depthwise, then
the pointwise), each beside its FLOPs (its bias add with it: the kernel adds it in its
epilogue) and the bytes it must move; in training, the SGD step's phases too.
:func:`complexo.profile.run` does the rest."""

from __future__ import annotations

from sympy import Integer

from complexo.cost import Kind, evaluate
from complexo.profile.step import sgd_rows
from complexo.registry import Profiling, Row, Setup
from complexo.symbols import B, C_in, C_out, R, e

F = Kind.FORWARD
CONVOLUTIONS = {"standard": ("conv",), "separable": ("depthwise", "pointwise")}


def cost_model(cfg, side: str):
    from complexo.analyses.conv import cost_model as model

    return model(side, cfg.bias)


def rows(cfg, mode: str, side: str) -> list[Row]:
    """One row per convolution: its product and its bias add, and the bytes its call moves
    (its input, weights and output, each once: the model's ``moved`` terms)."""
    model = cost_model(cfg, side)
    names = {t.name for t in model.terms(F)}
    out = []
    for conv in CONVOLUTIONS[side]:
        terms = tuple((F, t) for t in (conv, f"{conv}_bias") if t in names)
        moved = model.term(Kind.MEMORY, f"moved_{conv}").expr
        out.append(Row(_label(side, conv), terms, moved, (f"complexo::{conv}",)))
    if mode == "train":
        out += sgd_rows(model, sum((r.bytes for r in out), Integer(0)))
    return out


def _label(side: str, conv: str) -> str:
    return side if conv == "conv" else conv


def memory(cfg, mode: str, side: str, model) -> tuple[int, int, str]:
    """Inference: the weights, the input and every convolution's output (the separable one's
    depthwise output is alive while its pointwise output is written); training adds the saved
    activations and the weights' gradients (SGD keeps no state)."""
    from complexo.analyses.conv import out_side

    values = cfg.values
    weights = evaluate(model.total(Kind.PARAMS), values) * values[e]
    side_out = out_side()
    x = evaluate(B * C_in * R**2 * e, values)
    outputs = evaluate(B * C_out * side_out**2 * e, values)
    if side == "separable":
        outputs += evaluate(B * C_in * side_out**2 * e, values)
    predicted = weights + x + outputs
    if mode == "train":
        predicted += weights + evaluate(model.total(Kind.ACTIVATION), values)
    return predicted, predicted, "a smaller --res, --batch or channels"


def setup(cfg, mode: str, side: str, device: str) -> Setup:
    import torch

    from complexo.analyses.conv import build
    from complexo.profile.trace import _module_ranges, _phased_step

    block, x = build(cfg, side, device=device)
    x = x.detach().requires_grad_(mode == "train")
    if mode == "train":
        step = _phased_step(lambda: block(x), torch.optim.SGD(block.parameters(), lr=1e-6))
    else:

        def step():
            with torch.no_grad():
                block(x)

    def group(path, _module):
        return path if path in CONVOLUTIONS[side] else None

    return Setup(step, [*block.parameters(), x], ranges=lambda: _module_ranges(block, group))


PROFILING = Profiling(
    ("forward", "train"),
    model=cost_model,
    rows=rows,
    memory=memory,
    setup=setup,
    sweep=False,
)
