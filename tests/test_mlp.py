"""The GELU MLP against a gated one: hand-derived values at small sizes, GPT-2's width, the
same-parameters width derived with sympy, and every formula against what the code did not
compute from it (FlopCounterMode, fvcore, autograd's saved tensors, the modules' parameters,
the bytes each op reads and writes), across random tiny configs."""

import json

import pytest
import sympy
import torch
import torch.nn.functional as F
from budget import examples
from helpers import assert_exact, assert_one_line_error, runner
from hypothesis import given, settings

from complexo.analyses import mlp
from complexo.blocks.mlp import GatedMLP, GeluMLP
from complexo.cli import app
from complexo.errors import ComplexoError
from complexo.measure import measure_torch
from complexo.presets import llama_mlp_width
from complexo.symbols import d, f, f_g


def values(cmp, side: str) -> dict[str, int]:
    return {q.name: q.value for q in cmp.sides[side].quantities}


# --- hand-derived values ---------------------------------------------------------------------


def test_gelu_mlp_without_bias_fp32():
    cmp = mlp.analyse(mlp.Config(batch=2, seq=3, dim=8, hidden=32, gated_hidden=20))
    # fc_in and fc_out: 2·B·n·d·f = 2·2·3·8·32 = 3072 each
    # GELU: 5·B·n·f = 5·2·3·32 = 960
    assert values(cmp, "gelu") == {
        "forward_flops": 2 * 3072 + 960,
        "forward_matmul_flops": 6144,
        # dX and dW of each matrix: 2·6144 = 12288; GELU's backward: 11·B·n·f = 11·192 = 2112
        "backward_flops": 12288 + 2112,
        "backward_matmul_flops": 12288,
        # 2·d·f = 2·8·32 = 512
        "params": 512,
        # (x: B·n·d + h: B·n·f + GELU(h): B·n·f)·e = (48 + 192 + 192)·4 = 1728
        "activation_bytes": 1728,
        # fc_in: (B·n·d + d·f + B·n·f)·e = (48 + 256 + 192)·4 = 1984; fc_out the same, 1984;
        # GELU reads h and writes a: 2·B·n·f·e = 2·192·4 = 1536
        "forward_moved_bytes": 1984 + 1984 + 1536,
        # the step's peak, at fc_out's dX (complexo/analyses/mlp_peak.py): weights 512·4 =
        # 2048, x 48·4 = 192, h and GELU(h) 2·192·4 = 1536, the output 192, out.sum() and its
        # seed 8, fc_out's dW 256·4 = 1024 and dX 192·4 = 768: 5768
        "training_peak_bytes": 2048 + 192 + 1536 + 192 + 8 + 1024 + 768,
    }


def test_swiglu_with_bias_bf16():
    cfg = mlp.Config(batch=2, seq=3, dim=8, hidden=32, gated_hidden=20, bias=True, dtype="bf16")
    cmp = mlp.analyse(cfg)
    # gate, up, down: 2·B·n·d·f_g = 2·2·3·8·20 = 1920 each
    # biases: B·n·f_g + B·n·f_g + B·n·d = 120 + 120 + 48 = 288
    # SiLU: 4·B·n·f_g = 4·120 = 480; the product: 1·120 = 120
    assert values(cmp, "gated") == {
        "forward_flops": 3 * 1920 + 288 + 480 + 120,
        "forward_matmul_flops": 5760,
        # dX, dW: 2·5760 = 11520; Σ dY: 288; SiLU: 9·120 = 1080; product: 2·120 = 240;
        # the two input gradients added: B·n·d = 48
        "backward_flops": 11520 + 288 + 1080 + 240 + 48,
        "backward_matmul_flops": 11520,
        # 3·d·f_g + 2·f_g + d = 480 + 40 + 8 = 528
        "params": 528,
        # (x: B·n·d + 4·B·n·f_g)·e = (48 + 480)·2 = 1056
        "activation_bytes": 1056,
        # gate, up: (48 + 160 + 20 + 120)·2 = 696 each; down: (120 + 160 + 8 + 48)·2 = 672;
        # SiLU: 2·120·2 = 480; product reads two, writes one: 3·120·2 = 720
        "forward_moved_bytes": 696 + 696 + 672 + 480 + 720,
        # the step's peak, at the product's backward: weights 528·2 = 1056, x 48·2 = 96, g,
        # SiLU(g), u 3·120·2 = 720 (the product freed by down_proj's backward), the output 96,
        # out.sum() and its seed 4, down_proj's dW, db (160 + 8)·2 = 336, its dX and the
        # product's two gradients 3·120·2 = 720: 3028
        "training_peak_bytes": 1056 + 96 + 720 + 96 + 4 + 336 + 720,
    }
    # the counters count the matmuls: the element-wise terms are the gap, op by op
    fwd = cmp.sides["gated"].quantity("forward_flops")
    assert fwd.measured == {"fvcore": 5760, "torch": 5760}
    gaps = {(g.counter, g.op): (g.terms, g.value) for g in fwd.gaps}
    assert gaps[("torch", "aten.silu")] == (("silu",), 480)
    assert gaps[("torch", "aten.mul")] == (("gate_product",), 120)
    assert gaps[("fvcore", "aten::silu")] == (("silu",), 480)
    assert sum(v for (c, _), (_, v) in gaps.items() if c == "torch") == 288 + 480 + 120


def test_geglu_gates_with_gelu():
    cmp = mlp.analyse(mlp.Config(batch=1, seq=2, dim=4, hidden=12, gated="geglu", gated_hidden=8))
    gated = values(cmp, "gated")
    # matmuls: 3·2·B·n·d·f_g = 3·2·1·2·4·8 = 384; GELU 5·16 = 80; product 16
    assert gated["forward_flops"] == 384 + 80 + 16
    # 2·384 = 768; GELU's backward 11·16 = 176; product 2·16 = 32; dX sum B·n·d = 8
    assert gated["backward_flops"] == 768 + 176 + 32 + 8


def test_autograd_keeps_two_hidden_tensors_for_gelu_and_four_for_a_gate():
    cfg = mlp.Config(batch=2, seq=3, dim=8, hidden=32, gated_hidden=20)
    for side, hidden in (("gelu", 2 * 6 * 32), ("gated", 4 * 6 * 20)):
        module, x = mlp.build(cfg, side)
        run = measure_torch(lambda m=module, x=x: m(x), list(module.parameters()))
        numels = sorted(sympy.prod(shape) for shape, _, _ in run.saved)
        # x: B·n·d = 48, then the hidden tensors
        assert numels[0] == 48 and sum(numels[1:]) == hidden


# --- GPT-2's width, and the same-parameters width ---------------------------------------------


def test_gpt2_width_gelu_against_llama_rule_swiglu():
    cmp = mlp.analyse(mlp.Config(batch=1, seq=1, dim=768))
    gelu, gated = values(cmp, "gelu"), values(cmp, "gated")
    # f = 4·768 = 3072; f_g = ⌊2·3072/3⌋ = 2048, a multiple of 256 already
    assert (cmp.sides["gated"].values[f_g], cmp.sides["gelu"].values[f]) == (2048, 3072)
    # 2·d·f = 2·768·3072 = 4718592 = 3·d·f_g = 3·768·2048
    assert gelu["params"] == gated["params"] == 4718592
    # per token: 4·d·f + 5·f = 9437184 + 15360 and 6·d·f_g + (4 + 1)·f_g = 9437184 + 10240
    assert (gelu["forward_flops"], gated["forward_flops"]) == (9452544, 9447424)
    # per token: (d + 2·f)·4 = 6912·4 = 27648 and (d + 4·f_g)·4 = 8960·4 = 35840
    assert (gelu["activation_bytes"], gated["activation_bytes"]) == (27648, 35840)


def test_same_parameters_at_two_thirds_of_f_and_eight_thirds_of_d():
    width = mlp.same_params_width()
    assert width == 2 * f / 3 and width.subs(f, 4 * d) == sympy.Rational(8, 3) * d
    # with biases: 3·d·f_g + 2·f_g + d = 2·d·f + f + d  ⇔  f_g = (2·d + 1)·f/(3·d + 2)
    assert sympy.simplify(mlp.same_params_width(bias=True) - (2 * d + 1) * f / (3 * d + 2)) == 0
    # LLaMA-7B: ⌊2·16384/3⌋ = 10922, rounded up to a multiple of 256: 43·256 = 11008
    assert mlp.gated_width(4 * 4096) == llama_mlp_width(4096) == 11008


def test_match_params_gives_equal_parameters_when_two_thirds_of_f_is_whole():
    # f = 30: f_g = 20; 2·d·f = 2·8·30 = 480 = 3·d·f_g = 3·8·20
    cmp = mlp.analyse(mlp.Config(dim=8, hidden=30, seq=2, match_params=True))
    assert values(cmp, "gelu")["params"] == values(cmp, "gated")["params"] == 480
    # with biases f_g = 17·32/26 = 20.92 -> 21: 3·8·21 + 2·21 + 8 = 554 against 512 + 32 + 8 = 552
    cmp = mlp.analyse(mlp.Config(dim=8, hidden=32, seq=2, match_params=True, bias=True))
    assert (values(cmp, "gelu")["params"], values(cmp, "gated")["params"]) == (552, 554)


def test_crossovers_in_the_gated_width():
    cmp = mlp.analyse(mlp.Config(batch=1, seq=4, dim=16))
    params, flops, saved = cmp.crossovers
    # parameters 3·d·f_g = 2·d·f: f_g = 2·f/3 = 2·64/3
    assert (params.expr, params.value) == (2 * f / 3, sympy.Rational(128, 3))
    # forward: 6·d·f_g + 5·f_g = 4·d·f + 5·f  ⇔  f_g = f·(4·d + 5)/(6·d + 5) = 64·69/101
    assert sympy.simplify(flops.expr - f * (4 * d + 5) / (6 * d + 5)) == 0
    assert flops.value == sympy.Rational(64 * 69, 101)
    # saved: 4·B·n·f_g = 2·B·n·f  ⇔  f_g = f/2 = 32
    assert (saved.expr, saved.value) == (f / 2, 32)


# --- formulas against measurements -----------------------------------------------------------


@settings(max_examples=examples(10, 25))
@given(mlp.examples())
def test_every_formula_equals_the_counters_or_its_gap_is_explained(cfg):
    cmp = mlp.analyse(cfg)
    for side in cmp.sides.values():
        for q in side.quantities:
            for counter, reading in q.measured.items():
                if reading is None or reading == q.value:
                    continue
                gaps = [g for g in q.gaps if g.counter == counter]
                assert gaps and all(g.reason != "unexplained" for g in gaps), q
                assert all(not side.model.term(q.kind, t).matmul for g in gaps for t in g.terms)
                assert sum(g.value for g in gaps) == q.value - reading
        assert_exact(side)


# --- the reference blocks --------------------------------------------------------------------


def test_the_gated_block_is_down_of_act_gate_times_up():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    for gated, act in (("swiglu", lambda z: z * torch.sigmoid(z)), ("geglu", F.gelu)):
        m = GatedMLP(8, 20, gated, bias=True).double()
        g, u = x @ m.gate_proj.weight.T + m.gate_proj.bias, x @ m.up_proj.weight.T + m.up_proj.bias
        expected = (act(g) * u) @ m.down_proj.weight.T + m.down_proj.bias
        torch.testing.assert_close(m(x), expected)
    m = GeluMLP(8, 32).double()
    h = x @ m.fc_in.weight.T + m.fc_in.bias
    gelu = 0.5 * h * (1 + torch.erf(h / 2**0.5))  # exact GELU: x·Φ(x)
    torch.testing.assert_close(m(x), gelu @ m.fc_out.weight.T + m.fc_out.bias)


# --- the contract ----------------------------------------------------------------------------


def test_json_has_both_sides_and_every_gap_explained():
    doc = mlp.analyse(mlp.Config(seq=4, dim=32, bias=True)).to_json()
    json.dumps(doc)
    assert doc["analysis"] == "mlp" == mlp.ANALYSIS.name
    assert set(doc["ratio"]) == {*(q.name for q in mlp.QUANTITIES), "training_peak_bytes"}
    for side in mlp.SIDES:
        for q in doc[side]["quantities"].values():
            assert all(g["reason"] != "unexplained" for g in q["gaps"]), q
    # with biases: 3·d·f_g + 2·f_g + d = 2·d·f + f + d  ⇔  f_g = (2·d + 1)·f/(3·d + 2)
    assert doc["crossovers"][0]["formula"] == "f*(2*d + 1)/(3*d + 2)"


def test_the_command_prints_both_sides():
    result = runner.invoke(app, ["mlp", "--dim", "64", "--seq", "4", "--gated", "geglu"])
    assert result.exit_code == 0, result.output
    assert "gelu vs gated" in result.stdout and "same parameters" in result.stdout


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"match_params": True, "gated_hidden": 8}, "--match-params chooses f_g itself"),
        ({"dim": 0}, "--dim must be a positive integer, got 0"),
        ({"hidden": -1}, "--hidden must be a positive integer, got -1"),
        ({"gated": "reglu"}, "unknown --gated 'reglu'"),
    ],
)
def test_bad_values_are_refused_in_one_line(values, message):
    with pytest.raises(ComplexoError) as err:
        mlp.ANALYSIS.make(**values)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_command_refuses_both_width_options_in_one_line():
    result = runner.invoke(app, ["mlp", "--match-params", "--gated-hidden", "8"])
    assert_one_line_error(result, "--match-params chooses f_g itself")


@pytest.mark.parametrize("mode", ["forward", "train"])
def test_profile_rows_time_each_layer_and_show_the_elementwise_ops_memory_bound(mode):
    """A real CPU run of both sides: a row per linear layer (its range) and per element-wise op,
    their FLOPs and fewest bytes derived by hand; the forward's peak is the formula's."""
    from complexo import profile as profiling
    from complexo.analyses.mlp import ANALYSIS

    cfg = mlp.Config(batch=1, seq=4, dim=8, hidden=32, gated_hidden=16)
    prof = profiling.run(ANALYSIS, cfg, device="cpu", mode=mode, warmup=0, repeat=1)
    gelu, gated = prof.sides["gelu"].by_term, prof.sides["gated"].by_term
    # fc_in: 2·B·n·d·f = 2·1·4·8·32 = 2048 FLOPs; x, W, h: (4·8 + 8·32 + 4·32)·4 = 1664 bytes
    assert (gelu["fc_in"]["flops"], gelu["fc_in"]["bytes"]) == (2048, 1664)
    # GELU: 5 per element of h, 5·128 = 640 FLOPs; h read, a written: 2·128·4 = 1024 bytes
    assert (gelu["gelu"]["flops"], gelu["gelu"]["bytes"]) == (640, 1024)
    # SiLU: 4 per element of g, 4·(4·16) = 256 FLOPs, 2·64·4 = 512 bytes; the product: 64 FLOPs
    # against a, u read and written 3·64·4 = 768 bytes
    assert (gated["silu"]["flops"], gated["silu"]["bytes"]) == (256, 512)
    assert (gated["gate product"]["flops"], gated["gate product"]["bytes"]) == (64, 768)
    for rows in (gelu, gated):
        assert all(r["measured_s"] > 0 for name, r in rows.items() if not name.endswith("(step)"))
    assert gelu["gelu"]["intensity"] == 0.625 and gated["gate product"]["intensity"] < 0.1
    if mode == "forward":
        # weights 2·8·32·4 = 2048 and x 32·4 = 128, given; h, GELU(h), y: (2·128 + 32)·4 = 1152
        assert prof.sides["gelu"].memory_peak == prof.sides["gelu"].memory_predicted == 3328
