"""The cost of attention over video, three ways, built from one multi-head self-attention layer's
model (:func:`complexo.analyses.mhsa_cost.cost_model`, explicit matmuls, checked by its own
tests) by saying how many sequences of how many tokens each layer sees:

==========  ===========================  ==========  =====================
attention   layer                        sequences   tokens per sequence
==========  ===========================  ==========  =====================
joint       all tokens of the clip       B           T·S
factorized  temporal (per patch)         B·S         T
            spatial (per frame)          B·T         S
window      one per 3D window            B·nW        N = w_t·w_h·w_w
==========  ===========================  ==========  =====================

nW = ⌈T/w_t⌉·⌈√S/w_h⌉·⌈√S/w_w⌉ windows per clip, the grid padded with zeros up to a multiple of
the window (√S = R/p is the token grid's side). A layer over b sequences of n tokens costs
8·b·n·d² for its projections and 4·b·n²·d for scores and A·V, so the three attention cores are
4·B·(T·S)²·d, 4·B·T·S·(S + T)·d and 4·B·nW·N²·d = 4·B·T·S·N·d (no padding).

>>> from complexo.cost import plain
>>> plain(attention_core(cost_model("factorized")))
'4·B·S·T·d·(S + T)'
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import sympy

from complexo.analyses.mhsa_cost import cost_model as layer_model
from complexo.cost import CostModel, Kind
from complexo.symbols import B, S, T, n, w_h, w_t, w_w

ATTNS = ("joint", "factorized", "window")
SIDE = sympy.sqrt(S)  # the token grid's side, R/p
N = w_t * w_h * w_w  # tokens per window
WINDOWS = sympy.ceiling(T / w_t) * sympy.ceiling(SIDE / w_h) * sympy.ceiling(SIDE / w_w)  # nW
PADDED = N * WINDOWS  # tokens after padding: w_t·⌈T/w_t⌉ · w_h·⌈√S/w_h⌉ · w_w·⌈√S/w_w⌉
# (prefix of the layer's term names, sequences, tokens per sequence) of each attention
LAYERS = {
    "joint": (("", B, T * S),),
    "factorized": (("temporal.", B * S, T), ("spatial.", B * T, S)),
    "window": (("", B * WINDOWS, N),),
}
KEPT = (Kind.FORWARD, Kind.BACKWARD, Kind.PARAMS, Kind.ACTIVATION)
CORE = ("scores", "attn_v")  # the attention core's matrix products, per layer


@cache
def cost_model(attn: str, bias: bool = True) -> CostModel:
    """The block's terms: each layer's MHSA terms at its sequences and tokens, named
    ``temporal.scores``, ``spatial.q_proj``, ... where there are two layers. The MHSA model's
    memory terms are kept only for the attention matrix (k and v are no decoder's cache here,
    and its traffic model is the fused kernel's).

    >>> m = cost_model("joint")
    >>> m.term(Kind.FORWARD, "scores").expr
    2*B*S**2*T**2*d
    """
    layer = layer_model("naive", causal=False, bias=bias)
    terms = []
    for prefix, sequences, tokens in LAYERS[attn]:
        for t in layer.terms(tuple(Kind)):
            if t.kind in KEPT or t.name == "attention_matrix":
                expr = t.expr.subs({B: sequences, n: tokens}, simultaneous=True)
                terms.append(replace(t, name=prefix + t.name, expr=sympy.expand(expr)))
    return CostModel(terms)


def layer_names(attn: str, names: tuple[str, ...]) -> list[str]:
    """``names`` in every layer of ``attn``: ("scores",) -> ["temporal.scores", ...]."""
    return [prefix + name for prefix, _, _ in LAYERS[attn] for name in names]


def attention_core(model: CostModel, attn: str | None = None) -> sympy.Expr:
    """Forward FLOPs of scores and A·V, over every layer of the model."""
    return sympy.Add(
        *(t.expr for t in model.terms(Kind.FORWARD) if t.name.rsplit(".", 1)[-1] in CORE)
    )


def unpadded(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` where the windows tile the clip (no padding): ⌈x⌉ -> x. A polynomial again, for
    crossovers and big-O.

    >>> unpadded(sympy.expand(PADDED))
    S*T
    """
    return sympy.expand(expr.replace(sympy.ceiling, lambda x: x))


def window_size(window: tuple[int, int, int], T: int, side: int) -> tuple[int, int, int]:
    """Video Swin's ``get_window_size``: a window no larger than the clip, (w_t, w_h, w_w) each
    clipped to (T, √S, √S)."""
    return tuple(min(w, size) for w, size in zip(window, (T, side, side), strict=True))
