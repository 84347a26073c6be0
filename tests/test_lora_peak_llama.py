"""LLaMA-style models' training steps as they really peak (complexo/analyses/lora_peak_llama.py:
RMSNorm written out, rotary positions, SwiGLU, no biases, grouped-query attention, an untied
head) against what the code did not compute from the ledger: torch's MemTracker under
FakeTensorMode (any size) and the CPU profiler's record of a real step (small sizes).
Conventions: bytes of tensor storages; a steady step (the optimizer's moments and step counts
and the fp32 masters given), ``out.sum().backward()`` with ``out`` held, then the optimizer."""

from __future__ import annotations

import time

import pytest
import torch
from test_lora_peak import _agree, _peak  # the ledger's peak, and its agreement with MemTracker

from complexo.analyses import lora_peak
from complexo.analyses.lora import Config, analyse
from complexo.analyses.lora_measure import build
from complexo.peak import cpu_step_peak

TINY = dict(arch="llama", dim=32, heads=4, vocab=50, ctx=16, mlp=64, rank=2, batch=2, seq=16)


def test_one_llama_layer_by_hand():
    """L=1, d=16, h=2, V=10, n=8, B=2, f=24, fp32 (e=4), SGD, full fine-tuning: X = 2·8·16·4 =
    1,024, F = 2·8·24·4 = 1,536. Given: parameters (wte 160 + norms 2·16 + q, k, v, o 4·256 +
    gate, up, down 3·384 + norm_f 16 + the untied head 160)·4 = 10,176, ids and targets
    2·2·8·8 = 256: 10,432. The step peaks in the final RMSNorm's x² backward, its three
    B·n·d tensors at once (x¹, 2·x¹, their product with d(x²)) beside d(x²) and the × 1/rms
    part of its input's gradient, 5·X = 5,120, the head's dW 10·16·4 = 640 and the norm's dw
    64, while the layer keeps what its backward needs: x and the tables cos, sin 2·8·8·4 =
    512, norm1's 1/rms 2·8·4 = 64, x/rms and its output 2·X, q, k, v after rotation 3·X, SDPA's
    output X and fp32 log-sum-exp 4·2·2·8 = 128, x₁, norm2's 1/rms 64, x/rms and output 2·X,
    gate, SiLU, up and their product 4·F, and the layer's output X (kept by the final norm);
    the loss, its total weight and out.sum() 12."""
    sizes = dict(arch="llama", layers=1, dim=16, heads=2, vocab=10, ctx=8, mlp=24, batch=2, seq=8)
    cfg = Config(**sizes, precision="fp32", optimizer="sgd")
    X, F = 1024, 1536
    kept = X + 512 + 64 + 2 * X + 3 * X + X + 128 + X + 64 + 2 * X + 4 * F + X
    expected = 10432 + kept + 12 + 640 + 64 + 5 * X
    best, _ = _agree(cfg, "full")
    assert best.bytes == expected == 34444
    assert (best.phase, best.what) == ("backward", "final norm: x²'s backward: d(x²)·2·x")


VARIANTS = [
    dict(layers=1),
    dict(layers=2),
    dict(layers=3, targets=("q", "k", "v", "o", "mlp")),
    dict(layers=2, targets=("o",)),  # layer 1's attention needs no gradient at all
    dict(layers=2, targets=("mlp",)),
    dict(layers=3, targets=("v",), seq=8),  # q and k need none: no rotation to undo
    dict(layers=2, targets=("k",), kv_heads=2),  # k, v repeated to h heads, summed back
    dict(layers=2, kv_heads=1),  # one k, v head: its gradient needs no contiguous copy
    dict(layers=7, kv_heads=2, precision="fp16-mixed", optimizer="adam"),  # 3 .. 5 lumped
    dict(layers=8, precision="fp32", optimizer="sgd"),
    dict(layers=6, precision="fp32", optimizer="adamw"),
]


@pytest.mark.parametrize("side", ["full", "lora"])
@pytest.mark.parametrize(
    "variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items())
)
def test_small_llamas_peak_where_memtracker_says(side, variant):
    _agree(Config(**{**TINY, **variant}), side)


def test_llama_7b_at_its_context_under_fake_tensors():
    """LLaMA-7B, n = 2048, B = 1, bf16-mixed AdamW: LoRA (q, v, r = 8) peaks in the backward at
    the log-softmax's gradient, full fine-tuning in Adam's step (its fp32 masters, moments and
    temporaries beside the 16-bit weights); both to the byte."""
    cfg = Config(model="llama-7b")
    lora, _ = _agree(cfg, "lora")
    assert (lora.bytes, lora.phase) == (22_027_215_366, "backward")
    full, _ = _agree(cfg, "full")
    assert (full.bytes, full.phase) == (122_340_107_406, "optimizer")


def test_llama_2_70b_ledgers_take_well_under_a_second():
    """80 layers are written as four and a lump, so the 70B model costs what 5 layers do."""
    cfg = Config(model="llama-2-70b")
    start = time.perf_counter()
    full, lora = _peak(cfg, "full"), _peak(cfg, "lora")
    assert time.perf_counter() - start < 1.0
    assert lora.bytes < full.bytes
    deep = lora_peak.ledger(Config(**TINY, layers=40), "full")
    assert len(deep.moments) == len(lora_peak.ledger(Config(**TINY, layers=6), "full").moments)


def _cpu(cfg, side):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        module, inputs = build(cfg, side, device="cpu")
        return cpu_step_peak(module, inputs, cfg.optimizer, master_fp32=cfg.master_fp32)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("kv_heads", [None, 2])
def test_a_tiny_llama_on_the_cpu(kv_heads):
    """fp32, SGD, 2 layers: full fine-tuning to the byte (the rotary tables, RMSNorm's ops and
    SDPA's CPU kernel allocate what fake tensors do); LoRA 32 bytes more: each of its four
    adapters (q and v, two layers) multiplies by α/r, a Python scalar that mul saves for its
    backward as a 0-dim fp64 tensor (8 bytes), which MemTracker does not see."""
    cfg = Config(**TINY, layers=2, kv_heads=kv_heads, precision="fp32", optimizer="sgd")
    assert _cpu(cfg, "full") == _peak(cfg, "full").bytes
    assert _cpu(cfg, "lora") - _peak(cfg, "lora").bytes == 4 * 8


def test_a_tiny_llama_in_mixed_precision_on_the_cpu():
    """bf16-mixed AdamW, 2 layers: full fine-tuning peaks in Adam's step, 12 bytes above the
    ledger (the 0-dim tensors of the step's scalar arithmetic, which fake tensors do not
    allocate). LoRA's CPU step peaks in the forward instead, at layer 2's down_proj (B·n = 32
    rows, f = 64 -> d = 32 features): the ledger's 117,024 at that moment, the four adapters'
    α/r scalars 4·8 and the scratch the CPU's bf16 matrix product allocates inside the op (no
    storage an op returns), read off a lone F.linear of that shape. On AVX-512 the scratch is
    oneDNN's one-block formula (test_lora_peak.test_bf16_matmul_scratch_on_avx512):
    4·32·32 + 2·64·64 + 1024 = 4096 + 8192 + 1024 = 13,312, so the CPU holds
    117,024 + 32 + 13,312 = 130,368, 7,194 bytes (5.8%) above the ledger's backward peak
    (123,174); the gap is this one op's scratch minus the backward's margin over that moment."""
    from test_lora_peak import _avx512_bf16, _linear_scratch

    cfg = Config(**TINY, layers=2)
    assert _cpu(cfg, "full") - _peak(cfg, "full").bytes == 12
    best = _peak(cfg, "lora")
    at_down = [b for _, what, b in best.timeline if what == "layer 2 down_proj: x·Wᵀ"]
    assert at_down == [117_024]
    scratch = _linear_scratch(2 * 16, 64, 32, torch.bfloat16)
    cpu = _cpu(cfg, "lora")
    assert cpu >= 117_024 + 4 * 8 + scratch  # held at down_proj, whatever the kernel's scratch
    if scratch > best.bytes - 117_024 - 4 * 8:  # the scratch moves the CPU's peak forward
        assert cpu == 117_024 + 4 * 8 + scratch
    if _avx512_bf16():
        assert (scratch, best.bytes, cpu - best.bytes) == (13_312, 123_174, 7_194)


def test_lora_shows_a_llamas_peak_with_memtrackers_reading():
    cfg = Config(arch="llama", layers=1, dim=8, heads=2, vocab=11, ctx=8, mlp=12)
    cmp = analyse(cfg)
    for side in ("full", "lora"):
        q = cmp.sides[side].quantity("training_peak_bytes")
        assert q.value == q.measured["torch"] == _peak(cfg, side).bytes
    assert any(x.startswith("lora: training step's peak:") for x in cmp.notes)
