"""What every analysis returns: quantities with their formula, exact value and the counters'
readings, the counters' gaps attributed to the ops they skipped, and the complexity summary.
The JSON document built here is the contract scripts rely on (see README, "JSON")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import sympy

from complexo.conventions import CONVENTION
from complexo.cost import CostModel, Crossover, Kind, Term, big_o, big_o_text, evaluate, latex


@dataclass(frozen=True)
class Count:
    """One counter's reading of one pass. ``uncounted_ops``: operators that ran and that this
    counter has no formula for (fvcore's ``unsupported_ops``; for torch, ops missing from
    FlopCounterMode's registry)."""

    counter: str
    total: int
    by_op: dict[str, int] = field(default_factory=dict)
    uncounted_ops: frozenset[str] = frozenset()
    by_module: dict[str, int] = field(default_factory=dict)  # qualified name -> FLOPs inside it

    def within(self, names: tuple[str, ...]) -> int:
        """FLOPs inside the modules whose own (last) name is one of ``names``."""
        return sum(v for k, v in self.by_module.items() if k.rsplit(".", 1)[-1] in names)


COUNTERS = ("fvcore", "torch")


@dataclass(frozen=True)
class Gap:
    """Part of a counter's disagreement with the formula: the terms it did not count, and why."""

    counter: str
    op: str  # the operator that carries the terms ("" for an unexplained residual)
    reason: str
    terms: tuple[str, ...]
    value: int


@dataclass(frozen=True)
class Quantity:
    name: str
    label: str
    kind: Kind
    expr: sympy.Expr
    value: int
    measured: dict[str, int | None]
    gaps: tuple[Gap, ...] = ()
    proof: str = ""  # "proved for all shapes (how)", where a proof covers it (complexo.prove)

    @property
    def unit(self) -> str:
        return self.kind.unit

    def delta(self, counter: str) -> Fraction | None:
        m = self.measured.get(counter)
        if m is None or self.value == 0:
            return None
        return Fraction(m - self.value, self.value)

    def agrees(self, counter: str) -> bool | None:
        m = self.measured.get(counter)
        return None if m is None else m == self.value


@dataclass(frozen=True)
class Summary:
    """Big-O per kind, the dominant forward term, and crossovers."""

    big_o: dict[str, str]
    dominant: tuple[str, int, Fraction]
    crossovers: tuple[Crossover, ...]


class Quantities(list):
    """A result's quantities in order, also looked up by name: ``r.quantities["params"]``."""

    def __getitem__(self, key):
        if isinstance(key, str):
            for q in self:
                if q.name == key:
                    return q
            names = ", ".join(q.name for q in self)
            raise KeyError(f"no quantity {key!r}; this result has {names}")
        return super().__getitem__(key)


class Shown:
    """How a result shows itself: ``render()`` for the terminal (rich), and in a notebook as
    HTML or Markdown; ``to_json()`` is the document the command line prints with --json."""

    def render(self, brief: bool = False, terms: bool = False):
        raise NotImplementedError

    def __rich__(self):
        return self.render()

    def _repr_html_(self) -> str:
        from rich.console import Console

        console = Console(record=True, width=120, file=_Discard())
        console.print(self.render())
        return console.export_html(inline_styles=True)

    def _repr_markdown_(self) -> str:
        from complexo.render import markdown

        return markdown(self)


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


@dataclass
class Result(Shown):
    analysis: str
    config: dict
    values: dict  # symbol -> number: the config as the formulas see it
    model: CostModel
    quantities: list[Quantity]
    summary: Summary
    notes: list[str] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)  # shapes worth a row: tokens, maps

    def __post_init__(self):
        self.quantities = Quantities(self.quantities)

    def render(self, brief: bool = False, terms: bool = False):
        from complexo.render import render

        return render(self, terms=not brief)

    def plot(self, ax=None) -> dict:
        """Each term of the forward FLOPs as a bar, with its share (its kind's terms when there
        is no forward): what a notebook draws of one result."""
        from complexo.plot import draw_terms

        return draw_terms(self, ax)

    def to_json(self) -> dict:
        return {
            "analysis": self.analysis,
            "config": self.config,
            "convention": CONVENTION,
            **self.body(),
        }

    def body(self) -> dict:
        """The document without its config: quantities, terms, complexity and notes."""
        return {
            "quantities": {
                q.name: {
                    "formula": str(q.expr),
                    "latex": latex(q.expr),
                    "value": q.value,
                    "unit": q.unit,
                    "measured": q.measured,
                    "gaps": [asdict(g) for g in q.gaps],
                    "proof": q.proof or None,
                }
                for q in self.quantities
            },
            "terms": {
                kind.value: {
                    t.name: {
                        "formula": str(t.expr),
                        "value": evaluate(t.expr, self.values),
                        "matmul": t.matmul,
                    }
                    for t in self.model.terms(kind)
                }
                for kind in Kind
                if self.model.terms(kind)
            },
            "big_o": self.summary.big_o,
            "dominant_forward_term": {
                "term": self.summary.dominant[0],
                "value": self.summary.dominant[1],
                "share": float(self.summary.dominant[2]),
            },
            "crossovers": [crossover_json(c) for c in self.summary.crossovers],
            "facts": self.facts,
            "notes": self.notes,
        }

    def quantity(self, name: str) -> Quantity:
        return next(q for q in self.quantities if q.name == name)


def crossover_json(c: Crossover) -> dict:
    return {
        "label": c.label,
        "symbol": str(c.symbol),
        "formula": str(c.expr),
        "value": float(c.value),
    }


def ratio_key(name: str) -> str:
    """A sweep row's column for a quantity's ratio to the baseline: train_step_flops ->
    train_step_ratio."""
    for suffix in ("_bytes", "_flops", "_params"):
        name = name.removesuffix(suffix)
    return name + "_ratio"


@dataclass
class Comparison(Shown):
    """Two variants of one analysis side by side (the first is the baseline): each a full
    :class:`Result`, the ratio variant / baseline of every quantity, a sweep table of formula
    values, and crossovers between the sides."""

    analysis: str
    config: dict
    sides: dict[str, Result]
    sweep: list[dict] = field(default_factory=list)
    crossovers: tuple[Crossover, ...] = ()
    notes: list[str] = field(default_factory=list)

    def render(self, brief: bool = False, terms: bool = False):
        from complexo.render_sides import render_comparison

        return render_comparison(self, formulas=not brief, terms=terms)

    def plot(self, ax=None) -> dict:
        """The analysis's own figure (on ``ax``, a list of its panels' axes, or new ones)."""
        from complexo.plot import draw_registered

        return draw_registered(self, ax)

    @property
    def baseline(self) -> Result:
        return next(iter(self.sides.values()))

    @property
    def variant(self) -> Result:
        return list(self.sides.values())[1]

    def ratio(self) -> dict[str, float | None]:
        """variant / baseline for each quantity both have; None where the baseline is 0."""
        base = {q.name: q.value for q in self.baseline.quantities}
        return {
            q.name: (q.value / base[q.name] if base[q.name] else None)
            for q in self.variant.quantities
            if q.name in base
        }

    def to_json(self) -> dict:
        return {
            "analysis": self.analysis,
            "config": self.config,
            "convention": CONVENTION,
            **{name: side.body() for name, side in self.sides.items()},
            "ratio": self.ratio(),
            "sweep": self.sweep,
            "crossovers": [crossover_json(c) for c in self.crossovers],
            "notes": self.notes,
        }


def _op_for(counter: str, ops: Sequence[str]) -> str:
    """fvcore names TorchScript ops (aten::softmax), torch names dispatcher ops (aten._softmax)."""
    sep = "::" if counter == "fvcore" else "."
    return next((op for op in ops if op.startswith("aten" + sep)), ops[0] if ops else "")


def attribute(counter: Count, terms: Sequence[Term], values: Mapping) -> list[Gap]:
    """Explain ``formula − measured`` for one counter: every term it did not count, grouped by
    the operator that carries it, and any residual that those terms do not explain."""
    missed: dict[tuple[str, str], list[Term]] = {}
    matmul_ops = {op for t in terms if t.matmul for op in t.ops}
    own = "counted with this counter's own per-element cost"
    for t in terms:
        op = next((op for op in t.ops if op in counter.uncounted_ops), None)
        if op is not None:
            how = "unsupported op" if counter.counter == "fvcore" else "no FLOP formula for this op"
            missed.setdefault((op, how), []).append(t)
        elif not t.matmul:
            # an element-wise op the counter does count (fvcore's norms), or one it skips
            op = next((op for op in t.ops if op in counter.by_op and op not in matmul_ops), None)
            if op is not None:
                missed.setdefault((op, own), []).append(t)
            else:
                op = _op_for(counter.counter, t.ops)
                missed.setdefault((op, "counts matrix products only"), []).append(t)
    gaps = [
        Gap(
            counter.counter,
            op,
            how,
            tuple(t.name for t in ts),
            sum(evaluate(t.expr, values) for t in ts) - (counter.by_op[op] if how == own else 0),
        )
        for (op, how), ts in missed.items()
    ]
    # Ops the counter gives FLOPs to that no term of the formula stands for (fvcore's 5 MACs per
    # element of a LayerNorm, in a formula of matrix products): the gap runs the other way.
    carried = {op for t in terms for op in t.ops}
    for op, value in counter.by_op.items():
        if value and op not in carried:
            gaps.append(Gap(counter.counter, op, "counted here, outside the formula", (), -value))
    formula = sum(evaluate(t.expr, values) for t in terms)
    residual = formula - counter.total - sum(g.value for g in gaps)
    if residual:
        gaps.append(Gap(counter.counter, "", "unexplained", (), residual))
    return gaps


@dataclass(frozen=True)
class QuantitySpec:
    """A quantity is the sum of a model's terms of one kind (or several: training memory is
    weights, gradients, optimizer state and activations), optionally only its matrix products or
    the terms carrying one tag."""

    name: str
    label: str
    kind: Kind | tuple[Kind, ...]
    matmul_only: bool = False
    tag: str = ""

    @property
    def unit_kind(self) -> Kind:
        return self.kind[0] if isinstance(self.kind, tuple) else self.kind


def build_quantity(
    spec: QuantitySpec,
    model: CostModel,
    values: Mapping,
    readings: Mapping[str, Count | int | None],
) -> Quantity:
    """A quantity's formula and value, each counter's reading, and, for FLOP readings that
    disagree, the gaps attributed to ops."""
    terms = model.terms(spec.kind, matmul_only=spec.matmul_only, tag=spec.tag)
    expr = sympy.Add(*(t.expr for t in terms))
    value = evaluate(expr, values)
    measured: dict[str, int | None] = {}
    gaps: list[Gap] = []
    for name in COUNTERS:
        reading = readings.get(name)
        if isinstance(reading, Count):
            measured[name] = reading.total
            if reading.total != value:
                gaps += attribute(reading, terms, values)
        else:
            measured[name] = reading
            if reading is not None and reading != value:
                gaps.append(Gap(name, "", "unexplained", (), value - reading))
    return Quantity(spec.name, spec.label, spec.unit_kind, expr, value, measured, tuple(gaps))


def summarise(
    model: CostModel,
    values: Mapping,
    growing: Sequence[sympy.Symbol],
    bounds: Mapping,
    crossovers: Sequence[Crossover],
) -> Summary:
    orders = {
        kind.value: big_o_text(big_o(model.total(kind), growing, bounds))
        for kind in (Kind.FORWARD, Kind.BACKWARD, Kind.ACTIVATION)
        if model.terms(kind)
    }
    term, value, share = model.dominant(Kind.FORWARD, values)
    return Summary(orders, (term.name, value, share), tuple(crossovers))
