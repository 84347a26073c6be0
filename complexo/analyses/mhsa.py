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
IMPLS = ("naive", "sdpa")

# Operators that carry each term: TorchScript names (what fvcore sees) and dispatcher names (what
# FlopCounterMode sees on meta tensors).
LINEAR = ("aten::linear", "aten.addmm", "aten.mm")
MATMUL = ("aten::matmul", "aten.bmm")
SDPA = ("aten::scaled_dot_product_attention", "aten._scaled_dot_product_flash_attention_for_cpu")
SDPA_BWD = ("aten._scaled_dot_product_flash_attention_for_cpu_backward",)
SOFTMAX = ("aten::softmax", "aten._softmax")
SOFTMAX_OUT = ("aten._softmax", "aten._safe_softmax")
SOFTMAX_BWD = ("aten._softmax_backward_data",)
MASK = ("aten::masked_fill", "aten.masked_fill")


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
    """The symbolic cost of one MHSA block: one term per line, then sums.

    >>> from complexo.cost import plain
    >>> plain(cost_model().total(Kind.FORWARD, matmul_only=True))
    '4·B·d·n·(2·d + n)'
    """
    fused = impl == "sdpa"
    hs = d / h  # head size
    S = B * h * n**2  # elements of the (B, h, n, n) score matrix
    EW = ELEMENTWISE_FLOPS

    def ops(eager: tuple[str, ...], kernel: tuple[str, ...]) -> tuple[str, ...]:
        return kernel if fused else eager  # inside the fused kernel, or separate eager ops

    def fwd(name, expr, op, note="", mm=False):
        return Term(name, Kind.FORWARD, expr, mm, op, note)

    def bwd(name, expr, op, note="", mm=False):
        return Term(name, Kind.BACKWARD, expr, mm, op, note)

    def act(name, expr, note):
        return Term(name, Kind.ACTIVATION, expr, note=note)

    def when(condition: bool, *terms: Term) -> list[Term]:
        return list(terms) if condition else []

    att, att_bwd = ops(MATMUL, SDPA), ops(("aten.bmm",), SDPA_BWD)
    recompute = EW * (2 if causal else 1) + SOFTMAX_RECOMPUTE_FLOPS  # scale, mask, exp(S − L)
    t = [
        # Forward. Projections: (B·n, d) x (d, d). Scores: B·h products (n, d/h) x (d/h, n).
        fwd("q_proj", 2 * B * n * d**2, LINEAR, "x·W_q: 2·(B·n)·d·d", mm=True),
        fwd("k_proj", 2 * B * n * d**2, LINEAR, "x·W_k", mm=True),
        fwd("v_proj", 2 * B * n * d**2, LINEAR, "x·W_v", mm=True),
        *when(bias, fwd("bias_add", 4 * EW * B * n * d, LINEAR, "4 biases, 1 per element")),
        fwd("scores", 2 * B * h * n**2 * hs, att, "Q·Kᵀ, per head", mm=True),
        fwd("scale", EW * S, ops(("aten::mul", "aten.mul"), SDPA), "× 1/√(d/h)"),
        *when(causal, fwd("causal_mask", EW * S, ops(MASK, SDPA), "one select")),
        fwd("softmax", SOFTMAX_FWD_FLOPS * S, ops(SOFTMAX, SDPA), "5 per element"),
        fwd("attn_v", 2 * B * h * n**2 * hs, att, "A·V, per head", mm=True),
        fwd("out_proj", 2 * B * n * d**2, LINEAR, "y·W_o", mm=True),
        # Backward: dX = dY·Wᵀ and dW = Xᵀ·dY for every product, twice its forward.
        bwd("q_proj", 4 * B * n * d**2, ("aten.mm",), "dX and dW", mm=True),
        bwd("k_proj", 4 * B * n * d**2, ("aten.mm",), "dX and dW", mm=True),
        bwd("v_proj", 4 * B * n * d**2, ("aten.mm",), "dX and dW", mm=True),
        bwd("out_proj", 4 * B * n * d**2, ("aten.mm",), "dX and dW", mm=True),
        *when(bias, bwd("bias_grad", 4 * EW * B * n * d, ("aten.sum",), "Σ dY over tokens")),
        bwd("x_grad_sum", 2 * EW * B * n * d, ("aten.add",), "dX sums the q, k, v branches"),
        # The fused kernel keeps no n×n matrix: it recomputes S = Q·Kᵀ and P = exp(S − L).
        *when(fused, bwd("scores_recompute", 2 * B * h * n**2 * hs, att_bwd, "Q·Kᵀ", mm=True)),
        *when(fused, bwd("probs_recompute", recompute * S, att_bwd, "scale, mask, exp(S − L)")),
        bwd("scores", 4 * B * h * n**2 * hs, att_bwd, "dQ and dK", mm=True),
        bwd("scale", EW * S, ops(("aten.mul",), SDPA_BWD)),
        *when(causal and not fused, bwd("causal_mask", EW * S, ("aten.masked_fill",))),
        bwd("softmax", SOFTMAX_BWD_FLOPS * S, ops(SOFTMAX_BWD, SDPA_BWD), "4 per element"),
        bwd("attn_v", 4 * B * h * n**2 * hs, att_bwd, "dA and dV", mm=True),
        # Parameters, as nn.Linear and nn.MultiheadAttention have them.
        Term("weights", Kind.PARAMS, 4 * d**2),
        *when(bias, Term("biases", Kind.PARAMS, 4 * d)),
        # Saved for the backward: unique storages, parameters excluded.
        act("x", B * n * d * e, "input of the q, k, v projections"),
        act("q", B * n * d * e, "saved by SDPA" if fused else "saved by Q·Kᵀ"),
        act("k", B * n * d * e, "saved by SDPA" if fused else "saved by Q·Kᵀ"),
        act("v", B * n * d * e, "saved by SDPA" if fused else "saved by A·V"),
    ]
    if fused:
        t += [
            act("attn_out", B * n * d * e, "SDPA's output, also out_proj's input: one storage"),
            act("logsumexp", FP32_BYTES * B * h * n, "softmax statistics, fp32"),
        ]
    else:
        t += [
            *when(causal, act("causal_mask", BOOL_BYTES * n**2, "bool mask, kept by masked_fill")),
            act("probs", S * e, "softmax output, kept by softmax and A·V"),
            act("heads_out", B * n * d * e, "concatenated heads, input of out_proj"),
        ]
    # The n×n matrix the implementation materialises: the probabilities, or nothing.
    matrix = Integer(0) if fused else S * e
    note = "never materialised" if fused else "B·h·n² probabilities"
    t.append(Term("attention_matrix", Kind.MEMORY, matrix, ops=SOFTMAX_OUT, note=note))
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
