"""Counting conventions, stated once. Every number complexo prints follows these.

FLOPs
    1 multiply-accumulate (MAC) = 2 FLOPs. A matrix product (m×k)·(k×n) costs 2·m·n·k FLOPs;
    the "−1" of the first addition is ignored, as PyTorch's FlopCounterMode does. fvcore counts
    MACs ("one fused multiply-add = one flop"); its numbers are doubled in exactly one place,
    :func:`complexo.measure.count_fvcore`.

Element-wise work
    Counters count only matrix products (and convolutions); complexo also counts element-wise
    work, as separate *non-matmul* terms, with the per-element costs below, so that the matmul
    totals can be compared with the counters and the element-wise totals are visible.

Backward
    For every matrix product Y = A·B the backward computes dA = dY·Bᵀ and dB = Aᵀ·dY, twice the
    forward FLOPs, when both inputs need gradients. A block's input is assumed to need its gradient
    (the block sits inside a network), so the first layer's input gradient is counted.

Causal attention
    Counted dense: a masked implementation computes all n² scores, and both counters count that.

Profiling rows
    A bias add belongs to the row of the product it follows (projections, linear layers,
    convolutions): ``addmm`` and the convolution kernels add it in their epilogue, so no profiler
    can time it apart. Each analysis's rows partition its step's terms (tested).

Bytes
    Element sizes by dtype below; masks are bool (1 byte); softmax statistics of fused attention
    kernels (log-sum-exp) are float32 whatever the input dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

FLOPS_PER_MAC = 2

# Softmax forward, per element of its input: subtract the row max (1), exp (1), add to the row
# sum (1), divide by the sum (1), plus the comparison that finds the max (1).
SOFTMAX_FWD_FLOPS = sympy.Integer(5)
# Softmax backward, per element: dX = Y ⊙ (dY − Σ(dY ⊙ Y)): the product dY ⊙ Y (1), its row
# sum (1), the subtraction (1), the product with Y (1).
SOFTMAX_BWD_FLOPS = sympy.Integer(4)
# Recomputing the probabilities from stored log-sum-exp L in a fused backward: exp(S − L).
SOFTMAX_RECOMPUTE_FLOPS = sympy.Integer(2)
# Scaling by 1/√(d/h), masking (one select), a bias add, a gradient accumulation: 1 per element.
ELEMENTWISE_FLOPS = sympy.Integer(1)

# Normalisation (LayerNorm, BatchNorm), forward, per element: the mean (1 add), x − μ (1), its
# square and sum for the variance (2), × 1/σ (1), × γ (1), + β (1).
NORM_FWD_FLOPS = sympy.Integer(7)
# GELU, exact: x/√2 (1), erf (1, as one op), + 1 (1), × x (1), × ½ (1).
GELU_FWD_FLOPS = sympy.Integer(5)
# Max pooling over a k×k window: k² − 1 comparisons per output element.
# Average pooling: one add per input element (the division per output is left out).

CONVENTION = "FLOP = 2·MAC (fvcore's MACs doubled); element-wise ops counted per element"


@dataclass(frozen=True)
class DType:
    name: str
    torch_name: str
    bytes: int


DTYPES: dict[str, DType] = {
    "fp32": DType("fp32", "float32", 4),
    "fp16": DType("fp16", "float16", 2),
    "bf16": DType("bf16", "bfloat16", 2),
}

BOOL_BYTES = 1
FP32_BYTES = 4


def torch_dtype(name: str):
    """The torch dtype for one of :data:`DTYPES` (torch imported lazily)."""
    import torch

    return getattr(torch, DTYPES[name].torch_name)
