"""vit's proofs (:mod:`complexo.prove`): a whole ViT built with symbolic B, patch side p,
patches per side g = R/p (so p divides R by construction), C, K, heads h, head size hs = d/h
and MLP width f (its L encoder blocks are a Python loop: L stays the preset's number), traced,
and its hand formulas proved equal for all shapes. Slow (seconds per layer): marked so."""

from __future__ import annotations

from complexo.prove import Case, Dim, Symbolic, hand_from
from complexo.symbols import L, R, d, h, p

TRACED = {
    "forward_matmul_flops": "forward_matmul_flops",
    "backward_flops": "backward_matmul_flops",  # convolutions and matmuls only (its label)
    "params": "params",
    "activation_bytes": "activation_bytes",
}

UNTRACED = {
    "forward_flops": "LayerNorm's, GELU's, softmax's, the biases' and residual adds' work is "
    "complexo's per-element convention; the matmul part is proved",
}


def variant(cfg) -> str:
    """A checkpointed ViT is a variant of its own, which the suite does not trace."""
    return cfg.model if cfg.checkpoint == "none" else f"{cfg.model}, checkpoint {cfg.checkpoint}"


def cases(cfg) -> list[Case]:
    from complexo.analyses.vit import QUANTITIES, cost_model
    from complexo.presets import VITS

    arch = VITS[cfg.model]
    hand = {
        k: v.subs(L, arch.layers) for k, v in hand_from(QUANTITIES, cost_model(), TRACED).items()
    }
    dims = (
        Dim("B", 2),
        Dim("p", 3),
        Dim("g", 5, means=R / p),
        Dim("C", 7),
        Dim("K", 11),
        Dim("h", 13),
        Dim("hs", 17, means=d / h),
        Dim("f", 19),
    )

    def build(size):
        import torch

        from complexo.blocks.vit import ViT
        from complexo.presets import ViTConfig

        width = size["h"] * size["hs"]
        shape = ViTConfig(size["p"], width, size["h"], arch.layers, size["f"], size["K"], size["C"])
        side = size["g"] * size["p"]
        return ViT(shape, side), (torch.empty(size["B"], size["C"], side, side),)

    return [Case(dims, build, hand, TRACED)]


SYMBOLIC = Symbolic(
    variant=variant,
    cases=cases,
    variants={"deit-ti16": {"model": "deit-ti16"}},
    untraced=UNTRACED,
    slow=frozenset({"deit-ti16"}),
)
