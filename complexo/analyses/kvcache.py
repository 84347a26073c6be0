"""KV-cache decoding: what the cache costs in memory, what it saves in FLOPs, and why decoding
is memory-bound.

Symbols: B batch, n tokens already in the cache (the context), L layers, d width, h heads,
G key/value heads (h without grouped-query attention), f MLP width, V vocabulary, e bytes per
element, W a sliding window. The next token attends to n + 1 keys; with a window (``--window``,
or the preset's: mistral-7b's 4096) the cache is a rolling buffer of min(n, W) tokens and the
next token attends to min(n + 1, W) keys, so once n ≥ W the formulas hold W where n stood.
FLOPs are matrix products only (the 2·N per token and parameter of the usual accounting),
attention dense (a window's mask included), as in ``complexo lora``. Reference: the
incremental decoder of :mod:`complexo.blocks.transformer` (``KVCache``), whose outputs equal a
full causal forward token by token.

``--dtype`` is the cache's element type; weights are in the same type, or bf16 when the cache
is int8. An int8 cache keeps one bf16 scale per (token, head) row besides its int8 values.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from complexo.analyses.kvcache_profile import PROFILING
from complexo.analyses.kvcache_proof import SYMBOLIC
from complexo.analyses.llm import kv_width, model_config, param_terms, resolve_model
from complexo.conventions import DTYPES
from complexo.cost import Kind, Terms, big_o, big_o_text, crossover, evaluate
from complexo.devices import DEVICES
from complexo.errors import ComplexoError
from complexo.presets import ARCHS, TRANSFORMERS, ModelConfig
from complexo.registry import Analysis, check_options, option, register
from complexo.result import QuantitySpec, Result, Summary, build_quantity
from complexo.symbols import B, G, L, P, V, W, d, e, f, h, n

NAME = "kvcache"
CACHE_DTYPES = {**{k: v.bytes for k, v in DTYPES.items()}, "int8": 1}
SCALE_BYTES = 2  # one bf16 scale per int8 row


@dataclass(frozen=True)
class Config:
    model: str | None = option(
        None, "Preset (default llama-7b).", choices=(*TRANSFORMERS,), sweep=False
    )
    arch: str | None = option(None, "gpt2 or llama, for a raw model.", choices=ARCHS, sweep=False)
    layers: int | None = option(None, "Layers L.", min=1)
    dim: int | None = option(None, "Width d.", min=1)
    heads: int | None = option(None, "Query heads h.", min=1)
    kv_heads: int | None = option(None, "Key/value heads G (1: multi-query).", min=1)
    vocab: int | None = option(None, "Vocabulary V.", min=1)
    ctx: int | None = option(None, "The model's context (positions).", min=1)
    mlp: int | None = option(None, "MLP width f.", min=1)
    window: int | None = option(
        None,
        "Sliding window W: each token attends to the last W, and the cache is a rolling buffer "
        "of W tokens (default: the preset's, mistral-7b's 4096; otherwise none).",
        min=1,
    )
    context: int | None = option(
        None,
        "Tokens in the cache n (default: the model's context, less one with learned positions: "
        "the next token needs its own).",
        min=1,
    )
    batch: int = option(1, "Sequences decoded together B.", min=1)
    dtype: str = option("bf16", "Cache (and weight) element type.", choices=(*CACHE_DTYPES,))
    gpu: str | None = option(
        None,
        "A GPU from the datasheet table, for what fits and the roofline.",
        choices=(*DEVICES,),
        sweep=False,
    )
    device_memory: float | None = option(
        None, "Device memory in GB (10^9 bytes).", above=0, max=1e12, sweep=False
    )

    def __post_init__(self):
        check_options(self)
        sizes = {k: getattr(self, k) for k in ("layers", "dim", "heads", "vocab", "ctx", "mlp")}
        sizes["kv_heads"], sizes["window"] = self.kv_heads, self.window
        model, spec = resolve_model(self.model, self.arch, sizes, default="llama-7b")
        object.__setattr__(self, "model", model)
        for name in ("arch", *sizes):
            object.__setattr__(self, name, getattr(spec, name))
        if self.context is None:  # learned positions: the next token takes the last one
            object.__setattr__(self, "context", spec.ctx - (1 if spec.learned_positions else 0))
        if spec.learned_positions and self.context + 1 > spec.ctx:
            raise ComplexoError(
                f"--context {self.context} leaves no learned position for the next token "
                f"(the model has {spec.ctx}); at most {spec.ctx - 1}"
            )
        if self.gpu is not None and self.device_memory is not None:
            raise ComplexoError("give --gpu or --device-memory, not both")

    @property
    def spec(self) -> ModelConfig:
        return model_config(self)

    @property
    def weight_dtype(self) -> str:
        return "bf16" if self.dtype == "int8" else self.dtype

    @property
    def values(self) -> dict:
        s = self.spec
        return {
            B: self.batch,
            n: self.context,
            d: s.dim,
            h: s.heads,
            G: s.groups,
            L: s.layers,
            V: s.vocab,
            f: s.mlp,
            P: s.ctx,
            e: CACHE_DTYPES[self.dtype],
            **({W: s.window} if s.window is not None else {}),
        }

    @property
    def windowed(self) -> bool:
        """Whether the window binds: the cache is full (n ≥ W), so W stands where n did."""
        return self.window is not None and self.context >= self.window

    @property
    def memory(self) -> int | None:
        if self.gpu is not None:
            return DEVICES[self.gpu].memory
        return None if self.device_memory is None else int(self.device_memory * 10**9)


def cost_model(spec: ModelConfig, dtype: str, windowed: bool = False):
    """Cache bytes, decode FLOPs with and without the cache, prefill FLOPs, bytes moved.
    ``windowed``: the context fills the sliding window (n ≥ W), so the cache holds W tokens
    (min(n, W)) and the next token attends to W keys (min(n + 1, W)); n < W is the plain case."""
    t = Terms()
    held, keys = (W, W) if windowed else (n, n + 1)  # tokens cached; keys of the next token
    param_terms(t, spec, tags={"params"})
    params = t.model().total(Kind.PARAMS)
    kv = kv_width(spec)  # G·d/h or d
    row = (d / h * e + (SCALE_BYTES if dtype == "int8" else 0)) * (kv * h / d)  # per layer, k or v
    per_token = sympy.expand(2 * L * row)  # k and v, every layer
    weight_bytes = params * (2 if dtype == "int8" else e)
    mem = lambda name, expr, tag, note="": t.add(Kind.MEMORY, name, expr, tags={tag}, note=note)  # noqa: E731
    mem("kv_cache", B * held * per_token, "cache", "k and v of min(n, W) tokens, every layer")
    mem("kv_per_token", per_token, "per_token", "2·L·G·(d/h)·e (+ int8 scales)")
    mem("weights", weight_bytes, "weights", "every parameter once")
    mem("decode_weights", weight_bytes, "decode_bytes", "every weight read once per step")
    mem("decode_cache", B * keys * per_token, "decode_bytes", "cached rows read, 1 written")
    mem("prefill_weights", weight_bytes, "prefill_bytes", "every weight read once")
    mem("prefill_cache", B * held * per_token, "prefill_bytes", "min(n, W) rows written")
    mlp = (6 if spec.swiglu else 4) * d * f
    per_token_mm = L * (2 * (2 * d**2 + 2 * d * kv) + mlp) + 2 * d * V  # projections, MLP, head
    linear = ("aten::linear", "aten.addmm", "aten.mm")
    sdpa = (
        "aten::scaled_dot_product_attention",
        "aten.bmm",
        "aten._scaled_dot_product_flash_attention_for_cpu",
    )
    # Without a cache and at prefill the window is a mask over dense n² products (counted
    # dense, as FlopCounterMode counts SDPA); only the cache's rolling buffer shrinks the work.
    for tag, tokens, span in (
        ("decode", 1, keys),  # one new token against min(n + 1, W) keys
        ("no_cache", n + 1, n + 1),  # the whole prefix again, and the new token
        ("prefill", n, n),
    ):
        t.add(
            Kind.FORWARD,
            f"{tag}.weights",
            B * tokens * per_token_mm,
            mm=True,
            ops=linear,
            tags={tag},
            note="projections, MLP, lm_head",
        )
        t.add(
            Kind.FORWARD,
            f"{tag}.attention",
            L * 4 * B * tokens * span * d,
            mm=True,
            ops=sdpa,
            tags={tag},
            note="Q·Kᵀ and A·V",
        )
    return t.model(), per_token, weight_bytes


QUANTITIES = (
    QuantitySpec("params", "parameters", Kind.PARAMS),
    QuantitySpec("weight_bytes", "weights", Kind.MEMORY, tag="weights"),
    QuantitySpec("kv_cache_bytes", "KV cache", Kind.MEMORY, tag="cache"),
    QuantitySpec("kv_cache_bytes_per_token", "  per token", Kind.MEMORY, tag="per_token"),
    QuantitySpec(
        "decode_flops_per_token", "decode FLOPs / token, cached", Kind.FORWARD, tag="decode"
    ),
    QuantitySpec(
        "decode_flops_per_token_no_cache",
        "decode FLOPs / token, no cache",
        Kind.FORWARD,
        tag="no_cache",
    ),
    QuantitySpec("prefill_flops", "prefill FLOPs (n tokens)", Kind.FORWARD, tag="prefill"),
    QuantitySpec(
        "decode_bytes_per_token", "decode bytes moved / token", Kind.MEMORY, tag="decode_bytes"
    ),
    QuantitySpec("prefill_bytes", "prefill bytes moved", Kind.MEMORY, tag="prefill_bytes"),
)


def build(cfg: Config, device: str = "meta"):
    import torch

    from complexo.blocks.transformer import Transformer
    from complexo.conventions import torch_dtype

    with torch.device(device):
        module = Transformer(cfg.spec).to(torch_dtype(cfg.weight_dtype)).eval()
    return module


def analyse(cfg: Config) -> Result:
    from complexo.counting import counted

    spec, values, N = cfg.spec, cfg.values, cfg.context
    model, per_token, weight_bytes = cost_model(spec, cfg.dtype, cfg.windowed)

    def count() -> dict:
        import torch

        from complexo.blocks.transformer import KVCache
        from complexo.conventions import torch_dtype
        from complexo.measure import (
            count_forward,
            count_fvcore,
            cpu_attention_formulas,
            param_counts,
            storage_bytes,
        )

        module = build(cfg)
        cache_dtype = torch.int8 if cfg.dtype == "int8" else torch_dtype(cfg.dtype)

        def cache(batch, capacity):
            return KVCache(spec, batch, capacity, cache_dtype, device="meta")

        def tokens(count):
            return torch.randint(0, spec.vocab, (cfg.batch, count), device="meta")

        mapping = cpu_attention_formulas()
        step = cache(cfg.batch, N + 1)
        decode = count_forward(lambda: module(tokens(1), cache=step, pos=N), custom_mapping=mapping)
        prefix = tokens(N + 1)
        recompute = count_forward(lambda: module(prefix), custom_mapping=mapping)
        prefill = count_forward(
            lambda: module(tokens(N), cache=cache(cfg.batch, N), pos=0), custom_mapping=mapping
        )
        readings = {
            "params": param_counts(module),
            "weight_bytes": {"torch": storage_bytes(module.parameters())},
            "kv_cache_bytes": {"torch": storage_bytes(cache(cfg.batch, N).tensors())},
            "kv_cache_bytes_per_token": {"torch": storage_bytes(cache(1, 1).tensors())},
            "decode_flops_per_token": {"torch": decode},
            "decode_flops_per_token_no_cache": {
                "torch": recompute,
                "fvcore": count_fvcore(module, (prefix,)),
            },
            "prefill_flops": {"torch": prefill},
        }
        return readings

    readings = counted(count, {})
    quantities = [build_quantity(s, model, values, readings.get(s.name, {})) for s in QUANTITIES]
    q = {x.name: x.value for x in quantities}

    orders = {
        name: big_o_text(big_o(model.total(Kind.FORWARD, tag=tag), (B, n, d, L, V, f, W), {}))
        for name, tag in (
            ("decode_flops_per_token", "decode"),
            ("decode_flops_per_token_no_cache", "no_cache"),
        )
    }
    held = W if cfg.windowed else n
    orders["kv_cache_bytes"] = big_o_text(big_o(B * held * per_token, (B, n, d, L, W), {}))
    crossovers = []
    if not cfg.windowed:  # a full rolling buffer no longer grows with n
        crossovers.append(
            crossover(
                B * n * per_token,
                weight_bytes,
                n,
                values=values,
                label="the KV cache outgrows the weights",
            )
        )
    term = max(model.terms(Kind.FORWARD, tag="decode"), key=lambda t: evaluate(t.expr, values))
    summary = Summary(
        orders,
        (term.name, evaluate(term.expr, values), _share(term, model, values)),
        tuple(crossovers),
    )
    facts, notes = _facts(cfg, q)
    config = {k: v for k, v in cfg.__dict__.items() if v is not None}
    return Result(NAME, config, values, model, quantities, summary, notes, facts)


def _share(term, model, values):
    from fractions import Fraction

    total = sum(evaluate(t.expr, values) for t in model.terms(Kind.FORWARD, tag="decode"))
    return Fraction(evaluate(term.expr, values), total)


def _num(x: float) -> str:
    """3 significant figures, without exponents: 0.982, 49.6, 2,013."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _facts(cfg: Config, q: dict) -> tuple[dict[str, str], list[str]]:
    from complexo.units import human

    decode_ai = q["decode_flops_per_token"] / q["decode_bytes_per_token"]
    prefill_ai = q["prefill_flops"] / q["prefill_bytes"]
    saved = q["decode_flops_per_token_no_cache"] / q["decode_flops_per_token"]
    facts = {
        "arithmetic intensity": (
            f"decode {_num(decode_ai)} FLOP/byte, prefill {_num(prefill_ai)} FLOP/byte"
        ),
        "the cache saves": f"{_num(saved)}× the FLOPs of recomputing the prefix for each token",
    }
    notes = [
        "FLOPs count matrix products only; attention dense. Bytes moved: every weight read once "
        "per step and the cache's rows read or written once (activations, which stay on chip or "
        "are small at decode, left out).",
    ]
    spec = cfg.spec
    if spec.learned_positions and cfg.context == spec.ctx - 1:
        notes.append(
            f"context {cfg.context}: the model's {spec.ctx} learned positions, less the one the "
            "next token takes"
        )
    if spec.window is not None:
        held = min(cfg.context, spec.window)
        notes.append(
            f"sliding window W = {spec.window}: a rolling buffer of min(n, W) = {held:,} tokens, "
            f"and the next token attends to min(n + 1, W) = {min(cfg.context + 1, spec.window):,} "
            "keys. Without a cache and at prefill the window is a mask, counted dense (n² "
            "products) as FlopCounterMode counts SDPA; a kernel that skips masked blocks does "
            "about n·W."
        )
    if cfg.dtype == "int8":
        notes.append(
            "int8 cache: 1 byte per element plus one bf16 scale per (token, head) row; "
            "weights in bf16."
        )
    memory = cfg.memory
    if memory is not None:
        free = memory - q["weight_bytes"]
        where = cfg.gpu or f"{cfg.device_memory:g} GB"
        if free <= 0:
            facts["fits"] = (
                f"no: the weights alone ({human(q['weight_bytes'], 'byte')}) exceed {where}"
            )
        else:
            per_token = q["kv_cache_bytes_per_token"]
            longest = free // (cfg.batch * per_token)
            context = f"context up to {longest:,} tokens"
            if spec.window is not None and longest >= spec.window:  # the buffer stops at W
                context = f"any context (the rolling buffer stops at W = {spec.window:,})"
            held = min(cfg.context, spec.window or cfg.context)
            facts["fits"] = (
                f"on {where}: {context} at batch {cfg.batch}; batch up to "
                f"{free // (held * per_token):,} at context {cfg.context} (weights + cache; "
                "activations left out)"
            )
    if cfg.gpu is not None:
        dev = DEVICES[cfg.gpu]
        ridge = dev.ridge(cfg.weight_dtype)
        floor = q["decode_bytes_per_token"] / dev.bandwidth
        compute = q["decode_flops_per_token"] / dev.peak[cfg.weight_dtype]
        facts["roofline"] = (
            f"{cfg.gpu} ridge {ridge:.0f} FLOP/byte: decode at {_num(decode_ai)} is "
            f"memory-bound, ≥ {floor * 1e3:.3g} ms per step from bandwidth vs "
            f"{compute * 1e3:.3g} ms from compute ({dev.source})"
        )
    return facts, notes


def examples():
    """Tiny raw decoders (MHSA, grouped-query, multi-query; every cache dtype)."""
    from hypothesis import strategies as st

    @st.composite
    def configs(draw):
        heads = draw(st.sampled_from([2, 4]))
        return Config(
            arch=draw(st.sampled_from(ARCHS)),
            layers=draw(st.integers(1, 2)),
            dim=heads * 2 * draw(st.integers(1, 3)),
            heads=heads,
            kv_heads=draw(st.sampled_from([None, 1, 2])),
            vocab=draw(st.integers(5, 40)),
            ctx=32,
            mlp=draw(st.integers(4, 24)),
            context=draw(st.integers(1, 12)),
            batch=draw(st.integers(1, 2)),
            dtype=draw(st.sampled_from(list(CACHE_DTYPES))),
        )

    return configs()


ANALYSIS = register(
    Analysis(
        name=NAME,
        title="KV-cache decoding: cache bytes, decode FLOPs with and without it, what fits.",
        help="The KV cache of a decoder-only model (--model PRESET, default llama-7b, or --arch "
        "with --layers, --dim, --heads; --kv-heads for grouped-query attention): bytes per token "
        "and in total, decode FLOPs per token with the cache and recomputing the prefix without "
        "it, prefill against decode arithmetic intensity, and the largest context or batch that "
        "fits a GPU (--gpu) or a memory size (--device-memory).",
        config=Config,
        analyse=analyse,
        profiling=PROFILING,
        examples=examples,
        symbolic=SYMBOLIC,
    )
)
