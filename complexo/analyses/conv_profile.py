"""A standard convolution and its depthwise-separable factorisation run for real, each side its
own profile: a profiler range around the standard block (direct or unfolded), or around each of
the depthwise and pointwise convolutions, each beside its FLOPs (a bias add with its product:
the kernel adds it in its epilogue) and the bytes it must move; in training, the SGD step's
phases too. :func:`complexo.profile.run` does the rest."""

from __future__ import annotations

from sympy import Integer

from complexo.cost import Kind, evaluate
from complexo.registry import Profiling, Row, Setup, sgd_rows
from complexo.symbols import B, C_in, C_out, e

F = Kind.FORWARD
# the rows of each side: (row, the module it times, the prefix of the forward terms it carries)
CONVOLUTIONS = {
    "standard": (("standard", "", ""),),
    "separable": (("depthwise", "depthwise", "depthwise"), ("pointwise", "pointwise", "pointwise")),
}


def cost_model(cfg, side: str):
    return cfg.model(side)


def rows(cfg, mode: str, side: str) -> list[Row]:
    """One row per timed module: the forward terms it carries (its products, bias adds, an
    unfold's copies) and the bytes its call moves (its input, weights and output, each once:
    the model's ``moved`` terms)."""
    model = cost_model(cfg, side)
    out = []
    for name, module, prefix in CONVOLUTIONS[side]:
        terms = tuple((F, t.name) for t in model.terms(F) if t.name.startswith(prefix))
        moved = [t.expr for t in model.terms(Kind.MEMORY, tag="moved") if module in t.name]
        out.append(Row(name, terms, sum(moved, Integer(0)), (f"complexo::{name}",)))
    if mode == "train":
        out += sgd_rows(model, sum((r.bytes for r in out), Integer(0)))
    return out


def memory(cfg, mode: str, side: str, model) -> tuple[int, int, str]:
    """Inference: the weights, the input (and its causal copy, and an unfold's columns) and
    every convolution's output (the separable one's depthwise output is alive while its
    pointwise output is written); training adds the saved activations and the weights'
    gradients (SGD keeps no state)."""
    from complexo.analyses.conv_cost import volumes

    values = cfg.values
    x_in, out = volumes(cfg.dims)
    held = model.total(Kind.PARAMS) * e + B * C_in * x_in * e + B * C_out * out * e
    held += model.total(Kind.MEMORY, tag="padded") + model.total(Kind.MEMORY, tag="unfolded")
    if side == "separable":
        held += B * C_in * out * e
    if mode == "train":
        held += model.total(Kind.PARAMS) * e + model.total(Kind.ACTIVATION)
    predicted = evaluate(held, values)
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

    names = {module: name for name, module, _ in CONVOLUTIONS[side]}

    def group(path, _module):
        return names.get(path)

    return Setup(step, [*block.parameters(), x], ranges=lambda: _module_ranges(block, group))


PROFILING = Profiling(
    ("forward", "train"),
    model=cost_model,
    rows=rows,
    memory=memory,
    setup=setup,
    sweep=False,
)
