"""cnn's proofs (:mod:`complexo.prove`): a whole ResNet built with symbolic B, R, C, K and w
(its depths are Python loops: D1..D4 stay the preset's numbers), traced, and its hand formulas
proved equal for all shapes. The trace's sides nest (⌈⌈R/2⌉/2⌉ ...), the hand formulas write
⌈R/2^k⌉: equal by residues, R = 32·k + j for each j < 32, each case by simplify. Slow (tens
of seconds a model): marked so the quick loop skips them."""

from __future__ import annotations

from complexo.prove import Case, Dim, Symbolic, hand_from
from complexo.symbols import D, R

TRACED = {
    "forward_matmul_flops": "forward_matmul_flops",
    "backward_flops": "backward_matmul_flops",  # convolutions and matmuls only (its label)
    "params": "params",
    "activation_bytes": "activation_bytes",
}

UNTRACED = {
    "forward_flops": "BatchNorm's, ReLU's, pooling's and the residual adds' work is complexo's "
    "per-element convention; the convolutions' and classifier's part is proved",
}


def variant(cfg) -> str:
    return cfg.model


def cases(cfg) -> list[Case]:
    from complexo.analyses.cnn import QUANTITIES, cost_model
    from complexo.presets import RESNETS

    arch = RESNETS[cfg.model]
    depths = dict(zip(D, arch.depths, strict=True))
    hand = {
        k: v.subs(depths) for k, v in hand_from(QUANTITIES, cost_model(arch.block), TRACED).items()
    }
    dims = (Dim("B", 2), Dim("R", 67), Dim("C", 3), Dim("K", 10), Dim("w", 5))

    def build(size):
        import torch

        from complexo.blocks.resnet import ResNet
        from complexo.presets import ResNetConfig

        net = ResNet(ResNetConfig(arch.block, arch.depths, size["w"], size["K"], size["C"]))
        return net, (torch.empty(size["B"], size["C"], size["R"], size["R"]),)

    return [Case(dims, build, hand, TRACED, residues=(R, 32))]


# every stage's side above 1 (the trace ran at R = 67: sides 34, 17, 9, 5, 3)
_WHERE = (
    "("
    + ", ".join(
        f"ceiling(R/{2**i}) < ceiling(R/{2**i})**2, ceiling(R/{2**i}) > 1" for i in range(1, 6)
    )
    + ")"
)

SYMBOLIC = Symbolic(
    variant=variant,
    cases=cases,
    variants={"resnet18": {"model": "resnet18"}, "resnet50": {"model": "resnet50"}},
    untraced=UNTRACED,
    slow=frozenset({"resnet18", "resnet50"}),
    where={"resnet18": _WHERE, "resnet50": _WHERE},
)
