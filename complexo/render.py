"""Terminal presentation of a :class:`~complexo.result.Result`: rich tables and a few lines."""

from __future__ import annotations

from fractions import Fraction

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from complexo.conventions import CONVENTION
from complexo.cost import CostModel, Crossover, Kind, evaluate, latex, plain
from complexo.result import COUNTERS, Comparison, Quantity, Result
from complexo.units import human, times


def new_table(title: str) -> Table:
    """Every table's style: a title on the left, a rule under the header and no vertical
    rules, so that wide tables fit a narrow terminal before they wrap."""
    return Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0)
    )


def longest_word(*texts) -> int:
    """The widest unbreakable piece among ``texts``: a table column at least this wide never
    breaks a word (``ceili``/``ng``) and only wraps between words."""
    return max((len(w) for t in texts for w in str(t).split()), default=0)


class Split:
    """A table too wide for the terminal as several that each fit: the first ``keep`` columns
    (what the rows are) in every part, the others packed in order, each column as wide as its
    widest cell and its header's longest word (headers wrap between words; cells never wrap).
    The terminal's width is read when printed, so it suits 80 columns and 160 alike."""

    def __init__(self, title: str, columns: list[tuple[str, str]], rows: list[list], keep: int = 1):
        self.title, self.columns, self.rows, self.keep = title, columns, rows, keep

    def widths(self) -> list[int]:
        return [
            max([longest_word(head), *(Text(str(c)).cell_len for c in cells)])
            for (head, _), cells in zip(self.columns, zip(*self.rows, strict=True), strict=True)
        ]

    def parts(self, width: int) -> list[list[int]]:
        """The columns of each part (indices), within ``width`` cells: a column takes its width
        and two more (its right padding and the blank rule between columns; the outer edges'
        two blanks stand for the last column's missing padding and rule)."""
        widths = self.widths()
        kept = list(range(self.keep))
        base = sum(widths[i] + 2 for i in kept)
        parts, current, used = [], [], base
        for i in range(self.keep, len(self.columns)):
            if current and used + widths[i] + 2 > width:
                parts.append(kept + current)
                current, used = [], base
            current.append(i)
            used += widths[i] + 2
        return [*parts, kept + current] if current or not parts else parts

    def __rich_console__(self, console, options):
        parts = self.parts(options.max_width)
        widths = self.widths()
        for k, part in enumerate(parts):
            more = f" ({k + 1} of {len(parts)})" if len(parts) > 1 else ""
            table = new_table(self.title + more)
            for i in part:
                head, justify = self.columns[i]
                table.add_column(head, justify=justify, min_width=widths[i], overflow="fold")
            for row in self.rows:
                table.add_row(*(row[i] for i in part))
            yield table


def percent(delta: Fraction) -> str:
    return f"{float(delta) * 100:+.1f}%"


def agreement(q: Quantity, sep: str = " · ") -> Text:
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
    return Text(sep.join(parts), style="yellow")


class Fit:
    """A renderable built for the terminal's width when it is printed: ``build(width)``."""

    def __init__(self, build):
        self.build = build

    def __rich_console__(self, console, options):
        yield self.build(options.max_width)


# Below this many columns the quantities table leaves out the counters' own values: the
# agreement column still says, per counter, exact or by how much it differs (--json has all).
WIDE = 110


def quantities_table(result: Result, width: int = 160) -> Table:
    table = new_table("What it costs (formula vs. independent counts)")
    wide = width >= WIDE
    formulas = [plain(q.expr) for q in result.quantities]
    labels = [q.label for q in result.quantities]
    table.add_column(
        "quantity", min_width=min(16, longest_word(*labels)), max_width=None if wide else 20
    )
    # formulas wrap between their terms, never inside a word (unless one is very long)
    table.add_column(
        "formula", min_width=min(28 if wide else 24, longest_word(*formulas)), overflow="fold"
    )
    table.add_column("value", justify="right", no_wrap=True)
    if wide:
        table.add_column("fvcore", justify="right", no_wrap=True)
        table.add_column("torch", justify="right", no_wrap=True)
    table.add_column("agreement", min_width=8)
    for q, formula in zip(result.quantities, formulas, strict=True):
        counters = [human(q.measured.get(c), q.unit) for c in ("fvcore", "torch")] if wide else []
        verdict = agreement(q, " · " if wide else "\n")  # narrow: a line per counter
        table.add_row(q.label, formula, human(q.value, q.unit), *counters, verdict)
    return table


# Kinds whose terms are separate quantities, not parts of one whole (the attention matrix, the
# KV cache, the weights read per step, what another implementation would run): no total, no shares.
SEPARATE = (Kind.MEMORY, Kind.ALTERNATIVE)


def term_groups(terms) -> dict[str, list]:
    """A kind's terms by their dotted prefix (``decode.weights``: decode), in order; one group
    named "" when no term has a prefix."""
    groups: dict[str, list] = {}
    for t in terms:
        prefix, dot, _ = t.name.partition(".")
        groups.setdefault(prefix if dot else "", []).append(t)
    return groups


def terms_table(model: CostModel, values: dict) -> Table:
    """Each kind's terms under a heading row (the kind, its total), so that no column is spent
    on the kind: term, formula, value, share and the note fit 80 columns. Terms with a dotted
    prefix (a decoder's decode., prefill.; a factorised block's temporal., spatial.) go under
    a heading of their prefix, their shares of its subtotal: the prefixes are different steps,
    or parts whose own totals are the point. A kind of separate quantities (memory) has no
    shares."""
    table = new_table("Why: the terms")
    kinds = [k for k in Kind if model.terms(k)]
    names = [
        ("  " + t.name.partition(".")[2] if "." in t.name else t.name) + " (matmul)" * t.matmul
        for k in kinds
        for t in model.terms(k)
    ]
    formulas = {(k, t.name): plain(t.expr, factor=False) for k in kinds for t in model.terms(k)}
    heads = [k.value.replace("_", " ") for k in kinds]
    table.add_column("term", min_width=min(22, max(map(len, [*names, *heads]))))
    table.add_column(
        "formula", min_width=min(24, longest_word(*formulas.values())), overflow="fold"
    )
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("share", justify="right", no_wrap=True)
    table.add_column("", min_width=12)
    for kind, head in zip(kinds, heads, strict=True):
        groups = term_groups(model.terms(kind))
        whole = kind not in SEPARATE
        total = sum(evaluate(t.expr, values) for t in model.terms(kind))
        shown = human(total, kind.unit) if whole and list(groups) == [""] else ""
        table.add_row(Text(head, style="bold"), "", Text(shown, style="bold"))
        for g, (prefix, terms) in enumerate(groups.items()):
            subtotal = sum(evaluate(t.expr, values) for t in terms)
            if prefix:
                sub = human(subtotal, kind.unit) if whole else ""
                table.add_row(Text(f" {prefix}", style="bold"), "", Text(sub, style="bold"))
            for i, t in enumerate(terms):
                v = evaluate(t.expr, values)
                share = f"{100 * v / subtotal:.1f}%" if whole and subtotal else "—"
                name = t.name.partition(".")[2] if prefix else t.name
                table.add_row(
                    ("  " if prefix else "") + name + (" (matmul)" if t.matmul else ""),
                    formulas[kind, t.name],
                    human(v, kind.unit),
                    share,
                    Text(t.note, style="dim"),
                    end_section=i == len(terms) - 1 and g == len(groups) - 1,
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


def _number(v: Fraction) -> str:
    if v.denominator == 1:
        return f"{v.numerator:,}" if v.numerator >= 10**5 else str(v.numerator)
    return f"{float(v):,.1f}"


def header(result: Result | Comparison) -> Text:
    cfg = ", ".join(f"{k}={v}" for k, v in result.config.items())
    return Text.assemble(
        (f"complexo {result.analysis}", "bold"),
        f"  {cfg}\n",
        (f"{CONVENTION}; {counted(result)}", "dim"),
    )


def counted(result) -> str:
    """Where the readings beside the formulas come from: the counters on the meta device, or
    none at all (--no-check, or sizes past torch's limits: a note says which)."""
    sides = getattr(result, "sides", None) or {"": result}
    readings = (v for side in sides.values() for q in side.quantities for v in q.measured.values())
    if any(v is not None for v in readings):
        return "counted on the meta device (nothing allocated)"
    return "formulas only: the counters did not run (see the note)"


def render(result: Result, *, terms: bool = True) -> Group:
    parts: list = [header(result)]
    parts += [Text(f"{k}: {v}") for k, v in result.facts.items()]
    parts.append(Fit(lambda width: quantities_table(result, width)))
    gaps = gap_lines(result)
    if gaps:
        parts += [Text("Where the counters disagree", style="bold underline"), *gaps]
    parts += [Text(f"note: {note}", style="dim") for note in result.notes]
    if terms:
        parts.append(terms_table(result.model, result.values))
    parts += summary_lines(result)
    return Group(*parts)


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
