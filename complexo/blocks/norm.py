"""Normalisation layers from scratch, as an interviewer wants to see them: LayerNorm, RMSNorm,
BatchNorm, GroupNorm and InstanceNorm, each written out in the tensor ops it is made of (torch
runs most of them as one fused kernel; :mod:`complexo.analyses.norm` measures both).

Shape letters: tokens (B, n, d); images (B, C, R, R) (H = W = R); g GroupNorm's groups.

What each normalises over, one μ and σ per group:
    LayerNorm, RMSNorm  the trailing dims: each token's d features (an image's C·R·R values)
    BatchNorm           each channel over everything else: B·R·R values (tokens: B·n per feature)
    GroupNorm           each sample's g groups of C/g channels: C/g·R·R values
    InstanceNorm        each sample's channels alone: R·R values

Every one normalises with the biased variance, σ² = mean((x − μ)²), ÷ N and not N − 1 (an
interview note that says LayerNorm's is unbiased is wrong: nn.LayerNorm agrees with this code).
BatchNorm's *running* variance alone is updated with the unbiased one, σ²·N/(N − 1).

>>> import torch
>>> x = torch.randn(2, 4, 5, 5)
>>> torch.testing.assert_close(GroupNorm(4, 2)(x), torch.nn.GroupNorm(2, 4)(x))
"""

from __future__ import annotations

import torch
import torch.nn as nn


def normalise(x: torch.Tensor, dims: tuple[int, ...], eps: float):
    """x̂ = (x − μ)/√(σ² + ε) over ``dims``, with the biased σ²; returns x̂, μ and σ²."""
    mu = x.mean(dims, keepdim=True)  # one μ per group, size-1 dims kept for broadcasting
    xc = x - mu  # x's shape
    var = (xc * xc).mean(dims, keepdim=True)  # biased: ÷ N
    return xc * torch.rsqrt(var + eps), mu, var  # x's shape


class _Affine(nn.Module):
    """γ and β of the given shape (ones and zeros), or neither."""

    def __init__(self, shape: tuple[int, ...], affine: bool, shift: bool = True):
        super().__init__()
        self.affine = affine
        self.weight = nn.Parameter(torch.ones(shape)) if affine else None
        self.bias = nn.Parameter(torch.zeros(shape)) if affine and shift else None

    def scale_shift(self, xhat: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        if not self.affine:
            return xhat
        y = xhat * self.weight.view(shape)  # γ broadcast over what it does not index
        return y + self.bias.view(shape) if self.bias is not None else y


class LayerNorm(_Affine):
    """Each token's (or image's) trailing ``shape`` normalised; γ, β of that shape."""

    def __init__(self, shape: tuple[int, ...], eps: float = 1e-5, affine: bool = True):
        super().__init__(shape, affine)
        self.shape, self.eps = shape, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(-len(self.shape), 0))  # (d,) for tokens, (C, R, R) for an image
        xhat, _, _ = normalise(x, dims, self.eps)  # (B, n, d)
        return self.scale_shift(xhat, self.shape)  # (B, n, d) ⊙ (d,) + (d,)


class RMSNorm(_Affine):
    """LayerNorm without the mean and β: x/√(mean(x²) + ε)·γ (Zhang & Sennrich 2019)."""

    def __init__(self, shape: tuple[int, ...], eps: float = 1e-6, affine: bool = True):
        super().__init__(shape, affine, shift=False)
        self.shape, self.eps = shape, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(-len(self.shape), 0))
        mean_square = (x * x).mean(dims, keepdim=True)  # (B, n, 1)
        xhat = x * torch.rsqrt(mean_square + self.eps)  # (B, n, d) ⊙ (B, n, 1)
        return self.scale_shift(xhat, self.shape)  # (B, n, d) ⊙ (d,)


class BatchNorm(_Affine):
    """Each channel (dim 1) over every other dim: (N, C) or (B, C, R, R). Training normalises
    with the batch's μ and biased σ² and moves the running statistics towards them, the
    variance unbiased; inference normalises with the running statistics."""

    def __init__(self, c: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True):
        super().__init__((c,), affine)
        self.eps, self.momentum = eps, momentum
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        dims = (0, *range(2, x.dim()))  # all but the channels
        shape = (1, c) + (1,) * (x.dim() - 2)  # (1, C, 1, 1): one value per channel
        if self.training:
            xhat, mu, var = normalise(x, dims, self.eps)  # (B, C, R, R)
            count = x.numel() // c  # N = B·R·R values per channel
            with torch.no_grad():  # μ̂ ← (1 − m)·μ̂ + m·μ;  σ̂² ← (1 − m)·σ̂² + m·σ²·N/(N − 1)
                self.running_mean.lerp_(mu.view(c), self.momentum)
                self.running_var.lerp_(var.view(c) * count / (count - 1), self.momentum)
        else:
            mu, var = self.running_mean.view(shape), self.running_var.view(shape)
            xhat = (x - mu) * torch.rsqrt(var + self.eps)  # (B, C, R, R) - (1, C, 1, 1)
        return self.scale_shift(xhat, shape)  # (B, C, R, R) ⊙ (1, C, 1, 1) + (1, C, 1, 1)


class GroupNorm(_Affine):
    """Each sample's channels in g groups of C/g (Wu & He 2018); γ, β per channel."""

    def __init__(self, c: int, groups: int, eps: float = 1e-5, affine: bool = True):
        super().__init__((c,), affine)
        self.groups, self.eps = groups, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        xg = x.reshape(b, self.groups, -1)  # (B, C, R, R) -> (B, g, C/g·R·R)
        xhat, _, _ = normalise(xg, (2,), self.eps)  # (B, g, C/g·R·R)
        xhat = xhat.view_as(x)  # (B, g, C/g·R·R) -> (B, C, R, R)
        return self.scale_shift(xhat, (1, c, 1, 1))  # (B, C, R, R) ⊙ (1, C, 1, 1)


class InstanceNorm(_Affine):
    """Each sample's channels alone, over R·R pixels (Ulyanov et al. 2016): GroupNorm at g = C."""

    def __init__(self, c: int, eps: float = 1e-5, affine: bool = True):
        super().__init__((c,), affine)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xhat, _, _ = normalise(x, (2, 3), self.eps)  # (B, C, R, R), μ and σ²: (B, C, 1, 1)
        return self.scale_shift(xhat, (1, x.shape[1], 1, 1))  # ⊙ (1, C, 1, 1)


class TokenBatchNorm(nn.Module):
    """A BatchNorm over tokens: each of the d features over all B·n tokens, by viewing
    (B, n, d) as (B·n, d), the (N, C) input BatchNorm1d takes."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.reshape(-1, x.shape[-1])).view_as(x)  # (B·n, d) -> (B, n, d)
