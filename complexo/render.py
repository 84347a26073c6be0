"""Terminal presentation of a :class:`~complexo.result.Result`: rich tables and a few lines."""

from __future__ import annotations

from fractions import Fraction

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from complexo.conventions import CONVENTION
from complexo.cost import CostModel, Kind, evaluate, plain
from complexo.result import COUNTERS, Quantity, Result

_SI = ["", "k", "M", "G", "T", "P", "E", "Z"]
_BINARY = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]


def human(value: int | float | None, unit: str) -> str:
    """34.4 GFLOP, 1.50 GiB, 4.20 M params: three significant figures and the unit."""
    if value is None:
        return "—"
    if unit == "byte":
        number, prefix = _scaled(value, 1024, _BINARY)
        return f"{number} {prefix}"
    number, prefix = _scaled(value, 1000, _SI)
    return f"{number} {prefix}".rstrip() if unit == "param" else f"{number} {prefix}FLOP"


def _scaled(value: float, base: int, prefixes: list[str]) -> tuple[str, str]:
    v, i = float(value), 0
    while abs(v) >= base and i < len(prefixes) - 1:
        v, i = v / base, i + 1
    return (f"{int(v)}" if i == 0 else _sig3(v)), prefixes[i]


def _sig3(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 99.95 else f"{v:.1f}" if abs(v) >= 9.995 else f"{v:.2f}"


def percent(delta: Fraction) -> str:
    return f"{float(delta) * 100:+.1f}%"


def agreement(q: Quantity) -> Text:
    parts, ok = [], True
    for c in COUNTERS:
        if q.measured.get(c) is None:
            continue
        if q.agrees(c):
            parts.append(f"{c} exact")
        else:
            ok = False
            parts.append(f"{c} {percent(q.delta(c))}" if q.value else f"{c} differs")
    if not parts:
        return Text("no counter", style="dim")
    if ok:
        return Text("exact", style="green")
    return Text(" · ".join(parts), style="yellow")


def quantities_table(result: Result) -> Table:
    table = Table(title="What it costs (formula vs. independent counts)", title_justify="left")
    table.add_column("quantity")
    table.add_column("formula", overflow="fold")
    table.add_column("value", justify="right")
    table.add_column("fvcore", justify="right")
    table.add_column("torch", justify="right")
    table.add_column("agreement")
    for q in result.quantities:
        table.add_row(
            q.label,
            plain(q.expr),
            human(q.value, q.unit),
            human(q.measured.get("fvcore"), q.unit),
            human(q.measured.get("torch"), q.unit),
            agreement(q),
        )
    return table


def terms_table(model: CostModel, values: dict) -> Table:
    table = Table(title="Why: the terms", title_justify="left")
    for name, justify in (
        ("kind", "left"),
        ("term", "left"),
        ("formula", "left"),
        ("value", "right"),
        ("share", "right"),
        ("", "left"),
    ):
        table.add_column(name, justify=justify)
    for kind in Kind:
        terms = model.terms(kind)
        total = sum(evaluate(t.expr, values) for t in terms)
        for i, t in enumerate(terms):
            v = evaluate(t.expr, values)
            table.add_row(
                kind.value.replace("_", " ") if i == 0 else "",
                t.name + (" (matmul)" if t.matmul else ""),
                plain(t.expr, factor=False),
                human(v, kind.unit),
                f"{100 * v / total:.1f}%" if total else "—",
                Text(t.note, style="dim"),
                end_section=i == len(terms) - 1,
            )
    return table


def gap_lines(result: Result) -> list[Text]:
    """One line per op a counter skipped, with the FLOPs or bytes that is, under a header per
    disagreeing (quantity, counter) that says how much of the gap those lines explain."""
    lines: list[Text] = []
    for q in result.quantities:
        for c in COUNTERS:
            gaps = [g for g in q.gaps if g.counter == c]
            if not gaps:
                continue
            total = q.value - (q.measured[c] or 0)
            unexplained = sum(g.value for g in gaps if g.reason == "unexplained")
            verdict = "all of it explained" if not unexplained else "NOT fully explained"
            style = "bold" if not unexplained else "bold red"
            lines.append(
                Text(
                    f"{c} on {q.name}: {human(q.measured[c], q.unit)} vs "
                    f"{human(q.value, q.unit)}, a gap of {human(total, q.unit)} — {verdict}",
                    style=style,
                )
            )
            for g in gaps:
                if g.reason == "unexplained":
                    lines.append(Text(f"    unexplained: {human(g.value, q.unit)}", style="red"))
                else:
                    terms = ", ".join(g.terms)
                    lines.append(
                        Text(f"    {g.op} ({g.reason}): {terms} = {human(g.value, q.unit)}")
                    )
    return lines


def summary_lines(result: Result) -> list[Text]:
    s = result.summary
    lines = [Text("Complexity", style="bold")]
    for kind, order in s.big_o.items():
        lines.append(Text(f"  {kind.replace('_', ' '):<18} {order}"))
    term, value, share = s.dominant
    lines.append(
        Text(
            f"  dominant forward term here: {term}, {human(value, 'flop')} "
            f"({float(share) * 100:.1f}% of forward FLOPs)"
        )
    )
    for c in s.crossovers:
        here = ""
        at = result.values.get(c.symbol)
        if at and c.value:
            here = f"; here {c.symbol} = {at}, {at / float(c.value):.2f}× the crossover"
        lines.append(
            Text(f"  {c.label} at {c.symbol} = {plain(c.expr)} = {_number(c.value)}{here}")
        )
    return lines


def _number(v: Fraction) -> str:
    return str(v.numerator) if v.denominator == 1 else f"{float(v):.1f}"


def header(result: Result) -> Text:
    cfg = ", ".join(f"{k}={v}" for k, v in result.config.items())
    return Text.assemble(
        (f"complexo {result.analysis}", "bold"),
        f"  {cfg}\n",
        (f"{CONVENTION}; counted on the meta device (nothing allocated)", "dim"),
    )


def render(result: Result, *, terms: bool = True) -> Group:
    parts: list = [header(result), quantities_table(result)]
    gaps = gap_lines(result)
    if gaps:
        parts += [Text("Where the counters disagree", style="bold underline"), *gaps]
    parts += [Text(f"note: {note}", style="dim") for note in result.notes]
    if terms:
        parts.append(terms_table(result.model, result.values))
    parts += summary_lines(result)
    return Group(*parts)


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False)
