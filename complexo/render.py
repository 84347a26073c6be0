"""Terminal presentation of a :class:`~complexo.result.Result`: rich tables and a few lines."""

from __future__ import annotations

from fractions import Fraction

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from complexo.conventions import CONVENTION
from complexo.cost import CostModel, Crossover, Kind, evaluate, latex, plain
from complexo.result import COUNTERS, Comparison, Quantity, Result, ratio_key

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


def new_table(title: str) -> Table:
    """Every table's style: a title on the left, a rule under the header and no vertical
    rules, so that wide tables fit a narrow terminal before they wrap."""
    return Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0)
    )


def duration(seconds: float) -> str:
    """Three significant figures in s, ms or µs: 1.09 s, 58.1 ms, 373 µs, 4.91 µs."""
    if seconds >= 1:
        return f"{seconds:.3g} s"
    return f"{seconds * 1e3:.3g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.3g} µs"


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
    table = new_table("What it costs (formula vs. independent counts)")
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
    table = new_table("Why: the terms")
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


def gap_lines(result: Result, prefix: str = "") -> list[Text]:
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
                    f"{prefix}{c} on {q.name}: {human(q.measured[c], q.unit)} vs "
                    f"{human(q.value, q.unit)}, a gap of {human(total, q.unit)} — {verdict}",
                    style=style,
                )
            )
            for g in gaps:
                if g.reason == "unexplained":
                    lines.append(Text(f"    unexplained: {human(g.value, q.unit)}", style="red"))
                else:
                    terms = ", ".join(g.terms) + " = " if g.terms else ""
                    lines.append(Text(f"    {g.op} ({g.reason}): {terms}{human(g.value, q.unit)}"))
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
    lines += [crossover_line(c, result.values) for c in s.crossovers]
    return lines


def crossover_line(c: Crossover, values: dict, indent: str = "  ") -> Text:
    here = ""
    at = values.get(c.symbol)
    if at and c.value:
        here = f"; here {c.symbol} = {at}, {times(at / float(c.value))} the crossover"
    formula = plain(c.expr)
    if len(formula) > 60:  # a long closed form is in --json; the line keeps its value
        formula = "(closed form in --json)"
    return Text(f"{indent}{c.label} at {c.symbol} = {formula} = {_number(c.value)}{here}")


def times(x: float) -> str:
    """A ratio as a multiple to three significant figures: 2.00×, 8.09×, 205×, 1,311×.

    >>> times(2), times(205.4), times(0.125), times(1310.72)
    ('2.00×', '205×', '0.125×', '1,311×')
    """
    x = float(x)  # Fractions and sympy numbers too
    return f"{x:,.0f}×" if x >= 100 else f"{x:#.3g}×"


def _number(v: Fraction) -> str:
    if v.denominator == 1:
        return f"{v.numerator:,}" if v.numerator >= 10**5 else str(v.numerator)
    return f"{float(v):,.1f}"


def header(result: Result | Comparison) -> Text:
    cfg = ", ".join(f"{k}={v}" for k, v in result.config.items())
    return Text.assemble(
        (f"complexo {result.analysis}", "bold"),
        f"  {cfg}\n",
        (f"{CONVENTION}; counted on the meta device (nothing allocated)", "dim"),
    )


def render(result: Result, *, terms: bool = True) -> Group:
    parts: list = [header(result)]
    parts += [Text(f"{k}: {v}") for k, v in result.facts.items()]
    parts.append(quantities_table(result))
    gaps = gap_lines(result)
    if gaps:
        parts += [Text("Where the counters disagree", style="bold underline"), *gaps]
    parts += [Text(f"note: {note}", style="dim") for note in result.notes]
    if terms:
        parts.append(terms_table(result.model, result.values))
    parts += summary_lines(result)
    return Group(*parts)


def ratio_text(ratio: float | None) -> str:
    """One side's value over the baseline's as a percentage, three significant figures:
    67.6%, 0.0108%."""
    if ratio is None:
        return "—"
    return f"{ratio * 100:.3g}%"


def comparison_table(cmp: Comparison) -> Table:
    (a_name, a), (b_name, b) = list(cmp.sides.items())[:2]
    table = new_table(
        f"What it costs: {a_name} vs {b_name} (formula values; counters checked per side)"
    )
    table.add_column("quantity")
    for name, justify in ((a_name, "right"), (b_name, "right"), (f"{b_name}/{a_name}", "right")):
        table.add_column(name, justify=justify)
    table.add_column(f"{a_name}: counters")
    table.add_column(f"{b_name}: counters")
    ratio = cmp.ratio()
    base = {q.name: q for q in a.quantities}
    for q in b.quantities:
        qa = base[q.name]
        table.add_row(
            q.label,
            human(qa.value, q.unit),
            human(q.value, q.unit),
            ratio_text(ratio.get(q.name)),
            agreement(qa),
            agreement(q),
        )
    return table


def formulas_table(cmp: Comparison) -> Table:
    (a_name, a), (b_name, b) = list(cmp.sides.items())[:2]
    table = new_table("Formulas")
    table.add_column("quantity")
    table.add_column(a_name, overflow="fold")
    table.add_column(b_name, overflow="fold")
    base = {q.name: q for q in a.quantities}
    for q in b.quantities:
        table.add_row(q.label, plain(base[q.name].expr), plain(q.expr))
    return table


def sweep_table(cmp: Comparison) -> Table | None:
    """The sweep rows (formula values), with each column's ratio to the baseline beside it."""
    if not cmp.sweep:
        return None
    key = next(iter(cmp.sweep[0]))
    table = new_table(f"{cmp.variant.analysis} by {key} (formula values)")
    table.add_column(key, justify="right")
    columns = [k for k in cmp.sweep[0] if k != key and not k.endswith("_ratio")]
    quantities = {q.name: q for q in cmp.variant.quantities}
    for c in columns:
        table.add_column(quantities[c].label, justify="right")
        table.add_column("vs " + next(iter(cmp.sides)), justify="right")
    for row in cmp.sweep:
        cells = [str(row[key])]
        for c in columns:
            cells += [human(row[c], quantities[c].unit), ratio_text(row[ratio_key(c)])]
        table.add_row(*cells)
    return table


def render_comparison(cmp: Comparison, *, formulas: bool = True, terms: bool = False) -> Group:
    parts: list = [header(cmp), comparison_table(cmp)]
    if formulas:
        parts.append(formulas_table(cmp))
    gaps = [line for name, side in cmp.sides.items() for line in gap_lines(side, f"{name}: ")]
    if gaps:
        parts += [Text("Where the counters disagree", style="bold underline"), *gaps]
    parts += [Text(f"note: {note}", style="dim") for note in cmp.notes]
    sweep = sweep_table(cmp)
    if sweep is not None:
        parts.append(sweep)
    if terms:
        for name, side in cmp.sides.items():
            table = terms_table(side.model, side.values)
            table.title = f"Why ({name}): the terms"
            parts.append(table)
    parts.append(Text("Complexity", style="bold"))
    for name, side in cmp.sides.items():
        for kind, order in side.summary.big_o.items():
            parts.append(Text(f"  {name:<5} {kind.replace('_', ' '):<18} {order}"))
    for name, side in cmp.sides.items():
        parts += [crossover_line(c, side.values, f"  {name}: ") for c in side.summary.crossovers]
    parts += [crossover_line(c, cmp.baseline.values) for c in cmp.crossovers]
    return Group(*parts)


def models_table(models: dict[str, Result], title: str) -> Table:
    """Several models' quantities side by side, each with its counters' agreement."""
    names = list(models)
    table = new_table(title)
    table.add_column("quantity")
    for name in names:
        table.add_column(name, justify="right")
        table.add_column("counters")
    if len(names) == 2:
        table.add_column(f"{names[1]}/{names[0]}", justify="right")
    first = models[names[0]]
    for q in first.quantities:
        row = [q.label]
        for name in names:
            other = models[name].quantity(q.name)
            row += [human(other.value, other.unit), agreement(other)]
        if len(names) == 2:
            a, b = (models[n].quantity(q.name).value for n in names)
            row.append(times(b / a) if a else "—")
        table.add_row(*row)
    for key in dict.fromkeys(k for r in models.values() for k in r.facts):
        cells = [key]
        for name in names:
            cells += [models[name].facts.get(key, "—"), ""]
        table.add_row(*cells, *([""] if len(names) == 2 else []))
    return table


def markdown(result) -> str:
    """A result as Markdown (a notebook's rich display): each quantity's formula, value and
    counters, per side for a comparison."""
    sides = getattr(result, "sides", None) or {"": result}
    parts = [f"**complexo {result.analysis}** ({CONVENTION})", ""]
    for name, side in sides.items():
        if not hasattr(side, "quantities"):
            continue
        if name:
            parts += [f"*{name}*", ""]
        parts += ["| quantity | formula | value | fvcore | torch |", "|---|---|---|---|---|"]
        for q in side.quantities:
            counters = [human(q.measured.get(c), q.unit) for c in COUNTERS]
            formula = f"${latex(q.expr)}$"
            parts.append(
                f"| {q.label.strip()} | {formula} | {human(q.value, q.unit)} | "
                f"{' | '.join(counters)} |"
            )
        parts.append("")
    return "\n".join(parts)


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False)
