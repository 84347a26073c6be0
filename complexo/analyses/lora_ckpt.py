"""Activation checkpointing of lora's model (``complexo lora --checkpoint``, ``--budget``), with
vit's semantics (:mod:`complexo.checkpointing`): ``full`` runs each transformer block under
``torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)``, ``selective`` the
attention core only (SDPA, k and v repeated within it, the heads merged), on both sides (full
fine-tuning and LoRA), for GPT-2-style and LLaMA-style models. Memory: the ledger per mode
(:mod:`complexo.analyses.lora_peak`, :mod:`complexo.analyses.lora_peak_llama`); FLOPs: the
rerun as backward terms, executed not useful; the largest batch a budget fits per mode; a
GPT-2-style model's activations per block against Korthikanti et al.'s
(:mod:`complexo.analyses.lora_korthikanti`).
"""

from __future__ import annotations

CKPT_HELP = (
    "Activation checkpointing of the model (gpt2 or llama): none, full (each block's input "
    "only; the block runs again in the backward) or selective (the attention core runs again)."
)
BUDGET_HELP = (
    "A memory budget in GiB (2^30 bytes): the largest batch whose training step fits it, in "
    "each checkpoint mode (a model, gpt2 or llama)."
)


def check(cfg) -> None:
    """--checkpoint and --budget need a model (gpt2 or llama): one clear line otherwise."""
    from complexo.errors import ComplexoError

    if cfg.checkpoint == "none" and cfg.budget is None:
        return
    flag = "--budget" if cfg.checkpoint == "none" else f"--checkpoint {cfg.checkpoint}"
    if cfg.single_layer:
        raise ComplexoError(
            f"{flag} applies to a model's transformer blocks; a single layer (--in, --out) has "
            "none: give a model (--model, or --arch with --layers, --dim, --heads)"
        )


RECOMPUTED = {  # mode -> the recomputed terms' names
    "none": (),
    "full": ("recompute_attn_proj", "recompute_attention", "recompute_mlp", "recompute_lora"),
    "selective": ("recompute_attention",),
}


def last_matrix(spec) -> str:
    """The block's last linear layer, before whose product a full checkpoint's rerun stops."""
    return "down_proj" if spec.swiglu else "fc_out"


def recomputed(t, cfg, side: str) -> None:
    """The backward's rerun of the forward, as backward terms (executed, not useful, FLOPs).
    Full: every block's forward again, stopped once the last matrix's (fc_out's, SwiGLU's
    down_proj's) input is saved: its product is not run again, unless LoRA adapts it (its base
    product runs before its adapter A, which saves that input; the rerun stops before B's
    product, B saving x·Aᵀ). The MLP's first products run again: fc_in's, or gate's and up's.
    Selective: SDPA."""
    from complexo.analyses.llm import kv_width
    from complexo.analyses.lora_cost import LINEAR, SDPA, _adapted, _symbolic_matrices
    from complexo.checkpointing import AGAIN, add_recomputed
    from complexo.symbols import B, L, d, f, n, r

    spec, mode = cfg.spec, cfg.checkpoint
    targets = cfg.targets if side == "lora" else ()
    adapted = {name: (i, o) for name, i, o in _symbolic_matrices(spec) if _adapted(name, targets)}
    kv, last = kv_width(spec), last_matrix(spec)
    lora = sum(2 * B * n * r * (i + o) for i, o in adapted.values())
    if last in adapted:
        lora -= 2 * B * n * r * d  # the last matrix's B·z: the rerun stops before it
    first = "gate and up" if spec.swiglu else "fc_in"
    mlp = 2 * B * n * d * f * ((2 if spec.swiglu else 1) + (1 if last in adapted else 0))
    stop = first + (f" and {last} (adapted: its A saves its input)" if last in adapted else "")
    terms = {
        "recompute_attn_proj": (
            L * 2 * B * n * d * (2 * d + 2 * kv),
            LINEAR,
            f"q, k, v, out: {AGAIN}",
            True,
        ),
        "recompute_attention": (L * 4 * B * n**2 * d, SDPA, f"Q·Kᵀ and A·V: {AGAIN}", True),
        "recompute_mlp": (
            L * mlp,
            LINEAR,
            f"{stop}: the rerun stops once {last}'s input is saved",
            True,
        ),
        "recompute_lora": (L * lora, LINEAR, f"the adapters: {AGAIN}", True),
    }
    if not lora:
        terms.pop("recompute_lora")
    add_recomputed(t, terms, [k for k in RECOMPUTED[mode] if k in terms])


def names(cfg, model) -> list[str]:
    """The recomputed terms this model has."""
    from complexo.cost import Kind

    have = {t.name for t in model.terms(Kind.BACKWARD)}
    return [k for k in RECOMPUTED[cfg.checkpoint] if k in have]


def notes(cfg, side: str, model) -> list[str]:
    """The rerun's FLOPs of one side, and (a GPT-2-style model) its activations per block
    against Korthikanti et al.'s (:mod:`complexo.analyses.lora_korthikanti`)."""
    from complexo.analyses.lora_korthikanti import note
    from complexo.checkpointing import rerun_note

    if cfg.checkpoint == "none":
        return []
    what = {
        "full": f"every block's forward again but {last_matrix(cfg.spec)}'s last product",
        "selective": "the attention core (SDPA) again",
    }[cfg.checkpoint]
    out = [f"{side}: " + rerun_note(cfg.checkpoint, what, model, names(cfg, model), cfg.values)]
    return out + [x for x in (note(cfg, side),) if x]


def fits(cfg, side: str, budget: int):
    """The largest batch whose step's peak (the ledger's) is at most ``budget`` bytes, and the
    crossover it is the floor of (:func:`complexo.checkpointing.fits`)."""
    import dataclasses

    from complexo.analyses import lora_peak
    from complexo.checkpointing import fits as solve

    def book(batch):
        c = dataclasses.replace(cfg, batch=batch, budget=None)
        return c.values, lora_peak.ledger(c, side).moments

    label = f"{cfg.checkpoint}: the training step's peak reaches the budget"
    return solve(book, budget, label)


def budget_crossovers(cfg, side: str) -> tuple[list, str]:
    """With a budget: each mode's largest batch on one side, its crossovers, and a note."""
    from complexo.checkpointing import CHECKPOINTS, budget_fits, budget_note

    if cfg.budget is None:
        return [], ""
    batches, crossovers = budget_fits(cfg, CHECKPOINTS, lambda c, b: fits(c, side, b))
    where = f"n = {cfg.seq} ({side}, {cfg.precision}, {cfg.optimizer}; the ledger's peak)"
    return crossovers, f"{side}: " + budget_note(where, cfg.budget, batches)


def named_gaps(cfg, model, quantities):
    """A checkpointed model's saved bytes are counted on CPU fake tensors: in 16-bit the
    LayerNorms' statistics differ from the formula's fp32, that gap named. A LLaMA-style model
    under full checkpointing: the rotary tables are each checkpoint's arguments, live until its
    backward (the ledger and MemTracker hold them), but no op saves them for its backward, so
    the saved-tensor count does not see them: that gap named."""
    from complexo.checkpointing import statistics_gap

    if cfg.checkpoint == "none" or cfg.single_layer:
        return quantities
    saved = ("activation_bytes", "train_memory_bytes")
    if cfg.arch == "llama":
        if cfg.checkpoint != "full":
            return quantities
        return [_tables_gap(q, model, cfg.values) if q.name in saved else q for q in quantities]
    return [
        statistics_gap(q, model, "norm_stats", cfg.values) if q.name in saved else q
        for q in quantities
    ]


def _tables_gap(quantity, model, values):
    """The rotary tables' bytes, named in place of an unexplained gap of exactly that size."""
    import dataclasses

    from complexo.cost import Kind, evaluate
    from complexo.result import Gap

    expected = evaluate(model.term(Kind.ACTIVATION, "rotary_tables").expr, values)
    gaps = [g for g in quantity.gaps if not (g.reason == "unexplained" and g.value == expected)]
    if len(gaps) < len(quantity.gaps):
        why = "cos and sin are the checkpoint's arguments, held by it, saved by no op"
        gaps.append(Gap("torch", "torch.utils.checkpoint", why, ("rotary_tables",), expected))
    return dataclasses.replace(quantity, gaps=tuple(gaps))
