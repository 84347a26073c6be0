"""Every registered analysis keeps the shared contract (timm-style: parametrised over the registry,
so a new analysis is checked by adding it): its command and --help, a bad value of every option
refused in one line, the JSON contract, its formulas against the counters on tiny configs, a real
CPU run, and the shared layers that name no analysis."""

import dataclasses
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from budget import examples
from helpers import assert_one_line_error, runner
from hypothesis import given, settings

import complexo
from complexo.analyses import ANALYSES
from complexo.cli import app
from complexo.registry import flag, options

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = [(a.name, f.name) for a in ANALYSES.values() for f, _ in options(a.config)]


def test_the_registry_lists_every_analysis_module_once():
    from complexo.analyses import NAMES

    modules = sorted(p.stem for p in (ROOT / "complexo" / "analyses").glob("*.py"))
    registered = {a.analyse.__module__ for a in ANALYSES.values()}
    assert registered <= {f"complexo.analyses.{m}" for m in modules}
    assert set(complexo.ANALYSES) == set(ANALYSES)
    # every module that registers an analysis is named in NAMES (else it never loads), once,
    # and the registry keeps NAMES' order (the order of complexo --help)
    registering = sorted(
        p.stem
        for p in (ROOT / "complexo" / "analyses").glob("*.py")
        if "\nANALYSIS = register(" in p.read_text()
    )
    assert sorted(NAMES) == registering and len(set(NAMES)) == len(NAMES)
    assert list(ANALYSES) == list(NAMES)


def test_one_analysis_command_imports_that_analysis_alone():
    # `complexo mhsa` loads mhsa's module and builds its command only: the formulas-only answer
    # pays for no other analysis (issue 20); the others are still one import away
    code = (
        "import sys\n"
        "sys.argv = ['complexo', 'mhsa', '--seq', '64', '--dim', '32', '--heads', '4', "
        "'--no-check', '--json']\n"
        "from complexo.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as end:\n"
        "    assert end.code in (0, None), end.code\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('complexo.analyses.'))\n"
        "print('LOADED', [m for m in loaded if m.rsplit('.', 1)[1] in ('cnn', 'lora', 'vit')])\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert '"forward_flops"' in run.stdout
    assert run.stdout.strip().splitlines()[-1] == "LOADED []"


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_every_analysis_has_a_command_whose_help_lists_each_option(name):
    listed = runner.invoke(app, ["--help"])
    assert listed.exit_code == 0, listed.output
    assert f" {name} " in listed.output
    result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for f, opt in options(ANALYSES[name].config):
        if not opt.positional:
            assert flag(f) in result.output, flag(f)


def _bad_value(f: dataclasses.Field, opt) -> str | None:
    """A value this option must refuse, or None where every word is valid."""
    if opt.choices:
        return "no-such-choice"
    if opt.min is not None:
        below = opt.min - 1 if isinstance(opt.min, int) else -1.0
        return str(below)
    return None


@pytest.mark.parametrize(("name", "field_name"), OPTIONS)
def test_a_bad_value_of_every_option_is_one_line_and_a_non_zero_exit(name, field_name):
    a = ANALYSES[name]
    f, opt = next((f, o) for f, o in options(a.config) if f.name == field_name)
    bad = _bad_value(f, opt)
    if bad is None or opt.positional:
        pytest.skip(f"{flag(f)} takes any word")
    # the analysis's smallest config keeps the check cheap: its own defaults otherwise
    result = runner.invoke(app, [name, flag(f), bad])
    assert_one_line_error(result, flag(f) if opt.choices else "")
    assert flag(f) in result.stderr or f.name in result.stderr, result.stderr


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_the_api_names_the_config_field_and_the_cli_its_flag(name):
    a = ANALYSES[name]
    f, opt = next((f, o) for f, o in options(a.config) if _bad_value(f, o) and not o.positional)
    with pytest.raises(complexo.ComplexoError) as err:
        complexo.analyse(name, **{f.name: _typed(f, opt, _bad_value(f, opt))})
    assert f.name in str(err.value) and "--" not in str(err.value)


def _typed(f, opt, text: str):
    """The word as the field's type: an int, a float, a tuple of them for a repeated option."""
    value = text
    if "int" in str(f.type) and text.lstrip("-").isdigit():
        value = int(text)
    elif "float" in str(f.type):
        value = float(text)
    return (value,) if opt.multiple or opt.separator else value


@pytest.mark.parametrize("name", sorted(a.name for a in ANALYSES.values() if a.examples))
def test_tiny_configs_give_the_json_contract_with_every_gap_explained(name):
    a = ANALYSES[name]

    @settings(max_examples=examples(3, 6))
    @given(a.examples())
    def check(cfg):
        doc = a.analyse(cfg).to_json()
        assert doc["analysis"] == name
        assert set(doc) >= {"analysis", "config", "convention", "crossovers"}
        bodies = [doc[side] for side in a.sides] if a.sides else [doc]
        for body in bodies:
            assert set(body) >= {"quantities", "terms", "big_o", "crossovers"}
            for q in body["quantities"].values():
                assert q["unit"] in {"flop", "byte", "param"} and isinstance(q["value"], int)
                assert set(q["measured"]) == {"fvcore", "torch"}
                assert all(g["reason"] != "unexplained" for g in q["gaps"]), q

    check()


@pytest.mark.parametrize(
    "name", sorted(a.name for a in ANALYSES.values() if a.profiling and a.examples)
)
def test_a_tiny_config_runs_for_real_on_the_cpu(name):
    from hypothesis import find

    from complexo import profile as profiling

    a = ANALYSES[name]
    cfg = find(a.examples(), lambda c: True)  # hypothesis's simplest config
    for mode in a.profiling.modes:
        prof = profiling.run(a, cfg, device="cpu", mode=mode, warmup=0, repeat=1)
        for p in getattr(prof, "sides", {"": prof}).values():
            assert p.times and all(t > 0 for t in p.times) and p.flops > 0
            assert math.isfinite(p.median)


@pytest.mark.parametrize(
    "name", sorted(a.name for a in ANALYSES.values() if a.profiling and a.profiling.rows)
)
def test_profile_rows_partition_the_steps_terms(name):
    """Every term of the profiled step is carried by exactly one of the step's rows (so the
    rows' FLOPs add up to the step's), rows beside the step name only terms the model has, and
    no row is left with nothing: for every mode and side, on tiny configs of every variant."""
    from collections import Counter

    from complexo.cost import evaluate
    from complexo.profile.step import row_flops

    a = ANALYSES[name]
    how = a.profiling

    @settings(max_examples=8)
    @given(a.examples())
    def check(cfg):
        for mode in how.modes:
            for side in a.sides or ("",):
                model, values = how.model(cfg, side), cfg.values
                rows = how.rows(cfg, mode, side)
                step = Counter((t.kind, t.name) for t in how.step(model, mode))
                carried = Counter(k for r in rows if r.step for k in r.terms)
                assert carried == step, (mode, side, carried - step, step - carried)
                for r in rows:
                    for kind, term in r.terms:
                        model.term(kind, term)  # a KeyError names a term the model lacks
                    assert r.ops and (r.terms or r.bytes), r
                total = sum(evaluate(t.expr, values) for t in how.step(model, mode))
                counted = [row_flops(r, model, values) for r in rows if r.step]
                assert sum(f for f in counted if f is not None) == total

    check()


def test_every_analysis_answers_from_its_formulas_alone_without_torch():
    """check=False (--no-check): each analysis at its defaults answers with every counter's
    reading None and a note saying so, and neither torch nor fvcore is imported."""
    code = (
        "import json, sys, complexo\n"
        "out = {}\n"
        "for name in complexo.ANALYSES:\n"
        "    doc = complexo.analyse(name, check=False).to_json()\n"
        "    sides = [doc[s] for s in complexo.ANALYSES[name].sides] or [doc]\n"
        "    measured = [m for body in sides if 'quantities' in body\n"
        "                for q in body['quantities'].values() for m in q['measured'].values()]\n"
        "    notes = json.dumps(doc)\n"
        "    out[name] = [len(measured), any(m is not None for m in measured),\n"
        "                 'counters not run' in notes]\n"
        "heavy = ('torch', 'fvcore')\n"
        "out['imported'] = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print(json.dumps(out))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = json.loads(run.stdout)
    assert out.pop("imported") == []
    assert set(out) == set(ANALYSES)
    for name, (count, any_measured, noted) in out.items():
        # compare's per-resolution documents nest their models: no top-level quantities
        assert not any_measured and noted, name
        assert count > 0 or name == "compare", name


def test_importing_complexo_and_building_the_cli_leave_torch_out():
    code = (
        "import sys, complexo, complexo.cli\n"
        "from typer.main import get_command\n"
        "get_command(complexo.cli.app)\n"
        "assert 'mhsa' in complexo.ANALYSES\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'fvcore')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


# The shared layers: what every analysis goes through. They may name no analysis (as a word,
# anywhere but after a dot: torch's config.patch is an attribute) and no side (as a string).
# NOT_YET: files the migration has still to clear; the test also fails when one of them is
# clean, so the list only shrinks.
SHARED = ["complexo/cli", "complexo/sweep.py", "complexo/profile", "complexo/render.py"]
SHARED += ["complexo/render_runs.py", "complexo/plot.py", "complexo/registry.py"]
SHARED += ["complexo/result.py", "complexo/prove.py", "complexo/symtrace.py"]
SHARED += ["complexo/render_sides.py"]
NOT_YET: set[str] = set()


def _names_in(path: Path) -> list[str]:
    text = path.read_text()
    found = []
    for a in ANALYSES.values():
        found += [a.name for _ in re.finditer(rf"(?<!\.)\b{re.escape(a.name)}\b", text)]
        for side in a.sides:
            found += [f'"{side}"' for _ in re.finditer(rf"[\"']{re.escape(side)}[\"']", text)]
    return sorted(set(found))


@pytest.mark.parametrize("shared", SHARED)
def test_the_shared_layers_name_no_analysis(shared):
    paths = sorted((ROOT / shared).glob("*.py")) if (ROOT / shared).is_dir() else [ROOT / shared]
    for path in paths:
        found = _names_in(path)
        if str(path.relative_to(ROOT)) in NOT_YET:
            assert found, f"{path} no longer names an analysis: take it off NOT_YET"
        else:
            assert not found, f"{path.relative_to(ROOT)} names {found}"


def test_no_module_is_over_500_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "complexo").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 500
    }
    assert not long, long
