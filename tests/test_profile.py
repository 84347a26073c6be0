"""Profiling: the CPU path runs here for real (torch.profiler, host clock); the CUDA path is
marked and runs only where a GPU is present."""

import json

import pytest
import torch
from helpers import runner

from complexo import profile as profiling
from complexo.analyses.kvcache_profile import profile_kvcache
from complexo.analyses.lora_profile import profile_lora
from complexo.analyses.mhsa import Config
from complexo.analyses.mhsa_profile import profile_mhsa
from complexo.analyses.vision_profile import profile_image
from complexo.cli import app
from complexo.cost import Kind, evaluate
from complexo.counting import unchecked
from complexo.errors import ComplexoError
from complexo.profile.core import _datasheet_match
from complexo.profile.trace import _outside, _profiled, _training_step
from complexo.symbols import e

SMALL = Config(batch=1, seq=64, dim=32, heads=4)


def cuda(test):
    """Marked `cuda` (`pytest -m cuda` selects these) and skipped without a CUDA device."""
    skip = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
    return pytest.mark.cuda(skip(test))


@pytest.mark.parametrize("impl", ["naive", "sdpa"])
@pytest.mark.parametrize("mode", ["forward", "train"])
def test_cpu_profile_times_every_term_the_profiler_saw(impl, mode, tmp_path):
    # d = 128: at SMALL's d = 32 a loaded machine once ranked SDPA's training step's addmm
    # below the optimizer's and autograd's bookkeeping, out of the top ops checked below
    cfg = Config(**{**SMALL.__dict__, "impl": impl, "seq": 128, "dim": 128})
    prof = profile_mhsa(
        cfg,
        device="cpu",
        mode=mode,
        warmup=1,
        repeat=3,
        trace=str(tmp_path / "t.json"),
        root=tmp_path,
    )
    assert len(prof.times) == 3 and all(t > 0 for t in prof.times)
    groups = {
        "naive": {"projections", "QKᵀ and A·V", "scale", "softmax"},
        "sdpa": {"projections", "attention kernel"},
    }[impl]
    if mode == "train":
        groups |= {"forward (step)", "backward (step)", "optimizer (step)"}
    assert set(prof.by_term) == groups
    assert all(row["measured_s"] > 0 for row in prof.by_term.values())
    assert sum(row["share"] for row in prof.by_term.values()) > 0
    # the top ops by their own time, longest first; the matrix products among them
    assert 0 < len(prof.kernels) <= profiling.TOP_KERNELS
    assert [t for _, t in prof.kernels] == sorted((t for _, t in prof.kernels), reverse=True)
    top = {name for name, _ in prof.kernels}
    assert ({"aten::addmm", "aten::bmm"} if impl == "naive" else {"aten::addmm"}) <= top, top
    # the groups' FLOPs are the formula's forward terms (less the bias adds inside addmm)
    terms = [r for name, r in prof.by_term.items() if not name.endswith("(step)")]
    assert sum(r["flops"] for r in terms) <= prof.flops
    if mode == "train":  # the phases: the step's forward and backward FLOPs, all of them
        forward = prof.by_term["forward (step)"]["measured_s"]
        assert sum(r["measured_s"] for r in terms) <= forward  # the terms: inside the forward
        phases = [r for name, r in prof.by_term.items() if name.endswith("(step)")]
        assert sum(r["flops"] or 0 for r in phases) == prof.flops
        assert prof.by_term["optimizer (step)"]["flops"] is None  # element-wise, not counted
    assert json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    if mode == "forward":  # the rest of the iteration: the ops no row covers, named
        # measured from the allocation record: the formula's peak, but for the naive scale's
        # Python scalar (an 8-byte fp64 CPU tensor)
        assert 0 <= prof.memory_peak - prof.memory_predicted <= (8 if impl == "naive" else 0)
        assert_other_ops_partition(prof)
        ops = {op: terms for op, _, terms in prof.outside["ops"]}
        assert "aten::linear" in ops and ops["aten::linear"] == []  # dispatches to addmm
        if impl == "naive":  # merging the heads copies the transposed (B, h, n, hs) output
            assert "aten::copy_" in ops and ops["aten::copy_"] == []
    else:  # a term's ops sum over the whole step there: no partition to take the rest of
        assert prof.outside is None
    doc = prof.to_json()
    assert (
        doc["achieved_flops_per_s"] == prof.flops / prof.median
        and doc["torch"] == torch.__version__
    )


def assert_other_ops_partition(prof):
    """The rows and "other ops" add up to the profiled iteration; no named op is a row's."""
    other, rows = prof.outside, [r for r in prof.by_term.values()]
    assert other["measured_s"] >= 0 and other["between_ops_s"] >= 0
    assert sum(r["share"] for r in rows) + other["share"] == pytest.approx(1)
    covered = {op for r in rows for op in r["ops"]}
    named = [op for op, _, _ in other["ops"]]
    assert named and not covered & set(named)
    seconds = [s for _, s, _ in other["ops"]]
    assert seconds == sorted(seconds, reverse=True) and all(s > 0 for s in seconds)
    assert sum(seconds) + other["between_ops_s"] == pytest.approx(other["measured_s"])


def test_other_ops_leave_out_the_kernels_a_covered_op_runs_in_a_child():
    """CUDA's shape, which this machine cannot produce: SDPA's kernel is launched by a child op
    (aten::_flash_attention_forward) of the op the row covers; only the copy is left over."""
    flash = "aten::_scaled_dot_product_flash_attention"
    profiled = profiling.Profiled(
        by_op={flash: 0.5},
        top=[],
        total=1.0,
        own={
            profiling.ITERATION: {
                ("aten::_flash_attention_forward", frozenset({flash})): 0.5,
                ("aten::copy_", frozenset({"aten::contiguous", "aten::clone"})): 0.1,
            }
        },
    )
    other = _outside(profiled, [{"measured_s": 0.5, "ops": [flash]}])
    assert other["ops"] == [["aten::copy_", 0.1, []]] and other["measured_s"] == 0.5
    assert other["between_ops_s"] == pytest.approx(0.4)


def test_roofline_from_a_calibration_and_saved_profiles(tmp_path):
    cal = profiling.calibrate("cpu", size=128, root=tmp_path)
    assert cal["peak"]["fp32"] > 0 and cal["bandwidth"] > 0
    for dtype, peak in cal["peak"].items():  # the better of the two kernels' rates
        rates = [cal["measured"][kernel][dtype] for kernel in ("matmul", "convolution")]
        assert peak == max(rates) and min(rates) > 0
        assert cal["convolution_shape"][dtype] in map(list, profiling.CONV_SHAPES["cpu"])
    prof = profile_mhsa(SMALL, device="cpu", repeat=2, root=tmp_path)
    row = prof.by_term["projections"]
    expected = max(row["flops"] / cal["peak"]["fp32"], row["bytes"] / cal["bandwidth"])
    assert row["predicted_s"] == pytest.approx(expected) and row["bound"] in {"compute", "memory"}
    (path,) = prof.save(tmp_path)
    saved = profiling.recorded(tmp_path)
    assert [d["path"] for d in saved] == [str(path)]  # the calibration is not a profile
    assert saved[0]["device_name"] == profiling.device_name("cpu") and saved[0]["date"]
    assert not any("ceiling is below" in note for note in prof.notes)


def test_calibrate_command_says_each_kernels_rate_and_where_it_saved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMPLEXO_HOME", str(tmp_path))  # profiles/ here
    result = runner.invoke(app, ["calibrate", "--device", "cpu", "--size", "128"])
    assert result.exit_code == 0, result.output
    rates, saved = result.output.strip().splitlines()
    for dtype in ("fp32", "bf16", "fp16"):
        assert f"{dtype} " in rates
    assert rates.count("matmul") == rates.count("convolution") == 3
    path = saved.removeprefix("saved to ")
    assert json.loads((tmp_path / path).read_text())["matmul_side"] == 128


def test_a_ceiling_below_the_achieved_rate_is_called_out(tmp_path):
    folder = tmp_path / profiling.slug(profiling.device_name("cpu"))
    folder.mkdir()
    low = {"peak": {"fp32": 1.0}, "bandwidth": 1e12, "date": "2026-01-01"}
    (folder / "calibration.json").write_text(json.dumps(low))
    prof = profile_mhsa(SMALL, device="cpu", repeat=2, root=tmp_path)
    (note,) = [n for n in prof.notes if "ceiling is below" in n]
    assert "(calibrated 2026-01-01)" in note and "re-run complexo calibrate" in note


def test_a_run_that_cannot_fit_is_refused_before_allocating(monkeypatch):
    from complexo.analyses import cnn

    monkeypatch.setattr(profiling.core, "free_memory", lambda device: 1 << 20)
    with pytest.raises(ComplexoError, match="refused before allocating") as naive:
        profile_mhsa(Config(seq=4096, dim=1024), device="cpu")
    # two coexisting copies of the naive's 16 heads of 4096² fp32 scores are most of it
    assert "or --impl sdpa: its n×n score matrices are 2.00 GiB of it" in str(naive.value)
    with pytest.raises(ComplexoError, match=r"\(try a smaller --seq or --batch\)$"):
        profile_mhsa(Config(seq=4096, dim=1024, impl="sdpa"), device="cpu")
    with pytest.raises(ComplexoError, match=r"\(try a smaller --res or --batch\)$"):
        profile_image("cnn", cnn.Config(model="resnet50", res=224), device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_request_without_cuda_is_one_line():
    result = runner.invoke(app, ["profile", "mhsa", "--device", "cuda"])
    assert result.exit_code != 0
    assert result.stderr.strip() == (
        "error: --device cuda: no CUDA device here (torch.cuda.is_available() is False)"
    )


def test_profile_command_and_mhsa_profile_flag():
    small = ["--seq", "64", "--dim", "32", "--heads", "4", "--device", "cpu"]  # SMALL's options
    result = runner.invoke(app, ["profile", "mhsa", *small, "--repeat", "2", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["device"] == "cpu" and doc["mode"] == "forward" and len(doc["times"]) == 2
    both = runner.invoke(app, ["mhsa", *small, "--profile", "--json"])
    assert both.exit_code == 0, both.output
    doc = json.loads(both.stdout)
    assert (
        doc["analysis"] == "mhsa"
        and doc["profile"]["flops"] == doc["quantities"]["forward_flops"]["value"]
    )
    for args, message in (
        (["profile", "compare", "--mode", "train"], "profile compare runs --mode forward"),
        (["profile", "mhsa", "--mode", "infer"], "unknown --mode 'infer'"),
        (["profile", "lora", "--mode", "forward"], "profile lora runs --mode train, not forward"),
        (["profile", "cnn", "--mode", "infer"], "unknown --mode 'infer'"),
    ):
        bad = runner.invoke(app, args)
        assert bad.exit_code != 0 and message in bad.stderr, bad.stderr


@cuda
def test_cuda_timer_agrees_with_triton_do_bench():
    from triton.testing import do_bench

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    clock = profiling.timer("cuda")
    for _ in range(3):
        a @ a
    ours = sorted(clock(lambda: a @ a) for _ in range(20))[10]
    theirs = do_bench(lambda: a @ a) / 1e3
    assert abs(ours - theirs) / theirs < 0.05, (ours, theirs)


@cuda
def test_cuda_peak_memory_against_the_formula():
    """Weights, x and the forward's high-water mark (two 128 MiB score matrices here): within
    10%, the room for what the caching allocator already holds (cuBLAS's workspace)."""
    prof = profile_mhsa(Config(seq=2048, dim=1024, dtype="bf16"), device="cuda")
    assert prof.memory_peak is not None
    assert abs(prof.memory_peak - prof.memory_predicted) / prof.memory_predicted < 0.10


def test_lora_and_full_training_steps_timed_for_real(tmp_path):
    from complexo.analyses.lora import Config as LoRAConfig

    cfg = LoRAConfig(in_features=64, out_features=32, rank=4, seq=16, precision="fp32")
    lp = profile_lora(
        cfg, device="cpu", warmup=1, repeat=2, trace=str(tmp_path / "t.json"), root=tmp_path
    )
    assert set(lp.sides) == {"full", "lora"}
    for side, prof in lp.sides.items():
        assert prof.mode == "train" and prof.config["side"] == side
        assert len(prof.times) == 2 and prof.median > 0
        assert set(prof.by_term) == {"forward", "backward", "optimizer"}
        assert all(row["measured_s"] > 0 for row in prof.by_term.values())
        assert json.loads((tmp_path / f"t-{side}.json").read_text())["traceEvents"]
    full, lora = lp.sides["full"], lp.sides["lora"]
    # one 64→32 layer over 16 tokens: full 3·2·16·64·32; LoRA adds its path, drops dW
    assert full.flops == 3 * 2 * 16 * 64 * 32
    assert full.by_term["forward"]["flops"] == 2 * 16 * 64 * 32
    # AdamW, fp32: reads and writes m, v and the weights (2080 parameters), reads the gradients
    assert full.by_term["optimizer"]["bytes"] == (2 * 2 + 1 + 2) * 2080 * 4
    assert lora.by_term["optimizer"]["bytes"] == (2 * 2 + 1 + 2) * 4 * (64 + 32) * 4
    assert lp.flops_ratio == lora.flops / full.flops
    assert len({p.name for p in lp.save(tmp_path)}) == 2  # one file per side
    doc = lp.to_json()
    assert doc["time_ratio"] == lora.median / full.median and set(doc["sides"]) == {"full", "lora"}


def test_mixed_precision_lora_steps_fp32_masters_and_updates_the_16_bit_weights():
    from complexo.analyses.lora import Config as LoRAConfig
    from complexo.analyses.lora import build

    cfg = LoRAConfig(in_features=16, out_features=8, rank=2, seq=4, precision="bf16-mixed")
    module, inputs = build(cfg, "lora", device="cpu")
    torch.nn.init.normal_(module.lora_B.weight)
    before, frozen = module.lora_A.weight.detach().clone(), module.base.weight.detach().clone()
    step = _training_step(module, inputs, "adamw", master_fp32=True, lr=0.1)
    step()
    assert module.lora_A.weight.dtype == torch.bfloat16
    assert not torch.equal(module.lora_A.weight, before)  # the master's step came back down
    assert torch.equal(module.base.weight, frozen)
    lp = profile_lora(cfg, device="cpu", warmup=0, repeat=1)
    # the optimizer state now holds fp32 masters: 4 + 8 bytes per trained parameter
    trained = 2 * (16 + 8)
    moved = 2 * 12 * trained + 2 * trained + 2 * 2 * trained  # state r/w, grads r, weights r/w
    assert lp.sides["lora"].by_term["optimizer"]["bytes"] == moved


@pytest.mark.parametrize(
    ("analysis", "options", "groups"),
    [
        (
            "cnn",
            {"model": "resnet18", "res": 64, "batch": 2},
            {"convolutions", "batchnorm", "relu", "pooling", "linear layers", "residual adds"},
        ),
        (
            "vit",
            {"model": "vit-ti16", "res": 32},
            {
                *("convolutions", "linear layers", "layernorm", "attention kernel"),
                *("gelu", "residual adds"),
            },
        ),
    ],
)
def test_image_models_timed_per_layer_type(analysis, options, groups, tmp_path):
    from complexo.analyses import cnn, vit

    cfg = {"cnn": cnn, "vit": vit}[analysis].Config(**options)
    profiling.calibrate("cpu", size=128, root=tmp_path)  # ceilings, for the roofline's floors
    prof = profile_image(analysis, cfg, device="cpu", warmup=1, repeat=2, root=tmp_path)
    assert set(prof.by_term) == groups and all(r["measured_s"] > 0 for r in prof.by_term.values())
    # the layer types' FLOPs are the formula's terms they carry: convolutions and matmuls here
    matmuls = sum(prof.by_term[g]["flops"] for g in ("convolutions", "linear layers"))
    with unchecked():  # formula values alone are read here: no counter runs
        result = {"cnn": cnn, "vit": vit}[analysis].analyse(cfg)
    biases = {"fc_bias", "patch_bias", "bias", "head_bias"}  # added inside conv and linear
    expected = result.quantity("forward_matmul_flops").value + sum(
        t.expr.subs(result.values) for t in result.model.terms(Kind.FORWARD) if t.name in biases
    )
    if analysis == "vit":  # Q·Kᵀ and A·V run inside SDPA, outside any leaf module: its own row
        attention = result.model.term(Kind.FORWARD, "attention").expr.subs(result.values)
        expected -= attention
        assert prof.by_term["attention kernel"]["flops"] > attention
    assert matmuls == expected
    assert prof.predicted_s == pytest.approx(sum(r["predicted_s"] for r in prof.by_term.values()))
    assert 0 < sum(r["share"] for r in prof.by_term.values()) <= 1
    assert prof.flops == result.quantity("forward_flops").value
    # inference holds less than the prediction's upper bound (every training activation)
    weights = result.quantity("params").value * 4
    assert weights < prof.memory_peak <= prof.memory_predicted
    assert_other_ops_partition(prof)
    # the rows carry every forward term: their FLOPs are the forward's, none left to other ops
    assert sum(r["flops"] for r in prof.by_term.values()) == prof.flops
    ops = {op: terms for op, _, terms in prof.outside["ops"]}
    assert all(not terms for terms in ops.values()), ops
    # GELU is a function, not a module, and the residual adds sit between modules: their rows
    # are timed by op, each the op's own time in the profiled iteration
    added = "aten::add" if analysis == "vit" else "aten::add_"
    assert prof.by_term["residual adds"]["ops"] == [added] and added not in ops
    if analysis == "vit":
        assert prof.by_term["gelu"]["ops"] == ["aten::gelu"] and "aten::gelu" not in ops


@pytest.mark.parametrize(
    "args",
    [
        ["cnn", "--model", "resnet18", "--res", "64", "--batch", "2"],
        ["vit", "--model", "vit-ti16", "--res", "32"],
    ],
)
def test_image_commands_take_profile(args):
    result = runner.invoke(app, [*args, "--profile", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["profile"]["flops"] == doc["quantities"]["forward_flops"]["value"]
    assert doc["profile"]["median_s"] > 0


def test_lora_command_takes_profile():
    layer = ["--in", "32", "--out", "16", "--rank", "2", "--seq", "8", "--precision", "fp32"]
    result = runner.invoke(app, ["lora", *layer, "--profile", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    for side in ("full", "lora"):
        measured = doc["profile"]["sides"][side]
        assert measured["flops"] == doc[side]["quantities"]["train_step_flops"]["value"]
        assert (
            measured["memory_predicted"] == doc[side]["quantities"]["train_memory_bytes"]["value"]
        )


def test_kvcache_decode_timed_beside_no_cache_and_prefill(tmp_path):
    from complexo.analyses import kvcache

    cfg = kvcache.Config(
        arch="llama", layers=2, dim=32, heads=4, kv_heads=2, vocab=50, ctx=64, context=32
    )
    prof = profile_kvcache(cfg, device="cpu", warmup=1, repeat=3, root=tmp_path)
    with unchecked():  # formula values alone are read here: no counter runs
        result = kvcache.analyse(cfg)
    assert set(prof.by_term) == {"decode", "no cache", "prefill"}
    assert prof.flops == result.quantity("decode_flops_per_token").value
    rows = prof.by_term
    assert rows["no cache"]["flops"] == result.quantity("decode_flops_per_token_no_cache").value
    assert rows["decode"]["bytes"] == result.quantity("decode_bytes_per_token").value
    assert all(r["measured_s"] > 0 and r["profiled_s"] > 0 for r in rows.values())
    # decoding one token does far less arithmetic per byte than recomputing the prefix
    assert rows["decode"]["intensity"] < rows["no cache"]["intensity"] / 10
    assert prof.median == rows["decode"]["measured_s"] and len(prof.times) == 3


def test_kvcache_command_takes_profile():
    model = ["--arch", "gpt2", "--layers", "1", "--dim", "16", "--heads", "2", "--vocab", "20"]
    args = ["kvcache", *model, "--ctx", "32", "--context", "8", "--dtype", "fp32"]
    result = runner.invoke(app, [*args, "--profile", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["profile"]["flops"] == doc["quantities"]["decode_flops_per_token"]["value"]


def test_compare_command_takes_profile(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMPLEXO_HOME", str(tmp_path))  # profiles/ here
    models = ["--cnn", "resnet18", "--vit", "vit-ti16", "--res", "64", "96"]
    result = runner.invoke(
        app, ["compare", "cnn", "vit", *models, "--profile", "--device", "cpu", "--save", "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [r["res"] for r in doc["profile"]["results"]] == [64, 96]
    for analysed, timed_ in zip(doc["results"], doc["profile"]["results"], strict=True):
        for name in ("resnet18", "vit-ti16"):
            forward = analysed["models"][name]["quantities"]["forward_flops"]["value"]
            assert timed_["models"][name]["flops"] == forward
            assert timed_["models"][name]["median_s"] > 0
    assert len(profiling.recorded(tmp_path / "profiles")) == 4
    bad = runner.invoke(app, ["compare", "cnn", "vit", "--save"])
    assert bad.exit_code != 0 and "--save records profiles: add --profile" in bad.stderr


def test_cuda_graph_timing_needs_cuda_and_a_forward_pass():
    with pytest.raises(ComplexoError, match="--cuda-graph needs --device cuda"):
        profile_mhsa(SMALL, device="cpu", cuda_graph=True)
    with pytest.raises(ComplexoError, match="--mode forward"):
        profile_mhsa(SMALL, device="cpu", mode="train", cuda_graph=True)
    bad = runner.invoke(app, ["profile", "lora", "--cuda-graph"])
    assert bad.exit_code != 0 and "--cuda-graph times mhsa, cnn and vit" in bad.stderr


@cuda
def test_cuda_graph_replays_time_a_small_block_without_launch_overhead():
    cfg = Config(seq=128, dim=256, heads=4, dtype="bf16", impl="naive")
    eager = profile_mhsa(cfg, device="cuda", repeat=50)
    graph = profile_mhsa(cfg, device="cuda", repeat=50, cuda_graph=True)
    assert graph.timing == "cuda-graph" and graph.flops == eager.flops
    assert graph.median < eager.median  # a few small kernels: launches dominate eager time
    assert graph.memory_reserved >= graph.memory_peak > 0


def test_image_training_steps_timed_by_phase():
    from complexo.analyses import cnn

    cfg = cnn.Config(model="resnet18", res=64, batch=2)
    prof = profile_image("cnn", cfg, device="cpu", warmup=1, repeat=2, mode="train")
    with unchecked():  # formula values alone are read here: no counter runs
        result = cnn.analyse(cfg)
    forward, backward = (result.quantity(q).value for q in ("forward_flops", "backward_flops"))
    assert prof.mode == "train" and prof.flops == forward + backward
    phases = {k: v for k, v in prof.by_term.items() if k.endswith("(step)")}
    assert list(phases) == ["forward (step)", "backward (step)", "optimizer (step)"]
    assert phases["backward (step)"]["flops"] == backward
    assert all(row["measured_s"] > 0 for row in phases.values())
    assert {"convolutions", "batchnorm"} <= set(prof.by_term)  # the forward's layer types


@pytest.mark.parametrize(
    ("name", "entry"),
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
        ("NVIDIA A100-PCIE-40GB", "a100-40gb"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA L4", "l4"),
        ("NVIDIA GeForce RTX 4090", "rtx-4090"),
        ("AMD EPYC 7B13 64-Core Processor", None),
    ],
)
def test_device_names_as_cuda_reports_them_find_their_datasheet(name, entry):
    from complexo.devices import DEVICES

    assert _datasheet_match(name) == entry
    assert entry is None or entry in DEVICES


def test_profile_lora_takes_the_lora_commands_spelling(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMPLEXO_HOME", str(tmp_path))  # profiles/ here
    layer = ["--in", "16", "--out", "8", "--rank", "2", "--seq", "4", "--precision", "fp32"]
    one = runner.invoke(app, ["profile", "lora", *layer, "--device", "cpu", "--repeat", "1"])
    assert one.exit_code == 0, one.output
    model = ["--arch", "gpt2", "--layers", "1", "--dim", "16", "--heads", "2", "--vocab", "20"]
    args = ["profile", "lora", *model, "--ctx", "8", "--targets", "q,v,mlp", "--precision", "fp32"]
    result = runner.invoke(app, [*args, "--device", "cpu", "--repeat", "1", "--save", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["sides"]["lora"]["config"]["targets"] == ["q", "v", "mlp"]
    listed = runner.invoke(app, ["profiles"])
    assert listed.stdout.count("lora train side=") == 2, listed.stdout
    shown = runner.invoke(app, ["profiles", "1", "--json"])
    assert shown.exit_code == 0, shown.output
    again = json.loads(shown.stdout)  # the saved profile, its derived figures derived again
    assert again.pop("schema") == 1  # what the command line printed, not what was saved
    saved = doc["sides"][again["config"]["side"]]
    assert again == saved
    missing = runner.invoke(app, ["profiles", "3"])
    assert missing.exit_code != 0 and "give a number from 1 to 2" in missing.stderr


def test_the_profiled_iteration_is_the_median_of_three():
    """A hiccup (one slow iteration) or one lucky fast one is not what the tables show."""
    import time

    pauses = iter([0.06, 0.01, 0.03])
    profiled = _profiled(lambda: time.sleep(next(pauses)), "cpu", None)
    assert 0.03 <= profiled.total < 0.05


def test_kvcache_decode_memory_on_cpu_is_weights_and_cache_plus_one_tokens_output(tmp_path):
    """Measured by the profiler's allocation record, not by the formula: beyond the weights and
    the n cached tokens, decoding holds the cache's row for the new token, the token ids and the
    new token's logits, and a few hundred bytes of one token's activations."""
    from complexo.analyses import kvcache

    cfg = kvcache.Config(
        arch="gpt2", layers=2, dim=64, heads=4, vocab=5000, ctx=256, context=200, dtype="fp32"
    )
    prof = profile_kvcache(cfg, device="cpu", warmup=1, repeat=2, root=tmp_path)
    with unchecked():  # formula values alone are read here: no counter runs
        per_token = kvcache.analyse(cfg).quantity("kv_cache_bytes_per_token").value
    ids, logits = (cfg.context + 1) * 8, cfg.vocab * 4  # int64 token ids; fp32 logits
    known = per_token + ids + logits
    assert known <= prof.memory_peak - prof.memory_predicted <= known + 4096


def _held_mhsa(impl, root):
    """A training step's profile, and what the formulas say is live at two moments of it: when
    the backward starts, the weights and every saved activation; when it ends, the weights and
    their gradients (SGD keeps no state)."""
    cfg = Config(seq=512, dim=128, heads=4, impl=impl)
    prof = profile_mhsa(cfg, mode="train", repeat=2, device="cpu", root=root)
    model = cfg.model()
    weights = evaluate(model.total(Kind.PARAMS) * e, cfg.values)
    return prof, weights + max(evaluate(model.total(Kind.ACTIVATION), cfg.values), weights)


def _held_image(name, root):
    from complexo.analyses import cnn, vit

    module = cnn if name.startswith("resnet") else vit
    cfg = module.Config(model=name, res=64, batch=2)
    prof = profile_image(module.NAME, cfg, mode="train", repeat=2, device="cpu", root=root)
    model = cnn.cost_model(cnn.PRESETS[name].block) if module is cnn else vit.cost_model()
    weights = evaluate(model.total(Kind.PARAMS) * e, cfg.values)
    return prof, weights + max(evaluate(model.total(Kind.ACTIVATION), cfg.values), weights)


def _held_lora(side, root):
    """AdamW's state and fp32 master weights are live throughout, beside the weights."""
    from complexo.analyses import lora

    cfg = lora.Config(arch="gpt2", layers=2, dim=64, heads=4, vocab=500, ctx=64, seq=32)
    prof = profile_lora(cfg, repeat=2, device="cpu", root=root).sides[side]
    model = lora.cost_model(cfg, side)
    held, saved, grads = (
        evaluate(expr, cfg.values)
        for expr in (
            sum(model.total(Kind.MEMORY, tag=t) for t in ("weights", "optimizer")),
            model.total(Kind.ACTIVATION),
            model.total(Kind.MEMORY, tag="gradients"),
        )
    )
    return prof, held + max(saved, grads)


@pytest.mark.parametrize(
    ("held", "arg"),
    [
        (_held_mhsa, "naive"),
        (_held_mhsa, "sdpa"),
        (_held_image, "resnet18"),
        (_held_image, "vit-ti16"),
        (_held_lora, "full"),
        (_held_lora, "lora"),
    ],
)
def test_cpu_training_peak_holds_weights_state_and_every_saved_activation(held, arg, tmp_path):
    """Measured from the allocation record, not computed: when the backward starts, the
    weights, the optimizer's state and every activation the formula says is saved are live at
    once, and when it ends, the weights, the state and every gradient; the step's peak is at
    least the larger (a formula that over-counted either fails here)."""
    prof, live = held(arg, tmp_path)
    assert prof.memory_peak >= live
    # mhsa predicts with lifetimes (complexo.analyses.mhsa_peak): the naive block's peak to the
    # byte but for the scale's fp64 scalar, which mul saves; SDPA's but for its CPU kernel's
    # backward scratch, per thread two fp32 tiles of 64 queries × 512 keys at n = 512 and a
    # row of 64 floats: 4·(2·64·512·threads + 64)
    if arg == "naive":
        assert prof.memory_peak - prof.memory_predicted == 8
    if arg == "sdpa":
        scratch = 4 * (2 * 64 * 512 * torch.get_num_threads() + 64)
        assert 0 <= prof.memory_peak - prof.memory_predicted <= scratch


def test_profile_records_threads_and_load_and_takes_threads():
    # --threads sets torch's intra-op threads for the run, recorded with the load beside it, and
    # restored after; a count outside 1..1024 is one line
    small = ["--seq", "64", "--dim", "32", "--heads", "4", "--device", "cpu", "--repeat", "2"]
    before = torch.get_num_threads()
    result = runner.invoke(app, ["profile", "mhsa", *small, "--threads", "2", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["threads"] == 2 and doc["load"] is None) or doc["load"] >= 0
    assert torch.get_num_threads() == before
    shown = runner.invoke(app, ["profile", "mhsa", *small, "--threads", "1"])
    assert "(cpu), 1 thread, load " in shown.stdout, shown.stdout
    bad = runner.invoke(app, ["profile", "mhsa", *small, "--threads", "0"])
    assert bad.exit_code == 2 and "--threads is a thread count from 1 to 1,024, got 0" in bad.stderr


def test_a_wide_spread_of_timed_runs_is_flagged_with_the_machines_state():
    from complexo.profile.machine import iqr, spread_warning

    # quartiles of 1, 1, 1, 3 ms (exclusive method): q1 = 1 ms, q3 = 2.5 ms: IQR 1.5 ms, median
    # 1 ms, 150% of it: flagged, with the load and threads given
    times = [1e-3, 1e-3, 1e-3, 3e-3]
    assert iqr(times) == pytest.approx(1.5e-3)
    warning = spread_warning(times, 4, 7.5)
    assert warning.startswith("NOISY: the timed runs spread over an IQR of 1.5 ms, 150% of their")
    assert "median 1 ms (load 7.5 on" in warning and "4 torch threads)" in warning
    # 10 runs within ±2%: q3 − q1 ≤ 4% of the median, under the 25% threshold
    assert spread_warning([1e-3 * (1 + 0.004 * k) for k in range(-5, 5)], 1, 0.1) is None
    assert iqr([2.0]) == 0.0


def test_the_iqr_is_written_as_a_duration():
    from complexo.render import console
    from complexo.render_runs import render_profile

    prof = profile_mhsa(SMALL, device="cpu", warmup=0, repeat=3)
    prof.times = [2e-3, 9e-3, 2.1e-3]  # quartiles (exclusive): 2 ms, 9 ms: IQR 7 ms
    shown = console()
    with shown.capture() as out:
        shown.print(render_profile(prof))
    assert "(IQR 7 ms)" in out.get()


def test_a_two_sided_ratio_is_flagged_when_a_side_is_noisy():
    import dataclasses

    from complexo.render import console
    from complexo.render_runs import render_profile

    base = profile_mhsa(SMALL, device="cpu", warmup=0, repeat=3)
    steady = dataclasses.replace(base, times=[1e-3, 1e-3, 1e-3], notes=[])
    # quartiles of 1, 1, 3 ms (exclusive): 1 ms and 3 ms, IQR 2 ms against a 1 ms median: NOISY
    noisy = dataclasses.replace(base, times=[1e-3, 1e-3, 3e-3], notes=[])
    shown = console()
    for other, flagged in ((steady, False), (noisy, True)):
        both = profiling.SidesProfile("mhsa", {"full": steady, "lora": other})
        with shown.capture() as out:
            shown.print(render_profile(both))
        assert ("(NOISY: lora's runs spread widely" in out.get()) == flagged


@pytest.mark.parametrize("noisy", [False, True])
def test_a_profile_runs_the_step_no_more_often_than_it_says(noisy, monkeypatch):
    """Warm-up, timed and profiled runs, and nothing else: the CPU's memory pass is the last
    warm-up. A training step with SGD (mhsa's), warmup 2, repeat 3: 2 + 3 = 5 runs, then one
    profiled iteration when the timed runs were steady, three (the median read) when not."""
    import dataclasses

    from complexo.analyses.mhsa import ANALYSIS
    from complexo.profile import step as step_module
    from complexo.profile.step import profile_side

    calls = []

    def setup(cfg, mode, side, device):
        made = ANALYSIS.profiling.setup(cfg, mode, side, device)

        def counted():
            calls.append(1)
            return made.step()

        counted.optimizer = getattr(made.step, "optimizer", None)  # what the memory pass reads
        return dataclasses.replace(made, step=counted)

    # whether the timed runs spread (a busy machine) is the test's to say, not this machine's
    monkeypatch.setattr(step_module, "spread_warning", lambda *_: "NOISY" if noisy else None)
    counting = dataclasses.replace(
        ANALYSIS, profiling=dataclasses.replace(ANALYSIS.profiling, setup=setup)
    )
    prof = profile_side(counting, SMALL, device="cpu", mode="train", warmup=2, repeat=3)
    profiled = 3 if noisy else 1
    assert prof.runs == {
        "warmup": 2,
        "timed": 3,
        "profiled": profiled,
        "memory_pass": "the last warm-up",
    }
    assert len(calls) == 2 + 3 + profiled
    from complexo.render_runs import runs_text

    said = f"2 warm-up (the last one the memory pass), 3 timed, {profiled} profiled"
    assert runs_text(prof.runs) == said
    assert prof.memory_peak is not None


def test_the_memory_pass_reads_the_same_peak_as_a_warm_up_or_after_the_timed_runs():
    """With one warm-up the memory pass must follow the timed runs (AdamW's state is made by
    the first step); with two it replaces the second. Both read the same bytes: the pass moved,
    the measurement did not."""
    from complexo.analyses import lora

    cfg = lora.Config(arch="gpt2", layers=1, dim=32, heads=2, vocab=64, ctx=16, seq=8)
    late, early = (
        profile_lora(cfg, device="cpu", warmup=w, repeat=1).sides["lora"] for w in (1, 2)
    )
    assert late.runs["memory_pass"] == "after the timed runs"
    assert early.runs["memory_pass"] == "the last warm-up"
    assert early.memory_peak == late.memory_peak
