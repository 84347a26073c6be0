"""Attention over video tokens, three ways, from scratch: joint space-time attention (ViViT's
model 1), divided space-time attention (TimeSformer) and 3D window attention (Video Swin).

Shape letters are complexo's symbols: B batch, T frames, S = (R/p)² patch tokens per frame on a
√S × √S grid, d width, h heads (hs = d/h); a window holds N = w_t·w_h·w_w tokens and there are
nW of them per clip. Every block takes and returns (B, T, S, d): the patch embedding is done
(no class token) and only the attention layer is here.

Each attention layer is :class:`~complexo.blocks.attention.NaiveMHSA`: q, k, v and out
projections with biases and the attention core written as explicit matrix products, so the
T·S × T·S (or S × S, T × T, N × N) matrix is materialised, kept for the backward and measured,
and fvcore, which has no formula for scaled_dot_product_attention, counts the core too. The
fused kernel would execute the same matrix products and keep O(n) softmax statistics instead.
No norm, MLP or residual: one attention block per layer, the part in which the three differ.

>>> x = torch.randn(2, 3, 16, 8)  # B = 2, T = 3, S = 4², d = 8
>>> [tuple(m(x).shape) for m in (JointAttention(8, 2), FactorizedAttention(8, 2),
...                               WindowAttention(8, 2, (2, 3, 3)))]
[(2, 3, 16, 8), (2, 3, 16, 8), (2, 3, 16, 8)]
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from complexo.analyses.video_cost import window_size
from complexo.blocks.attention import NaiveMHSA


class JointAttention(nn.Module):
    """Every token attends to all T·S tokens of the clip: one (T·S)×(T·S) matrix per head."""

    def __init__(self, d: int, h: int, bias: bool = True):
        super().__init__()
        self.attn = NaiveMHSA(d, h, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, S, d = x.shape
        y = self.attn(x.reshape(B, T * S, d))  # (B, T·S, d) -> (B, T·S, d), (T·S)² scores a head
        return y.view(B, T, S, d)  # (B, T·S, d) -> (B, T, S, d)


class FactorizedAttention(nn.Module):
    """Divided space-time attention, in TimeSformer's order: temporal attention across the T
    frames at each of the S patch positions, then spatial attention within each frame. Two
    attention layers, each with its own q, k, v and out projections."""

    def __init__(self, d: int, h: int, bias: bool = True):
        super().__init__()
        self.temporal = NaiveMHSA(d, h, bias=bias)
        self.spatial = NaiveMHSA(d, h, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, S, d = x.shape
        # .contiguous(): one copy that q, k and v share. Without it, at B = 1 reshape returns a
        # strided view, and each projection copies it and keeps its own copy for the backward.
        x = x.transpose(1, 2).contiguous().view(B * S, T, d)  # (B, T, S, d) -> (B·S, T, d)
        x = self.temporal(x)  # (B·S, T, d) -> (B·S, T, d), T² scores a head
        x = x.view(B, S, T, d).transpose(1, 2).contiguous().view(B * T, S, d)  # -> (B·T, S, d)
        x = self.spatial(x)  # (B·T, S, d) -> (B·T, S, d), S² scores a head
        return x.view(B, T, S, d)  # (B·T, S, d) -> (B, T, S, d)


class WindowAttention(nn.Module):
    """3D window attention (Video Swin): the T × √S × √S token grid is padded with zeros up to a
    multiple of the window (after the last frame, row and column, as Video Swin pads), cut into
    nW windows of N = w_t·w_h·w_w tokens, and each token attends within its window only. The
    padded tokens go through the projections and attention like real ones (Video Swin masks
    them only in its shifted layers); the output is cropped back."""

    def __init__(self, d: int, h: int, window: tuple[int, int, int], bias: bool = True):
        super().__init__()
        self.window = window
        self.attn = NaiveMHSA(d, h, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, S, d = x.shape
        side = math.isqrt(S)  # √S = R/p: the token grid is side × side
        wt, wh, ww = window_size(self.window, T, side)
        pt, ph, pw = -T % wt, -side % wh, -side % ww  # padding up to a multiple of the window
        x = x.view(B, T, side, side, d)  # (B, T, S, d) -> (B, T, √S, √S, d)
        if pt or ph or pw:
            x = F.pad(x, (0, 0, 0, pw, 0, ph, 0, pt))  # -> (B, T + pt, √S + ph, √S + pw, d)
        t, hh, ww_ = (T + pt) // wt, (side + ph) // wh, (side + pw) // ww  # windows along each
        x = x.view(B, t, wt, hh, wh, ww_, ww, d)  # split each axis into (windows, window side)
        x = x.permute(0, 1, 3, 5, 2, 4, 6, 7).contiguous()  # (B, t, hh, ww_, wt, wh, ww, d)
        x = x.view(-1, wt * wh * ww, d)  # -> (B·nW, N, d): one sequence per window
        y = self.attn(x)  # (B·nW, N, d) -> (B·nW, N, d), N² scores a head per window
        y = y.view(B, t, hh, ww_, wt, wh, ww, d).permute(0, 1, 4, 2, 5, 3, 6, 7)  # windows back
        y = y.reshape(B, T + pt, side + ph, side + pw, d)  # -> (B, Tp, Hp, Wp, d)
        return y[:, :T, :side, :side].reshape(B, T, S, d)  # crop the padding: (B, T, S, d)


BLOCKS = {"joint": JointAttention, "factorized": FactorizedAttention, "window": WindowAttention}
