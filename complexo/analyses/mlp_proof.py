"""mlp's proofs (:mod:`complexo.prove`): each side (the GELU MLP, the gated one) built with
symbolic B, n, d, f and f_g, traced, and its hand formulas proved equal for all shapes."""

from __future__ import annotations

from complexo.prove import ELEMENTWISE, MATMULS, Case, Dim, Symbolic, hand_from

TRACED = MATMULS
ALL_FLOPS = ELEMENTWISE  # the element-wise ops by complexo's conventions

UNTRACED = {
    "forward_flops": "proved, element-wise ops by complexo's conventions, for the GELU side "
    "and a GeGLU one; a SwiGLU side's matmul part only: on the meta device SiLU's backward runs "
    "decomposed (sigmoid, sub_, mul, add), ops the conventions price apart from SiLU's 9 per "
    "element (5·B·n·f_g apart)",
    "backward_flops": "as forward_flops",
    "forward_moved_bytes": "the bytes each op reads and writes, read by hooks at fixed sizes, "
    "not a count of the trace",
}


def variant(cfg) -> str:
    """A checkpointed block is a variant of its own, which the suite does not trace."""
    name = cfg.gated + (" bias" if cfg.bias else "")
    return name if cfg.checkpoint == "none" else f"{name}, checkpoint {cfg.checkpoint}"


def cases(cfg) -> list[Case]:
    from complexo.analyses.mlp import QUANTITIES, SIDES, cost_model

    dims = (Dim("B", 3), Dim("n", 5), Dim("d", 7), Dim("f", 11), Dim("f_g", 13))
    out = []
    for side in SIDES:
        model = cost_model(side if side == "gelu" else cfg.gated, cfg.bias)
        traced = TRACED | (ALL_FLOPS if side == "gelu" or cfg.gated == "geglu" else {})
        hand = hand_from(QUANTITIES, model, traced)
        out.append(Case(dims, _build(side, cfg.gated, cfg.bias), hand, traced, side=side))
    return out


def _build(side: str, gated: str, bias: bool):
    def build(size):
        import torch

        from complexo.blocks.mlp import GatedMLP, GeluMLP

        if side == "gelu":
            module = GeluMLP(size["d"], size["f"], bias)
        else:
            module = GatedMLP(size["d"], size["f_g"], gated, bias)
        return module, (torch.empty(size["B"], size["n"], size["d"], requires_grad=True),)

    return build


SYMBOLIC = Symbolic(
    variant=variant,
    cases=cases,
    variants={
        "swiglu": {},
        "geglu": {"gated": "geglu"},
        "swiglu bias": {"bias": True},
    },
    untraced=UNTRACED,
    # one flag apart from another variant's trace: the full suite (make test-all) runs it
    slow=frozenset({"swiglu bias"}),
)
