"""conv's proofs (:mod:`complexo.prove`): each side (standard, depthwise-separable) built with
symbolic B, C_in, C_out, R, stride s and k = 2·j + 1 (odd by construction), 2D or 3D (T), traced
and its hand formulas proved equal for all shapes. The trace's output side
⌊(R + 2·(k − 1)/2 − k)/s⌋ + 1 reads ⌈R/s⌉ (:func:`complexo.symtrace.ceilings`), the hand
formulas' S. Causal (3D): F.pad by k − 1 frames and k//2 = j pixels, symbolic amounts, which
constant_pad_nd's meta kernel refuses (it takes concrete integers only, torch 2.13): the trace
runs torch's decomposition of it (:data:`complexo.derive.DECOMPOSED`). Depthwise weight
gradients are counted per group, as the analysis counts them (torch's own formula counts them
ungrouped: :data:`complexo.conventions.GROUPED_CONV_NOTE`)."""

from __future__ import annotations

from complexo.prove import ELEMENTWISE, MATMULS, Case, Dim, Symbolic, hand_from
from complexo.symbols import k

TRACED = MATMULS | ELEMENTWISE  # the biases' adds and Σ dY by complexo's conventions

UNTRACED = {
    "forward_moved_bytes": "the fewest bytes a forward moves, read by hooks at fixed sizes, "
    "not a count of the trace",
    "unfolded_bytes": "with --impl unfold only, which has no symbolic trace",
}


def variant(cfg) -> str:
    parts = ["3d" if cfg.frames is not None else "2d"]
    parts += [name for name, on in (("causal", cfg.causal), ("unfold", cfg.impl == "unfold")) if on]
    parts += [] if cfg.bias else ["no bias"]
    return " ".join(parts)


def cases(cfg) -> list[Case]:
    from complexo.analyses.conv_cost import QUANTITIES, SIDES

    if cfg.impl == "unfold":
        return []
    dims = [Dim("B", 3), Dim("C_in", 5), Dim("C_out", 7), Dim("j", 2, means=(k - 1) / 2)]
    dims += [Dim("s", 2), Dim("R", 11)] + ([Dim("T", 13)] if cfg.frames is not None else [])
    return [
        Case(
            tuple(dims),
            _build(side, cfg.bias, cfg.causal),
            hand_from(QUANTITIES, cfg.model(side), TRACED),
            TRACED,
            side=side,
            formulas=_grouped,
        )
        for side in SIDES
    ]


def _grouped():
    from complexo.measure import GROUPED_CONV_FORMULAS

    return GROUPED_CONV_FORMULAS


def _build(side: str, bias: bool, causal: bool = False):
    def build(size):
        import torch

        from complexo.blocks.conv import DepthwiseSeparableConv, StandardConv

        block = StandardConv if side == "standard" else DepthwiseSeparableConv
        frames = (size["T"],) if "T" in size else ()
        args = (size["C_in"], size["C_out"], 2 * size["j"] + 1, size["s"], bias)
        module = block(*args, dims=3 if frames else 2, causal=causal)
        x = torch.empty(size["B"], size["C_in"], *frames, size["R"], size["R"], requires_grad=True)
        return module, (x,)

    return build


SYMBOLIC = Symbolic(
    variant=variant,
    cases=cases,
    variants={
        "2d": {},
        "2d no bias": {"bias": False},
        "3d": {"frames": 8},
        "3d causal": {"frames": 8, "causal": True},
    },
    untraced=UNTRACED,
    # one flag apart from another variant's trace: the full suite (make test-all) runs it
    slow=frozenset({"2d no bias"}),
    unproved={
        "unfold": "F.unfold pins every size to its sample value in the trace",
    },
)
