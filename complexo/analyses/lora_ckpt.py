"""Activation checkpointing of lora's model (``complexo lora --checkpoint``, ``--budget``), with
vit's semantics (:mod:`complexo.checkpointing`): ``full`` runs each transformer block under
``torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)``, ``selective`` the
attention core only (SDPA, k and v repeated within it, the heads merged), on both sides (full
fine-tuning and LoRA). Memory: the ledger per mode (:mod:`complexo.analyses.lora_peak`); FLOPs:
the rerun as backward terms, executed not useful; the largest batch a budget fits per mode.
"""

from __future__ import annotations

CKPT_HELP = (
    "Activation checkpointing of a GPT-2-style model: none, full (each block's input only; the "
    "block runs again in the backward) or selective (the attention core runs again)."
)
BUDGET_HELP = (
    "A memory budget in GiB (2^30 bytes): the largest batch whose training step fits it, in "
    "each checkpoint mode (a GPT-2-style model)."
)
