"""Losses from scratch, as an interviewer wants to see them: softmax cross-entropy behind an LM
head with the log-sum-exp trick written out, focal loss on top of it, CLIP's symmetric InfoNCE,
and a chunked cross-entropy that never holds the full logits (Liger's fused linear
cross-entropy: each chunk's gradient computed in the forward). :mod:`complexo.analyses.loss`
measures each, and ``F.cross_entropy`` beside the written-out one.

Shape letters: B batch, n tokens, d the head's input width, V vocabulary; c chunks of the B·n
rows. Logits are upcast to fp32 before the softmax (a 16-bit exp and row sum over 50k entries
loses the small probabilities).

>>> import torch
>>> x, y = torch.randn(2, 3, 4), torch.randint(0, 5, (2, 3))
>>> head = LMHeadLoss(4, 5)
>>> ref = torch.nn.functional.cross_entropy(head.head(x).flatten(0, 1), y.flatten())
>>> torch.testing.assert_close(head(x, y), ref)
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def log_softmax(z: torch.Tensor) -> torch.Tensor:
    """log p = z − m − log Σ exp(z − m) over the last dim, m the row max (the trick: exp never
    overflows). m is a constant for the gradient, so it is taken without autograd."""
    m = z.detach().amax(-1, keepdim=True)  # (B, n, 1): one max per row
    zc = z - m  # (B, n, V) − (B, n, 1)
    s = zc.exp().sum(-1, keepdim=True)  # (B, n, V) -> (B, n, 1)
    return zc - s.log()  # (B, n, V) − (B, n, 1)


def nll(logp: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """−log p of each row's target: (B, n, V), (B, n) -> (B, n)."""
    return -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)  # (B, n, V) -> (B, n, 1) -> (B, n)


def focal(logp: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
    """−(1 − p_t)^γ·log p_t per row (Lin et al. 2017): the target's log p alone, (B, n)."""
    logp_t = logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)  # (B, n, V) -> (B, n)
    return -((1 - logp_t.exp()) ** gamma) * logp_t  # (B, n)


class LMHeadLoss(nn.Module):
    """logits = x·Wᵀ, then the mean cross-entropy (or focal loss) over the B·n tokens.
    ``fused``: torch's ``F.cross_entropy`` instead of the written-out log-softmax."""

    def __init__(self, d: int, V: int, kind: str = "xent", gamma: float = 2.0, fused=False):
        super().__init__()
        self.head = nn.Linear(d, V, bias=False)  # W: (V, d)
        self.kind, self.gamma, self.fused = kind, gamma, fused

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = self.head(x).float()  # (B, n, d) x (d, V) -> (B, n, V), upcast to fp32
        if self.fused:
            return F.cross_entropy(z.flatten(0, 1), y.flatten())  # (B·n, V), (B·n,)
        logp = log_softmax(z)  # (B, n, V)
        if self.kind == "focal":
            return focal(logp, y, self.gamma).mean()
        return nll(logp, y).mean()  # (B, n) -> ()


class InfoNCE(nn.Module):
    """CLIP's symmetric loss: the B×B similarities of two batches of (normalised) embeddings,
    scaled by 1/τ, and the cross-entropy of each row (a → b) and each column (b → a) against
    the diagonal, averaged."""

    def __init__(self, temperature: float = 0.07):
        super().__init__()
        self.scale = 1.0 / temperature

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        z = (a @ b.T).float() * self.scale  # (B, d) x (d, B) -> (B, B), fp32
        y = torch.arange(z.shape[0], device=z.device)  # (B,): pair i matches pair i
        rows = nll(log_softmax(z), y).mean()  # a_i against every b
        cols = nll(log_softmax(z.T), y).mean()  # b_i against every a: (B, B)ᵀ
        return (rows + cols) / 2


class _ChunkedXent(torch.autograd.Function):
    """The loss and its gradients, chunk by chunk of rows, in the forward: only one chunk's
    (B·n/c, V) logits exist at a time; dx and dW are saved for the backward, which scales them
    by the upstream gradient."""

    @staticmethod
    def forward(ctx, x, w, y, chunks):
        rows = x.reshape(-1, x.shape[-1])  # (B, n, d) -> (B·n, d)
        targets = y.reshape(-1)  # (B·n,)
        N = rows.shape[0]
        dx, dw = torch.empty_like(rows), torch.zeros_like(w, dtype=torch.float32)
        loss = torch.zeros((), dtype=torch.float32, device=x.device)
        for xc, yc, dxc in zip(
            rows.chunk(chunks), targets.chunk(chunks), dx.chunk(chunks), strict=True
        ):
            z = (xc @ w.T).float()  # (B·n/c, d) x (d, V) -> (B·n/c, V)
            m = z.amax(-1, keepdim=True)  # (B·n/c, 1)
            ez = (z - m).exp()  # (B·n/c, V)
            s = ez.sum(-1, keepdim=True)  # (B·n/c, 1)
            picked = z.gather(-1, yc.unsqueeze(-1))  # (B·n/c, 1)
            loss += (m + s.log() - picked).sum() / N  # −log p of each target
            g = ez / s / N  # softmax / (B·n): (B·n/c, V)
            g.scatter_add_(-1, yc.unsqueeze(-1), torch.full_like(picked, -1.0 / N))  # − onehot
            g = g.to(x.dtype)
            dxc.copy_(g @ w)  # (B·n/c, V) x (V, d) -> (B·n/c, d)
            dw += (g.T @ xc).float()  # (V, B·n/c) x (B·n/c, d) -> (V, d)
        ctx.save_for_backward(dx.view_as(x), dw.to(w.dtype))
        return loss

    @staticmethod
    def backward(ctx, grad):
        dx, dw = ctx.saved_tensors
        return dx * grad, dw * grad, None, None  # (B, n, d), (V, d) scaled by the scalar


class ChunkedLMHeadLoss(nn.Module):
    """:class:`LMHeadLoss`'s cross-entropy in ``chunks`` chunks of the B·n rows."""

    def __init__(self, d: int, V: int, chunks: int):
        super().__init__()
        self.head = nn.Linear(d, V, bias=False)  # W: (V, d)
        self.chunks = chunks

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _ChunkedXent.apply(x, self.head.weight, y, self.chunks)
