"""video's proofs (:mod:`complexo.prove`): joint and factorized space-time attention built
with symbolic B, T frames, S tokens per frame, h heads and head size hs = d/h, traced, and the
hand formulas proved equal for all shapes, element-wise work by complexo's conventions."""

from __future__ import annotations

from complexo.prove import ELEMENTWISE, MATMULS, Case, Dim, Symbolic, hand_from
from complexo.symbols import d, h

TRACED = MATMULS | ELEMENTWISE

UNTRACED = {
    "attention_matrix_bytes": "the softmax outputs, inside the proved activation bytes",
}


def variant(cfg) -> str:
    if getattr(cfg, "compare", False):  # three results, each marked by its own variant
        return "compare"
    return cfg.attn + ("" if cfg.bias else " no bias")


def cases(cfg) -> list[Case]:
    from complexo.analyses.video import QUANTITIES
    from complexo.analyses.video_cost import cost_model

    if cfg.attn == "window" or getattr(cfg, "compare", False):
        return []
    dims = (Dim("B", 2), Dim("T", 3), Dim("S", 5), Dim("h", 7), Dim("hs", 11, means=d / h))

    def build(size):
        import torch

        from complexo.blocks.video import BLOCKS

        width = size["h"] * size["hs"]
        block = BLOCKS[cfg.attn](width, size["h"], bias=cfg.bias)
        x = torch.empty(size["B"], size["T"], size["S"], width, requires_grad=True)
        return block, (x,)

    hand = hand_from(QUANTITIES, cost_model(cfg.attn, cfg.bias), TRACED)
    return [Case(dims, build, hand, TRACED)]


SYMBOLIC = Symbolic(
    variant=variant,
    cases=cases,
    variants={"joint": {"attn": "joint"}, "factorized": {"attn": "factorized"}},
    untraced=UNTRACED,
    unproved={
        "window": "the window's grid side is math.isqrt(S), which pins S to its sample value",
        "compare": "--compare sets three attentions side by side: prove each with --attn X --prove",
    },
)
