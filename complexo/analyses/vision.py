"""Formulas of the building blocks that the CNN and ViT analyses rest on, each a pure function of
its sizes (sympy symbols or numbers): a convolution, a depthwise-separable convolution, a patch
embedding; and what the image analyses share (config checks, measurement, the op names).

FLOPs = 2·MAC: a convolution with C_out filters of C_in/g × k_h × k_w weights over an output of
H_out × W_out costs 2·B·C_out·H_out·W_out·(C_in/g)·k_h·k_w FLOPs.
"""

from __future__ import annotations

import sympy

from complexo.cost import Kind
from complexo.result import QuantitySpec

CONV = ("aten::conv", "aten::_convolution", "aten.convolution")
CONV_BWD = ("aten.convolution_backward",)
LINEAR = ("aten::linear", "aten.addmm", "aten.mm")
BATCH_NORM = ("aten::batch_norm", "aten._native_batch_norm_legit_functional")
LAYER_NORM = ("aten::layer_norm", "aten.native_layer_norm")
SDPA = ("aten::scaled_dot_product_attention", "aten._scaled_dot_product_flash_attention_for_cpu")
SDPA_BWD = ("aten._scaled_dot_product_flash_attention_for_cpu_backward",)


# The layer types an image model's time is grouped by (profiler ranges around each module
# call), and the group of each leaf module type.
LAYER_GROUPS = {
    "Conv2d": "convolutions",
    "BatchNorm2d": "batchnorm",
    "ReLU": "relu",
    "MaxPool2d": "pooling",
    "AdaptiveAvgPool2d": "pooling",
    "Linear": "linear layers",
    "LayerNorm": "layernorm",
}


def moved(t, group: str, expr, note: str = "") -> None:
    """The fewest bytes a layer type moves to and from memory in inference: every module call
    reads its input, parameters and buffers once and writes its output once (tags: "moved" and
    the group, a value of :data:`LAYER_GROUPS`)."""
    t.add(Kind.MEMORY, f"moved_{group.replace(' ', '_')}", expr, tags={"moved", group}, note=note)


def conv_out(size, k: int, stride: int = 1, pad: int = 0, dilation: int = 1):
    """Output side of a convolution (or pooling) window.

    >>> conv_out(224, 7, 2, 3)
    112
    """
    return sympy.floor(sympy.sympify(size + 2 * pad - dilation * (k - 1) - 1) / stride) + 1


def conv(B, c_in, c_out, k: int, out_h, out_w=None, *, groups: int = 1, bias: bool = False):
    """(FLOPs, parameters) of one convolution with a square k×k kernel.

    >>> from complexo.symbols import B, C, R, d, p
    >>> conv(B, C, d, p, R / p, bias=True)  # patch embedding: one matmul per patch
    (2*B*C*R**2*d, C*d*p**2 + d)
    """
    out_w = out_h if out_w is None else out_w
    per_group = sympy.sympify(c_in) / groups  # exact: never a float
    macs = c_out * out_h * out_w * per_group * k * k
    params = c_out * per_group * k * k + (c_out if bias else 0)
    return sympy.expand(2 * B * macs), sympy.expand(params)


def depthwise_separable(B, c_in, c_out, k: int, out_h, out_w=None):
    """(FLOPs, parameters) of a k×k depthwise convolution (groups = C_in) then a 1×1 pointwise
    one, without biases: about k² + C_out instead of k²·C_out per input channel and pixel.

    >>> from complexo.symbols import B, C
    >>> depthwise_separable(B, C, 2 * C, 3, 8)
    (256*B*C**2 + 1152*B*C, 2*C**2 + 9*C)
    """
    dw = conv(B, c_in, c_in, k, out_h, out_w, groups=c_in)
    pw = conv(B, c_in, c_out, 1, out_h, out_w)
    return sympy.expand(dw[0] + pw[0]), sympy.expand(dw[1] + pw[1])


def patch_embedding(B, C, d, R, p):
    """(FLOPs, parameters) of embedding (R/p)² patches of C·p² values into d: a p×p convolution
    with stride p, that is one (C·p²) × d matrix product per patch."""
    return conv(B, C, d, p, sympy.sympify(R) / p, bias=True)


# What both image analyses report, in the same order (the comparison sets them side by side).
QUANTITIES = (
    QuantitySpec("forward_flops", "forward FLOPs", Kind.FORWARD),
    QuantitySpec(
        "forward_matmul_flops",
        "  of which convolutions and matmuls",
        Kind.FORWARD,
        matmul_only=True,
    ),
    QuantitySpec("backward_flops", "backward FLOPs (convolutions and matmuls)", Kind.BACKWARD),
    QuantitySpec("params", "parameters", Kind.PARAMS),
    QuantitySpec("activation_bytes", "activations saved for backward", Kind.ACTIVATION),
)


def build_image(make, cfg, channels: int, device: str | None = "meta"):
    """A model from ``make()`` in ``cfg.dtype`` and a (B, C, R, R) image batch, on ``device``;
    ``device`` None: in the current mode (a FakeTensorMode: :func:`complexo.peak.in_dtype`)."""
    import contextlib

    import torch

    from complexo.conventions import torch_dtype
    from complexo.peak import in_dtype

    dtype = torch_dtype(cfg.dtype)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        module = in_dtype(make(), dtype, device)
        x = torch.randn(cfg.batch, channels, cfg.res, cfg.res, dtype=dtype)
    return module, x


def measure(build, values, model, quantities, *, attention: bool = False, fake=None):
    """The readings of an image model's quantities (``build()`` gives the model and its
    input, on meta tensors): FlopCounterMode and saved tensors from one forward and backward
    (from the logits' sum), fvcore's trace of the forward, the module's parameters. ``fake``:
    a build run under FakeTensorMode (CPU) for FlopCounterMode and the saved tensors instead
    (a checkpointed model's rerun in the backward: :mod:`complexo.analyses.vit_ckpt`)."""
    from complexo.cost import Kind
    from complexo.counting import counted
    from complexo.result import build_quantity

    def count() -> dict:
        from complexo.measure import (
            count_fvcore,
            cpu_attention_formulas,
            measure_torch,
            param_counts,
        )

        built, inputs = build()
        # BatchNorm's running statistics are saved for its backward but are buffers, not
        # activations.
        kept = [*built.parameters(), *built.buffers()]
        sdpa = "cpu-fused" if attention else "math"
        mapping = cpu_attention_formulas()  # FlopCounterMode has no formula for SDPA's CPU kernel
        if fake is None:
            run = measure_torch(lambda: built(inputs), kept, attention=sdpa, custom_mapping=mapping)
        else:
            from torch._subclasses.fake_tensor import FakeTensorMode

            with FakeTensorMode(allow_non_fake_inputs=True):
                m, x = fake()
                held = [*m.parameters(), *m.buffers()]
                run = measure_torch(lambda: m(x), held, attention=sdpa, custom_mapping=mapping)
        fv = count_fvcore(built, (inputs.detach(),))
        return {
            Kind.FORWARD: {"fvcore": fv, "torch": run.forward},
            Kind.BACKWARD: {"fvcore": None, "torch": run.backward},
            Kind.PARAMS: param_counts(built),
            Kind.ACTIVATION: {"fvcore": None, "torch": run.saved_bytes},
        }

    readings = counted(count, {})
    return [build_quantity(s, model, values, readings.get(s.unit_kind, {})) for s in quantities]
