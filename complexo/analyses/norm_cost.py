"""The symbolic cost of one normalisation layer: FLOPs per element and per group of elements
that share one μ and σ (each piece a named term, its per-element cost from
:mod:`complexo.conventions`), parameters, buffers, what torch's kernel and complexo's from-scratch
reference keep for backward, and the bytes a forward moves.

Symbols: B batch; tokens (B, n, d) or an image (B, C, R, R); g GroupNorm's groups; e bytes per
element. Sizes by kind and layout (:func:`sizes`): N elements, S groups, the channels (or
features) γ and β index.

>>> from complexo.symbols import B, n, d
>>> sizes("layernorm", "tokens")[:2]
(B*d*n, B*n)
"""

from __future__ import annotations

from complexo.conventions import (
    BN_EVAL_FLOPS,
    BN_FOLD_FLOPS,
    BN_RUNNING_FLOPS,
    FP32_BYTES,
    NORM_AFFINE_FLOPS,
    NORM_CENTER_FLOPS,
    NORM_DBETA_FLOPS,
    NORM_DGAMMA_FLOPS,
    NORM_DIVIDE_FLOPS,
    NORM_DX_FLOPS,
    NORM_DXHAT_FLOPS,
    NORM_MEAN_FLOPS,
    NORM_RECOMPUTE_FLOPS,
    NORM_REDUCE_FLOPS,
    NORM_RSTD_FLOPS,
    NORM_SCALE_FLOPS,
    NORM_SQUARE_FLOPS,
)
from complexo.cost import CostModel, Kind, Terms
from complexo.symbols import B, C, R, d, e, g, n

KINDS = ("layernorm", "rmsnorm", "batchnorm", "groupnorm", "instancenorm")
LAYOUTS = ("tokens", "image")
INT64_BYTES = 8  # BatchNorm's num_batches_tracked

# The op that carries each kind's forward (TorchScript name for fvcore, dispatcher name for
# FlopCounterMode) and backward. RMSNorm has no fused kernel on the CPU or meta device in torch
# 2.13: it runs as its composite ops, each piece its own op.
FORWARD_OPS = {
    "layernorm": ("aten::layer_norm", "aten.native_layer_norm"),
    "batchnorm": ("aten::batch_norm", "aten._native_batch_norm_legit"),
    "groupnorm": ("aten::group_norm", "aten.native_group_norm"),
    "instancenorm": ("aten::instance_norm", "aten._native_batch_norm_legit"),
}
BACKWARD_OPS = {
    "layernorm": ("aten.native_layer_norm_backward",),
    "batchnorm": ("aten.native_batch_norm_backward",),
    "groupnorm": ("aten.native_group_norm_backward",),
    "instancenorm": ("aten.native_batch_norm_backward",),
}
EVAL_BATCH_NORM = ("aten::batch_norm", "aten._native_batch_norm_legit_no_training")
RMS_OPS = {
    "square": ("aten::rms_norm", "aten.pow"),
    "statistics": ("aten::rms_norm", "aten.rsqrt"),
    "normalise": ("aten::rms_norm", "aten.mul"),
    "scale": ("aten::rms_norm", "aten.mul"),
}
RMS_BACKWARD = ("aten.mul",)


def sizes(kind: str, layout: str):
    """(N elements, S groups, the size γ and β have, the channels BatchNorm keeps statistics of).

    >>> sizes("groupnorm", "image")
    (B*C*R**2, B*g, C, C)
    """
    if layout == "tokens":
        elements, channels, normalised, rows = B * n * d, d, d, B * n
    else:
        elements, channels, normalised, rows = B * C * R**2, C, C * R**2, B
    groups = {
        "layernorm": rows,
        "rmsnorm": rows,
        "batchnorm": channels,
        "groupnorm": B * g,
        "instancenorm": B * channels,
    }[kind]
    affine = normalised if kind in ("layernorm", "rmsnorm") else channels
    return elements, groups, affine, channels


def cost_model(kind: str, layout: str, affine: bool, train: bool) -> CostModel:
    """One layer's cost. ``train``: a forward with the batch's statistics and its backward;
    otherwise an inference forward (no backward, nothing saved)."""
    N, S, P, channels = sizes(kind, layout)
    t = Terms()
    rms = kind == "rmsnorm"
    ops = lambda piece: RMS_OPS[piece] if rms else FORWARD_OPS[kind]  # noqa: E731
    fwd = lambda name, expr, note: t.add(Kind.FORWARD, name, expr, ops=ops(name), note=note)  # noqa: E731
    if kind == "batchnorm" and not train:
        # inference: the running statistics folded into one scale and shift per channel
        fold = BN_FOLD_FLOPS - (0 if affine else 1)
        t.add(Kind.FORWARD, "fold", fold * channels, ops=EVAL_BATCH_NORM, note="a, b per channel")
        t.add(Kind.FORWARD, "normalise", BN_EVAL_FLOPS * N, ops=EVAL_BATCH_NORM, note="x·a + b")
    elif rms:
        fwd("square", NORM_SQUARE_FLOPS * N, "x², summed per group")
        fwd("statistics", (NORM_DIVIDE_FLOPS + NORM_RSTD_FLOPS) * S, "÷ N, + ε, rsqrt")
        fwd("normalise", NORM_SCALE_FLOPS * N, "x · 1/rms")
    else:
        fwd("mean", NORM_MEAN_FLOPS * N, "Σ x per group")
        fwd("center", NORM_CENTER_FLOPS * N, "x − μ")
        fwd("variance", NORM_SQUARE_FLOPS * N, "(x − μ)², summed per group")
        fwd("statistics", (2 * NORM_DIVIDE_FLOPS + NORM_RSTD_FLOPS) * S, "÷ N twice, + ε, rsqrt")
        fwd("normalise", NORM_SCALE_FLOPS * N, "(x − μ) · 1/σ")
    if affine and not (kind == "batchnorm" and not train):  # inference folds γ, β into a, b
        fwd("scale", NORM_AFFINE_FLOPS * N, "× γ")
        if not rms:
            t.add(Kind.FORWARD, "shift", NORM_AFFINE_FLOPS * N, ops=ops("scale"), note="+ β")
    if kind == "batchnorm" and train:
        t.add(
            Kind.FORWARD,
            "running_stats",
            BN_RUNNING_FLOPS * channels,
            ops=FORWARD_OPS[kind],
            note="μ̂, σ̂² moved towards μ, σ²·N/(N − 1)",
        )
    if affine:
        t.add(Kind.PARAMS, "gamma", P)
        if not rms:
            t.add(Kind.PARAMS, "beta", P)
    if kind == "batchnorm":
        t.add(Kind.MEMORY, "running_stats", 2 * channels * e, tags={"buffers"}, note="μ̂, σ̂²")
        t.add(Kind.MEMORY, "batches_tracked", INT64_BYTES, tags={"buffers"}, note="an int64")
    read_state = P * (1 if rms else 2) * int(affine) + (2 * channels if kind == "batchnorm" else 0)
    t.add(Kind.MEMORY, "moved_input", N * e, tags={"moved"}, note="x read once")
    t.add(Kind.MEMORY, "moved_output", N * e, tags={"moved"}, note="y written once")
    if read_state != 0:
        t.add(Kind.MEMORY, "moved_state", read_state * e, tags={"moved"}, note="γ, β, μ̂, σ̂²")
    if train:
        _backward(t, kind, N, S, affine)
        _saved(t, kind, layout, N, S, affine, channels)
    return t.model()


def _backward(t: Terms, kind: str, N, S, affine: bool) -> None:
    """dx (and dγ, dβ) from the saved x and statistics: :mod:`complexo.conventions`."""
    rms = kind == "rmsnorm"
    ops = RMS_BACKWARD if rms else BACKWARD_OPS[kind]

    def bwd(name, expr, note):
        t.add(Kind.BACKWARD, name, expr, ops=ops, note=note)

    bwd("recompute", (1 if rms else NORM_RECOMPUTE_FLOPS) * N, "x̂ from x, μ, 1/σ")
    if affine:
        if not rms:
            bwd("dbeta", NORM_DBETA_FLOPS * N, "Σ dy")
        bwd("dgamma", NORM_DGAMMA_FLOPS * N, "Σ dy·x̂")
        bwd("dxhat", NORM_DXHAT_FLOPS * N, "dy·γ")
    bwd("reduce", (2 if rms else NORM_REDUCE_FLOPS) * N, "Σ dx̂·x̂ (and Σ dx̂)")
    bwd("dx", (NORM_DX_FLOPS - (1 if rms else 0)) * N, "1/σ·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))")
    bwd("statistics", (1 if rms else 2) * NORM_DIVIDE_FLOPS * S, "the sums ÷ N")


def _saved(t: Terms, kind: str, layout: str, N, S, affine: bool, channels) -> None:
    """What autograd keeps: torch's kernel (ACTIVATION, measured on the meta device, which
    follows the CUDA kernels), and the from-scratch reference (MEMORY, tag "reference")."""
    act = lambda name, expr, note: t.add(Kind.ACTIVATION, name, expr, note=note)  # noqa: E731
    if kind == "rmsnorm":
        # the composite computes in fp32 (an upcast copy of a 16-bit x; x itself in fp32)
        act("input_fp32", FP32_BYTES * N, "x in fp32, kept by x² and x·1/rms")
        act("rstd", FP32_BYTES * S, "1/rms per group, fp32")
        if affine:
            act("normalised_fp32", FP32_BYTES * N, "x̂ in fp32, kept by × γ")
    else:
        act("input", N * e, "x")
        if kind == "groupnorm":
            act("statistics", 2 * S * e, "μ, 1/σ per group, in x's dtype")
        else:
            act("statistics", 2 * S * FP32_BYTES, "μ, 1/σ per group, fp32")
        if kind == "instancenorm" and affine:
            act("gamma_repeated", B * channels * e, "γ repeated per sample (a BatchNorm inside)")
    ref = lambda name, expr, note: t.add(  # noqa: E731
        Kind.MEMORY, f"reference_{name}", expr, tags={"reference"}, note=note
    )
    ref("centred", N * e, "x (RMSNorm) or x − μ, kept by the square and × 1/σ")
    ref("rstd", S * e, "1/σ per group, kept by × 1/σ")
    if affine:
        ref("normalised", N * e, "x̂, kept by × γ")
