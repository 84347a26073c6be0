"""KV-cache decoding run for real, beside the same token without a cache and the prefill."""

from __future__ import annotations

import statistics
from pathlib import Path

from complexo.cost import Kind, evaluate
from complexo.profile.core import (
    PROFILES,
    Profile,
    _record,
    ceilings,
    refuse_if_too_big,
    resolve_device,
    timed,
)
from complexo.profile.trace import _check_runs, _common_notes, _peak_memory, _phase_rows, _profiled


def profile_kvcache(
    cfg,
    *,
    device: str | None = None,
    warmup: int = 3,
    repeat: int = 10,
    trace: str | None = None,
    root: Path = PROFILES,
) -> Profile:
    """Decode one token with the KV cache for real, at ``cfg.context`` tokens already cached;
    beside it, the same token without a cache (the whole prefix again) and the prefill that
    fills the cache. Each phase's time against its FLOPs and the fewest bytes it moves: decoding
    reads every weight and the whole cache for one token, so its floor is bytes / bandwidth."""
    import torch

    from complexo.analyses import kvcache
    from complexo.blocks.transformer import KVCache
    from complexo.conventions import DTYPES, torch_dtype

    device = resolve_device(device)
    _check_runs(warmup, repeat)
    model, _, _ = kvcache.cost_model(cfg.spec, cfg.dtype)
    values, spec, N = cfg.values, cfg.spec, cfg.context

    def total(kind, tag):
        return evaluate(model.total(kind, tag=tag), values)

    logits = cfg.batch * (N + 1) * spec.vocab * DTYPES[cfg.weight_dtype].bytes  # no cache's
    predicted = total(Kind.MEMORY, "weights") + total(Kind.MEMORY, "cache")  # while decoding
    refuse_if_too_big(predicted + logits, device, "this run", "a smaller --context or --batch")
    torch.manual_seed(0)
    net = kvcache.build(cfg, device=device)
    cache_dtype = torch.int8 if cfg.dtype == "int8" else torch_dtype(cfg.weight_dtype)
    cache = KVCache(spec, cfg.batch, N + 1, cache_dtype, device=device)
    prefix = torch.randint(0, spec.vocab, (cfg.batch, N + 1), device=device)
    record = torch.profiler.record_function
    phases = {
        # the cache holds positions 0 .. N-1; each decode step writes position N again
        "decode": lambda: net(prefix[:, N:], cache=cache, pos=N),
        "no cache": lambda: net(prefix),
        "prefill": lambda: net(prefix[:, :N], cache=cache, pos=0),
    }

    def ranged(name, run):
        def step():
            with record(f"complexo::{name}"):
                run()

        return step

    steps = {name: ranged(name, run) for name, run in phases.items()}
    with torch.no_grad():
        phases["prefill"]()
        runs = {name: timed(step, device, warmup, repeat) for name, step in steps.items()}
        roof = ceilings(device, root)
        profiled = _profiled(lambda: [step() for step in steps.values()], device, trace)
    decode = total(Kind.FORWARD, "decode")
    prof = _record("kvcache", cfg, "forward", device, runs["decode"], decode, predicted, roof)
    prof.kernels = profiled.top
    prof.dtype = cfg.weight_dtype
    with torch.no_grad():
        given = [*net.parameters(), *net.buffers(), *cache.tensors(), prefix]
        _peak_memory(prof, phases["decode"], given)
    flops = {"decode": "decode", "no cache": "no_cache", "prefill": "prefill"}
    moved = {
        "decode": total(Kind.MEMORY, "decode_bytes"),
        # the whole prefix again: every weight read once, the logits of n + 1 tokens written
        "no cache": total(Kind.MEMORY, "weights") + logits,
        "prefill": total(Kind.MEMORY, "prefill_bytes"),
    }
    rows = _phase_rows(
        {name: (total(Kind.FORWARD, flops[name]), moved[name]) for name in phases},
        roof,
        prof.dtype,
    )
    for name, row in rows.items():
        row["measured_s"] = statistics.median(runs[name].times)
        row["profiled_s"] = profiled.by_op.get(f"complexo::{name}", 0.0)
    prof.by_term = rows
    prof.predicted_s = rows["decode"].get("predicted_s")
    prof.notes.append(
        f"each phase timed on its own (median of {repeat}); decode: one token against "
        f"{N} cached; no cache: the {N + 1} tokens again; prefill: {N} tokens into the cache"
    )
    _common_notes(prof, roof)
    return prof
