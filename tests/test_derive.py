"""complexo derive (formulas from a symbolic trace) and complexo count (numbers at fixed sizes),
on the blocks of tests/blocks_for_derive.py, loaded by path as a user's file is. Every expected
value is written as its arithmetic first."""

import json
from pathlib import Path

import pytest
import sympy
from helpers import assert_one_line_error, runner

from complexo.cli import app

FILE = Path(__file__).parent / "blocks_for_derive.py"
MLP, ATT = f"{FILE}:MLP", f"{FILE}:SelfAttention"
B, n, d, f, h, hs = (
    sympy.Symbol(x, integer=True, positive=True) for x in ["B", "n", "d", "f", "h", "hs"]
)
NAMES = {str(s): s for s in (B, n, d, f, h, hs)}


def run_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def formula(doc: dict, name: str) -> sympy.Expr:
    """A quantity's formula parsed back in the user's names."""
    return sympy.sympify(doc["quantities"][name]["formula"], locals=NAMES)


@pytest.fixture(scope="module")
def mlp() -> dict:
    return run_json("derive", MLP, "--ctor", "d,f", "--input", "B,n,d")


def test_mlp_formulas_in_the_users_names(mlp):
    # up (d -> f) and down (f -> d), each on B·n tokens: B·n·d·f MACs = 2·B·n·d·f FLOPs each
    assert formula(mlp, "forward_flops") == 2 * (2 * B * n * d * f)
    # the backward of each: dX and dW, each as large as the forward (the input needs a gradient)
    assert formula(mlp, "backward_flops") == 2 * 2 * (2 * B * n * d * f)
    assert mlp["by_op"]["forward"] == {"aten.addmm": str(4 * B * n * d * f)}
    # weights d·f and f·d, biases f and d
    assert formula(mlp, "params") == (d * f + f) + (f * d + d)
    # float32, 4 bytes: the input of up (B·n·d), GELU's input and its output (B·n·f each)
    assert formula(mlp, "saved_bytes") == sympy.expand(4 * (B * n * d + 2 * B * n * f))
    assert mlp["guards"] == [] and mlp["pinned"] == {}
    assert mlp["quantities"]["training_flops"]["big_o"] == "O(B·d·f·n)"


def test_mlp_json_round_trips_and_latex_is_sympy_latex(mlp):
    for q in mlp["quantities"].values():
        expr = sympy.sympify(q["formula"], locals=NAMES)
        assert q["latex"] == sympy.latex(expr)
        assert expr.subs({NAMES[k]: v for k, v in mlp["at"].items()}) == q["value"]
    # the default sample sizes: distinct primes, never 0 or 1, in order of appearance
    assert mlp["hints"] == {"d": 2, "f": 3, "B": 5, "n": 7}


def test_mlp_text_output_names_convention_and_dominant_term():
    result = runner.invoke(app, ["derive", MLP, "--ctor", "d,f", "--input", "B,n,d"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "FLOP = 2·MAC" in out and "forward_flops              4·B·d·f·n" in out
    assert "dominant term at these values: 12·B·d·f·n (100% of training FLOPs)" in out
    assert "holds for: every positive size" in out


def test_at_equals_count_equals_flopcountermode_on_a_real_meta_module():
    import torch
    from blocks_for_derive import MLP as Block
    from torch.utils.flop_counter import FlopCounterMode

    sizes = {"B": 3, "n": 10, "d": 16, "f": 24}
    at = ",".join(f"{k}={v}" for k, v in sizes.items())
    derived = run_json("derive", MLP, "--ctor", "d,f", "--input", "B,n,d", "--at", at)
    counted = run_json("count", MLP, "--ctor", "16,24", "--input", "3,10,16")
    with torch.device("meta"):
        block, x = Block(16, 24), torch.empty(3, 10, 16, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        y = block(x)
        forward = counter.get_total_flops()
        y.sum().backward()
    # 4·B·n·d·f = 4·3·10·16·24 forward, twice that backward
    assert 4 * 3 * 10 * 16 * 24 == forward == 46080
    q = derived["quantities"]
    assert q["forward_flops"]["value"] == counted["torch_forward"]["total"] == forward
    assert q["backward_flops"]["value"] == counted["torch_backward"]["total"]
    assert counted["torch_backward"]["total"] == counter.get_total_flops() - forward == 2 * 46080
    assert counted["fvcore_forward"]["total"] == forward  # fvcore's linear MACs, doubled
    assert q["params"]["value"] == counted["params"] == 2 * 16 * 24 + 16 + 24
    assert q["saved_bytes"]["value"] == counted["saved_bytes"] == 4 * 3 * 10 * (16 + 2 * 24)


@pytest.mark.slow
def test_attention_with_d_and_h_independent_records_the_divisibility_guard():
    doc = run_json(
        "derive", ATT, "--ctor", "d,h", "--input", "B,n,d", "--dims", "d=12,h=3",
        "--at", "B=2,n=8,d=16,h=4",
    )  # fmt: skip
    assert "Eq(Mod(d, h), 0)" in doc["guards"]
    # every guard parses back in the user's names, and holds at the sample sizes
    hints = {NAMES[k]: v for k, v in doc["hints"].items()}
    assert all(sympy.sympify(g, locals=NAMES).subs(hints) for g in doc["guards"])
    # qkv 2·B·n·d·3d and out 2·B·n·d², QKᵀ and AV 2·B·n²·(d/h) per head, h heads
    fwd = 2 * B * n * d * 3 * d + 2 * B * n * d**2 + 2 * (2 * B * n**2 * (d / h) * h)
    assert sympy.expand(formula(doc, "forward_flops") - fwd) == 0
    assert doc["quantities"]["forward_flops"]["value"] == 8 * 2 * 8 * 16**2 + 4 * 2 * 8**2 * 16
    # saved, float32: x, q, k, v, the attention matrix (B·h·n²), and the heads' output
    saved = 4 * (5 * B * n * d + B * h * n**2)
    assert sympy.expand(formula(doc, "saved_bytes") - saved) == 0
    assert formula(doc, "params") == 3 * d * d + 3 * d + d * d + d


@pytest.mark.slow
def test_attention_with_head_size_symbol_needs_no_guard_and_matches_count():
    doc = run_json(
        "derive", ATT, "--ctor", "h*hs,h", "--input", "B,n,h*hs", "--at", "B=2,n=8,h=4,hs=4"
    )
    d_ = h * hs
    fwd = 8 * B * n * d_**2 + 4 * B * n**2 * d_
    assert sympy.expand(formula(doc, "forward_flops") - fwd) == 0
    assert [g for g in doc["guards"] if "Mod" in g] == []
    counted = run_json("count", ATT, "--ctor", "16,4", "--input", "2,8,16")
    assert doc["quantities"]["forward_flops"]["value"] == counted["torch_forward"]["total"]
    assert doc["quantities"]["backward_flops"]["value"] == counted["torch_backward"]["total"]
    assert doc["quantities"]["saved_bytes"]["value"] == counted["saved_bytes"]


def test_count_names_each_counter_per_op_and_the_peak_memory():
    result = runner.invoke(app, ["count", MLP, "--ctor", "1024,4096", "--input", "8,4096,1024"])
    assert result.exit_code == 0, result.output
    out = result.output
    # 4·B·n·d·f = 4·8·4096·1024·4096 at full size, on meta: nothing allocated
    assert "aten::linear" in out and "aten.addmm" in out and "aten.mm" in out
    assert f"{4 * 8 * 4096 * 1024 * 4096:,}" in out
    assert "fvcore and torch agree (forward)" in out
    assert "peak training memory" in out and "MemTracker" in out


def test_a_block_that_cannot_be_traced_symbolically_gets_one_line_and_count_still_works():
    name = f"{FILE}:CachedPositions"
    result = runner.invoke(app, ["derive", name, "--ctor", "d", "--input", "B,n,d"])
    assert_one_line_error(result, "cannot trace CachedPositions with symbolic sizes")
    assert "unhashable" in result.stderr and "blocks_for_derive.py:" in result.stderr
    counted = runner.invoke(app, ["count", name, "--ctor", "8", "--input", "2,5,8"])
    assert counted.exit_code == 0, counted.output
    assert f"{2 * 2 * 5 * 8 * 8:,}" in counted.output  # the projection: 2·B·n·d·d


def test_control_flow_on_tensor_values_is_one_line_for_both_commands():
    name = f"{FILE}:BranchOnValues"
    derived = runner.invoke(app, ["derive", name, "--ctor", "d", "--input", "B,n,d"])
    assert_one_line_error(derived, "its control flow depends on tensor values")
    assert "if x.sum() > 0" in derived.stderr
    counted = runner.invoke(app, ["count", name, "--ctor", "8", "--input", "2,5,8"])
    assert_one_line_error(counted, "cannot be called on meta tensors")


def test_several_inputs_are_separated_by_semicolons():
    m = sympy.Symbol("m", integer=True, positive=True)
    doc = run_json("derive", f"{FILE}:Cross", "--ctor", "d", "--input", "B,n,d;B,m,d")
    # the projection 2·B·n·d², then (B, n, d) @ (B, d, m): 2·B·n·d·m
    expected = 2 * B * n * d**2 + 2 * B * n * d * m
    assert sympy.sympify(doc["quantities"]["forward_flops"]["formula"], {"m": m, **NAMES}) == (
        expected
    )


def test_a_size_pinned_by_the_trace_is_reported_with_the_line_that_pinned_it():
    doc = run_json("derive", f"{FILE}:FloatScale", "--ctor", "d", "--input", "B,n,d")
    # d's sample value is 2 (the first prime); the formula is then 2·B·n·d² at d = 2 only
    assert list(doc["pinned"].values()) == [2]
    assert "blocks_for_derive.py" in next(iter(doc["pinned"]))
    assert formula(doc, "forward_flops") == 2 * B * n * 2 * 2


@pytest.mark.slow
def test_torchs_own_transformer_layer_traces_with_its_init_and_literal_arguments():
    doc = run_json(
        "derive", "torch.nn:TransformerEncoderLayer", "--ctor", "d,h,f,0.0,batch_first=True",
        "--input", "B,n,d", "--dims", "d=12,h=3,f=20",
    )  # fmt: skip
    assert doc["pinned"] == {}  # nn.init's fills skipped even where imported by name
    # q, k, v and out projections 4·2·B·n·d², the MLP 2·2·B·n·d·f, QKᵀ and AV 2·2·B·n²·d
    fwd = 8 * B * n * d**2 + 4 * B * n * d * f + 4 * B * n**2 * d
    assert sympy.expand(formula(doc, "forward_flops") - fwd) == 0
    assert "Eq(Mod(d, h), 0)" in doc["conditions"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["derive", "nope.py:MLP", "--input", "B"], "no such file: nope.py"),
        (["derive", f"{FILE}:Nope", "--input", "B"], "has no Nope; nn.Module classes there"),
        (["derive", f"{FILE}:NotABlock", "--input", "B"], "is not an nn.Module subclass"),
        (["derive", str(FILE), "--input", "B"], "expected FILE.py:NAME"),
        (["derive", "no_such_package.mod:X", "--input", "B"], "cannot import module"),
        (["derive", MLP, "--ctor", "d", "--input", "B,n,d"], "MLP(d) failed: TypeError"),
        (["derive", MLP, "--ctor", "d,f+", "--input", "B,n,d"], "cannot read 'f+' as a size"),
        (["derive", MLP, "--ctor", "d,f", "--input", "B,n,d", "--at", "q=3"], "q not in"),
        (["derive", MLP, "--ctor", "d,f", "--input", "B,n,d", "--dims", "d=1"], "specialises"),
        (["derive", MLP, "--ctor", "d,f", "--input", "B,n,d", "--dims", "d"], "NAME=VALUE"),
        (["derive", ATT, "--ctor", "d,h", "--input", "B,n,d"], "sizes tried: d=2, h=3"),
        (["count", MLP, "--ctor", "4,5", "--input", "2,x,4"], "is not a shape"),
        (["count", MLP, "--ctor", "4,5", "--input", "2,3,7"], "MLP failed on meta"),
        (["count", MLP, "--ctor", "4,5", "--input", "2,3,4", "--optimizer", "adma"], "adam"),
    ],
)
def test_bad_input_is_one_line(args, message):
    assert_one_line_error(runner.invoke(app, args), message)


def test_a_floor_that_is_a_ceiling_reads_as_one():
    """A strided convolution's output side ⌊(R + 2·1 − 3)/2⌋ + 1 = ⌊R/2 − 1/2⌋ + 1 is ⌈R/2⌉
    for every integer R: derive shows the ceiling."""
    doc = run_json("derive", f"{FILE}:StridedConv", "--ctor", "C,K", "--input", "B,C,R,R")
    C, K, R = (sympy.Symbol(x, integer=True, positive=True) for x in "CKR")
    got = sympy.sympify(
        doc["quantities"]["forward_flops"]["formula"], locals={"C": C, "K": K, "R": R, "B": B}
    )
    # (B·K·⌈R/2⌉², each output a 3·3·C dot product): 2·9·B·C·K·⌈R/2⌉² FLOPs
    assert sympy.expand(got - 18 * B * C * K * sympy.ceiling(R / 2) ** 2) == 0
    assert "floor" not in doc["quantities"]["forward_flops"]["formula"]


def test_f_pad_by_symbolic_amounts_traces_as_its_decomposition():
    """F.pad by k − 1 (a size): constant_pad_nd's meta kernel takes concrete amounts only, so the
    trace runs torch's decomposition of it, and the counters still see the pad itself."""
    doc = run_json("derive", f"{FILE}:CausalConv", "--ctor", "C,K", "--input", "B,C,n")
    C, K = (sympy.Symbol(x, integer=True, positive=True) for x in "CK")
    names = {"C": C, "K": K, "B": B, "n": n}
    got = {q: sympy.sympify(v["formula"], locals=names) for q, v in doc["quantities"].items()}
    # n + K − 1 padded, n − K + 1 + K − 1 = n outputs, each a K·C dot product per channel:
    # 2·B·C·C·K·n FLOPs
    assert sympy.expand(got["forward_flops"] - 2 * B * C**2 * K * n) == 0
    # the padded input, B·C·(n + K − 1) float32 values (4 bytes), saved for dW
    assert sympy.expand(got["saved_bytes"] - 4 * B * C * (n + K - 1)) == 0
    assert doc["pinned"] == {} and doc["guards"] == []
    # the counters saw the pad itself (no FLOP formula; a copy, no element-wise arithmetic),
    # not the decomposition's ops
    assert (
        "aten.constant_pad_nd" in doc["uncounted_ops"] and "aten.full" not in doc["uncounted_ops"]
    )
    assert doc["no_elementwise_convention"] == []


def test_f_unfold_keeps_batch_channels_and_side_symbolic():
    """F.unfold's im2col pins every size when run as itself; as its decomposition, B, C and R
    stay symbolic (its kernel size and stride are the literal 3 and 2 here: int[2] in its
    schema)."""
    doc = run_json("derive", f"{FILE}:Im2col", "--ctor", "C,K", "--input", "B,C,R,R")
    C, K, R = (sympy.Symbol(x, integer=True, positive=True) for x in "CKR")
    names = {"C": C, "K": K, "R": R, "B": B}
    got = {q: sympy.sympify(v["formula"], locals=names) for q, v in doc["quantities"].items()}
    # (B·⌈R/2⌉², 9·C) columns times a (9·C, K) weight: 2·9·B·C·K·⌈R/2⌉² FLOPs
    assert sympy.simplify(got["forward_flops"] - 18 * B * C * K * sympy.ceiling(R / 2) ** 2) == 0
    # backward: dW = colsᵀ·dY and dcols = dY·Wᵀ, each as large; col2im folds dcols, one add per
    # column element (complexo's convention): 9·B·C·⌈R/2⌉²
    assert sympy.simplify(got["backward_flops"] - 36 * B * C * K * sympy.ceiling(R / 2) ** 2) == 0
    ew = got["backward_elementwise_flops"]
    assert sympy.simplify(ew - 9 * B * C * sympy.ceiling(R / 2) ** 2) == 0
    assert doc["pinned"] == {} and "aten.im2col" in doc["uncounted_ops"]


def test_elementwise_flops_by_complexos_conventions_beside_the_matmuls(mlp):
    """The MLP's element-wise work, counted op by op with complexo's per-element costs: the two
    bias adds (1 per output element: B·n·f and B·n·d), GELU 5 per element; backward, the bias
    gradients Σ dY (1 per element of dY: B·n·f + B·n·d) and GELU's backward 11 per element."""
    assert formula(mlp, "forward_elementwise_flops") == sympy.expand(
        B * n * f + B * n * d + 5 * B * n * f
    )
    assert formula(mlp, "backward_elementwise_flops") == sympy.expand(
        B * n * f + B * n * d + 11 * B * n * f
    )
    assert mlp["by_op"]["forward_elementwise"]["aten.gelu"] == str(5 * B * f * n)
    assert mlp["no_elementwise_convention"] == []
    # the matmul totals are unchanged by it: 2 products, 2·B·n·d·f each
    assert formula(mlp, "forward_flops") == 4 * B * n * d * f
