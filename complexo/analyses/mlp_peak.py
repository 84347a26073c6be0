"""The MLPs' training steps as they really peak (:mod:`complexo.peak`): ledgers written by reading
``blocks/mlp.py`` and autograd's formulas line by line.

X = B·n·d·e (one (B, n, d) tensor), H = B·n·f·e (the GELU MLP's hidden), G = B·n·f_g·e (a
gated MLP's). Every Linear folds (B, n) into one matrix dimension (a view): its output is the
only allocation.

GELU MLP. Forward: fc_in's output h (saved by GELU), GELU's a (saved by fc_out), the output
(held by the step). Backward: fc_out's dW and dX (with biases, as ``addmm``'s backward: dX, dW,
then db), a freed; GELU's backward dh, h and fc_out's dX freed; fc_in's, dh freed. The step
peaks at fc_out's dX: h, a and their gradient live at once, beside fc_out's dW.

Gated MLP. Forward: the gate's g (saved by the activation), act(g) and the up projection u
(both saved by the product), the product a⊙u (saved by down_proj), the output. Backward:
down_proj's (the product freed), the product's two gradients dy⊙u and dy⊙a (then dy, act(g)
and u freed): with g and down_proj's dW, **four G live at once**, the step's peak unless the
weights outweigh the tokens; then up_proj's backward (autograd runs the later-made branch
first), the activation's (g freed), the gate's, and x's two gradients summed.
"""

from __future__ import annotations

from complexo.cost import Kind
from complexo.peak import Ledger
from complexo.symbols import B, d, e, f, f_g, n


def _linear_backward(
    book: Ledger, layer: str, bias: bool, dx: dict, dw, db, saved: str = "", again=False
) -> None:
    """One Linear's backward as autograd orders it: without a bias ``mm``'s (dW, then dX);
    with one ``addmm``'s (dX, dW, then Σ dY). ``dx``: {name: bytes}, or empty where the
    input needs no gradient. ``saved``: its input, let go after the node has run, or, made
    again by a checkpoint's rerun (``again``), once unpacked for dW (before the bias's Σ)."""
    grads = {f"g_w_{layer}": dw}
    if bias:
        book.alloc(f"{layer}'s backward: dX", **dx)
        book.alloc(f"{layer}'s backward: dW", **grads)
        if saved and again:
            book.free(saved)
        book.alloc(f"{layer}'s backward: db", **{f"g_b_{layer}": db})
    else:
        book.alloc(f"{layer}'s backward: dW", **grads)
        book.alloc(f"{layer}'s backward: dX", **dx)
    if saved and not (bias and again):
        book.free(saved)


def ledger(cfg, side: str) -> Ledger:
    """The step's allocations and frees of one side ("gelu" or "gated") of ``cfg`` (an mlp
    Config), as sympy over B, n, d, f, f_g, e; ``cfg.checkpoint`` full: the block's forward
    keeps nothing but x, and runs again before its backward (:mod:`mlp_ckpt`)."""
    from complexo.analyses import mlp_ckpt
    from complexo.analyses.mlp import cost_model

    variant = side if side == "gelu" else cfg.gated
    weights = cost_model(variant, cfg.bias).total(Kind.PARAMS) * e
    X = B * n * d * e
    book = Ledger(weights=weights, x=X)
    full = getattr(cfg, "checkpoint", "none") == "full"
    H = B * n * (f if side == "gelu" else f_g) * e
    if full:
        mlp_ckpt.forward(book, side, X, H)
    if side == "gelu":
        if not full:
            book.alloc("fc_in's output h", h=H)
            book.alloc("GELU's output a", a=H)
            book.alloc("fc_out's output", out=X)
        book.alloc("out.sum() and its seed gradient", loss=2 * e)
        book.phase = "backward"
        if full:
            mlp_ckpt.rerun(book, side, X, H)
        _linear_backward(book, "fc_out", cfg.bias, {"d_a": H}, d * f * e, d * e, "a", full)
        book.alloc("GELU's backward: dh", d_h=H)
        book.free("h", "d_a")
        _linear_backward(book, "fc_in", cfg.bias, {"g_x": X}, d * f * e, f * e)
        book.free("d_h")
    else:
        G = H
        act = "SiLU" if cfg.gated == "swiglu" else "GELU"
        if not full:
            book.alloc("gate_proj's output g", g=G)
            book.alloc(f"{act}'s output act(g)", a=G)
            book.alloc("up_proj's output u", u=G)
            book.alloc("the product act(g)⊙u", p=G)
            book.alloc("down_proj's output", out=X)
        book.alloc("out.sum() and its seed gradient", loss=2 * e)
        book.phase = "backward"
        if full:
            mlp_ckpt.rerun(book, side, X, H)
        dp = {"d_p": G}
        _linear_backward(book, "down_proj", cfg.bias, dp, d * f_g * e, d * e, "p", full)
        book.alloc("the product's backward: dy⊙u", d_a=G)
        book.alloc("the product's backward: dy⊙act(g)", d_u=G)
        book.free("d_p", "a", "u")
        _linear_backward(book, "up_proj", cfg.bias, {"dx_u": X}, d * f_g * e, f_g * e)
        book.free("d_u")
        book.alloc(f"{act}'s backward: dg", d_g=G)
        book.free("d_a", "g")
        _linear_backward(book, "gate_proj", cfg.bias, {"dx_g": X}, d * f_g * e, f_g * e)
        book.free("d_g")
        book.alloc("x's two gradients summed", g_x=X)
        book.free("dx_u", "dx_g")
    book.free("loss")
    book.phase = "optimizer"
    return book


def tracked(cfg, side: str, optimizer: str = "sgd"):
    """The same step measured by MemTracker under FakeTensorMode
    (:func:`complexo.peak.tracked_build`)."""
    from complexo.analyses.mlp import build
    from complexo.peak import tracked_build

    return tracked_build(build, cfg, side, optimizer=optimizer)


def all_live(cfg, side: str) -> int:
    """The sum the issue measured against: weights and their gradients, the output and every
    saved activation (x among them), as if all were live at once (SGD keeps no state)."""
    from complexo.analyses.mlp import cost_model
    from complexo.cost import evaluate

    model = cost_model(side if side == "gelu" else cfg.gated, cfg.bias, cfg.checkpoint)
    values = cfg.values
    weights = evaluate(model.total(Kind.PARAMS), values) * values[e]
    out = cfg.batch * cfg.seq * cfg.dim * values[e]
    return 2 * weights + out + evaluate(model.total(Kind.ACTIVATION), values)


def quantity(cfg, side: str):
    """The training step's peak as a quantity, MemTracker's reading beside it, and its note."""
    from complexo.peak import peak_quantity

    return peak_quantity(
        ledger(cfg, side), cfg.values, lambda: tracked(cfg, side), all_live(cfg, side)
    )
