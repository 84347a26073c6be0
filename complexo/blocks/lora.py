"""LoRA (Hu et al. 2021), from scratch: a frozen linear layer plus a trainable low-rank update.

    y = x·Wᵀ + b + (α/r)·dropout(x)·Aᵀ·Bᵀ      A: (r, in), B: (out, r), B starts at zero

so the adapted layer starts equal to the base one. ``merge()`` folds W + (α/r)·B·A into the base
weight, after which inference costs exactly the base layer; ``unmerge()`` takes it out again.

Shape letters: B batch, n tokens, r rank; ``in``/``out`` the adapted matrix's sides.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn as nn

from complexo.presets import TARGETS


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if not 0 < r <= min(base.in_features, base.out_features):
            raise ValueError(
                f"rank {r} must be in 1..min(in, out) = {min(base.in_features, base.out_features)}"
            )
        self.base = base.requires_grad_(False)
        self.r, self.scaling = r, alpha / r
        like = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Linear(base.in_features, r, bias=False, **like)  # weight (r, in)
        self.lora_B = nn.Linear(r, base.out_features, bias=False, **like)  # weight (out, r)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)  # the update B·A starts at zero
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)  # (B, n, in) x (in, out) -> (B, n, out), frozen
        if self.merged:
            return y
        z = self.lora_A(self.dropout(x))  # (B, n, in) x (in, r) -> (B, n, r)
        return y + self.lora_B(z) * self.scaling  # (B, n, r) x (r, out) -> (B, n, out)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.base.weight += self.delta()  # (out, in)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight -= self.delta()
            self.merged = False

    def delta(self) -> torch.Tensor:
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling  # (out, r) x (r, in)

    def extra_repr(self) -> str:
        return f"r={self.r}, scaling={self.scaling:g}, merged={self.merged}"


def target_names(targets: Iterable[str]) -> set[str]:
    """Attribute names of the linear layers that ``targets`` (keys of :data:`TARGETS`) adapt."""
    names: set[str] = set()
    for t in targets:
        names.update(TARGETS[t])
    return names


def add_lora(
    model: nn.Module, targets: Iterable[str], r: int, alpha: float, dropout: float = 0.0
) -> nn.Module:
    """Freeze ``model`` and wrap each targeted ``nn.Linear`` in a :class:`LoRALinear`, in place.
    Works on any module whose linear layers carry the names in :data:`TARGETS`: the MHSA blocks
    as well as whole transformers."""
    model.requires_grad_(False)
    names = target_names(targets)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if name in names and isinstance(child, nn.Linear):
                setattr(parent, name, LoRALinear(child, r, alpha, dropout))
    return model


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def merge(model: nn.Module) -> nn.Module:
    for m in lora_layers(model):
        m.merge()
    return model


def unmerge(model: nn.Module) -> nn.Module:
    for m in lora_layers(model):
        m.unmerge()
    return model


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a LoRA checkpoint holds: the trained parameters only."""
    return {k: p for k, p in model.named_parameters() if p.requires_grad}
