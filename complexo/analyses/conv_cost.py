"""The convolution analysis's cost model (see :mod:`complexo.analyses.conv` for the symbols and
the analysis): one term per line for each convolution, 2D (k×k over R×R) or 3D (k×k×k over
T×R×R, centred or causal in time), direct or as F.unfold + a matrix product (im2col).

Every side of an output, spatial or temporal, is ⌈size/s⌉: with padding k//2 on both ends,
⌊(size + k − 1 − k)/s⌋ + 1 = ⌊(size − 1)/s⌋ + 1; causal padding puts the same k − 1 frames in
front instead, so the output is the same size and only which frames an output sees changes
(and the padded copy the block makes, below).
"""

from __future__ import annotations

import sympy

from complexo.analyses.vision import CONV, CONV_BWD
from complexo.conventions import ELEMENTWISE_FLOPS
from complexo.cost import CostModel, Kind, Terms
from complexo.result import QuantitySpec
from complexo.symbols import B, C_in, C_out, R, T, e, k, s

SIDES = ("standard", "separable")
IMPLS = ("direct", "unfold")
UNFOLD = ("aten::im2col", "aten.im2col")
COL2IM = ("aten.col2im",)  # unfold's backward: each column element added into its pixel


def mobilenet(dims: int = 2) -> sympy.Expr:
    """MobileNet's ratio (Howard et al. 2017, eq. 5), separable / standard, for FLOPs and
    weights; a 3D kernel has k³ taps, so 1/k³ there."""
    return 1 / C_out + 1 / k**dims


MOBILENET = mobilenet(2)


def out_side(size=R):
    """The output side of a k×k convolution with padding k//2 (or k − 1 in front) and stride s,
    k odd.

    >>> out_side(), out_side(T)
    (ceiling(R/s), ceiling(T/s))
    """
    return sympy.ceiling(size / s)


def volumes(dims: int):
    """(input volume, output volume) per channel and image: R², ⌈R/s⌉² or T·R², ⌈T/s⌉·⌈R/s⌉²."""
    if dims == 2:
        return R**2, out_side() ** 2
    return T * R**2, out_side(T) * out_side() ** 2


def padded(dims: int, causal: bool):
    """Elements per channel and image of the copy a causal block pads (k − 1 frames in front,
    k//2 = (k − 1)/2 each side in space): (T + k − 1)·(R + k − 1)²; none otherwise."""
    return (T + k - 1) * (R + k - 1) ** 2 if causal and dims == 3 else 0


def _convolution(t: Terms, name: str, c_in, c_out, kk, bias: bool, x_in, dims, groups=1):
    """One direct convolution's terms; ``x_in`` is its input's size in elements."""
    _, out = volumes(dims)
    taps = kk**dims  # k² or k³ weights per (input, output) channel pair
    flops = 2 * B * c_out * out * (c_in / groups) * taps  # a (C_in/g·k^D) dot product each
    weights = c_out * (c_in / groups) * taps
    y = B * c_out * out  # its output, (B, c_out, [T',] S, S)
    t.add(Kind.FORWARD, name, flops, mm=True, ops=CONV)
    t.add(Kind.BACKWARD, f"{name}.dx", flops, mm=True, ops=CONV_BWD, tags={"dx"}, note="dY ⋆ W")
    t.add(Kind.BACKWARD, f"{name}.dw", flops, mm=True, ops=CONV_BWD, tags={"dw"}, note="x ⋆ dY")
    t.add(Kind.PARAMS, name, weights, tags={"weights"})
    b = c_out if bias else 0
    if bias:
        t.add(Kind.FORWARD, f"{name}_bias", ELEMENTWISE_FLOPS * y, ops=CONV, note="+ b per output")
        t.add(Kind.BACKWARD, f"{name}.db", ELEMENTWISE_FLOPS * y, ops=CONV_BWD, tags={"db"})
        t.add(Kind.PARAMS, f"{name}_bias", b, tags={"bias"})
    what = "reads x, W, b; writes y" if bias else "reads x, W; writes y"
    t.add(
        Kind.MEMORY,
        f"moved_{name}",
        (x_in + weights + b + y) * e,
        tags={"moved", "convolutions"},
        note=what,
    )


def _unfolded(t: Terms, bias: bool) -> None:
    """The standard 2D convolution as im2col: F.unfold copies each output pixel's C_in·k²
    receptive field into a column, (B, C_in·k², S²), and one matrix product with the
    (C_out, C_in·k²) weight does the rest: the same FLOPs, and a matrix k²·S²/R² times the
    input, which the product keeps for dW instead of x."""
    _, out = volumes(2)
    cols = B * C_in * k**2 * out  # the unfolded matrix
    y = B * C_out * out
    flops = 2 * B * out * C_in * k**2 * C_out  # (B·S², C_in·k²) x (C_in·k², C_out)
    mm = ("aten::linear", "aten.mm")
    t.add(Kind.FORWARD, "conv", flops, mm=True, ops=mm, note="cols·Wᵀ")
    t.add(Kind.BACKWARD, "conv.dx", flops, mm=True, ops=("aten.mm",), tags={"dx"}, note="dY·W")
    t.add(Kind.BACKWARD, "conv.dw", flops, mm=True, ops=("aten.mm",), tags={"dw"}, note="dYᵀ·cols")
    t.add(Kind.BACKWARD, "col2im", ELEMENTWISE_FLOPS * cols, ops=COL2IM, note="fold: 1 add each")
    t.add(Kind.PARAMS, "conv", C_out * C_in * k**2, tags={"weights"})
    b = C_out if bias else 0
    if bias:
        add = ("aten::linear", "aten.add")
        t.add(Kind.FORWARD, "conv_bias", ELEMENTWISE_FLOPS * y, ops=add, note="+ b per output")
        t.add(Kind.BACKWARD, "conv.db", ELEMENTWISE_FLOPS * y, ops=("aten.sum",), tags={"db"})
        t.add(Kind.PARAMS, "conv_bias", b, tags={"bias"})
    t.add(Kind.ACTIVATION, "unfolded", cols * e, note="the columns, kept by the product for dW")
    t.add(
        Kind.MEMORY,
        "moved_conv",
        (B * C_in * R**2 + C_out * C_in * k**2 + b + y + 2 * cols) * e,
        tags={"moved", "convolutions"},
        note="reads x; writes, reads the columns; reads W, b; writes y",
    )
    t.add(Kind.MEMORY, "unfolded", cols * e, tags={"unfolded"}, note="B·C_in·k²·S², im2col")


def cost_model(
    side: str, bias: bool, dims: int = 2, causal: bool = False, impl: str = "direct"
) -> CostModel:
    """The symbolic cost of one side: FLOPs forward and backward, parameters, saved activations,
    bytes moved, and the unfolded matrix. ``impl="unfold"`` changes the standard side only (a
    depthwise convolution unfolded is no matrix product: it stays direct).

    >>> from complexo.cost import plain
    >>> plain(cost_model("standard", False, dims=3).total(Kind.FORWARD))
    '2·B·C_in·C_out·k³·ceiling(R/s)²·ceiling(T/s)'
    """
    t = Terms()
    x_in, out = volumes(dims)
    x = B * C_in * x_in  # the block's input
    pad = B * C_in * padded(dims, causal)  # its causal copy, the first convolution's input
    first = pad if causal and dims == 3 else x
    if side == "standard" and impl == "unfold":
        _unfolded(t, bias)
    else:
        note = "x padded (causal)" if first is pad else "x"
        t.add(Kind.ACTIVATION, "input", first * e, note=f"{note}, kept by the first conv for dW")
    if side == "standard" and impl == "direct":
        _convolution(t, "conv", C_in, C_out, k, bias, first, dims)
    elif side == "separable":
        _convolution(t, "depthwise", C_in, C_in, k, bias, first, dims, groups=C_in)
        mid = B * C_in * out  # the depthwise output
        t.add(Kind.ACTIVATION, "depthwise_output", mid * e, note="kept by the pointwise conv")
        _convolution(t, "pointwise", C_in, C_out, 1, bias, mid, dims)
    if pad:
        note = "F.pad's copy: (T + k − 1)·(R + k − 1)² per channel"
        t.add(Kind.MEMORY, "causal_padded", pad * e, tags={"padded"}, note=note)
    return t.model()


def mobilenet_ratio(dims: int = 2) -> sympy.Expr:
    """separable / standard for the convolutions' FLOPs and their weights, from the cost models,
    simplified: the output volume cancels, and so do B and C_in.

    >>> mobilenet_ratio() == 1 / C_out + 1 / k**2, sympy.factor(mobilenet_ratio(3))
    (True, (C_out + k**3)/(C_out*k**3))
    """
    standard, separable = (cost_model(side, False, dims) for side in SIDES)
    flops = sympy.simplify(separable.total(Kind.FORWARD) / standard.total(Kind.FORWARD))
    weights = sympy.simplify(separable.total(Kind.PARAMS) / standard.total(Kind.PARAMS))
    if sympy.simplify(flops - weights) != 0:
        raise AssertionError(f"FLOPs ratio {flops} is not the weights' ratio {weights}")
    return flops


QUANTITIES = (
    QuantitySpec("forward_flops", "forward FLOPs", Kind.FORWARD),
    QuantitySpec("forward_matmul_flops", "  of which convolutions", Kind.FORWARD, matmul_only=True),
    QuantitySpec("backward_flops", "backward FLOPs (dX, dW, bias gradients)", Kind.BACKWARD),
    QuantitySpec(
        "backward_matmul_flops",
        "  of which convolutions (dX, dW)",
        Kind.BACKWARD,
        matmul_only=True,
    ),
    QuantitySpec("params", "parameters", Kind.PARAMS),
    QuantitySpec("activation_bytes", "activations saved for backward", Kind.ACTIVATION),
    QuantitySpec(
        "forward_moved_bytes", "bytes moved by a forward (fewest)", Kind.MEMORY, tag="moved"
    ),
)
# with --impl unfold only: a direct convolution has no columns
UNFOLDED = QuantitySpec(
    "unfolded_bytes", "the unfolded matrix (im2col)", Kind.MEMORY, tag="unfolded"
)
