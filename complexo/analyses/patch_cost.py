"""The patch embedding's cost model (see :mod:`complexo.analyses.patch` for the symbols and the
analysis): one term per line for each side, the convolution with kernel = stride = p and the
reshape into patches + linear layer, over images or (with a tubelet) video.

Every pixel meets every one of the d filters exactly once, so the product's FLOPs are
2·B·N·(C·p²)·d = 2·B·(R/p)²·C·p²·d = 2·B·C·R²·d: p cancels (sympy does it here), and so does p_t.
"""

from __future__ import annotations

from complexo.analyses.vision import CONV, CONV_BWD
from complexo.conventions import ELEMENTWISE_FLOPS
from complexo.cost import CostModel, Kind, Terms
from complexo.result import QuantitySpec
from complexo.symbols import B, C, R, T, d, e, p, p_t

SIDES = ("conv", "linear")
COPY = "aten.clone"  # the patchify's copy, as the dispatcher sees it
PRODUCT = ("aten::linear", "aten.addmm")  # fvcore's and torch's names of the linear side's product
OPS = {  # (forward, backward dW, backward db) ops of each side
    "conv": (CONV, CONV_BWD, CONV_BWD),
    "linear": (PRODUCT, ("aten.mm",), ("aten.sum",)),
}


def sizes(video: bool):
    """(pixels per image or clip, tokens N, values per patch): C·R², (R/p)², C·p² or
    C·T·R², (T/p_t)·(R/p)², C·p_t·p²."""
    if not video:
        return C * R**2, (R / p) ** 2, C * p**2
    return C * T * R**2, (T / p_t) * (R / p) ** 2, C * p_t * p**2


def cost_model(side: str, video: bool = False, copies: bool = True) -> CostModel:
    """The symbolic cost of one side: forward and backward FLOPs (the pixels need no gradient:
    dW and db only), parameters, saved activations, bytes moved and the patchify's copy
    (``copies=False``: none, where patch order is already memory order; see :func:`copies`).

    >>> from complexo.cost import plain
    >>> plain(cost_model("linear").total(Kind.FORWARD, matmul_only=True))
    '2·B·C·R²·d'
    """
    t = Terms()
    pixels, tokens, patch = sizes(video)
    x, y = B * pixels, B * tokens * d  # the input (B, C, [T,] R, R), the output (B, N, d)
    weights = patch * d
    flops = 2 * B * tokens * patch * d  # (B·N, C·p²) x (C·p², d)
    forward, dw, db = OPS[side]
    what = "conv: patches ⋆ W" if side == "conv" else "patches · Wᵀ"
    t.add(Kind.FORWARD, "embed", flops, mm=True, ops=forward, note=what)
    t.add(Kind.FORWARD, "embed_bias", ELEMENTWISE_FLOPS * y, ops=forward, note="+ b per output")
    t.add(Kind.BACKWARD, "embed.dw", flops, mm=True, ops=dw, tags={"dw"}, note="patchesᵀ · dY")
    t.add(Kind.BACKWARD, "embed.db", ELEMENTWISE_FLOPS * y, ops=db, tags={"db"}, note="Σ dY")
    t.add(Kind.PARAMS, "embed", weights, tags={"weights"})
    t.add(Kind.PARAMS, "embed_bias", d, tags={"bias"})
    if side == "conv":
        t.add(Kind.ACTIVATION, "input", x * e, note="x, kept by the convolution for dW")
        t.add(
            Kind.MEMORY,
            "moved_embed",
            (x + weights + d + y) * e,
            tags={"moved", "embed"},
            note="reads x, W, b; writes y",
        )
        return t.model()
    t.add(Kind.ACTIVATION, "patches", x * e, note="the copy in patch order, kept for dW")
    if not copies:
        t.add(Kind.MEMORY, "moved_embed", (x + weights + d + y) * e, tags={"moved", "embed"})
        return t.model()
    t.add(
        Kind.MEMORY,
        "moved_patchify",
        2 * x * e,
        tags={"moved", "patchify"},
        note="reads x; writes it in patch order",
    )
    t.add(
        Kind.MEMORY,
        "moved_embed",
        (x + weights + d + y) * e,
        tags={"moved", "embed"},
        note="reads the patches, W, b; writes y",
    )
    t.add(Kind.MEMORY, "copy", x * e, tags={"copy"}, note="B·C·[T·]R², aten.clone")
    return t.model()


def copies(channels: int, frames: int, side: int, tubelet: int, patch: int) -> bool:
    """Whether reshaping into patches copies: whether a dimension of more than one element moves
    past another in the permute. x is laid out (C, T/p_t, p_t, R/p, p, R/p, p), the patches
    (T/p_t, R/p, R/p, C, p_t, p, p): C moves past the tokens, p_t past the token rows, p past the
    token columns. ``side``: R/p; ``frames``: T/p_t (1 for an image).

    >>> copies(3, 1, 14, 1, 16), copies(3, 1, 1, 1, 16), copies(1, 1, 8, 1, 1)
    (True, False, False)
    """
    tokens = frames * side**2
    return (channels > 1 and tokens > 1) or (side > 1 and (tubelet > 1 or patch > 1))


QUANTITIES = (
    QuantitySpec("forward_flops", "forward FLOPs", Kind.FORWARD),
    QuantitySpec("forward_matmul_flops", "  of which the product", Kind.FORWARD, matmul_only=True),
    QuantitySpec("backward_flops", "backward FLOPs (dW, db: pixels need no dX)", Kind.BACKWARD),
    QuantitySpec(
        "backward_matmul_flops", "  of which the product (dW)", Kind.BACKWARD, matmul_only=True
    ),
    QuantitySpec("params", "parameters", Kind.PARAMS),
    QuantitySpec("activation_bytes", "activations saved for backward", Kind.ACTIVATION),
    QuantitySpec(
        "forward_moved_bytes", "bytes moved by a forward (fewest)", Kind.MEMORY, tag="moved"
    ),
    QuantitySpec("copy_bytes", "the patchify copy (aten.clone)", Kind.MEMORY, tag="copy"),
)
