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
    4·d² weights, and 4·d biases unless ``bias=False``). With ``kv_heads`` G < h (grouped-query
    attention; G = 1 is multi-query) k and v have G heads, each shared by h/G query heads."""

    def __init__(
        self,
        d: int,
        h: int,
        *,
        bias: bool = True,
        causal: bool = False,
        kv_heads: int | None = None,
        window: int | None = None,
        alibi: bool = False,
    ):
        super().__init__()
        g = kv_heads or h
        if d % h != 0 or h % g != 0:
            raise ValueError(f"d={d} is not divisible by h={h}, or h by kv_heads={g}")
        self.h, self.g, self.causal = h, g, causal or window is not None
        self.window, self.alibi = window, alibi  # naive attention only
        self.q_proj = nn.Linear(d, d, bias=bias)
        self.k_proj = nn.Linear(d, d // h * g, bias=bias)
        self.v_proj = nn.Linear(d, d // h * g, bias=bias)
        self.out_proj = nn.Linear(d, d, bias=bias)

    def split_heads(self, x: torch.Tensor, heads: int | None = None) -> torch.Tensor:
        B, n, width = x.shape
        heads = heads or self.h
        return x.view(B, n, heads, width // heads).transpose(1, 2)  # (B, n, d) -> (B, h, n, hs)

    def project(self, x: torch.Tensor):
        q = self.split_heads(self.q_proj(x))  # (B, n, d) x (d, d) -> (B, h, n, hs)
        k = self.split_heads(self.k_proj(x), self.g)  # (B, n, d) x (d, G·hs) -> (B, G, n, hs)
        v = self.split_heads(self.v_proj(x), self.g)  # (B, n, d) x (d, G·hs) -> (B, G, n, hs)
        return q, k, v

    def share(self, kv: torch.Tensor) -> torch.Tensor:
        """Each of the G key/value heads serves h/G query heads: (B, G, n, hs) -> (B, h, n, hs)."""
        return kv if self.g == self.h else kv.repeat_interleave(self.h // self.g, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, n, d = x.shape
        q, k, v = self.project(x)
        y = self.attend(q, self.share(k), self.share(v))  # (B, h, n, hs)
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
        if self.alibi:
            att = att + alibi_bias(self.h, n, q)  # (h, n, n): −m_head·|i − j|, no parameters
        if self.causal:
            ones = torch.ones(n, n, dtype=torch.bool, device=q.device)
            keep = torch.tril(ones)  # (n, n): query i sees keys j ≤ i
            if self.window is not None:  # ... and only the last `window` of them
                keep = keep & torch.triu(ones, diagonal=1 - self.window)
            att = att.masked_fill(~keep, float("-inf"))
        att = F.softmax(att, dim=-1)  # (B, h, n, n): each row sums to 1 over the keys
        return att @ v  # (B, h, n, n) x (B, h, n, hs) -> (B, h, n, hs)


def alibi_bias(h: int, n: int, like: torch.Tensor) -> torch.Tensor:
    """ALiBi (Press et al. 2022): head k adds −m_k·|i − j| to its scores, m_k = 2^(−8k/h);
    fixed slopes, no learned position parameters."""
    slopes = 2.0 ** (-8.0 * torch.arange(1, h + 1, device=like.device) / h)  # (h,)
    pos = torch.arange(n, device=like.device)
    distance = (pos[None, :] - pos[:, None]).abs()  # (n, n)
    return (distance * (-slopes)[:, None, None]).to(like.dtype)  # (h, n, n)


class SDPAMHSA(MHSA):
    """The same block through PyTorch's fused attention; on CPU and CUDA it keeps O(n) softmax
    statistics instead of the n×n matrix and recomputes the scores in the backward."""

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # (B, h, n, hs) x3 -> (B, h, n, hs), scale 1/√hs by default
        return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)


IMPLEMENTATIONS: dict[str, type[MHSA]] = {"naive": NaiveMHSA, "sdpa": SDPAMHSA, "flash": SDPAMHSA}
