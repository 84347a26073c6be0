"""Activation checkpointing of a ViT's training step (``complexo vit --checkpoint``), after
Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models".

``full``: each encoder block runs under ``torch.utils.checkpoint.checkpoint(block, x,
use_reentrant=False)``; the forward keeps each block's input only, and the backward runs the
block's forward again just before its backward. torch stops that rerun once the last tensor
the block saves is made again (GELU's output, fc2's input, taken before fc2's product runs):
fc2's product and the residual add are not run again. ``selective``: only the attention core,
q, k, v -> SDPA -> heads merged, is checkpointed; it keeps q, k, v (the checkpoint's inputs)
and its output (out_proj's input), so all it spares is SDPA's fp32 log-sum-exp: the n×n
matrices that selective recomputation spares a GPT (softmax, its dropout mask and output) are
never kept by the fused kernel.

FLOPs here are executed FLOPs, the backward's recomputed forward in terms of their own
(matrix products, as the backward's other terms); the useful FLOPs, the forward's, do not
change. Memory: the ledger (:mod:`complexo.analyses.vit_peak`) per mode, and the largest batch
each mode fits in a budget, solved from the ledger's peak moment.
"""

from __future__ import annotations

import dataclasses

from complexo.symbols import B, L, d, e, f, h

RECOMPUTED = {  # mode -> the recomputed terms' names
    "none": (),
    "full": ("recompute_attn_proj", "recompute_attention", "recompute_mlp"),
    "selective": ("recompute_attention",),
}


def recomputed(t, mode: str) -> None:
    """The backward's rerun of the forward, as backward terms (executed, not useful, FLOPs)."""
    from complexo.analyses.vision import LINEAR, SDPA
    from complexo.analyses.vit import TOKENS
    from complexo.checkpointing import AGAIN, add_recomputed

    n = TOKENS
    terms = {
        "recompute_attn_proj": (L * 8 * B * n * d**2, LINEAR, f"q, k, v, out: {AGAIN}", True),
        "recompute_attention": (L * 4 * B * n**2 * d, SDPA, f"Q·Kᵀ and A·V: {AGAIN}", True),
        "recompute_mlp": (
            L * 2 * B * n * d * f,
            LINEAR,
            "fc1 only: the rerun stops once GELU's output, fc2's saved input, is made",
            True,
        ),
    }
    add_recomputed(t, terms, RECOMPUTED[mode])


def fake_build(cfg):
    """``vit.build`` on CPU fake tensors: the readings of a checkpointed model come from there.
    On the meta device SDPA is sent to the CPU's fused kernel by a TorchFunctionMode, which
    autograd's engine does not carry into a checkpoint's rerun (it would take the math path
    and fail the checkpoint's shape check); CPU fake tensors take the fused kernel by
    themselves, in the rerun too."""
    from complexo.analyses.vit import build

    return build(cfg, device=None)


def statistics_gap(cfg, quantity):
    """The saved-bytes reading on CPU fake tensors against the formula: the LayerNorms'
    statistics in 16-bit, named (:func:`complexo.checkpointing.statistics_gap`)."""
    from complexo.analyses.vit import cost_model
    from complexo.checkpointing import statistics_gap as named

    return named(quantity, cost_model(cfg.checkpoint), "norm_statistics", cfg.values)


def per_layer(cfg):
    """Activation bytes per block, from the ledger: what is live at the forward's end with two
    blocks less what is live with one (weights, inputs and the head's cancel)."""
    from complexo.analyses import vit_peak

    def end(layers):
        moments = vit_peak.ledger(cfg, layers).moments
        return [mo for mo in moments if mo.phase == "forward"][-1].expr

    return (end(2) - end(1)).expand()


def korthikanti(mode: str):
    """Korthikanti et al.'s activation bytes per layer (GPT, 16-bit, dropout), in our symbols:
    s = n, b = B, h = d, a = h heads; none: 34·s·b·h + 5·a·s²·b, selective 34·s·b·h, full
    2·s·b·h."""
    from complexo.analyses.vit import TOKENS

    s = TOKENS
    return {"none": 34 * s * B * d + 5 * h * s**2 * B, "selective": 34 * s * B * d}.get(
        mode, 2 * s * B * d
    )


def fits(cfg, budget: int):
    """The largest batch whose step's peak (the ledger's) is at most ``budget`` bytes, and the
    crossover it is the floor of (:func:`complexo.checkpointing.fits`; B = 1 differs: no summed
    class-token gradient)."""
    from complexo.analyses import vit_peak
    from complexo.checkpointing import fits as solve

    def book(batch):
        c = dataclasses.replace(cfg, batch=batch, budget=None)
        return c.values, vit_peak.ledger(c).moments

    return solve(book, budget, f"{cfg.checkpoint}: the training step's peak reaches the budget")


WHY = {  # how ours differs from Korthikanti et al.'s per-layer bytes
    "none": "no dropout masks (theirs: 2·s·b·h, after attention and after the MLP); SDPA keeps "
    "an fp32 log-sum-exp, 4·a·s·b, where their attention keeps the softmax, its dropout mask "
    "and its output, 5·a·s²·b; the LayerNorms' statistics, 4·e·s·b, theirs leave out",
    "selective": "no dropout masks (2·s·b·h); the LayerNorms' statistics, 4·e·s·b, theirs "
    "leave out. Recomputing the core spares only SDPA's log-sum-exp here: the fused kernel "
    "never kept the n×n matrices that selective recomputation spares a GPT",
    "full": "the same: each block's input alone",
}


def in_tokens(expr):
    """An expression over R and p written over the tokens n = (R/p)² + 1."""
    import sympy

    from complexo.symbols import R, n, p

    return sympy.factor_terms(sympy.expand(expr.subs(R, p * sympy.sqrt(n - 1))))


def notes(cfg, model) -> list[str]:
    """The rerun's FLOPs, the bytes per block against Korthikanti et al.'s, and the budget."""
    from complexo.checkpointing import rerun_note
    from complexo.cost import evaluate, plain
    from complexo.symbols import n
    from complexo.units import human

    values, mode = cfg.values, cfg.checkpoint
    out = []
    if mode != "none":
        what = {
            "full": "every block's forward again but fc2's product",
            "selective": "the attention core (SDPA) again",
        }[mode]
        out.append(rerun_note(mode, what, model, RECOMPUTED[mode], values))
    ours, theirs = in_tokens(per_layer(cfg)), in_tokens(korthikanti(mode))
    half = {**values, e: 2}
    out.append(
        f"activations per block ({mode}; the ledger's forward end, two blocks less one): "
        f"{plain(ours)} = {human(evaluate(ours.subs(n, cfg.tokens), values), 'byte')}; in "
        f"16-bit {human(evaluate(ours.subs(n, cfg.tokens), half), 'byte')} against "
        f"Korthikanti et al.'s {plain(theirs)} = "
        f"{human(evaluate(theirs.subs(n, cfg.tokens), values), 'byte')} (GPT, 16-bit, "
        f"dropout; s = n, b = B, h = d, a = heads): {WHY[mode]}"
    )
    return out


def budget_crossovers(cfg) -> tuple[list, str]:
    """With a budget: each mode's largest batch and its crossover (the peak = M_dev), and a
    note naming the batches only checkpointing fits."""
    from complexo.checkpointing import budget_fits, budget_note

    if cfg.budget is None:
        return [], ""
    batches, crossovers = budget_fits(cfg, ("none", "selective", "full"), fits)
    where = f"{cfg.res}² ({cfg.dtype}, the ledger's peak)"
    return crossovers, budget_note(where, cfg.budget, batches)
