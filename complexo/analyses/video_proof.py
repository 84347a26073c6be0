"""video's proofs (:mod:`complexo.prove`): joint and factorized space-time attention built
with symbolic B, T frames, S tokens per frame, h heads and head size hs = d/h, traced, and the
hand formulas proved equal for all shapes, element-wise work by complexo's conventions.

Window attention reads its grid side as math.isqrt(S), which a trace takes as the root of a
square (:func:`complexo.derive._isqrt`): the input has S = g·g tokens, g symbolic. Windows that
tile the clip (the variant "window") are symbolic too, square in space as Video Swin's are
(w_h = w_w): T = w_t·a and g = w_h·c, so each ⌈x⌉ of the hand formulas' window count is x itself
there (:func:`complexo.analyses.video_cost.unpadded`). Windows that do not tile it ("window
untiled": padded, or w_h ≠ w_w) are proved at the config's window, T and g symbolic, by residues
(:mod:`complexo.residues`): the padded clip traces to window counts ⌊T/w_t + ((−T) mod w_t)/w_t⌋
that simplify cannot equate to ⌈T/w_t⌉, but in each class T = w_t·q − r, g = lcm(w_h, w_w)·c − r
both are q (and c). The block branches on whether each axis pads, so there is one trace per way
it branches (4 for a square window, up to 8), each class proved in the one whose guards it
meets. Tracing with symbolic T and g once per branch is cheaper than once per class: 2×7×7 at
T = 2·q − 1, √S = 7·c − 3 traced in 33 s, a whole branch (any T, g) in 18 to 35 s, 2 cores
shared."""

from __future__ import annotations

import itertools

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
    if cfg.attn == "window" and not _tiles(cfg):  # proved at its own window: name it
        name += " untiled " + ",".join(map(str, cfg.clipped))
    return name + ("" if cfg.bias else " no bias")


def _tiles(cfg) -> bool:
    """Whether the window, as given, is square (w_h = w_w, as Video Swin's are) and tiles the
    clip: no padding and no clipping."""
    wt, wh, ww = cfg.window_sizes
    return wh == ww and cfg.frames % wt == 0 and cfg.side % wh == 0


def cases(cfg) -> list[Case]:
    from complexo.analyses.video import QUANTITIES
    from complexo.analyses.video_cost import cost_model, unpadded

    if getattr(cfg, "compare", False):
        return []
    hand = hand_from(QUANTITIES, cost_model(cfg.attn, cfg.bias), TRACED)
    if cfg.attn == "window" and not _tiles(cfg):
        return _untiled(cfg, hand)
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


# hints of the sizes every padded trace shares (distinct, as the ShapeEnv needs them)
FIXED = {"B": 2, "h": 13, "hs": 17}


def _untiled(cfg, hand) -> list[Case]:
    """Windows that pad the clip, at the config's (clipped) window: T and the grid side g = √S
    symbolic, the window numbers, so that the hand formulas' ⌈T/w_t⌉ and ⌈√S/w_h⌉ are proved by
    residues (:mod:`complexo.residues`): T = w_t·q − r, √S = lcm(w_h, w_w)·c − r. One trace per
    way the block can branch (which of its three axes pad), at sizes that branch that way;
    a way no size takes (w_w | w_h: no √S pads the columns alone) has none."""
    from math import lcm

    from complexo.residues import Residues

    wt, wh, ww = cfg.clipped
    m = lcm(wh, ww)
    classes = Residues(((T, wt, "q"), (sympy.sqrt(S), m, "c")))
    numbers = {w_t: wt, w_h: wh, w_w: ww}
    hand = {q: x.subs(numbers) for q, x in hand.items()}
    out = []
    for pads in itertools.product((True, False), repeat=3):
        frames = _hint(2 * wt + 1, lambda x, p=pads: (x % wt != 0) == p[0], set(FIXED.values()))
        taken = set(FIXED.values()) | {frames}
        side = _hint(2 * m + 1, lambda x, p=pads: (x % wh != 0, x % ww != 0) == p[1:], taken)
        if frames is None or side is None:
            continue
        dims = (
            Dim("B", FIXED["B"]),
            Dim("T", frames),
            Dim("g", side, means=sympy.sqrt(S)),
            Dim("h", FIXED["h"]),
            Dim("hs", FIXED["hs"], means=d / h),
        )
        out.append(Case(dims, _padded(cfg.bias, (wt, wh, ww)), hand, TRACED, classes=classes))
    return out


def _hint(least: int, ok, taken: set[int]) -> int | None:
    """The first size from ``least`` that branches as ``ok`` says and no other size takes; None
    when none in the next periods does. From 2·m + 1: at least 3 windows along the axis, so
    that the trace does not take its window count for 1 or 2 (specialised, or merged with B)."""
    for x in range(least, 3 * least + 8):
        if ok(x) and x not in taken:
            return x
    return None


def _padded(bias: bool, window: tuple[int, int, int]):
    def build(size):
        import torch

        from complexo.blocks.video import WindowAttention

        width = size["h"] * size["hs"]
        side = size["g"]  # √S: the block's math.isqrt finds it
        block = WindowAttention(width, size["h"], window, bias=bias)
        x = torch.empty(size["B"], size["T"], side * side, width, requires_grad=True)
        return block, (x,)

    return build


SYMBOLIC = Symbolic(
    variant=variant,
    cases=cases,
    variants={
        "joint": {"attn": "joint"},
        "factorized": {"attn": "factorized"},
        "window": {"attn": "window"},  # 8×7×7 windows over 8 frames of 14×14 tokens
        # 2×7×7 windows over 3 frames of 14×14 tokens: the frames padded to 4
        "window untiled 2,7,7": {"attn": "window", "window": "2,7,7", "frames": 3},
    },
    untraced=UNTRACED,
    slow=frozenset({"window untiled 2,7,7"}),
    where={"window untiled 2,7,7": "B*S*T*d >= 2, h > 1, sqrt(S) >= 7"},
    note="window untiled 2,7,7: every B, d, h and every T ≥ 2, √S ≥ 7 for 2×7×7 windows, by the "
    "14 residue classes T = 2·q − r (r < 2), √S = 7·c − r (r < 7), from 4 traces (one per way "
    "the block branches: frames padded or not, rows and columns padded or not). Any other "
    "window is proved the same way by --prove, at its own window (w_h ≠ w_w: lcm(w_h, w_w) "
    "classes of √S, up to 8 traces); the output claims only 2,7,7 without it",
    unproved={
        "compare": "--compare sets three attentions side by side: prove each with --attn X --prove",
    },
)
