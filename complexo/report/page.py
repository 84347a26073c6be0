"""A page of ``analyses/`` as it is built: its Markdown text and its figures with the data they
draw; the topics, each registered by the module that writes its page; and the small formatting
helpers every page's tables use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from complexo.cost import latex


@dataclass
class Page:
    topic: str
    title: str
    text: str = ""
    figures: dict[str, tuple[object, dict]] = field(default_factory=dict)  # name -> (fig, data)

    def add(self, *lines: str) -> None:
        self.text += "\n".join(lines) + "\n"

    def figure(self, name: str, fig, drawn: dict, caption: str, footer: str) -> None:
        """Add ``fig`` (its convention ``footer`` at its foot) and the data it drew, which
        ``--check`` compares: {label: (xs, ys)}."""
        from complexo import plot as plots

        plots.finish(fig, plots.footer(footer))
        data = {k: [list(map(float, xs)), list(map(float, ys))] for k, (xs, ys) in drawn.items()}
        self.figures[name] = (fig, data)
        self.add(f"![{caption}](figures/{name}.svg)", "", f"*{caption}*", "")


@dataclass(frozen=True)
class Topic:
    """One page of ``analyses/``: ``<name>.md`` under ``title``, ``description`` its line in the
    index, and ``fill`` the function that writes the page's text and figures."""

    name: str
    title: str
    description: str
    fill: Callable[[Page], None]

    def page(self) -> Page:
        page = Page(self.name, self.title)
        self.fill(page)
        return page

    def __call__(self) -> Page:
        """The page, as ``generate`` and ``check`` ask each of ``TOPICS`` for it."""
        return self.page()


TOPICS: dict[str, Topic] = {}  # by name, in the order registered: the index's and the CLI's


def register_topic(name: str, title: str, description: str) -> Callable:
    """Decorator: the function it decorates writes the page of the topic ``name``."""

    def register(fill: Callable[[Page], None]) -> Callable[[Page], None]:
        if name in TOPICS:
            raise ValueError(f"topic {name!r} is registered twice")
        TOPICS[name] = Topic(name, title, description, fill)
        return fill

    return register


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def _agreement(q) -> str:
    parts = []
    for counter, value in q.measured.items():
        if value is None:
            continue
        gaps = [g for g in q.gaps if g.counter == counter]
        if value == q.value:
            parts.append(f"{counter} exact")
        elif gaps and all(g.reason != "unexplained" for g in gaps):
            parts.append(f"{counter} {(value - q.value) / q.value:+.1%}, explained")
        else:
            parts.append(f"{counter} {(value - q.value) / q.value:+.1%}, UNEXPLAINED")
    return "; ".join(parts) or "no counter"


def _percent(ratio: float) -> str:
    """42%, or 0.4% where whole percents would say 0%."""
    return f"{ratio:.0%}" if ratio >= 0.01 else f"{ratio:.1%}"


def _math(expr) -> str:
    return f"${latex(expr)}$"
