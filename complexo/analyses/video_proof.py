"""video's proofs (:mod:`complexo.prove`): joint and factorized space-time attention built
with symbolic B, T frames, S tokens per frame, h heads and head size hs = d/h, traced, and the
hand formulas proved equal for all shapes, element-wise work by complexo's conventions.

Window attention reads its grid side as math.isqrt(S), which a trace takes as the root of a
square (:func:`complexo.derive._isqrt`): the input has S = g·g tokens, g symbolic. The window
is symbolic too, square in space as Video Swin's are (w_h = w_w), and tiles the clip by
construction: T = w_t·a and g = w_h·c, so each ⌈x⌉ of the hand formulas' window count is x
itself there (:func:`complexo.analyses.video_cost.unpadded`): the variant "window". Windows that
do not tile the clip (padded, or clipped to it), and w_h ≠ w_w, are "window untiled", which the
counters check at each size: a padded clip traces (24 s, nothing pinned) to window counts
⌊T/w_t + ((−T) mod w_t)/w_t⌋, nested in the windows' own sides, which are ⌈T/w_t⌉ but which
simplify leaves, and residues need a number for the modulus; w_h ≠ w_w both dividing g
(g = lcm·c) took 126 s to trace, the ShapeEnv's reshapes of products of six sizes."""

from __future__ import annotations

import sympy

from complexo.prove import ELEMENTWISE, MATMULS, Case, Dim, Symbolic, hand_from
from complexo.symbols import S, T, d, h, w_h, w_t, w_w

TRACED = MATMULS | ELEMENTWISE

UNTRACED = {
    "attention_matrix_bytes": "the softmax outputs, inside the proved activation bytes",
}


def variant(cfg) -> str:
    if getattr(cfg, "compare", False):  # three results, each marked by its own variant
        return "compare"
    name = cfg.attn
    if cfg.attn == "window" and not _tiles(cfg):
        name += " untiled"
    return name + ("" if cfg.bias else " no bias")


def _tiles(cfg) -> bool:
    """Whether the window, as given, is square (w_h = w_w, as Video Swin's are) and tiles the
    clip: no padding and no clipping."""
    wt, wh, ww = cfg.window_sizes
    return wh == ww and cfg.frames % wt == 0 and cfg.side % wh == 0


def cases(cfg) -> list[Case]:
    from complexo.analyses.video import QUANTITIES
    from complexo.analyses.video_cost import cost_model, unpadded

    if getattr(cfg, "compare", False) or (cfg.attn == "window" and not _tiles(cfg)):
        return []
    hand = hand_from(QUANTITIES, cost_model(cfg.attn, cfg.bias), TRACED)
    if cfg.attn == "window":
        hand = {q: unpadded(x).subs(w_w, w_h) for q, x in hand.items()}  # square, tiling
        return [Case(WINDOW, _window(cfg.bias), hand, TRACED)]
    dims = (Dim("B", 2), Dim("T", 3), Dim("S", 5), Dim("h", 7), Dim("hs", 11, means=d / h))

    def build(size):
        import torch

        from complexo.blocks.video import BLOCKS

        width = size["h"] * size["hs"]
        block = BLOCKS[cfg.attn](width, size["h"], bias=cfg.bias)
        x = torch.empty(size["B"], size["T"], size["S"], width, requires_grad=True)
        return block, (x,)

    return [Case(dims, build, hand, TRACED)]


# square windows (w_h = w_w) that tile the clip by construction: T = w_t·a, √S = w_h·c
WINDOW = (
    Dim("B", 2),
    Dim("a", 3, means=T / w_t),
    Dim("w_t", 5),
    Dim("w_h", 7),
    Dim("c", 11, means=sympy.sqrt(S) / w_h),
    Dim("h", 13),
    Dim("hs", 17, means=d / h),
)


def _window(bias: bool):
    def build(size):
        import torch

        from complexo.blocks.video import WindowAttention

        width = size["h"] * size["hs"]
        window = (size["w_t"], size["w_h"], size["w_h"])
        side = size["w_h"] * size["c"]  # √S: the block's math.isqrt finds it
        block = WindowAttention(width, size["h"], window, bias=bias)
        x = torch.empty(size["B"], size["w_t"] * size["a"], side * side, width, requires_grad=True)
        return block, (x,)

    return build


SYMBOLIC = Symbolic(
    variant=variant,
    cases=cases,
    variants={
        "joint": {"attn": "joint"},
        "factorized": {"attn": "factorized"},
        "window": {"attn": "window"},  # 8×7×7 windows over 8 frames of 14×14 tokens
    },
    untraced=UNTRACED,
    unproved={
        "untiled": "windows that do not tile the clip (padded, or clipped to it) trace to "
        "window counts ⌊T/w_t + ((−T) mod w_t)/w_t⌋ nested in the windows' sides, which are "
        "⌈T/w_t⌉ but which simplify leaves, and residues need a number for the modulus; "
        "w_h ≠ w_w both dividing √S took 126 s to trace (the ShapeEnv's reshapes of products "
        "of six sizes). Square windows that tile the clip are proved (the variant window)",
        "compare": "--compare sets three attentions side by side: prove each with --attn X --prove",
    },
)
