"""The command line through typer's runner: the table, the JSON contract, bad input."""

import io
import json

import pytest
from helpers import assert_one_line_error, runner

from complexo.analyses import ANALYSES
from complexo.cli import app

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
        "kv_heads": None,
        "window": None,
        "alibi": False,
        "pos": "none",
        "max_seq": None,
        "kv_seq": None,
        "kv_dim": None,
        "sram": 192,
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
        (["--impl", "flashy"], "unknown --impl 'flashy'; did you mean 'flash'?"),
        (["--dtype", "fp8"], "unknown --dtype 'fp8'"),
        (["--seq", "many"], "Invalid value for '--seq'"),
        (["--bogus"], "No such option"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args, message):
    result = runner.invoke(app, ["mhsa", *args])
    assert_one_line_error(result, message)


def test_unknown_command_suggests_the_valid_ones():
    result = runner.invoke(app, ["mhas"])
    assert result.exit_code != 0
    assert result.stderr.strip().startswith(
        "error: unknown command 'mhas'; did you mean 'mhsa'? choose from: "
    )
    for name in ANALYSES:
        assert name in result.stderr


LORA_SMALL = ["lora", "--arch", "gpt2", "--layers", "2", "--dim", "16", "--heads", "2"]
LORA_SMALL += ["--vocab", "50", "--ctx", "32", "--rank", "2"]


def test_lora_table_sets_full_beside_lora_and_says_why_the_step_is_not_much_cheaper():
    result = runner.invoke(app, LORA_SMALL)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in (
        "full",
        "lora",
        "lora/full",
        "trainable parameters",
        "training step FLOPs",
        "inference FLOPs, merged",
        "optimizer state",
        "by rank",
        "not",
        "cheaper",
    ):
        assert text in out, text
    # fvcore skips SDPA and counts LayerNorm: both named, nothing left unexplained
    assert "aten::scaled_dot_product_attention (unsupported op): attention" in out
    assert "aten::layer_norm (counted here, outside the formula)" in out
    assert "NOT fully explained" not in out
    assert "adapters as large as the matrices they adapt at r = d/2 = 8" in out


def test_lora_json_puts_both_sides_and_their_ratio_in_the_contract():
    result = runner.invoke(app, [*LORA_SMALL, "--targets", "q,v,mlp", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["analysis"] == "lora"
    assert doc["config"]["targets"] == ["q", "v", "mlp"] and doc["config"]["layers"] == 2
    names = (
        "params",
        "trainable_params",
        "checkpoint_bytes",
        "train_memory_bytes",
        "train_step_flops",
    )
    for side in ("full", "lora"):
        for name in names:
            q = doc[side]["quantities"][name]
            assert set(q) >= {"formula", "value", "unit", "measured"}
            assert q["measured"]["torch"] == q["value"], (side, name)
    full, lora = doc["full"]["quantities"], doc["lora"]["quantities"]
    for name in names:
        assert doc["ratio"][name] == lora[name]["value"] / full[name]["value"]
    # q, v: 2 adapters of 2·(16 + 16); mlp: 2·(16 + 64) twice; 2 layers: 2·(128 + 320) = 896
    assert lora["trainable_params"]["value"] == 896
    assert [row["rank"] for row in doc["sweep"]] == [1, 2, 4, 8, 16]


def test_lora_single_layer():
    result = runner.invoke(
        app,
        [
            "lora",
            "--in",
            "64",
            "--out",
            "32",
            "--rank",
            "4",
            "--seq",
            "8",
            "--precision",
            "fp32",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert "model" not in doc["config"] and doc["config"]["in_features"] == 64
    full, lora = doc["full"]["quantities"], doc["lora"]["quantities"]
    # full: 64·32 + 32 = 2080 params; LoRA: 4·(64 + 32) = 384 trained
    assert (full["trainable_params"]["value"], lora["trainable_params"]["value"]) == (2080, 384)
    # one step over 8 tokens: forward, dX and dW, 2·8·64·32 = 32768 each
    assert full["train_step_flops"]["value"] == 3 * 32768
    # fp32 adamw: weights, gradients, m, v at 4 bytes, and the saved input 8·64·4
    assert full["train_memory_bytes"]["value"] == 4 * 4 * 2080 + 8 * 64 * 4
    assert full["train_memory_bytes"]["measured"]["torch"] == full["train_memory_bytes"]["value"]


def test_lora_counts_gpt3_175b_on_the_meta_device():
    result = runner.invoke(app, ["lora", "--model", "gpt3-175b", "--rank", "4", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    full, lora = doc["full"]["quantities"], doc["lora"]["quantities"]
    assert full["params"]["measured"] == {"fvcore": 174_604_259_328, "torch": 174_604_259_328}
    # 96 layers × (q, v) × 4·(12288 + 12288)
    assert lora["trainable_params"]["value"] == 96 * 2 * 4 * 2 * 12288
    for side in (full, lora):
        for name in ("train_memory_bytes", "train_step_flops", "inference_flops_merged"):
            assert side[name]["measured"]["torch"] == side[name]["value"], name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rank", "0"], "--rank must be a positive integer, got 0"),
        (["--in", "16", "--out", "8", "--rank", "9"], "--rank 9 exceeds min(in, out) = 8"),
        (["--model", "gpt5"], "unknown --model 'gpt5'; did you mean 'gpt2'? choose from: gpt2,"),
        (["--model", "llama-7b", "--targets", "q,x"], "unknown --targets 'x'; choose from: q,"),
        (["--targets", "mpl"], "unknown --targets 'mpl'; did you mean 'mlp'?"),
        (
            ["--arch", "gpt2", "--layers", "2", "--dim", "10", "--heads", "3"],
            "--dim 10 is not divisible by --heads 3",
        ),
        (["--arch", "gptx", "--layers", "2", "--dim", "8", "--heads", "2"], "unknown --arch"),
        (["--layers", "2"], "a model without --model needs --dim, --heads"),
        (["--in", "16"], "a single layer needs both --in and --out"),
        (["--in", "16", "--out", "8", "--model", "gpt2"], "give either a layer"),
        (["--model", "gpt2", "--seq", "2048"], "--seq 2048 exceeds the 1024 learned positions"),
        (["--batch", "-1"], "--batch must be a positive integer"),
        (["--in", "0", "--out", "8"], "--in must be a positive integer"),
        (["--alpha", "0"], "--alpha must be positive"),
        (["--precision", "fp8"], "unknown --precision 'fp8'"),
    ],
)
def test_lora_bad_input_is_one_line_and_nonzero(args, message):
    result = runner.invoke(app, ["lora", *args])
    assert_one_line_error(result, message)


def test_compare_json_has_one_entry_per_resolution_with_each_models_contract():
    # `--res 64 128` leaves 128 to the positional words, as a shell user would type it
    result = runner.invoke(
        app,
        [
            "compare",
            "cnn",
            "vit",
            "--cnn",
            "resnet18",
            "--vit",
            "vit-ti16",
            "--res",
            "64",
            "128",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["analysis"] == "compare" and [r["res"] for r in doc["results"]] == [64, 128]
    for entry in doc["results"]:
        assert set(entry["models"]) == {"resnet18", "vit-ti16"}
        for model in entry["models"].values():
            assert model["config"]["res"] == entry["res"]
            for name in ("params", "forward_flops", "forward_matmul_flops", "activation_bytes"):
                q = model["quantities"][name]
                assert set(q) >= {"formula", "value", "unit", "measured"}
            assert (
                model["quantities"]["params"]["measured"]["torch"]
                == (model["quantities"]["params"]["value"])
            )
    labels = [c["label"] for c in doc["crossovers"]]
    assert "attention overtakes the projections and MLP" in labels
    assert "vit-ti16's forward FLOPs cross resnet18's" in labels


def test_compare_table_and_the_single_model_commands():
    result = runner.invoke(app, ["compare", "cnn", "vit", "--res", "224", "448"])
    assert result.exit_code == 0, result.output
    for text in (
        "resnet50",
        "vit-b16",
        "By resolution",
        "feature maps",
        "tokens",
        "O(B·R²·w²)",
        "O(B·L·R⁴·d + B·L·R²·d²)",
        "R = p·sqrt(2·d + f - 1)",
        "conv_flop_count",
    ):
        assert text in result.stdout, text
    assert "NOT fully explained" not in result.stdout
    for command in (["cnn", "--model", "resnet18", "--res", "64"], ["vit", "--model", "deit-s16"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
        assert "Why: the terms" in result.stdout and "exact" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["compare", "cnn", "vit", "--res", "300"],
            "--res 300 is not divisible by vit-b16's patch size 16; refused",
        ),
        (["compare", "cnn", "vit", "--res", "16"], "--res 16 is too small for resnet50"),
        (["compare", "cnn", "vit", "--cnn", "resnet5"], "unknown --cnn 'resnet5'; did you mean"),
        (["compare", "cnn", "vit", "--vit", "vit-b17"], "unknown --vit 'vit-b17'; did you mean"),
        (["compare", "cnn"], "compare takes the kinds to compare: 'cnn vit'"),
        (["compare", "cnn", "vitt"], "unknown kind 'vitt'; did you mean 'vit'? choose from"),
        (["compare", "cnn", "vit", "mlp"], "unknown kind 'mlp'; choose from: cnn, vit"),
        (["cnn", "--res", "32"], "BatchNorm in training mode needs more than one value"),
        (["cnn", "--res", "0"], "--res must be a positive integer"),
        (["vit", "--model", "vit-x16"], "unknown --model 'vit-x16'"),
        (["vit", "--batch", "0"], "--batch must be a positive integer"),
    ],
)
def test_vision_bad_input_is_one_line_and_nonzero(args, message):
    result = runner.invoke(app, args)
    assert_one_line_error(result, message)


@pytest.mark.parametrize("dtype", ["fp16", "bf16", "fp32", "int8"])
def test_kvcache_json_contract(dtype):
    args = [
        "kvcache",
        "--arch",
        "llama",
        "--layers",
        "2",
        "--dim",
        "32",
        "--heads",
        "4",
        "--kv-heads",
        "2",
        "--context",
        "100",
        "--batch",
        "2",
        "--dtype",
        dtype,
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["analysis"] == "kvcache" and doc["config"]["kv_heads"] == 2
    q = doc["quantities"]
    for name in (
        "kv_cache_bytes",
        "kv_cache_bytes_per_token",
        "decode_flops_per_token",
        "decode_flops_per_token_no_cache",
    ):
        assert q[name]["measured"]["torch"] == q[name]["value"], name
    # k and v, 2 layers, 2 kv heads of 8: 2·2·2·8 = 64 elements per token; int8 adds 2 bytes
    # of scale per (token, head) row: 2·2·2 rows
    per_token = {"fp32": 256, "fp16": 128, "bf16": 128, "int8": 64 + 2 * 8}[dtype]
    assert q["kv_cache_bytes_per_token"]["value"] == per_token
    assert q["kv_cache_bytes"]["value"] == 2 * 100 * per_token


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "llama-8b"], "unknown --model 'llama-8b'; did you mean 'llama-3-8b'?"),
        (
            ["--heads", "32", "--kv-heads", "5", "--model", "llama-7b"],
            "--heads 32 is not divisible by --kv-heads 5",
        ),
        (["--context", "0"], "--context must be a positive integer"),
        (["--model", "gpt2", "--context", "1024"], "leaves no learned position"),
        (["--gpu", "h100"], "unknown --gpu 'h100'; did you mean"),
        (["--gpu", "l4", "--device-memory", "24"], "--gpu or --device-memory, not both"),
        (["--dtype", "int4"], "unknown --dtype 'int4'"),
    ],
)
def test_kvcache_bad_input_is_one_line(args, message):
    result = runner.invoke(app, ["kvcache", *args])
    assert_one_line_error(result, message)


def test_durations_keep_three_figures_in_a_readable_unit():
    from complexo.units import duration

    assert [duration(s) for s in (1.0866, 0.0581, 3.73e-4, 4.913e-6)] == [
        "1.09 s",
        "58.1 ms",
        "373 µs",
        "4.91 µs",
    ]


def test_progress_shows_on_a_terminal_only_and_never_with_json(monkeypatch):
    # the library says what it is doing; the bar appears only under shown(), on a terminal's
    # stderr, and the command line turns it off for --json and --csv
    import io
    import sys

    from complexo import progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setenv("TERM", "xterm")  # conftest's dumb terminal shows no live display
    for enabled, tty in ((True, True), (False, True), (True, False)):
        err = Terminal() if tty else io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        with progress.shown(enabled), progress.task("timing", total=3) as advance:
            for _ in range(3):
                advance()
        assert ("timing" in err.getvalue()) == (enabled and tty), (enabled, tty)
    with progress.task("nothing shown") as advance:  # no bar up: a no-op
        advance(completed=5)
    seen = []
    real = progress.shown
    monkeypatch.setattr(progress, "shown", lambda enabled=True: seen.append(enabled) or real(False))
    for args in (["mhsa", "--seq", "8", "--dim", "8", "--heads", "2", "--no-check"], ["--version"]):
        assert runner.invoke(app, args).exit_code == 0
        assert runner.invoke(app, [*args, "--json"]).exit_code in (0, 2)
    assert seen == [True, False, True, False]


def shown_at(width: int, *renderables) -> str:
    from rich.console import Console

    out = Console(width=width, highlight=False, no_color=True, record=True, file=io.StringIO())
    out.print(*renderables)
    return out.export_text()


@pytest.mark.parametrize("width", [80, 160])
def test_tables_fit_the_terminal_and_never_break_a_word(width):
    # a ResNet's formulas carry long words (ceiling(R/32)²); at 80 columns they used to fold
    # inside one ('ceili'/'ng'), and every line overflowed; kvcache has dotted term groups
    from complexo.counting import unchecked

    with unchecked():
        cnn = ANALYSES["cnn"].analyse(ANALYSES["cnn"].make())
        kv = ANALYSES["kvcache"].analyse(ANALYSES["kvcache"].make(model="gpt2"))
    text = shown_at(width, cnn.render(), kv.render())
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    assert "ceili\n" not in text and "…" not in text
    for word in ("ceiling(R/32)²", "2176·D4·w²·ceiling(R/32)²", "activations"):
        assert word in text, word
    # kvcache's decode terms: shares of the decode step (as the summary's), not of all three
    # steps: 247 MFLOP of 285 MFLOP = 86.7%; memory terms are separate quantities, no shares
    decode = next(line for line in text.splitlines() if line.strip().startswith("weights (matmul)"))
    assert "247 MFLOP" in decode and "86.7%" in decode, decode
    kv_cache = next(line for line in text.splitlines() if line.strip().startswith("kv_cache "))
    assert kv_cache.split()[-1] != "%" and " — " in kv_cache, kv_cache
    # at 80 columns the counters' own values give way to one verdict line per counter
    mhsa = ANALYSES["mhsa"].analyse(ANALYSES["mhsa"].make(seq=64, dim=32, heads=4))
    text = shown_at(width, mhsa.render())
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    # forward 2·n·(4·d² + 2·d·n + 3·h·n + 2·d) = 2·64·9,024 = 1,155,072; the counters see the
    # matmuls 4·d·n·(2·d + n) = 4·32·64·128 = 1,048,576: 1,048,576/1,155,072 − 1 = −9.2%
    both = "fvcore -9.2% · torch -9.2%"
    assert (both in text) == (width >= 110) and "fvcore -9.2%" in text, text


@pytest.mark.parametrize("width", [80, 160])
def test_sweep_tables_split_at_the_terminals_width_without_truncating_headers(width):
    from complexo import sweep as sweeps
    from complexo.render_runs import render_sweep

    vary = sweeps.parse_vary("seq=32..256", points=None, step=None, log2=True)
    sweep = sweeps.run(ANALYSES["mhsa"], {"dim": 32, "heads": 4}, [vary])
    text = shown_at(width, render_sweep(sweep, "forward_flops"))
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    assert "…" not in text
    for label in ("forward", "FLOPs", "decoder's", "traffic", "counters", "gaps explained"):
        assert label in text, label
    # the mhsa sweep's 15 columns (seq, 13 quantities, the counters' verdict): 3 tables at 80
    # columns (the swept seq in each), 2 at 160; each table whole, none cropped
    parts = text.count("mhsa against seq")
    assert parts == (3 if width == 80 else 2), text
    assert sum(line.split()[:1] == ["seq"] for line in text.splitlines()) == parts


@pytest.mark.parametrize(
    ("words", "offered"),
    [
        ("complexo sw", ["sweep"]),  # the generated groups
        ("complexo sweep mh", ["mhsa"]),  # their generated subcommands
        ("complexo mhsa --impl ", ["naive", "sdpa", "flash"]),  # an option's choices
        ("complexo lora --model gpt2-", ["gpt2-medium", "gpt2-large", "gpt2-xl"]),
        ("complexo profile mhsa --thr", ["--threads"]),
    ],
)
def test_shell_completion_knows_the_generated_commands(words, offered):
    env = {
        "_COMPLEXO_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (not words.endswith(" "))),
    }
    result = runner.invoke(app, [], env=env, prog_name="complexo")
    assert result.exit_code == 0 and result.stdout.split() == offered, result.output


def test_completion_of_an_unknown_command_refuses_nothing():
    env = {
        "_COMPLEXO_COMPLETE": "complete_bash",
        "COMP_WORDS": "complexo bogus ",
        "COMP_CWORD": "2",
    }
    result = runner.invoke(app, [], env=env, prog_name="complexo")
    assert result.exit_code == 0 and "error" not in result.output


@pytest.mark.parametrize("width", [80, 160])
def test_two_sided_tables_fit_without_truncated_headers(width):
    from complexo.counting import unchecked

    with unchecked():
        conv = ANALYSES["conv"].analyse(ANALYSES["conv"].make())
    text = shown_at(width, conv.render(terms=True))
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    assert "…" not in text
    # the ratio's header whole at 160, wrapped after its slash at 80
    heads = [line for line in text.splitlines() if "standard:" in line]  # the header's lines
    assert heads and ("separable/standard" in heads[-1]) == (width == 160), heads
