"""Positional encodings, from scratch, as an interviewer wants to see them: what is a parameter,
what is a fixed table, and where each one touches the block.

Shape letters are complexo's symbols: B batch, n tokens, d width, h heads, hs = d/h; P is n_max,
the positions a table holds (n ≤ P). ALiBi, the fourth kind, is a bias on the scores:
:func:`complexo.blocks.attention.alibi_bias`.

- learned (GPT-2, BERT): a (P, d) parameter table; row i is added to token i's embedding.
- sinusoidal (Vaswani et al. 2017): the same add, but of a fixed (P, d) table: a buffer.
- RoPE (Su et al. 2021): no add; q and k of every head are rotated pair by pair by angles
  i·θ_j, from fixed (P, hs/2) cos and sin tables, so that q_i·k_j depends on i − j only.
"""

from __future__ import annotations

import torch
import torch.nn as nn

BASE = 10000.0  # the wavelength base of sinusoidal encodings and RoPE's frequencies


def frequencies(pairs: int, width: int) -> torch.Tensor:
    """θ_j = BASE^(−2j/width) for j < pairs: one angle per pair of features."""
    return BASE ** (-2.0 * torch.arange(pairs, dtype=torch.float32) / width)


class LearnedPositions(nn.Module):
    """x + P[:n]: a trained (P, d) table, P·d parameters; the gradient of the table is dY summed
    over the batch."""

    def __init__(self, max_seq: int, d: int):
        super().__init__()
        self.table = nn.Parameter(torch.randn(max_seq, d) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.table[: x.shape[1]]  # (B, n, d) + (n, d): one add per element


class SinusoidalPositions(nn.Module):
    """x + PE[:n] with PE[i, 2j] = sin(i·θ_j), PE[i, 2j + 1] = cos(i·θ_j), θ_j = 10000^(−2j/d):
    built once, a buffer (moved with the module, never trained)."""

    def __init__(self, max_seq: int, d: int):
        super().__init__()
        angles = torch.arange(max_seq, dtype=torch.float32)[:, None] * frequencies((d + 1) // 2, d)
        table = torch.zeros(max_seq, d)
        table[:, 0::2] = torch.sin(angles)  # (P, ⌈d/2⌉)
        table[:, 1::2] = torch.cos(angles[:, : d // 2])  # (P, ⌊d/2⌋)
        self.register_buffer("table", table)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.table[: x.shape[1]]  # (B, n, d) + (n, d): one add per element


class RotaryPositions(nn.Module):
    """RoPE on (B, n, heads, hs) queries or keys (before the heads move in front, as LLaMA does:
    the rotated q then has the layout of the projection's output, and SDPA's output, which
    follows q's, merges its heads without a copy), in the rotate-half layout (GPT-NeoX, LLaMA in
    Hugging Face): feature j pairs with feature j + hs/2 and the pair turns by angle i·θ_j:

        (x1, x2) -> (x1·cos − x2·sin, x1·sin + x2·cos): 4 multiplies and 2 adds per pair.

    The cos and sin tables, (P, hs/2) each, are buffers built once."""

    def __init__(self, max_seq: int, head_size: int):
        super().__init__()
        if head_size % 2:
            raise ValueError(f"RoPE rotates pairs of features: head size {head_size} is odd")
        angles = torch.arange(max_seq, dtype=torch.float32)[:, None]
        angles = angles * frequencies(head_size // 2, head_size)  # (P, hs/2): i·θ_j
        dtype = torch.get_default_dtype()  # the block's element type (.to() casts them too)
        self.register_buffer("cos", torch.cos(angles).to(dtype))
        self.register_buffer("sin", torch.sin(angles).to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, half = x.shape[1], x.shape[-1] // 2
        cos, sin = self.cos[:n, None], self.sin[:n, None]  # (n, 1, hs/2): over B and heads
        x1, x2 = x[..., :half], x[..., half:]  # (B, n, heads, hs/2) each
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


ADDED = {"learned": LearnedPositions, "sinusoidal": SinusoidalPositions}
