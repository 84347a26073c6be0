"""Model FLOPs per token, the PaLM / nanoGPT convention, beside the FLOPs complexo counts a
training step executing, the difference named term by term, and MFU where a profile was recorded.

Convention (Chowdhery et al. 2022, PaLM, Appendix B; nanoGPT's ``estimate_mfu``): training a
decoder costs 6·N + 12·L·d·T FLOPs per token (FLOP = 2·MAC), where

- N is the parameters without the token and position embeddings; the output head is in N (tied,
  it is the token table, as in nanoGPT's ``get_num_params``; untied, LLaMA's ``lm_head``);
- 6·N: every parameter in a matrix product, forward 2, input gradient 2, weight gradient 2;
- 12·L·d·T: attention's Q·Kᵀ and A·V against T keys (the context), 4·d·T per layer forward and
  twice that backward, dense (causal masking not halved).

complexo's executed count (``lora``'s full fine-tuning step, per token: its ``train_step_flops``
over B·n) differs by what the convention idealises: the fused attention backward recomputes
Q·Kᵀ (2·d·T per layer more), and the norm gains and biases in N multiply nothing. Embeddings cost
no matrix product in either. MFU = model FLOPs per second / the device's peak.
"""

from __future__ import annotations

from complexo.presets import ModelConfig


def non_embedding_params(spec: ModelConfig) -> int:
    """N: every parameter but the token table (unless tied to the head) and learned positions."""
    from complexo.analyses.lora_cost import _matrices

    L, d, V = spec.layers, spec.dim, spec.vocab
    kv = spec.groups * (d // spec.heads)
    matrices = L * sum(i * o for _, i, o in _matrices(spec)) + d * V  # the head: (d, V)
    if spec.arch == "llama":
        other = (2 * L + 1) * d  # RMSNorm gains
    else:  # LayerNorm gains and biases; biases of q, out, fc_out (d), k, v (G·d/h), fc_in (f)
        other = (2 * L + 1) * 2 * d + L * (3 * d + 2 * kv + spec.mlp)
    return matrices + other


def model_flops_per_token(spec: ModelConfig, T: int) -> int:
    """6·N + 12·L·d·T: training FLOPs per token at context T, the PaLM convention."""
    return 6 * non_embedding_params(spec) + 12 * spec.layers * spec.dim * T


def gaps_per_token(spec: ModelConfig, T: int) -> list[tuple[str, int]]:
    """Executed minus model FLOPs per token, by cause; they add up to the difference."""
    from complexo.analyses.lora_cost import _matrices

    L, d, V = spec.layers, spec.dim, spec.vocab
    in_products = L * sum(i * o for _, i, o in _matrices(spec)) + d * V
    idle = non_embedding_params(spec) - in_products
    return [
        ("the fused attention backward recomputes Q·Kᵀ: +2·L·d·T", 2 * L * d * T),
        ("norm gains and biases, in N, multiply nothing: −6·(their count)", -6 * idle),
    ]


def mfu_note(cfg, per_token: int) -> str:
    """MFU from a recorded full fine-tuning profile of this very config, or how to record one."""
    from complexo.profile import recorded

    keys = ("model", "arch", "layers", "dim", "heads", "kv_heads", "vocab", "ctx", "mlp")
    keys += ("batch", "seq", "precision", "optimizer")
    mine = {k: getattr(cfg, k) for k in keys}
    for doc in recorded():
        config = doc["config"]
        if doc["analysis"] != "lora" or config.get("side") != "full" or doc["mode"] != "train":
            continue
        if any(config.get(k) != v for k, v in mine.items()) or not doc.get("median_s"):
            continue
        if config.get("checkpoint", "none") != cfg.checkpoint:  # a rerun runs more FLOPs
            continue
        peak = doc["ceilings"]["peak"][doc["dtype"]]
        rate = per_token * cfg.batch * cfg.seq / doc["median_s"]
        return (
            f"MFU {rate / peak:.1%}: {per_token * cfg.batch * cfg.seq:,} model FLOPs in the "
            f"recorded full fine-tuning step's median {doc['median_s']:.3g} s (forward, backward "
            f"and optimizer) on {doc['device_name']}, peak {peak:.3g} FLOP/s {doc['dtype']} "
            f"({doc['ceilings'].get('source', 'its ceilings')}; {doc['path']})"
        )
    return (
        "MFU: no recorded profile of this config's full fine-tuning; `complexo profile lora` "
        "with these options and --save records one under profiles/<device>/, on the device."
    )


def _rerun(cfg, model) -> float:
    """Activation checkpointing's rerun per token: executed FLOPs, not model ones."""
    from complexo.analyses.lora_ckpt import names
    from complexo.cost import Kind, evaluate

    rerun = names(cfg, model)
    if not rerun:
        return 0
    return evaluate(model.group(Kind.BACKWARD, rerun), cfg.values) / (cfg.batch * cfg.seq)


def notes(cfg, full) -> list[str]:
    """``lora``'s notes on a model's full fine-tuning side (``full``, its Result): model FLOPs
    per token beside the executed ones, the difference named, and MFU."""
    if cfg.single_layer:
        return []
    executed_step = full.quantity("train_step_flops").value
    spec, T = cfg.spec, cfg.seq
    tokens = cfg.batch * cfg.seq
    model = model_flops_per_token(spec, T)
    executed = executed_step / tokens
    gaps = gaps_per_token(spec, T)
    rerun = _rerun(cfg, full.model)
    if rerun:
        gaps.append((f"checkpoint {cfg.checkpoint}'s rerun in the backward (executed)", rerun))
    left = executed - model - sum(g for _, g in gaps)
    named = "; ".join(f"{name} = {g:+,}" for name, g in gaps)
    unexplained = f"; unexplained {left:+,.0f}" if left else ""
    return [
        f"model FLOPs per token (PaLM / nanoGPT: 6·N + 12·L·d·T, N = "
        f"{non_embedding_params(spec):,} without embeddings, T = {T}): {model:,}; a full "
        f"fine-tuning step executes {executed:,.0f} per token, {executed - model:+,.0f}: "
        f"{named}{unexplained}",
        mfu_note(cfg, model),
    ]
