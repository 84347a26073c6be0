"""Attention over video, three ways: hand-derived values at TimeSformer-B's sizes (8 frames of
224², p = 16: S = 196 tokens a frame, d = 768, h = 12), the crossovers, the window's padding,
and every formula against the counters across random tiny clips."""

import json

import pytest
import sympy
import torch
from budget import examples
from hypothesis import given, settings

from complexo.analyses import video
from complexo.analyses.video_cost import attention_core, cost_model, unpadded
from complexo.blocks.attention import NaiveMHSA
from complexo.blocks.video import FactorizedAttention, JointAttention, WindowAttention
from complexo.cost import Kind, evaluate
from complexo.errors import ComplexoError
from complexo.measure import measure_torch
from complexo.symbols import S, T, d, w_h, w_t, w_w

TIMESFORMER_B = dict(frames=8, res=224, patch=16, dim=768, heads=12)


def values(attn: str, **kw) -> dict[str, int]:
    r = video.analyse(video.Config(**{**TIMESFORMER_B, "attn": attn, **kw}))
    return {q.name: q.value for q in r.quantities}


# --- hand-derived values at TimeSformer-B's sizes ------------------------------------------------


def test_joint_attention_over_all_1568_tokens():
    got = values("joint")
    # T·S = 8·(224/16)² = 8·196 = 1568 tokens, d² = 589824
    # projections 8·B·(T·S)·d² = 8·1568·589824 = 7398752256
    # scores + A·V 4·B·(T·S)²·d = 4·2458624·768 = 7552892928
    assert got["forward_matmul_flops"] == 7398752256 + 7552892928 == 14951645184
    assert got["backward_matmul_flops"] == 2 * 14951645184
    # 4·d² + 4·d = 2359296 + 3072
    assert got["params"] == 2362368
    # B·h·(T·S)²·e = 12·2458624·4 = 118013952: one matrix of 113 MiB
    assert got["attention_matrix_bytes"] == 118013952
    # x, q, k, v, heads: 5·B·T·S·d·e = 5·1568·768·4 = 24084480; plus the matrix
    assert got["activation_bytes"] == 24084480 + 118013952


def test_factorized_attention_is_two_layers_temporal_then_spatial():
    got = values("factorized")
    # temporal: B·S = 196 sequences of T = 8; spatial: B·T = 8 sequences of S = 196
    # projections, each layer 8·(T·S)·d² = 7398752256
    # temporal core 4·(B·S)·T²·d = 4·196·64·768 = 38535168
    # spatial core 4·(B·T)·S²·d = 4·8·38416·768 = 944111616
    forward = 2 * 7398752256 + 38535168 + 944111616
    assert got["forward_matmul_flops"] == forward == 15780151296
    assert got["backward_matmul_flops"] == 2 * forward
    # each layer its own projections: 2·(4·d² + 4·d) = 2·2362368
    assert got["params"] == 4724736
    # B·h·e·(T·S² + S·T²) = 48·(307328 + 12544) = 48·319872, both matrices kept for backward
    assert got["attention_matrix_bytes"] == 15353856
    # 5·B·T·S·d·e per layer: 2·24084480
    assert got["activation_bytes"] == 2 * 24084480 + 15353856


def test_factorized_costs_more_than_joint_at_8_frames_and_less_from_9():
    # per token and d: joint S·T + 2·d = 1568 + 1536 = 3104, factorized S + T + 4·d = 3276:
    # factorized's second set of projections outweighs what it saves on 8 frames
    assert values("factorized")["forward_matmul_flops"] * 3104 == (
        values("joint")["forward_matmul_flops"] * 3276
    )
    # T = 9: joint 196·9 + 1536 = 3300, factorized 196 + 9 + 3072 = 3277
    nine = {a: values(a, frames=9)["forward_matmul_flops"] for a in ("joint", "factorized")}
    assert nine["factorized"] * 3300 == nine["joint"] * 3277


def test_window_attention_in_four_windows_of_392_tokens():
    got = values("window")  # window 8,7,7 on an 8 × 14 × 14 grid: no padding
    # nW = ⌈8/8⌉·⌈14/7⌉·⌈14/7⌉ = 4, N = 8·7·7 = 392
    # projections 8·1568·d² = 7398752256; core 4·B·nW·N²·d = 4·4·153664·768 = 1888223232
    assert got["forward_matmul_flops"] == 7398752256 + 1888223232
    # B·nW·h·N²·e = 4·12·153664·4 = 29503488
    assert got["attention_matrix_bytes"] == 29503488
    assert got["params"] == 2362368


def test_window_padding_at_6_frames_of_192():
    r = video.analyse(video.Config(frames=6, res=192, attn="window", window="8,7,7"))
    # the window is clipped to 6 frames: (6, 7, 7), N = 294; the 12 × 12 grid pads to 14 × 14
    assert (r.values[w_t], r.values[w_h], r.values[w_w]) == (6, 7, 7)
    # nW = 1·2·2 = 4 windows: 4·294 = 1176 tokens for the clip's 6·144 = 864
    assert "nW = ⌈6/6⌉·⌈12/7⌉·⌈12/7⌉ = 4; 1176 tokens after padding" in r.facts["windows"]
    # projections 8·1176·d² = 5549064192; core 4·4·294²·768 = 1062125568
    assert r.quantity("forward_matmul_flops").value == 5549064192 + 1062125568
    # unpadded it would be 8·864·d² + 4·864·294·768 = 4076863488 + 780337152
    tight = unpadded(r.model.total(Kind.FORWARD, matmul_only=True))
    assert evaluate(tight, r.values) == 4076863488 + 780337152
    # padding costs (5549064192 + 1062125568) − 4857200640 = 1753989120 of the matmuls
    (note,) = [n for n in r.notes if n.startswith("padding")]
    assert "864 tokens padded with zeros to 1176 (+36.1%)" in note
    # all measured, padded tokens included
    q = r.quantity("forward_matmul_flops")
    assert q.measured == {"fvcore": q.value, "torch": q.value}


# --- crossovers ----------------------------------------------------------------------------------


def test_crossovers_solved_with_sympy():
    r = video.analyse(video.Config(**TIMESFORMER_B, attn="factorized"))
    in_t, in_s, core, width = r.summary.crossovers
    # 4·B·S·T·d·(S·T + 2·d) = 4·B·S·T·d·(S + T + 4·d)  ⇔  T·(S − 1) = S + 2·d
    assert sympy.simplify(in_t.expr - (S + 2 * d) / (S - 1)) == 0
    assert in_t.value == sympy.Rational(196 + 1536, 195)  # 8.88: 8 frames is just below
    assert sympy.simplify(in_s.expr - (T + 2 * d) / (T - 1)) == 0
    assert in_s.value == sympy.Rational(8 + 1536, 7)  # 220.6 tokens, a 14.85² grid
    # cores: S + T = N = w_t·w_h·w_w keys a query  ⇔  T = 392 − 196 = 196
    assert (sympy.simplify(core.expr - (w_t * w_h * w_w - S)), core.value) == (0, 196)
    # 8·d² + 4·N·d = 16·d² + 4·(S + T)·d  ⇔  d = (N − S − T)/2 = (392 − 204)/2 = 94
    assert (core.symbol, width.symbol, width.value) == (T, d, 94)


def test_a_single_frame_has_no_crossover_in_s_and_says_so():
    r = video.analyse(video.Config(frames=1, res=32, patch=16, dim=8, heads=2))
    # T = 1: S·(T − 1) = 2·d + T has no root: factorized never beats joint
    assert [c.symbol for c in r.summary.crossovers].count(S) == 0
    assert any(n.startswith("no crossover in S") for n in r.notes)


def test_the_cores_scale_as_each_paper_says():
    assert sympy.expand(attention_core(cost_model("joint"))) == sympy.expand(
        4 * video.B * (T * S) ** 2 * d
    )
    assert sympy.factor(attention_core(cost_model("factorized"))) == sympy.factor(
        4 * video.B * T * S * (S + T) * d
    )
    core = unpadded(attention_core(cost_model("window")))
    assert sympy.simplify(core - 4 * video.B * T * S * w_t * w_h * w_w * d) == 0


def test_big_o_per_attention():
    orders = {a: video.analyse(video.Config(attn=a)).summary.big_o for a in video.ATTNS}
    assert orders["joint"]["forward_flops"] == "O(B·S²·T²·d + B·S·T·d²)"
    assert orders["factorized"]["forward_flops"] == "O(B·S·T²·d + B·S²·T·d + B·S·T·d²)"
    assert orders["window"]["forward_flops"] == "O(B·S·T·d·w_h·w_t·w_w + B·S·T·d²)"


# --- formulas against measurements ---------------------------------------------------------------


@settings(max_examples=examples(10, 25))
@given(video.examples())
def test_every_formula_equals_the_counters_or_its_gap_is_explained(cfg):
    r = video.analyse(cfg)
    exact = ("forward_matmul_flops", "backward_matmul_flops", "params", "activation_bytes")
    for name in (*exact, "attention_matrix_bytes"):
        q = r.quantity(name)
        assert q.measured["torch"] == q.value, (name, q.measured, q.value)
        assert q.measured["fvcore"] in (None, q.value), (name, q.measured, q.value)
    for q in r.quantities:
        assert all(g.reason != "unexplained" for g in q.gaps), q
        for counter, reading in q.measured.items():
            if reading is not None:
                gaps = [g for g in q.gaps if g.counter == counter]
                assert sum(g.value for g in gaps) == q.value - reading


def test_contiguous_keeps_one_copy_of_the_permuted_input():
    # at B = 1, transpose(1, 2).reshape(B·S, T, d) is a strided view: each of the q, k, v
    # projections then copies it for itself, and keeps its copy for the backward
    class Reshaped(FactorizedAttention):
        def forward(self, x):
            B, T_, S_, d_ = x.shape
            x = self.temporal(x.transpose(1, 2).reshape(B * S_, T_, d_))
            return self.spatial(x.view(B, S_, T_, d_).transpose(1, 2).reshape(B * T_, S_, d_))

    with torch.device("meta"):
        x = torch.randn(1, 3, 4, 8, requires_grad=True)
        fixed, loose = FactorizedAttention(8, 2), Reshaped(8, 2)
    saved = [
        measure_torch(lambda m=m: m(x), list(m.parameters())).saved_bytes for m in (fixed, loose)
    ]
    # two more (B·T·S, d) copies per layer: 2·2·12·8·4 = 1536 bytes
    assert saved[1] - saved[0] == 1536


# --- the reference blocks ------------------------------------------------------------------------


def test_joint_is_mhsa_over_the_flattened_clip_and_window_covering_all_is_joint():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)  # T = 3, 3 × 3 grid
    joint = JointAttention(8, 2).double()
    mhsa = NaiveMHSA(8, 2).double()
    mhsa.load_state_dict(joint.attn.state_dict())
    torch.testing.assert_close(joint(x), mhsa(x.reshape(2, 27, 8)).view(2, 3, 9, 8))
    # a window as large as the clip (clipped to 3 × 3 × 3): one window, joint attention
    window = WindowAttention(8, 2, (5, 5, 5)).double()
    window.attn.load_state_dict(joint.attn.state_dict())
    torch.testing.assert_close(window(x), joint(x))


def test_window_tokens_attend_within_their_window_only():
    torch.manual_seed(0)
    block = WindowAttention(4, 1, (1, 2, 2)).double()
    x = torch.randn(1, 2, 16, 4, dtype=torch.float64)  # T = 2, 4 × 4 grid: 8 windows
    y = block(x)
    x2 = x.clone()
    x2[0, 1, 15] += 1.0  # the last token of frame 1: window (1, 1, 1)
    changed = (block(x2) - y).abs().sum(-1)[0] > 0  # (T, S)
    grid = changed.view(2, 4, 4)
    assert grid[1, 2:, 2:].all() and grid.sum() == 4


def test_factorized_mixes_every_token_in_two_steps():
    torch.manual_seed(0)
    block = FactorizedAttention(4, 1).double()
    x = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    x2 = x.clone()
    x2[0, 0, 0] += 1.0
    assert ((block(x2) - block(x)).abs().sum(-1) > 0).all()  # time, then space: all T·S


# --- the contract --------------------------------------------------------------------------------


def test_json_and_figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = video.analyse(video.Config(frames=4, res=64, patch=16, dim=32, heads=2, attn="window"))
    doc = r.to_json()
    json.dumps(doc)
    assert doc["analysis"] == "video" == video.ANALYSIS.name
    assert set(doc["quantities"]) == {*(q.name for q in video.QUANTITIES), "training_peak_bytes"}
    from complexo.plot import draw_registered

    _, axes = plt.subplots(1, 2)
    drawn = draw_registered(r, list(axes))
    plt.close("all")
    assert set(drawn) == {f"{a} by {f}" for a in video.ATTNS for f in ("frames", "res")}
    xs, ys = drawn["window by frames"]
    assert ys[xs.index(4)] == r.quantity("forward_flops").value


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"res": 100}, "--res 100 is not a multiple of --patch 16"),
        ({"dim": 10, "heads": 4}, "--dim 10 is not divisible by --heads 4"),
        ({"window": "8,7"}, "--window must be three positive integers"),
        ({"window": "8,0,7"}, "--window must be three positive integers"),
        ({"window": "a,b,c"}, "--window must be three positive integers"),
        ({"frames": 0}, "--frames must be a positive integer, got 0"),
        ({"attn": "full"}, "unknown --attn 'full'"),
    ],
)
def test_bad_values_are_refused_in_one_line_naming_the_flag(given, message):
    with pytest.raises(ComplexoError) as err:
        video.Config(**given)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_api_takes_the_window_as_a_tuple_too():
    assert video.Config(window=(4, 2, 2)).window == "4,2,2"


def test_compare_sets_the_three_attentions_side_by_side(tmp_path):
    """--compare at T = 2, S = (4/2)² = 4 tokens a frame, d = 4, h = 2, B = 1: n = T·S = 8.
    Forward matmuls: joint 4·B·T·S·d·(T·S + 2·d) = 4·8·4·(8 + 8) = 2048;
    factorized 4·B·S·T·d·(S + T + 4·d) = 4·8·4·(4 + 2 + 16) = 2816 (ratio 2816/2048 = 1.375);
    window: 8,7,7 clipped to the clip's 2×2×2 = all 8 tokens, so joint's 2048 (ratio 1)."""
    from helpers import runner

    from complexo.cli import app

    args = ["video", "--frames", "2", "--res", "4", "--patch", "2", "--dim", "4", "--heads", "2"]
    out = runner.invoke(app, [*args, "--compare", "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    mm = {a: doc[a]["quantities"]["forward_matmul_flops"] for a in video.ATTNS}
    assert {a: q["value"] for a, q in mm.items()} == {
        "joint": 2048,
        "factorized": 2816,
        "window": 2048,
    }
    assert all(q["measured"]["torch"] == q["value"] for q in mm.values())  # counted, not derived
    assert doc["ratio"]["factorized"]["forward_matmul_flops"] == 1.375
    assert doc["ratio"]["window"]["forward_matmul_flops"] == 1.0
    # each side says what the suite proves of its own attention: not of window's
    assert "variant 'joint'" in mm["joint"]["proof"]
    assert "variant 'factorized'" in mm["factorized"]["proof"]
    assert mm["window"].get("proof") is None
    refused = runner.invoke(app, [*args, "--compare", "--prove"])
    assert refused.exit_code != 0
    assert "prove each with --attn X --prove" in refused.stderr
    shown = runner.invoke(app, [*args, "--compare"])
    assert shown.exit_code == 0, shown.output
    assert "The three attentions" in shown.output
    assert all(a in shown.output for a in ("joint", "factorized", "window"))
    plot = tmp_path / "three.png"
    assert runner.invoke(app, [*args, "--compare", "--plot", str(plot)]).exit_code == 0
    assert plot.stat().st_size > 0
