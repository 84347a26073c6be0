"""Vision Transformers (ViT-Ti/S/B/L/H, patch 14, 16 or 32; DeiT-Ti/S/B), from scratch, layer for
layer as torchvision builds them: patches embedded by a strided convolution, a class token,
learned position embeddings, pre-norm encoder blocks (LayerNorm ε = 1e-6, attention with biases,
MLP d -> 4d -> d with exact GELU), a final LayerNorm and a linear head on the class token.

Shape letters: B batch, C channels, R image side, p patch, n = (R/p)² + 1 tokens, d width,
h heads, f = 4d MLP width, K classes.

Activation checkpointing (``checkpoint=``): "none" saves every activation autograd needs;
"full" runs each encoder block under ``torch.utils.checkpoint.checkpoint(block, x,
use_reentrant=False)``, so the forward keeps only each block's input and the backward runs one
block's forward again just before its backward; "selective" does so for the attention core only,
from q, k, v to the merged heads' output (Korthikanti et al. 2022, "Reducing Activation
Recomputation in Large Transformer Models"). No dropout here: recomputing gives the same
numbers, the gradients are those of "none".
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as recompute

from complexo.blocks.attention import SDPAMHSA
from complexo.presets import VIT_CHECKPOINTS as CHECKPOINTS
from complexo.presets import ViTConfig


class MLP(nn.Module):
    def __init__(self, d: int, f: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, f), nn.Linear(f, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # (B, n, d) x (d, f) -> (B, n, f) -> (B, n, d)


class RecomputedCoreMHSA(SDPAMHSA):
    """SDPAMHSA whose attention core, q, k, v -> SDPA -> heads merged, is checkpointed: the
    forward keeps q, k, v (the checkpoint's inputs) and the merged output (out_proj's input),
    not the kernel's softmax statistics; the backward runs the core again before its own."""

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        B, n, d = x.shape
        q, k, v = self.project(x)  # (B, h, n, hs) each

        def core(q, k, v):  # (B, h, n, hs) x3 -> (B, n, d)
            return self.attend(q, k, v).transpose(1, 2).reshape(B, n, d)

        return self.out_proj(recompute(core, q, k, v, use_reentrant=False))


class EncoderBlock(nn.Module):
    def __init__(self, cfg: ViTConfig, selective: bool = False):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.attn = (RecomputedCoreMHSA if selective else SDPAMHSA)(cfg.dim, cfg.heads)
        self.ln_2 = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.mlp = MLP(cfg.dim, cfg.mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # (B, n, d)
        return x + self.mlp(self.ln_2(x))  # (B, n, d)


class ViT(nn.Module):
    def __init__(self, cfg: ViTConfig, image: int = 224, checkpoint: str = "none"):
        super().__init__()
        if image % cfg.patch:
            raise ValueError(f"image side {image} is not divisible by the patch size {cfg.patch}")
        if checkpoint not in CHECKPOINTS:
            raise ValueError(f"checkpoint {checkpoint!r} is not one of {', '.join(CHECKPOINTS)}")
        self.cfg, self.checkpoint = cfg, checkpoint
        tokens = (image // cfg.patch) ** 2 + 1
        self.conv_proj = nn.Conv2d(cfg.channels, cfg.dim, cfg.patch, stride=cfg.patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))  # (1, 1, d)
        self.pos_embedding = nn.Parameter(torch.empty(1, tokens, cfg.dim).normal_(std=0.02))
        selective = checkpoint == "selective"
        self.layers = nn.ModuleList(EncoderBlock(cfg, selective) for _ in range(cfg.layers))
        self.ln = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Linear(cfg.dim, cfg.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        x = self.conv_proj(x)  # (B, C, R, R) -> (B, d, R/p, R/p): one matmul per patch
        x = x.flatten(2).transpose(1, 2)  # (B, (R/p)², d)
        x = torch.cat([self.class_token.expand(B, -1, -1), x], dim=1)  # (B, n, d)
        x = x + self.pos_embedding  # (B, n, d)
        for layer in self.layers:  # "full": only x is kept; the block runs again in the backward
            x = recompute(layer, x, use_reentrant=False) if self.checkpoint == "full" else layer(x)
        x = self.ln(x)  # (B, n, d)
        return self.head(x[:, 0])  # class token: (B, d) x (d, K) -> (B, K)
