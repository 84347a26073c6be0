"""Multi-head self-attention, from scratch, twice: every step written out, and the same block
through ``F.scaled_dot_product_attention``.

Shape letters are complexo's symbols: B batch, n tokens, d model width, h heads, hs = d/h.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class MHSA(nn.Module):
    """The four projections that both implementations share (as ``nn.MultiheadAttention`` has:
    4·d² weights, and 4·d biases unless ``bias=False``)."""

    def __init__(self, d: int, h: int, *, bias: bool = True, causal: bool = False):
        super().__init__()
        if d % h != 0:
            raise ValueError(f"d={d} is not divisible by h={h}")
        self.h, self.causal = h, causal
        self.q_proj = nn.Linear(d, d, bias=bias)
        self.k_proj = nn.Linear(d, d, bias=bias)
        self.v_proj = nn.Linear(d, d, bias=bias)
        self.out_proj = nn.Linear(d, d, bias=bias)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, n, d = x.shape
        return x.view(B, n, self.h, d // self.h).transpose(1, 2)  # (B, n, d) -> (B, h, n, hs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, n, d = x.shape
        q = self.split_heads(self.q_proj(x))  # (B, n, d) x (d, d) -> (B, h, n, hs)
        k = self.split_heads(self.k_proj(x))  # (B, n, d) x (d, d) -> (B, h, n, hs)
        v = self.split_heads(self.v_proj(x))  # (B, n, d) x (d, d) -> (B, h, n, hs)
        y = self.attend(q, k, v)  # (B, h, n, hs)
        y = y.transpose(1, 2).reshape(B, n, d)  # (B, h, n, hs) -> (B, n, d): heads side by side
        return self.out_proj(y)  # (B, n, d) x (d, d) -> (B, n, d)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class NaiveMHSA(MHSA):
    """Scores, scale, mask, softmax and weighted sum as separate ops: the n×n matrix is
    materialised, and softmax's output is kept for the backward."""

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        n, hs = q.shape[-2:]
        att = q @ k.transpose(-2, -1)  # (B, h, n, hs) x (B, h, hs, n) -> (B, h, n, n)
        att = att * (1.0 / math.sqrt(hs))  # (B, h, n, n): scaled scores
        if self.causal:
            keep = torch.tril(torch.ones(n, n, dtype=torch.bool, device=q.device))  # (n, n)
            att = att.masked_fill(~keep, float("-inf"))  # query i sees keys j ≤ i only
        att = F.softmax(att, dim=-1)  # (B, h, n, n): each row sums to 1 over the keys
        return att @ v  # (B, h, n, n) x (B, h, n, hs) -> (B, h, n, hs)


class SDPAMHSA(MHSA):
    """The same block through PyTorch's fused attention; on CPU and CUDA it keeps O(n) softmax
    statistics instead of the n×n matrix and recomputes the scores in the backward."""

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # (B, h, n, hs) x3 -> (B, h, n, hs), scale 1/√hs by default
        return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)


IMPLEMENTATIONS: dict[str, type[MHSA]] = {"naive": NaiveMHSA, "sdpa": SDPAMHSA}
