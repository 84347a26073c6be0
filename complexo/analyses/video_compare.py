"""``complexo video --compare``: joint, factorized and window attention side by side at one
config, each a full :class:`~complexo.result.Result` checked against the counters, with the
crossovers between them and each one's ratio to joint attention (the baseline): a
:class:`~complexo.result.Comparison` of three sides."""

from __future__ import annotations

from dataclasses import asdict

from complexo.conventions import CONVENTION
from complexo.result import Comparison

VERSUS = "formula values vs. independent counts"


class Attentions(Comparison):
    def ratio(self) -> dict[str, dict[str, float | None]]:
        """Each attention's quantities over joint's; None where joint's is 0."""
        base = {q.name: q.value for q in self.baseline.quantities}
        return {
            name: {q.name: (q.value / base[q.name] if base[q.name] else None) for q in r.quantities}
            for name, r in list(self.sides.items())[1:]
        }

    def render(self, brief: bool = False, terms: bool = False):
        from rich.console import Group
        from rich.text import Text

        from complexo.render import counted, crossover_line
        from complexo.render_sides import models_table, sides_complexity, sides_gaps, sides_terms

        shown = ", ".join(f"{k}={v}" for k, v in self.config.items() if k != "attn")
        title = (f"complexo {self.analysis}", "bold")
        parts: list = [
            Text.assemble(title, f"  {shown}\n", (f"{CONVENTION}; {counted(self)}", "dim")),
            models_table(self.sides, f"The three attentions ({VERSUS})"),
            *sides_gaps(self.sides),
        ]
        notes = dict.fromkeys(n for r in self.sides.values() for n in r.notes)
        if not brief:
            parts += [Text(f"note: {note}", style="dim") for note in [*notes, *self.notes]]
        if terms:
            parts += sides_terms(self.sides)
        parts += sides_complexity(self.sides, 10)
        parts += [crossover_line(c, self.baseline.values) for c in self.crossovers]
        return Group(*parts)


def compare(cfg, analyse_one, crossovers) -> Attentions:
    """The three attentions at ``cfg``'s sizes (its --attn aside)."""
    from dataclasses import replace

    from complexo.analyses.video_cost import ATTNS

    sides = {a: analyse_one(replace(cfg, attn=a, compare=False)) for a in ATTNS}
    found, missing = crossovers(cfg)
    return Attentions("video", asdict(cfg), sides, crossovers=tuple(found), notes=missing)
