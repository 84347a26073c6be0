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

# Normalisation, forward, per element of the input (complexo.analyses.norm names each piece):
NORM_MEAN_FLOPS = sympy.Integer(1)  # x added to its group's sum, for the mean μ
NORM_CENTER_FLOPS = sympy.Integer(1)  # x − μ
NORM_SQUARE_FLOPS = sympy.Integer(2)  # (x − μ)² (RMSNorm: x²) added to the group's sum
NORM_SCALE_FLOPS = sympy.Integer(1)  # × 1/σ
NORM_AFFINE_FLOPS = sympy.Integer(1)  # × γ, and again + β: each 1
# LayerNorm and BatchNorm with γ and β: 1 + 1 + 2 + 1 + 1 + 1 = 7 per element.
NORM_FWD_FLOPS = NORM_MEAN_FLOPS + NORM_CENTER_FLOPS + NORM_SQUARE_FLOPS + NORM_SCALE_FLOPS
NORM_FWD_FLOPS += 2 * NORM_AFFINE_FLOPS
# Per group of elements that shares one μ and σ (a token's d features, a channel's B·H·W values),
# once: a sum ÷ its count, per statistic (1 each: μ and σ², RMSNorm's mean square alone), then
# 1/√(σ² + ε): + ε (1) and rsqrt (1, as one op).
NORM_DIVIDE_FLOPS = sympy.Integer(1)
NORM_RSTD_FLOPS = sympy.Integer(2)
# Normalisation, backward, per element, from the saved x and statistics (affine: γ, β):
#   x̂ = (x − μ)·1/σ recomputed (2; RMSNorm x·1/σ: 1); dβ = Σ dy (1); dγ = Σ dy·x̂ (2);
#   dx̂ = dy·γ (1); the two sums Σ dx̂ (1) and Σ dx̂·x̂ (2) (RMSNorm: the second only);
#   dx = 1/σ·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)): x̂·c (1), two subtractions (2), × 1/σ (1)
#   (RMSNorm: one subtraction). Each sum's ÷ count is 1 per group (NORM_DIVIDE_FLOPS).
NORM_RECOMPUTE_FLOPS = sympy.Integer(2)
NORM_DBETA_FLOPS = sympy.Integer(1)
NORM_DGAMMA_FLOPS = sympy.Integer(2)
NORM_DXHAT_FLOPS = sympy.Integer(1)
NORM_REDUCE_FLOPS = sympy.Integer(3)
NORM_DX_FLOPS = sympy.Integer(4)
# LayerNorm with γ and β: 2 + 1 + 2 + 1 + 3 + 4 = 13 per element; without: 2 + 3 + 4 = 9.
# BatchNorm's running statistics, per channel, in training: μ̂ ← (1 − m)·μ̂ + m·μ (3: two
# products, a sum) and σ̂² ← (1 − m)·σ̂² + m·σ²·N/(N − 1) (4: the unbiased correction is the
# fourth); (1 − m) and m are per-call constants.
BN_RUNNING_FLOPS = sympy.Integer(7)
# BatchNorm in inference folds its per-channel constants once, a = γ/√(σ̂² + ε) and
# b = β − μ̂·a (+ ε, rsqrt, × γ, μ̂·a, β −: 5 per channel; without γ, β: 4, the product by γ
# dropped and β − becoming a negation), then y = x·a + b: 2 per element.
BN_FOLD_FLOPS = sympy.Integer(5)
BN_EVAL_FLOPS = sympy.Integer(2)
# GELU, exact: x/√2 (1), erf (1, as one op), + 1 (1), × x (1), × ½ (1).
GELU_FWD_FLOPS = sympy.Integer(5)
# GELU backward, exact: dy·(Φ(x) + x·φ(x)): Φ(x) = ½(1 + erf(x/√2)) (4, as forward less × x);
# φ(x) = exp(−x²/2)/√(2π): x² (1), × −½ (1), exp (1), × 1/√(2π) (1); x·φ (1), Φ + (1), × dy (1).
GELU_BWD_FLOPS = sympy.Integer(11)
# SiLU (swish), x·σ(x) = x/(1 + exp(−x)): −x (1), exp (1), + 1 (1), x ÷ (1).
SILU_FWD_FLOPS = sympy.Integer(4)
# SiLU backward: dy·σ·(1 + x·(1 − σ)): σ = 1/(1 + exp(−x)) again (4: −x, exp, + 1, 1 ÷),
# 1 − σ (1), x· (1), 1 + (1), σ· (1), dy· (1).
SILU_BWD_FLOPS = sympy.Integer(9)
# A gated unit's product a ⊙ u: 1 per element forward; backward du = dy ⊙ a and da = dy ⊙ u: 2.
GATE_FWD_FLOPS = sympy.Integer(1)
GATE_BWD_FLOPS = sympy.Integer(2)
# Softmax cross-entropy, written out with the log-sum-exp trick, per element of a row of V
# logits z (complexo.analyses.loss names each pass): the row max m (1 comparison), z − m (1),
# exp (1, as one op), added to the row sum s (1), and log p = (z − m) − log s (1). Per row, once:
# log s (1), the target's −log p picked (1: the negation; the gather is a copy) and its share of
# the mean (1). Forward, per element: 1 + 1 + 1 + 1 + 1 = 5. The max is a constant for the
# gradient (log-sum-exp does not depend on it), so it is taken without autograd and costs the
# backward nothing.
LSE_MAX_FLOPS = sympy.Integer(1)
LSE_SUBTRACT_FLOPS = sympy.Integer(1)
LSE_EXP_FLOPS = sympy.Integer(1)
LSE_SUM_FLOPS = sympy.Integer(1)
LOG_SOFTMAX_FLOPS = sympy.Integer(1)  # (z − m) − log s
XENT_FWD_FLOPS = LSE_MAX_FLOPS + LSE_SUBTRACT_FLOPS + LSE_EXP_FLOPS + LSE_SUM_FLOPS
XENT_FWD_FLOPS += LOG_SOFTMAX_FLOPS
XENT_ROW_FWD_FLOPS = sympy.Integer(3)  # log s, −log p of the target, its share of the mean
# Backward of the written-out graph, per element: Σ over the row of d log p (for d log s) (1),
# d exp = d s ⊙ exp(z − m) (1), the two paths into d(z − m) added (1): 3. Per row: the mean's
# 1/(B·n) (1), the negation (1), d log s ÷ s (1): 3. (A fused kernel computes softmax − onehot:
# exp(log p) (1), × the upstream gradient (1), the target's − 1 per row.)
XENT_BWD_FLOPS = sympy.Integer(3)
XENT_ROW_BWD_FLOPS = sympy.Integer(3)
# Focal loss (Lin et al. 2017) on a softmax, −(1 − p_t)^γ·log p_t, adds per row (only the
# target's log-probability enters it, so its extra work is per token, not per element):
# p_t = exp(log p_t) (1), 1 − p_t (1), (·)^γ (1, as one op), × log p_t (1): 4. Backward, per row:
# d log p_t = −g·w (2: the negation, × w), d w = −g·log p_t (1), pow's γ·(1 − p_t)^(γ−1)·d w
# (3: the power, × γ, × d w), d p_t = −d(1 − p_t) (1), × p_t into d log p_t (1), the two paths
# added (1): 9.
FOCAL_FWD_FLOPS = sympy.Integer(4)
FOCAL_BWD_FLOPS = sympy.Integer(9)
# A chunked loss that computes its gradient in its forward (Liger's fused linear cross-entropy)
# goes on from the row sum s, per element: softmax p = exp(z − m)/s (1) and g = p/(B·n) (1),
# then the target's − 1/(B·n) per row (1); each chunk's dW is added to the running one (1 per
# weight per chunk).
CHUNK_GRAD_FLOPS = sympy.Integer(2)
# Max pooling over a k×k window: k² − 1 comparisons per output element.
# Average pooling: one add per input element (the division per output is left out).

CONVENTION = "FLOP = 2·MAC (fvcore's MACs doubled); element-wise ops counted per element"


# What the counters do that the output says beside their readings.
CONV_NOTE = (
    "fvcore: convolutions counted by fvcore's conv_flop_count on the shapes of the meta run "
    "(torch 2.13 cannot jit-trace a convolution on meta tensors); all other ops by its trace."
)

SDPA_CPU_NOTE = (
    "torch: FlopCounterMode has no formula for SDPA's CPU kernel; its own SDPA formulas "
    "(sdpa_flop_count, sdpa_backward_flop_count) are applied to it; fvcore has none for SDPA."
)

GROUPED_CONV_NOTE = (
    "torch: a grouped convolution's weight gradient counted per group (FlopCounterMode counts it "
    "as if ungrouped, C_in× too many for a depthwise one; a fix: pytorch/pytorch PR 183405)."
)


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
