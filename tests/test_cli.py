"""The command line through typer's runner: the table, the JSON contract, bad input."""

import json

import pytest
from typer.testing import CliRunner

from complexo.cli import app

try:
    runner = CliRunner(mix_stderr=False)  # click < 8.2: keep stderr apart
except TypeError:
    runner = CliRunner()  # click ≥ 8.2 and typer's vendored click always do

SMALL = ["mhsa", "--seq", "256", "--dim", "64", "--heads", "4"]


def test_help_lists_every_analysis_with_one_line():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "mhsa" in result.output and "Multi-head self-attention" in result.output


def test_no_arguments_prints_help():
    result = runner.invoke(app, [])
    assert result.exit_code == 0, result.output
    assert "mhsa" in result.output


def test_table_shows_formula_value_counters_and_explains_gaps():
    result = runner.invoke(app, SMALL)
    assert result.exit_code == 0, result.output
    out = result.output
    for text in (
        "forward FLOPs",
        "of which matmuls",
        "activations saved for backward",
        "attention matrix",
        "FLOP = 2·MAC",
        "exact",
    ):
        assert text in out, text
    assert "aten::softmax (unsupported op): softmax" in out
    assert "all of it explained" in out and "NOT fully explained" not in out
    # attention matmuls overtake the projections at n = 2·d
    assert "at n = 2·d = 128; here n = 256, 2.00× the crossover" in out
    assert "O(B·d·n² + B·d²·n)" in out


def test_sdpa_names_the_ops_counters_skip():
    result = runner.invoke(app, [*SMALL, "--impl", "sdpa", "--causal"])
    assert result.exit_code == 0, result.output
    assert "aten::scaled_dot_product_attention (unsupported op)" in result.output
    assert "aten._scaled_dot_product_flash_attention_for_cpu (no FLOP formula" in result.output
    assert "causal" in result.output


def test_json_contract():
    result = runner.invoke(app, [*SMALL, "--batch", "2", "--dtype", "bf16", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["analysis"] == "mhsa"
    assert doc["config"] == {
        "batch": 2,
        "seq": 256,
        "dim": 64,
        "heads": 4,
        "dtype": "bf16",
        "impl": "naive",
        "causal": False,
        "bias": True,
    }
    q = doc["quantities"]
    for name in (
        "forward_flops",
        "forward_matmul_flops",
        "backward_flops",
        "params",
        "activation_bytes",
        "attention_matrix_bytes",
    ):
        assert set(q[name]) >= {"formula", "value", "unit", "measured"}
        assert set(q[name]["measured"]) == {"fvcore", "torch"}
        assert isinstance(q[name]["value"], int)
    # forward matmuls: 4 projections 4·2·B·n·d² + scores and A·V 2·2·B·n²·d
    assert q["forward_matmul_flops"]["value"] == 8 * 2 * 256 * 64**2 + 4 * 2 * 256**2 * 64
    assert q["forward_matmul_flops"]["measured"] == {
        "fvcore": q["forward_matmul_flops"]["value"],
        "torch": q["forward_matmul_flops"]["value"],
    }
    assert q["backward_flops"]["measured"]["fvcore"] is None
    assert q["params"] == {**q["params"], "unit": "param", "value": 4 * 64 * 64 + 4 * 64}
    # bf16: 2 bytes per element, B·h·n² probabilities
    assert q["attention_matrix_bytes"]["value"] == 2 * 2 * 4 * 256**2
    assert q["activation_bytes"]["unit"] == "byte"
    assert doc["crossovers"][0]["formula"] == "2*d"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dim", "100", "--heads", "16"], "--dim 100 is not divisible by --heads 16"),
        (["--seq", "0"], "--seq must be a positive integer"),
        (["--batch", "-3"], "--batch must be a positive integer"),
        (["--heads", "0"], "--heads must be a positive integer"),
        (["--impl", "flashy"], "'flashy' is not one of"),
        (["--dtype", "fp8"], "'fp8' is not one of"),
        (["--seq", "many"], "Invalid value for '--seq'"),
        (["--bogus"], "No such option"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args, message):
    result = runner.invoke(app, ["mhsa", *args])
    assert result.exit_code != 0
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not an escaped exception


def test_unknown_command_suggests_the_valid_ones():
    result = runner.invoke(app, ["mhas"])
    assert result.exit_code != 0
    assert result.stderr.strip() == (
        "error: unknown command 'mhas'; did you mean 'mhsa'? choose from: mhsa"
    )
