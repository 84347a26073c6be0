"""Multi-head self-attention: what it costs, and why.

Symbols: B batch, n tokens, d width, h heads (head size d/h), e bytes per element.
Conventions: :mod:`complexo.conventions`. Reference implementations:
:mod:`complexo.blocks.attention`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sympy import Integer

from complexo.conventions import (
    BOOL_BYTES,
    DTYPES,
    ELEMENTWISE_FLOPS,
    FP32_BYTES,
    SOFTMAX_BWD_FLOPS,
    SOFTMAX_FWD_FLOPS,
    SOFTMAX_RECOMPUTE_FLOPS,
    torch_dtype,
)
from complexo.cost import CostModel, Kind, Term
from complexo.errors import ComplexoError
from complexo.result import QuantitySpec, Result, build_quantity, summarise
from complexo.symbols import B, d, e, h, n

NAME = "mhsa"
HELP = "Multi-head self-attention: FLOPs, parameters and memory, against fvcore and torch."
IMPLS = ("naive", "sdpa")

# Operators that carry each term: TorchScript names (what fvcore sees) and dispatcher names (what
# FlopCounterMode sees on meta tensors).
LINEAR = ("aten::linear", "aten.addmm", "aten.mm")
MATMUL = ("aten::matmul", "aten.bmm")
SDPA = ("aten::scaled_dot_product_attention", "aten._scaled_dot_product_flash_attention_for_cpu")
SDPA_BWD = ("aten._scaled_dot_product_flash_attention_for_cpu_backward",)
SOFTMAX_OUT = ("aten._softmax", "aten._safe_softmax")


@dataclass(frozen=True)
class Config:
    batch: int = 1
    seq: int = 4096
    dim: int = 1024
    heads: int = 16
    dtype: str = "fp32"
    impl: str = "naive"
    causal: bool = False
    bias: bool = True

    def __post_init__(self):
        for name in ("batch", "seq", "dim", "heads"):
            if getattr(self, name) <= 0:
                raise ComplexoError(
                    f"--{name} must be a positive integer, got {getattr(self, name)}"
                )
        if self.dim % self.heads:
            raise ComplexoError(
                f"--dim {self.dim} is not divisible by --heads {self.heads} "
                f"(head size d/h must be whole; try --heads {_divisor_near(self.dim, self.heads)})"
            )
        if self.impl not in IMPLS:
            raise ComplexoError(f"unknown --impl {self.impl!r}; choose one of: {', '.join(IMPLS)}")
        if self.dtype not in DTYPES:
            raise ComplexoError(
                f"unknown --dtype {self.dtype!r}; choose one of: {', '.join(DTYPES)}"
            )

    @property
    def values(self) -> dict:
        return {B: self.batch, n: self.seq, d: self.dim, h: self.heads, e: DTYPES[self.dtype].bytes}


def _divisor_near(dim: int, heads: int) -> int:
    return min((k for k in range(1, dim + 1) if dim % k == 0), key=lambda k: (abs(k - heads), k))


def cost_model(impl: str = "naive", causal: bool = False, bias: bool = True) -> CostModel:
    """The symbolic cost of one MHSA block; one term per line, then sums."""
    fused = impl == "sdpa"
    score_ops = SDPA if fused else MATMUL
    scores = B * h * n**2  # elements of the (B, h, n, n) score matrix
    F, BW, P, A, M = Kind.FORWARD, Kind.BACKWARD, Kind.PARAMS, Kind.ACTIVATION, Kind.MEMORY
    t: list[Term] = []

    # Forward: each projection is (B·n, d) x (d, d); the scores are h products (n, d/h) x (d/h, n).
    for p in ("q", "k", "v"):
        t.append(Term(f"{p}_proj", F, 2 * B * n * d**2, True, LINEAR, f"x·W_{p}: 2·(B·n)·d·d"))
    if bias:
        t.append(Term("bias_add", F, 4 * ELEMENTWISE_FLOPS * B * n * d, False, LINEAR, "4 biases"))
    t.append(Term("scores", F, 2 * B * h * n**2 * (d / h), True, score_ops, "Q·Kᵀ per head"))
    t.append(
        Term(
            "scale",
            F,
            ELEMENTWISE_FLOPS * scores,
            False,
            SDPA if fused else ("aten::mul", "aten.mul"),
            "× 1/√(d/h)",
        )
    )
    if causal:
        t.append(
            Term(
                "causal_mask",
                F,
                ELEMENTWISE_FLOPS * scores,
                False,
                SDPA if fused else ("aten::masked_fill", "aten.masked_fill"),
                "one select",
            )
        )
    t.append(
        Term(
            "softmax",
            F,
            SOFTMAX_FWD_FLOPS * scores,
            False,
            SDPA if fused else ("aten::softmax", "aten._softmax"),
            "5 per element",
        )
    )
    t.append(Term("attn_v", F, 2 * B * h * n**2 * (d / h), True, score_ops, "A·V per head"))
    t.append(Term("out_proj", F, 2 * B * n * d**2, True, LINEAR, "y·W_o"))

    # Backward: dX = dY·Wᵀ and dW = Xᵀ·dY for every product, twice its forward.
    for p in ("q", "k", "v", "out"):
        t.append(Term(f"{p}_proj", BW, 4 * B * n * d**2, True, ("aten.mm",), "dX and dW"))
    if bias:
        t.append(
            Term(
                "bias_grad",
                BW,
                4 * ELEMENTWISE_FLOPS * B * n * d,
                False,
                ("aten.sum",),
                "each bias gradient sums dY over B·n tokens",
            )
        )
    t.append(
        Term(
            "x_grad_sum",
            BW,
            2 * ELEMENTWISE_FLOPS * B * n * d,
            False,
            ("aten.add",),
            "dX gathers the q, k and v branches: 2 additions",
        )
    )
    bwd_ops = SDPA_BWD if fused else ("aten.bmm",)
    if fused:
        # The fused kernel keeps no n×n matrix: it recomputes S = Q·Kᵀ and P = exp(S − L).
        t.append(Term("scores_recompute", BW, 2 * B * h * n**2 * (d / h), True, bwd_ops))
        recompute = ELEMENTWISE_FLOPS * (2 if causal else 1) + SOFTMAX_RECOMPUTE_FLOPS
        t.append(
            Term(
                "probs_recompute", BW, recompute * scores, False, bwd_ops, "scale, mask, exp(S − L)"
            )
        )
    t.append(Term("scores", BW, 4 * B * h * n**2 * (d / h), True, bwd_ops, "dQ and dK"))
    t.append(
        Term("scale", BW, ELEMENTWISE_FLOPS * scores, False, bwd_ops if fused else ("aten.mul",))
    )
    if causal and not fused:
        t.append(Term("causal_mask", BW, ELEMENTWISE_FLOPS * scores, False, ("aten.masked_fill",)))
    t.append(
        Term(
            "softmax",
            BW,
            SOFTMAX_BWD_FLOPS * scores,
            False,
            bwd_ops if fused else ("aten._softmax_backward_data",),
            "4 per element",
        )
    )
    t.append(Term("attn_v", BW, 4 * B * h * n**2 * (d / h), True, bwd_ops, "dA and dV"))

    # Parameters: as nn.Linear (and nn.MultiheadAttention) have them.
    t.append(Term("weights", P, 4 * d**2))
    if bias:
        t.append(Term("biases", P, 4 * d))

    # Saved for the backward (unique storages; parameters excluded).
    t.append(Term("x", A, B * n * d * e, note="input of the q, k, v projections"))
    t.append(Term("q", A, B * n * d * e, note="saved by Q·Kᵀ" if not fused else "saved by SDPA"))
    t.append(Term("k", A, B * n * d * e, note="saved by Q·Kᵀ" if not fused else "saved by SDPA"))
    t.append(Term("v", A, B * n * d * e, note="saved by A·V" if not fused else "saved by SDPA"))
    if fused:
        t.append(
            Term(
                "attn_out",
                A,
                B * n * d * e,
                note="SDPA's output, also the input of out_proj (one storage)",
            )
        )
        t.append(Term("logsumexp", A, FP32_BYTES * B * h * n, note="softmax statistics, fp32"))
    else:
        if causal:
            t.append(
                Term("causal_mask", A, BOOL_BYTES * n**2, note="bool mask kept by masked_fill")
            )
        t.append(Term("probs", A, scores * e, note="softmax output, kept by softmax and A·V"))
        t.append(Term("heads_out", A, B * n * d * e, note="concatenated heads, input of out_proj"))

    # The n×n attention matrix that the implementation materialises (one at a time).
    t.append(
        Term(
            "attention_matrix",
            M,
            Integer(0) if fused else scores * e,
            ops=SOFTMAX_OUT,
            note="never materialised" if fused else "the probabilities, B·h·n²",
        )
    )
    return CostModel(t)


QUANTITIES = (
    QuantitySpec("forward_flops", "forward FLOPs", Kind.FORWARD),
    QuantitySpec("forward_matmul_flops", "  of which matmuls", Kind.FORWARD, matmul_only=True),
    QuantitySpec("backward_flops", "backward FLOPs", Kind.BACKWARD),
    QuantitySpec("backward_matmul_flops", "  of which matmuls", Kind.BACKWARD, matmul_only=True),
    QuantitySpec("params", "parameters", Kind.PARAMS),
    QuantitySpec("activation_bytes", "activations saved for backward", Kind.ACTIVATION),
    QuantitySpec("attention_matrix_bytes", "attention matrix", Kind.MEMORY),
)


def build(cfg: Config, device: str = "meta"):
    """The reference block and an input that needs its gradient, on ``device``."""
    import torch

    from complexo.blocks.attention import IMPLEMENTATIONS

    dtype = torch_dtype(cfg.dtype)
    with torch.device(device):
        block = IMPLEMENTATIONS[cfg.impl](cfg.dim, cfg.heads, bias=cfg.bias, causal=cfg.causal)
        block = block.to(dtype)
        x = torch.randn(cfg.batch, cfg.seq, cfg.dim, dtype=dtype, requires_grad=True)
    return block, x


def analyse(cfg: Config) -> Result:
    from complexo.measure import count_fvcore, cpu_attention_formulas, measure_torch, param_counts

    model = cost_model(cfg.impl, cfg.causal, cfg.bias)
    values = cfg.values
    block, x = build(cfg)
    run = measure_torch(lambda: block(x), list(block.parameters()))
    fv = count_fvcore(block, (x.detach(),))
    params = param_counts(block)
    # The attention matrix as materialised: what a softmax op outside a fused kernel produced.
    probs = [b for op, _, b in run.outputs if op in SOFTMAX_OUT]
    readings = {
        Kind.FORWARD: {"fvcore": fv, "torch": run.forward},
        Kind.BACKWARD: {"fvcore": None, "torch": run.backward},
        Kind.PARAMS: params,
        Kind.ACTIVATION: {"fvcore": None, "torch": run.saved_bytes},
        Kind.MEMORY: {"fvcore": None, "torch": max(probs, default=0)},
    }
    quantities = [build_quantity(s, model, values, readings[s.kind]) for s in QUANTITIES]

    notes = []
    if cfg.impl == "sdpa":
        fwd_mm, bwd_mm = (q.value for q in quantities if q.name.endswith("_matmul_flops"))
        mapped = measure_torch(
            lambda: block(x), list(block.parameters()), custom_mapping=cpu_attention_formulas()
        )
        same = (mapped.forward.total, mapped.backward.total) == (fwd_mm, bwd_mm)
        notes.append(
            "FlopCounterMode has no formula for SDPA's CPU kernel; with its own CUDA "
            "flash-attention formulas mapped onto that kernel it counts "
            f"{mapped.forward.total:,} forward and {mapped.backward.total:,} backward FLOPs: "
            + (
                "equal to the formula's matmul terms."
                if same
                else f"the formula's matmul terms are {fwd_mm:,} and {bwd_mm:,}."
            )
        )
    if cfg.causal:
        notes.append(
            "causal: FLOPs are counted dense, as a masked implementation executes them (and as "
            "FlopCounterMode's SDPA formulas count them); about half of the score work is masked "
            "out, which a block-skipping fused kernel can avoid."
        )
    projections = ["q_proj", "k_proj", "v_proj", "out_proj"]
    elementwise = ["scale", *(["causal_mask"] if cfg.causal else []), "softmax"]
    crossovers = [
        model.crossover(
            ["scores", "attn_v"],
            projections,
            n,
            values=values,
            label="attention matmuls overtake the projections",
        ),
        model.crossover(
            ["scores", "attn_v", *elementwise],
            projections + (["bias_add"] if cfg.bias else []),
            n,
            values=values,
            label="all attention work overtakes the projections",
        ),
    ]
    if cfg.impl == "naive":
        crossovers.append(
            model.crossover(
                ["probs", *(["causal_mask"] if cfg.causal else [])],
                ["x", "q", "k", "v", "heads_out"],
                n,
                kind=Kind.ACTIVATION,
                values=values,
                label="saved probabilities overtake the other saved activations",
            )
        )
    summary = summarise(model, values, growing=(B, n, d, h), bounds={h: d}, crossovers=crossovers)
    return Result(NAME, asdict(cfg), values, model, quantities, summary, notes)
