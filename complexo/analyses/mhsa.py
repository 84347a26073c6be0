"""Multi-head self-attention: what it costs, and why.

Symbols: B batch, n tokens, d width, h heads (head size d/h), e bytes per element.
Conventions: :mod:`complexo.conventions`. Reference implementations:
:mod:`complexo.blocks.attention`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from complexo.analyses.mhsa_cost import (  # noqa: F401  (the cost model's names, here too)
    ALIBI_BUILD,
    BLOCK,
    HBM,
    KV,
    LINEAR,
    MASK,
    MATMUL,
    MATRIX,
    SDPA,
    SDPA_BWD,
    SDPA_KERNELS,
    SOFTMAX,
    SOFTMAX_BWD,
    SOFTMAX_OUT,
    TRAFFIC,
    _traffic,
    cost_model,
)
from complexo.analyses.mhsa_profile import PROFILING
from complexo.conventions import (
    BOOL_BYTES,
    DTYPES,
    torch_dtype,
)
from complexo.cost import CostModel, Kind
from complexo.errors import ComplexoError
from complexo.registry import Analysis, check_options, option, register
from complexo.result import QuantitySpec, Result, build_quantity, summarise
from complexo.symbols import B, G, M, W, d, e, h, n

NAME = "mhsa"
IMPLS = ("naive", "sdpa", "flash")  # flash: the fused kernel, with the tiled algorithm's traffic


@dataclass(frozen=True)
class Config:
    batch: int = option(1, "Batch size B.", min=1)
    seq: int = option(4096, "Sequence length n (tokens).", min=1)
    dim: int = option(1024, "Model width d; must be divisible by --heads.", min=1)
    heads: int = option(16, "Number of heads h; head size is d/h.", min=1)
    dtype: str = option("fp32", "Element type; sets the bytes per element e.", choices=(*DTYPES,))
    impl: str = option(
        "naive",
        "naive: explicit matmuls and softmax (materialises the n×n matrix); sdpa: "
        "F.scaled_dot_product_attention (fused kernel); flash: the same kernel, read as "
        "FlashAttention's tiled algorithm (its device-memory traffic).",
        choices=IMPLS,
        sweep=False,
    )
    causal: bool = option(False, "Mask future tokens.")
    bias: bool = option(True, "Projections with biases.")
    kv_heads: int | None = option(
        None, "G key/value heads: grouped-query (1: multi-query).", min=1
    )  # G < h: grouped-query attention; 1: multi-query
    window: int | None = option(
        None, "Sliding window W: each query sees its last W keys.", min=1
    )  # sliding window W (implies causal)
    alibi: bool = option(False, "ALiBi distance bias on the scores.")
    sram: int = option(
        192, "On-chip memory per SM in KiB, for the tiled kernel's traffic.", min=1
    )  # KiB of on-chip memory per SM, for the tiled algorithm's traffic

    def __post_init__(self):
        check_options(self)
        if self.dim % self.heads:
            raise ComplexoError(
                f"--dim {self.dim} is not divisible by --heads {self.heads} "
                f"(head size d/h must be whole; try --heads {_divisor_near(self.dim, self.heads)})"
            )
        if self.kv_heads is not None and self.heads % self.kv_heads:
            raise ComplexoError(
                f"--heads {self.heads} is not divisible by --kv-heads {self.kv_heads}"
            )
        if (self.window is not None or self.alibi) and self.impl != "naive":
            raise ComplexoError(
                "--window and --alibi run on the explicit (naive) implementation: a dense masked "
                "one; the banded kernel's cost is reported beside it"
            )
        if self.window is not None:
            object.__setattr__(self, "causal", True)  # a sliding window looks back only

    @property
    def fused(self) -> bool:
        return self.impl != "naive"

    @property
    def values(self) -> dict:
        values = {B: self.batch, n: self.seq, d: self.dim, h: self.heads}
        values[e] = DTYPES[self.dtype].bytes
        # only the symbols this variant's formulas use, so that a sweep sees what it moves
        if self.kv_heads is not None:
            values[G] = self.kv_heads
        if self.window is not None:
            values[W] = min(self.window, self.seq)  # a window beyond n is the causal mask
        if self.fused:
            values[M] = self.sram * 1024
        return values

    def model(self) -> CostModel:
        return cost_model(
            self.impl,
            self.causal,
            self.bias,
            gqa=self.kv_heads is not None,
            window=self.window is not None,
            alibi=self.alibi,
        )


def _divisor_near(dim: int, heads: int) -> int:
    """The divisor of ``dim`` nearest ``heads`` (divisors found up to √dim: fast at any size)."""
    small = [k for k in range(1, math.isqrt(dim) + 1) if dim % k == 0]
    return min({*small, *(dim // k for k in small)}, key=lambda k: (abs(k - heads), k))


QUANTITIES = (
    QuantitySpec("forward_flops", "forward FLOPs", Kind.FORWARD),
    QuantitySpec("forward_matmul_flops", "  of which matmuls", Kind.FORWARD, matmul_only=True),
    QuantitySpec("backward_flops", "backward FLOPs", Kind.BACKWARD),
    QuantitySpec("backward_matmul_flops", "  of which matmuls", Kind.BACKWARD, matmul_only=True),
    QuantitySpec("params", "parameters", Kind.PARAMS),
    QuantitySpec("activation_bytes", "activations saved for backward", Kind.ACTIVATION),
    QuantitySpec("attention_matrix_bytes", "attention matrix", Kind.MEMORY, tag="matrix"),
    QuantitySpec("kv_bytes", "k and v (a decoder's cache)", Kind.MEMORY, tag="kv"),
    QuantitySpec("attention_hbm_bytes", "attention HBM traffic", Kind.MEMORY, tag="hbm"),
    QuantitySpec(
        "useful_score_flops", "scores + A·V on kept pairs", Kind.ALTERNATIVE, tag="useful"
    ),
)


def build(cfg: Config, device: str = "meta"):
    """The reference block and an input that needs its gradient, on ``device``."""
    import torch

    from complexo.blocks.attention import IMPLEMENTATIONS

    dtype = torch_dtype(cfg.dtype)
    with torch.device(device):
        block = IMPLEMENTATIONS[cfg.impl](
            cfg.dim,
            cfg.heads,
            bias=cfg.bias,
            causal=cfg.causal,
            kv_heads=cfg.kv_heads,
            window=cfg.window,
            alibi=cfg.alibi,
        )
        block = block.to(dtype)
        x = torch.randn(cfg.batch, cfg.seq, cfg.dim, dtype=dtype, requires_grad=True)
    return block, x


def analyse(cfg: Config) -> Result:
    from complexo.counting import counted

    model = cfg.model()
    values = cfg.values

    def count():
        from complexo.measure import count_fvcore, measure_torch, param_counts

        block, x = build(cfg)
        kv_out: list[int] = []  # what k_proj and v_proj produce: a decoder would cache it
        hooks = [
            m.register_forward_hook(
                lambda _m, _i, out: kv_out.append(out.numel() * out.element_size())
            )
            for m in (block.k_proj, block.v_proj)
        ]
        run = measure_torch(lambda: block(x), list(block.parameters()))
        for hook in hooks:
            hook.remove()
        fv = count_fvcore(block, (x.detach(),))
        # The attention matrix as materialised: what a softmax op outside a fused kernel made.
        probs = [b for op, _, b in run.outputs if op in SOFTMAX_OUT]
        flops = {"fvcore": fv, "torch": run.forward}
        readings = {
            "forward_flops": flops,
            "forward_matmul_flops": flops,
            "backward_flops": {"torch": run.backward},
            "backward_matmul_flops": {"torch": run.backward},
            "params": param_counts(block),
            "activation_bytes": {"torch": run.saved_bytes},
            "attention_matrix_bytes": {"torch": max(probs, default=0)},
            "kv_bytes": {"torch": sum(kv_out)},
        }
        return readings, (block, x)

    readings, (block, x) = counted(count, ({}, (None, None)))
    quantities = [build_quantity(s, model, values, readings.get(s.name, {})) for s in QUANTITIES]
    notes = _variant_notes(cfg, {q.name: q.value for q in quantities}, model, values)
    if cfg.fused and block is not None:
        from complexo.measure import cpu_attention_formulas, measure_torch

        fwd_mm, bwd_mm = (q.value for q in quantities if q.name.endswith("_matmul_flops"))
        mapped = measure_torch(
            lambda: block(x), list(block.parameters()), custom_mapping=cpu_attention_formulas()
        )
        same = (mapped.forward.total, mapped.backward.total) == (fwd_mm, bwd_mm)
        notes.append(
            "FlopCounterMode has no formula for SDPA's CPU kernel; with its own CUDA "
            "flash-attention formulas mapped onto that kernel it counts "
            f"{mapped.forward.total:,} forward and {mapped.backward.total:,} backward FLOPs: "
            + (
                "equal to the formula's matmul terms."
                if same
                else f"the formula's matmul terms are {fwd_mm:,} and {bwd_mm:,}."
            )
        )
    projections = ["q_proj", "k_proj", "v_proj", "out_proj"]
    elementwise = ["scale", *(["causal_mask"] if cfg.causal else []), "softmax"]
    crossovers = [
        model.crossover(
            ["scores", "attn_v"],
            projections,
            n,
            values=values,
            label="attention matmuls overtake the projections",
        ),
        model.crossover(
            ["scores", "attn_v", *elementwise],
            projections + (["bias_add"] if cfg.bias else []),
            n,
            values=values,
            label="all attention work overtakes the projections",
        ),
    ]
    if cfg.impl == "naive":
        crossovers.append(
            model.crossover(
                ["probs", *(["causal_mask"] if cfg.causal else [])],
                ["x", "q", "k", "v", "heads_out"],
                n,
                kind=Kind.ACTIVATION,
                values=values,
                label="saved probabilities overtake the other saved activations",
            )
        )
    # with G k/v heads, G·d/h is no polynomial in h: h stays a constant there
    growing, bounds = ((B, n, d), {}) if cfg.kv_heads else ((B, n, d, h), {h: d})
    summary = summarise(model, values, growing=growing, bounds=bounds, crossovers=crossovers)
    return Result(NAME, asdict(cfg), values, model, quantities, summary, notes)


def _variant_notes(cfg: Config, q: dict, model: CostModel, values: dict) -> list[str]:
    """What each variant changes, in numbers: executed against useful work, the window's band,
    ALiBi's missing parameters, grouped-query k and v, the tiled kernel's traffic."""
    from complexo.cost import evaluate
    from complexo.render import human

    notes = []
    executed = sum(evaluate(model.term(Kind.FORWARD, t).expr, values) for t in ("scores", "attn_v"))
    useful = q["useful_score_flops"]
    if cfg.window is not None:
        notes.append(
            f"sliding window W = {cfg.window}: the dense masked implementation executes "
            f"{human(executed, 'flop')} of scores and A·V; a banded one needs "
            f"{human(useful, 'flop')} ({useful / executed:.1%}), O(n·W·d) instead of O(n²·d)."
        )
    elif cfg.causal:
        skip = evaluate(model.term(Kind.ALTERNATIVE, "block_skip").expr, values)
        notes.append(
            f"causal: executed {human(executed, 'flop')} of scores and A·V (dense, as a masked "
            f"implementation runs them and as FlopCounterMode counts SDPA); useful "
            f"{human(useful, 'flop')} ({useful / executed:.1%}); a kernel skipping {BLOCK}×{BLOCK} "
            f"tiles above the diagonal executes {human(skip, 'flop')} ({skip / executed:.1%})."
        )
    if cfg.alibi:
        notes.append(
            f"ALiBi: no parameters (fixed slopes 2^(−8k/h)); a learned table for these n "
            f"positions would hold n·d = {cfg.seq * cfg.dim:,}. It costs one add per score "
            f"({human(cfg.batch * cfg.heads * cfg.seq**2, 'flop')}) and building the bias once."
        )
    if cfg.kv_heads is not None:
        g, heads = cfg.kv_heads, cfg.heads
        kind = "multi-query" if g == 1 else "grouped-query"
        notes.append(
            f"{kind}: {g} k/v heads for {heads} query heads: k and v projections and a "
            f"decoder's cache are {g}/{heads} of MHSA's ({human(q['kv_bytes'], 'byte')} here); "
            "scores and A·V are unchanged (each k/v head serves h/G query heads)."
        )
    if cfg.fused:
        standard = evaluate(_traffic(False), values)
        notes.append(
            f"device-memory traffic of the attention core: the tiled kernel (on-chip "
            f"{cfg.sram} KiB) moves {human(q['attention_hbm_bytes'], 'byte')}, Θ(n²·d²/M); "
            f"standard attention would move {human(standard, 'byte')}, Θ(n·d + n²); same FLOPs."
        )
    return notes


def forward_peak(cfg: Config) -> int:
    """Bytes the reference block allocates at its high-water mark in one inference forward
    (no autograd), beyond its weights and input: what a run needs on top of what it was given.
    Stage by stage in ``blocks/attention.py``: q, k, v stay alive to the end of ``forward``;
    with grouped heads, k and v repeated to h heads live through ``attend``; every element-wise
    pass over the scores is out of place, so two B·h·n² matrices coexist (the scores and their
    scaled copy, then the softmax's input and output); the causal mask holds three n×n bools
    (all-ones, tril, its negation) as masked_fill runs; ALiBi builds an int64 n×n distance and
    an fp32 h×n×n bias, then casts it; after ``attend`` the heads are merged by a copy. The
    fused kernel keeps no matrix (its own work buffers are internal to the op)."""
    B, n, d, h, e = cfg.batch, cfg.seq, cfg.dim, cfg.heads, DTYPES[cfg.dtype].bytes
    kv = d // h * (cfg.kv_heads or cfg.heads)
    qkv = (B * n * d + 2 * B * n * kv) * e
    shared = 2 * B * n * d * e if cfg.kv_heads not in (None, cfg.heads) else 0
    y, S = B * n * d * e, B * h * n**2 * e
    merge = 2 * y  # the heads and their merged copy, then the merged copy and the output
    if cfg.fused:
        return qkv + max(shared + y, merge)
    stages = [2 * S, S + y]  # scale / softmax: input and output; A·V: probabilities and y
    if cfg.causal or cfg.window is not None:
        masks = 3 * n**2 * BOOL_BYTES  # ones, tril (and the window's band), ~keep
        stages += [2 * S + masks, S + 2 * n**2 * BOOL_BYTES + y]
        if cfg.window is not None:  # tril, triu and their & beside the ones
            stages.append(S + 4 * n**2 * BOOL_BYTES)
    if cfg.alibi:
        built = 4 * h + 8 * n + 8 * n**2 + 4 * h * n**2  # slopes, positions, distance, fp32 bias
        cast = h * n**2 * e if e != 4 else 0  # the bias in the block's dtype
        stages += [S + built + cast, 2 * S + h * n**2 * e]
    return qkv + max(shared + max(stages), merge)


def examples():
    """Tiny configs of every variant, for the registry-wide tests."""
    from hypothesis import strategies as st

    @st.composite
    def configs(draw):
        heads = draw(st.sampled_from([1, 2, 4]))
        kv = draw(st.sampled_from([None, *(g for g in (1, 2) if heads % g == 0)]))
        impl = draw(st.sampled_from(IMPLS))
        naive = impl == "naive"
        return Config(
            batch=draw(st.integers(1, 2)),
            seq=draw(st.integers(2, 9)),
            dim=heads * draw(st.integers(2, 4)) * 2,
            heads=heads,
            dtype=draw(st.sampled_from(list(DTYPES))),
            impl=impl,
            causal=draw(st.booleans()),
            bias=draw(st.booleans()),
            kv_heads=kv,
            window=draw(st.sampled_from([None, 1, 3])) if naive else None,
            alibi=draw(st.booleans()) if naive else False,
        )

    return configs()


ANALYSIS = register(
    Analysis(
        name=NAME,
        title="Multi-head self-attention: FLOPs, parameters and memory, checked by counters.",
        help="Multi-head self-attention: forward and backward FLOPs, parameters, saved "
        "activations and the attention matrix, per term, against fvcore, FlopCounterMode and "
        "autograd.",
        config=Config,
        analyse=analyse,
        profiling=PROFILING,
        examples=examples,
    )
)
