"""norm's proofs (:mod:`complexo.prove`): torch's module and complexo's reference, built with
symbolic sizes (B, n, d for tokens; B, C, R for images; GroupNorm's C = g·(C/g)), traced in
training, and their parameters and saved bytes proved equal to the hand formulas for all
shapes. Every FLOP of a normalisation is element-wise: those are complexo's per-element
conventions, which no counter applies (FlopCounterMode counts none of them). torch's
GroupNorm kernel pins the group count g to its sample value, so for GroupNorm only the
reference is traced (its parameters are torch's: γ and β of C each); torch's saved bytes are
left to the counters."""

from __future__ import annotations

from complexo.prove import Case, Dim, Symbolic, hand_from
from complexo.symbols import C, g

TORCH = {"params": "params", "activation_bytes": "activation_bytes"}
REFERENCE = {"reference_saved_bytes": "activation_bytes"}

UNTRACED = {
    "forward_flops": "all element-wise: complexo's per-element conventions (7 per element "
    "with γ and β), which no counter applies",
    "backward_flops": "as forward_flops (13 per element with γ and β)",
    "buffer_bytes": "running statistics, state rather than a count of the run",
    "forward_moved_bytes": "the fewest bytes a forward moves, not a count of the trace",
}


def variant(cfg) -> str:
    parts = [cfg.kind, cfg.shape_layout]
    parts += [] if cfg.affine else ["no affine"]
    parts += [] if cfg.train else ["eval"]
    return " ".join(parts)


def cases(cfg) -> list[Case]:
    from complexo.analyses.norm import QUANTITIES
    from complexo.analyses.norm_cost import cost_model

    if not cfg.train:
        return []
    tokens = cfg.shape_layout == "tokens"
    model = cost_model(cfg.kind, cfg.shape_layout, cfg.affine, cfg.train)
    dims = [Dim("B", 3)]
    if tokens:
        dims += [Dim("n", 5), Dim("d", 7)]
    elif cfg.kind == "groupnorm":
        dims += [Dim("g", 2), Dim("cg", 3, means=C / g), Dim("R", 5)]
    else:
        dims += [Dim("C", 6), Dim("R", 5)]
    traces = [("torch", TORCH), ("reference", REFERENCE)]
    if cfg.kind == "groupnorm":  # torch's kernel pins g to its sample value: the reference's
        traces = [("reference", {"params": "params", **REFERENCE})]  # parameters, the same
    return [
        Case(tuple(dims), _build(cfg, impl), hand_from(QUANTITIES, model, traced), traced)
        for impl, traced in traces
    ]


def _build(cfg, impl: str):
    def build(size):
        import torch
        import torch.nn as nn

        from complexo.blocks import norm as ref

        tokens = cfg.shape_layout == "tokens"
        c = size["d"] if tokens else size.get("C") or size["g"] * size["cg"]
        shape = (c,) if tokens else (c, size["R"], size["R"])
        mine, kind, affine = impl == "reference", cfg.kind, cfg.affine
        if kind == "layernorm":
            module = (ref.LayerNorm if mine else nn.LayerNorm)(shape, 1e-5, affine)
        elif kind == "rmsnorm":
            module = (ref.RMSNorm if mine else nn.RMSNorm)(shape, 1e-6, affine)
        elif kind == "batchnorm":
            bn = nn.BatchNorm1d if tokens else nn.BatchNorm2d
            module = ref.BatchNorm(c, affine=affine) if mine else bn(c, affine=affine)
            module = ref.TokenBatchNorm(module) if tokens else module
        elif kind == "groupnorm":
            groups = size["g"]
            module = (
                ref.GroupNorm(c, groups, affine=affine)
                if mine
                else nn.GroupNorm(groups, c, affine=affine)
            )
        else:
            module = (ref.InstanceNorm if mine else nn.InstanceNorm2d)(c, affine=affine)
        lead = (size["B"], size["n"]) if tokens else (size["B"],)
        return module.train(), (torch.empty(*lead, *shape, requires_grad=True),)

    return build


SYMBOLIC = Symbolic(
    variant=variant,
    cases=cases,
    variants={
        "layernorm tokens": {"kind": "layernorm"},
        "layernorm tokens no affine": {"kind": "layernorm", "affine": False},
        "rmsnorm tokens": {"kind": "rmsnorm"},
        "batchnorm image": {"kind": "batchnorm"},
        "batchnorm tokens": {"kind": "batchnorm", "layout": "tokens"},
        "groupnorm image": {"kind": "groupnorm"},
        "instancenorm image": {"kind": "instancenorm"},
    },
    untraced=UNTRACED,
    # one flag apart from another variant's trace: the full suite (make test-all) runs it
    slow=frozenset({"layernorm tokens no affine", "batchnorm tokens"}),
    unproved={"eval": "an inference forward: nothing is saved for a backward"},
)
