"""The command line: one command per registered analysis, generated from its option table (build
the config, call the analysis, print), the ``sweep`` and ``profile`` groups generated the same
way, and the commands that work on recordings (``calibrate``, ``profiles``, ``report``). Nothing
here names an analysis. Bad input of any kind ends in one line on stderr and a non-zero exit."""

from __future__ import annotations

import functools
import json
import sys
from typing import Annotated, ClassVar

import typer
from typer.core import TyperGroup

from complexo.errors import ComplexoError, check_choice

try:  # typer ≥ 0.2x vendors click and exposes its exception base as TyperException
    _UsageError = typer.TyperException
except AttributeError:  # older typer runs on click itself
    from click import ClickException as _UsageError


class Commands(TyperGroup):
    """Bad input becomes one line on stderr and a non-zero exit, never a traceback; an
    unknown command is answered with the closest one. ``refused`` says why a registered
    analysis is not in this group (not swept, not profiled)."""

    refused: ClassVar[dict[str, str]] = {}

    def resolve_command(self, ctx, args):
        name = args[0] if args else ""
        if ctx.resilient_parsing:  # shell completion: offer what there is, refuse nothing
            return super().resolve_command(ctx, args)
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            if name in self.refused:
                raise ComplexoError(self.refused[name])
            check_choice("command", name, sorted(self.list_commands(ctx)))
        found = super().resolve_command(ctx, args)
        from complexo.cli.coerce import lighten

        lighten(found[1])  # its options converted without importing pydantic
        return found

    def main(self, *args, **kwargs):
        from complexo import progress

        kwargs["standalone_mode"] = False
        words = kwargs.get("args", args[0] if args else None)
        words = sys.argv[1:] if words is None else list(words)
        quiet = "--json" in words or "--csv" in words  # a document on stdout: nothing else
        from complexo.cli.coerce import lighten

        lighten(self)  # its own options (--version, shell completion's) too
        try:
            with progress.shown(not quiet):
                code = super().main(*args, **kwargs)
        except _UsageError as err:  # typer's usage errors: bad values, unknown options
            fail(err.format_message(), getattr(err, "exit_code", 2))
        except ComplexoError as err:
            fail(str(err), 2)
        except typer.Abort:
            fail("aborted", 1)
        sys.exit(code if isinstance(code, int) else 0)


def fail(message: str, code: int) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def plain(text: str) -> str:
    """Help text as written: typer renders help through rich, whose markup would take
    ``[its options]`` for a style and drop it."""
    return text.replace("[", "\\[")


def _show_version(value: bool) -> None:
    if value:
        from complexo import __version__

        typer.echo(f"complexo {__version__}")
        raise typer.Exit()


def group(help: str, refused: dict[str, str] | None = None, version: bool = False) -> typer.Typer:
    """A command group whose bare name prints its help (and, with ``version``, whose
    ``--version`` prints complexo's)."""
    cls = type("Group", (Commands,), {"refused": refused or {}})
    sub = typer.Typer(  # the top level offers shell completion (--install-completion)
        cls=cls, help=plain(help), add_completion=version, pretty_exceptions_enable=False
    )

    if version:

        @sub.callback(invoke_without_command=True)
        def _top(
            ctx: typer.Context,
            version: Annotated[
                bool,
                typer.Option(
                    "--version", help="Print the version.", callback=_show_version, is_eager=True
                ),
            ] = False,
        ) -> None:
            if ctx.invoked_subcommand is None:
                typer.echo(ctx.get_help())

        return sub

    @sub.callback(invoke_without_command=True)
    def _root(ctx: typer.Context) -> None:
        if ctx.invoked_subcommand is None:
            typer.echo(ctx.get_help())

    return sub


# The version of the JSON contract: every document the command line prints carries it first, and
# it grows by one when a key changes meaning or goes away (new keys leave it as it is).
SCHEMA = 1


def emit_json(doc: dict) -> None:
    sys.stdout.write(json.dumps({"schema": SCHEMA, **doc}, indent=2) + "\n")


def print_rich(*renderables) -> None:
    from complexo.render import console

    console().print(*renderables)


TOP = (
    "complexo: what does a deep-learning building block cost, and why? Symbolic formulas, "
    "checked against fvcore, FlopCounterMode and autograd's saved tensors."
)


@functools.cache
def _app() -> typer.Typer:
    """Every command: one per registered analysis, then sweep, profile and the rest."""
    from complexo.analyses import ANALYSES
    from complexo.cli import analysis, commands

    top = group(TOP, version=True)
    for a in ANALYSES.values():
        analysis.add(top, a)
    commands.add(top, ANALYSES)
    return top


def _one(name: str) -> typer.Typer:
    """The command of one analysis alone, under the same top level: what ``complexo NAME ...``
    runs, without importing the other analyses or building their commands."""
    from complexo.analyses import load
    from complexo.cli import analysis

    top = group(TOP, version=True)
    analysis.add(top, load(name))
    return top


def __getattr__(name: str):
    if name == "app":  # built on first use: it imports every analysis
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


OLDEST_EVERY = 1000  # young collections between two of the oldest generation (Python's: 10)


def collect_rarely() -> None:
    """The oldest generation collected after every 1000 young collections instead of 10
    (:data:`OLDEST_EVERY`; the younger two as Python has them). Importing torch makes millions
    of objects, and Python walks all of them each time they have grown by a quarter: five full
    collections, 0.3 s of a checked answer's 1.6 s and most of what a command pays beyond its
    imports. Cycles are still collected, in the young generations at once and in the oldest
    every 7 million or so allocations. For the console script only: a process that imports
    complexo keeps its own settings."""
    import gc

    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, OLDEST_EVERY)


def entry() -> None:
    """The console script (and ``python -m complexo``): :func:`main`, then the process ends
    without the interpreter's teardown. Freeing every module's objects one by one is 0.3 s
    after ``import torch`` and 0.65 s once a counter has imported torch._dynamo (a quarter of a
    checked answer's wall time, spent after the answer is printed). By then complexo has
    written and closed everything it writes; the output streams are flushed here, and no
    atexit handler is left that does more than the process's end does (torch's, matplotlib's
    close figures and free memory). :func:`main` itself ends in SystemExit, as a library
    function should. Full garbage collections are made rare first (:func:`collect_rarely`)."""
    import contextlib
    import os

    collect_rarely()
    try:
        main()
        code = 0
    except SystemExit as end:
        code = end.code
    if code is not None and not isinstance(code, int):  # sys.exit("message"): Python's rule
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a reader that went away (| head): nothing to tell
            stream.flush()
    os._exit(code or 0)


def _one_within(within: str, name: str) -> typer.Typer:
    """``complexo sweep NAME ...`` or ``complexo profile NAME ...``: that group with NAME's
    command alone (the other analyses' modules are ~0.2 s of imports and commands); the whole
    app where NAME is not in the group, whose refusal says why."""
    from complexo.analyses import load
    from complexo.cli import commands

    a = load(name)
    if not (a.sweep if within == "sweep" else a.profiling is not None):
        return _app()
    top = group(TOP, version=True)
    (commands.add_sweeps if within == "sweep" else commands.add_profiles)(top, {name: a})
    return top


def main() -> None:
    from complexo.analyses import NAMES

    words = sys.argv[1:]
    if words and words[0] in NAMES:
        _one(words[0])()
    elif len(words) > 1 and words[0] in ("sweep", "profile") and words[1] in NAMES:
        _one_within(words[0], words[1])()
    else:
        _app()()
