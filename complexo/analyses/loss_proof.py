"""loss's proofs (:mod:`complexo.prove`): the reference head and loss (and F.cross_entropy's,
for what it saves) built with symbolic B, n, d and V (InfoNCE: B, d), traced in bf16 for a
16-bit dtype (so that the fp32 upcast of the logits is told apart from e) and in fp32 at e = 4
(the hand formulas write the fp32 logits as 4 bytes, the trace as e), and the hand formulas
proved equal for all shapes."""

from __future__ import annotations

from complexo.prove import Case, Dim, Symbolic, hand_from
from complexo.symbols import e

REFERENCE = {
    "forward_matmul_flops": "forward_matmul_flops",
    "params": "params",
    "activation_bytes": "activation_bytes",
}
FUSED = {"fused_saved_bytes": "activation_bytes"}

UNTRACED = {
    "forward_flops": "the log-sum-exp passes are complexo's per-element conventions; the "
    "matmul part is proved",
    "backward_flops": "matmuls and the log-sum-exp passes' backward, the latter by convention",
    "logits_bytes": "one of the tensors of a run, no total of the trace",
    "logits_grad_bytes": "as logits_bytes",
    "chunked_flops": "the chunked loss computes its gradient in its forward, outside autograd",
    "chunked_saved_bytes": "as chunked_flops",
    "chunked_peak_bytes": "a peak within a chunk, not a count of the trace",
}


def variant(cfg) -> str:
    return f"{cfg.kind} {'fp32' if cfg.dtype == 'fp32' else '16-bit'}"


def cases(cfg) -> list[Case]:
    from complexo.analyses.loss import quantities
    from complexo.analyses.loss_cost import cost_model

    fp32 = cfg.dtype == "fp32"  # else traced in bf16: the logits' fp32 copy told apart
    model, specs = cost_model(cfg.kind, fp32), quantities(cfg.kind)
    if cfg.kind == "infonce":
        dims, traces = (Dim("B", 3), Dim("d", 7)), [("reference", REFERENCE)]
    else:
        dims = (Dim("B", 3), Dim("n", 5), Dim("d", 7), Dim("V", 11))
        traces = [("reference", REFERENCE), ("fused", FUSED)]
    return [
        Case(
            dims,
            _build(cfg.kind, impl),
            hand_from(specs, model, traced),
            traced,
            dtype="float32" if fp32 else "bfloat16",
            at={e: 4} if fp32 else {},
        )
        for impl, traced in traces
    ]


def _build(kind: str, impl: str):
    def build(size):
        import torch

        from complexo.blocks import loss as ref

        if kind == "infonce":
            a, b = (torch.empty(size["B"], size["d"], requires_grad=True) for _ in range(2))
            return ref.InfoNCE(), (a, b)
        module = ref.LMHeadLoss(size["d"], size["V"], kind, fused=impl == "fused")
        x = torch.empty(size["B"], size["n"], size["d"], requires_grad=True)
        return module, (x, torch.empty(size["B"], size["n"], dtype=torch.long))

    return build


SYMBOLIC = Symbolic(
    variant=variant,
    cases=cases,
    variants={
        "xent 16-bit": {"kind": "xent", "dtype": "bf16"},
        "focal 16-bit": {"kind": "focal", "dtype": "bf16"},
        "infonce 16-bit": {"kind": "infonce", "dtype": "bf16"},
        "xent fp32": {"kind": "xent"},
        "focal fp32": {"kind": "focal"},
        "infonce fp32": {"kind": "infonce"},
    },
    untraced=UNTRACED,
    slow=frozenset({"focal fp32", "infonce fp32"}),
)
