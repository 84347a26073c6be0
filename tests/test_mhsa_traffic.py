"""The attention core's device-memory traffic, forward and backward, against the FlashAttention
paper's Figure 2 (GPT-2 medium on an A100: n = 1024, d/h = 64, h = 16, B = 64, fp16, causal):
HBM reads and writes 40.3 GB for standard attention and 4.4 GB for FlashAttention, and the
GFLOPs as its author later corrected them (Dao-AILab/flash-attention issue #741: 4·n²·(d/h)·h·B
= 275 GFLOP forward; backward 2× for standard, 2.5× for FlashAttention: 825 and 963 GFLOP)."""

from __future__ import annotations

from complexo.analyses import mhsa
from complexo.cost import Kind

GPT2_MEDIUM = dict(batch=64, seq=1024, dim=1024, heads=16, dtype="fp16", causal=True)


def _core(impl):
    r = mhsa.analyse(mhsa.Config(impl=impl, **GPT2_MEDIUM))
    core = ("scores", "attn_v", "scores_recompute")
    terms = r.model.terms((Kind.FORWARD, Kind.BACKWARD), matmul_only=True)
    flops = sum(int(t.expr.subs(r.values)) for t in terms if t.name in core)
    hbm = r.quantity("attention_hbm_bytes").value
    return flops, hbm, r.quantity("attention_hbm_backward_bytes").value


def test_standard_attention_forward_and_backward_traffic():
    """Per head, n = 1024, d/h = 64, 2 bytes, B·h = 1024 heads. Forward (Algorithm 0):
    4·n² + 4·n·64 = 4,456,448 elements; backward (Algorithm 3): P, dP, dS written or read seven
    times, 7·n² = 7,340,032, and dO twice, V, K, Q once, dV, dQ, dK written, 8·n·64 = 524,288:
    7,864,320. Bytes: ×2×1024: 9,126,805,504 and 16,106,127,360, 25.2 GB in all. The paper
    measured 40.3 GB of its PyTorch GPT-2, 15.1 GB more: 7.0 matrices of B·h·n²·2 = 2.15 GB,
    its mask and dropout as passes of their own (each read and written, forward and backward),
    which this count of the attention core leaves out."""
    flops, fwd, bwd = _core("naive")
    assert (fwd, bwd) == (9_126_805_504, 16_106_127_360)
    assert round((40.3e9 - fwd - bwd) / (64 * 16 * 1024**2 * 2), 1) == 7.0
    # Q·Kᵀ and A·V: 4·n²·64·16·64 = 274,877,906,944 forward, twice that backward
    assert flops == 3 * 274_877_906_944  # 825 GFLOP, the corrected figure


def test_flash_attention_forward_and_backward_traffic():
    """On-chip memory M = 192 KiB: blocks of B_c = ⌈196,608/(4·64·2)⌉ = 384 keys, so
    T_c = ⌈1024/384⌉ = 3 outer passes. Forward: O initialised n·64, K and V 2·n·64, Q, O read
    and O written per pass 3·3·n·64: 786,432 elements ×2 = 1,572,864 bytes, and fp32 l, m
    4·(2·n + 3·4·n) = 57,344: 1,630,208 per head. Backward: dQ = 0 written n·64, K, V read and
    dK, dV written 4·n·64, Q, O, dO, dQ read and dQ written per pass 3·5·n·64: 1,310,720
    elements ×2 = 2,621,440, and l, m read per pass 4·3·2·n = 24,576: 2,646,016 per head.
    ×1024 heads: 1,669,332,992 + 2,709,520,384 = 4.38 GB, the paper's 4.4 GB."""
    flops, fwd, bwd = _core("flash")
    assert (fwd, bwd) == (1_669_332_992, 2_709_520_384)
    assert round((fwd + bwd) / 1e9, 1) == 4.4
    # the backward recomputes Q·Kᵀ: 2.5× the forward's 274,877,906,944, 963 GFLOP in all
    assert flops == 274_877_906_944 * 35 // 10
    standard_flops, standard_fwd, standard_bwd = _core("naive")
    # fewer bytes by 5.8× (the paper's measured 9.2×), more FLOPs by 963/825 = 1.17×
    assert round((standard_fwd + standard_bwd) / (fwd + bwd), 1) == 5.8
    assert round(flops / standard_flops, 2) == 1.17
