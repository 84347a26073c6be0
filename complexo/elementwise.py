"""Element-wise FLOPs under complexo's conventions (:mod:`complexo.conventions`), counted op by
op during a run, beside FlopCounterMode's matrix products: what ``derive`` reports as
element-wise work and what a proof compares with the hand formulas' non-matmul terms.

Per element of the op's output unless said: add, sub, mul, div, masked_fill, where 1 (a scale,
a mask, a bias or residual add, a gradient accumulated); addmm's and a convolution's bias add 1
(its gradient Σ dY: 1 per element of dY); softmax 5, its backward 4; GELU 5, its backward 11;
SiLU 4, its backward 9; sum 1 per element summed (a bias's gradient Σ dY); LayerNorm 5 per
element (7 with γ and β) and 4 per group (μ and σ² each ÷ N, + ε, rsqrt), its backward 9 per
element (13 with γ and β) and 2 per group. Any other op that did arithmetic is listed as having
no convention: its work is not counted.

torch is imported inside the functions.
"""

from __future__ import annotations

import math

from complexo.conventions import (
    ELEMENTWISE_FLOPS,
    GELU_BWD_FLOPS,
    GELU_FWD_FLOPS,
    NORM_AFFINE_FLOPS,
    NORM_DBETA_FLOPS,
    NORM_DGAMMA_FLOPS,
    NORM_DIVIDE_FLOPS,
    NORM_DX_FLOPS,
    NORM_DXHAT_FLOPS,
    NORM_FWD_FLOPS,
    NORM_RECOMPUTE_FLOPS,
    NORM_REDUCE_FLOPS,
    NORM_RSTD_FLOPS,
    SILU_BWD_FLOPS,
    SILU_FWD_FLOPS,
    SOFTMAX_BWD_FLOPS,
    SOFTMAX_FWD_FLOPS,
)

# Ops that move, view or create data, or that autograd runs for bookkeeping: no arithmetic.
NO_ARITHMETIC = {
    "aten.view", "aten._unsafe_view", "aten.reshape", "aten.transpose", "aten.t", "aten.permute",
    "aten.expand", "aten.clone", "aten.detach", "aten.empty", "aten.empty_like", "aten.zeros",
    "aten.zeros_like", "aten.ones", "aten.ones_like", "aten.new_empty", "aten.new_zeros",
    "aten.new_ones", "aten.new_empty_strided", "aten.full", "aten.full_like", "aten.copy_",
    "aten.slice", "aten.select",
    "aten.unsqueeze", "aten.squeeze", "aten.cat", "aten.stack", "aten.split", "aten.unbind",
    "aten._to_copy", "aten.alias", "aten.arange", "aten.tril", "aten.triu", "aten.bitwise_not",
    "aten.repeat_interleave", "aten.index", "aten.as_strided", "aten.fill_", "aten.zero_",
    "aten.lift_fresh", "aten.flatten", "aten.contiguous", "aten.mm", "aten.bmm",
    "aten.slice_backward", "aten.constant_pad_nd",  # F.pad: a copy into zeros
    "aten.im2col",  # F.unfold: each receptive field copied into a column
    "aten.select_backward", "aten.expand_copy", "aten.unsqueeze_copy", "prim.device",
    "aten.sym_size", "aten.sym_numel", "aten.sym_stride", "aten.sym_storage_offset",
    "aten._scaled_dot_product_flash_attention_for_cpu",
    "aten._scaled_dot_product_flash_attention_for_cpu_backward",
}  # fmt: skip


def _numel(t) -> int:
    return t.numel() if hasattr(t, "numel") else 0


def formulas() -> dict:
    """FlopCounterMode raw formulas (they see tensors): each op's element-wise FLOPs."""
    import torch

    aten = torch.ops.aten

    def raw(fn):
        fn._get_raw = True
        return fn

    def each(k):
        return raw(lambda *a, out_val=None, **kw: k * _numel(_first(out_val)))

    def layer_norm(x, shape, weight=None, bias=None, *a, out_val=None, **kw):
        n = _numel(x)
        groups = n // math.prod(shape)
        affine = NORM_AFFINE_FLOPS * ((weight is not None) + (bias is not None))
        per_group = 2 * NORM_DIVIDE_FLOPS + NORM_RSTD_FLOPS
        return (NORM_FWD_FLOPS - 2 * NORM_AFFINE_FLOPS + affine) * n + per_group * groups

    def layer_norm_backward(dy, x, shape, mean, rstd, weight, bias, *a, out_val=None, **kw):
        n = _numel(x)
        groups = n // math.prod(shape)
        base = NORM_RECOMPUTE_FLOPS + NORM_REDUCE_FLOPS + NORM_DX_FLOPS
        affine = (NORM_DGAMMA_FLOPS + NORM_DXHAT_FLOPS) * (weight is not None)
        affine += NORM_DBETA_FLOPS * (bias is not None)
        return (base + affine) * n + 2 * NORM_DIVIDE_FLOPS * groups

    ew = ELEMENTWISE_FLOPS
    table = {
        aten.add: each(ew),
        aten.sub: each(ew),
        aten.mul: each(ew),
        aten.div: each(ew),
        aten.masked_fill: each(ew),
        aten.where: each(ew),
        aten.addmm: each(ew),  # the bias add of its epilogue
        aten._softmax: each(SOFTMAX_FWD_FLOPS),
        aten._softmax_backward_data: each(SOFTMAX_BWD_FLOPS),
        aten.gelu: each(GELU_FWD_FLOPS),
        aten.gelu_backward: each(GELU_BWD_FLOPS),
        aten.silu: each(SILU_FWD_FLOPS),
        aten.silu_backward: each(SILU_BWD_FLOPS),
        aten.sum: raw(lambda x, *a, out_val=None, **kw: ew * _numel(x)),
        # F.fold, unfold's backward: each column element added into its pixel
        aten.col2im: raw(lambda cols, *a, out_val=None, **kw: ew * _numel(cols)),
        aten.convolution: raw(_conv_bias),
        aten.convolution_backward: raw(_conv_bias_grad),
        aten.native_layer_norm: raw(layer_norm),
        aten.native_layer_norm_backward: raw(layer_norm_backward),
    }
    return {k: v for k, v in table.items()}


def _conv_bias(x, w, bias, *a, out_val=None, **kw) -> int:
    """A convolution's bias, added to each output element in its epilogue."""
    return ELEMENTWISE_FLOPS * _numel(out_val) if bias is not None else 0


def _conv_bias_grad(dy, x, w, bias_sizes, *a, out_val=None, **kw) -> int:
    """The bias's gradient Σ dY, where the backward computes it (output_mask[2])."""
    mask = a[-1] if a else kw.get("output_mask", (False, False, False))
    return ELEMENTWISE_FLOPS * _numel(dy) if mask[2] else 0


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def counter():
    """A FlopCounterMode that counts element-wise FLOPs only (the formulas above), and records
    every op it saw: ``uncounted()`` names those that did arithmetic with no convention."""
    from complexo.measure import _RecordingFlopCounter

    c = _RecordingFlopCounter()
    c.record_outputs = False
    c.flop_registry = {k: v for k, v in formulas().items()}
    return c


def uncounted(c) -> list[str]:
    known = {str(k) for k in c.flop_registry}
    return sorted(c.seen - known - NO_ARITHMETIC)
