"""Option values converted without pydantic. typer ≥ 0.29 converts every option that is not a
flag through a pydantic ``TypeAdapter`` built on first use: importing pydantic and building the
adapters is ~50 ms of every command, a tenth of a formula-only answer. The options complexo
generates (:mod:`complexo.cli.generate`) are ``int``, ``float``, ``str``, ``bool`` and lists of
``int`` or ``str``; :func:`lighten` gives each such option of a command a converter that takes
what pydantic's lax mode takes from a command line (surrounding spaces, ``+8``, ``8_000``,
``8.0`` for an int, ``1e3`` for a float, ``yes``/``off`` for a bool) and refuses the rest in
pydantic's words. Any other type, or
a typer without this hook (a private one: ``_runtime_param``), keeps typer's conversion.

>>> convert(int, " 8_000 "), convert(int, "8.0"), convert(float, "1e3")
(8000, 8, 1000.0)
>>> convert(int, "1e3")
Traceback (most recent call last):
ValueError: Input should be a valid integer, unable to parse string as an integer
"""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any

try:  # typer 0.29's conversion contract; another typer converts as it always did
    from typer._click.exceptions import BadParameter
    from typer._coercion import RuntimeParam
except ImportError:  # pragma: no cover - another typer
    RuntimeParam = None

_ZERO_FRACTION = re.compile(r"\s*([+-]?\d+)\.0*\s*", re.ASCII)  # 8.0: an int to pydantic, and here
_BOOLS = {w: True for w in ("1", "on", "t", "true", "y", "yes")}
_BOOLS |= {w: False for w in ("0", "off", "f", "false", "n", "no")}
_FAILS = {
    bool: "Input should be a valid boolean, unable to interpret input",
    int: "Input should be a valid integer, unable to parse string as an integer",
    float: "Input should be a valid number, unable to parse string as a number",
}


def convert(item: type, value: Any) -> Any:
    """``value`` (a word of the command line, or a default) as ``item``: int, float, str or
    bool."""
    if item is str:
        return str(value)
    if item is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _BOOLS:  # no spaces around it
            return _BOOLS[value.lower()]
        raise ValueError(_FAILS[bool])
    if isinstance(value, item) and not isinstance(value, bool):
        return value
    try:
        if isinstance(value, str) and not value.isascii():  # int() reads ١٢ as 12: pydantic not
            raise ValueError(value)
        return item(value)
    except (TypeError, ValueError):
        whole = _ZERO_FRACTION.fullmatch(value) if item is int and isinstance(value, str) else None
        if whole is None:
            raise ValueError(_FAILS[item]) from None
        return int(whole.group(1))


if RuntimeParam is not None:

    @dataclasses.dataclass(frozen=True)
    class Plain(RuntimeParam):
        """An int, float, str or bool option, or a repeated one, converted by :func:`convert`."""

        item: type = str

        def _coerce_value(self, value: Any, param, ctx) -> Any:
            try:
                if isinstance(value, list | tuple):
                    return [convert(self.item, v) for v in value]
                return convert(self.item, value)
            except ValueError as err:
                raise BadParameter(str(err), ctx=ctx, param=param) from None


def _item(annotation) -> type | None:
    """int, float, str or bool for those and lists of them; None for anything else."""
    if typing.get_origin(annotation) is list:
        (annotation,) = typing.get_args(annotation) or (None,)
    return annotation if annotation in (int, float, str, bool) else None


def lighten(command) -> None:
    """Give each of ``command``'s options of a plain type the converter above, its --help
    (made anew for each context) included."""
    if RuntimeParam is None or getattr(command, "_complexo_light", False):
        return
    for param in getattr(command, "params", ()):
        _lighten(param)
    made = getattr(command, "get_help_option", None)
    if made is not None:

        def help_option(ctx):
            option = made(ctx)
            if option is not None:
                _lighten(option)
            return option

        command.get_help_option = help_option
    command._complexo_light = True


def _lighten(param) -> None:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None or getattr(param, "_runtime_param", True) is not None:
        return  # not typer 0.29's parameter, or its converter is built already
    item = _item(descriptor.annotation)
    if item is not None:
        param._runtime_param = Plain(descriptor.parameter_info, descriptor.annotation, item)
