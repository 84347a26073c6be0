"""Activation checkpointing, what every analysis that trains a stack shares (``--checkpoint``,
``--budget``): the modes, the backward's rerun as cost terms of their own, the note that prices
it, and the largest batch a memory budget fits, solved from a training step's ledger
(:mod:`complexo.peak`). Used by ``vit`` (:mod:`complexo.analyses.vit_ckpt`), ``lora``'s model
(:mod:`complexo.analyses.lora_ckpt`) and ``mlp``.

Semantics, the same everywhere: ``full`` runs each layer (the MLP: the block) under
``torch.utils.checkpoint.checkpoint(layer, x, use_reentrant=False)``: the forward keeps the
layer's input only, the backward runs the layer's forward again just before its own, and torch
stops that rerun once the last tensor the layer saves is made again (the last linear layer's
input, packed before its product runs). ``selective`` checkpoints the attention core only,
q, k, v -> SDPA -> heads merged (Korthikanti et al. 2022, "Reducing Activation Recomputation in
Large Transformer Models"). FLOPs of the rerun are executed FLOPs, backward terms; the useful
FLOPs, the forward's, do not change. On the CPU each checkpoint also keeps the generator's state
(``torch.get_rng_state()``, :data:`RNG_STATE` bytes, made outside any op MemTracker sees) to
replay randomness.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

from complexo.cost import Kind
from complexo.presets import VIT_CHECKPOINTS as CHECKPOINTS  # one tuple: vit's, lora's, mlp's

__all__ = [
    "AGAIN",
    "CHECKPOINTS",
    "RNG_STATE",
    "add_recomputed",
    "budget_fits",
    "budget_note",
    "fits",
    "rerun_note",
    "statistics_gap",
]
RNG_STATE = 5056  # torch.get_rng_state(): the CPU generator's state, a uint8 tensor
AGAIN = "the forward again, in the backward (executed FLOPs, not useful ones)"


def add_recomputed(t, terms: Mapping[str, tuple], names: Iterable[str]) -> None:
    """The backward's rerun of the forward: each of ``names`` from ``terms`` (name -> (expr,
    ops, note, matmul)) added as a backward term (executed, not useful, FLOPs)."""
    for name in names:
        expr, ops, note, mm = terms[name]
        t.add(Kind.BACKWARD, name, expr, mm=mm, ops=ops, note=note)


def rerun_note(mode: str, what: str, model, names: Iterable[str], values: Mapping) -> str:
    """The rerun's matrix-product FLOPs against the step's useful ones, in one line."""
    from complexo.cost import evaluate
    from complexo.units import human

    mm = [t.expr for t in model.terms(Kind.BACKWARD, matmul_only=True) if t.name in set(names)]
    extra = evaluate(sum(mm), values)
    executed = evaluate(model.total((Kind.FORWARD, Kind.BACKWARD), matmul_only=True), values)
    useful = executed - extra
    return (
        f"checkpoint {mode}: the backward runs {what}: {human(extra, 'flop')} executed, "
        f"+{extra / useful:.1%} on the step's {human(useful, 'flop')} of matrix products; the "
        "useful FLOPs (the forward's) do not change"
    )


def fits(book: Callable[[int], tuple], budget: int, label: str, batch_symbol=None):
    """The largest batch whose step's peak (a ledger's) is at most ``budget`` bytes, and the
    crossover it is the floor of. ``book(batch)`` gives (values, moments) of the ledger made at
    that batch; every moment must be linear in B, a + b·B, so the step fits while each does,
    B ≤ (budget − a)/b; the moment that binds first gives the root of moment = M_dev, symbolic
    in the budget M_dev and the other sizes. (0, None) when a moment is over the budget with
    no batch at all (no positive root); (0, root) when the bound is below 1."""
    from fractions import Fraction

    from complexo.cost import crossover
    from complexo.peak import peak
    from complexo.symbols import B, M_dev

    values, moments = book(2)  # B > 1: a ledger may add a tensor summed over the batch
    zero, one, two = (
        [b for _, _, b in peak(moments, {**values, B: k}).timeline] for k in (0, 1, 2)
    )
    if any(y - x != z - y for x, y, z in zip(zero, one, two, strict=True)):
        raise ValueError("a moment of the ledger is not linear in the batch")
    if any(a > budget for a in zero):  # over the budget at B = 0 already (the weights)
        return 0, None
    bounds = [
        (Fraction(budget - a, b - a), i)
        for i, (a, b) in enumerate(zip(zero, one, strict=True))
        if b > a
    ]
    bound, i = min(bounds)
    at = {k: v for k, v in values.items() if k is not B} | {M_dev: budget}
    root = crossover(moments[i].expr, M_dev, B, values=at, label=label)
    assert root.value == bound  # the solver's root is the bound found by arithmetic
    batch = int(bound)
    while batch > 0:  # exact at the integer (a ledger may differ at B = 1)
        values, at_batch = book(batch)
        if peak(at_batch, values).bytes <= budget:
            return batch, root
        batch -= 1
    return 0, root


def statistics_gap(quantity, model, term: str, values: Mapping):
    """A saved-bytes reading counted on CPU fake tensors (a checkpoint's rerun needs them)
    differs from the formula by the LayerNorms' statistics alone in 16-bit: the CPU keeps μ and
    1/σ in the input's dtype, the formula (as CUDA and the meta device) in fp32, the cost
    model's ``term``. That gap, named, in place of an unexplained one when it is exactly that;
    anything else stays unexplained."""
    from complexo.conventions import FP32_BYTES
    from complexo.cost import evaluate
    from complexo.result import Gap
    from complexo.symbols import e

    fp32 = model.term(Kind.ACTIVATION, term).expr
    expected = evaluate(fp32 * (FP32_BYTES - e) / FP32_BYTES, values)
    gaps = [g for g in quantity.gaps if not (g.reason == "unexplained" and g.value == expected)]
    if expected and len(gaps) < len(quantity.gaps):
        why = "the CPU's LayerNorm keeps μ, 1/σ in the input's dtype; the formula: fp32"
        gaps.append(Gap("torch", "aten.native_layer_norm", why, (term,), expected))
    return dataclasses.replace(quantity, gaps=tuple(gaps))


def budget_fits(cfg, modes: Iterable[str], fits_of: Callable) -> tuple[dict, list]:
    """Each mode's largest batch within ``cfg.budget`` GiB (``fits_of(cfg in that mode,
    bytes)``) and the crossovers found."""
    budget = int(cfg.budget * 2**30)
    found = {m: fits_of(dataclasses.replace(cfg, checkpoint=m), budget) for m in modes}
    return {m: b for m, (b, _) in found.items()}, [r for _, r in found.values() if r is not None]


def budget_note(where: str, budget: float, batches: Mapping[str, int]) -> str:
    """``where``: a GiB budget's largest batch per mode, and those only full checkpointing
    fits."""
    note = f"a {budget:g} GiB budget at {where}: " + ", ".join(
        f"{m} fits up to B = {b}" if k == 0 else f"{m} {b}"
        for k, (m, b) in enumerate(batches.items())
    )
    plain, full = batches["none"], batches["full"]
    if full > plain:
        note += f": B = {plain + 1} to {full} fit only with full checkpointing"
    return note
