"""Vision Transformers (ViT-Ti/S/B/L/H, patch 14, 16 or 32; DeiT-Ti/S/B), from scratch, layer for
layer as torchvision builds them: patches embedded by a strided convolution, a class token,
learned position embeddings, pre-norm encoder blocks (LayerNorm ε = 1e-6, attention with biases,
MLP d -> 4d -> d with exact GELU), a final LayerNorm and a linear head on the class token.

Shape letters: B batch, C channels, R image side, p patch, n = (R/p)² + 1 tokens, d width,
h heads, f = 4d MLP width, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from complexo.blocks.attention import SDPAMHSA


@dataclass(frozen=True)
class ViTConfig:
    patch: int  # p
    dim: int  # d
    heads: int  # h
    layers: int  # L
    mlp: int  # f
    classes: int = 1000
    channels: int = 3


_SIZES = {"ti": (192, 3, 12), "s": (384, 6, 12), "b": (768, 12, 12), "l": (1024, 16, 24)}
_SIZES["h"] = (1280, 16, 32)

PRESETS: dict[str, ViTConfig] = {
    f"vit-{size}{patch}": ViTConfig(patch, d, heads, layers, 4 * d)
    for size, (d, heads, layers) in _SIZES.items()
    for patch in (16, 14, 32)
}
# DeiT differs from ViT in its training recipe only: the same networks at these sizes.
PRESETS |= {f"deit-{size}16": PRESETS[f"vit-{size}16"] for size in ("ti", "s", "b")}

# Published parameter counts (at the resolution given) and, where published, "GFLOPS"
# (multiply-accumulates, in G) at that resolution.
PUBLISHED: dict[str, tuple[int, int, float | None, str]] = {
    "vit-b16": (86_567_656, 224, 17.56, "torchvision vit_b_16"),
    "vit-b32": (88_224_232, 224, 4.41, "torchvision vit_b_32"),
    "vit-l16": (304_326_632, 224, 61.55, "torchvision vit_l_16"),
    "vit-l32": (306_535_400, 224, 15.38, "torchvision vit_l_32"),
    "vit-h14": (633_470_440, 518, 1016.72, "torchvision vit_h_14 IMAGENET1K_SWAG_E2E_V1"),
    "deit-ti16": (5_717_416, 224, None, "Touvron et al. 2021 / timm deit_tiny_patch16_224"),
    "deit-s16": (22_050_664, 224, None, "Touvron et al. 2021 / timm deit_small_patch16_224"),
    "deit-b16": (86_567_656, 224, None, "Touvron et al. 2021 / timm deit_base_patch16_224"),
}


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
