"""Hostile input through the shared layers: sizes torch cannot represent (the formulas answer, the
counters are skipped and the note says why), loop counts and paths checked before any work, the
folders complexo reads and writes, and what every JSON document carries."""

import json
import logging
import os

import pytest
from helpers import assert_one_line_error, runner

import complexo
from complexo import home
from complexo.cli import SCHEMA, app
from complexo.counting import NOTE, counted, guarded, skips

TINY = ["--seq", "16", "--dim", "16", "--heads", "2"]
HUGE = str(2**40)


def _doc(args):
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    "args",
    [
        ["mhsa", "--seq", HUGE],
        ["mhsa", "--seq", str(10**30)],
        ["mhsa", "--dim", str(2**41 - 2), "--heads", "2"],
        ["cnn", "--res", HUGE],
        ["kvcache", "--batch", HUGE],
        ["kvcache", "--batch", str(10**30)],
    ],
)
def test_past_what_torch_can_represent_the_formulas_answer_alone(args, caplog):
    doc = _doc(args)
    # and quietly: torch's fake tensors log a traceback of the op that overflowed (on stderr,
    # in a terminal), kept off
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text[:300]
    assert any(n.startswith("counters skipped") and "2**63 bytes" in n for n in doc["notes"])
    for q in doc["quantities"].values():
        assert q["measured"] == {"fvcore": None, "torch": None}, q
        assert isinstance(q["value"], int) and q["value"] > 0


def test_the_formula_only_answer_is_the_formula_at_that_size():
    seq = 2**40
    r = complexo.analyse("mhsa", seq=seq, dim=64, heads=4)
    # the attention matrix: B·h·n² fp32 probabilities, far past 2**63 bytes
    assert r.quantity("attention_matrix_bytes").value == 4 * 4 * seq**2
    assert r.quantity("forward_flops").measured == {"fvcore": None, "torch": None}
    small = complexo.analyse("mhsa", seq=16, dim=64, heads=4)
    matmuls = small.quantity("forward_matmul_flops")
    assert matmuls.measured == {"fvcore": matmuls.value, "torch": matmuls.value}
    assert not any(n.startswith("counters skipped") for n in small.notes)


def test_a_comparison_past_torch_notes_it_once():
    doc = _doc(["conv", "--res", str(10**30)])
    assert sum(n.startswith("counters skipped") for n in doc["notes"]) == 1
    for side in ("standard", "separable"):
        assert all(q["measured"]["torch"] is None for q in doc[side]["quantities"].values()), side


def _overflow():
    raise RuntimeError("Storage size calculation overflowed with sizes=[2, 4]")


def test_counted_keeps_other_errors_and_guarded_refuses_an_uncounted_overflow():
    with pytest.raises(ValueError, match="a plain bug"):
        counted(lambda: (_ for _ in ()).throw(ValueError("a plain bug")), {})
    with skips() as skipped:
        assert counted(_overflow, {"none": True}) == {"none": True}
    assert skipped
    with pytest.raises(complexo.ComplexoError, match="exceed what torch can represent"):
        guarded(lambda cfg: _overflow())(None)
    assert "2**63 bytes" in NOTE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["calibrate", "--size", "-1"], "--size is a matrix side from 1 to 65,536, got -1"),
        (["calibrate", "--size", "0"], "got 0"),
        (["calibrate", "--size", HUGE], f"got {HUGE}"),
        (["calibrate", "--device", ""], "unknown --device ''"),
        (["profile", "mhsa", *TINY, "--mode", ""], "unknown --mode ''"),
        (["profile", "mhsa", *TINY, "--device", ""], "unknown --device ''"),
        (["profile", "mhsa", *TINY, "--repeat", HUGE], "--repeat takes 1 to 10,000 runs"),
        (["profile", "mhsa", *TINY, "--repeat", "0"], "--repeat takes 1 to 10,000 runs"),
        (["profile", "mhsa", *TINY, "--warmup", HUGE], "--warmup takes 0 to 1,000 runs"),
        (["profile", "mhsa", *TINY, "--trace", ""], "--trace needs a file name"),
        (["profile", "mhsa", *TINY, "--trace", "/no/such/folder/t.json"], "no folder"),
        (["profile", "mhsa", *TINY, "--trace", "."], "is a folder"),
        (["profile", "mhsa", *TINY, "--trace", "/proc/t.json"], "cannot write it"),
        (["sweep", "mhsa", "--vary", "seq=16..64", "--points", "0"], "--points must be"),
        (["sweep", "mhsa", "--vary", "seq=16..64", "--points", HUGE], "at most 64"),
        (["sweep", "mhsa", "--vary", f"seq=1..{10**30}", "--step", "1"], "at most 64"),
        (["sweep", "mhsa", "--vary", "seq=16..64", "--vary", "seq=16..64"], "given twice"),
        (["sweep", "mhsa", "--vary", "model=1..2"], "no such option to vary"),
        (["lora", "--alpha", "nan"], "--alpha must be a number"),
        (["kvcache", "--device-memory", "inf"], "--device-memory must be at most"),
    ],
)
def test_refused_in_one_line_before_any_work(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert_one_line_error(result, message)
    assert list(tmp_path.iterdir()) == []  # nothing written where nobody asked


@pytest.mark.parametrize(
    ("plot", "message"),
    [
        (".png", "--plot .png has no name before .png"),
        ("", "--plot needs a file name"),
        ("sub/", "is a folder"),
        ("missing/x.svg", "no folder missing"),
        ("x.pdf", "--plot writes .png or .svg"),
    ],
)
def test_a_plot_path_without_a_file_is_refused(plot, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    result = runner.invoke(app, ["lora", "--plot", plot])
    assert_one_line_error(result, message)
    assert [p.name for p in tmp_path.iterdir()] == ["sub"]


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """complexo as a wheel installs it: no checkout above the package, run from a tmp folder."""
    monkeypatch.setattr(home, "PACKAGE", tmp_path / "site-packages" / "complexo")
    monkeypatch.delenv("COMPLEXO_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_report_outside_a_checkout_is_one_line(elsewhere):
    assert_one_line_error(runner.invoke(app, ["report", "--check"]), "set COMPLEXO_HOME")
    assert_one_line_error(runner.invoke(app, ["report", "mhsa"]), "works on a checkout")


def test_outside_a_checkout_profiles_live_in_the_users_data_folder(elsewhere):
    assert home.profiles() == elsewhere / "data" / "complexo" / "profiles"
    result = runner.invoke(app, ["profiles"])
    assert result.exit_code == 0 and str(home.profiles()) in result.stdout


def test_the_checkout_is_found_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPLEXO_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    root = home.PACKAGE.parent
    assert home.checkout() == root and home.analyses() == root / "analyses"
    monkeypatch.setenv("COMPLEXO_HOME", str(tmp_path / "nowhere"))
    assert_one_line_error(runner.invoke(app, ["profiles"]), "COMPLEXO_HOME")


def test_profiles_skips_what_is_not_a_profile_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPLEXO_HOME", str(tmp_path))
    none = runner.invoke(app, ["profiles", "1"])
    assert_one_line_error(none, "nothing is recorded under")
    folder = tmp_path / "profiles" / "dev"
    folder.mkdir(parents=True)
    (folder / "broken.json").write_text("{not json")
    (folder / "partial.json").write_text(json.dumps({"times": [1.0], "analysis": "mhsa"}))
    (folder / "calibration.json").write_text(json.dumps({"peak": {}, "bandwidth": 1}))
    result = runner.invoke(app, ["profiles"])
    assert result.exit_code == 0, result.output
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 2 and all(w.startswith("warning: skipped ") for w in warnings)
    assert "broken.json" in warnings[0] and "partial.json: not a profile (lacks" in warnings[1]
    assert "no profiles recorded under" in result.stdout
    assert_one_line_error(runner.invoke(app, ["profiles", "1"]), "nothing is recorded")


def test_calibrate_writes_under_complexo_home_and_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPLEXO_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["calibrate", "--device", "cpu", "--size", "16"])
    assert result.exit_code == 0, result.output
    saved = result.stdout.strip().splitlines()[-1].removeprefix("saved to ")
    assert os.path.isabs(saved) and saved.startswith(str(tmp_path / "home" / "profiles"))
    with open(saved) as f:
        assert json.load(f)["matmul_side"] == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_kvcache_of_a_learned_position_model_defaults_to_its_context_less_one():
    doc = _doc(["kvcache", "--model", "gpt2"])
    assert doc["config"]["context"] == 1023
    assert any(
        "1024 learned positions, less the one the next token takes" in n for n in doc["notes"]
    )


@pytest.mark.parametrize(
    "args",
    [
        ["mhsa", *TINY],
        ["conv", "--res", "8"],
        ["sweep", "mhsa", *TINY[2:], "--vary", "seq=8..16", "--points", "2"],
    ],
)
def test_every_printed_json_document_carries_its_schema(args):
    doc = _doc(args)
    assert next(iter(doc)) == "schema" and doc["schema"] == SCHEMA == 1


def test_version_and_help_keep_their_brackets():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"complexo {complexo.__version__}"
    result = runner.invoke(app, ["sweep", "--help"], env={"COLUMNS": "400"})
    assert "[its own options, fixed]" in result.stdout
    result = runner.invoke(app, ["profile", "--help"], env={"COLUMNS": "400"})
    assert "[its options]" in result.stdout
