"""Every option of every command, fed hostile words: each invocation ends in exit 0, or in one
line on stderr and a non-zero exit; never an escaped exception, never a hang (a per-invocation
time budget). The commands are read from the registry, so a new analysis is fuzzed by adding it.
The analysis commands and sweeps run default configs (minutes in all): marked slow, ``-m "not
slow"`` leaves them out; ``profile`` and the recording commands stay in every run (~25 s).

Real runs are stubbed out (``complexo profile X`` checks its options, then stops before timing
anything): what is fuzzed here is the layer that takes the words, not the profiler."""

import dataclasses
import signal

import pytest
from helpers import runner

from complexo.analyses import ANALYSES
from complexo.cli import app
from complexo.errors import ComplexoError
from complexo.registry import flag, options

HOSTILE = ["0", "-1", str(2**40), str(10**30), "nan", "inf", "", "x"]
BUDGET_S = 60  # per invocation: a default config's formulas and counters take a few seconds


class Hung(Exception):
    pass


def _alarm(signum, frame):
    raise Hung(f"over {BUDGET_S} s")


@pytest.fixture(autouse=True)
def no_real_runs(monkeypatch, tmp_path):
    """``profile`` and ``--profile`` check everything, then stop in one line before running;
    recordings and plots go to a temporary folder."""
    from complexo import profile as profiling
    from complexo.profile import core

    def stub(cfg, **runs):
        raise ComplexoError("stub: the run itself is not fuzzed")

    def run(analysis, cfg, **kw):
        how = dataclasses.replace(analysis.profiling, run=stub)
        return core.run(dataclasses.replace(analysis, profiling=how), cfg, **kw)

    monkeypatch.setattr(profiling, "run", run)
    monkeypatch.setenv("COMPLEXO_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)


def _check(args: list[str]) -> None:
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(BUDGET_S)
    try:
        result = runner.invoke(app, args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    shown = " ".join(repr(a) if not a or " " in a else a for a in args)
    assert not isinstance(result.exception, Hung), f"complexo {shown}: {result.exception}"
    assert "Traceback" not in result.output, f"complexo {shown}:\n{result.output}"
    if result.exit_code == 0:
        return
    assert isinstance(result.exception, SystemExit), (
        f"complexo {shown} escaped: {result.exception!r}"
    )
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"complexo {shown}:\n{lines}"


def _words(a) -> list[tuple[str, ...]]:
    """Every (option, value) word pair for an analysis's config: its flags, each hostile value."""
    out = []
    for f, opt in options(a.config):
        if opt.positional:
            continue
        if f.type in ("bool", bool) or "bool" in str(f.type):
            continue  # a flag takes no value
        out += [(flag(f), v) for v in HOSTILE]
    return out


COMMANDS = {
    "calibrate": [("--size", v) for v in HOSTILE] + [("--device", v) for v in HOSTILE],
    "profiles": [(v,) for v in HOSTILE],
    "report": [(v,) for v in HOSTILE] + [("--check", v) for v in HOSTILE[-2:]],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_every_option_of_an_analysis_command(name):
    a = ANALYSES[name]
    own = [("--plot", v) for v in HOSTILE] if a.figure else []
    if a.profiling:
        own += [("--device", v) for v in HOSTILE]
        own += [("--profile", "--device", v) for v in HOSTILE]
    for words in _words(a) + own:
        _check([name, *words])


@pytest.mark.slow  # each valid hostile value (--warmup 0, --threads 1) profiles a default config
@pytest.mark.parametrize("name", sorted(a.name for a in ANALYSES.values() if a.profiling))
def test_every_option_of_profile(name):
    a = ANALYSES[name]
    own = [
        (option, v)
        for option in ("--mode", "--warmup", "--repeat", "--trace", "--device", "--threads")
        for v in HOSTILE
    ]
    for words in _words(a) + own:
        _check(["profile", name, *words])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(a.name for a in ANALYSES.values() if a.sweep))
def test_every_option_of_sweep(name):
    a = ANALYSES[name]
    first = next(f.name for f, o in options(a.config) if "int" in str(f.type) and o.sweep)
    vary = ["--vary", f"{first}=1..2", "--points", "2"]
    own = [(option, v) for option in ("--points", "--step", "--quantity") for v in HOSTILE]
    for v in HOSTILE:
        _check(["sweep", name, "--vary", v])
        _check(["sweep", name, "--vary", f"{first}=1..{v}"])
        _check(["sweep", name, *vary, "--variant", v])
    for words in own:
        _check(["sweep", name, "--vary", f"{first}=1..2", *words])
    for words in _words(a):
        if words[0] != f"--{first.replace('_', '-')}":
            _check(["sweep", name, *vary, *words])


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_of_the_recording_commands(command):
    for words in COMMANDS[command]:
        _check([command, *words])
