"""Cross-attention (mhsa --kv-seq m [--kv-dim d_c]): hand-derived numbers at Stable Diffusion's
sizes, a grouped-query and a fused case, the reference block against nn.MultiheadAttention, and
the refusals. The hypothesis properties of test_mhsa.py draw cross configs too."""

from collections import Counter
from fractions import Fraction

import pytest
import torch
from helpers import assert_one_line_error, runner

from complexo.analyses.mhsa import PROFILING, Config, _traffic, analyse, build
from complexo.cli import app
from complexo.cost import Kind, evaluate
from complexo.symbols import m

# Stable Diffusion 1.x, first down block's cross-attention: 64×64 latents (n = 4096) of width
# d = 320 in 8 heads (d/h = 40) attend to CLIP's 77 text tokens of width d_c = 768; fp16, e = 2.
SD = Config(batch=1, seq=4096, dim=320, heads=8, kv_seq=77, kv_dim=768, dtype="fp16")


def test_stable_diffusion_cross_attention_by_hand():
    r = analyse(SD)
    q = r.quantities
    # q_proj and out_proj: 2·n·d² = 2·4096·320² = 838,860,800 each
    # k_proj and v_proj: 2·m·d_c·d = 2·77·768·320 = 37,847,040 each
    # scores and A·V: 2·h·n·m·(d/h) = 2·4096·77·320 = 201,850,880 each
    assert q["forward_matmul_flops"].value == 2 * 838_860_800 + 2 * 37_847_040 + 2 * 201_850_880
    assert q["forward_matmul_flops"].value == 2_157_117_440
    # both counters see every matmul of the explicit implementation
    assert q["forward_matmul_flops"].measured == {"fvcore": 2_157_117_440, "torch": 2_157_117_440}
    # W_q, W_o: 320² = 102,400 each; W_k, W_v: 768·320 = 245,760 each; biases 4·320 = 1,280
    assert q["params"].value == 2 * 102_400 + 2 * 245_760 + 1_280 == 697_600
    # the n×m probabilities: h·n·m·e = 8·4096·77·2 = 5,046,272 bytes (n×n would be 268 MB)
    assert q["attention_matrix_bytes"].value == 8 * 4096 * 77 * 2 == 5_046_272
    assert q["attention_matrix_bytes"].measured["torch"] == 5_046_272
    # the context's k and v, computed once per sample: 2·m·d·e = 2·77·320·2 = 98,560 bytes
    assert q["kv_bytes"].value == q["kv_bytes"].measured["torch"] == 98_560
    # saved: x, q, heads_out 4096·320·2 = 2,621,440 each; context 77·768·2 = 118,272;
    # k, v 77·320·2 = 49,280 each; probabilities 5,046,272
    saved = 3 * 2_621_440 + 118_272 + 2 * 49_280 + 5_046_272
    assert q["activation_bytes"].value == q["activation_bytes"].measured["torch"] == saved
    # scores and A·V (4·n·m·d) overtake the four projections (4·n·d² + 4·m·d_c·d) at
    # m = n·d²/(n·d − d_c·d) = 4096·320/(4096 − 768) = 1,310,720/3,328 = 5120/13 ≈ 394 tokens
    first = r.summary.crossovers[0]
    assert (first.symbol, first.value) == (m, Fraction(5120, 13))
    assert any("once per sample" in note for note in r.notes)


def test_grouped_query_cross_attention_by_hand():
    cfg = Config(batch=2, seq=64, dim=64, heads=8, kv_heads=2, kv_seq=16, kv_dim=48)
    q = analyse(cfg).quantities
    # k and v of G·d/h = 2·8 = 16 wide, from d_c = 48: 2·B·m·d_c·16 = 2·2·16·48·16 = 49,152 each
    model, values = cfg.model(), cfg.values
    assert evaluate(model.term(Kind.FORWARD, "k_proj").expr, values) == 49_152
    # W_q, W_o 64² = 4,096 each; W_k, W_v 48·16 = 768 each; biases 2·64 + 2·16 = 160
    assert q["params"].value == q["params"].measured["torch"] == 2 * 4_096 + 2 * 768 + 160
    # cache: 2·B·m·16·e = 2·2·16·16·4 = 4,096 bytes, 2/8 of MHSA's 2·2·16·64·4 = 16,384
    assert q["kv_bytes"].value == q["kv_bytes"].measured["torch"] == 4_096
    # scores and A·V unchanged by G: 2·B·h·n·m·(d/h) = 2·2·64·16·64 = 262,144 each; projections
    # q, out 2·B·n·d² = 2·2·64·64² = 1,048,576 each
    matmuls = 2 * 262_144 + 2 * 1_048_576 + 2 * 49_152
    assert q["forward_matmul_flops"].value == matmuls
    assert q["forward_matmul_flops"].measured == {"fvcore": matmuls, "torch": matmuls}
    # saved: x, q, heads_out B·n·d·e = 2·64·64·4 = 32,768 each; context 2·16·48·4 = 6,144;
    # k, v repeated to h heads 2·16·64·4 = 8,192 each; probabilities B·h·n·m·e = 2·8·64·16·4
    saved = 3 * 32_768 + 6_144 + 2 * 8_192 + 65_536
    assert q["activation_bytes"].value == q["activation_bytes"].measured["torch"] == saved


def test_fused_cross_attention_by_hand():
    cfg = Config(batch=1, seq=256, dim=64, heads=4, kv_seq=32, impl="flash")
    r = analyse(cfg)
    q = r.quantities
    # saved, fp32: x, q, SDPA's output 256·64·4 = 65,536 each; context, k, v 32·64·4 = 8,192
    # each; log-sum-exp h·n·4 = 4·256·4 = 4,096
    saved = 3 * 65_536 + 3 * 8_192 + 4_096
    assert q["activation_bytes"].value == q["activation_bytes"].measured["torch"] == saved
    assert q["attention_matrix_bytes"].value == 0
    # tiled: d/h = 16, B_c = ⌈196,608/(4·16·4)⌉ = 768 keys, so T_c = ⌈32/768⌉ = 1 pass; per head
    # (n·hs + 2·m·hs + 3·n·hs)·e = (4,096 + 1,024 + 12,288)·4 = 69,632, l and m 4·(2·256 +
    # 4·256) = 6,144; × 4 heads
    assert q["attention_hbm_bytes"].value == 4 * (69_632 + 6_144) == 303_104
    # standard, per head (2·n·hs + 2·m·hs + 4·n·m)·e = (8,192 + 1,024 + 32,768)·4 = 167,936
    assert evaluate(_traffic(False, m), cfg.values) == 4 * 167_936 == 671_744
    # FlopCounterMode with torch's own SDPA formulas agrees with the matmul terms
    assert any("equal to the formula's matmul terms" in note for note in r.notes)


@pytest.mark.parametrize("impl", ["naive", "sdpa"])
def test_cross_block_matches_nn_multiheadattention(impl):
    torch.manual_seed(0)
    cfg = Config(batch=2, seq=7, dim=12, heads=3, kv_seq=5, kv_dim=10, impl=impl)
    block, (x, c) = build(cfg, device="cpu")
    block, x, c = block.double(), x.detach().double(), c.detach().double()
    mha = torch.nn.MultiheadAttention(12, 3, kdim=10, vdim=10, batch_first=True).double()
    with torch.no_grad():
        mha.q_proj_weight.copy_(block.q_proj.weight)
        mha.k_proj_weight.copy_(block.k_proj.weight)  # (d, d_c) = (12, 10)
        mha.v_proj_weight.copy_(block.v_proj.weight)
        mha.in_proj_bias.copy_(torch.cat([block.q_proj.bias, block.k_proj.bias, block.v_proj.bias]))
        mha.out_proj.weight.copy_(block.out_proj.weight)
        mha.out_proj.bias.copy_(block.out_proj.bias)
    expected, _ = mha(x, c, c, need_weights=False)
    torch.testing.assert_close(block(x, c), expected)


def test_profile_rows_partition_the_cross_steps_terms():
    for cfg in (SD, Config(seq=64, dim=64, heads=4, kv_seq=9, kv_heads=2, impl="sdpa")):
        for mode in PROFILING.modes:
            step = Counter((t.kind, t.name) for t in PROFILING.step(cfg.model(), mode))
            rows = PROFILING.rows(cfg, mode, "")
            assert Counter(k for r in rows if r.step for k in r.terms) == step, mode


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--causal"], "--causal does not apply to cross-attention (--kv-seq)"),
        (["--window", "8"], "--window does not apply to cross-attention (--kv-seq)"),
        (["--alibi"], "--alibi does not apply to cross-attention (--kv-seq)"),
        (["--kv-seq", "0"], "--kv-seq must be a positive integer"),
    ],
)
def test_cross_refusals_are_one_line(args, message):
    cross = ["mhsa", "--seq", "64", "--dim", "64", "--heads", "4", "--kv-seq", "9"]
    assert_one_line_error(runner.invoke(app, [*cross, *args]), message)


def test_kv_dim_needs_kv_seq():
    result = runner.invoke(app, ["mhsa", "--seq", "64", "--dim", "64", "--kv-dim", "32"])
    assert_one_line_error(result, "--kv-dim is the context's width: it needs --kv-seq")


@pytest.mark.parametrize(
    "cfg",
    [
        Config(batch=2, seq=9, dim=12, heads=3, kv_seq=5, kv_dim=10),  # m < n
        Config(batch=1, seq=4, dim=8, heads=4, kv_seq=11, kv_heads=2, dtype="bf16"),  # m > n
        Config(batch=2, seq=9, dim=12, heads=3, kv_seq=5, kv_dim=10, impl="sdpa"),
    ],
)
def test_forward_peak_is_what_the_cross_block_allocates_on_cpu(cfg):
    """As test_mhsa's property: the stage-by-stage peak, over n×m scores and m keys, within the
    8-byte fp64 scalar of the explicit scale."""
    from complexo.analyses.mhsa import forward_peak
    from complexo.measure import cpu_peak_bytes

    block, inputs = build(cfg, device="cpu")
    inputs = [t.detach() for t in inputs]

    def forward():
        with torch.no_grad():
            block(*inputs)

    forward()
    measured = cpu_peak_bytes(forward)
    assert forward_peak(cfg) <= measured <= forward_peak(cfg) + (0 if cfg.fused else 8)
