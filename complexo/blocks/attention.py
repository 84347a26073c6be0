"""Multi-head self-attention, from scratch, twice: every step written out, and the same block
through ``F.scaled_dot_product_attention``.

Shape letters are complexo's symbols: B batch, n tokens, d model width, h heads, hs = d/h;
for cross-attention m context tokens of width d_c (k and v come from them, q from the n tokens).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from complexo.blocks.positions import ADDED, RotaryPositions


class MHSA(nn.Module):
    """The four projections that both implementations share (as ``nn.MultiheadAttention`` has:
    4·d² weights, and 4·d biases unless ``bias=False``). With ``kv_heads`` G < h (grouped-query
    attention; G = 1 is multi-query) k and v have G heads, each shared by h/G query heads.
    With ``context_dim`` d_c it is cross-attention: ``forward(x, context)`` takes k and v from
    the (B, m, d_c) context; without it, from x (self-attention, d_c = d)."""

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
        context_dim: int | None = None,
        pos: str = "none",
        max_seq: int | None = None,
    ):
        super().__init__()
        g = kv_heads or h
        if d % h != 0 or h % g != 0:
            raise ValueError(f"d={d} is not divisible by h={h}, or h by kv_heads={g}")
        self.h, self.g, self.causal = h, g, causal or window is not None
        self.window, self.alibi = window, alibi  # naive attention only
        self.cross = context_dim is not None
        if self.cross and (self.causal or alibi or pos != "none"):
            raise ValueError("cross-attention has no causal order between queries and context")
        d_c = context_dim or d
        self.q_proj = nn.Linear(d, d, bias=bias)
        self.k_proj = nn.Linear(d_c, d // h * g, bias=bias)
        self.v_proj = nn.Linear(d_c, d // h * g, bias=bias)
        self.out_proj = nn.Linear(d, d, bias=bias)
        # positions (blocks/positions.py): an add at the input (learned, sinusoidal), q and k
        # rotated (rope), or ALiBi's bias on the scores (``alibi``); none in cross-attention
        self.pos = "alibi" if alibi else pos
        if self.pos in ADDED:
            self.positions = ADDED[self.pos](max_seq, d)
        elif self.pos == "rope":
            self.rope = RotaryPositions(max_seq, d // h)

    def split_heads(self, x: torch.Tensor, heads: int | None = None) -> torch.Tensor:
        B, n, width = x.shape
        heads = heads or self.h
        return x.view(B, n, heads, width // heads).transpose(1, 2)  # (B, n, d) -> (B, h, n, hs)

    def project(self, x: torch.Tensor, context: torch.Tensor | None = None):
        if self.pos in ADDED:
            x = self.positions(x)  # (B, n, d) + (n, d): token i gets position i's row
        c = x if context is None else context  # self-attention: m = n, d_c = d
        q, k = self.q_proj(x), self.k_proj(c)  # (B, n, d) x (d, d); (B, m, d_c) x (d_c, G·hs)
        if self.pos == "rope":  # q and k turned by their positions' angles, per head; v is not
            q = self.rope(q.unflatten(-1, (self.h, -1))).flatten(-2)  # (B, n, h, hs) rotated
            k = self.rope(k.unflatten(-1, (self.g, -1))).flatten(-2)  # G heads, before sharing
        q = self.split_heads(q)  # (B, n, d) -> (B, h, n, hs)
        k = self.split_heads(k, self.g)  # (B, m, G·hs) -> (B, G, m, hs)
        v = self.split_heads(self.v_proj(c), self.g)  # (B, m, d_c) x (d_c, G·hs) -> (B, G, m, hs)
        return q, k, v

    def share(self, kv: torch.Tensor) -> torch.Tensor:
        """Each of the G key/value heads serves h/G query heads: (B, G, m, hs) -> (B, h, m, hs)."""
        return kv if self.g == self.h else kv.repeat_interleave(self.h // self.g, dim=1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if (context is None) == self.cross:
            raise ValueError("a cross-attention block takes a context, a self-attention one none")
        B, n, d = x.shape
        q, k, v = self.project(x, context)
        y = self.attend(q, self.share(k), self.share(v))  # (B, h, n, hs)
        y = y.transpose(1, 2).reshape(B, n, d)  # (B, h, n, hs) -> (B, n, d): heads side by side
        return self.out_proj(y)  # (B, n, d) x (d, d) -> (B, n, d)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class NaiveMHSA(MHSA):
    """Scores, scale, mask, softmax and weighted sum as separate ops: the n×n matrix is
    materialised, and softmax's output is kept for the backward."""

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        n, hs = q.shape[-2:]  # keys: m = n in self-attention, the context's m in cross
        att = q @ k.transpose(-2, -1)  # (B, h, n, hs) x (B, h, hs, m) -> (B, h, n, m)
        att = att * (1.0 / math.sqrt(hs))  # (B, h, n, m): scaled scores
        if self.alibi:
            att = att + alibi_bias(self.h, n, q)  # (h, n, n): −m_head·|i − j|, no parameters
        if self.causal:
            ones = torch.ones(n, n, dtype=torch.bool, device=q.device)
            keep = torch.tril(ones)  # (n, n): query i sees keys j ≤ i
            if self.window is not None:  # ... and only the last `window` of them
                keep = keep & torch.triu(ones, diagonal=1 - self.window)
            att = att.masked_fill(~keep, float("-inf"))
        att = F.softmax(att, dim=-1)  # (B, h, n, m): each row sums to 1 over the keys
        return att @ v  # (B, h, n, m) x (B, h, m, hs) -> (B, h, n, hs)


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
        # (B, h, n, hs), (B, h, m, hs) x2 -> (B, h, n, hs), scale 1/√hs by default
        return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)


IMPLEMENTATIONS: dict[str, type[MHSA]] = {"naive": NaiveMHSA, "sdpa": SDPAMHSA, "flash": SDPAMHSA}
