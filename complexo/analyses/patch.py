"""Patch embedding: a convolution with kernel = stride = p against a reshape into patches and one
linear layer. The same map and the same FLOPs, different ops: what each costs, what each counter
sees, and what the reshape's copy costs in bytes.

Symbols: B batch, C channels, R image side (H = W = R, a multiple of p), p patch side, d model
width, e bytes per element; with --frames, T frames and p_t tubelet frames (ViViT's tubelet
embedding: a p_t×p×p convolution, or p_t×p×p patches). N = (R/p)² tokens per image,
(T/p_t)·(R/p)² per clip, each of C·p² (C·p_t·p²) values.
Reference: :mod:`complexo.blocks.patch`. Cost model: :mod:`complexo.analyses.patch_cost`.

Forward: the product, 2·B·N·C·p²·d = 2·B·C·R²·d FLOPs on both sides (p cancels: fewer tokens,
each a longer dot product), and the bias, 1 per output element. Backward: dW (the product's
size) and db (Σ dY); the pixels need no gradient, so neither side computes dX. Saved: the
pixels in the order each product reads them, x itself (conv) or its copy in patch order
(linear): the same bytes. Bytes moved, fewest (inference): conv reads x, W, b once and writes
the tokens; linear also writes x's copy in patch order and reads it back, 2·B·C·R²·e more.

>>> cmp = analyse(Config(res=224, patch=16, channels=3, dim=768))
>>> [cmp.sides[side].quantity("forward_matmul_flops").value for side in SIDES]
[231211008, 231211008]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import sympy

from complexo.analyses import patch_peak
from complexo.analyses.patch_cost import COPY, QUANTITIES, SIDES, copies, cost_model, sizes
from complexo.analyses.patch_profile import PROFILING
from complexo.analyses.patch_proof import SYMBOLIC
from complexo.conventions import DTYPES, torch_dtype
from complexo.cost import CostModel, Crossover, Kind, crossover, evaluate, plain
from complexo.errors import ComplexoError
from complexo.registry import Analysis, Figure, check_options, option, register
from complexo.result import Comparison, Result, build_quantity, ratio_key, summarise
from complexo.symbols import B, C, R, T, d, e, p, p_t

NAME = "patch"
PATCHES = (1, 2, 4, 7, 8, 14, 16, 28, 32, 56, 64)  # the sweep's patch sides (those dividing R)


@dataclass(frozen=True)
class Config:
    res: int = option(224, "Image side R (H = W = R), a multiple of --patch.", min=1)
    patch: int = option(16, "Patch side p: N = (R/p)² tokens of C·p² values.", min=1)
    channels: int = option(3, "Image channels C.", min=1)
    dim: int = option(768, "Model width d: each token's size.", min=1)
    batch: int = option(1, "Batch size B.", min=1)
    dtype: str = option("fp32", "Element type; bytes per element e.", choices=(*DTYPES,))
    frames: int | None = option(None, "Frames T: video, p_t×p×p tubelets (default: images).", min=1)
    tubelet: int | None = option(
        None, "With --frames: tubelet frames p_t, a divisor of T (default 1: per frame).", min=1
    )

    def __post_init__(self):
        check_options(self)
        if self.res % self.patch:
            raise ComplexoError(
                f"--res {self.res} is not a multiple of --patch {self.patch}: the reshape takes "
                f"whole patches (the convolution would drop the last {self.res % self.patch} "
                "rows and columns)"
            )
        if self.tubelet is not None and self.frames is None:
            raise ComplexoError("--tubelet groups frames: give --frames T (video)")
        if self.frames is not None and self.frames % self.p_t:
            raise ComplexoError(
                f"--frames {self.frames} is not a multiple of --tubelet {self.p_t}: the reshape "
                "takes whole tubelets"
            )

    @property
    def video(self) -> bool:
        return self.frames is not None

    @property
    def p_t(self) -> int:
        return self.tubelet or 1

    @property
    def values(self) -> dict:
        video = {T: self.frames, p_t: self.p_t} if self.video else {}
        return {
            B: self.batch,
            C: self.channels,
            R: self.res,
            p: self.patch,
            d: self.dim,
            e: DTYPES[self.dtype].bytes,
            **video,
        }

    @property
    def copies(self) -> bool:
        """Whether the reshape into patches copies the pixels (almost always)."""
        frames = self.frames // self.p_t if self.video else 1
        return copies(self.channels, frames, self.res // self.patch, self.p_t, self.patch)

    def model(self, side: str) -> CostModel:
        return cost_model(side, self.video, self.copies)


def build(cfg: Config, side: str, device: str | None = "meta"):
    """The reference block of one side in ``cfg.dtype`` and a (B, C, [T,] R, R) image batch
    (pixels: no gradient), on ``device``; None: in the current mode (a FakeTensorMode:
    :func:`complexo.peak.in_dtype`)."""
    import contextlib

    import torch

    from complexo.blocks.patch import ConvPatchEmbed, LinearPatchEmbed
    from complexo.peak import in_dtype

    block = ConvPatchEmbed if side == "conv" else LinearPatchEmbed
    tubelet = cfg.p_t if cfg.video else None
    frames = (cfg.frames,) if cfg.video else ()
    dtype = torch_dtype(cfg.dtype)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        module = block(cfg.channels, cfg.dim, cfg.patch, tubelet)
        x = torch.randn(cfg.batch, cfg.channels, *frames, cfg.res, cfg.res, dtype=dtype)
    return in_dtype(module, dtype, device), x


TRAFFIC = {"Conv2d": "embed", "Conv3d": "embed", "Linear": "embed"}


def measure(cfg: Config, side: str) -> dict:
    """Every reading of one side: FlopCounterMode, autograd's saved tensors and the copies the
    forward made (aten.clone outputs) from one forward and backward on meta tensors, fvcore's
    count of the forward, the module's parameters, and the bytes each convolution or linear call
    reads and writes (forward hooks), plus the copy's, written and read back (that op's output:
    a view that copies nothing moves nothing)."""
    from complexo.measure import (
        GROUPED_CONV_FORMULAS,
        count_fvcore,
        measure_torch,
        module_traffic,
        step_readings,
    )

    module, x = build(cfg, side)
    run = measure_torch(
        lambda: module(x),
        list(module.parameters()),
        attention="math",
        custom_mapping=GROUPED_CONV_FORMULAS,
    )
    copied = sum(b for op, _, b in run.outputs if op == COPY)
    traffic = sum(module_traffic(module, (x,), TRAFFIC).values()) + 2 * copied
    return {
        **step_readings(module, run, count_fvcore(module, (x,))),
        "forward_moved_bytes": {"fvcore": None, "torch": traffic},
        "copy_bytes": {"fvcore": None, "torch": copied},
    }


SEEN = {
    "conv": "ops: FlopCounterMode sees aten.convolution forward and aten.convolution_backward "
    "(output_mask: dW and db only, the pixels need no dX); fvcore sees aten::_convolution "
    "(counted by its conv formula on the meta run's shapes). Neither counts the bias add.",
    "linear": "ops: the patchify is aten.view/permute (views) and one aten.clone (the copy: "
    "no FLOPs, B·C·[T·]R² elements written and read back); FlopCounterMode sees aten.addmm "
    "forward (the bias folded into it, uncounted) and aten.mm backward (dW; db is aten.sum, "
    "uncounted); fvcore sees aten::linear and skips the views and the copy.",
}


def _side(cfg: Config, side: str) -> Result:
    from complexo.conventions import CONV_NOTE
    from complexo.counting import counted

    model, values = cfg.model(side), cfg.values
    readings = counted(lambda: measure(cfg, side), {})
    quantities = [build_quantity(q, model, values, readings.get(q.name, {})) for q in QUANTITIES]
    peak, peak_note = patch_peak.quantity(cfg, side)  # the training step's high-water mark
    quantities.append(peak)
    notes = [CONV_NOTE] if side == "conv" else []
    notes.append(peak_note)
    notes.append(
        "bias: 1 FLOP per output element forward and 1 for its gradient (Σ dY); the counters "
        "count the products only, so their gap is exactly these terms."
    )
    # p and p_t divide (N = (R/p)²): not polynomial growth; the sweep shows p's effect
    growing = (B, C, R, d) + ((T,) if cfg.video else ())
    summary = summarise(model, values, growing, {}, [])
    _, tokens, patch = sizes(cfg.video)
    clip = f"{cfg.frames}×" if cfg.video else ""
    facts = {
        "shapes": f"({cfg.batch}, {cfg.channels}, {clip}{cfg.res}²) → ({cfg.batch}, "
        f"N = {evaluate(tokens, values)}, {cfg.dim}); each token a patch of "
        f"{plain(patch)} = {evaluate(patch, values)} values",
    }
    return Result(NAME, asdict(cfg), values, model, quantities, summary, notes, facts)


def analyse(cfg: Config) -> Comparison:
    sides = {side: _side(cfg, side) for side in SIDES}
    conv, linear = (sides[side].model for side in SIDES)
    # the two sides' products: one formula, derived apart (a convolution's output pixels times
    # its C·p² taps, a matrix product's rows times its inner size), and free of p and p_t
    pixels, _, _ = sizes(cfg.video)
    for kind in (Kind.FORWARD, Kind.BACKWARD):
        a, b = (m.total(kind, matmul_only=True) for m in (conv, linear))
        if sympy.simplify(a - b) != 0 or sympy.simplify(a - 2 * B * pixels * d) != 0:
            raise AssertionError(f"{kind.value}: conv {a}, linear {b}, not 2·B·pixels·d")
    return Comparison(
        NAME,
        asdict(cfg),
        sides,
        sweep=_patch_sweep(cfg, sides),
        crossovers=tuple(_crossovers(cfg)),
        notes=_notes(cfg, sides),
    )


def _crossovers(cfg: Config) -> list[Crossover]:
    """In d: the tokens hold as many bytes as the pixels (the embedding widens above); in B: the
    linear side's copy moves as many bytes as the weights (more above)."""
    pixels, tokens, patch = sizes(cfg.video)
    values = cfg.values
    found = [
        crossover(
            B * tokens * d,
            B * pixels,
            d,
            values=values,
            label="the tokens hold as many values as the pixels (wider above)",
        )
    ]
    if cfg.copies:
        found.append(
            crossover(
                2 * B * pixels,
                patch * d,
                B,
                values=values,
                label="linear's patchify copy moves as many bytes as the weights (more above)",
            )
        )
    return found


def _notes(cfg: Config, sides: dict[str, Result]) -> list[str]:
    from complexo.units import human

    conv, linear = (sides[side] for side in SIDES)
    values = cfg.values
    pixels, tokens, patch = sizes(cfg.video)

    def q(side: Result, name: str) -> int:
        return side.quantity(name).value

    n, k = evaluate(tokens, values), evaluate(patch, values)
    flops = q(conv, "forward_matmul_flops")
    notes = [f"{side}'s {SEEN[side]}" for side in SIDES] + [
        f"the same product on both sides: 2·B·N·{plain(patch)}·d = "
        f"{plain(conv.model.total(Kind.FORWARD, matmul_only=True))} = {human(flops, 'flop')} "
        f"(N = {n} tokens, each a {k}-value dot product with each of d = {cfg.dim} filters); "
        "p cancels: bigger patches mean fewer, longer dot products, the same work, and p² times "
        f"the weights ({q(conv, 'params'):,} parameters here).",
        f"the pixels need no gradient (a patch embedding is a network's first layer): neither "
        f"side computes dX; the convention's block-input gradient would add another "
        f"{human(flops, 'flop')} (dY·W, then folding the patches back).",
    ]
    extra = q(linear, "forward_moved_bytes") - q(conv, "forward_moved_bytes")
    if not cfg.copies:
        notes.append(
            "here the patch order is memory order (one patch of one channel, or 1×1 patches of "
            "one channel): the reshape is a view, and the two sides move the same bytes."
        )
    else:
        notes.append(
            f"the difference is bytes: linear writes the pixels in patch order and reads them "
            f"back, 2·B·{plain(pixels)}·e = {human(extra, 'byte')} more than conv "
            f"({q(linear, 'forward_moved_bytes') / q(conv, 'forward_moved_bytes'):.3g}× its "
            f"{human(q(conv, 'forward_moved_bytes'), 'byte')}); saved for backward both keep "
            f"one copy of the pixels ({human(q(conv, 'activation_bytes'), 'byte')}): x itself, "
            "or its patch-order copy (x is then free)."
        )
    notes.append(
        "conv's (B, d, N) → (B, N, d) is a transpose view, not a copy: the next op (the class "
        "token's cat, the positions' add) reads it strided; a channels-last convolution writes "
        "tokens in order. F.unfold(x, p, stride=p) is the same copy as the reshape (im2col "
        "with kernel = stride: no pixel repeated)."
    )
    if cfg.video:
        notes.append(
            f"tubelets: N = (T/p_t)·(R/p)² = {n} tokens of C·p_t·p² = {k} values; the FLOPs stay "
            "2·B·C·T·R²·d for every p_t, while attention's n² falls by p_t² "
            f"(p_t = {cfg.p_t}: {n} tokens instead of {evaluate(tokens.subs(p_t, 1), values)})."
        )
    ratio = evaluate(B * tokens * d, values) / evaluate(B * pixels, values)
    notes.append(
        f"tokens against pixels: B·N·d / (B·{plain(pixels)}) = d/({plain(patch)}) = {ratio:.3g}: "
        + (
            "the embedding widens the input"
            if ratio > 1
            else ("as many values out as in" if ratio == 1 else "the embedding compresses it")
        )
        + " (the crossover in d)."
    )
    return notes


def _patch_sweep(cfg: Config, sides: dict[str, Result]) -> list[dict]:
    """linear's product FLOPs, parameters, saved and moved bytes against p (the divisors of R among
    :data:`PATCHES`, and the config's), each with its ratio to conv."""
    conv, linear = (sides[side] for side in SIDES)
    names = ("forward_matmul_flops", "params", "activation_bytes", "forward_moved_bytes")
    rows = []
    for patch in sorted({*(x for x in PATCHES if cfg.res % x == 0), cfg.patch}):
        at = {**cfg.values, p: patch}
        row: dict = {"patch": patch}
        for name in names:
            value = evaluate(linear.quantity(name).expr, at)
            row[name] = value
            row[ratio_key(name)] = value / evaluate(conv.quantity(name).expr, at)
        rows.append(row)
    return rows


def draw(axes, cmp: Comparison) -> dict:
    """Against p: the product's FLOPs (flat), parameters and tokens; each side's bytes moved."""
    from complexo.plot import UNIT_LABEL

    ax_count, ax_bytes = axes
    conv = cmp.baseline
    patches = [row["patch"] for row in cmp.sweep]
    _, tokens, _ = sizes(conv.values.get(T) is not None)
    drawn = {
        "the product's FLOPs (both sides)": (
            patches,
            [row["forward_matmul_flops"] for row in cmp.sweep],
        ),
        "parameters (both sides)": (patches, [row["params"] for row in cmp.sweep]),
        "tokens N": (patches, [evaluate(tokens, {**conv.values, p: x}) for x in patches]),
    }
    for label, (xs, ys) in drawn.items():
        ax_count.plot(xs, ys, marker="o", lw=2, label=label)
    ax_count.set_ylabel("FLOPs, parameters, tokens")
    ax_count.set_title("the same FLOPs at every p; p² times the weights, 1/p² the tokens")
    for name, side in cmp.sides.items():
        expr = side.quantity("forward_moved_bytes").expr
        ys = [evaluate(expr, {**side.values, p: x}) for x in patches]
        ax_bytes.plot(patches, ys, marker="o", lw=2, label=f"{name}: bytes moved (fewest)")
        drawn[f"{name} forward_moved_bytes"] = (patches, ys)
    ax_bytes.set_ylabel(UNIT_LABEL["byte"])
    ax_bytes.set_title("bytes moved by a forward: linear adds the copy")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("patch side p")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8)
    return drawn


def examples():
    """Tiny images and clips: sides that are multiples of the patch, tubelets dividing T."""
    from hypothesis import strategies as st

    @st.composite
    def configs(draw):
        patch = draw(st.integers(1, 3))
        frames = draw(st.sampled_from([None, None, 2, 4]))
        tubelet = None if frames is None else draw(st.sampled_from([None, 1, 2]))
        return Config(
            res=patch * draw(st.integers(1, 3)),
            patch=patch,
            channels=draw(st.integers(1, 3)),
            dim=draw(st.integers(1, 5)),
            batch=draw(st.integers(1, 2)),
            dtype=draw(st.sampled_from(list(DTYPES))),
            frames=frames,
            tubelet=tubelet,
        )

    return configs()


ANALYSIS = register(
    Analysis(
        name=NAME,
        title="Patch embedding: a stride-p convolution vs reshape into patches + linear.",
        help="A ViT's patch embedding two ways (or a video's tubelet embedding, with --frames "
        "and --tubelet): a convolution with kernel = stride = p against a reshape into patches "
        "and one linear layer. Equal FLOPs (2·B·C·R²·d, whatever p), different ops and bytes "
        "(the reshape's copy); forward and backward FLOPs, parameters, saved activations, bytes "
        "moved and a sweep over p, checked against fvcore, FlopCounterMode, autograd's saved "
        "tensors and the module calls, on the meta device.",
        config=Config,
        analyse=analyse,
        sides=SIDES,
        sweep=False,
        profiling=PROFILING,
        symbolic=SYMBOLIC,
        figure=Figure(
            draw,
            panels=2,
            width=6.0,
            footer=lambda cmp: f"{cmp.config['dtype']}, batch {cmp.config['batch']}",
        ),
        examples=examples,
    )
)
