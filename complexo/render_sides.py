"""Several results side by side: two variants of one analysis (a :class:`Comparison`, with
each quantity's ratio and a sweep of formula values), or any number of models in one table;
their gaps, terms and big-O, side by side. Built on :mod:`complexo.render`'s tables."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from complexo.cost import plain
from complexo.render import (
    WIDE,
    Fit,
    agreement,
    crossover_line,
    gap_lines,
    header,
    longest_word,
    new_table,
    terms_table,
)
from complexo.result import Comparison, Result, ratio_key
from complexo.units import human, times


def ratio_text(ratio: float | None) -> str:
    """One side's value over the baseline's as a percentage, three significant figures:
    67.6%, 0.0108%."""
    if ratio is None:
        return "—"
    return f"{ratio * 100:.3g}%"


def comparison_table(cmp: Comparison, width: int = 160) -> Table:
    (a_name, a), (b_name, b) = list(cmp.sides.items())[:2]
    table = new_table(
        f"What it costs: {a_name} vs {b_name} (formula values; counters checked per side)"
    )
    table.add_column("quantity")
    ratio_head = f"{b_name}/{a_name}" if width >= WIDE else f"{b_name}/ {a_name}"  # may wrap
    for name in (a_name, b_name, ratio_head):
        table.add_column(name, justify="right", min_width=longest_word(name))
    table.add_column(f"{a_name}: counters")
    table.add_column(f"{b_name}: counters")
    ratio = cmp.ratio()
    base = {q.name: q for q in a.quantities}
    sep = " · " if width >= WIDE else "\n"  # narrow: a line per counter
    for q in b.quantities:
        qa = base[q.name]
        table.add_row(
            q.label,
            human(qa.value, q.unit),
            human(q.value, q.unit),
            ratio_text(ratio.get(q.name)),
            agreement(qa, sep),
            agreement(q, sep),
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
    parts: list = [header(cmp), Fit(lambda width: comparison_table(cmp, width))]
    if formulas:
        parts.append(formulas_table(cmp))
    parts += sides_gaps(cmp.sides)
    parts += [Text(f"note: {note}", style="dim") for note in cmp.notes]
    sweep = sweep_table(cmp)
    if sweep is not None:
        parts.append(sweep)
    if terms:
        parts += sides_terms(cmp.sides)
    parts += sides_complexity(cmp.sides, 5)
    for name, side in cmp.sides.items():
        parts += [crossover_line(c, side.values, f"  {name}: ") for c in side.summary.crossovers]
    parts += [crossover_line(c, cmp.baseline.values) for c in cmp.crossovers]
    return Group(*parts)


def sides_gaps(sides: dict[str, Result]) -> list:
    """Each side's counter disagreements, under one heading (nothing when none)."""
    gaps = [line for name, side in sides.items() for line in gap_lines(side, f"{name}: ")]
    return [Text("Where the counters disagree", style="bold underline"), *gaps] if gaps else []


def sides_terms(sides: dict[str, Result]) -> list[Table]:
    """Each side's terms table, titled with its name."""
    tables = []
    for name, side in sides.items():
        table = terms_table(side.model, side.values)
        table.title = f"Why ({name}): the terms"
        tables.append(table)
    return tables


def sides_complexity(sides: dict[str, Result], width: int) -> list[Text]:
    """Each side's big-O per kind, its name padded to ``width``."""
    lines = [Text("Complexity", style="bold")]
    for name, side in sides.items():
        for kind, order in side.summary.big_o.items():
            lines.append(Text(f"  {name:<{width}} {kind.replace('_', ' '):<18} {order}"))
    return lines


def models_table(models: dict[str, Result], title: str) -> Fit:
    """Several models' quantities side by side, each with its counters' agreement (a line per
    counter on a narrow terminal)."""
    return Fit(lambda width: _models_table(models, title, " · " if width >= WIDE else "\n"))


def _models_table(models: dict[str, Result], title: str, sep: str) -> Table | Group:
    names = list(models)
    table = new_table(title)
    first = models[names[0]]
    table.add_column("quantity", min_width=longest_word(*(q.label for q in first.quantities)))
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
        table.add_column("counters")
    if len(names) == 2:
        head = f"{names[1]}/{names[0]}" if sep != "\n" else f"{names[1]}/ {names[0]}"
        table.add_column(head, justify="right", min_width=longest_word(head))
    for q in first.quantities:
        row = [q.label]
        for name in names:
            other = models[name].quantity(q.name)
            row += [human(other.value, other.unit), agreement(other, sep)]
        if len(names) == 2:
            a, b = (models[n].quantity(q.name).value for n in names)
            row.append(times(b / a) if a else "—")
        table.add_row(*row)
    facts = list(dict.fromkeys(k for r in models.values() for k in r.facts))
    if sep == "\n":  # narrow: the facts (sentences) as lines under the table
        lines = [
            Text(f"{name} {key}: {models[name].facts[key]}")
            for key in facts
            for name in names
            if key in models[name].facts
        ]
        return Group(table, *lines)
    for key in facts:
        cells = [key]
        for name in names:
            cells += [models[name].facts.get(key, "—"), ""]
        table.add_row(*cells, *([""] if len(names) == 2 else []))
    return table
