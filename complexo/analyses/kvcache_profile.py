"""KV-cache decoding run for real: one token decoded against ``cfg.context`` cached tokens (the
step), and beside it, each timed on its own, the same token without a cache (the whole prefix
again) and the prefill that fills the cache. Decoding reads every weight and the whole cache for
one token, so its floor is bytes / bandwidth. :func:`complexo.profile.run` does the rest."""

from __future__ import annotations

from complexo.cost import Kind, evaluate
from complexo.registry import Profiling, Row, Setup


def rows(cfg, mode: str, side: str = "") -> list[Row]:
    model = cost_model(cfg)

    def terms(tag):
        return tuple((Kind.FORWARD, t.name) for t in model.terms(Kind.FORWARD, tag=tag))

    def moved(tag):
        return model.total(Kind.MEMORY, tag=tag)

    return [
        Row("decode", terms("decode"), moved("decode_bytes"), ("complexo::decode",)),
        # the whole prefix again: every weight read once, the logits of n + 1 tokens written
        Row(
            "no cache",
            terms("no_cache"),
            moved("weights") + _logits(cfg),
            ("complexo::no cache",),
            step=False,
        ),
        Row(
            "prefill", terms("prefill"), moved("prefill_bytes"), ("complexo::prefill",), step=False
        ),
    ]


def _logits(cfg) -> int:
    """Bytes of the logits of the n + 1 tokens a decoder without a cache computes."""
    from complexo.conventions import DTYPES

    return cfg.batch * (cfg.context + 1) * cfg.spec.vocab * DTYPES[cfg.weight_dtype].bytes


def cost_model(cfg, side: str = ""):
    from complexo.analyses.kvcache import cost_model as model

    return model(cfg.spec, cfg.dtype, cfg.windowed)[0]


def memory(cfg, mode: str, side: str, model) -> tuple[int, int, str]:
    """While decoding: the weights and the cache; the run also holds the no-cache logits."""
    values = cfg.values
    predicted = evaluate(model.total(Kind.MEMORY, tag="weights"), values)
    predicted += evaluate(model.total(Kind.MEMORY, tag="cache"), values)
    return predicted, predicted + _logits(cfg), "a smaller --context or --batch"


def setup(cfg, mode: str, side: str, device: str) -> Setup:
    import torch

    from complexo.analyses.kvcache import build
    from complexo.blocks.transformer import KVCache
    from complexo.conventions import torch_dtype

    spec, N = cfg.spec, cfg.context
    net = build(cfg, device=device)
    cache_dtype = torch.int8 if cfg.dtype == "int8" else torch_dtype(cfg.weight_dtype)
    cache = KVCache(spec, cfg.batch, N + 1, cache_dtype, device=device)
    prefix = torch.randint(0, spec.vocab, (cfg.batch, N + 1), device=device)

    def no_grad(run):
        def step():
            with torch.no_grad():
                run()

        return step

    # the cache holds positions 0 .. N-1; each decode step writes position N again
    decode = no_grad(lambda: net(prefix[:, N:], cache=cache, pos=N))
    prefill = no_grad(lambda: net(prefix[:, :N], cache=cache, pos=0))
    prefill()
    note = (
        f"each phase timed on its own (its median); decode: one token against {N} cached; "
        f"no cache: the {N + 1} tokens again; prefill: {N} tokens into the cache"
    )
    return Setup(
        decode,
        [*net.parameters(), *net.buffers(), *cache.tensors(), prefix],
        beside={"no cache": no_grad(lambda: net(prefix)), "prefill": prefill},
        dtype=cfg.weight_dtype,
        notes=[note],
    )


PROFILING = Profiling(
    ("forward",),
    model=cost_model,
    rows=rows,
    memory=memory,
    setup=setup,
    step=lambda model, mode: model.terms(Kind.FORWARD, tag="decode"),
    iteration="token decoded",
)


def profile_kvcache(cfg, **runs):
    """Decoding at ``cfg`` run for real (:func:`complexo.profile.step.profile_side`)."""
    from complexo.analyses.kvcache import ANALYSIS
    from complexo.profile.step import profile_side

    return profile_side(ANALYSIS, cfg, **runs)
