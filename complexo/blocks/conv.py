"""A standard k×k convolution and its depthwise-separable factorisation (MobileNet, Howard et al.
2017, section 3.1), from scratch, as an interviewer wants to see them.

Shape letters: B batch, C_in and C_out channels, R image side (H = W = R), k kernel side (odd),
s stride, S = ⌈R/s⌉ the output side. Padding k//2 keeps an odd kernel centred, so the output side
is ⌊(R + 2·(k−1)/2 − k)/s⌋ + 1 = ⌊(R − 1)/s⌋ + 1 = ⌈R/s⌉ for every R and s.

No BatchNorm or activation between or after the two convolutions (MobileNet has both): they cost
the same element-wise work on each side of the comparison and would hide the factorisation.

>>> import torch
>>> x = torch.randn(2, 4, 7, 7)
>>> StandardConv(4, 6, 3, stride=2)(x).shape, DepthwiseSeparableConv(4, 6, 3, stride=2)(x).shape
(torch.Size([2, 6, 4, 4]), torch.Size([2, 6, 4, 4]))
"""

from __future__ import annotations

import torch
import torch.nn as nn


def _check_kernel(k: int) -> None:
    if k < 1 or k % 2 == 0:
        raise ValueError(f"kernel side {k} must be odd and positive: padding k//2 centres it")


class StandardConv(nn.Module):
    """One k×k convolution: every output channel sees every input channel."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, bias: bool = True):
        super().__init__()
        _check_kernel(k)
        self.conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # each output pixel: a (C_in·k²) dot product per output channel
        return self.conv(x)  # (B, C_in, R, R) * (C_out, C_in, k, k) -> (B, C_out, S, S)


class DepthwiseSeparableConv(nn.Module):
    """A k×k depthwise convolution (one filter per channel, groups = C_in; the stride sits here)
    then a 1×1 pointwise one that mixes channels."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, bias: bool = True):
        super().__init__()
        _check_kernel(k)
        self.depthwise = nn.Conv2d(
            c_in, c_in, k, stride=stride, padding=k // 2, groups=c_in, bias=bias
        )
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # each channel alone: a k² dot product per output pixel and channel
        x = self.depthwise(x)  # (B, C_in, R, R) * (C_in, 1, k, k) -> (B, C_in, S, S)
        # a matmul per pixel: (B·S², C_in) x (C_in, C_out) -> (B·S², C_out)
        return self.pointwise(x)  # (B, C_in, S, S) * (C_out, C_in, 1, 1) -> (B, C_out, S, S)
