"""Vision Transformers (ViT-Ti/S/B/L/H, patch 14, 16 or 32; DeiT-Ti/S/B), from scratch, layer for
layer as torchvision builds them: patches embedded by a strided convolution, a class token,
learned position embeddings, pre-norm encoder blocks (LayerNorm ε = 1e-6, attention with biases,
MLP d -> 4d -> d with exact GELU), a final LayerNorm and a linear head on the class token.

Shape letters: B batch, C channels, R image side, p patch, n = (R/p)² + 1 tokens, d width,
h heads, f = 4d MLP width, K classes.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from complexo.blocks.attention import SDPAMHSA
from complexo.presets import ViTConfig


class MLP(nn.Module):
    def __init__(self, d: int, f: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, f), nn.Linear(f, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # (B, n, d) x (d, f) -> (B, n, f) -> (B, n, d)


class EncoderBlock(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.attn = SDPAMHSA(cfg.dim, cfg.heads)
        self.ln_2 = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.mlp = MLP(cfg.dim, cfg.mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # (B, n, d)
        return x + self.mlp(self.ln_2(x))  # (B, n, d)


class ViT(nn.Module):
    def __init__(self, cfg: ViTConfig, image: int = 224):
        super().__init__()
        if image % cfg.patch:
            raise ValueError(f"image side {image} is not divisible by the patch size {cfg.patch}")
        self.cfg = cfg
        tokens = (image // cfg.patch) ** 2 + 1
        self.conv_proj = nn.Conv2d(cfg.channels, cfg.dim, cfg.patch, stride=cfg.patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))  # (1, 1, d)
        self.pos_embedding = nn.Parameter(torch.empty(1, tokens, cfg.dim).normal_(std=0.02))
        self.layers = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.layers))
        self.ln = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Linear(cfg.dim, cfg.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        x = self.conv_proj(x)  # (B, C, R, R) -> (B, d, R/p, R/p): one matmul per patch
        x = x.flatten(2).transpose(1, 2)  # (B, (R/p)², d)
        x = torch.cat([self.class_token.expand(B, -1, -1), x], dim=1)  # (B, n, d)
        x = x + self.pos_embedding  # (B, n, d)
        for layer in self.layers:
            x = layer(x)
        x = self.ln(x)  # (B, n, d)
        return self.head(x[:, 0])  # class token: (B, d) x (d, K) -> (B, K)
