"""Example blocks for tests/test_derive.py: written here, loaded by path as a user's file is."""

import math

import torch
from torch import nn


class MLP(nn.Module):
    """Two linear layers with a GELU between: d -> f -> d."""

    def __init__(self, d, f):
        super().__init__()
        self.up = nn.Linear(d, f)
        self.down = nn.Linear(f, d)

    def forward(self, x):
        return self.down(nn.functional.gelu(self.up(x)))


class SelfAttention(nn.Module):
    """Multi-head self-attention written out: qkv projection, softmax(QKᵀ/√hs)V, output."""

    def __init__(self, d, h):
        super().__init__()
        assert d % h == 0, "d must be a multiple of h"
        self.h = h
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x):
        B, n, d = x.shape
        hs = d // self.h
        q, k, v = self.qkv(x).view(B, n, 3, self.h, hs).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1) / math.sqrt(hs)).softmax(-1)
        return self.out((att @ v).transpose(1, 2).reshape(B, n, d))


class CachedPositions(nn.Module):
    """Keeps a table per sequence length in a dict: a size used as a key (fine with numbers,
    impossible with a symbolic size)."""

    def __init__(self, d):
        super().__init__()
        self.proj = nn.Linear(d, d)
        self.cache = {}

    def forward(self, x):
        n = x.shape[1]
        if n not in self.cache:
            self.cache[n] = torch.zeros(n, x.shape[2], device=x.device)
        return self.proj(x + self.cache[n])


NotABlock = dict


class FloatScale(nn.Module):
    """Turns a size into a Python float: a symbolic trace can only pin that size."""

    def __init__(self, d):
        super().__init__()
        self.proj = nn.Linear(d, d)
        self.scale = 1.0 / float(d)

    def forward(self, x):
        return self.proj(x) * self.scale


class BranchOnValues(nn.Module):
    """Control flow on a tensor's values: no trace without data can follow it."""

    def __init__(self, d):
        super().__init__()
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        return self.proj(x) if x.sum() > 0 else x


class Cross(nn.Module):
    """Two inputs: a projection of x against every row of y."""

    def __init__(self, d):
        super().__init__()
        self.proj = nn.Linear(d, d)

    def forward(self, x, y):
        return self.proj(x) @ y.transpose(-1, -2)


class StridedConv(nn.Module):
    """A 3×3 convolution with stride 2 and padding 1: output side ⌊(R + 2 − 3)/2⌋ + 1 = ⌈R/2⌉."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class CausalConv(nn.Module):
    """A causal 1D convolution of kernel k: k − 1 zeros in front (F.pad), none behind, so output
    i sees inputs i − k + 1 .. i and the length stays n."""

    def __init__(self, c, k):
        super().__init__()
        self.k = k
        self.conv = nn.Conv1d(c, c, k, bias=False)

    def forward(self, x):
        return self.conv(nn.functional.pad(x, (self.k - 1, 0)))


class Im2col(nn.Module):
    """A 3×3 convolution as F.unfold (padding 1, stride 2) and one product with a (C·9, K)
    weight."""

    def __init__(self, c, k):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(c * 9, k))

    def forward(self, x):
        cols = nn.functional.unfold(x, 3, padding=1, stride=2)  # (B, C·9, ⌈R/2⌉²)
        return cols.transpose(1, 2) @ self.w


class LoRALayer(nn.Module):
    """complexo's LoRA on one linear layer, d_in -> d_out at rank r (for make bench)."""

    def __init__(self, d_in, d_out, r):
        super().__init__()
        from complexo.blocks.lora import LoRALinear

        self.layer = LoRALinear(nn.Linear(d_in, d_out), r, 16.0)

    def forward(self, x):
        return self.layer(x)
