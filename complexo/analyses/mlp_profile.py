"""The GELU MLP and the gated MLP run for real, each side its own profile: a profiler range
around each linear layer (its bias add inside it: ``addmm``'s epilogue), and the element-wise
ops (the activation, the gate's product) by op name inside the forward, each beside its FLOPs and
the bytes it must move (the model's ``moved`` terms: every input read once, the output written
once); in training, the SGD step's phases too. :func:`complexo.profile.run` does the rest.

The element-wise rows are memory-bound: GELU's 5 FLOPs per element against 2·e bytes (its
input read, its output written) is 0.625 FLOP per byte in fp32, SiLU's 4 is 0.5, the product's
1 against 3·e bytes 0.083; a device's ridge is tens to hundreds. The linear rows are
compute-bound at any real size: 2·d·f FLOPs per token against (d + f)·e bytes of activations.
"""

from __future__ import annotations

from sympy import Integer

from complexo.cost import Kind, evaluate
from complexo.registry import Profiling, Row, Setup, sgd_rows
from complexo.symbols import B, d, e, f, f_g, n

F = Kind.FORWARD
LINEARS = {"gelu": ("fc_in", "fc_out"), "gated": ("gate_proj", "up_proj", "down_proj")}
ACT_OP = {"gelu": "aten::gelu", "swiglu": "aten::silu", "geglu": "aten::gelu"}


def model(cfg, side: str = "gelu"):
    from complexo.analyses.mlp import cost_model

    return cost_model(side if side == "gelu" else cfg.gated, cfg.bias, cfg.checkpoint)


def rows(cfg, mode: str, side: str = "gelu") -> list[Row]:
    """A row per linear layer (its range: the matmul and its bias add), then the activation and
    (gated) the gate's product, by op inside the forward; in training the backward and the
    optimizer complete the step, and the forward phase as a whole is shown beside them."""
    m = model(cfg, side)
    moved = {t.name.removeprefix("moved_"): t.expr for t in m.terms(Kind.MEMORY, tag="moved")}
    names = {t.name for t in m.terms(F)}
    within = "complexo::forward" if mode == "train" else ""
    out = []
    for layer in LINEARS[side]:
        terms = tuple((F, t) for t in (layer, f"{layer}_bias") if t in names)
        out.append(Row(layer, terms, moved[layer], (f"complexo::{layer}",)))
        if layer == LINEARS[side][0 if side == "gelu" else 1]:  # the element-wise ops follow
            variant = side if side == "gelu" else cfg.gated
            act = "silu" if variant == "swiglu" else "gelu"
            out.append(Row(act, ((F, act),), moved[act], (ACT_OP[variant],), within))
            if side == "gated":
                product = ((F, "gate_product"),)
                out.append(Row("gate product", product, moved["product"], ("aten::mul",), within))
    if mode == "train":
        out += sgd_rows(m, sum((r.bytes for r in out), Integer(0)))
    return out


def memory(cfg, mode: str, side: str, m) -> tuple[int, int, str]:
    """Inference: the weights and x, and what ``forward`` holds at its end (blocks/mlp.py keeps
    its hidden tensors in locals): GELU h, GELU(h) and y (2·B·n·f + B·n·d elements); gated
    act(g), u, their product and y (3·B·n·f_g + B·n·d; the gate's g is freed once activated).
    Training: the weights and their gradients (SGD keeps no state), x, y and what is saved."""
    hidden = B * n * (2 * f if side == "gelu" else 3 * f_g) * e
    given = m.total(Kind.PARAMS) * e + B * n * d * e
    if mode == "train":
        held = given + m.total(Kind.PARAMS) * e + B * n * d * e + m.total(Kind.ACTIVATION)
    else:
        held = given + hidden + B * n * d * e
    predicted = evaluate(held, cfg.values)
    return predicted, predicted, "a smaller --batch, --seq or hidden width"


def setup(cfg, mode: str, side: str, device: str) -> Setup:
    import torch

    from complexo.analyses.mlp import build
    from complexo.profile.trace import _module_ranges, _phased_step

    module, x = build(cfg, side, device=device)
    x = x.detach().requires_grad_(mode == "train")
    if mode == "train":
        step = _phased_step(lambda: module(x), torch.optim.SGD(module.parameters(), lr=1e-6))
    else:

        def step():
            with torch.no_grad():
                module(x)

    def group(path, _module):
        return path if path in LINEARS[side] else None

    return Setup(step, [*module.parameters(), x], ranges=lambda: _module_ranges(module, group))


PROFILING = Profiling(
    ("forward", "train"),
    model=model,
    rows=rows,
    memory=memory,
    setup=setup,
    sweep=False,
)
