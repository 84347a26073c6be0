"""One normalisation layer: hand-derived values for every kind, the reference modules against
torch's (outputs, running statistics, the biased and unbiased variances), and every formula
against what the code did not compute from it (FlopCounterMode, fvcore, autograd's saved tensors,
parameters, buffers, the bytes each call reads and writes), across random tiny configs."""

import json

import pytest
import torch
from helpers import assert_one_line_error, runner
from hypothesis import given, settings

from complexo.analyses import norm
from complexo.blocks import norm as ref
from complexo.cli import app
from complexo.errors import ComplexoError


def values(r) -> dict[str, int]:
    return {q.name: q.value for q in r.quantities}


def image(kind: str, **kw):
    return norm.Config(kind=kind, layout="image", batch=2, channels=4, res=5, **kw)


# --- hand-derived values ---------------------------------------------------------------------


def test_layernorm_over_tokens_fp32():
    r = norm.analyse(norm.Config(kind="layernorm", batch=2, seq=3, dim=8))
    # N = B·n·d = 48 elements, S = B·n = 6 groups
    assert values(r) == {
        # 7 per element + 4 per group: 7·48 + 4·6 = 336 + 24
        "forward_flops": 360,
        # 13 per element + 2 per group: 13·48 + 2·6 = 624 + 12
        "backward_flops": 636,
        # γ, β: 2·d = 16
        "params": 16,
        "buffer_bytes": 0,
        # x: N·e = 48·4 = 192; fp32 μ, 1/σ: 2·S·4 = 48
        "activation_bytes": 240,
        # x − μ and x̂: 2·N·e = 384; 1/σ: S·e = 24
        "reference_saved_bytes": 408,
        # (x + y: 2·N + γ, β: 2·d)·e = (96 + 16)·4
        "forward_moved_bytes": 448,
        # at the backward's one op: given x 192 + γ, β 64; y 192, μ and 1/σ 2·6·4 = 48, out.sum()
        # and its seed 8; dx 192, dγ, dβ 64
        "training_peak_bytes": 192 + 64 + 192 + 48 + 8 + 192 + 64,
    }
    fwd = r.quantity("forward_flops")
    # fvcore: 5 MACs = 10 FLOPs per element: 10·48 = 480, 120 more than the formula
    assert fwd.measured == {"fvcore": 480, "torch": 0}
    (fv,) = [g for g in fwd.gaps if g.counter == "fvcore"]
    assert (fv.op, fv.value) == ("aten::layer_norm", 360 - 480)
    (tg,) = [g for g in fwd.gaps if g.counter == "torch"]
    assert (tg.op, tg.reason, tg.value) == (
        "aten.native_layer_norm",
        "no FLOP formula for this op",
        360,
    )


def test_rmsnorm_over_tokens_bf16_keeps_fp32_copies():
    r = norm.analyse(norm.Config(kind="rmsnorm", batch=2, seq=3, dim=8, dtype="bf16"))
    # N = 48, S = 6
    assert values(r) == {
        # x² summed 2·48 + (÷ N, + ε, rsqrt) 3·6 + × 1/rms 48 + × γ 48 = 96 + 18 + 48 + 48
        "forward_flops": 210,
        # recompute 48 + dγ 96 + dx̂ 48 + Σ dx̂·x̂ 96 + dx 3·48 + ÷ N 6 = 438
        "backward_flops": 438,
        # γ: d = 8
        "params": 8,
        "buffer_bytes": 0,
        # fp32 whatever e: x 4·48 + 1/rms 4·6 + x̂ 4·48 = 192 + 24 + 192
        "activation_bytes": 408,
        # (x 48 + 1/rms 6 + x̂ 48)·2 = 204
        "reference_saved_bytes": 204,
        # (2·48 + 8)·2
        "forward_moved_bytes": 208,
        # at x²'s backward: given x 96 + γ 16; kept fp32 x 192, y 96, out.sum() and seed 4, dγ
        # 16 (1/rms freed by rsqrt's backward); fp32 dx̂·(1/rms) 192, d(x²) 192, and x¹, 2·x¹,
        # d(x²)·2·x: 3·192
        "training_peak_bytes": 96 + 16 + 192 + 96 + 4 + 16 + 192 + 192 + 3 * 192,
    }
    assert r.quantity("forward_flops").measured == {"fvcore": 0, "torch": 0}


def test_batchnorm_training_without_affine():
    r = norm.analyse(image("batchnorm", affine=False))
    # N = B·C·R² = 2·4·25 = 200, S = C = 4
    assert values(r) == {
        # (1 + 1 + 2 + 1)·200 + statistics 4·4 + running statistics 7·4 = 1000 + 16 + 28
        "forward_flops": 1044,
        # (2 + 3 + 4)·200 + 2·4 = 1808
        "backward_flops": 1808,
        "params": 0,
        # running μ̂, σ̂²: 2·C·e = 32; num_batches_tracked: 8
        "buffer_bytes": 40,
        # x: 200·4 = 800; fp32 μ, 1/σ: 2·4·4 = 32
        "activation_bytes": 832,
        # x − μ: 800; 1/σ: 4·4 = 16
        "reference_saved_bytes": 816,
        # (x + y: 400 + μ̂, σ̂²: 8)·4
        "forward_moved_bytes": 1632,
        # at the backward's op: given x 800 + buffers 40; y 800, μ and 1/σ 2·4·4 = 32, out.sum()
        # and its seed 8; dx 800
        "training_peak_bytes": 800 + 40 + 800 + 32 + 8 + 800,
    }
    # fvcore: 4 MACs = 8 FLOPs per element without γ: 8·200
    assert r.quantity("forward_flops").measured["fvcore"] == 1600


def test_batchnorm_inference_folds_its_statistics():
    r = norm.analyse(image("batchnorm", dtype="fp16", mode="eval"))
    # a = γ/√(σ̂² + ε), b = β − μ̂·a: 5 per channel, 5·4 = 20; x·a + b: 2·200 = 400
    assert values(r)["forward_flops"] == 420
    assert values(r)["backward_flops"] == values(r)["activation_bytes"] == 0
    # fvcore in inference: 2 MACs = 4 FLOPs per element with γ: 4·200
    assert r.quantity("forward_flops").measured["fvcore"] == 800
    # (x + y: 400 + γ, β: 8 + μ̂, σ̂²: 8)·2
    assert values(r)["forward_moved_bytes"] == 832


def test_groupnorm_keeps_its_statistics_in_the_input_dtype():
    r = norm.analyse(image("groupnorm", groups=2, dtype="bf16"))
    # N = 200, S = B·g = 4: 7·200 + 4·4
    assert values(r)["forward_flops"] == 1416
    # x: 200·2 = 400; μ, 1/σ in bf16: 2·4·2 = 16
    assert values(r)["activation_bytes"] == 416


def test_instancenorm_is_a_batchnorm_that_repeats_gamma():
    r = norm.analyse(image("instancenorm"))
    # S = B·C = 8; x: 800; fp32 μ, 1/σ: 2·8·4 = 64; γ repeated per sample: B·C·e = 32
    assert values(r)["activation_bytes"] == 896
    # 7·200 + 4·8
    assert values(r)["forward_flops"] == 1432


# --- the reference modules against torch's ----------------------------------------------------


def _pair(kind: str, c: int):
    nn = torch.nn
    return {
        "layernorm": (ref.LayerNorm((c, 5, 5)), nn.LayerNorm((c, 5, 5))),
        "rmsnorm": (ref.RMSNorm((c, 5, 5), 1e-6), nn.RMSNorm((c, 5, 5), 1e-6)),
        "batchnorm": (ref.BatchNorm(c), nn.BatchNorm2d(c)),
        "groupnorm": (ref.GroupNorm(c, 2), nn.GroupNorm(2, c)),
        "instancenorm": (ref.InstanceNorm(c), nn.InstanceNorm2d(c, affine=True)),
    }[kind]


@pytest.mark.parametrize("kind", norm.KINDS)
def test_each_reference_computes_what_torch_does(kind):
    torch.manual_seed(0)
    mine, theirs = (m.double() for m in _pair(kind, 4))
    with torch.no_grad():
        for m in (mine, theirs):  # the same non-trivial γ, β
            m.weight.copy_(torch.linspace(0.5, 1.5, m.weight.numel()).view_as(m.weight))
            if getattr(m, "bias", None) is not None:
                m.bias.copy_(torch.linspace(-1, 1, m.bias.numel()).view_as(m.bias))
    x = 3 * torch.randn(2, 4, 5, 5, dtype=torch.float64) + 1
    torch.testing.assert_close(mine(x), theirs(x))
    if kind == "batchnorm":
        torch.testing.assert_close(mine.running_var, theirs.running_var)
        mine.eval(), theirs.eval()
        torch.testing.assert_close(mine(x), theirs(x))


def test_batchnorm_normalises_biased_and_tracks_the_unbiased_variance():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    bn = torch.nn.BatchNorm2d(2, momentum=1.0).double()  # momentum 1: σ̂² is the batch's
    y = bn(x)
    count = 3 * 4 * 4  # N = B·R² = 48 values per channel
    biased = x.var(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(bn.running_var, biased * count / (count - 1))  # ÷ N − 1
    mu = x.mean(dim=(0, 2, 3), keepdim=True)
    expected = (x - mu) / torch.sqrt(biased.view(1, 2, 1, 1) + bn.eps)  # ÷ N
    torch.testing.assert_close(y, expected)


def test_layernorm_normalises_with_the_biased_variance():  # a seed note says unbiased: wrong
    x = torch.randn(4, 7, dtype=torch.float64)
    ln = torch.nn.LayerNorm(7, elementwise_affine=False).double()
    mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    torch.testing.assert_close(ln(x), (x - mu) / torch.sqrt(var + ln.eps))


# --- formulas against measurements -----------------------------------------------------------


@settings(max_examples=40)
@given(norm.examples())
def test_every_formula_equals_the_counters_or_its_gap_is_explained(cfg):
    r = norm.analyse(cfg)
    for q in r.quantities:
        for counter, reading in q.measured.items():
            if reading is None or reading == q.value:
                continue
            gaps = [g for g in q.gaps if g.counter == counter]
            assert gaps and all(g.reason != "unexplained" for g in gaps), q
            assert sum(g.value for g in gaps) == q.value - reading
    exact = ("params", "buffer_bytes", "activation_bytes", "reference_saved_bytes")
    for name in (*exact, "forward_moved_bytes"):
        q = r.quantity(name)
        assert q.measured["torch"] == q.value, (name, q.measured, q.value)
        assert q.measured["fvcore"] in (None, q.value), (name, q.measured, q.value)
    assert r.quantity("forward_flops").measured["torch"] == 0  # FlopCounterMode: no norm formulas


# --- the contract ----------------------------------------------------------------------------


def test_json_and_the_memory_bound_note():
    doc = norm.analyse(norm.Config(kind="rmsnorm", seq=16, dim=64)).to_json()
    json.dumps(doc)
    assert doc["analysis"] == "norm" == norm.ANALYSIS.name
    assert any(note.startswith("memory-bound:") for note in doc["notes"])
    for q in doc["quantities"].values():
        assert all(g["reason"] != "unexplained" for g in q["gaps"]), q


def test_the_command_takes_a_groupnorm():
    args = ["norm", "--kind", "groupnorm", "--channels", "8", "--res", "4", "--groups", "4"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    # N = B·C·R² = 8·8·16 = 1024 elements in B·g = 32 groups
    assert json.loads(result.stdout)["facts"]["shape"].startswith(
        "(B, C, R, R) = (8, 8, 4, 4): 1,024 elements in 32 groups of 32"
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kind": "groupnorm", "layout": "tokens"}, "use --layout image"),
        ({"kind": "batchnorm", "seq": 4}, "--seq sizes the tokens layout"),
        ({"kind": "layernorm", "res": 4}, "--res sizes the image layout"),
        ({"kind": "layernorm", "groups": 2}, "--groups applies to --kind groupnorm only"),
        ({"kind": "groupnorm", "channels": 6, "groups": 4}, "--groups 4 must divide --channels 6"),
        ({"kind": "batchnorm", "batch": 1, "res": 1}, "more than one value per channel"),
        ({"kind": "instancenorm", "res": 1, "mode": "eval"}, "--res must be at least 2"),
        ({"kind": "weightnorm"}, "unknown --kind 'weightnorm'"),
    ],
)
def test_bad_values_are_refused_in_one_line(values, message):
    with pytest.raises(ComplexoError) as err:
        norm.ANALYSIS.make(**values)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_command_refuses_a_tokens_groupnorm_in_one_line():
    result = runner.invoke(app, ["norm", "--kind", "groupnorm", "--layout", "tokens"])
    assert_one_line_error(result, "use --layout image")


@pytest.mark.parametrize("kind", ["layernorm", "batchnorm"])
def test_profile_times_the_layer_as_one_memory_bound_row(kind):
    """A real CPU run: one row (torch's fused kernel), its FLOPs and fewest bytes by hand."""
    from complexo import profile as profiling
    from complexo.analyses.norm import ANALYSIS

    cfg = norm.Config(kind=kind, layout="tokens", batch=2, seq=4, dim=8)
    prof = profiling.run(ANALYSIS, cfg, device="cpu", warmup=0, repeat=1)
    row = prof.by_term["norm"]
    if kind == "layernorm":
        # 7 per element, 4 per token: 7·64 + 4·8 = 480; x, y, γ, β: (64 + 64 + 16)·4 = 576 bytes
        assert (row["flops"], row["bytes"]) == (480, 576)
        # γ, β 16·4 and x 256, given; y 256
        assert prof.memory_peak == prof.memory_predicted == 576
    else:
        # per element 7, per channel 4 (statistics) + 7 (running update): 7·64 + 11·8 = 536;
        # x, y, γ, β and μ̂, σ̂²: (64 + 64 + 16 + 16)·4 = 640 bytes
        assert (row["flops"], row["bytes"]) == (536, 640)
    assert row["measured_s"] > 0 and row["intensity"] < 1  # memory-bound


def test_profile_command_keeps_the_configs_own_mode():
    """norm's --mode (train|eval statistics) is the config's; the profile runs a forward with
    them (profile's own --mode is not offered, so the two cannot collide)."""
    result = runner.invoke(app, ["profile", "norm", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "train: batch statistics" in " ".join(result.output.split())
    sizes = ["--batch", "2", "--channels", "4", "--res", "4", "--warmup", "0", "--repeat", "1"]
    command = ["profile", "norm", "--kind", "batchnorm", "--mode", "eval", *sizes, "--json"]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["mode"] == "forward" and doc["config"]["mode"] == "eval"
