"""A user's block: ``FILE.py:NAME`` or ``package.module:NAME`` loaded as an nn.Module subclass,
and the sizes given on the command line (``--ctor 'h*hs,h'``, ``--input B,n,d``, ``--dims``,
``--at``) read as sympy expressions over named sizes. Every failure is one ComplexoError line."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import sys
import traceback
from pathlib import Path

import sympy

from complexo.errors import ComplexoError

DTYPES = ("float32", "bfloat16", "float16", "float64")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# ---------------------------------------------------------------- loading FILE.py:NAME


def load_class(spec: str):
    """``path/to/file.py:NAME`` or ``package.module:NAME`` -> the nn.Module subclass."""
    import torch

    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise ComplexoError(f"'{spec}': expected FILE.py:NAME or package.module:NAME")
    if where.endswith(".py") or "/" in where:
        path = Path(where)
        if not path.is_file():
            raise ComplexoError(f"no such file: {where}")
        modname = f"_complexo_block_{abs(hash(str(path.resolve())))}"
        loader = importlib.util.spec_from_file_location(modname, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[modname] = module
        try:
            loader.loader.exec_module(module)
        except Exception as err:
            raise ComplexoError(f"importing {where} failed: {_one_line(err)}") from None
    else:
        try:
            module = importlib.import_module(where)
        except Exception as err:
            raise ComplexoError(f"cannot import module {where}: {_one_line(err)}") from None
    if not hasattr(module, name):
        found = sorted(
            k for k, v in vars(module).items() if isinstance(v, type) and _is_module(v, torch)
        )
        raise ComplexoError(f"{where} has no {name}; nn.Module classes there: {found or 'none'}")
    cls = getattr(module, name)
    if not _is_module(cls, torch):
        raise ComplexoError(f"{where}:{name} is not an nn.Module subclass")
    return cls


def _is_module(obj, torch) -> bool:
    return isinstance(obj, type) and issubclass(obj, torch.nn.Module)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def _where(err: BaseException) -> str:
    """The innermost frame of the failure outside torch and complexo: the user's line."""
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        if "/torch/" not in frame.filename and "/complexo/" not in frame.filename:
            return f" (at {Path(frame.filename).name}:{frame.lineno}: {frame.line})"
    return ""


# ---------------------------------------------------------------- sizes as expressions


def symbol(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, integer=True, positive=True)


def parse_exprs(text: str, what: str) -> list[sympy.Expr]:
    """'h*hs,h' -> [h*hs, h]; every name a positive-integer symbol. Empty text: no items."""
    if not text.strip():
        return []
    out = []
    for item in text.split(","):
        names = {m: symbol(m) for m in _NAME.findall(item)}
        try:
            expr = sympy.sympify(item.strip(), locals=names, rational=True)
        except (sympy.SympifyError, SyntaxError, TypeError):
            raise ComplexoError(f"{what}: cannot read '{item.strip()}' as a size") from None
        if not isinstance(expr, sympy.Expr) or (expr.is_number and not expr.is_integer):
            raise ComplexoError(f"{what}: '{item.strip()}' is not an integer size")
        if expr.is_number and expr < 1:
            raise ComplexoError(f"{what}: size '{item.strip()}' must be at least 1")
        out.append(expr)
    return out


_KEYWORD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(?!=)(.*)")


def parse_ctor(text: str, symbolic: bool) -> tuple[list, dict, list[str]]:
    """--ctor 'd,h,0.0,batch_first=True' -> (args, kwargs, size names in order). A Python
    literal (0.0, True, 'gelu', 64) is passed as it is; with ``symbolic``, anything else is a
    size expression over named sizes (h*hs), whose names are returned."""
    args, kwargs, names = [], {}, []
    for item in text.split(",") if text.strip() else []:
        keyword = _KEYWORD.fullmatch(item)
        key, item = (keyword.group(1), keyword.group(2)) if keyword else (None, item)
        try:
            value = ast.literal_eval(item.strip())
        except (ValueError, SyntaxError):
            if not symbolic:
                raise ComplexoError(
                    f"--ctor: '{item.strip()}' is not a number or literal"
                ) from None
            (value,) = parse_exprs(item, "--ctor")
            names += [str(m) for m in _NAME.findall(item)]
        if key:
            kwargs[key] = value
        else:
            args.append(value)
    return args, kwargs, names


def parse_shapes(text: str) -> list[list[sympy.Expr]]:
    """'B,n,d;B,m,d' -> one shape per input."""
    shapes = [parse_exprs(part, "--input") for part in text.split(";")]
    if not text.strip() or any(not s for s in shapes):
        raise ComplexoError("--input: give each input's shape, e.g. --input B,n,d (';' between)")
    return shapes


def parse_values(text: str | None, what: str) -> dict[str, int]:
    """'B=2,n=3' -> {'B': 2, 'n': 3}."""
    values: dict[str, int] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not _NAME.fullmatch(name):
            raise ComplexoError(f"{what}: expected NAME=VALUE, got '{item.strip()}'")
        try:
            values[name] = int(value)
        except ValueError:
            raise ComplexoError(f"{what}: {name}={value.strip()} is not an integer") from None
        if values[name] < 1:
            raise ComplexoError(f"{what}: {name} must be at least 1")
    return values


_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71)


def sample_hints(names: list[str], given: dict[str, int]) -> dict[str, int]:
    """The sizes the trace runs at: the ones given, the others distinct primes not given (torch
    specialises sizes 0 and 1, and merges sizes of equal value)."""
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ComplexoError(f"--dims: {', '.join(unknown)} not in --ctor or --input")
    spare = iter(p for p in _PRIMES if p not in given.values())
    hints = {}
    for name in names:
        hints[name] = given[name] if name in given else next(spare, None)
        if hints[name] is None:
            raise ComplexoError("too many sizes: give the rest with --dims")
        if hints[name] < 2:
            raise ComplexoError(f"--dims: {name}={hints[name]}: torch specialises 0 and 1")
    return hints


def raise_unknown(what: str, names: list[str]) -> None:
    raise ComplexoError(f"{what}: {', '.join(names)} not in --ctor or --input")
