"""Choosing a decoder-only model for the analyses that take one (``lora``, ``kvcache``): a
preset, a preset with some sizes overridden, or a raw config (``--arch`` with ``--layers``,
``--dim``, ``--heads``; the rest from the architecture's conventions)."""

from __future__ import annotations

from complexo.cost import Kind, Terms
from complexo.errors import ComplexoError, check_choice
from complexo.presets import ARCHS, ModelConfig, llama_mlp_width
from complexo.presets import TRANSFORMERS as PRESETS
from complexo.symbols import G, L, P, V, d, f, h

SIZES = ("layers", "dim", "heads", "vocab", "ctx", "mlp", "kv_heads", "window")


def arch_defaults(arch: str, dim: int) -> ModelConfig:
    """What an architecture fixes when a raw config leaves it out: vocabulary, context, and
    the MLP width (4·d for GPT-2; LLaMA's 2/3·4·d rounded up to a multiple of 256)."""
    mlp = llama_mlp_width(dim) if arch == "llama" else 4 * dim
    vocab, ctx = (32000, 2048) if arch == "llama" else (50257, 1024)
    return ModelConfig(arch, 1, dim, 1, vocab, ctx, mlp)


def resolve_model(
    model: str | None, arch: str | None, sizes: dict, *, default: str
) -> tuple[str | None, ModelConfig]:
    """(the preset's name or None, the model) from the options; every check a one-line error."""
    given = {k: v for k, v in sizes.items() if v is not None}
    if model is not None:
        check_choice("--model", model, PRESETS)
        base = PRESETS[model]
        if arch is not None and arch != base.arch:
            raise ComplexoError(f"--arch {arch} contradicts --model {model}")
    elif arch is not None or {"layers", "dim", "heads"} & set(given):
        missing = [o for o in ("layers", "dim", "heads") if o not in given]
        if missing:
            raise ComplexoError(
                "a model without --model needs --"
                + ", --".join(missing)
                + f" (or a preset: {', '.join(PRESETS)})"
            )
        arch = arch or "gpt2"
        check_choice("--arch", arch, ARCHS)
        base = arch_defaults(arch, given["dim"])
    else:
        model, base = default, PRESETS[default]
    merged = {name: given.get(name, getattr(base, name)) for name in SIZES if name != "mlp"}
    if "mlp" in given:
        merged["mlp"] = given["mlp"]
    elif "dim" in given:
        merged["mlp"] = arch_defaults(base.arch, merged["dim"]).mlp
    else:
        merged["mlp"] = base.mlp
    for name, value in merged.items():
        if value is not None and value <= 0:
            raise ComplexoError(
                f"--{name.replace('_', '-')} must be a positive integer, got {value}"
            )
    cfg = ModelConfig(base.arch, **merged)
    if cfg.dim % cfg.heads:
        raise ComplexoError(f"--dim {cfg.dim} is not divisible by --heads {cfg.heads}")
    if cfg.heads % cfg.groups:
        raise ComplexoError(f"--heads {cfg.heads} is not divisible by --kv-heads {cfg.groups}")
    if cfg.arch == "llama" and (cfg.dim // cfg.heads) % 2:
        raise ComplexoError(
            f"rotary positions need an even head size; d/h = {cfg.dim // cfg.heads}"
        )
    return model, cfg


def model_config(cfg) -> ModelConfig:
    """The model a resolved config describes: its architecture and sizes (a size the config
    has no field for, such as a training config's sliding window, left out)."""
    return ModelConfig(cfg.arch, *(getattr(cfg, size, None) for size in SIZES))


def kv_width(spec: ModelConfig):
    """Width of k and v: G·d/h with grouped-query attention, d otherwise."""
    return G * d / h if spec.kv_heads else d


def param_terms(t: Terms, spec: ModelConfig, tags=()) -> None:
    """Parameters of the reference transformer, per part."""
    embed = V * d + (P * d if spec.learned_positions else 0)
    t.add(Kind.PARAMS, "embeddings", embed, tags=tags, note="tokens (+ learned positions)")
    kv = kv_width(spec)
    weights, biases = 2 * d**2 + 2 * d * kv, 2 * d + 2 * kv  # q and out; k and v
    t.add(Kind.PARAMS, "attention", L * (weights + (biases if spec.bias else 0)), tags=tags)
    mlp = 3 * d * f if spec.swiglu else 2 * d * f + f + d
    t.add(Kind.PARAMS, "mlp", L * mlp, tags=tags)
    norms = (2 * L + 1) * d if spec.arch == "llama" else (2 * L + 1) * 2 * d
    t.add(Kind.PARAMS, "norms", norms, tags=tags)
    if not spec.tied:
        t.add(Kind.PARAMS, "lm_head", V * d, tags=tags, note="untied output projection")
