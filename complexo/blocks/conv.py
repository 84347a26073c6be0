"""A standard k×k convolution and its depthwise-separable factorisation (MobileNet, Howard et al.
2017, section 3.1), from scratch, as an interviewer wants to see them.

Shape letters: B batch, C_in and C_out channels, R image side (H = W = R), k kernel side (odd),
s stride, S = ⌈R/s⌉ the output side. Padding k//2 keeps an odd kernel centred, so the output side
is ⌊(R + 2·(k−1)/2 − k)/s⌋ + 1 = ⌊(R − 1)/s⌋ + 1 = ⌈R/s⌉ for every R and s.

No BatchNorm or activation between or after the two convolutions (MobileNet has both): they cost
the same element-wise work on each side of the comparison and would hide the factorisation.

With ``dims=3`` every convolution is k×k×k over (T, R, R) (letters T' = ⌈T/s⌉ frames out);
``causal=True`` pads k − 1 zero frames in front and none behind (k//2 each side in space), so an
output frame sees only its own and earlier input frames: the causal 3D convolution of video
VAEs' encoders. The padding is an explicit ``F.pad`` copy, as those encoders write it.
:class:`UnfoldConv` is the standard 2D convolution as im2col: ``F.unfold`` and one matrix product.

>>> import torch
>>> x = torch.randn(2, 4, 7, 7)
>>> StandardConv(4, 6, 3, stride=2)(x).shape, DepthwiseSeparableConv(4, 6, 3, stride=2)(x).shape
(torch.Size([2, 6, 4, 4]), torch.Size([2, 6, 4, 4]))
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _check_kernel(k: int) -> None:
    if k < 1 or k % 2 == 0:
        raise ValueError(f"kernel side {k} must be odd and positive: padding k//2 centres it")


class StandardConv(nn.Module):
    """One k×k convolution: every output channel sees every input channel."""

    def __init__(
        self, c_in, c_out, k, stride=1, bias=True, dims: int = 2, causal: bool = False
    ) -> None:
        super().__init__()
        _check_kernel(k)
        self.conv = _conv(dims, c_in, c_out, k, stride, bias, causal)
        self.causal = _causal_pad(k) if causal else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.causal:  # (B, C_in, T, R, R) -> (B, C_in, T + k − 1, R + k − 1, R + k − 1)
            x = F.pad(x, self.causal)
        # each output pixel: a (C_in·k²) dot product per output channel (C_in·k³ in 3D)
        return self.conv(
            x
        )  # (B, C_in, [T,] R, R) * (C_out, C_in, k, k[, k]) -> (B, C_out, [T',] S, S)


class DepthwiseSeparableConv(nn.Module):
    """A k×k depthwise convolution (one filter per channel, groups = C_in; the stride sits here)
    then a 1×1 pointwise one that mixes channels."""

    def __init__(
        self, c_in, c_out, k, stride=1, bias=True, dims: int = 2, causal: bool = False
    ) -> None:
        super().__init__()
        _check_kernel(k)
        self.depthwise = _conv(dims, c_in, c_in, k, stride, bias, causal, groups=c_in)
        self.pointwise = _conv(dims, c_in, c_out, 1, 1, bias, False)
        self.causal = _causal_pad(k) if causal else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.causal:  # k − 1 zero frames in front, k//2 each side in space
            x = F.pad(x, self.causal)
        # each channel alone: a k² dot product per output pixel and channel (k³ in 3D)
        x = self.depthwise(
            x
        )  # (B, C_in, [T,] R, R) * (C_in, 1, k, k[, k]) -> (B, C_in, [T',] S, S)
        # a matmul per pixel: (B·S², C_in) x (C_in, C_out) -> (B·S², C_out)
        return self.pointwise(x)  # (B, C_in, [T',] S, S) * (C_out, C_in, 1, 1) -> (B, C_out, ...)


def _conv(dims, c_in, c_out, k, stride, bias, causal, groups=1) -> nn.Module:
    """nn.Conv2d or nn.Conv3d with padding k//2, or none where F.pad has padded (causal)."""
    make = nn.Conv2d if dims == 2 else nn.Conv3d
    pad = 0 if causal else k // 2
    return make(c_in, c_out, k, stride=stride, padding=pad, groups=groups, bias=bias)


def _causal_pad(k: int) -> tuple[int, ...]:
    """F.pad's amounts for (B, C, T, R, R), last axis first: k//2 on both sides of each spatial
    axis, k − 1 frames in front of the time axis and none behind."""
    return (k // 2, k // 2, k // 2, k // 2, k - 1, 0)


class UnfoldConv(nn.Module):
    """A standard 2D convolution as im2col: F.unfold copies each output pixel's receptive field
    (C_in·k² values) into a column, and one matrix product with the flattened weight does the
    rest. The same FLOPs as nn.Conv2d; the (B, C_in·k², S²) columns are materialised, k²·S²/R²
    times the input, and kept for dW."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, bias: bool = True):
        super().__init__()
        _check_kernel(k)
        self.k, self.stride = k, stride
        self.weight = nn.Parameter(torch.empty(c_out, c_in, k, k))
        self.bias = nn.Parameter(torch.empty(c_out)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Conv2d's initialisation
        if self.bias is not None:
            nn.init.uniform_(self.bias, -1 / (c_in * k * k) ** 0.5, 1 / (c_in * k * k) ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, R, _ = x.shape
        S = (R - 1) // self.stride + 1  # ⌈R/s⌉
        cols = F.unfold(x, self.k, padding=self.k // 2, stride=self.stride)  # (B, C_in·k², S²)
        w = self.weight.flatten(1)  # (C_out, C_in, k, k) -> (C_out, C_in·k²)
        y = F.linear(cols.transpose(1, 2), w, self.bias)  # (B, S², C_in·k²) x (C_in·k², C_out)
        return y.transpose(1, 2).reshape(B, -1, S, S)  # (B, S², C_out) -> (B, C_out, S, S)
