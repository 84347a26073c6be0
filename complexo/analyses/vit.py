"""Vision Transformers: what a ViT costs at resolution R, term by term, and why.

Symbols: B batch, R image side, p patch side, C image channels, d width, h heads, L layers,
f MLP width (4d), K classes, e bytes per element; n = (R/p)² + 1 tokens (patches and the class
token). Reference: ``blocks/vit.py``. Attention runs through SDPA; on the meta device it is sent
to the fused kernel a CPU run takes (as in ``complexo mhsa --impl sdpa``).

The projections and MLP grow with n, so with R²; the attention scores with n², so with R⁴.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

from complexo.analyses import vit_ckpt, vit_peak
from complexo.analyses.vision import (
    CONV,
    CONV_BWD,
    LAYER_NORM,
    LINEAR,
    QUANTITIES,
    SDPA,
    SDPA_BWD,
    build_image,
    measure,
    moved,
    patch_embedding,
)
from complexo.analyses.vision_profile import PROFILING
from complexo.analyses.vit_ckpt import recomputed
from complexo.analyses.vit_proof import SYMBOLIC
from complexo.conventions import (
    DTYPES,
    ELEMENTWISE_FLOPS,
    FP32_BYTES,
    GELU_FWD_FLOPS,
    NORM_FWD_FLOPS,
    SOFTMAX_FWD_FLOPS,
)
from complexo.cost import CostModel, Kind, Terms
from complexo.errors import ComplexoError
from complexo.presets import VIT_CHECKPOINTS as CHECKPOINTS
from complexo.presets import VITS as PRESETS
from complexo.presets import VITS_PUBLISHED as PUBLISHED
from complexo.presets import VITS_PUBLISHED_AT as PUBLISHED_AT
from complexo.registry import Analysis, check_options, option, register
from complexo.result import Result, summarise
from complexo.symbols import B, C, K, L, R, d, e, f, h, p

NAME = "vit"


@dataclass(frozen=True)
class Config:
    model: str = option(
        "vit-b16",
        "The ViT: vit-b16, vit-l32, vit-h14, deit-s16, ...",
        choices=(*PRESETS,),
        sweep=False,
    )
    res: int = option(224, "Image side R (H = W = R).", min=1)
    batch: int = option(1, "Batch size B.", min=1)
    dtype: str = option("fp32", "Element type; bytes per element e.", choices=(*DTYPES,))
    checkpoint: str = option(
        "none",
        "Activation checkpointing: none (every activation saved), full (each block's input "
        "only; the block runs again in the backward) or selective (the attention core, q, k, "
        "v -> merged heads, runs again).",
        choices=CHECKPOINTS,
    )
    budget: float | None = option(
        None,
        "A memory budget in GiB (2^30 bytes): the largest batch whose training step fits it, "
        "in each checkpoint mode.",
        above=0,
        max=1e9,
        sweep=False,
    )

    def __post_init__(self):
        check_options(self)
        patch = PRESETS[self.model].patch
        if self.res % patch:
            below, above = self.res // patch * patch, (self.res // patch + 1) * patch
            nearest = f"{below} or {above}" if below else f"{above}"
            raise ComplexoError(
                f"--res {self.res} is not divisible by {self.model}'s patch size {patch}; "
                f"refused, as torchvision's ViT refuses it (no padding): try {nearest}"
            )

    @property
    def values(self) -> dict:
        arch = PRESETS[self.model]
        return {
            B: self.batch,
            R: self.res,
            p: arch.patch,
            C: arch.channels,
            d: arch.dim,
            h: arch.heads,
            L: arch.layers,
            f: arch.mlp,
            K: arch.classes,
            e: DTYPES[self.dtype].bytes,
        }

    @property
    def tokens(self) -> int:
        return (self.res // PRESETS[self.model].patch) ** 2 + 1


TOKENS = (R / p) ** 2 + 1  # n: the patches and the class token


@functools.cache  # the ledger's all-live sum asks again: build each model once
def cost_model(checkpoint: str = "none") -> CostModel:
    """Forward FLOPs per term, parameters, activations saved for a training backward; with
    activation checkpointing (:mod:`complexo.analyses.vit_ckpt`), what the forward keeps and
    the backward's recomputed forward as terms of their own."""
    t, EW, n = Terms(), ELEMENTWISE_FLOPS, TOKENS
    fwd = lambda name, expr, ops, mm=False, note="": t.add(  # noqa: E731
        Kind.FORWARD, name, expr, mm=mm, ops=ops, note=note
    )
    act = lambda name, expr, note: t.add(Kind.ACTIVATION, name, expr, note=note)  # noqa: E731
    patch_flops, patch_params = patch_embedding(B, C, d, R, p)
    # Patch embedding, class token, position embedding.
    fwd("patch_embed", patch_flops, CONV, mm=True, note="(C·p²) × d per patch")
    bwd = lambda name, expr, ops, note="": t.add(  # noqa: E731
        Kind.BACKWARD, name, expr, mm=True, ops=ops, note=note
    )
    bwd("patch_embed", patch_flops, CONV_BWD, "dW only: the image needs no gradient")
    fwd("patch_bias", EW * B * (R / p) ** 2 * d, CONV)
    fwd("pos_embed", EW * B * n * d, ("aten::add", "aten.add"))
    t.add(Kind.PARAMS, "patch_embed", patch_params)
    t.add(Kind.PARAMS, "class_token", d)
    t.add(Kind.PARAMS, "pos_embed", n * d, note="one per token: grows with R")
    act("image", B * C * R**2 * e, "input of the patch convolution")
    # L encoder blocks.
    fwd("attn_proj", L * 8 * B * n * d**2, LINEAR, mm=True, note="q, k, v, out: 4 × 2·n·d²")
    fwd("attention", L * 4 * B * n**2 * d, SDPA, mm=True, note="Q·Kᵀ and A·V: 2 × 2·n²·d")
    fwd("mlp", L * 4 * B * n * d * f, LINEAR, mm=True, note="d -> f -> d")
    bwd("attn_proj", L * 2 * 8 * B * n * d**2, ("aten.mm",), "dX and dW of each")
    bwd("attention", L * 10 * B * n**2 * d, SDPA_BWD, "QKᵀ again, dV, dA, dQ, dK: 5 × 2·n²·d")
    bwd("mlp", L * 2 * 4 * B * n * d * f, ("aten.mm",), "dX and dW of each")
    fwd("bias", L * EW * B * n * (4 * d + f + d), LINEAR)
    fwd("scale", L * EW * B * h * n**2, SDPA)
    fwd("softmax", L * SOFTMAX_FWD_FLOPS * B * h * n**2, SDPA)
    fwd("gelu", L * GELU_FWD_FLOPS * B * n * f, ("aten::gelu", "aten.gelu"))
    fwd("residual", L * 2 * EW * B * n * d, ("aten::add", "aten.add"))
    fwd("layernorm", (2 * L + 1) * NORM_FWD_FLOPS * B * n * d, LAYER_NORM)
    t.add(Kind.PARAMS, "attention", L * (4 * d**2 + 4 * d))
    t.add(Kind.PARAMS, "mlp", L * (2 * d * f + f + d))
    t.add(Kind.PARAMS, "layernorms", (2 * L + 1) * 2 * d)
    if checkpoint == "full":  # the blocks save nothing: the checkpoint keeps their inputs
        act("block_inputs", L * B * n * d * e, "each block's input, kept to run it again")
        blocks = 0
    else:
        blocks = L
    act("norm_inputs", (2 * blocks + 1) * B * n * d * e, "residual stream, kept by LayerNorm")
    act("norm_statistics", (2 * blocks + 1) * 2 * FP32_BYTES * B * n, "fp32 μ, 1/σ per token")
    act("norm_outputs", (2 * blocks + 1) * B * n * d * e, "inputs of q, k, v / fc1 / the head")
    act("attention_qkv_out", blocks * 4 * B * n * d * e, "q, k, v and output, kept by SDPA")
    if checkpoint == "none":  # selective: the core's output is run again, its statistics too
        act("attention_lse", L * FP32_BYTES * B * h * n, "softmax statistics, fp32")
    act("mlp_hidden", blocks * 2 * B * n * f * e, "fc1 output (kept by GELU), GELU output")
    recomputed(t, checkpoint)
    # Classifier on the class token.
    # Fewest bytes per layer type: each module call reads its input and weights, writes output.
    patches = B * (R / p) ** 2 * d
    moved(t, "convolutions", (B * C * R**2 + C * p**2 * d + d) * e + patches * e, "patches")
    linear = lambda d_in, d_out, tokens: tokens * d_in + d_in * d_out + d_out + tokens * d_out  # noqa: E731
    per_block = 4 * linear(d, d, B * n) + linear(d, f, B * n) + linear(f, d, B * n)
    moved(t, "linear layers", (L * per_block + linear(d, K, B)) * e, "q, k, v, out, fc1, fc2, head")
    moved(t, "layernorm", (2 * L + 1) * (2 * B * n * d + 2 * d) * e, "read, write, γ, β")
    fwd("head", 2 * B * d * K, LINEAR, mm=True)
    bwd("head", 2 * 2 * B * d * K, ("aten.mm",), "dX and dW")
    fwd("head_bias", EW * B * K, LINEAR)
    t.add(Kind.PARAMS, "head", d * K + K)
    return t.model()


def build(cfg: Config, device: str | None = "meta", layers: int | None = None):
    """The ViT and its image batch; ``layers``: that many blocks instead of the preset's."""
    from dataclasses import replace

    from complexo.blocks.vit import ViT

    arch = PRESETS[cfg.model]
    arch = arch if layers is None else replace(arch, layers=layers)
    return build_image(lambda: ViT(arch, cfg.res, cfg.checkpoint), cfg, arch.channels, device)


def analyse(cfg: Config) -> Result:
    from complexo.conventions import CONV_NOTE, SDPA_CPU_NOTE

    model, values = cost_model(cfg.checkpoint), cfg.values
    fake = None if cfg.checkpoint == "none" else lambda: vit_ckpt.fake_build(cfg)
    quantities = measure(lambda: build(cfg), values, model, QUANTITIES, attention=True, fake=fake)
    if fake is not None:  # CPU fake tensors: the LayerNorms' statistics in 16-bit, named
        quantities = [
            vit_ckpt.statistics_gap(cfg, q) if q.name == "activation_bytes" else q
            for q in quantities
        ]
    budget, budget_note = vit_ckpt.budget_crossovers(cfg)
    attention = model.crossover(
        ["attention"],
        ["attn_proj", "mlp"],
        R,
        values=values,
        label="attention overtakes the projections and MLP",
    )
    crossovers = [attention, *budget]
    summary = summarise(model, values, growing=(B, R, d, L), bounds={}, crossovers=crossovers)
    notes = [
        f"attention overtakes the projections and MLP at n = 2·d + f = "
        f"{2 * values[d] + values[f]} tokens",
        CONV_NOTE,
        SDPA_CPU_NOTE,
    ]
    patch = PRESETS[cfg.model].patch
    facts = {"tokens": f"{cfg.tokens} = ({cfg.res}/{patch})² patches + the class token"}
    card = PUBLISHED_AT.get((cfg.model, cfg.res), PUBLISHED.get(cfg.model))  # this R's first
    if card is not None:
        params, res, gmacs, source = card
        flops = f", {gmacs} GMAC" if gmacs else ""
        notes.append(f"published ({source}): {params:,} parameters{flops} at {res} per image")
    peak, peak_note = vit_peak.quantity(cfg)  # the training step's high-water mark
    notes += [peak_note, *vit_ckpt.notes(cfg, model), *([budget_note] if budget_note else [])]
    return Result(NAME, asdict(cfg), values, model, [*quantities, peak], summary, notes, facts)


def examples():
    """Small ViTs at small resolutions, for the registry-wide tests."""
    from hypothesis import strategies as st

    return st.builds(
        lambda model, k, batch, dtype, ckpt: Config(
            model, PRESETS[model].patch * k, batch, dtype, ckpt
        ),
        model=st.sampled_from(["vit-ti16", "vit-s32"]),
        k=st.integers(1, 3),
        batch=st.integers(1, 2),
        dtype=st.sampled_from(list(DTYPES)),
        ckpt=st.sampled_from(CHECKPOINTS),
    )


ANALYSIS = register(
    Analysis(
        name=NAME,
        title="A Vision Transformer alone: FLOPs per term, parameters, activations.",
        help="A ViT (vit-ti/s/b/l/h with patch 16, 14 or 32, e.g. vit-b16; deit-ti16/s16/b16), "
        "built as torchvision builds it: forward FLOPs per term (patch embedding, projections, "
        "attention, MLP, head, element-wise), parameters, training activations at image side R, "
        "checked against fvcore, FlopCounterMode and autograd's saved tensors on the meta "
        "device; the training step's peak from a ledger of lifetimes against MemTracker; "
        "--checkpoint full|selective: activation checkpointing (what it keeps, the rerun's "
        "FLOPs), --budget: the largest batch each mode fits.",
        config=Config,
        analyse=analyse,
        profiling=PROFILING,
        examples=examples,
        symbolic=SYMBOLIC,
    )
)
