"""A normalisation layer run for real: torch's module, one forward without autograd (with the
batch's statistics, and BatchNorm's running update, when the config's --mode is train; the
running statistics when eval), in a profiler range, as one row beside its FLOPs and the fewest
bytes it must move (x read, y written, γ, β and the running statistics read once).

One row, not one per piece: torch runs each norm as one fused kernel (native_layer_norm,
native_batch_norm, native_group_norm), so no profiler can time the mean apart from the scaling.
It is memory-bound: 7 FLOPs per element (LayerNorm with γ and β) against 2·e bytes, under one
FLOP per byte in fp32, against a ridge of tens to hundreds. The backward is not timed here
(the profile's mode is the forward; the config's own --mode sets the statistics).
:func:`complexo.profile.run` does the rest.
"""

from __future__ import annotations

from complexo.analyses.norm_cost import cost_model
from complexo.cost import Kind, evaluate
from complexo.registry import Profiling, Row, Setup
from complexo.symbols import e


def model(cfg, side: str = ""):
    return cost_model(cfg.kind, cfg.shape_layout, cfg.affine, cfg.train)


def rows(cfg, mode: str, side: str = "") -> list[Row]:
    m = model(cfg)
    terms = tuple((Kind.FORWARD, t.name) for t in m.terms(Kind.FORWARD))
    return [Row("norm", terms, m.total(Kind.MEMORY, tag="moved"), ("complexo::norm",))]


def memory(cfg, mode: str, side: str, m) -> tuple[int, int, str]:
    """γ, β, the running statistics and x, given; y, the one tensor the forward allocates
    (torch's kernels keep their statistics in scratch space without autograd)."""
    values = cfg.values
    state = evaluate(m.total(Kind.PARAMS) * e + m.total(Kind.MEMORY, tag="buffers"), values)
    elements = evaluate(m.term(Kind.MEMORY, "moved_input").expr, values)  # N·e: x, and y
    predicted = state + 2 * elements
    return predicted, predicted, "a smaller --batch, --seq or --res"


def setup(cfg, mode: str, side: str, device: str) -> Setup:
    import torch

    from complexo.analyses.norm import build
    from complexo.profile.trace import _module_ranges

    module, x = build(cfg, "torch", device=device)
    x = x.detach()

    def step():
        with torch.no_grad():
            module(x)

    given = [*module.parameters(), *module.buffers(), x]

    def ranges():  # the layer's call (its fused kernel and what dispatches it): complexo::norm
        return _module_ranges(module, lambda path, _m: "norm" if path == "" else None)

    return Setup(step, given, ranges=ranges)


PROFILING = Profiling(("forward",), model=model, rows=rows, memory=memory, setup=setup)
