"""Typer parameters from a config's option table (:func:`complexo.registry.option`), and the
conversion back: one table, so every command that takes an analysis's options (the analysis's
own, ``sweep X``, ``profile X``, ``--variant``) spells them the same way.

A generated command is a plain function whose ``__signature__`` lists ``Annotated[T,
typer.Option(...)]`` parameters; typer reads that signature as it reads a written one.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer

from complexo.cli.coerce import lighten
from complexo.errors import ComplexoError
from complexo.registry import Option, flag, options

Parameter = inspect.Parameter


def _base(tp) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def _metavar(choices: Sequence[str]) -> str:
    """fp32|fp16|bf16; a long list by its first few."""
    shown = "|".join(choices)
    return shown if len(shown) <= 40 else "|".join(choices[:3]) + "|..."


def parameters(config_type) -> list[Parameter]:
    """One typer parameter per option of ``config_type``, with its default and help."""
    hints = typing.get_type_hints(config_type)
    out = []
    for f, opt in options(config_type):
        tp, optional = _base(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out.append(_parameter(f, opt, tp, optional, default))
    return out


def _parameter(f: dataclasses.Field, opt: Option, tp, optional: bool, default) -> Parameter:
    name = flag(f)
    opt = dataclasses.replace(opt, help=opt.help.replace("[", "\\["))  # not rich markup
    if opt.positional:
        kind = Annotated[list[str] | None, typer.Argument(help=opt.help, show_default=False)]
        return Parameter(f.name, Parameter.KEYWORD_ONLY, annotation=kind, default=None)
    if tp is bool:
        decl = typer.Option(f"{name}/--no-{name[2:]}", help=opt.help)
        return Parameter(
            f.name, Parameter.KEYWORD_ONLY, annotation=Annotated[bool, decl], default=default
        )
    if opt.multiple:
        item = typing.get_args(tp)[0]
        kind = Annotated[list[item] | None, typer.Option(name, help=opt.help, show_default=False)]
        return Parameter(f.name, Parameter.KEYWORD_ONLY, annotation=kind, default=None)
    metavar, complete = None, None
    if opt.choices:  # checked by the config (with the closest choice), shown in --help
        metavar = _metavar(opt.choices)
        complete = _completer(opt.choices)  # and offered by shell completion
    if opt.separator:
        tp = str
        default = None if default is None else opt.separator.join(default)
    kind = tp | None if optional or default is None else tp
    option = typer.Option(name, help=opt.help, metavar=metavar, autocompletion=complete)
    annotated = Annotated[kind, option]
    return Parameter(f.name, Parameter.KEYWORD_ONLY, annotation=annotated, default=default)


def _completer(choices: Sequence[str]) -> Callable[[str], list[str]]:
    """Shell completion of a choice option: the choices that start with what is typed."""

    def complete(incomplete: str) -> list[str]:
        return [c for c in choices if c.startswith(incomplete)]

    return complete


def values(config_type, given: dict) -> dict:
    """Config field values from what typer parsed: choices back to str, a separated word to a
    tuple, repeated options and positional words to tuples; options left out keep the
    config's default."""
    out = {}
    for f, opt in options(config_type):
        if f.name not in given:
            continue
        v = given[f.name]
        if opt.separator and isinstance(v, str):
            v = tuple(t for t in v.replace(opt.separator, " ").split() if t)
        elif opt.multiple or opt.positional:
            if v is None:
                continue
            v = tuple(v)
        out[f.name] = v
    return out


def command(
    config_type, extra: Sequence[Parameter], body: Callable[..., None]
) -> Callable[..., None]:
    """A function typer can register: ``ctx``, the config's options, then ``extra``; calling it
    calls ``body(ctx, config_values, explicit, **extra)``, where ``explicit`` names the config
    options given on the command line (not left at their default)."""
    own = parameters(config_type)
    names = {p.name for p in own}

    def run(click_context: typer.Context, **kwargs) -> None:
        given = {k: v for k, v in kwargs.items() if k in names}
        explicit = {k for k in given if _given(click_context, k)}
        rest = {k: v for k, v in kwargs.items() if k not in names}
        body(click_context, values(config_type, given), explicit, **rest)

    # not "ctx": a config may have a field of that name (a model's context)
    context = Parameter("click_context", Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    run.__signature__ = inspect.Signature([context, *own, *extra])
    return run


def _given(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def option(name: str, tp, default, help: str, *decls: str) -> Parameter:
    """One of a command's own options (not a config field): ``--json``, ``--repeat`` ..."""
    flags = decls or (f"--{name.replace('_', '-')}",)
    annotated = Annotated[tp, typer.Option(*flags, help=help.replace("[", "\\["))]
    return Parameter(name, Parameter.KEYWORD_ONLY, annotation=annotated, default=default)


def parse(config_type, args: Sequence[str], what: str) -> dict:
    """Config values from a list of words (``--variant "--window 8"``), parsed by the same
    generated options as the command line; only the options given."""
    app = typer.Typer(add_completion=False)
    found: dict = {}

    def body(ctx, config, explicit):
        found.update({k: v for k, v in config.items() if k in explicit})

    app.command()(command(config_type, [], body))
    click_command = typer.main.get_command(app)
    lighten(click_command)
    try:
        click_command.main(list(args), prog_name=what, standalone_mode=False)
    except typer.Exit:
        pass
    except Exception as err:
        if hasattr(err, "format_message"):
            raise ComplexoError(f"{what}: {err.format_message()}") from None
        raise
    return found
