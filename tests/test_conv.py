"""A standard convolution against its depthwise-separable factorisation: hand-derived values at
small sizes (stride 1 and 2, odd sides), MobileNet's ratio, and every formula against what the
code did not compute from it (FlopCounterMode, fvcore, autograd's saved tensors, the modules'
parameters, the bytes each Conv2d call reads and writes), across random tiny configs."""

import json
import math

import pytest
import sympy
import torch
from budget import examples
from helpers import assert_exact
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from complexo.analyses import conv, vision
from complexo.blocks.conv import DepthwiseSeparableConv, StandardConv, UnfoldConv
from complexo.cost import Kind, evaluate
from complexo.errors import ComplexoError
from complexo.measure import GROUPED_CONV_FORMULAS, count_fvcore, measure_torch
from complexo.symbols import C_out, R, k, s

# --- the output side -------------------------------------------------------------------------


def test_output_side_is_r_over_s_rounded_up_for_every_odd_kernel():
    # padding k//2 = (k − 1)/2: ⌊(R + k − 1 − k)/s⌋ + 1 = ⌊(R − 1)/s⌋ + 1 = ⌈R/s⌉
    for kernel in (1, 3, 5, 7):
        for res in range(1, 20):
            for stride in range(1, 5):
                side = math.ceil(res / stride)
                assert vision.conv_out(res, kernel, stride, kernel // 2) == side
                assert evaluate(conv.out_side(), {R: res, s: stride}) == side
    x = torch.randn(1, 2, 9, 9)
    for block in (StandardConv, DepthwiseSeparableConv):
        # ⌈9/2⌉ = 5
        assert block(2, 3, 5, stride=2)(x).shape == (1, 3, 5, 5)


# --- hand-derived values ---------------------------------------------------------------------


def values(cmp, side: str) -> dict[str, int]:
    return {q.name: q.value for q in cmp.sides[side].quantities}


def test_standard_at_stride_1_odd_side_no_bias():
    cmp = conv.analyse(conv.Config(cin=3, cout=4, kernel=3, res=7, batch=2, bias=False))
    # S = ⌈7/1⌉ = 7
    # 2·B·C_out·S²·C_in·k² = 2·2·4·49·3·9 = 21168
    forward = 21168
    assert values(cmp, "standard") == {
        "forward_flops": forward,
        "forward_matmul_flops": forward,
        # dX and dW, each the forward's size: 2·21168 = 42336
        "backward_flops": 42336,
        "backward_matmul_flops": 42336,
        # C_out·C_in·k² = 4·3·9 = 108
        "params": 108,
        # the input x: B·C_in·R²·e = 2·3·49·4 = 1176
        "activation_bytes": 1176,
        # (x: B·C_in·R² + W: C_out·C_in·k² + y: B·C_out·S²)·e = (294 + 108 + 392)·4 = 3176
        "forward_moved_bytes": 3176,
        # the step's peak, at the convolution's backward (complexo/analyses/conv_peak.py):
        # weights and dW 2·108·4 = 864, x and dX 2·1176 = 2352, the output B·C_out·S²·e =
        # 2·4·49·4 = 1568, out.sum() and its seed 8: 4792
        "training_peak_bytes": 864 + 2352 + 1568 + 8,
    }


def test_standard_at_stride_2_odd_side_with_bias_fp16():
    cmp = conv.analyse(conv.Config(cin=3, cout=4, kernel=3, res=7, stride=2, dtype="fp16"))
    # S = ⌈7/2⌉ = 4; conv: 2·B·C_out·S²·C_in·k² = 2·1·4·16·3·9 = 3456
    # bias: B·C_out·S² = 1·4·16 = 64, forward and (Σ dY) backward
    assert values(cmp, "standard") == {
        "forward_flops": 3456 + 64,
        "forward_matmul_flops": 3456,
        "backward_flops": 2 * 3456 + 64,
        "backward_matmul_flops": 2 * 3456,
        # C_out·C_in·k² + C_out = 108 + 4 = 112
        "params": 112,
        # B·C_in·R²·e = 1·3·49·2 = 294
        "activation_bytes": 294,
        # (B·C_in·R² + C_out·C_in·k² + C_out + B·C_out·S²)·e = (147 + 108 + 4 + 64)·2 = 646
        "forward_moved_bytes": 646,
        # the step's peak, at the convolution's backward: weights, dW and db 2·112·2 = 448, x
        # and dX 2·294 = 588, the output 64·2 = 128, out.sum() and its seed 4: 1168
        "training_peak_bytes": 448 + 588 + 128 + 4,
    }
    # the counters count the convolution, not its bias: 3520 − 3456 = 64, attributed
    fwd = cmp.sides["standard"].quantity("forward_flops")
    assert fwd.measured == {"fvcore": 3456, "torch": 3456}
    assert {(g.counter, g.op, g.terms, g.value) for g in fwd.gaps} == {
        ("fvcore", "aten::conv", ("conv_bias",), 64),
        ("torch", "aten.convolution", ("conv_bias",), 64),
    }
    (gap,) = cmp.sides["standard"].quantity("backward_flops").gaps
    assert (gap.op, gap.terms, gap.value) == ("aten.convolution_backward", ("conv.db",), 64)


def test_separable_at_stride_1_odd_side_no_bias():
    cmp = conv.analyse(conv.Config(cin=3, cout=4, kernel=3, res=7, batch=2, bias=False))
    # S = 7; depthwise: 2·B·C_in·S²·k² = 2·2·3·49·9 = 5292
    # pointwise: 2·B·C_in·C_out·S² = 2·2·3·4·49 = 2352
    forward = 5292 + 2352
    assert values(cmp, "separable") == {
        "forward_flops": forward,
        "forward_matmul_flops": forward,
        # 2·7644 = 15288
        "backward_flops": 15288,
        "backward_matmul_flops": 15288,
        # C_in·k² + C_in·C_out = 27 + 12 = 39
        "params": 39,
        # x and the depthwise output: (B·C_in·R² + B·C_in·S²)·e = (294 + 294)·4 = 2352
        "activation_bytes": 2352,
        # depthwise (x 294 + W 27 + y 294) + pointwise (294 + 12 + B·C_out·S² = 392) = 1313; ·4
        "forward_moved_bytes": 5252,
        # the step's peak, at the depthwise backward: weights 39·4 = 156, x 1176, the output
        # 2·4·49·4 = 1568, 8, the pointwise dW 12·4 = 48 and its dX 1176 (the depthwise output
        # freed), the depthwise dX 1176 and dW 27·4 = 108: 5416
        "training_peak_bytes": 156 + 1176 + 1568 + 8 + 48 + 1176 + 1176 + 108,
    }
    # vision's pure formula for the block: (FLOPs, parameters)
    assert vision.depthwise_separable(2, 3, 4, 3, 7) == (forward, 39)


def test_separable_at_stride_2_odd_side_with_bias_bf16():
    cmp = conv.analyse(conv.Config(cin=3, cout=4, kernel=3, res=9, stride=2, dtype="bf16"))
    # S = ⌈9/2⌉ = 5
    # depthwise: 2·B·C_in·S²·k² = 2·1·3·25·9 = 1350; its bias: B·C_in·S² = 75
    # pointwise: 2·B·C_in·C_out·S² = 2·1·3·4·25 = 600; its bias: B·C_out·S² = 100
    assert values(cmp, "separable") == {
        "forward_flops": 1350 + 75 + 600 + 100,
        "forward_matmul_flops": 1350 + 600,
        # dX and dW of each conv, and each bias's Σ dY: 2·1950 + 75 + 100 = 4075
        "backward_flops": 4075,
        "backward_matmul_flops": 3900,
        # C_in·k² + C_in + C_in·C_out + C_out = 27 + 3 + 12 + 4 = 46
        "params": 46,
        # (B·C_in·R² + B·C_in·S²)·e = (243 + 75)·2 = 636
        "activation_bytes": 636,
        # depthwise: 243 + 27 + 3 + 75 = 348; pointwise: 75 + 12 + 4 + 100 = 191; (348 + 191)·2
        "forward_moved_bytes": 1078,
        # the step's peak, at the depthwise backward: weights 46·2 = 92, x 243·2 = 486, the
        # output 100·2 = 200, 4, the pointwise dW, db 16·2 = 32 and dX 75·2 = 150, the depthwise
        # dX 486 and dW, db 30·2 = 60: 1510
        "training_peak_bytes": 92 + 486 + 200 + 4 + 32 + 150 + 486 + 60,
    }
    backward = cmp.sides["separable"].quantity("backward_matmul_flops")
    assert backward.measured == {"fvcore": None, "torch": 3900}


def test_autograd_saves_each_convolutions_input():
    cfg = conv.Config(cin=3, cout=4, kernel=5, res=9, stride=2, batch=2)
    for side, shapes in (("standard", [(2, 3, 9, 9)]), ("separable", [(2, 3, 9, 9), (2, 3, 5, 5)])):
        module, x = conv.build(cfg, side)
        run = measure_torch(lambda m=module, x=x: m(x), list(module.parameters()))
        assert sorted(shape for shape, _, _ in run.saved) == sorted(shapes)


# --- MobileNet's ratio -----------------------------------------------------------------------


def test_mobilenet_ratio_is_one_over_c_out_plus_one_over_k_squared():
    ratio = conv.mobilenet_ratio()
    assert sympy.simplify(ratio - (1 / C_out + 1 / k**2)) == 0
    # MobileNet's first separable layer: 32 → 64 channels, 3×3, 112×112
    cmp = conv.analyse(conv.Config(cin=32, cout=64, kernel=3, res=112, bias=False))
    std, sep = values(cmp, "standard"), values(cmp, "separable")
    # standard: 2·B·C_out·S²·C_in·k² = 2·1·64·12544·32·9 = 462422016
    assert std["forward_flops"] == 462422016
    # depthwise 2·32·12544·9 = 7225344 + pointwise 2·32·64·12544 = 51380224
    assert sep["forward_flops"] == 7225344 + 51380224 == 58605568
    # weights: 64·32·9 = 18432 against 32·9 + 32·64 = 288 + 2048 = 2336
    assert (std["params"], sep["params"]) == (18432, 2336)
    # 1/64 + 1/9 = (9 + 64)/576 = 73/576, for FLOPs forward and backward and for weights
    for name in ("forward_flops", "backward_flops", "params"):
        assert sympy.Rational(sep[name], std[name]) == sympy.Rational(73, 576)
    doc = cmp.to_json()
    assert doc["mobilenet_ratio"]["value"] == 73 / 576
    assert doc["ratio"]["forward_flops"] == 73 / 576


def test_the_sweep_follows_the_ratio_in_c_out():
    cmp = conv.analyse(conv.Config(cin=8, cout=10, kernel=5, res=9, bias=False))
    couts = [row["cout"] for row in cmp.sweep]
    assert couts == [1, 4, 10, 16, 64, 256, 1024]  # COUTS and the config's own
    for row in cmp.sweep:
        # 1/C_out + 1/k² = 1/C_out + 1/25
        assert row["forward_ratio"] == pytest.approx(1 / row["cout"] + 1 / 25)
        assert row["params_ratio"] == pytest.approx(1 / row["cout"] + 1 / 25)
    (mine,) = [row for row in cmp.sweep if row["cout"] == 10]
    assert mine["forward_flops"] == cmp.variant.quantity("forward_flops").value


# --- crossovers ------------------------------------------------------------------------------


def test_pointwise_overtakes_depthwise_at_c_out_k_squared():
    cmp = conv.analyse(conv.Config(cin=4, cout=6, kernel=5, res=8))
    (c,) = cmp.sides["separable"].summary.crossovers
    # 2·B·C_in·C_out·S² = 2·B·C_in·k²·S²  ⇔  C_out = k² = 25
    assert (c.symbol, c.expr, c.value) == (C_out, k**2, 25)


def test_separable_is_cheaper_from_two_output_channels():
    cmp = conv.analyse(conv.Config(cin=4, cout=6, kernel=3, res=8, bias=False))
    flops, params, moved = cmp.crossovers
    # C_in·k²·S² + C_in·C_out·S² = C_out·C_in·k²·S²  ⇔  C_out = k²/(k² − 1) = 9/8
    assert (flops.symbol, sympy.simplify(flops.expr - k**2 / (k**2 - 1)), flops.value) == (
        C_out,
        0,
        sympy.Rational(9, 8),
    )
    assert sympy.simplify(params.expr - k**2 / (k**2 - 1)) == 0
    # both sides at C_out = 1 and 2: 1/1 + 1/9 > 1 > 1/2 + 1/9
    for cout, cheaper in ((1, False), (2, True)):
        at = {**cmp.baseline.values, C_out: cout}
        std, sep = (evaluate(side.model.total(Kind.FORWARD), at) for side in cmp.sides.values())
        assert (sep < std) is cheaper
    # bytes: 2·B·C_in·S² + C_in·k² + C_in·C_out = C_out·C_in·k²  ⇔  B = (C_out·(k² − 1) − k²)/(2·S²)
    # = (6·8 − 9)/(2·64) = 39/128
    assert moved.value == sympy.Rational(39, 128)


def test_a_one_by_one_kernel_never_pays():
    cmp = conv.analyse(conv.Config(cin=4, cout=6, kernel=1, res=8))
    assert not [c for c in cmp.crossovers if c.symbol == C_out]
    assert any(note.startswith("k = 1") for note in cmp.notes)
    ratio = cmp.ratio()
    assert ratio["forward_flops"] > 1 and ratio["params"] > 1


# --- formulas against measurements -----------------------------------------------------------


@settings(max_examples=examples(8, 20))  # derandomised
@given(conv.examples())
def test_every_formula_equals_the_counters_or_its_gap_is_explained(cfg):
    cmp = conv.analyse(cfg)
    for side in cmp.sides.values():
        for q in side.quantities:
            for counter, reading in q.measured.items():
                if reading is None or reading == q.value:
                    continue
                gaps = [g for g in q.gaps if g.counter == counter]
                skipped = ("counts matrix products only", "no FLOP formula for this op")
                assert gaps and all(g.reason in skipped for g in gaps), q
                # biases, and unfold's backward (col2im): element-wise, never counted
                assert all(
                    name.endswith(("_bias", ".db")) or name == "col2im"
                    for g in gaps
                    for name in g.terms
                )
                assert sum(g.value for g in gaps) == q.value - reading
        assert_exact(side)


# --- 3D, causal, unfold -----------------------------------------------------------------------


def test_a_3d_convolution_over_4_frames():
    cmp = conv.analyse(conv.Config(cin=3, cout=4, kernel=3, res=7, batch=2, bias=False, frames=4))
    # S = 7, T' = ⌈4/1⌉ = 4; 2·B·C_out·T'·S²·C_in·k³ = 2·2·4·4·49·3·27 = 254016
    assert values(cmp, "standard") == {
        "forward_flops": 254016,
        "forward_matmul_flops": 254016,
        "backward_flops": 2 * 254016,
        "backward_matmul_flops": 2 * 254016,
        # C_out·C_in·k³ = 4·3·27
        "params": 324,
        # x: B·C_in·T·R²·e = 2·3·4·49·4
        "activation_bytes": 4704,
        # (x 1176 + W 324 + y B·C_out·T'·S² = 1568)·4
        "forward_moved_bytes": 12272,
        # the step's peak, at the convolution's backward: weights and dW 2·324·4 = 2592, x and
        # dX 2·4704, the output 1568·4 = 6272, 8: 18280
        "training_peak_bytes": 2592 + 2 * 4704 + 6272 + 8,
    }
    # 1/C_out + 1/k³ = 1/4 + 1/27 = 31/108, for FLOPs and weights
    assert cmp.mobilenet_ratio == 1 / C_out + 1 / k**3
    # depthwise 2·B·C_in·T'·S²·k³ = 2·2·3·4·49·27 = 63504; pointwise 2·2·3·4·4·49 = 9408
    assert values(cmp, "separable")["forward_flops"] == 63504 + 9408 == 72912
    assert sympy.Rational(72912, 254016) == sympy.Rational(31, 108)
    fwd = cmp.baseline.quantity("forward_flops")
    # fvcore's conv formula on the meta run's shapes (its trace cannot take a conv on meta)
    assert fwd.measured == {"fvcore": 254016, "torch": 254016}


def test_a_causal_3d_convolution_pads_a_copy_in_front():
    cmp = conv.analyse(
        conv.Config(cin=3, cout=4, kernel=3, res=7, batch=2, bias=False, frames=4, causal=True)
    )
    got = values(cmp, "standard")
    # the same T' = ⌈4/1⌉ = 4 frames out and the same FLOPs as centred padding
    assert got["forward_matmul_flops"] == 254016
    # the conv keeps F.pad's copy: B·C_in·(T + k − 1)·(R + k − 1)²·e = 2·3·6·81·4 = 11664
    assert got["activation_bytes"] == 11664
    # (padded 2916 + W 324 + y 1568)·4 = 19232
    assert got["forward_moved_bytes"] == 19232
    assert cmp.baseline.quantity("activation_bytes").measured["torch"] == 11664
    assert any(n.startswith("causal:") for n in cmp.notes)


def test_a_causal_output_frame_sees_no_later_input_frame():
    torch.manual_seed(0)
    for block in (StandardConv, DepthwiseSeparableConv):
        m = block(2, 3, 3, dims=3, causal=True).double()
        x = torch.randn(1, 2, 5, 6, 6, dtype=torch.float64)
        x2 = x.clone()
        x2[:, :, 2] += 1.0  # change frame 2
        changed = (m(x2) - m(x)).abs().sum(dim=(0, 1, 3, 4)) > 0  # per output frame
        # frame 2 reaches outputs 2, 3, 4 (k = 3 taps: t − 2, t − 1, t), never 0 or 1
        assert changed.tolist() == [False, False, True, True, True]


def test_unfold_is_the_same_convolution_through_a_materialised_matrix():
    cmp = conv.analyse(conv.Config(cin=3, cout=4, kernel=3, res=7, impl="unfold"))
    got = values(cmp, "standard")
    # S = 7: (B·S², C_in·k²) x (C_in·k², C_out): 2·1·49·27·4 = 10584, as the direct conv
    assert got["forward_matmul_flops"] == 10584 and got["backward_matmul_flops"] == 2 * 10584
    # bias: B·C_out·S² = 196; col2im: one add per column element, B·C_in·k²·S² = 1323
    assert got["forward_flops"] == 10584 + 196
    assert got["backward_flops"] == 2 * 10584 + 196 + 1323
    # the columns: 1323·4 = 5292 bytes, k²·S²/R² = 9× x, kept for dW instead of x
    assert got["unfolded_bytes"] == got["activation_bytes"] == 5292
    # (x 147 + W 108 + b 4 + y 196 + 2·1323 written and read back)·4 = 12404
    assert got["forward_moved_bytes"] == 12404
    (col2im,) = [g for g in cmp.baseline.quantity("backward_flops").gaps if g.op == "aten.col2im"]
    assert (col2im.terms, col2im.value) == (("col2im",), 1323)
    # the separable side stays direct (a depthwise conv unfolded is no matrix product)
    assert values(cmp, "separable")["activation_bytes"] == 2 * 147 * 4  # x and its output


def test_unfold_computes_what_conv2d_computes():
    torch.manual_seed(0)
    direct, unfolded = StandardConv(3, 5, 3, stride=2).double(), UnfoldConv(3, 5, 3, 2).double()
    with torch.no_grad():
        unfolded.weight.copy_(direct.conv.weight)
        unfolded.bias.copy_(direct.conv.bias)
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(unfolded(x), direct(x))


# --- the counters ----------------------------------------------------------------------------


@settings(max_examples=30)
@given(
    st.integers(1, 3),  # groups
    st.integers(1, 3),  # channels per group in
    st.integers(1, 3),  # channels per group out
    st.integers(1, 4),  # kernel
    st.integers(1, 3),  # stride
    st.integers(4, 9),  # input side
    st.booleans(),  # transposed
)
def test_a_convolutions_backward_is_twice_its_forward_for_any_groups(g, ci, co, kk, st_, size, tr):
    # dX and dW each take the forward's MACs: C_out·(C_in/g)·k² per image and output pixel
    # (input pixel when transposed)
    make = torch.nn.ConvTranspose2d if tr else torch.nn.Conv2d
    with torch.device("meta"):
        layer = make(g * ci, g * co, kk, st_, groups=g, bias=False)
        x = torch.randn(2, g * ci, size, size, requires_grad=True)
    run = measure_torch(lambda: layer(x), [layer.weight], custom_mapping=GROUPED_CONV_FORMULAS)
    assert run.backward.total == 2 * run.forward.total
    if g == 1:  # torch's own formula, unchanged
        counter = FlopCounterMode(display=False)
        with counter:
            layer(x).sum().backward()
        assert counter.get_total_flops() == 3 * run.forward.total


def test_flop_counter_mode_counts_a_depthwise_weight_gradient_c_in_times():  # why the mapping
    with torch.device("meta"):
        block, x = DepthwiseSeparableConv(4, 5, 3, bias=False), torch.randn(1, 4, 6, 6)
    counter = FlopCounterMode(display=False)
    with counter:
        block(x.requires_grad_()).sum().backward()
    # depthwise dW: 2·B·C_in·k²·S² = 2·1·4·9·36 = 2592, counted as 2·B·C_in²·k²·S² = 4·2592
    fixed = measure_torch(lambda: block(x), [], custom_mapping=GROUPED_CONV_FORMULAS)
    raw = counter.get_total_flops() - fixed.forward.total
    if raw == fixed.backward.total:
        pytest.skip("this torch counts grouped weight gradients per group: the mapping could go")
    assert raw - fixed.backward.total == (4 - 1) * 2592


def test_fvcore_counts_a_depthwise_conv_per_group_on_meta_as_on_cpu():
    torch.manual_seed(0)
    real, x = DepthwiseSeparableConv(4, 6, 5, stride=2), torch.randn(2, 4, 9, 9)
    with torch.device("meta"):
        meta = DepthwiseSeparableConv(4, 6, 5, stride=2)
    on_cpu, on_meta = count_fvcore(real, (x,)), count_fvcore(meta, (x.to("meta"),))
    # S = 5; 2·B·C_in·S²·k² + 2·B·C_in·C_out·S² = 2·2·4·25·25 + 2·2·4·6·25 = 10000 + 2400
    assert on_cpu.total == on_meta.total == 12400
    assert on_meta.by_module["depthwise"] == 10000


def test_fvcore_counts_a_conv3d_on_meta_as_its_trace_does_on_cpu():
    torch.manual_seed(0)
    real, x = StandardConv(3, 4, 3, stride=2, dims=3), torch.randn(2, 3, 5, 7, 7)
    with torch.device("meta"):
        meta = StandardConv(3, 4, 3, stride=2, dims=3)
    on_cpu, on_meta = count_fvcore(real, (x,)), count_fvcore(meta, (x.to("meta"),))
    # T' = ⌈5/2⌉ = 3, S = ⌈7/2⌉ = 4; 2·B·C_out·T'·S²·C_in·k³ = 2·2·4·3·16·3·27 = 62208
    assert on_cpu.total == on_meta.total == 62208
    assert on_meta.by_op == {"aten::conv": 62208}


# --- the reference blocks --------------------------------------------------------------------


def test_separable_is_a_standard_conv_whose_kernel_factorises():
    # W[o, i] = P[o, i]·D[i]: rank one across channels and space; b = P·b_D + b_P
    torch.manual_seed(0)
    sep = DepthwiseSeparableConv(3, 5, 3, stride=2).double()
    std = StandardConv(3, 5, 3, stride=2).double()
    depth, point = sep.depthwise.weight, sep.pointwise.weight[:, :, 0, 0]  # (3, 1, 3, 3), (5, 3)
    with torch.no_grad():
        std.conv.weight.copy_(point[:, :, None, None] * depth[None, :, 0])  # (5, 3, 3, 3)
        std.conv.bias.copy_(point @ sep.depthwise.bias + sep.pointwise.bias)  # (5, 3) x (3,)
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    torch.testing.assert_close(sep(x), std(x))


def test_the_blocks_refuse_an_even_kernel():
    with pytest.raises(ValueError, match="odd"):
        StandardConv(3, 4, 2)


# --- the contract ----------------------------------------------------------------------------


def test_json_has_both_sides_the_ratio_and_every_gap_explained():
    doc = conv.analyse(conv.Config()).to_json()
    json.dumps(doc)  # plain JSON all through
    assert doc["analysis"] == "conv" == conv.NAME == conv.ANALYSIS.name
    assert set(doc) >= {"analysis", "config", "convention", "ratio", "crossovers", "notes"}
    assert set(doc["ratio"]) == {*(q.name for q in conv.QUANTITIES), "training_peak_bytes"}
    for side in conv.SIDES:
        body = doc[side]
        assert set(body) >= {"quantities", "terms", "big_o", "crossovers"}
        for q in body["quantities"].values():
            assert q["unit"] in {"flop", "byte", "param"} and isinstance(q["value"], int)
            assert set(q["measured"]) == {"fvcore", "torch"}
            assert all(g["reason"] != "unexplained" for g in q["gaps"]), q
    assert doc["mobilenet_ratio"]["factored"] == "(C_out + k**2)/(C_out*k**2)"
    assert conv.ANALYSIS.sides == conv.SIDES and not conv.ANALYSIS.sweep


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kernel": 4}, "--kernel 4 must be odd"),
        ({"cin": 0}, "--cin must be a positive integer, got 0"),
        ({"cout": -3}, "--cout must be a positive integer, got -3"),
        ({"res": 0}, "--res must be a positive integer, got 0"),
        ({"stride": 0}, "--stride must be a positive integer, got 0"),
        ({"batch": 0}, "--batch must be a positive integer, got 0"),
        ({"dtype": "fp8"}, "unknown --dtype 'fp8'"),
        ({"causal": True}, "--causal pads frames: give --frames T"),
        ({"frames": 4, "impl": "unfold"}, "--impl unfold is 2D"),
        ({"frames": 0}, "--frames must be a positive integer, got 0"),
        ({"impl": "im2col"}, "unknown --impl 'im2col'"),
    ],
)
def test_bad_values_are_refused_in_one_line_naming_the_flag(values, message):
    with pytest.raises(ComplexoError) as err:
        conv.ANALYSIS.make(**values)
    assert message in str(err.value) and "\n" not in str(err.value)
