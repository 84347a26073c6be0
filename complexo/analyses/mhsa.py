"""Multi-head self-attention: what it costs, and why.

Symbols: B batch, n tokens, d width, h heads (head size d/h), e bytes per element; with
--kv-seq (cross-attention) m context tokens of width d_c, which k and v are projected from.
Conventions: :mod:`complexo.conventions`. Reference implementations:
:mod:`complexo.blocks.attention`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from complexo.analyses import mhsa_peak
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
from complexo.analyses.mhsa_profile import PROFILING, forward_peak  # noqa: F401
from complexo.analyses.mhsa_proof import SYMBOLIC
from complexo.analyses.positions import POSITIONS, position_note
from complexo.conventions import DTYPES, torch_dtype
from complexo.cost import CostModel, Kind
from complexo.errors import ComplexoError
from complexo.registry import Analysis, check_options, option, register
from complexo.result import QuantitySpec, Result, build_quantity, summarise
from complexo.symbols import B, G, M, P, W, d, d_c, e, h, m, n

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
    alibi: bool = option(False, "ALiBi distance bias on the scores (the same as --pos alibi).")
    pos: str = option(
        "none",
        "Positional encoding: learned or sinusoidal (added to x), rope (q and k rotated), alibi "
        "(a bias on the scores).",
        choices=POSITIONS,
    )
    max_seq: int | None = option(
        None, "n_max: positions a learned table or a sin/cos cache holds (default --seq).", min=1
    )
    kv_seq: int | None = option(
        None, "Cross-attention: keys and values from m context tokens (queries from the n).", min=1
    )  # m: text tokens into image latents, a camera's tokens, an encoder's output
    kv_dim: int | None = option(
        None, "Width d_c of the context tokens (default --dim); needs --kv-seq.", min=1
    )
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
        _check_positions(self)
        if self.kv_dim is not None and self.kv_seq is None:
            raise ComplexoError("--kv-dim is the context's width: it needs --kv-seq")
        if self.kv_seq is not None:
            _refuse_in_cross(self)
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
        if self.kv_seq is not None:
            values[m] = self.kv_seq
        if self.kv_dim is not None:
            values[d_c] = self.kv_dim
        if self.pos in ("learned", "sinusoidal", "rope"):
            values[P] = self.max_seq or self.seq
        return values

    @property
    def cross(self) -> bool:
        return self.kv_seq is not None

    def model(self) -> CostModel:
        return cost_model(
            self.impl,
            self.causal,
            self.bias,
            gqa=self.kv_heads is not None,
            window=self.window is not None,
            alibi=self.alibi,
            cross=self.cross,
            context_width=self.kv_dim is not None,
            pos=self.pos,
        )


def _check_positions(cfg: Config) -> None:
    """--alibi is --pos alibi (the older spelling): either sets both; n_max holds the n tokens;
    RoPE rotates pairs, so the head size must be even."""
    if cfg.alibi and cfg.pos not in ("none", "alibi"):
        raise ComplexoError(f"--alibi is --pos alibi: it cannot go with --pos {cfg.pos}")
    if cfg.alibi or cfg.pos == "alibi":
        object.__setattr__(cfg, "alibi", True)
        object.__setattr__(cfg, "pos", "alibi")
    if cfg.max_seq is not None:
        if cfg.pos not in ("learned", "sinusoidal", "rope"):
            raise ComplexoError(
                "--max-seq sizes a position table: it needs --pos learned, sinusoidal or rope"
            )
        if cfg.max_seq < cfg.seq:
            raise ComplexoError(
                f"--max-seq {cfg.max_seq} is below --seq {cfg.seq}: a table of n_max positions "
                "cannot encode more tokens"
            )
    if cfg.pos == "rope" and (cfg.dim // cfg.heads) % 2:
        raise ComplexoError(
            f"--pos rope rotates pairs of features: head size {cfg.dim // cfg.heads} "
            f"(--dim {cfg.dim} / --heads {cfg.heads}) must be even"
        )


def _refuse_in_cross(cfg: Config) -> None:
    """The variants that order keys after queries have no meaning against a context."""
    why = "the context tokens have no position relative to the queries"
    if cfg.causal:
        raise ComplexoError(f"--causal does not apply to cross-attention (--kv-seq): {why}")
    if cfg.window is not None:
        raise ComplexoError(f"--window does not apply to cross-attention (--kv-seq): {why}")
    if cfg.pos == "alibi":
        raise ComplexoError(f"--alibi does not apply to cross-attention (--kv-seq): {why}")
    if cfg.pos != "none":
        raise ComplexoError(f"--pos does not apply to cross-attention (--kv-seq): {why}")


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
    QuantitySpec("attention_hbm_backward_bytes", "  its backward", Kind.MEMORY, tag="hbm_bwd"),
    QuantitySpec(
        "useful_score_flops", "scores + A·V on kept pairs", Kind.ALTERNATIVE, tag="useful"
    ),
)


def build(cfg: Config, device: str | None = "meta"):
    """The reference block and its inputs, which need their gradients, on ``device``: (x,), or
    with --kv-seq (x, context), the context (B, m, d_c). ``device`` None: in the current mode
    (a FakeTensorMode: :func:`complexo.peak.in_dtype`)."""
    import contextlib

    import torch

    from complexo.blocks.attention import IMPLEMENTATIONS
    from complexo.peak import in_dtype

    dtype = torch_dtype(cfg.dtype)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        block = IMPLEMENTATIONS[cfg.impl](
            cfg.dim,
            cfg.heads,
            bias=cfg.bias,
            causal=cfg.causal,
            kv_heads=cfg.kv_heads,
            window=cfg.window,
            alibi=cfg.alibi,
            context_dim=(cfg.kv_dim or cfg.dim) if cfg.cross else None,
            pos=cfg.pos,
            max_seq=cfg.max_seq or cfg.seq,
        )
        block = in_dtype(block, dtype, device)
        x = torch.randn(cfg.batch, cfg.seq, cfg.dim, dtype=dtype, requires_grad=True)
        if not cfg.cross:
            return block, (x,)
        width = cfg.kv_dim or cfg.dim
        context = torch.randn(cfg.batch, cfg.kv_seq, width, dtype=dtype, requires_grad=True)
    return block, (x, context)


def analyse(cfg: Config) -> Result:
    from complexo.counting import counted

    model = cfg.model()
    values = cfg.values

    def count():
        from complexo.measure import count_fvcore, measure_torch, step_readings

        block, inputs = build(cfg)  # (x,), or (x, context)
        kv_out: list[int] = []  # what k_proj and v_proj produce: a decoder would cache it
        hooks = [
            m.register_forward_hook(
                lambda _m, _i, out: kv_out.append(out.numel() * out.element_size())
            )
            for m in (block.k_proj, block.v_proj)
        ]
        # weights and buffers (RoPE's cos and sin) are held anyway: saved, they are no activation
        held = [*block.parameters(), *block.buffers()]
        run = measure_torch(lambda: block(*inputs), held)
        for hook in hooks:
            hook.remove()
        fv = count_fvcore(block, tuple(t.detach() for t in inputs))
        # The attention matrix as materialised: what a softmax op outside a fused kernel made.
        probs = [b for op, _, b in run.outputs if op in SOFTMAX_OUT]
        readings = {
            **step_readings(block, run, fv),
            "attention_matrix_bytes": {"torch": max(probs, default=0)},
            "kv_bytes": {"torch": sum(kv_out)},
        }
        return readings, (block, inputs)

    readings, (block, inputs) = counted(count, ({}, (None, None)))
    quantities = [build_quantity(s, model, values, readings.get(s.name, {})) for s in QUANTITIES]
    notes = _variant_notes(cfg, {q.name: q.value for q in quantities}, model, values)
    peak, peak_note = mhsa_peak.quantity(cfg, model)  # the training step's high-water mark
    quantities.append(peak)
    notes.append(peak_note)
    if cfg.fused and block is not None:
        from complexo.measure import cpu_attention_formulas, measure_torch

        fwd_mm, bwd_mm = (q.value for q in quantities if q.name.endswith("_matmul_flops"))
        mapped = measure_torch(
            lambda: block(*inputs),
            list(block.parameters()),
            custom_mapping=cpu_attention_formulas(),
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
    crossovers, missing = _crossovers(cfg, model, values)
    if cfg.cross:
        notes.append(
            "crossovers in m, the context's length: scores and A·V (4·B·n·m·d) grow with n as the "
            "q and out projections (4·B·n·d²) do, and the k, v projections (4·B·m·d_c·G·d/h) not "
            "at all, so no n tips the balance; scores and A·V overtake the projections at "
            "m = n·d²/(n·d − d_c·G·d/h), which tends to m = d as n grows"
            + (f"; no positive m at these sizes for: {'; '.join(missing)}." if missing else ".")
        )
    # with G k/v heads, G·d/h is no polynomial in h: h stays a constant there
    # (RoPE's cos and sin tables, P·d/h elements, too)
    per_head = cfg.kv_heads or cfg.pos == "rope"
    growing, bounds = ((B, n, d), {}) if per_head else ((B, n, d, h), {h: d})
    growing = (*growing, m, *([d_c] if cfg.kv_dim else [])) if cfg.cross else growing
    summary = summarise(model, values, growing=growing, bounds=bounds, crossovers=crossovers)
    return Result(NAME, asdict(cfg), values, model, quantities, summary, notes)


def _crossovers(cfg: Config, model: CostModel, values: dict) -> tuple[list, list[str]]:
    """Where attention overtakes the projections, in n; in cross-attention, in m (the context's
    length): there scores and A·V, 4·B·n·m·d, grow with n as the q and out projections do, so
    only m moves the balance, and a crossover that has no positive m at these sizes is left out
    (its label returned beside them)."""
    over = m if cfg.cross else n
    projections = ["q_proj", "k_proj", "v_proj", "out_proj"]
    elementwise = ["scale", *(["causal_mask"] if cfg.causal else []), "softmax"]
    specs = [
        (
            ["scores", "attn_v"],
            projections,
            Kind.FORWARD,
            "attention matmuls overtake the projections",
        ),
        (
            ["scores", "attn_v", *elementwise],
            projections + (["bias_add"] if cfg.bias else []),
            Kind.FORWARD,
            "all attention work overtakes the projections",
        ),
    ]
    if cfg.impl == "naive":
        saved = ["x", *(["context"] if cfg.cross else []), "q", "k", "v", "heads_out"]
        specs.append(
            (
                ["probs", *(["causal_mask"] if cfg.causal else [])],
                saved,
                Kind.ACTIVATION,
                "saved probabilities overtake the other saved activations",
            )
        )
    found, missing = [], []
    for grows, against, kind, label in specs:
        try:
            found.append(
                model.crossover(grows, against, over, kind=kind, values=values, label=label)
            )
        except ValueError:  # no positive m at these n, d, d_c: the context never tips it
            if not cfg.cross:
                raise
            missing.append(label)
    return found, missing


def _variant_notes(cfg: Config, q: dict, model: CostModel, values: dict) -> list[str]:
    """What each variant changes, in numbers: executed against useful work, the window's band,
    ALiBi's missing parameters, grouped-query k and v, the tiled kernel's traffic."""
    from complexo.cost import evaluate
    from complexo.units import human

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
    if cfg.pos in ("learned", "sinusoidal", "rope"):
        notes.append(position_note(cfg.pos, cfg, values, model))
    if cfg.kv_heads is not None:
        g, heads = cfg.kv_heads, cfg.heads
        kind = "multi-query" if g == 1 else "grouped-query"
        notes.append(
            f"{kind}: {g} k/v heads for {heads} query heads: k and v projections and a "
            f"decoder's cache are {g}/{heads} of MHSA's ({human(q['kv_bytes'], 'byte')} here); "
            "scores and A·V are unchanged (each k/v head serves h/G query heads)."
        )
    if cfg.cross:
        width = cfg.kv_dim or cfg.dim
        kv_flops = sum(
            evaluate(model.term(Kind.FORWARD, t).expr, values) for t in ("k_proj", "v_proj")
        )
        notes.append(
            f"cross-attention: k and v come from the context alone ({cfg.kv_seq} tokens of width "
            f"{width}), so a decoder or a diffusion UNet computes them once per sample and reuses "
            f"them at every generated token or denoising step: a cache of "
            f"{human(q['kv_bytes'], 'byte')} per layer, its k and v projections "
            f"({human(kv_flops, 'flop')}) run once; q, the scores, A·V and out_proj every step."
        )
    if cfg.fused:
        keys = m if cfg.cross else n
        standard = evaluate(_traffic(False, keys), values)
        tiled, dense = ("n·m·d²/M", "n·d + m·d + n·m") if cfg.cross else ("n²·d²/M", "n·d + n²")
        notes.append(
            f"device-memory traffic of the attention core: the tiled kernel (on-chip "
            f"{cfg.sram} KiB) moves {human(q['attention_hbm_bytes'], 'byte')}, Θ({tiled}); "
            f"standard attention would move {human(standard, 'byte')}, Θ({dense}); same FLOPs."
        )
    return notes


def examples():
    """Tiny configs of every variant, for the registry-wide tests."""
    from hypothesis import strategies as st

    @st.composite
    def configs(draw):
        heads = draw(st.sampled_from([1, 2, 4]))
        kv = draw(st.sampled_from([None, *(g for g in (1, 2) if heads % g == 0)]))
        impl = draw(st.sampled_from(IMPLS))
        cross = draw(st.sampled_from([None, 3, 5]))  # context tokens m: cross-attention
        naive = impl == "naive" and cross is None
        pos = draw(st.sampled_from(POSITIONS if naive else POSITIONS[:4])) if not cross else "none"
        return Config(
            batch=draw(st.integers(1, 2)),
            seq=draw(st.integers(2, 9)),
            dim=heads * draw(st.integers(2, 4)) * 2,
            heads=heads,
            dtype=draw(st.sampled_from(list(DTYPES))),
            impl=impl,
            causal=draw(st.booleans()) if cross is None else False,
            bias=draw(st.booleans()),
            kv_heads=kv,
            window=draw(st.sampled_from([None, 1, 3])) if naive else None,
            alibi=draw(st.booleans()) if naive and pos in ("none", "alibi") else False,
            pos=pos,
            kv_seq=cross,
            kv_dim=draw(st.sampled_from([None, 6])) if cross else None,
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
        symbolic=SYMBOLIC,
    )
)
