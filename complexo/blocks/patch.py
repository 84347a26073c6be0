"""Patch embedding two ways, from scratch (ViT, Dosovitskiy et al. 2021, eq. 1; ViViT's tubelet
embedding, Arnab et al. 2021, section 3.2): a convolution whose kernel is its stride, and the
same map written as a reshape into patches and one linear layer.

Shape letters: B batch, C image channels, R image side (H = W = R), p patch side, d model width;
for video T frames and p_t tubelet frames. N = (R/p)² tokens per image, (T/p_t)·(R/p)² per clip;
each token is a patch of C·p² values (C·p_t·p²) mapped to d.

Both sides compute the same numbers: with the linear weight the convolution's flattened
(d, C·[p_t·]p·p), the outputs are equal (tested). They differ in the ops they run: one
convolution, against a copy of the pixels into patch order (the permute's reshape: aten.clone)
and one matrix product (aten.addmm).

>>> import torch
>>> x = torch.randn(2, 3, 8, 8)
>>> ConvPatchEmbed(3, 5, 4)(x).shape, LinearPatchEmbed(3, 5, 4)(x).shape
(torch.Size([2, 4, 5]), torch.Size([2, 4, 5]))
"""

from __future__ import annotations

import torch
import torch.nn as nn


class ConvPatchEmbed(nn.Module):
    """A p×p convolution with stride p (p_t×p×p over video): each output pixel is one patch's
    (C·p²) dot product with each of d filters; the patches do not overlap."""

    def __init__(self, channels: int, dim: int, patch: int, tubelet: int | None = None) -> None:
        super().__init__()
        if tubelet is None:
            self.proj = nn.Conv2d(channels, dim, patch, stride=patch)
        else:
            kernel = (tubelet, patch, patch)
            self.proj = nn.Conv3d(channels, dim, kernel, stride=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, [T,] R, R) * (d, C, [p_t,] p, p) -> (B, d, [T/p_t,] R/p, R/p)
        y = self.proj(x)
        # -> (B, d, N) -> (B, N, d): a view (strided), no copy; the next op reads it so
        return y.flatten(2).transpose(1, 2)


class Patchify(nn.Module):
    """(B, C, [T,] R, R) -> (B, N, C·[p_t·]p²): each patch's values in a row, channels first
    (the convolution weight's order). The permute is a view; flattening its last axes copies
    every pixel (aten.clone), B·C·[T·]R² elements, unless the patch order is already memory
    order (one patch of one channel, or 1×1 patches of one channel: then nothing moves);
    ``contiguous()`` makes the tokens' rows contiguous either way, as the layers after expect."""

    def __init__(self, patch: int, tubelet: int | None = None) -> None:
        super().__init__()
        self.patch, self.tubelet = patch, tubelet

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch
        if self.tubelet is None:
            # (B, C, R, R) -> (B, C, R/p, p, R/p, p) -> (B, R/p, R/p, C, p, p)
            x = x.unflatten(3, (-1, p)).unflatten(2, (-1, p)).permute(0, 2, 4, 1, 3, 5)
            return x.flatten(3).flatten(1, 2).contiguous()  # (B, N, C·p²), copied once
        # (B, C, T, R, R) -> (B, C, T/p_t, p_t, R/p, p, R/p, p)
        #                 -> (B, T/p_t, R/p, R/p, C, p_t, p, p)
        x = x.unflatten(4, (-1, p)).unflatten(3, (-1, p)).unflatten(2, (-1, self.tubelet))
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)
        return x.flatten(4).flatten(1, 3).contiguous()  # (B, N, C·p_t·p²), copied once


class LinearPatchEmbed(nn.Module):
    """Patchify, then one linear layer: (B·N, C·[p_t·]p²) x (C·[p_t·]p², d)."""

    def __init__(self, channels: int, dim: int, patch: int, tubelet: int | None = None) -> None:
        super().__init__()
        self.patchify = Patchify(patch, tubelet)
        self.proj = nn.Linear(channels * (tubelet or 1) * patch * patch, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.patchify(x))  # (B, N, C·p²) x (C·p², d) -> (B, N, d)
