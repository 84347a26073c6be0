"""conv's proofs (:mod:`complexo.prove`): each side (standard, depthwise-separable) built with
symbolic B, C_in, C_out, R, stride s and k = 2·j + 1 (odd by construction), 2D or 3D (T), traced
and its hand formulas proved equal for all shapes. The trace's output side
⌊(R + 2·(k − 1)/2 − k)/s⌋ + 1 reads ⌈R/s⌉ (:func:`complexo.symtrace.ceilings`), the hand
formulas' S. Causal (3D): F.pad by k − 1 frames and k//2 = j pixels, symbolic amounts, which
constant_pad_nd's meta kernel refuses (it takes concrete integers only, torch 2.13): the trace
runs torch's decomposition of it (:data:`complexo.derive.DECOMPOSED`). ``--impl unfold``:
F.unfold's aten::im2col takes kernel size, padding and stride as int[2], not SymInt, so k and s
are concrete in any trace of it (Tensor.unfold's size and step are ints too): the standard
side is proved at the config's own k and s (its variant names them), for all B, C_in, C_out and
R, im2col and its backward col2im run as their decompositions, the counters seeing the ops, and
the columns' bytes are im2col's output. Depthwise weight
gradients are counted per group, as the analysis counts them (torch's own formula counts them
ungrouped: :data:`complexo.conventions.GROUPED_CONV_NOTE`)."""

from __future__ import annotations

from complexo.prove import ELEMENTWISE, MATMULS, Case, Dim, Symbolic, hand_from
from complexo.symbols import R, k, s

TRACED = MATMULS | ELEMENTWISE  # the biases' adds and Σ dY by complexo's conventions

UNTRACED = {
    "forward_moved_bytes": "the fewest bytes a forward moves, read by hooks at fixed sizes, "
    "not a count of the trace",
}
# F.unfold's columns, as the analysis reads them: im2col's output
UNFOLDED = {"unfolded_bytes": "output_bytes:aten.im2col"}


def variant(cfg) -> str:
    parts = ["3d" if cfg.frames is not None else "2d"]
    parts += ["causal"] if cfg.causal else []
    # im2col takes k and s as int[2]: an unfold proof holds at its own k and s only
    parts += [f"unfold k={cfg.kernel} s={cfg.stride}"] if cfg.impl == "unfold" else []
    parts += [] if cfg.bias else ["no bias"]
    return " ".join(parts)


def cases(cfg) -> list[Case]:
    from complexo.analyses.conv_cost import QUANTITIES, SIDES
    from complexo.analyses.conv_cost import UNFOLDED as SPEC

    dims = [Dim("B", 3), Dim("C_in", 5), Dim("C_out", 7), Dim("j", 2, means=(k - 1) / 2)]
    dims += [Dim("s", 2), Dim("R", 11)] + ([Dim("T", 13)] if cfg.frames is not None else [])
    out = []
    for side in SIDES:
        model = cfg.model(side)
        if side == "standard" and cfg.impl == "unfold":  # k and s concrete, the rest symbolic
            traced = TRACED | UNFOLDED
            hand = hand_from((*QUANTITIES, SPEC), model, traced)
            fixed = (Dim("B", 3), Dim("C_in", 5), Dim("C_out", 7), Dim("R", 11))
            build = _unfold(cfg.kernel, cfg.stride, cfg.bias)
            residues = (R, cfg.stride) if cfg.stride > 1 else None
            at = {k: cfg.kernel, s: cfg.stride}
            out.append(Case(fixed, build, hand, traced, side=side, residues=residues, at=at))
            continue
        build = _build(side, cfg.bias, cfg.causal)
        hand = hand_from(QUANTITIES, model, TRACED)
        out.append(Case(tuple(dims), build, hand, TRACED, side=side, formulas=_grouped))
    return out


def _unfold(kernel: int, stride: int, bias: bool):
    def build(size):
        import torch

        from complexo.blocks.conv import UnfoldConv

        module = UnfoldConv(size["C_in"], size["C_out"], kernel, stride, bias)
        x = torch.empty(size["B"], size["C_in"], size["R"], size["R"], requires_grad=True)
        return module, (x,)

    return build


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
        "2d unfold k=3 s=1": {"impl": "unfold"},
        "2d unfold k=3 s=2": {"impl": "unfold", "stride": 2},
    },
    untraced=UNTRACED,
    # one flag apart from another variant's trace: the full suite (make test-all) runs it
    slow=frozenset({"2d no bias"}),
    note="--impl unfold: F.unfold's aten::im2col takes the kernel side and stride as int[2], "
    "not SymInt, so no trace of it keeps k or s symbolic: each unfold variant is proved at its "
    "own k and s, for every B, C_in, C_out and R (`complexo conv --impl unfold --kernel K "
    "--stride S --prove` proves another).",
    where={
        # every one says ⌈R/2⌉ > 1 (R ≥ 3): the trace's sample side 11 gave S ≠ 1
        "2d unfold k=3 s=2": "(ceiling(R/2) > 1, ceiling(R/2) <= ceiling(R/2)**2, "
        "9*C_in <= 9*C_in*ceiling(R/2)**2, ceiling(R/2) < ceiling(R/2)**2, "
        "B*C_out*ceiling(R/2)**2 >= 2, ceiling(R/2)**2 > 1, C_out <= C_out*ceiling(R/2), "
        "C_out < C_out*ceiling(R/2)**2, 9*B*C_in*ceiling(R/2)**2 >= 2, "
        "9*C_in*ceiling(R/2)**2 > 1, 9*C_in < 9*C_in*ceiling(R/2)**2)",
    },
)
