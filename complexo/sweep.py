"""Sweeps: one analysis at many configs, one option (or two, as a grid) varied, the rest fixed.

Every point's formulas are evaluated, and the counters run at enough points to check them at
all (:func:`_to_count`: the degree of the formulas in the moved size, plus one; every point
with ``--check-all``), so a sweep's numbers are exactly the point-by-point calls'.
``--vary seq=256..65536`` with ``--log2`` (doubling from the start), ``--step S``
(arithmetic) or ``--points K`` (K evenly spaced integers).
"""

from __future__ import annotations

import itertools
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import sympy

from complexo.cost import Kind, evaluate
from complexo.counting import unchecked
from complexo.errors import ComplexoError
from complexo.registry import options
from complexo.result import Result

_RANGE = re.compile(r"^([a-z_]+)=(-?\d+)\.\.(-?\d+)$")
MAX_POINTS = 64


@dataclass(frozen=True)
class Vary:
    name: str  # a Config field
    values: tuple[int, ...]


def parse_vary(text: str, *, points: int | None, step: int | None, log2: bool) -> Vary:
    """``seq=256..4096`` and a spacing into the values to visit.

    >>> parse_vary("seq=256..4096", points=None, step=None, log2=True).values
    (256, 512, 1024, 2048, 4096)
    >>> parse_vary("dim=64..128", points=3, step=None, log2=False).values
    (64, 96, 128)
    """
    name, _, span = text.strip().partition("=")
    m = _RANGE.match(f"{name.replace('-', '_')}={span}")
    if not m:
        raise ComplexoError(f"--vary takes NAME=START..STOP with integers, got '{text}'")
    name, start, stop = m.group(1), int(m.group(2)), int(m.group(3))
    if start <= 0 or stop < start:
        raise ComplexoError(f"--vary {name}: need 0 < START ≤ STOP, got {start}..{stop}")
    if sum(x is not None and x is not False for x in (points, step, log2 or None)) > 1:
        raise ComplexoError("give one of --points, --step, --log2")
    # Each spacing's count is known before its values are listed: 10**30 values are refused
    # without building them.
    if log2:
        count = (stop // start).bit_length()  # start·2**i ≤ stop
    elif step is not None:
        if step <= 0:
            raise ComplexoError(f"--step must be positive, got {step}")
        count = (stop - start) // step + 1
    else:
        count = 5 if points is None else points
        if count < 1:
            raise ComplexoError(f"--points must be positive, got {count}")
    if count > MAX_POINTS:
        raise ComplexoError(f"--vary {name} gives {count:,} points; at most {MAX_POINTS}")
    if log2:
        values = [start * 2**i for i in range(count)]
    elif step is not None:
        values = list(range(start, stop + 1, step))
    else:  # exact fractions: floats lose digits past 2**53
        gap = max(count - 1, 1)
        values = [round(start + Fraction((stop - start) * i, gap)) for i in range(count)]
    values = list(dict.fromkeys(values))
    return Vary(name, tuple(values))


def _analysis(analysis):
    """A registered analysis, given itself or its module."""
    return getattr(analysis, "ANALYSIS", analysis)


@dataclass
class Point:
    config: dict  # the varied options' values at this point
    result: Result
    profile: object | None = None  # a complexo.profile.Profile, with --profile


@dataclass
class Sweep:
    analysis: str
    fixed: dict
    vary: list[Vary]
    points: list[Point] = field(default_factory=list)
    counted: list[int] = field(default_factory=list)  # the points the counters ran at
    why: str = ""  # why those points are enough

    @property
    def symbol(self) -> sympy.Symbol | None:
        """The formula symbol the (first) varied option moves, found by comparing two
        points' values."""
        if len(self.points) < 2:
            return None
        a, b = self.points[0].result.values, self.points[1].result.values
        moved = [s for s in a if a[s] != b[s]]
        return moved[0] if len(moved) == 1 else None

    def exponents(self, kind: Kind = Kind.FORWARD) -> dict[str, int]:
        """Each term's power of the swept symbol, its slope on a log-log plot."""
        s = self.symbol
        if s is None:
            return {}
        model = self.points[0].result.model
        out = {}
        for t in model.terms(kind):
            expr = sympy.expand(t.expr.replace(sympy.ceiling, lambda x: x))
            out[t.name] = int(sympy.degree(expr, s)) if expr.is_polynomial(s) else 0
        return out

    def series(self, name: str) -> list[int]:
        return [p.result.quantity(name).value for p in self.points]

    def term_series(self, kind: Kind, term: str) -> list[int]:
        out = []
        for p in self.points:
            names = {t.name: t for t in p.result.model.terms(kind)}
            out.append(evaluate(names[term].expr, p.result.values) if term in names else 0)
        return out

    def to_json(self) -> dict:
        return {
            "analysis": "sweep",
            "of": self.analysis,
            "fixed": self.fixed,
            "vary": {v.name: list(v.values) for v in self.vary},
            "symbol": str(self.symbol) if self.symbol is not None else None,
            "exponents": self.exponents(),
            "counted": [self.points[i].config for i in self.counted],
            "counted_why": self.why,
            "points": [
                {
                    "config": p.config,
                    "quantities": {
                        q.name: {"value": q.value, "unit": q.unit, "measured": q.measured}
                        for q in p.result.quantities
                    },
                    **({"profile": p.profile.to_json()} if p.profile is not None else {}),
                }
                for p in self.points
            ],
        }

    def times(self) -> tuple[list[float], list[float | None]]:
        """Measured median seconds per point, and the roofline's prediction (None without
        ceilings)."""
        return [p.profile.median for p in self.points], [p.profile.predicted_s for p in self.points]

    def to_csv(self) -> str:
        names = [q.name for q in self.points[0].result.quantities]
        header = [v.name for v in self.vary]
        for q in names:
            header += [q, f"{q}_fvcore", f"{q}_torch"]
        lines = [",".join(header)]
        for p in self.points:
            row = [str(p.config[v.name]) for v in self.vary]
            for q in names:
                quantity = p.result.quantity(q)
                row += [str(quantity.value)] + [
                    "" if quantity.measured.get(c) is None else str(quantity.measured[c])
                    for c in ("fvcore", "torch")
                ]
            lines.append(",".join(row))
        return "\n".join(lines) + "\n"


def run(
    analysis,
    fixed: dict,
    vary: list[Vary],
    progress: Callable[[int, int], None] | None = None,
    *,
    check_all: bool = False,
) -> Sweep:
    """Analyse every point of the grid spanned by ``vary`` (one Vary: a line), the counters at
    enough of them to check the formulas at all of them (:func:`_to_count`). ``analysis``: a
    registered :class:`~complexo.registry.Analysis` (or its module)."""
    a = _analysis(analysis)
    if not 1 <= len(vary) <= 2:
        raise ComplexoError("sweep varies one option, or two for a grid")
    if not a.sweep:
        raise ComplexoError(
            f"sweep takes analyses with one result; {a.name} compares sides and has its "
            "own sweep (its table and --plot)"
        )
    swept = {f.name for f, opt in options(a.config) if opt.sweep}
    names = [v.name for v in vary]
    for v in vary:
        if v.name not in swept:
            valid = ", ".join(sorted(swept))
            raise ComplexoError(
                f"--vary {v.name}: {a.name} has no such option to vary; it has {valid}"
            )
        if v.name in fixed:
            raise ComplexoError(f"--{v.name.replace('_', '-')} is both fixed and varied")
    if len(set(names)) != len(names):
        raise ComplexoError(f"--vary {names[0]} is given twice")
    grid = list(itertools.product(*(v.values for v in vary)))
    configs = [a.make(**fixed, **dict(zip(names, g, strict=True))) for g in grid]
    sweep = Sweep(a.name, fixed, vary)
    counted: set[int] = {0}
    for i, (g, cfg) in enumerate(zip(grid, configs, strict=True)):
        if i == 1:  # the first point's formulas say where else the counters must run
            counted, sweep.why = _to_count(sweep.points[0].result.model, configs, check_all)
        if i in counted:
            result = a.analyse(cfg)
        else:
            with unchecked():
                result = a.analyse(cfg)
        sweep.points.append(Point(dict(zip(names, g, strict=True)), result))
        if progress:
            progress(i + 1, len(grid))
    sweep.counted = sorted(i for i in counted if i < len(grid))
    return sweep


def _to_count(model, configs, check_all: bool) -> tuple[set[int], str]:
    """The points where the counters must run for the formulas to be checked at every point:
    when the sweep moves one symbol s and every term is a polynomial in s of degree at most D,
    the formulas and the counters (which count executed ops, polynomial in the sizes too) agree
    everywhere once they agree at D + 1 points; so D + 1 points, the ends among them. Every
    point otherwise (a grid, a size that moves several symbols, ⌈R/2^k⌉), and with
    ``check_all``."""
    everything = set(range(len(configs)))
    if check_all:
        return everything, "every point counted (--check-all)"
    first, last = configs[0].values, configs[-1].values
    moved = [s for s in first if first[s] != last.get(s)]
    if len(configs) < 3 or len(moved) != 1 or set(first) != set(last):
        return everything, "every point counted"
    (s,) = moved
    degree = 0
    for term in model.terms(tuple(Kind)):
        expr = sympy.expand(term.expr)
        if expr == 0:  # a term this config switches off (sympy's degree of 0 is -oo)
            continue
        if not expr.is_polynomial(s):
            return everything, f"every point counted (not a polynomial in {s})"
        degree = max(degree, int(sympy.degree(expr, s)))
    if degree + 1 >= len(configs):
        return everything, "every point counted"
    last_index = len(configs) - 1
    chosen = {round(k * last_index / degree) for k in range(degree + 1)} if degree else {0}
    chosen.add(last_index)
    return chosen, (
        f"counted at {len(chosen)} points: every term is a polynomial of degree at most "
        f"{degree} in {s}, so agreeing at {degree + 1} points (the ends among them) the formulas "
        "and the counters agree at every point; the other points are the formulas' alone "
        "(--check-all counts every one)"
    )


def fit_exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of log y against log x: y ∝ x^slope.

    >>> round(fit_exponent([1, 2, 4, 8], [3, 12, 48, 192]), 6)
    2.0
    """
    import numpy as np

    x, y = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    slope, _ = np.polyfit(x, y, 1)
    return float(slope)


@dataclass
class Variants:
    """The same sweep under several option sets (``--variant "--causal"``, ``--variant
    "--window 512"``), side by side: one line each on a figure, one column each in a table."""

    analysis: str
    quantity: str
    sweeps: dict[str, Sweep]

    def to_json(self) -> dict:
        return {
            "analysis": "sweep",
            "of": self.analysis,
            "quantity": self.quantity,
            "variants": {label: s.to_json() for label, s in self.sweeps.items()},
        }

    def to_csv(self) -> str:
        first = next(iter(self.sweeps.values()))
        name = first.vary[0].name
        header = [name, *(f"{self.quantity} [{label}]" for label in self.sweeps)]
        rows = [",".join(header)]
        for i, point in enumerate(first.points):
            cells = [str(point.config[name])]
            cells += [
                str(s.points[i].result.quantity(self.quantity).value) for s in self.sweeps.values()
            ]
            rows.append(",".join(cells))
        return "\n".join(rows) + "\n"


def run_variants(
    analysis,
    fixed: dict,
    vary: list[Vary],
    variants: Sequence[str],
    quantity: str,
    progress=None,
    *,
    check_all: bool = False,
) -> Variants:
    """One sweep per variant, each variant's options added to the fixed ones."""
    if len(vary) != 1:
        raise ComplexoError("--variant compares lines: give one --vary")
    from complexo.cli.generate import parse

    a = _analysis(analysis)
    out = {}
    for k, text in enumerate(variants):
        extra = parse(a.config, shlex.split(text), f"--variant '{text}'")
        clash = set(extra) & set(fixed)
        if clash:
            raise ComplexoError(f"--variant '{text}' sets {', '.join(sorted(clash))}, also fixed")
        step = (
            None if progress is None else (lambda i, n, k=k: progress(k * n + i, n * len(variants)))
        )
        out[text or "(no extra options)"] = run(
            a, {**fixed, **extra}, vary, step, check_all=check_all
        )
    return Variants(a.name, quantity, out)


def profile_points(sweep: Sweep, *, device: str | None, repeat: int = 5, progress=None) -> None:
    """Run every point of a sweep for real (:func:`complexo.profile.run`) and keep its profile:
    every analysis that is swept and runs for real, in its first (default) mode."""
    from complexo import profile as profiling
    from complexo.analyses import ANALYSES

    timed = [a.name for a in ANALYSES.values() if a.sweep and a.profiling and a.profiling.sweep]
    if sweep.analysis not in timed:
        raise ComplexoError(f"--profile times {', '.join(timed)}, not {sweep.analysis}")
    a = ANALYSES[sweep.analysis]
    for i, point in enumerate(sweep.points):
        cfg = a.make(**point.result.config)
        point.profile = profiling.run(a, cfg, device=device, warmup=2, repeat=repeat)
        if progress:
            progress(i + 1, len(sweep.points))
