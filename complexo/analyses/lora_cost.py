"""LoRA's cost model: a training step of full fine-tuning or of LoRA, term by term, with autograd
modelled as it runs (a product computes the gradients its inputs need and saves only what those
need). See :mod:`complexo.analyses.lora` for the symbols, the conventions and the analysis."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sympy

from complexo.analyses.llm import kv_width, param_terms
from complexo.analyses.lora_ckpt import recomputed
from complexo.conventions import FP32_BYTES
from complexo.cost import CostModel, Kind, Terms
from complexo.presets import TARGETS, ModelConfig
from complexo.symbols import B, L, V, d, d_in, d_out, e, f, h, n, r

if TYPE_CHECKING:
    from complexo.analyses.lora import Config

# Optimizer state per trained parameter, in fp32: Adam's m and v; SGD (momentum 0) keeps none.
OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "sgd": 0}
INDEX_BYTES = 8  # token ids and positions are int64

LINEAR = ("aten::linear", "aten.addmm", "aten.mm")
MM = ("aten.mm",)
SDPA = ("aten::scaled_dot_product_attention", "aten._scaled_dot_product_flash_attention_for_cpu")
SDPA_BWD = ("aten._scaled_dot_product_flash_attention_for_cpu_backward",)


def _matrices(spec: ModelConfig) -> list[tuple[str, int, int]]:
    """Every linear layer of one transformer layer: (name, in, out)."""
    dm, ff = spec.dim, spec.mlp
    mlp = (
        [("gate_proj", dm, ff), ("up_proj", dm, ff), ("down_proj", ff, dm)]
        if spec.swiglu
        else [("fc_in", dm, ff), ("fc_out", ff, dm)]
    )
    kv = spec.groups * (dm // spec.heads)  # G·d/h: k and v have G heads
    attn = [("q_proj", dm, dm), ("k_proj", dm, kv), ("v_proj", dm, kv), ("out_proj", dm, dm)]
    return attn + mlp


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
    checkpoint: str = "none"  # full: the layer saves nothing (its checkpoint keeps its input)

    def keep(self, storage: str, term: str, expr, note: str) -> None:
        """A tensor saved for backward; one storage counts once, however many ops save it."""
        self.kept.setdefault(storage, (term, expr, note))

    def flush(self) -> None:
        for term, expr, note in self.kept.values() if self.checkpoint != "full" else ():
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
    kv = kv_width(spec)  # G·d/h with grouped-query attention
    q = layer.linear("attn_proj", "q_proj", d, d, "h1", h1)
    k, v = (layer.linear("attn_proj", p, d, kv, "h1", h1) for p in ("k_proj", "v_proj"))
    att = q or k or v
    # The fused kernel keeps q, k, v (after rotary), its output and fp32 log-sum-exp; with G < h
    # the k and v it keeps are the h-head copies that repeat_interleave made, B·n·d each.
    if att and layer.checkpoint == "selective":  # SDPA's saves: the rerun's, in the backward
        why = "q, k, v (k and v with G heads), kept by the core's checkpoint"
        layer.keep("qkv", "core_inputs", B * n * (d + 2 * kv) * e, why)
    elif att:
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
        _model_terms(t, cfg.spec, full, () if full else cfg.targets, cfg.checkpoint)
        recomputed(t, cfg, side)
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
    kv = kv_width(spec)
    return [("q_proj", d, d), ("k_proj", d, kv), ("v_proj", d, kv), ("out_proj", d, d), *mlp]


def _model_terms(t: Terms, spec: ModelConfig, full: bool, targets, mode: str = "none") -> None:
    param_terms(t, spec, tags={"trainable"} if full else set())

    # Embeddings keep their indices only when they train.
    if full:
        t.add(Kind.ACTIVATION, "token_ids", INDEX_BYTES * B * n, note="int64, kept by wte")
        if spec.learned_positions:
            t.add(Kind.ACTIVATION, "position_ids", INDEX_BYTES * n, note="int64, kept by wpe")
    # Layers. Full: every layer's input requires grad (the embeddings train). LoRA: the first
    # layer's input comes from frozen embeddings; every later one depends on an adapter.
    if full:
        _, qk = _transformer_layer(_Layer(t, L, True, (), checkpoint=mode), spec, x_grad=True)
    else:
        first = _Layer(t, sympy.Integer(1), False, targets, checkpoint=mode)
        out, qk = _transformer_layer(first, spec, False)
        rest = _Layer(t, L - 1, False, targets, checkpoint=mode)
        _, qk_rest = _transformer_layer(rest, spec, out)
        qk = qk or (spec.layers > 1 and qk_rest)
    if mode == "full":
        t.add(Kind.ACTIVATION, "block_inputs", L * B * n * d * e, note="kept by each checkpoint")
    if spec.arch == "llama" and (qk or mode == "full"):  # made once per forward, kept by
        # every q·cos, k·sin; with full checkpointing by every checkpoint (an argument)
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
