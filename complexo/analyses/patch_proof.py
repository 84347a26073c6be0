"""patch's proofs (:mod:`complexo.prove`): each side (the stride-p convolution, the reshape into
patches and a linear layer) built with symbolic B, C, d, p and the token grid's side g = R/p (so
that p divides R by construction), for video with frames T = p_t·g_t, traced, and its hand
formulas proved equal for all shapes: the sides' products, the biases, the parameters and what
each saves (the convolution the pixels, the linear layer the patches' copy)."""

from __future__ import annotations

from complexo.prove import ELEMENTWISE, MATMULS, Case, Dim, Symbolic, hand_from
from complexo.symbols import R, T, p, p_t

TRACED = MATMULS | ELEMENTWISE  # the biases' adds and Σ dY by complexo's conventions

UNTRACED = {
    "forward_moved_bytes": "the fewest bytes a forward moves, read by hooks at fixed sizes, "
    "not a count of the trace",
    "copy_bytes": "the patchify's aten.clone output, read off the dispatcher at fixed sizes; "
    "inside the proved activation bytes (the linear layer saves the copy)",
}


def variant(cfg) -> str:
    # a reshape that copies nothing (one channel and one token, ...) saves no copy: its own
    # variant, not the one traced here
    return ("video" if cfg.video else "image") + ("" if cfg.copies else " no copy")


def cases(cfg) -> list[Case]:
    from complexo.analyses.patch_cost import QUANTITIES, SIDES, cost_model

    if not cfg.copies:
        return []
    video = cfg.video
    dims = [Dim("B", 3), Dim("C", 5), Dim("d", 7), Dim("p", 2), Dim("g", 11, means=R / p)]
    if video:
        dims += [Dim("p_t", 13), Dim("g_t", 17, means=T / p_t)]
    return [
        Case(
            tuple(dims),
            _build(side, video),
            # general sizes: more than one channel and token, so the reshape copies
            hand_from(QUANTITIES, cost_model(side, video, copies=True), TRACED),
            TRACED,
            side=side,
        )
        for side in SIDES
    ]


def _build(side: str, video: bool):
    def build(size):
        import torch

        from complexo.blocks.patch import ConvPatchEmbed, LinearPatchEmbed

        block = ConvPatchEmbed if side == "conv" else LinearPatchEmbed
        tubelet = size["p_t"] if video else None
        frames = (size["p_t"] * size["g_t"],) if video else ()
        side_len = size["p"] * size["g"]
        module = block(size["C"], size["d"], size["p"], tubelet)
        x = torch.empty(size["B"], size["C"], *frames, side_len, side_len)  # pixels: no grad
        return module, (x,)

    return build


SYMBOLIC = Symbolic(
    variant=variant,
    cases=cases,
    variants={"image": {}, "video": {"frames": 8, "tubelet": 2}},
    untraced=UNTRACED,
    where={"video": "((R >= p) & (T >= p_t))"},
    unproved={"copy": "the trace's sizes make the reshape copy (more than one channel and token)"},
)
