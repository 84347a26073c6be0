"""Activations per transformer block of lora's GPT-2-style model against Korthikanti et al.
2022, "Reducing Activation Recomputation in Large Transformer Models" (their eq. 1 and §4, one
tensor-parallel rank): 34·s·b·h + 5·a·s²·b bytes per layer without recomputation, 34·s·b·h with
selective recomputation, 2·s·b·h with full, for a GPT in 16-bit with dropout and an MLP of 4·h.

Ours is read off the step's ledger (:mod:`complexo.analyses.lora_peak`), not written again:
what is live at the forward's end with three blocks less what is live with two, a middle block
(LoRA's first block differs: its input needs no gradient). In our symbols s = n, b = B, h = d,
a = h (heads), and e bytes per element (theirs: e = 2). The differences are named per mode
(:data:`WHY`), and for LoRA what frozen matrices do not keep (:data:`LORA_WHY`): their formula
is for training every weight.
"""

from __future__ import annotations

from complexo.symbols import B, d, h, n

WHY = {  # how ours (full fine-tuning) differs from Korthikanti et al.'s per-layer bytes
    "none": "no dropout masks (theirs: 2·s·b·h, after attention and after the MLP); the fused "
    "SDPA keeps no n×n matrix, only an fp32 log-sum-exp, 4·a·s·b, where their attention keeps "
    "the softmax, its dropout mask and its output, 5·a·s²·b; the LayerNorms' statistics, "
    "4·e·s·b (the CPU's dtype), theirs leave out; with f = 4·h the MLP's fc_in output and GELU's "
    "output are their 16·s·b·h",
    "selective": "no dropout masks (2·s·b·h); the LayerNorms' statistics, 4·e·s·b, theirs "
    "leave out. Recomputing the core spares only SDPA's log-sum-exp here: the fused kernel "
    "never kept the n×n matrices that selective recomputation spares a GPT",
    "full": "the same: each block's input alone",
}
LORA_WHY = {  # what LoRA (frozen matrices, adapters) keeps less or more than full fine-tuning
    "none": "LoRA's frozen matrices keep no input: fc_in's (h·e·s·b) and fc_out's, GELU's "
    "output (f·e·s·b), are not kept; each adapter keeps x·Aᵀ, r·e·s·b",
    "selective": "LoRA's frozen matrices keep no input (fc_in's, h·e·s·b, and fc_out's, "
    "f·e·s·b), each adapter keeps x·Aᵀ, r·e·s·b; out_proj, frozen, keeps no input either, so "
    "the core's output, h·e·s·b, goes with the recomputation",
    "full": "the same: each block's input alone",
}


def korthikanti(mode: str):
    """Korthikanti et al.'s activation bytes per layer (GPT, 16-bit, dropout) in our symbols:
    s = n, b = B, h = d, a = h heads."""
    return {"none": 34 * n * B * d + 5 * h * n**2 * B, "selective": 34 * n * B * d}.get(
        mode, 2 * n * B * d
    )


def per_layer(cfg, side: str):
    """Activation bytes per middle block, from the ledger: what is live at the forward's end
    with three blocks less what is live with two (weights, inputs, the head's and a first
    block's cancel)."""
    import dataclasses

    import sympy

    from complexo.analyses import lora_peak

    def end(layers):
        c = dataclasses.replace(cfg, layers=layers, budget=None)
        moments = lora_peak.ledger(c, side).moments
        return [mo for mo in moments if mo.phase == "forward"][-1].expr

    return sympy.factor_terms(sympy.expand(end(3) - end(2)))


def note(cfg, side: str) -> str:
    """Ours against theirs in ``cfg``'s mode, on one side, in one line ("" for a LLaMA-style
    model: their formula is a GPT's)."""
    from complexo.cost import evaluate, plain
    from complexo.units import human

    if cfg.arch != "gpt2" or cfg.single_layer:
        return ""
    mode, values = cfg.checkpoint, cfg.values
    ours, theirs = per_layer(cfg, side), korthikanti(mode)
    why = WHY[mode] + (f"; {LORA_WHY[mode]}" if side == "lora" and mode != "full" else "")
    return (
        f"{side}: activations per block ({mode}; the ledger's forward end, three blocks less "
        f"two): {plain(ours)} = {human(evaluate(ours, values), 'byte')} ({cfg.dtype}) against "
        f"Korthikanti et al.'s {plain(theirs)} = {human(evaluate(theirs, values), 'byte')} "
        f"(GPT, 16-bit, dropout; s = n, b = B, h = d, a = heads): {why}"
    )
