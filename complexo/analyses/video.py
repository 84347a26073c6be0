"""Attention over video: T frames of S = (R/p)² patch tokens (no class token), attended jointly
(ViViT), factorized into space and time (TimeSformer) or within 3D windows (Video Swin): what
each costs, and where one overtakes another.

Symbols: B batch, T frames, S tokens per frame (√S = R/p the token grid's side), d width, h heads
(head size d/h), e bytes per element, (w_t, w_h, w_w) the window and N = w_t·w_h·w_w its tokens.
Conventions: :mod:`complexo.conventions`. Cost model: :mod:`complexo.analyses.video_cost` (each
attention layer is MHSA's, at its sequences and tokens). Reference: :mod:`complexo.blocks.video`.

One attention block per layer: q, k, v, out projections (with biases unless --no-bias) and the
attention core, no norm, MLP or residual. Factorized has two such layers, temporal then spatial.

>>> r = analyse(Config(frames=8, res=224, patch=16, dim=768, heads=12, attn="factorized"))
>>> r.quantity("forward_matmul_flops").value  # 4·B·S·T·d·(S + T + 4·d), S = 196
15780151296
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from complexo.analyses import video_peak
from complexo.analyses.mhsa import QUANTITIES as MHSA_QUANTITIES
from complexo.analyses.mhsa_cost import SOFTMAX_OUT
from complexo.analyses.video_cost import (
    ATTNS,
    PADDED,
    WINDOWS,
    attention_core,
    cost_model,
    unpadded,
)
from complexo.analyses.video_proof import SYMBOLIC
from complexo.conventions import DTYPES, torch_dtype
from complexo.cost import Crossover, Kind, crossover, evaluate
from complexo.counting import counted
from complexo.errors import ComplexoError
from complexo.registry import Analysis, Figure, check_options, option, register
from complexo.result import QuantitySpec, Result, build_quantity, summarise
from complexo.symbols import B, S, T, d, e, h, w_h, w_t, w_w

NAME = "video"
FRAMES = (1, 2, 4, 8, 16, 32, 64)  # the figure's T axis
SIDES_IN_PATCHES = (2, 4, 7, 14, 16, 24, 32)  # the figure's R axis, R = p·these


@dataclass(frozen=True)
class Config:
    frames: int = option(8, "Frames T.", min=1)
    res: int = option(224, "Frame side R (H = W = R), a multiple of --patch.", min=1)
    patch: int = option(16, "Patch side p; S = (R/p)² tokens per frame.", min=1)
    dim: int = option(768, "Model width d; must be divisible by --heads.", min=1)
    heads: int = option(12, "Heads h; head size is d/h.", min=1)
    batch: int = option(1, "Batch size B (clips).", min=1)
    dtype: str = option("fp32", "Element type; bytes per element e.", choices=(*DTYPES,))
    attn: str = option(
        "factorized",
        "joint: full attention over all T·S tokens (ViViT); factorized: temporal then spatial "
        "attention, two layers (TimeSformer); window: 3D windows of --window tokens (Video Swin).",
        choices=ATTNS,
    )
    window: str = option(
        "8,7,7",
        "With --attn window: the window w_t,w_h,w_w in tokens (frames, rows, columns); each is "
        "clipped to the clip's size, as Video Swin does.",
        sweep=False,
    )
    bias: bool = option(True, "Projections with biases.")
    compare: bool = option(
        False,
        "Joint, factorized and window side by side at these sizes (each checked against the "
        "counters, each one's ratio to joint); --attn is then ignored.",
        sweep=False,
    )

    def __post_init__(self):
        check_options(self)
        if self.res % self.patch:
            lo, hi = self.res // self.patch * self.patch, -(-self.res // self.patch) * self.patch
            raise ComplexoError(
                f"--res {self.res} is not a multiple of --patch {self.patch}: the patches must "
                f"tile the frame (try --res {hi if lo == 0 else lo})"
            )
        if self.dim % self.heads:
            raise ComplexoError(f"--dim {self.dim} is not divisible by --heads {self.heads}")
        object.__setattr__(self, "window", ",".join(map(str, self.window_sizes)))

    @property
    def window_sizes(self) -> tuple[int, int, int]:
        """--window as three positive integers (the API may also give a tuple)."""
        given = self.window
        words = given.replace(",", " ").split() if isinstance(given, str) else list(given)
        try:
            sizes = tuple(int(w) for w in words)
        except (TypeError, ValueError):
            sizes = ()
        if len(sizes) != 3 or min(sizes) < 1:
            raise ComplexoError(
                f"--window must be three positive integers w_t,w_h,w_w (like 8,7,7), got {given!r}"
            )
        return sizes

    @property
    def side(self) -> int:
        return self.res // self.patch  # √S

    @property
    def clipped(self) -> tuple[int, int, int]:
        """The window as Video Swin uses it: no larger than the clip."""
        from complexo.analyses.video_cost import window_size

        return window_size(self.window_sizes, self.frames, self.side)

    @property
    def values(self) -> dict:
        wt, wh, ww = self.clipped
        return {
            B: self.batch,
            T: self.frames,
            S: self.side**2,
            d: self.dim,
            h: self.heads,
            e: DTYPES[self.dtype].bytes,
            w_t: wt,
            w_h: wh,
            w_w: ww,
        }


# mhsa's quantities where they mean the same, the attention matrices summed over the layers
SHARED = ("forward_flops", "forward_matmul_flops", "backward_flops", "backward_matmul_flops")
SHARED += ("params", "activation_bytes")
QUANTITIES = (
    *(q for q in MHSA_QUANTITIES if q.name in SHARED),
    QuantitySpec(
        "attention_matrix_bytes", "attention matrices (every layer's)", Kind.MEMORY, tag="matrix"
    ),
)


def build(cfg: Config, device: str | None = "meta"):
    """The reference block and a (B, T, S, d) input that needs its gradient, on ``device``;
    None: in the current mode (a FakeTensorMode: :func:`complexo.peak.in_dtype`)."""
    import contextlib

    import torch

    from complexo.blocks.video import BLOCKS
    from complexo.peak import in_dtype

    dtype = torch_dtype(cfg.dtype)
    extra = {"window": cfg.window_sizes} if cfg.attn == "window" else {}
    with torch.device(device) if device is not None else contextlib.nullcontext():
        block = BLOCKS[cfg.attn](cfg.dim, cfg.heads, bias=cfg.bias, **extra)
        block = in_dtype(block, dtype, device)
        shape = (cfg.batch, cfg.frames, cfg.side**2, cfg.dim)
        x = torch.randn(*shape, dtype=dtype, requires_grad=True)
    return block, x


def measure(cfg: Config) -> dict:
    """Every reading, by quantity and counter: one forward and backward on meta tensors under
    FlopCounterMode and autograd's saved-tensor hooks, fvcore's trace of the forward, the
    module's parameters, and the softmax outputs (the attention matrices as materialised)."""
    from complexo.measure import count_fvcore, measure_torch, step_readings

    block, x = build(cfg)
    run = measure_torch(lambda: block(x), list(block.parameters()), attention="math")
    return {
        **step_readings(block, run, count_fvcore(block, (x.detach(),))),
        "attention_matrix_bytes": {
            "torch": sum(b for op, _, b in run.outputs if op in SOFTMAX_OUT)
        },
    }


def analyse(cfg: Config):
    """The attention --attn names, or with --compare all three side by side."""
    if cfg.compare:
        from complexo.analyses.video_compare import compare

        # each attention as the registry runs it, so each says what the suite proves of it
        return compare(cfg, lambda one: ANALYSIS.analyse(one), crossovers)
    return _analyse(cfg)


def _analyse(cfg: Config) -> Result:
    model, values = cost_model(cfg.attn, cfg.bias), cfg.values
    readings = counted(lambda: measure(cfg), {})
    quantities = [build_quantity(q, model, values, readings.get(q.name, {})) for q in QUANTITIES]
    found, missing = crossovers(cfg)
    growing = (B, T, S, d, h) + ((w_t, w_h, w_w) if cfg.attn == "window" else ())
    summary = summarise(model, values, growing, {h: d}, found)
    notes = _notes(cfg, missing)
    peak, peak_note = video_peak.quantity(cfg)  # the training step's high-water mark
    quantities.append(peak)
    notes.append(peak_note)
    return Result(NAME, asdict(cfg), values, model, quantities, summary, notes, _facts(cfg))


def _facts(cfg: Config) -> dict[str, str]:
    T_, side = cfg.frames, cfg.side
    facts = {"tokens": f"T·S = {T_}·({cfg.res}/{cfg.patch})² = {T_}·{side**2} = {T_ * side**2}"}
    if cfg.attn == "window":
        (wt, wh, ww), values = cfg.clipped, cfg.values
        padded, windows = evaluate(PADDED, values), evaluate(WINDOWS, values)
        facts["windows"] = (
            f"{wt}×{wh}×{ww} = {wt * wh * ww} tokens each, nW = ⌈{T_}/{wt}⌉·⌈{side}/{wh}⌉·"
            f"⌈{side}/{ww}⌉ = {windows}; {padded} tokens after padding"
        )
    return facts


def crossovers(cfg: Config) -> tuple[list[Crossover], list[str]]:
    """Where one attention overtakes another, solved with sympy on the forward matrix products
    (what both counters count; scale and softmax add 6 FLOPs per score and move these a little),
    windows taken to tile the clip. Each ``(a, b, symbol, label)`` that has no positive root at
    this config is said in words instead."""
    values = cfg.values
    joint, fact, window = (cost_model(a, cfg.bias) for a in ATTNS)

    def mm(model):
        return unpadded(model.total(Kind.FORWARD, matmul_only=True))

    asked = [
        (mm(fact), mm(joint), T, "factorized's forward matmuls reach joint's (cheaper above)"),
        (mm(fact), mm(joint), S, "factorized's forward matmuls reach joint's (cheaper above)"),
        (
            attention_core(fact),
            unpadded(attention_core(window)),
            T,
            "factorized's attention core (S + T keys a query) reaches window's (N keys)",
        ),
        (
            mm(window),
            mm(fact),
            d,
            "window's forward matmuls reach factorized's (window cheaper above: one set of "
            "projections, not two)",
        ),
    ]
    found, missing = [], []
    for a, b, symbol, label in asked:
        try:
            found.append(replace(crossover(a, b, symbol, values=values, label=label), kind=None))
        except ValueError:
            missing.append(f"no crossover in {symbol} at this config: {label.split(' (')[0]}")
    return found, missing


def _notes(cfg: Config, missing: list[str]) -> list[str]:
    from complexo.units import human

    values = cfg.values
    per = {a: cost_model(a, cfg.bias) for a in ATTNS}
    fwd = {a: evaluate(m.total(Kind.FORWARD), values) for a, m in per.items()}
    matrix = {a: evaluate(m.total(Kind.MEMORY, tag="matrix"), values) for a, m in per.items()}
    notes = [
        "one attention block per layer: q, k, v, out projections and the attention core; no "
        "norm, MLP or residual. The core is explicit matmuls and softmax (the matrix is "
        "materialised and measured, and fvcore, with no SDPA formula, counts it); a fused "
        "kernel executes the same matmuls and keeps O(n) statistics instead of the matrix.",
        "at this config, forward: "
        + ", ".join(f"{a} {human(fwd[a], 'flop')}" for a in ATTNS)
        + "; attention matrices: "
        + ", ".join(f"{a} {human(matrix[a], 'byte')}" for a in ATTNS)
        + ".",
        "scaling of the core (scores and A·V): joint 4·B·(T·S)²·d, factorized 4·B·T·S·(S + T)·d, "
        "window 4·B·T·S·N·d: per query, T·S keys against S + T against N.",
    ]
    if cfg.attn == "factorized":
        fc = 2 * cfg.batch * cfg.frames * cfg.side**2 * cfg.dim**2
        notes.append(
            "TimeSformer's divided attention: temporal (T×T at each of the S positions) then "
            "spatial (S×S in each frame), each with its own projections: 16·B·T·S·d² of "
            "projections, twice joint's. TimeSformer also puts a d×d linear (temporal_fc) after "
            f"the temporal layer: 2·B·T·S·d² = {human(fc, 'flop')} "
            "more, left out here."
        )
    if cfg.attn == "window":
        notes += _window_notes(cfg, per["window"])
    return notes + missing


def _window_notes(cfg: Config, model) -> list[str]:
    from complexo.units import human

    values = cfg.values
    (wt, wh, ww), given = cfg.clipped, cfg.window_sizes
    notes = []
    if (wt, wh, ww) != given:
        notes.append(f"window {given} clipped to the clip's {wt}×{wh}×{ww} (Video Swin's rule).")
    padded, tokens = evaluate(PADDED, values), cfg.frames * cfg.side**2
    if padded != tokens:
        total = evaluate(model.total(Kind.FORWARD), values)
        tight = evaluate(unpadded(model.total(Kind.FORWARD)).subs({S: cfg.side**2}), values)
        notes.append(
            f"padding: {tokens} tokens padded with zeros to {padded} (+{padded / tokens - 1:.1%}); "
            f"padded tokens are projected and attended like real ones, so padding costs "
            f"{human(total - tight, 'flop')} of {human(total, 'flop')} forward "
            f"({(total - tight) / total:.1%}); saved activations and attention matrices are "
            f"{padded}/{tokens} = {padded / tokens:.3g}× what the clip's own tokens need."
        )
    table = (2 * wt - 1) * (2 * wh - 1) * (2 * ww - 1) * cfg.heads
    notes.append(
        f"left out: Video Swin's relative position bias, a learned table of "
        f"(2·w_t − 1)(2·w_h − 1)(2·w_w − 1)·h = {table:,} parameters and one add per score; and "
        "its shifted layer (every second block), whose matmuls are the same: it rolls the grid by "
        "half a window (no FLOPs) and masks scores across the wrap (one select per score)."
    )
    return notes


def draw(axes, result: Result) -> dict:
    """Forward FLOPs of the three attentions against T (left) and R (right), the config's
    other sizes fixed, from the formulas."""
    from complexo.plot import log_axes

    cfg = Config(**result.config)
    drawn: dict = {}
    for ax, field, xs in (
        (axes[0], "frames", sorted({*FRAMES, cfg.frames})),
        (axes[1], "res", sorted({cfg.patch * k for k in SIDES_IN_PATCHES} | {cfg.res})),
    ):
        for attn in ATTNS:
            ys = [
                evaluate(cost_model(attn, cfg.bias).total(Kind.FORWARD), at.values)
                for at in (replace(cfg, **{field: x}) for x in xs)
            ]
            ax.plot(xs, ys, marker="o", lw=2, label=attn)
            drawn[f"{attn} by {field}"] = (xs, ys)
        ax.axvline(getattr(cfg, field), color="0.5", ls=":", lw=1)
        log_axes(ax, "flop")
        ax.set_xlabel("frames T" if field == "frames" else f"frame side R (p = {cfg.patch})")
        ax.set_ylabel("forward FLOPs (FLOP = 2·MAC)")
        ax.legend(fontsize=8)
    axes[0].set_title(f"against T at R = {cfg.res}")
    axes[1].set_title(f"against R at T = {cfg.frames}")
    axes[0].figure.suptitle(f"video attention: d = {cfg.dim}, h = {cfg.heads}, window {cfg.window}")
    return drawn


def examples():
    """Tiny clips: 1 to 4 frames, token grids 1×1 to 4×4, windows that pad or not."""
    from hypothesis import strategies as st

    @st.composite
    def configs(draw):
        heads = draw(st.sampled_from([1, 2]))
        patch = draw(st.sampled_from([1, 2]))
        return Config(
            frames=draw(st.integers(1, 4)),
            res=patch * draw(st.integers(1, 4)),
            patch=patch,
            dim=heads * draw(st.integers(1, 3)),
            heads=heads,
            batch=draw(st.integers(1, 2)),
            dtype=draw(st.sampled_from(list(DTYPES))),
            attn=draw(st.sampled_from(ATTNS)),
            window=",".join(str(draw(st.integers(1, 3))) for _ in range(3)),
            bias=draw(st.booleans()),
        )

    return configs()


def _footer(result: Result) -> str:
    return f"{result.config['dtype']}, batch {result.config['batch']}; formulas, not measurements"


ANALYSIS = register(
    Analysis(
        name=NAME,
        title="Video attention: joint, factorized (TimeSformer) or 3D windows (Video Swin).",
        help="Attention over T frames of (R/p)² patch tokens: joint over all T·S tokens "
        "(ViViT), divided space-time (TimeSformer: temporal then spatial, two layers) or 3D "
        "windows with padding (Video Swin). Forward and backward FLOPs, parameters, saved "
        "activations and the attention matrices, per term, against fvcore, FlopCounterMode and "
        "autograd on the meta device; big-O, and where one attention overtakes another, solved "
        "with sympy. --plot draws all three against T and R.",
        config=Config,
        analyse=analyse,
        figure=Figure(draw, panels=2, width=6.5, footer=_footer),
        examples=examples,
        symbolic=SYMBOLIC,
    )
)
