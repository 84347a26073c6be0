"""Model FLOPs per token (PaLM / nanoGPT: 6·N + 12·L·d·T) beside the FLOPs a full fine-tuning
step executes, the difference named, and MFU from a recorded profile."""

import json
from pathlib import Path

import pytest

from complexo.analyses import lora, model_flops
from complexo.presets import TRANSFORMERS, TRANSFORMERS_PUBLISHED, ModelConfig


def test_gpt2_model_flops_per_token_are_nanogpts():
    gpt2 = TRANSFORMERS["gpt2"]
    # N: 124,439,808 parameters less the 1024·768 = 786,432 learned positions (the tied token
    # table is the head, so it stays): 123,653,376, nanoGPT's "123.65M"
    assert model_flops.non_embedding_params(gpt2) == 123_653_376
    # 6·123,653,376 + 12·12·768·1024 = 741,920,256 + 113,246,208 = 855,166,464
    assert model_flops.model_flops_per_token(gpt2, 1024) == 855_166_464


def test_llama_n_leaves_out_the_untied_token_table_only():
    spec = TRANSFORMERS["llama-3-8b"]
    # 8,030,261,248 − 128,256·4096 = 8,030,261,248 − 525,336,576 = 7,504,924,672
    assert TRANSFORMERS_PUBLISHED["llama-3-8b"][0] - 128_256 * 4096 == 7_504_924_672
    assert model_flops.non_embedding_params(spec) == 7_504_924_672


@pytest.mark.parametrize(
    "spec",
    [
        ModelConfig("gpt2", 2, 8, 2, 11, 8, 12),
        ModelConfig("llama", 3, 16, 4, 11, 8, 12, kv_heads=2),
    ],
)
def test_executed_minus_model_flops_is_exactly_the_named_gaps(spec):
    cfg = lora.Config(
        arch=spec.arch,
        layers=spec.layers,
        dim=spec.dim,
        heads=spec.heads,
        kv_heads=spec.kv_heads,
        vocab=spec.vocab,
        ctx=spec.ctx,
        mlp=spec.mlp,
        seq=6,
        batch=2,
        rank=1,
    )
    result = lora.analyse(cfg)
    executed = result.sides["full"].quantity("train_step_flops").value  # = FlopCounterMode's
    per_token, rest = divmod(executed, 2 * 6)
    assert rest == 0
    gaps = sum(g for _, g in model_flops.gaps_per_token(cfg.spec, 6))
    assert per_token == model_flops.model_flops_per_token(cfg.spec, 6) + gaps
    note = next(x for x in result.notes if x.startswith("model FLOPs per token"))
    assert "unexplained" not in note and "recomputes Q·Kᵀ" in note


def test_mfu_reads_the_recorded_full_fine_tuning_profile():
    cfg = lora.Config(model="gpt2", seq=128, precision="fp32")
    path = next(Path("profiles").glob("*/lora-train-modelgpt2-*-seq128-sidefull.json"), None)
    if path is None:
        pytest.skip("no recorded gpt2 seq-128 full fine-tuning profile")
    doc = json.loads(path.read_text())
    per_token = model_flops.model_flops_per_token(cfg.spec, 128)
    # MFU = 6·N + 12·L·d·T per token, times B·n tokens, over the median step, over the peak
    mfu = per_token * 128 / doc["median_s"] / doc["ceilings"]["peak"]["fp32"]
    assert model_flops.mfu_note(cfg, per_token).startswith(f"MFU {mfu:.1%}")


def test_without_a_recorded_profile_mfu_says_how_to_get_one():
    cfg = lora.Config(model="gpt2", seq=7)
    per_token = model_flops.model_flops_per_token(cfg.spec, 7)
    assert "complexo profile lora" in model_flops.mfu_note(cfg, per_token)
