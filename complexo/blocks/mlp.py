"""A transformer's MLP, from scratch, as an interviewer wants to see it: the two-layer GELU MLP
(GPT-2, ViT) and the gated units of Shazeer 2020, "GLU Variants Improve Transformer": SwiGLU
(LLaMA, PaLM) and GeGLU.

Shape letters: B batch, n tokens, d width, f the GELU MLP's hidden width, f_g a gated MLP's.

    GELU MLP:   y = W_out · GELU(W_in · x)                  d -> f -> d, two matrices
    gated MLP:  y = W_down · (act(W_gate · x) ⊙ (W_up · x))  d -> f_g -> d, three matrices
                act = SiLU (SwiGLU) or GELU (GeGLU)

GELU is the exact, erf form (``F.gelu``'s default; GPT-2 used the tanh approximation).

``checkpoint=True`` runs the block under ``torch.utils.checkpoint.checkpoint(..., use_reentrant=
False)``: the forward keeps only its input x; the backward runs the block again up to the last
tensor it saves (the down projection's input, taken before its product runs), then its backward.

>>> import torch
>>> x = torch.randn(2, 3, 8)
>>> GeluMLP(8, 32)(x).shape, GatedMLP(8, 20, "swiglu")(x).shape
(torch.Size([2, 3, 8]), torch.Size([2, 3, 8]))
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as recompute

ACTIVATIONS = {"swiglu": F.silu, "geglu": F.gelu}


class GeluMLP(nn.Module):
    """d -> f -> d with an exact GELU between: 2·d·f weights (+ f + d biases)."""

    def __init__(self, d: int, f: int, bias: bool = True, checkpoint: bool = False):
        super().__init__()
        self.fc_in = nn.Linear(d, f, bias=bias)
        self.fc_out = nn.Linear(f, d, bias=bias)
        self.checkpoint = checkpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpoint:  # x alone is kept; the block runs again in the backward
            return recompute(self.block, x, use_reentrant=False)
        return self.block(x)

    def block(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc_in(x)  # (B, n, d) x (d, f) -> (B, n, f)
        a = F.gelu(h)  # (B, n, f): x·Φ(x), element-wise
        return self.fc_out(a)  # (B, n, f) x (f, d) -> (B, n, d)


class GatedMLP(nn.Module):
    """A gated linear unit: the activated gate scales the up projection element by element,
    then down projects: 3·d·f_g weights (+ 2·f_g + d biases)."""

    def __init__(
        self, d: int, f_g: int, gated: str = "swiglu", bias: bool = False, checkpoint: bool = False
    ):
        super().__init__()
        self.act = ACTIVATIONS[gated]
        self.gate_proj = nn.Linear(d, f_g, bias=bias)
        self.up_proj = nn.Linear(d, f_g, bias=bias)
        self.down_proj = nn.Linear(f_g, d, bias=bias)
        self.checkpoint = checkpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpoint:  # x alone is kept; the block runs again in the backward
            return recompute(self.block, x, use_reentrant=False)
        return self.block(x)

    def block(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.gate_proj(x))  # (B, n, d) x (d, f_g) -> (B, n, f_g), then act
        u = self.up_proj(x)  # (B, n, d) x (d, f_g) -> (B, n, f_g)
        return self.down_proj(a * u)  # (B, n, f_g) ⊙ (B, n, f_g) x (f_g, d) -> (B, n, d)
