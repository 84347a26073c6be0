"""LoRA against full fine-tuning: what it saves in parameters, memory and compute, and what not.

Either one linear layer (d_in -> d_out, over B·n tokens) or a whole decoder-only transformer
(:mod:`complexo.blocks.transformer`: L layers, width d, h heads, MLP width f, vocabulary V,
P learned positions), adapted with rank-r LoRA on the chosen matrices.

Symbols: B batch, n tokens, d, h, L, V, P, f, r; d_in, d_out for a single layer; e bytes per
element of the compute dtype. FLOPs here are matrix products only (the 2·N per token and
parameter of the usual "6·N·D" accounting): element-wise work (norms, softmax, activations,
LoRA's scale-and-add) is the same on both sides and left out; see ``complexo mhsa`` for its size.

Autograd is modelled as it runs: a matrix product computes its input gradient only where the
input requires grad, and its weight gradient only where the weight does; an op saves for backward
only what those gradients need. So a LoRA model's first layer, whose input comes from frozen
embeddings, computes no input gradients before its first adapter, and frozen linear layers keep
no inputs; the formulas below follow that, and the tests check them against autograd itself.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, replace

from complexo.analyses import lora_ckpt, lora_peak, model_flops
from complexo.analyses.llm import model_config, resolve_model
from complexo.analyses.lora_ckpt import BUDGET_HELP, CKPT_HELP
from complexo.analyses.lora_cost import (  # noqa: F401  (the cost model's names, here too)
    INDEX_BYTES,
    LINEAR,
    MM,
    OPTIMIZER_STATES,
    SDPA,
    SDPA_BWD,
    _adapted_sizes,
    _matrices,
    _target_of,
    cost_model,
)
from complexo.analyses.lora_figure import draw, examples
from complexo.analyses.lora_measure import build, extrapolated, measure  # noqa: F401
from complexo.analyses.lora_profile import PROFILING
from complexo.analyses.lora_proof import SYMBOLIC
from complexo.checkpointing import CHECKPOINTS
from complexo.conventions import DTYPES
from complexo.cost import CostModel, Kind, crossover, evaluate
from complexo.errors import ComplexoError
from complexo.presets import ARCHS, DEFAULT_TARGETS, TARGETS, ModelConfig
from complexo.presets import TRANSFORMERS as PRESETS
from complexo.presets import TRANSFORMERS_PUBLISHED as PUBLISHED_PARAMS
from complexo.registry import Analysis, Figure, check_options, option, register
from complexo.result import (
    Comparison,
    QuantitySpec,
    Result,
    build_quantity,
    ratio_key,
    summarise,
)
from complexo.symbols import B, G, L, P, V, d, d_in, d_out, e, f, h, n, r

NAME = "lora"
SIDES = ("full", "lora")
OPTIMIZERS = ("adam", "adamw", "sgd")
# Precision: compute/storage dtype of weights, gradients and activations, and whether an fp32
# master copy of the trained weights is stepped (mixed precision as in ZeRO / apex O2).
PRECISIONS = {"fp32": ("fp32", False), "bf16-mixed": ("bf16", True), "fp16-mixed": ("fp16", True)}
RANKS = (1, 2, 4, 8, 16, 64, 256)


@dataclass(frozen=True)
class Config:
    """A single layer (``in_features``, ``out_features``) or a model: a preset, optionally with
    overrides, or ``arch`` with ``layers``, ``dim`` and ``heads`` (the rest from the arch)."""

    model: str | None = option(
        None,
        f"Preset: {', '.join(PRESETS)} (default gpt2 unless a layer or a raw model is given).",
        choices=(*PRESETS,),
        sweep=False,
    )
    in_features: int | None = option(None, "A single layer: input width d_in.", flag="in", min=1)
    out_features: int | None = option(
        None, "A single layer: output width d_out.", flag="out", min=1
    )
    arch: str | None = option(
        None, "Architecture of a raw model: gpt2 or llama.", choices=ARCHS, sweep=False
    )
    layers: int | None = option(None, "Layers L (overrides the preset).", min=1)
    dim: int | None = option(None, "Width d (overrides the preset).", min=1)
    heads: int | None = option(None, "Heads h (overrides the preset).", min=1)
    kv_heads: int | None = option(
        None, "Key/value heads G, grouped-query attention (overrides the preset).", min=1
    )
    vocab: int | None = option(None, "Vocabulary V (overrides the preset).", min=1)
    ctx: int | None = option(None, "Context: learned positions P (gpt2), trained context.", min=1)
    mlp: int | None = option(None, "MLP hidden width f (overrides).", min=1)
    rank: int = option(8, "LoRA rank r.", min=1)
    alpha: float = option(16.0, "LoRA alpha; the update is scaled by α/r.", above=0, max=1e12)
    targets: tuple[str, ...] | None = option(
        None,
        "Adapted matrices, comma-separated from q, k, v, o, mlp (default q,v).",
        choices=(*TARGETS,),
        separator=",",
        sweep=False,
    )  # default: q, v for a model; a layer is adapted whole
    optimizer: str = option("adamw", "Optimizer, for its state.", choices=OPTIMIZERS)
    precision: str = option(
        "bf16-mixed",
        "fp32, or 16-bit weights/activations with fp32 master weights.",
        choices=(*PRECISIONS,),
    )
    batch: int = option(1, "Batch size B.", min=1)
    checkpoint: str = option("none", CKPT_HELP, choices=CHECKPOINTS)
    budget: float | None = option(None, BUDGET_HELP, above=0, max=1e9, sweep=False)
    seq: int | None = option(
        None, "Tokens per sequence n (default: the model's context).", min=1
    )  # default: the model's context, or 1024 for a single layer
    full_depth: bool = option(
        False,
        "Measure every layer; by default a model is measured on its 2- and 3-layer copies and "
        "extrapolated (its middle layers are identical), so depth costs nothing.",
        sweep=False,
    )  # measure every layer, not 2- and 3-layer copies extrapolated

    def __post_init__(self):
        check_options(self)
        if self.targets is not None:
            if not self.targets:
                raise ComplexoError(f"--targets is empty; choose from: {', '.join(TARGETS)}")
            object.__setattr__(self, "targets", tuple(dict.fromkeys(self.targets)))
        model_options = (self.model, self.arch, self.layers, self.dim, self.heads, self.vocab)
        if self.in_features is not None or self.out_features is not None:
            if self.in_features is None or self.out_features is None:
                raise ComplexoError("a single layer needs both --in and --out")
            others = (self.ctx, self.mlp, self.kv_heads, self.targets)
            if any(x is not None for x in (*model_options, *others)):
                raise ComplexoError(
                    "give either a layer (--in, --out) or a model (with --targets), not both"
                )
            self._resolve_layer()
        else:
            self._resolve_model()
        lora_ckpt.check(self)
        if self.rank > self.max_rank:
            raise ComplexoError(
                f"--rank {self.rank} exceeds min(in, out) = {self.max_rank} of the smallest "
                "adapted matrix; a LoRA update B·A has rank at most that"
            )

    def _resolve_layer(self):
        if self.seq is None:
            object.__setattr__(self, "seq", 1024)

    def _resolve_model(self):
        names = ("layers", "dim", "heads", "vocab", "ctx", "mlp", "kv_heads")
        sizes = {k: getattr(self, k) for k in names}
        model, spec = resolve_model(self.model, self.arch, sizes, default="gpt2")
        object.__setattr__(self, "model", model)
        for name in ("arch", *sizes):
            object.__setattr__(self, name, getattr(spec, name))
        if self.seq is None:
            object.__setattr__(self, "seq", self.ctx)
        if self.targets is None:
            object.__setattr__(self, "targets", DEFAULT_TARGETS)
        if self.arch == "gpt2" and self.seq > self.ctx:
            raise ComplexoError(
                f"--seq {self.seq} exceeds the {self.ctx} learned positions of this model"
            )

    @property
    def single_layer(self) -> bool:
        return self.in_features is not None

    @property
    def spec(self) -> ModelConfig:
        """The model trained: the preset's sliding window, if any, is left out (see the notes)."""
        return model_config(self)

    @property
    def adapted(self) -> list[tuple[int, int]]:
        """(in, out) of each adapted matrix, one layer's worth."""
        if self.single_layer:
            return [(self.in_features, self.out_features)]
        return [(i, o) for name, i, o in _matrices(self.spec) if _target_of(name) in self.targets]

    @property
    def max_rank(self) -> int:
        return min(min(i, o) for i, o in self.adapted) if self.adapted else 0

    @property
    def dtype(self) -> str:
        return PRECISIONS[self.precision][0]

    @property
    def master_fp32(self) -> bool:
        return PRECISIONS[self.precision][1]

    @property
    def values(self) -> dict:
        common = {B: self.batch, n: self.seq, r: self.rank, e: DTYPES[self.dtype].bytes}
        if self.single_layer:
            return {**common, d_in: self.in_features, d_out: self.out_features}
        spec = self.spec
        return {
            **common,
            **{d: spec.dim, h: spec.heads, G: spec.groups, L: spec.layers, V: spec.vocab},
            f: spec.mlp,
            P: spec.ctx,
        }


# ---------------------------------------------------------------------------------------------
# Quantities, measurements, analysis

QUANTITIES = (
    QuantitySpec("params", "parameters", Kind.PARAMS),
    QuantitySpec("trainable_params", "trainable parameters", Kind.PARAMS, tag="trainable"),
    QuantitySpec("checkpoint_bytes", "checkpoint", Kind.CHECKPOINT),
    QuantitySpec("weight_bytes", "weights", Kind.MEMORY, tag="weights"),
    QuantitySpec("gradient_bytes", "gradients", Kind.MEMORY, tag="gradients"),
    QuantitySpec(
        "optimizer_bytes", "optimizer state (+ fp32 master)", Kind.MEMORY, tag="optimizer"
    ),
    QuantitySpec("activation_bytes", "activations saved for backward", Kind.ACTIVATION),
    QuantitySpec("train_memory_bytes", "training memory, total", (Kind.MEMORY, Kind.ACTIVATION)),
    QuantitySpec("forward_flops", "forward FLOPs (= inference, unmerged)", Kind.FORWARD),
    QuantitySpec("backward_flops", "backward FLOPs", Kind.BACKWARD),
    QuantitySpec("backward_dx_flops", "  input gradients (dX)", Kind.BACKWARD, tag="dx"),
    QuantitySpec("backward_dw_flops", "  weight gradients (dW)", Kind.BACKWARD, tag="dw"),
    QuantitySpec("lora_forward_flops", "LoRA path, forward", Kind.FORWARD, tag="lora"),
    QuantitySpec(
        "lora_path_flops", "LoRA path, fwd + bwd", (Kind.FORWARD, Kind.BACKWARD), tag="lora"
    ),
    QuantitySpec("train_step_flops", "training step FLOPs", (Kind.FORWARD, Kind.BACKWARD)),
    QuantitySpec("inference_flops_merged", "inference FLOPs, merged", Kind.FORWARD, tag="base"),
)


def _side(cfg: Config, side: str) -> Result:
    from complexo.counting import counted

    model, values = cost_model(cfg, side), cfg.values
    readings = counted(lambda: measure(cfg, side), {})
    quantities = [build_quantity(s, model, values, readings.get(s.name, {})) for s in QUANTITIES]
    quantities = lora_ckpt.named_gaps(cfg, model, quantities)

    memory_parts = model.total(Kind.MEMORY)
    crossovers = []
    with contextlib.suppress(ValueError):  # no positive crossing: one side always dominates
        crossovers.append(
            crossover(
                model.total(Kind.ACTIVATION),
                memory_parts,
                n,
                values=values,
                label="saved activations overtake weights, gradients and optimizer state",
            )
        )
    budget, budget_note = lora_ckpt.budget_crossovers(cfg, side)  # the largest batch per mode
    crossovers += budget
    growing = (B, n, d_in, d_out, r) if cfg.single_layer else (B, n, d, L, V, f, r)
    summary = summarise(model, values, growing, {r: d_in if cfg.single_layer else d}, crossovers)
    notes = []
    peak, note = lora_peak.quantity(cfg, side)  # the step's high-water mark, with lifetimes
    quantities.append(peak)
    notes.append(f"{side}: {note}")
    notes += lora_ckpt.notes(cfg, side, model)
    notes += [budget_note] if budget_note else []
    return Result(NAME, _config(cfg), values, model, quantities, summary, notes)


def _config(cfg: Config) -> dict:
    """The resolved config, without the options that do not apply (a layer has no model)."""
    return {k: v for k, v in asdict(cfg).items() if v is not None}


def analyse(cfg: Config) -> Comparison:
    sides = {side: _side(cfg, side) for side in SIDES}
    full, lora = sides["full"], sides["lora"]
    values = cfg.values
    notes = [_speed_note(full, lora), *_notes(cfg, full), *model_flops.notes(cfg, full)]
    notes += [*full.notes, *lora.notes]
    return Comparison(
        NAME,
        _config(cfg),
        sides,
        sweep=_rank_sweep(cfg, full, lora),
        crossovers=tuple(_crossovers(cfg, full.model, lora.model, values)),
        notes=notes,
    )


def _speed_note(full: Result, lora: Result) -> str:
    def v(side: Result, name: str) -> int:
        return side.quantity(name).value

    share = v(lora, "trainable_params") / v(full, "trainable_params")
    step = v(lora, "train_step_flops") / v(full, "train_step_flops")
    fwd = v(full, "forward_flops") / v(full, "train_step_flops")
    dx = v(full, "backward_dx_flops") / v(full, "train_step_flops")
    dw = v(full, "backward_dw_flops") / v(full, "train_step_flops")
    return (
        f"LoRA trains {share:.3%} of the parameters but its step still costs {step:.1%} of full "
        f"fine-tuning's FLOPs: of a full step, the forward ({fwd:.0%}) and the input gradients "
        f"through every frozen matrix ({dx:.0%}) remain; only the frozen weight gradients "
        f"({dw:.0%}) go: a step is at most about 1/3 cheaper (here {1 - step:.1%}), "
        f"not {1 / share:,.0f}× cheaper."
    )


def _notes(cfg: Config, full: Result) -> list[str]:
    notes = [
        "FLOPs count matrix products only (norms, softmax, activations and LoRA's scale-and-add "
        "are element-wise and the same on both sides); attention is counted dense, as torch's "
        "SDPA formulas count it.",
        "training memory = weights + gradients + optimizer state + saved activations, each at "
        "its peak: the usual upper estimate (activations are freed while gradients fill).",
    ]
    if cfg.master_fp32:
        notes.append(
            f"{cfg.precision}: {cfg.dtype} weights, gradients and activations; the optimizer "
            "steps fp32 master copies of the trained weights (4 bytes each) with fp32 state."
        )
    preset = PRESETS.get(cfg.model) if not cfg.single_layer else None
    if preset is not None and preset.window is not None:
        notes.append(
            f"{cfg.model} attends within a {preset.window}-token sliding window; the reference "
            "trains with plain causal attention, the same FLOPs as counted here (dense), and the "
            + (
                "same result at this --seq."
                if cfg.seq <= preset.window
                else f"same memory only with a kernel that masks without a stored n×n mask "
                f"(--seq {cfg.seq} > {preset.window}: outputs differ from the real model's)."
            )
        )
    if preset is not None and cfg.spec == replace(preset, window=None):
        published, source = PUBLISHED_PARAMS[cfg.model]
        count = full.quantity("params").value
        same = "the same" if count == published else f"{(count - published) / published:+.2%}"
        notes.append(
            f"{cfg.model}: {count:,} parameters; published {published:,} ({source}): {same}"
        )
    notes.append(
        "LoRA dropout is off (p = 0, as PEFT's default); with p > 0 every adapted matrix "
        "also keeps its dropped-out input for the backward."
    )
    if extrapolated(cfg):
        notes.append(
            f"measured on 2- and 3-layer copies of this model and extrapolated to its "
            f"{cfg.layers} layers, c({cfg.layers}) = c(2) + {cfg.layers - 2}·(c(3) − c(2)): "
            "exact for FLOPs, parameters and bytes, as the middle layers are identical (tested "
            "against every layer measured); --full-depth measures all of them."
        )
    return notes


def _rank_sweep(cfg: Config, full: Result, lora: Result) -> list[dict]:
    names = ("trainable_params", "train_memory_bytes", "train_step_flops")
    base = {q: full.quantity(q).value for q in names}
    rows = []
    for rank in sorted({*RANKS, cfg.rank}):
        if rank > cfg.max_rank:
            continue
        at = {**cfg.values, r: rank}
        row = {"rank": rank}
        for q in names:
            value = evaluate(lora.quantity(q).expr, at)
            row[q] = value
            row[ratio_key(q)] = value / base[q]
        rows.append(row)
    return rows


def _crossovers(cfg: Config, full: CostModel, lora: CostModel, values: dict):
    adapters, weights = _adapted_sizes(cfg)
    found = [
        crossover(
            adapters,
            weights,
            r,
            values=values,
            label="adapters as large as the matrices they adapt",
        )
    ]
    with contextlib.suppress(ValueError):
        found.append(
            crossover(
                lora.total((Kind.MEMORY, Kind.ACTIVATION)),
                full.total((Kind.MEMORY, Kind.ACTIVATION)),
                r,
                values=values,
                label="LoRA's training memory reaches full fine-tuning's",
            )
        )
    return [
        replace(c, label=f"{c.label} (never: ranks stop at {cfg.max_rank})")
        if c.value > cfg.max_rank
        else c
        for c in found
    ]


# ---------------------------------------------------------------------------------------------
# Registration: the figure, profiling, tiny configs


ANALYSIS = register(
    Analysis(
        name=NAME,
        title="LoRA vs full fine-tuning: parameters, training memory and step FLOPs.",
        help="LoRA against full fine-tuning, for one linear layer (--in, --out) or a whole "
        "decoder-only transformer (--model, or --arch with --layers, --dim, --heads): "
        "parameters, checkpoint, training memory by part, FLOPs of a training step by part, "
        "inference merged and unmerged, and a rank sweep; checked against FlopCounterMode, "
        "fvcore, autograd's saved tensors and a real optimizer step, all on the meta device; "
        "--checkpoint full|selective (a model, gpt2 or llama): activation checkpointing, its "
        "rerun's FLOPs and the step's peak; --budget: the largest batch each mode fits.",
        config=Config,
        analyse=analyse,
        sides=SIDES,
        sweep=False,
        profiling=PROFILING,
        figure=Figure(
            draw,
            panels=2,
            width=6.0,
            footer=lambda cmp: f"{cmp.config['precision']}, {cmp.config['optimizer']}",
        ),
        examples=examples,
        symbolic=SYMBOLIC,
    )
)
