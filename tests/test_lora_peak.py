"""LoRA's and full fine-tuning's training step as it really peaks (complexo/analyses/lora_peak.py)
against what the code did not compute from the ledger: torch's MemTracker under FakeTensorMode
(any size) and the CPU profiler's record of a real step (small sizes). Conventions: bytes of
tensor storages; a steady step (the optimizer's moments and step counts and the fp32 masters
given, gradients let go), ``out.sum().backward()`` with ``out`` held, then the optimizer."""

from __future__ import annotations

import time

import pytest
import torch

from complexo.analyses import lora_peak
from complexo.analyses.lora import Config, analyse
from complexo.analyses.lora_measure import build
from complexo.peak import cpu_step_peak, peak

TINY = dict(arch="gpt2", dim=32, heads=4, vocab=50, ctx=16, mlp=64, rank=2, batch=2, seq=16)


def _peak(cfg, side):
    return peak(lora_peak.ledger(cfg, side).moments, cfg.values)


def _agree(cfg, side):
    """Every phase's high-water mark of the ledger is MemTracker's, to the byte; both records
    (test_lora_peak_llama and the checkpointing tests hold their ledgers to the same)."""
    best, tracked = _peak(cfg, side), lora_peak.tracked(cfg, side)
    assert (best.bytes, best.phase) == (tracked.bytes, tracked.phase)
    ours, theirs = best.phase_peaks(), tracked.phase_peaks()
    assert {k: theirs[k] for k in ours} == ours  # SGD: no optimizer moment in the ledger
    return best, tracked


def test_one_adapted_layer_peaks_in_adams_step_on_its_masters():
    """in 8, out 12, B 2, n 4, r 2, bf16-mixed, AdamW. Given: weights (8·12 + 12 + 2·8 + 12·2)
    ·2 = 296, x 2·4·8·2 = 128, fp32 masters (16 + 24)·4 = 160, moments 2·160 = 320, two step
    counts 8: 912. After the backward: the output 2·4·12·2 = 192 and x.grad 128; the 16-bit
    gradients are cast up (master gradients 160) and let go; at B's step: A's denominator
    16·4 = 64 and B's √v and √v / c₂ 2·24·4 = 192: 912 + 192 + 128 + 160 + 256 = 1648."""
    cfg = Config(in_features=8, out_features=12, batch=2, seq=4, rank=2)
    best, _ = _agree(cfg, "lora")
    assert (best.bytes, best.phase) == (1648, "optimizer")
    assert best.what.startswith("Adam's step")


@pytest.mark.parametrize("side", ["full", "lora"])
@pytest.mark.parametrize("precision", ["fp32", "bf16-mixed"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_one_layer_every_precision_and_optimizer(side, precision, optimizer):
    cfg = Config(in_features=8, out_features=12, batch=2, seq=4, rank=2)
    from dataclasses import replace

    _agree(replace(cfg, precision=precision, optimizer=optimizer), side)


VARIANTS = [
    dict(layers=2),
    dict(layers=1, batch=1),
    dict(layers=3, targets=("q", "k", "v", "o", "mlp")),
    dict(layers=2, targets=("o",)),  # layer 1's attention needs no gradient at all
    dict(layers=2, targets=("mlp",)),
    dict(layers=2, targets=("k",), kv_heads=2),  # k, v repeated to h heads, summed back
    dict(layers=2, kv_heads=1),
    dict(layers=7, kv_heads=2, precision="fp16-mixed", optimizer="adam"),  # 3 .. 5 lumped
    dict(layers=8, precision="fp32", optimizer="sgd"),
]


@pytest.mark.parametrize("side", ["full", "lora"])
@pytest.mark.parametrize(
    "variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items())
)
def test_small_models_peak_where_memtracker_says(side, variant):
    _agree(Config(**{**TINY, **variant}), side)


def test_a_deep_model_is_written_as_four_layers_and_a_lump():
    """Past five layers, layers 3 .. L − 2 are one lump (tested against MemTracker above at 7
    and 8 layers): 40 layers have as many moments as 6."""
    deep = lora_peak.ledger(Config(**TINY, layers=40), "full")
    assert len(deep.moments) == len(lora_peak.ledger(Config(**TINY, layers=6), "full").moments)


@pytest.mark.slow  # MemTracker over GPT-2's twelve layers, four times: about 6 s here
@pytest.mark.parametrize("side", ["full", "lora"])
@pytest.mark.parametrize(("precision", "optimizer"), [("bf16-mixed", "adamw"), ("fp32", "sgd")])
def test_gpt2_at_its_real_size(side, precision, optimizer):
    """GPT-2 (124 M), n = 1024: full fine-tuning under bf16-mixed AdamW peaks in the optimizer
    (Adam's temporaries on the fp32 masters of wte, V·d), LoRA in the backward, at the
    log-softmax's gradient (two (B·n, V) tensors beside the saved activations)."""
    cfg = Config(model="gpt2", precision=precision, optimizer=optimizer)
    best, _ = _agree(cfg, side)
    if precision == "bf16-mixed":
        assert best.phase == ("optimizer" if side == "full" else "backward")


def test_gpt3_175b_lora_under_fake_tensors_and_its_ledger_in_well_under_a_second():
    cfg = Config(model="gpt3-175b")
    start = time.perf_counter()
    for side in ("full", "lora"):
        _peak(cfg, side)
    assert time.perf_counter() - start < 1.0
    _agree(cfg, "lora")


def test_gpt3_175b_ledgers_take_well_under_a_second():
    cfg = Config(model="gpt3-175b")
    start = time.perf_counter()
    full, lora = _peak(cfg, "full"), _peak(cfg, "lora")
    assert time.perf_counter() - start < 1.0
    assert lora.bytes < full.bytes


def _cpu(cfg, side):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        module, inputs = build(cfg, side, device="cpu")
        return cpu_step_peak(module, inputs, cfg.optimizer, master_fp32=cfg.master_fp32)
    finally:
        torch.set_num_threads(threads)


def test_a_tiny_model_on_the_cpu():
    """fp32, SGD, 2 layers: full fine-tuning to the byte; LoRA 32 bytes more: each of its four
    adapters (q and v, two layers) multiplies by α/r, a Python scalar that mul saves for its
    backward as a 0-dim fp64 tensor (8 bytes), which MemTracker does not see."""
    cfg = Config(**TINY, layers=2, precision="fp32", optimizer="sgd")
    assert _cpu(cfg, "full") == _peak(cfg, "full").bytes
    assert _cpu(cfg, "lora") - _peak(cfg, "lora").bytes == 4 * 8


def _avx512_bf16() -> bool:
    return (
        torch.backends.cpu.get_cpu_capability() == "AVX512"
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def _linear_scratch(rows: int, k: int, n: int, dtype) -> int:
    """What a real F.linear of (rows, k) by a (n, k) weight holds beyond its output while it
    runs on the CPU, one thread: its kernel's scratch (the profiler's allocation record)."""
    from complexo.peak import cpu_live_peak

    x, w, b = (torch.randn(*s, dtype=dtype) for s in ((rows, k), (n, k), (n,)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return cpu_live_peak(lambda: torch.nn.functional.linear(x, w, b)) - rows * n * 2
    finally:
        torch.set_num_threads(threads)


def test_a_tiny_model_in_mixed_precision_on_the_cpu():
    """bf16-mixed AdamW: full fine-tuning peaks in Adam's step, 12 bytes above the ledger (the
    0-dim tensors of the step's scalar arithmetic, which fake tensors do not allocate). LoRA's
    CPU step peaks in the forward, not at the ledger's log_softmax backward (94,758): at layer
    2's fc_out (aten::addmm on B·n = 32 rows, 64 -> 32 features), whose bf16 kernel allocates
    a scratch inside the op (no storage an op returns shows it), read here off a lone
    F.linear of that shape, beside the ledger's 91,168 at that moment and the four adapters'
    α/r scalars (4·8): 91,168 + 32 + scratch, 9,754 bytes above the ledger where the scratch
    is 13,312 (oneDNN's bf16 matmul on AVX-512: test_bf16_matmul_scratch_on_avx512)."""
    cfg = Config(**TINY, layers=2)
    assert _cpu(cfg, "full") - _peak(cfg, "full").bytes == 12
    best = _peak(cfg, "lora")
    at_fc_out = [b for _, what, b in best.timeline if what == "layer 2 fc_out: x·Wᵀ"]
    assert at_fc_out == [91_168]
    scratch = _linear_scratch(2 * 16, 64, 32, torch.bfloat16)
    cpu = _cpu(cfg, "lora")
    assert cpu >= 91_168 + 4 * 8 + scratch  # held at fc_out, whatever the kernel's scratch
    if scratch > best.bytes - 91_168:  # the scratch moves the CPU's peak into the forward
        assert cpu == 91_168 + 4 * 8 + scratch
    if _avx512_bf16():
        assert (scratch, cpu - best.bytes) == (13_312, 9_754)


@pytest.mark.skipif(not _avx512_bf16(), reason="oneDNN's bf16 kernels differ by instruction set")
@pytest.mark.parametrize(
    "rows,k,n", [(32, 32, 32), (32, 32, 64), (32, 64, 32), (32, 32, 50), (64, 32, 32), (16, 32, 32)]
)
def test_bf16_matmul_scratch_on_avx512(rows, k, n):
    """oneDNN's bf16 matmul (aten::addmm on the CPU) allocates a scratch inside the op: for
    rows, n ≤ 64 (one block) an fp32 accumulator 4·rows·n, the weight's panel of k rows by 64
    columns in bf16 2·64·k, and 1 KiB: the tiny model's fc_out (32, 64, 32): 4·32·32 +
    2·64·64 + 1024 = 4096 + 8192 + 1024 = 13,312."""
    assert _linear_scratch(rows, k, n, torch.bfloat16) == 4 * rows * n + 2 * 64 * k + 1024


def test_lora_shows_each_sides_peak_with_memtrackers_reading():
    cmp = analyse(Config(**TINY, layers=2))
    for side in ("full", "lora"):
        q = cmp.sides[side].quantity("training_peak_bytes")
        assert q.value == q.measured["torch"] == _peak(Config(**TINY, layers=2), side).bytes
    assert any(x.startswith("lora: training step's peak:") for x in cmp.notes)


# CI runs one config per architecture (about 3 s each: MemTracker over 12 layers); the others
# with the slow tests
SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    ("arch", "side", "precision", "optimizer"),
    [
        ("gpt2", "full", "bf16-mixed", "adamw"),
        ("llama", "lora", "bf16-mixed", "adamw"),
        pytest.param("gpt2", "lora", "bf16-mixed", "adamw", marks=SLOW),
        pytest.param("gpt2", "full", "fp32", "sgd", marks=SLOW),
        pytest.param("llama", "full", "bf16-mixed", "adamw", marks=SLOW),
        pytest.param("llama", "full", "fp32", "sgd", marks=SLOW),
    ],
)
def test_a_deep_models_memtracker_read_off_two_and_three_layers_is_every_layers(
    arch, side, precision, optimizer
):
    """MemTracker at full depth (12 layers of width 64, GPT-2- or LLaMA-style) against the
    same step read off its 2- and 3-layer copies, phase by phase (complexo.deeper): the same bytes,
    phase and per-phase peaks, and the same peak by kind. The ledger is not consulted."""
    from dataclasses import replace

    shape = {**TINY, "arch": arch, "layers": 12, "dim": 64}
    cfg = Config(**shape, precision=precision, optimizer=optimizer)
    read = lora_peak.tracked(cfg, side)
    every = lora_peak.tracked(replace(cfg, full_depth=True), side)
    assert read.depth == (2, 3) and every.depth == ()
    assert (read.bytes, read.phase) == (every.bytes, every.phase)
    assert read.phase_peaks() == every.phase_peaks()
    assert read.by_kind == every.by_kind
