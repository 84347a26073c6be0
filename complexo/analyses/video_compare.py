"""``complexo video --compare``: joint, factorized and window attention side by side at one
config, each a full :class:`~complexo.result.Result` checked against the counters, with the
crossovers between them and each one's ratio to joint attention (the baseline)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from complexo.conventions import CONVENTION
from complexo.cost import Crossover
from complexo.result import Result, Shown, crossover_json


@dataclass
class Attentions(Shown):
    analysis: str
    config: dict
    sides: dict[str, Result]  # attention -> its result, joint first
    crossovers: list[Crossover] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def ratio(self) -> dict[str, dict[str, float | None]]:
        """Each attention's quantities over joint's; None where joint's is 0."""
        base = {q.name: q.value for q in next(iter(self.sides.values())).quantities}
        return {
            name: {q.name: (q.value / base[q.name] if base[q.name] else None) for q in r.quantities}
            for name, r in list(self.sides.items())[1:]
        }

    def to_json(self) -> dict:
        return {
            "analysis": self.analysis,
            "config": self.config,
            "convention": CONVENTION,
            **{name: side.body() for name, side in self.sides.items()},
            "ratio": self.ratio(),
            "crossovers": [crossover_json(c) for c in self.crossovers],
            "notes": self.notes,
        }

    def render(self, brief: bool = False, terms: bool = False):
        from rich.console import Group
        from rich.text import Text

        from complexo.render import counted, crossover_line, gap_lines, models_table, terms_table

        shown = ", ".join(f"{k}={v}" for k, v in self.config.items() if k != "attn")
        title = (f"complexo {self.analysis}", "bold")
        parts: list = [
            Text.assemble(title, f"  {shown}\n", (f"{CONVENTION}; {counted(self)}", "dim"))
        ]
        parts.append(
            models_table(self.sides, "The three attentions (formula values vs. independent counts)")
        )
        gaps = [line for name, r in self.sides.items() for line in gap_lines(r, f"{name}: ")]
        if gaps:
            parts += [Text("Where the counters disagree", style="bold underline"), *gaps]
        notes = dict.fromkeys(n for r in self.sides.values() for n in r.notes)
        if not brief:
            parts += [Text(f"note: {note}", style="dim") for note in [*notes, *self.notes]]
        if terms:
            for name, side in self.sides.items():
                table = terms_table(side.model, side.values)
                table.title = f"Why ({name}): the terms"
                parts.append(table)
        parts.append(Text("Complexity", style="bold"))
        for name, r in self.sides.items():
            for kind, order in r.summary.big_o.items():
                parts.append(Text(f"  {name:<10} {kind.replace('_', ' '):<18} {order}"))
        values = next(iter(self.sides.values())).values
        parts += [crossover_line(c, values) for c in self.crossovers]
        return Group(*parts)

    def plot(self, ax=None) -> dict:
        """The video figure: the three attentions against T and R."""
        from complexo.plot import draw_registered

        return draw_registered(self, ax)


def compare(cfg, analyse_one, crossovers) -> Attentions:
    """The three attentions at ``cfg``'s sizes (its --attn aside)."""
    from dataclasses import replace

    from complexo.analyses.video_cost import ATTNS

    sides = {a: analyse_one(replace(cfg, attn=a, compare=False)) for a in ATTNS}
    found, missing = crossovers(cfg)
    return Attentions("video", asdict(cfg), sides, found, missing)
