"""The patch embeddings' training steps as they really peak (:mod:`complexo.peak`): ledgers
written by reading ``blocks/patch.py`` and autograd's formulas line by line.

X = B·C·[T·]R²·e (the pixels, given; they need no gradient), Y = B·N·d·e (the tokens), W =
(C·[p_t·]p²·d + d)·e (the weights and bias).

Conv: the convolution's output (B, d, N) is the only allocation of the forward (flatten and
transpose are views); its backward is one op, ``convolution_backward`` with dW and db only (no
dX: the pixels need none), W bytes at once. Linear: the patchify copies the pixels into patch
order (``contiguous()``: an ``aten.clone`` of X bytes, unless patch order is memory order), the
copy is what ``addmm`` saves for dW; the backward's ``mm`` makes dW, then ``sum`` db, and the
copy is freed once the node has run. So the linear side holds one more X through the whole
step: its peak is the conv side's plus the copy, in the backward, at db.
"""

from __future__ import annotations

from complexo.cost import Kind
from complexo.peak import Ledger
from complexo.symbols import B, d, e


def ledger(cfg, side: str) -> Ledger:
    """The step's allocations and frees of one side ("conv" or "linear") of ``cfg`` (a patch
    Config), as sympy over B, C, R, p, d, e (and T, p_t for video)."""
    from complexo.analyses.patch_cost import sizes

    pixels, tokens, patch = sizes(cfg.video)
    X, Y = B * pixels * e, B * tokens * d * e
    book = Ledger(weights=cfg.model(side).total(Kind.PARAMS) * e, x=X)
    if side == "linear" and cfg.copies:
        book.alloc("patchify: the pixels copied into patch order (saved by addmm)", patches=X)
    product = "the convolution's output" if side == "conv" else "addmm: patches·Wᵀ + b"
    book.alloc(product, out=Y)
    book.alloc("out.sum() and its seed gradient", loss=2 * e)
    book.phase = "backward"
    if side == "conv":
        book.alloc("the convolution's backward: dW, db (no dX)", g_w=patch * d * e, g_b=d * e)
    else:
        book.alloc("addmm's backward: dW (mm; no dX)", g_w=patch * d * e)
        book.alloc("addmm's backward: db (Σ dY)", g_b=d * e)
        if cfg.copies:
            book.free("patches")
    book.free("loss")
    book.phase = "optimizer"
    return book


def tracked(cfg, side: str, optimizer: str = "sgd"):
    """The same step measured by MemTracker under FakeTensorMode
    (:func:`complexo.peak.tracked_build`)."""
    from complexo.analyses.patch import build
    from complexo.peak import tracked_build

    return tracked_build(build, cfg, side, optimizer=optimizer)


def all_live(cfg, side: str) -> int:
    """The sum the issue measured against: weights and their gradients, the pixels, the output
    and every saved activation, as if all were live at once (SGD keeps no state); the pixels
    once where the product saves them themselves (conv, or a patchify that copies nothing)."""
    from complexo.analyses.patch_cost import sizes
    from complexo.cost import evaluate

    model, values = cfg.model(side), cfg.values
    pixels, tokens, _ = sizes(cfg.video)
    weights = evaluate(model.total(Kind.PARAMS), values) * values[e]
    saves_x = side == "conv" or not cfg.copies
    given = 0 if saves_x else evaluate(B * pixels * e, values)
    out = evaluate(B * tokens * d * e, values)
    return 2 * weights + given + out + evaluate(model.total(Kind.ACTIVATION), values)


def quantity(cfg, side: str):
    """The training step's peak as a quantity, MemTracker's reading beside it, and its note."""
    from complexo.peak import peak_quantity

    return peak_quantity(
        ledger(cfg, side), cfg.values, lambda: tracked(cfg, side), all_live(cfg, side)
    )
