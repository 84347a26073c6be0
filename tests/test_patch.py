"""Patch embedding, a stride-p convolution against reshape + linear: hand-derived values for an
image and a clip, each formula against what the code did not compute from it (FlopCounterMode,
fvcore, autograd's saved tensors, the modules' parameters, the bytes each module call reads and
writes, the copies the forward made), the two blocks computing the same map, and one-line
refusals."""

from fractions import Fraction

import matplotlib
import pytest
import torch
from helpers import assert_exact, assert_one_line_error, runner
from hypothesis import given, settings

from complexo.analyses import patch
from complexo.blocks.patch import ConvPatchEmbed, LinearPatchEmbed
from complexo.cli import app
from complexo.cost import Kind
from complexo.measure import measure_torch
from complexo.symbols import p, p_t

matplotlib.use("Agg")

NAMES = ("forward_matmul_flops", "backward_matmul_flops", "params", "activation_bytes")


def values(cmp, side: str) -> dict[str, int]:
    return {q.name: q.value for q in cmp.sides[side].quantities}


def test_an_image_by_hand():
    cmp = patch.analyse(patch.Config(res=8, patch=4, channels=3, dim=5, batch=2))
    # N = (R/p)² = (8/4)² = 4 tokens of C·p² = 3·16 = 48 values
    # product: 2·B·N·C·p²·d = 2·2·4·48·5 = 3840 = 2·B·C·R²·d = 2·2·3·64·5
    # bias: B·N·d = 2·4·5 = 40, forward and (Σ dY) backward; no dX: pixels need no gradient
    # moved, conv: (x B·C·R² = 384 + W 48·5 = 240 + b 5 + y B·N·d = 40)·4 = 2676
    common = {
        "forward_flops": 3880,
        "forward_matmul_flops": 3840,
        "backward_flops": 3880,
        "backward_matmul_flops": 3840,
        "params": 245,  # 48·5 + 5
        "activation_bytes": 1536,  # one copy of the pixels: 2·3·64·4
    }
    # the step's peak, at dW and db: given W, b 245·4 = 980 and x 1536; y B·N·d·e = 160,
    # out.sum() and its seed 8; dW, db 980; linear also holds its copy, 1536, until then
    conv_peak = 980 + 1536 + 160 + 8 + 980
    assert values(cmp, "conv") == {
        **common,
        "forward_moved_bytes": 2676,
        "copy_bytes": 0,
        "training_peak_bytes": conv_peak,
    }
    # linear also writes the copy and reads it back: 2676 + 2·1536 = 5748
    assert values(cmp, "linear") == {
        **common,
        "forward_moved_bytes": 5748,
        "copy_bytes": 1536,
        "training_peak_bytes": conv_peak + 1536,
    }
    for side in patch.SIDES:
        assert_exact(cmp.sides[side], (*NAMES, "forward_moved_bytes", "copy_bytes"))
        fwd = cmp.sides[side].quantity("forward_matmul_flops")
        assert fwd.measured == {"fvcore": 3840, "torch": 3840}


def test_a_clip_with_tubelets_by_hand_fp16():
    cfg = patch.Config(res=6, patch=3, channels=2, dim=4, frames=4, tubelet=2, dtype="fp16")
    cmp = patch.analyse(cfg)
    # N = (T/p_t)·(R/p)² = 2·4 = 8 tokens of C·p_t·p² = 2·2·9 = 36 values
    # product: 2·B·N·36·d = 2·1·8·36·4 = 2304 = 2·B·C·T·R²·d = 2·1·2·4·36·4
    # bias: 1·8·4 = 32; pixels: B·C·T·R² = 288, ·e = 576 bytes
    # moved, conv: (288 + W 36·4 = 144 + b 4 + y 32)·2 = 936; linear: 936 + 2·576 = 2088
    common = {
        "forward_flops": 2336,
        "forward_matmul_flops": 2304,
        "backward_flops": 2336,
        "backward_matmul_flops": 2304,
        "params": 148,
        "activation_bytes": 576,
    }
    # peak: W, b 148·2 = 296, x 576, y 32·2 = 64, out.sum() and seed 4, dW, db 296 (+ the copy)
    conv_peak = 296 + 576 + 64 + 4 + 296
    assert values(cmp, "conv") == {
        **common,
        "forward_moved_bytes": 936,
        "copy_bytes": 0,
        "training_peak_bytes": conv_peak,
    }
    assert values(cmp, "linear") == {
        **common,
        "forward_moved_bytes": 2088,
        "copy_bytes": 576,
        "training_peak_bytes": conv_peak + 576,
    }
    for side in patch.SIDES:
        assert_exact(cmp.sides[side], (*NAMES, "forward_moved_bytes", "copy_bytes"))
        # fvcore counts the Conv3d on meta by its own formula, as its CPU trace does
        assert cmp.sides[side].quantity("forward_matmul_flops").measured["fvcore"] == 2304


def test_each_counter_sees_its_own_ops_and_only_the_bias_is_missed():
    cmp = patch.analyse(patch.Config(res=8, patch=4, channels=3, dim=5, batch=2))
    seen = {}
    for side in patch.SIDES:
        for name in ("forward_flops", "backward_flops"):
            for g in cmp.sides[side].quantity(name).gaps:
                seen[(side, name, g.counter)] = (g.op, g.terms, g.value)
    # the bias, B·N·d = 40 each way, is the whole gap; named by the op that carries it
    assert seen == {
        ("conv", "forward_flops", "fvcore"): ("aten::conv", ("embed_bias",), 40),
        ("conv", "forward_flops", "torch"): ("aten.convolution", ("embed_bias",), 40),
        ("conv", "backward_flops", "torch"): ("aten.convolution_backward", ("embed.db",), 40),
        ("linear", "forward_flops", "fvcore"): ("aten::linear", ("embed_bias",), 40),
        ("linear", "forward_flops", "torch"): ("aten.addmm", ("embed_bias",), 40),
        ("linear", "backward_flops", "torch"): ("aten.sum", ("embed.db",), 40),
    }


def test_the_two_blocks_compute_the_same_map():
    torch.manual_seed(0)
    for tubelet, x in ((None, torch.randn(2, 3, 8, 8)), (2, torch.randn(2, 3, 4, 6, 6))):
        conv, linear = ConvPatchEmbed(3, 5, 2, tubelet), LinearPatchEmbed(3, 5, 2, tubelet)
        with torch.no_grad():
            linear.proj.weight.copy_(conv.proj.weight.flatten(1))  # (d, C·[p_t·]p²)
            linear.proj.bias.copy_(conv.proj.bias)
        a, b = conv(x), linear(x)
        # tokens: (T/p_t)·(R/p)² = 16 (image: (8/2)² = 16; clip: 2·(6/2)² = 18)
        assert a.shape == b.shape == (2, 16 if tubelet is None else 18, 5)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_the_product_does_not_depend_on_the_patch_side_as_counted():
    # 2·B·C·R²·d = 2·1·3·16²·4 = 6144 at every p dividing 16, by FlopCounterMode on each block
    expr = patch.cost_model("conv").total(Kind.FORWARD, matmul_only=True)
    assert p not in expr.free_symbols and p_t not in expr.free_symbols
    for side in patch.SIDES:
        for size in (1, 2, 4, 8, 16):
            module, x = patch.build(patch.Config(res=16, patch=size, dim=4), side)
            run = measure_torch(lambda m=module, x=x: m(x), list(module.parameters()))
            assert run.forward.total == run.backward.total == 6144, (side, size)


def test_only_the_linear_side_copies_the_pixels():
    for side, copies in (("conv", []), ("linear", [("aten.clone", 1536)])):
        module, x = patch.build(patch.Config(res=8, patch=4, channels=3, dim=5, batch=2), side)
        run = measure_torch(lambda m=module, x=x: m(x), list(module.parameters()))
        # the copy: B·C·R²·e = 2·3·64·4 = 1536 bytes
        assert [(op, b) for op, _, b in run.outputs if op == "aten.clone"] == copies


def test_no_copy_where_patch_order_is_memory_order():
    # one 4×4 patch of 3 channels (R = p): x is already (C, p, p) in a row; 1×1 patches of one
    # channel: already in token order; 2×2 patches of one channel: p moves past the columns
    for cfg, copied in (
        (patch.Config(res=4, patch=4, channels=3, dim=2), 0),
        (patch.Config(res=4, patch=1, channels=1, dim=2), 0),
        (patch.Config(res=4, patch=2, channels=1, dim=2), 64),  # B·C·R²·e = 16·4
        # a clip of one channel, one patch per frame: tubelets already in a row
        (patch.Config(res=4, patch=4, channels=1, dim=2, frames=4, tubelet=2), 0),
        # 2×2 patches per frame: p_t moves past the token rows; B·C·T·R²·e = 4·64·4 = 1024
        (patch.Config(res=8, patch=4, channels=1, dim=2, frames=4, tubelet=2), 1024),
    ):
        cmp = patch.analyse(cfg)
        linear = cmp.sides["linear"]
        assert linear.quantity("copy_bytes").value == copied, cfg
        assert_exact(linear, ("copy_bytes", "forward_moved_bytes", "activation_bytes"))
        assert len(cmp.crossovers) == (2 if copied else 1)


def test_crossovers_at_vit_b16_sizes():
    cmp = patch.analyse(patch.Config())
    found = {c.symbol.name: c for c in cmp.crossovers}
    # tokens as wide as the pixels: d = C·p² = 3·256 = 768 (ViT-B/16's embedding is square)
    assert found["d"].value == 768
    # the copy's 2·B·C·R² against the weights' C·p²·d: B = p²·d/(2·R²) = 196608/100352 = 96/49
    assert found["B"].value == Fraction(96, 49)


def test_the_sweep_and_the_figure():
    cmp = patch.analyse(patch.Config(res=16, patch=4, channels=3, dim=4))
    # the divisors of 16 in PATCHES
    assert [row["patch"] for row in cmp.sweep] == [1, 2, 4, 8, 16]
    # the product: 2·B·C·R²·d = 2·3·256·4 = 6144 at every p, the same on both sides
    assert {row["forward_matmul_flops"] for row in cmp.sweep} == {6144}
    assert {row["forward_matmul_ratio"] for row in cmp.sweep} == {1}
    # params C·p²·d + d at p = 8: 3·64·4 + 4 = 772
    assert cmp.sweep[3]["params"] == 772
    # linear moves 2·B·C·R²·e = 2·768·4 = 6144 bytes more at every p
    drawn = cmp.plot()
    conv, linear = (drawn[f"{s} forward_moved_bytes"][1] for s in patch.SIDES)
    assert [b - a for a, b in zip(conv, linear, strict=True)] == [6144] * 5
    assert drawn["tokens N"][1] == [256, 64, 16, 4, 1]


@settings(max_examples=12, deadline=None, derandomize=True)
@given(patch.examples())
def test_every_formula_against_the_counters_on_tiny_configs(cfg):
    cmp = patch.analyse(cfg)
    for side in patch.SIDES:
        assert_exact(cmp.sides[side], (*NAMES, "forward_moved_bytes", "copy_bytes"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--res", "225"], "--res 225 is not a multiple of --patch 16"),
        (["--tubelet", "2"], "--tubelet groups frames"),
        (["--frames", "5", "--tubelet", "2"], "--frames 5 is not a multiple of --tubelet 2"),
        (["--dim", "0"], "--dim must be a positive integer"),
    ],
)
def test_bad_input_is_one_line(args, message):
    assert_one_line_error(runner.invoke(app, ["patch", *args]), message)


def test_a_reshape_that_copies_nothing_claims_no_proof():
    """The proof traces sizes where the reshape copies (tests/test_proofs.py, patch[image]);
    one channel and 1×1 patches copy nothing, save no copy, and are not claimed proved."""
    from complexo import analyse

    copying = analyse("patch", res=8, patch=2, channels=3, dim=4)
    assert copying.sides["linear"].quantity("activation_bytes").proof
    # one channel, p = 1: (B, 1, R/1, 1, R/1, 1) -> (B, R, R, 1, 1, 1) moves nothing
    viewed = analyse("patch", res=8, patch=1, channels=1, dim=4)
    assert not any(q.proof for side in viewed.sides.values() for q in side.quantities)
