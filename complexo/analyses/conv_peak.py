"""The convolutions' training steps as they really peak (:mod:`complexo.peak`): ledgers written
by reading ``blocks/conv.py`` and autograd's formulas line by line.

X = B·C_in·R²·e (the input; ·T in 3D), Y = B·C_out·S²·e (the output; ·T'), M = B·C_in·S²·e
(the depthwise output; ·T'), P = B·C_in·(T + k − 1)·(R + k − 1)²·e (the causal copy), U =
B·C_in·k²·S²·e (im2col's columns).

Direct (standard and separable, 2D and 3D): each convolution's output is one allocation and its
backward one op (``convolution_backward``: dX, dW and db at once); the input it saved is freed
after it. With ``--causal`` ``F.pad`` copies x into P, which the first convolution saves, so the
first backward's dX is P-sized too, and the pad's backward (a negative pad) cuts x's gradient
out of it: P and its gradient are live at once, the step's peak unless the output outweighs
them.

Unfold (``UnfoldConv``): ``F.unfold`` writes the columns U, and ``F.linear`` takes their
transpose (B, S², C_in·k²). Contiguous (S² or C_in·k² is 1) with a bias, it is one ``addmm``;
otherwise ``matmul`` folds (B, S²) into one dimension, a view for B = 1, else a contiguous copy
(a second U) that the product saves, the first freed at the forward's return, and a bias is
added out of place (under FakeTensorMode: the real CPU adds it in place). So the columns are
live from the forward to the product's backward, and the backward's dcols (a U beside the saved
columns) is the step's peak unless the forward's two copies are. col2im folds dcols into x's
gradient, dcols freed after. The CPU's col2im holds more: its output is made U bytes large and
resized down to x's shape, and the transposed dcols copied contiguous (tests/test_peak_blocks).
"""

from __future__ import annotations

from complexo.cost import Kind
from complexo.peak import Ledger
from complexo.symbols import B, C_in, C_out, e, k


def ledger(cfg, side: str) -> Ledger:
    """The step's allocations and frees of one side ("standard" or "separable") of ``cfg`` (a
    conv Config), as sympy over B, C_in, C_out, R, [T,] k, s, e."""
    from complexo.analyses.conv_cost import padded, volumes

    vin, vout = volumes(cfg.dims)
    X, Y, M = B * C_in * vin * e, B * C_out * vout * e, B * C_in * vout * e
    book = Ledger(weights=cfg.model(side).total(Kind.PARAMS) * e, x=X)
    if side == "standard" and cfg.impl == "unfold":
        _unfold(book, cfg, X, Y)
        return book
    taps = k**cfg.dims
    first = "x"
    if cfg.causal:
        book.alloc("F.pad: x padded, k − 1 frames in front", padded=B * C_in * padded(3, True) * e)
        first = "padded"
    size = book.live[first]
    if side == "standard":
        book.alloc("the convolution's output", out=Y)
        book.alloc("out.sum() and its seed gradient", loss=2 * e)
        book.phase = "backward"
        grads = _grads("conv", C_out * C_in * taps, C_out, cfg.bias)
        book.alloc("the convolution's backward: dX, dW, db", d_in=size, **grads)
    else:
        book.alloc("the depthwise convolution's output", mid=M)
        book.alloc("the pointwise convolution's output", out=Y)
        book.alloc("out.sum() and its seed gradient", loss=2 * e)
        book.phase = "backward"
        grads = _grads("pointwise", C_out * C_in, C_out, cfg.bias)
        book.alloc("the pointwise convolution's backward: dX, dW, db", d_mid=M, **grads)
        book.free("mid")
        grads = _grads("depthwise", C_in * taps, C_in, cfg.bias)
        book.alloc("the depthwise convolution's backward: dX, dW, db", d_in=size, **grads)
        book.free("d_mid")
    if cfg.causal:
        book.free("padded")
        book.alloc("F.pad's backward: x's gradient cut out of the padded one", g_x=X)
        book.free("d_in")
    book.free("loss")
    book.phase = "optimizer"
    return book


def _grads(layer: str, weights, channels, bias: bool) -> dict:
    """A convolution's dW (and db) as one allocation's named tensors."""
    grads = {f"g_w_{layer}": weights * e}
    if bias:
        grads[f"g_b_{layer}"] = channels * e
    return grads


def _columns_layout(cfg) -> tuple[bool, bool]:
    """(contiguous, copied) of the transposed columns (B, S², C_in·k²) that ``F.linear`` is
    given, strides (C_in·k²·S², 1, S²): contiguous when S² or C_in·k² is 1 (a size-1 dimension
    has no stride to match); otherwise folding (B, S²) into one dimension is a view for B = 1
    only, a contiguous copy for B > 1."""
    from complexo.analyses.conv_cost import out_side
    from complexo.cost import evaluate

    contiguous = evaluate(out_side(), cfg.values) == 1 or cfg.cin * cfg.kernel**2 == 1
    return contiguous, not contiguous and cfg.batch > 1


def _unfold(book: Ledger, cfg, X, Y) -> None:
    """``F.linear`` takes one of three paths: contiguous columns with a bias, one ``addmm``
    (backward: dcols, dW, db); otherwise ``matmul`` (the columns copied first for B > 1), and
    with a bias an out-of-place add (backward: db, then ``mm``'s dW, dcols)."""
    from complexo.analyses.conv_cost import out_side

    U = B * C_in * k**2 * out_side() ** 2 * e
    contiguous, copied = _columns_layout(cfg)
    fused = cfg.bias and contiguous
    book.alloc("F.unfold: the columns (im2col)", cols=U)
    if copied:
        book.alloc("F.linear: the transposed columns copied contiguous (saved)", cols_c=U)
    if fused:
        book.alloc("addmm: cols·Wᵀ + b", out=Y)
    else:
        book.alloc("the product cols·Wᵀ", y=Y)
        if cfg.bias:
            book.alloc("+ the bias (out of place)", out=Y)
            book.free("y")
        else:
            book.live["out"] = book.live.pop("y")
    if copied:
        book.free("cols")  # forward's local; the copy is what the product keeps
        book.live["cols"] = book.live.pop("cols_c")
    book.alloc("out.sum() and its seed gradient", loss=2 * e)
    book.phase = "backward"
    dw = {"g_w": C_out * C_in * k**2 * e}
    if fused:
        book.alloc("addmm's backward: dcols", d_cols=U)
        book.alloc("addmm's backward: dW", **dw)
        book.alloc("addmm's backward: db", g_b=C_out * e)
    else:
        if cfg.bias:
            book.alloc("the bias's backward: Σ dY", g_b=C_out * e)
        book.alloc("the product's backward: dW", **dw)
        book.alloc("the product's backward: dcols", d_cols=U)
    book.free("cols")
    book.alloc("col2im: dcols folded into x's gradient", g_x=X)
    book.free("d_cols", "loss")
    book.phase = "optimizer"


def tracked(cfg, side: str, optimizer: str = "sgd"):
    """The same step measured by MemTracker under FakeTensorMode
    (:func:`complexo.peak.tracked_build`)."""
    from complexo.analyses.conv import build
    from complexo.peak import tracked_build

    return tracked_build(build, cfg, side, optimizer=optimizer)


def all_live(cfg, side: str) -> int:
    """The sum the issue measured against: weights and their gradients, the input, the output
    and every saved activation, as if all were live at once (SGD keeps no state); x once where
    the first convolution saves x itself."""
    from complexo.analyses.conv_cost import volumes
    from complexo.cost import evaluate

    model, values = cfg.model(side), cfg.values
    weights = evaluate(model.total(Kind.PARAMS), values) * values[e]
    x_in, out = volumes(cfg.dims)
    saves_x = not cfg.causal and (side == "separable" or cfg.impl == "direct")
    given = 0 if saves_x else evaluate(B * C_in * x_in * e, values)
    y = evaluate(B * C_out * out * e, values)
    return 2 * weights + given + y + evaluate(model.total(Kind.ACTIVATION), values)


def quantity(cfg, side: str):
    """The training step's peak as a quantity, MemTracker's reading beside it, and its note."""
    from complexo.peak import peak_quantity

    return peak_quantity(
        ledger(cfg, side), cfg.values, lambda: tracked(cfg, side), all_live(cfg, side)
    )
