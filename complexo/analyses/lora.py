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
from dataclasses import asdict, dataclass, field, replace

import sympy

from complexo.analyses.llm import param_terms, resolve_model
from complexo.conventions import DTYPES, FP32_BYTES, torch_dtype
from complexo.cost import CostModel, Kind, Terms, crossover, evaluate
from complexo.errors import ComplexoError
from complexo.presets import ARCHS, DEFAULT_TARGETS, TARGETS, ModelConfig
from complexo.presets import TRANSFORMERS as PRESETS
from complexo.presets import TRANSFORMERS_PUBLISHED as PUBLISHED_PARAMS
from complexo.registry import Analysis, Figure, Profiling, check_options, option, register
from complexo.result import (
    Comparison,
    QuantitySpec,
    Result,
    build_quantity,
    ratio_key,
    summarise,
)
from complexo.symbols import B, L, P, V, d, d_in, d_out, e, f, h, n, r

NAME = "lora"
SIDES = ("full", "lora")
OPTIMIZERS = ("adam", "adamw", "sgd")
# Precision: compute/storage dtype of weights, gradients and activations, and whether an fp32
# master copy of the trained weights is stepped (mixed precision as in ZeRO / apex O2).
PRECISIONS = {"fp32": ("fp32", False), "bf16-mixed": ("bf16", True), "fp16-mixed": ("fp16", True)}
# Optimizer state per trained parameter, in fp32: Adam's m and v; SGD (momentum 0) keeps none.
OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "sgd": 0}
RANKS = (1, 2, 4, 8, 16, 64, 256)
INDEX_BYTES = 8  # token ids and positions are int64

LINEAR = ("aten::linear", "aten.addmm", "aten.mm")
MM = ("aten.mm",)
SDPA = ("aten::scaled_dot_product_attention", "aten._scaled_dot_product_flash_attention_for_cpu")
SDPA_BWD = ("aten._scaled_dot_product_flash_attention_for_cpu_backward",)
LORA_MODULES = ("lora_A", "lora_B")
STACK = "blocks"  # the Transformer's ModuleList of layers


@dataclass(frozen=True)
class Config:
    """A single layer (``in_features``, ``out_features``) or a model: a preset, optionally with
    overrides, or ``arch`` with ``layers``, ``dim`` and ``heads`` (the rest from the arch)."""

    model: str | None = option(
        None,
        "Preset: gpt2, gpt2-medium, gpt2-large, gpt2-xl, gpt3-175b, llama-7b (default gpt2 "
        "unless a layer or a raw model is given).",
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
            if any(x is not None for x in (*model_options, self.ctx, self.mlp, self.targets)):
                raise ComplexoError(
                    "give either a layer (--in, --out) or a model (with --targets), not both"
                )
            self._resolve_layer()
        else:
            self._resolve_model()
        if self.rank > self.max_rank:
            raise ComplexoError(
                f"--rank {self.rank} exceeds min(in, out) = {self.max_rank} of the smallest "
                "adapted matrix; a LoRA update B·A has rank at most that"
            )

    def _resolve_layer(self):
        if self.seq is None:
            object.__setattr__(self, "seq", 1024)

    def _resolve_model(self):
        sizes = {k: getattr(self, k) for k in ("layers", "dim", "heads", "vocab", "ctx", "mlp")}
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
        return ModelConfig(
            self.arch, self.layers, self.dim, self.heads, self.vocab, self.ctx, self.mlp
        )

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
            **{d: spec.dim, h: spec.heads, L: spec.layers, V: spec.vocab, f: spec.mlp},
            P: spec.ctx,
        }


def _matrices(spec: ModelConfig) -> list[tuple[str, int, int]]:
    """Every linear layer of one transformer layer: (name, in, out)."""
    dm, ff = spec.dim, spec.mlp
    mlp = (
        [("gate_proj", dm, ff), ("up_proj", dm, ff), ("down_proj", ff, dm)]
        if spec.swiglu
        else [("fc_in", dm, ff), ("fc_out", ff, dm)]
    )
    return [(p, dm, dm) for p in ("q_proj", "k_proj", "v_proj", "out_proj")] + mlp


def _target_of(module_name: str) -> str:
    return next(t for t, names in TARGETS.items() if module_name in names)


# ---------------------------------------------------------------------------------------------
# The cost model


@dataclass
class _Layer:
    """One pass through a layer's ops, tracking which tensors require grad as autograd does.
    ``c`` is how many identical layers this pass stands for."""

    t: Terms
    c: sympy.Expr
    trainable: bool  # the base weights (full fine-tuning)
    targets: tuple[str, ...]  # adapted matrices (LoRA)
    kept: dict[str, tuple[str, sympy.Expr, str]] = field(default_factory=dict)

    def keep(self, storage: str, term: str, expr, note: str) -> None:
        """A tensor saved for backward; one storage counts once, however many ops save it."""
        self.kept.setdefault(storage, (term, expr, note))

    def flush(self) -> None:
        for term, expr, note in self.kept.values():
            self.t.add(Kind.ACTIVATION, term, self.c * expr, note=note)
        self.kept.clear()

    def linear(
        self, group: str, name: str, i, o, x: str, x_grad: bool, adapted: bool | None = None
    ) -> bool:
        """y = x·Wᵀ over B·n tokens, plus its adapter if targeted. Returns y.requires_grad."""
        if adapted is None:
            adapted = _adapted(name, self.targets)
        mm, c = 2 * B * n * i * o, self.c  # (B·n, i) x (i, o)
        self.t.add(Kind.FORWARD, group, c * mm, mm=True, ops=LINEAR, tags={"base"})
        if x_grad:
            self.t.add(Kind.BACKWARD, f"{group}.dx", c * mm, mm=True, ops=MM, tags={"dx"})
        if self.trainable:
            self.t.add(Kind.BACKWARD, f"{group}.dw", c * mm, mm=True, ops=MM, tags={"dw"})
            self.keep(x, f"{group}_inputs", B * n * i * e, "inputs of trained matrices")
        if adapted:
            a, b = 2 * B * n * i * r, 2 * B * n * r * o  # (B·n, i) x (i, r), (B·n, r) x (r, o)
            lora = {"lora"}
            self.t.add(Kind.FORWARD, "lora", c * (a + b), mm=True, ops=LINEAR, tags=lora)
            self.t.add(Kind.BACKWARD, "lora.dw", c * (a + b), mm=True, ops=MM, tags={*lora, "dw"})
            dx = b + (a if x_grad else 0)  # into x·Aᵀ always; into x where x needs it
            self.t.add(Kind.BACKWARD, "lora.dx", c * dx, mm=True, ops=MM, tags={*lora, "dx"})
            self.keep(x, f"{group}_inputs", B * n * i * e, "inputs of adapted matrices")
            self.keep(f"{name}.z", "lora_hidden", B * n * r * e, "x·Aᵀ, input of B")
        return x_grad or self.trainable or adapted


def _norm(layer: _Layer, rms: bool, x: str, x_grad: bool, out: str) -> bool:
    """LayerNorm keeps its input and fp32 mean and 1/std; the from-scratch RMSNorm keeps its
    input and 1/rms, and x·(1/rms) only where its weight trains. Returns out.requires_grad."""
    if rms:
        if x_grad:
            layer.keep(x, "norm_inputs", B * n * d * e, "residual stream, kept by the norms")
            layer.keep(f"{x}.rstd", "norm_stats", B * n * e, "1/rms per token")
        if layer.trainable:
            layer.keep(f"{out}.hat", "norm_normalized", B * n * d * e, "x/rms, for dw")
    elif x_grad or layer.trainable:
        layer.keep(x, "norm_inputs", B * n * d * e, "residual stream, kept by the norms")
        layer.keep(f"{x}.stats", "norm_stats", 2 * FP32_BYTES * B * n, "fp32 mean and 1/std")
    return x_grad or layer.trainable


def _transformer_layer(layer: _Layer, spec: ModelConfig, x_grad: bool) -> tuple[bool, bool]:
    """One pre-norm block. Returns (output requires grad, q or k required grad)."""
    rms = spec.arch == "llama"
    h1 = _norm(layer, rms, "x", x_grad, "h1")
    q, k, v = (layer.linear("attn_proj", p, d, d, "h1", h1) for p in ("q_proj", "k_proj", "v_proj"))
    att = q or k or v
    if att:  # the fused kernel keeps q, k, v (after rotary), its output and fp32 log-sum-exp
        layer.keep("qkv", "attention_qkv", 3 * B * n * d * e, "q, k, v, kept by SDPA")
        layer.keep("att", "attention_out", B * n * d * e, "SDPA's output, also out_proj's input")
        layer.keep("lse", "attention_lse", FP32_BYTES * B * h * n, "softmax statistics, fp32")
    scores = layer.c * 4 * B * n**2 * d  # Q·Kᵀ and A·V, causal counted dense
    layer.t.add(Kind.FORWARD, "attention", scores, mm=True, ops=SDPA, tags={"base"})
    if att:  # recompute Q·Kᵀ (2), dQ and dK (4), dA and dV (4): torch's own SDPA formula
        layer.t.add(
            Kind.BACKWARD,
            "attention.dx",
            layer.c * 10 * B * n**2 * d,
            mm=True,
            ops=SDPA_BWD,
            tags={"dx"},
        )
    o = layer.linear("attn_proj", "out_proj", d, d, "att", att)
    x1 = x_grad or o
    h2 = _norm(layer, rms, "x1", x1, "h2")
    if spec.swiglu:
        g = layer.linear("mlp", "gate_proj", d, f, "h2", h2)
        u = layer.linear("mlp", "up_proj", d, f, "h2", h2)
        if g:  # silu keeps its input; the product keeps up's output for d(silu)
            layer.keep("gate", "mlp_hidden", B * n * f * e, "gate output, kept by SiLU")
            layer.keep("up", "mlp_hidden", B * n * f * e, "up output, kept by the product")
        if u:
            layer.keep("silu", "mlp_hidden", B * n * f * e, "SiLU output, kept by the product")
        m = layer.linear("mlp", "down_proj", f, d, "prod", g or u)
    else:
        a = layer.linear("mlp", "fc_in", d, f, "h2", h2)
        if a:
            layer.keep("fc", "mlp_hidden", B * n * f * e, "fc_in output, kept by GELU")
        m = layer.linear("mlp", "fc_out", f, d, "gelu", a)
    layer.flush()
    return x1 or m, q or k


def cost_model(cfg: Config, side: str) -> CostModel:
    """The symbolic cost of a training step of ``cfg`` under full fine-tuning or LoRA."""
    t, full = Terms(), side == "full"
    if cfg.single_layer:
        layer = _Layer(t, sympy.Integer(1), full, ())
        # Its input needs its gradient: the layer sits inside a network (see conventions).
        layer.linear("layer", "layer", d_in, d_out, "x", True, adapted=not full)
        layer.flush()
        tags = {"trainable"} if full else set()
        t.add(Kind.PARAMS, "weight", d_in * d_out, tags=tags)
        t.add(Kind.PARAMS, "bias", d_out, tags=tags)
    else:
        _model_terms(t, cfg.spec, full, () if full else cfg.targets)
    if not full:
        adapters, _ = _adapted_sizes(cfg)
        t.add(Kind.PARAMS, "adapters", adapters, tags={"trainable"}, note="r·(in + out) each")
    _memory_terms(t, cfg)
    return t.model()


def _adapted_sizes(cfg: Config) -> tuple[sympy.Expr, sympy.Expr]:
    """Parameters of the adapters, and of the matrices they adapt."""
    if cfg.single_layer:
        return r * (d_in + d_out), d_in * d_out
    matrices = [
        (i, o) for name, i, o in _symbolic_matrices(cfg.spec) if _adapted(name, cfg.targets)
    ]
    return L * sum(r * (i + o) for i, o in matrices), L * sum(i * o for i, o in matrices)


def _adapted(name: str, targets) -> bool:
    return any(name in TARGETS[x] for x in targets)


def _symbolic_matrices(spec: ModelConfig):
    mlp = (
        [("gate_proj", d, f), ("up_proj", d, f), ("down_proj", f, d)]
        if spec.swiglu
        else [("fc_in", d, f), ("fc_out", f, d)]
    )
    return [(p, d, d) for p in ("q_proj", "k_proj", "v_proj", "out_proj")] + mlp


def _model_terms(t: Terms, spec: ModelConfig, full: bool, targets) -> None:
    param_terms(t, spec, tags={"trainable"} if full else set())

    # Embeddings keep their indices only when they train.
    if full:
        t.add(Kind.ACTIVATION, "token_ids", INDEX_BYTES * B * n, note="int64, kept by wte")
        if spec.learned_positions:
            t.add(Kind.ACTIVATION, "position_ids", INDEX_BYTES * n, note="int64, kept by wpe")
    # Layers. Full: every layer's input requires grad (the embeddings train). LoRA: the first
    # layer's input comes from frozen embeddings; every later one depends on an adapter.
    if full:
        _, qk = _transformer_layer(_Layer(t, L, True, ()), spec, x_grad=True)
    else:
        out, qk = _transformer_layer(_Layer(t, sympy.Integer(1), False, targets), spec, False)
        _, qk_rest = _transformer_layer(_Layer(t, L - 1, False, targets), spec, out)
        qk = qk or (spec.layers > 1 and qk_rest)
    if spec.arch == "llama" and qk:  # computed once per forward, kept by every q·cos, k·sin
        t.add(Kind.ACTIVATION, "rotary_tables", 2 * n * (d / h) * e, note="cos and sin, (n, hs)")
    # Final norm, output projection, loss.
    head = _Layer(t, sympy.Integer(1), full, ())
    _norm(head, spec.arch == "llama", "xL", True, "hf")
    head.linear("lm_head", "lm_head", d, V, "hf", True)
    head.keep("logp", "log_probs", B * n * V * e, "log-softmax output, kept by the loss")
    head.keep("targets", "target_ids", INDEX_BYTES * B * n, "int64, kept by the loss")
    head.keep("weight", "loss_weight", e, "the loss's total weight, a scalar")
    head.flush()


def _memory_terms(t: Terms, cfg: Config) -> None:
    model = t.model()
    every, trained = model.total(Kind.PARAMS), model.total(Kind.PARAMS, tag="trainable")
    t.add(Kind.MEMORY, "weights", every * e, tags={"weights"}, note=f"all parameters, {cfg.dtype}")
    t.add(Kind.MEMORY, "gradients", trained * e, tags={"gradients"}, note="trained ones only")
    states = OPTIMIZER_STATES[cfg.optimizer]
    if states:
        t.add(
            Kind.MEMORY,
            "optimizer_state",
            states * FP32_BYTES * trained,
            tags={"optimizer"},
            note=f"{cfg.optimizer}: m and v, fp32",
        )
    if cfg.master_fp32:
        t.add(
            Kind.MEMORY,
            "master_weights",
            FP32_BYTES * trained,
            tags={"optimizer"},
            note="fp32 copies that the optimizer steps",
        )
    t.add(Kind.CHECKPOINT, "trained_weights", trained * e, note="what a checkpoint must hold")


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


def build(cfg: Config, side: str, device: str = "meta"):
    """The reference module for one side (LoRA: adapters added, everything else frozen) and a
    function running its training forward (to a loss, or a layer's output), on ``device``."""
    import torch

    from complexo.blocks.lora import LoRALinear, add_lora
    from complexo.blocks.transformer import Transformer

    dtype = torch_dtype(cfg.dtype)
    with torch.device(device):
        if cfg.single_layer:
            module = torch.nn.Linear(cfg.in_features, cfg.out_features).to(dtype)
            if side == "lora":
                module = LoRALinear(module, cfg.rank, cfg.alpha)
            x = torch.randn(cfg.batch, cfg.seq, cfg.in_features, dtype=dtype, requires_grad=True)
            inputs = (x,)
        else:
            module = Transformer(cfg.spec).to(dtype)
            if side == "lora":
                add_lora(module, cfg.targets, cfg.rank, cfg.alpha)
            idx = torch.randint(0, cfg.vocab, (cfg.batch, cfg.seq))
            inputs = (idx, torch.randint(0, cfg.vocab, (cfg.batch, cfg.seq)))
    return module, inputs


def measure(cfg: Config, side: str) -> dict:
    """Every reading of one side: torch's (FlopCounterMode, saved tensors, a real optimizer
    step, the module's parameters) and fvcore's, by quantity and counter.

    A model deeper than three layers is measured on its 2- and 3-layer copies and extrapolated
    (:func:`~complexo.measure.extrapolate_depth`; its middle layers are identical), so that 96
    layers cost what 5 do; ``cfg.full_depth`` measures every layer instead. The tests check that
    both give the same readings."""
    from complexo.measure import extrapolate_depth

    if not extrapolated(cfg):
        return _measure(cfg, side)
    two, three = (_measure(replace(cfg, layers=k), side) for k in (2, 3))
    return extrapolate_depth(two, three, cfg.layers, STACK)


def _measure(cfg: Config, side: str) -> dict:
    from complexo.blocks.lora import adapter_state_dict, merge
    from complexo.measure import (
        Count,
        count_forward,
        count_fvcore,
        cpu_attention_formulas,
        measure_torch,
        param_counts,
        storage_bytes,
        training_state,
    )

    module, inputs = build(cfg, side)
    mapping = cpu_attention_formulas()
    run = measure_torch(lambda: module(*inputs), list(module.parameters()), custom_mapping=mapping)
    state = training_state(module, cfg.optimizer, master_fp32=cfg.master_fp32)
    fv = count_fvcore(module, tuple(i.detach() for i in inputs))
    trained = [p for p in module.parameters() if p.requires_grad]
    merged = run.forward  # full fine-tuning: nothing to merge, inference is the forward
    if side == "lora":
        merge(module)  # fold B·A into the frozen weights, then count inference again
        merged = count_forward(lambda: module(*inputs[:1]), custom_mapping=mapping)
    checkpoint = adapter_state_dict(module) if side == "lora" else module.state_dict()
    step = Count(
        "torch",
        run.forward.total + run.backward.total,
        uncounted_ops=run.forward.uncounted_ops | run.backward.uncounted_ops,
    )
    memory = [state.weight_bytes, state.gradient_bytes, state.optimizer_bytes, run.saved_bytes]
    torch_only = {
        "trainable_params": sum(p.numel() for p in trained),
        "checkpoint_bytes": storage_bytes(checkpoint.values()),
        "weight_bytes": state.weight_bytes,
        "gradient_bytes": state.gradient_bytes,
        "optimizer_bytes": state.optimizer_bytes,
        "activation_bytes": run.saved_bytes,
        "train_memory_bytes": sum(memory),
        "backward_flops": run.backward,
        # the LoRA path's forward: what merging the adapters takes out of a forward
        "lora_forward_flops": run.forward.total - merged.total,
        "train_step_flops": step,
        "inference_flops_merged": merged,
    }
    readings = {name: {"fvcore": None, "torch": v} for name, v in torch_only.items()}
    readings["params"] = param_counts(module)
    readings["forward_flops"] = {"fvcore": fv, "torch": run.forward}
    readings["lora_forward_flops"]["fvcore"] = fv.within(LORA_MODULES)
    return readings


def _side(cfg: Config, side: str) -> Result:
    model, values = cost_model(cfg, side), cfg.values
    readings = measure(cfg, side)
    quantities = [build_quantity(s, model, values, readings.get(s.name, {})) for s in QUANTITIES]

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
    growing = (B, n, d_in, d_out, r) if cfg.single_layer else (B, n, d, L, V, f, r)
    summary = summarise(model, values, growing, {r: d_in if cfg.single_layer else d}, crossovers)
    return Result(NAME, _config(cfg), values, model, quantities, summary)


def _config(cfg: Config) -> dict:
    """The resolved config, without the options that do not apply (a layer has no model)."""
    return {k: v for k, v in asdict(cfg).items() if v is not None}


def analyse(cfg: Config) -> Comparison:
    sides = {side: _side(cfg, side) for side in SIDES}
    full, lora = sides["full"], sides["lora"]
    values = cfg.values
    notes = [_speed_note(full, lora), *_notes(cfg, full)]
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
    if not cfg.single_layer and cfg.model in PUBLISHED_PARAMS and cfg.spec == PRESETS[cfg.model]:
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


def extrapolated(cfg: Config) -> bool:
    """Whether :func:`measure` reads this model off its 2- and 3-layer copies."""
    return not (cfg.single_layer or cfg.full_depth or cfg.layers <= 3)


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


def draw(axes, cmp: Comparison) -> dict:
    """Training memory by part for each side, stacked; trainable parameters against rank."""
    ax_memory, ax_rank = axes
    cfg = cmp.config
    ax_memory.figure.suptitle(
        f"LoRA vs full fine-tuning: {cfg.get('model') or 'one layer'}, r = {cfg['rank']}"
    )
    parts = ("weight_bytes", "gradient_bytes", "optimizer_bytes", "activation_bytes")
    sides = list(cmp.sides)
    drawn: dict = {}
    bottom = [0.0] * len(sides)
    gib = 2**30
    for part in parts:
        ys = [cmp.sides[s].quantity(part).value / gib for s in sides]
        label = cmp.sides[sides[0]].quantity(part).label
        ax_memory.bar(sides, ys, bottom=bottom, label=label)
        drawn[part] = (list(range(len(sides))), [y * gib for y in ys])
        bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    for i, total in enumerate(bottom):
        ax_memory.annotate(f"{total:.3g} GiB", (i, total), ha="center", va="bottom", fontsize=9)
    ax_memory.set_ylabel("GiB")
    ax_memory.set_title("training memory by part")
    ax_memory.legend(fontsize=8)
    ranks = [row["rank"] for row in cmp.sweep]
    trainable = [row["trainable_params"] for row in cmp.sweep]
    ax_rank.plot(ranks, trainable, marker="o", lw=2, label="LoRA trainable parameters")
    full = cmp.baseline.quantity("trainable_params").value
    ax_rank.axhline(full, color="black", ls="--", lw=1.2, label=f"full fine-tuning: {full:,}")
    drawn["trainable_params"] = (ranks, trainable)
    ax_rank.set_xscale("log", base=2)
    ax_rank.set_yscale("log")
    ax_rank.set_xlabel("rank r")
    ax_rank.set_ylabel("parameters")
    ax_rank.set_title("trainable parameters against rank")
    ax_rank.grid(True, which="both", alpha=0.25)
    ax_rank.legend(fontsize=8)
    return drawn


def _profile(cfg: Config, **runs):
    from complexo.analyses.lora_profile import profile_lora

    return profile_lora(cfg, **runs)


def examples():
    """Single layers and 1- to 3-layer GPT-2/LLaMA models, random targets and precision."""
    from hypothesis import strategies as st

    layer = st.builds(
        Config,
        in_features=st.integers(2, 12),
        out_features=st.integers(2, 12),
        rank=st.integers(1, 2),
        batch=st.integers(1, 2),
        seq=st.integers(1, 5),
        precision=st.sampled_from(list(PRECISIONS)),
        optimizer=st.sampled_from(OPTIMIZERS),
    )
    model = st.builds(
        Config,
        arch=st.sampled_from(ARCHS),
        layers=st.integers(1, 3),
        dim=st.sampled_from([4, 8]),
        heads=st.just(2),
        vocab=st.integers(5, 30),
        ctx=st.just(8),
        mlp=st.integers(2, 12),
        rank=st.integers(1, 2),
        targets=st.lists(st.sampled_from(list(TARGETS)), min_size=1, max_size=3).map(tuple),
        batch=st.integers(1, 2),
        seq=st.integers(1, 8),
        precision=st.sampled_from(list(PRECISIONS)),
        optimizer=st.sampled_from(OPTIMIZERS),
    )
    return st.one_of(layer, model)


ANALYSIS = register(
    Analysis(
        name=NAME,
        title="LoRA vs full fine-tuning: parameters, training memory and step FLOPs.",
        help="LoRA against full fine-tuning, for one linear layer (--in, --out) or a whole "
        "decoder-only transformer (--model, or --arch with --layers, --dim, --heads): "
        "parameters, checkpoint, training memory by part, FLOPs of a training step by part, "
        "inference merged and unmerged, and a rank sweep; checked against FlopCounterMode, "
        "fvcore, autograd's saved tensors and a real optimizer step, all on the meta device.",
        config=Config,
        analyse=analyse,
        sides=SIDES,
        sweep=False,
        profiling=Profiling(("train",), _profile, sweep=False),
        figure=Figure(
            draw,
            panels=2,
            width=6.0,
            footer=lambda cmp: f"{cmp.config['precision']}, {cmp.config['optimizer']}",
        ),
        examples=examples,
    )
)
