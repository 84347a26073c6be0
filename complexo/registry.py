"""Every analysis complexo knows, declared once: its config (fields that carry their command-line
options), what it computes, and what the generic layers may do with it (sweep it, profile it, draw
it). The command line, ``complexo sweep``, ``complexo profile``, the Python API and the
registry-wide tests are generated from here and name no analysis themselves.

An analysis module ends with ``ANALYSIS = register(Analysis(...))``, and its name in
:data:`complexo.analyses.NAMES` is the one registration line (:mod:`complexo.analyses` imports
the modules when first needed). This module imports
neither torch nor typer, so neither does ``import complexo`` nor ``complexo --help``.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Toy:
...     seq: int = option(8, "Tokens n.", min=1)
...     kv_heads: int | None = option(None, "Key/value heads G.", min=1)
>>> [(flag(f), o.help) for f, o in options(Toy)]
[('--seq', 'Tokens n.'), ('--kv-heads', 'Key/value heads G.')]
>>> check_options(Toy(seq=0))
Traceback (most recent call last):
complexo.errors.ComplexoError: --seq must be a positive integer, got 0
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from complexo.errors import ComplexoError, check_choice

KEY = "complexo"  # dataclass field metadata: the field's Option


@dataclass(frozen=True)
class Option:
    """A config field as the command line and the API take it."""

    help: str
    flag: str = ""  # its name after --, when not the field's own (in_features: "in")
    choices: tuple[str, ...] = ()
    min: float | None = None  # inclusive bounds, checked for every caller
    max: float | None = None
    above: float | None = None  # an exclusive lower bound (0: positive)
    separator: str = ""  # a tuple field given as one word, split on this ("q,v")
    positional: bool = False  # words after the command
    multiple: bool = False  # a tuple field whose option may repeat (--res 224 --res 384)
    sweep: bool = True  # whether sweep may vary it


def option(default: Any, help: str, **kwargs) -> Any:
    """A config field with its option: ``seq: int = option(4096, "Tokens n.", min=1)``."""
    return field(default=default, metadata={KEY: Option(help, **kwargs)})


def options(config_type) -> list[tuple[dataclasses.Field, Option]]:
    """The config's fields that are options, in declaration order."""
    return [(f, f.metadata[KEY]) for f in dataclasses.fields(config_type) if KEY in f.metadata]


def flag(f: dataclasses.Field) -> str:
    """The command line's spelling of a field: --kv-heads for kv_heads."""
    return "--" + (f.metadata[KEY].flag or f.name.replace("_", "-"))


def flags(config_type) -> dict[str, str]:
    """Field name -> its flag, for every option of a config."""
    return {f.name: flag(f) for f, _ in options(config_type)}


def check_options(cfg) -> None:
    """What the option table says of every field: a value among its choices, within its bounds.
    Each config calls this first in ``__post_init__``, so every caller (command line, sweep,
    profile, the Python API) is refused in the same words."""
    for f, opt in options(type(cfg)):
        value = getattr(cfg, f.name)
        if value is None:
            continue
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if opt.choices:
                check_choice(flag(f), v, opt.choices)
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            if v != v:  # NaN
                raise ComplexoError(f"{flag(f)} must be a number, got {v}")
            if opt.min == 1 and isinstance(v, int) and v < 1:
                raise ComplexoError(f"{flag(f)} must be a positive integer, got {v}")
            if opt.above is not None and not v > opt.above:
                what = "positive" if opt.above == 0 else f"above {_bound(opt.above)}"
                raise ComplexoError(f"{flag(f)} must be {what}, got {v}")
            if opt.min is not None and v < opt.min:
                raise ComplexoError(f"{flag(f)} must be at least {_bound(opt.min)}, got {v}")
            if opt.max is not None and v > opt.max:
                raise ComplexoError(f"{flag(f)} must be at most {_bound(opt.max)}, got {v}")


def _bound(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


@dataclass(frozen=True)
class Figure:
    """A figure an analysis draws of its result: ``draw(axes, result)`` draws on ``panels``
    axes (titles included) and returns what it drew, {label: (xs, ys)}, so that tests can
    check a drawing against the tables."""

    draw: Callable[[list, Any], dict]
    panels: int = 1
    width: float = 7.5
    footer: Callable[[Any], str] = lambda result: ""


@dataclass(frozen=True)
class Row:
    """One row of a profile table: a group of the formula's terms that a profiler can time
    apart, and the fewest bytes it must move. ``terms``: (kind, name) of each term it carries,
    its FLOPs their sum (none: work not counted, such as the optimizer's element-wise update).
    ``ops``: profiler op names, or complexo::<range> names, whose time is the row's; ``within``:
    a complexo:: range to read them inside (the forward's, in a training step). ``step``: part of
    the timed step; False for a row timed beside it (a decoder's prefill), or a total shown
    beside its parts (a training step's forward phase). The step's rows partition the step's
    terms (tested for every analysis and mode)."""

    name: str
    terms: tuple[tuple[Any, str], ...]
    bytes: Any  # a sympy expression over the config's symbols, or an int
    ops: tuple[str, ...] = ()
    within: str = ""
    step: bool = True


@dataclass
class Setup:
    """What an analysis builds on the device for one profiled run: the step to time, the
    tensors it is given (for peak memory), a context to profile it in (profiler ranges around
    module calls), steps timed on their own beside it (by row name), the dtype whose ceiling
    applies, and notes."""

    step: Callable[[], Any]
    given: list
    ranges: Callable[[], Any] | None = None
    beside: dict[str, Callable[[], Any]] = field(default_factory=dict)
    dtype: str | None = None
    notes: list[str] = field(default_factory=list)


def _step_terms(model, mode: str) -> list:
    """A step's terms: the forward's, and in training the backward's too."""
    from complexo.cost import Kind

    kinds = (Kind.FORWARD,) if mode == "forward" else (Kind.FORWARD, Kind.BACKWARD)
    return model.terms(kinds)


def sgd_rows(model, forward_bytes) -> list:
    """An SGD step's backward and optimizer, which complete the step after its forward's rows,
    and the forward phase as a whole beside them: the backward reads what was saved and the
    weights and writes the weights' gradients; SGD keeps no state: it reads the weights and
    their gradients and writes the weights (element-wise work: not counted)."""
    from complexo.cost import Kind
    from complexo.symbols import e

    weights = model.total(Kind.PARAMS) * e
    saved = model.total(Kind.ACTIVATION)
    backward = tuple((Kind.BACKWARD, t.name) for t in model.terms(Kind.BACKWARD))
    forward = tuple((Kind.FORWARD, t.name) for t in model.terms(Kind.FORWARD))
    return [
        Row("forward (step)", forward, forward_bytes, ("complexo::forward",), step=False),
        Row("backward (step)", backward, saved + 2 * weights, ("complexo::backward",)),
        Row("optimizer (step)", (), 3 * weights, ("complexo::optimizer",)),
    ]


@dataclass(frozen=True)
class Profiling:
    """How an analysis runs for real (:mod:`complexo.profile`), one side at a time: its cost
    model, the rows of its table, its memory prediction (``memory(cfg, mode, side, model)``:
    the predicted peak, the most the run allocates, which refuses a run that cannot fit, and
    what to shrink), and the step it builds (``setup(cfg, mode, side, device)``). ``modes``:
    the first is the default. ``run``: a profile of its own instead (a comparison of analyses
    that are profiled themselves)."""

    modes: tuple[str, ...]
    model: Callable[[Any, str], Any] | None = None
    rows: Callable[[Any, str, str], list[Row]] | None = None
    memory: Callable[..., tuple[int, int, str]] | None = None
    setup: Callable[..., Setup] | None = None
    step: Callable[[Any, str], list] = _step_terms
    run: Callable[..., Any] | None = None
    cuda_graph: bool = False  # whether --cuda-graph applies (forward passes of one block)
    sweep: bool = True  # whether sweep --profile may time its points
    iteration: str = "forward"  # what one timed iteration is, in the figures' words
    warmup: int = 3
    repeat: int = 10


@dataclass(frozen=True)
class Analysis:
    """One analysis. ``analyse(cfg)`` returns a result with ``to_json()`` and ``render()``
    (:class:`~complexo.result.Result` or :class:`~complexo.result.Comparison`, or a type of the
    analysis's own); ``sides`` names the two sides of a comparison; ``sweep``: whether
    ``complexo sweep`` takes it (one result per config); ``examples()``: a hypothesis strategy
    of tiny configs, for the registry-wide tests; ``symbolic``: how its reference block is
    traced with symbolic sizes to prove its hand formulas (:mod:`complexo.prove`)."""

    name: str
    title: str  # one line: the command's short help
    help: str  # the command's --help
    config: type
    analyse: Callable[[Any], Any]
    sides: tuple[str, ...] = ()
    sweep: bool = True
    profiling: Profiling | None = None
    figure: Figure | None = None
    examples: Callable[[], Any] | None = None
    symbolic: Any = None  # a complexo.prove.Symbolic: how its hand formulas are proved

    def make(self, **values) -> Any:
        """A config from field values (the API's keywords), unknown names refused."""
        known = {f.name for f in dataclasses.fields(self.config)}
        for key in values:
            if key not in known:
                check_choice(f"option of {self.name}", key, sorted(known))
        return self.config(**values)


ANALYSES: dict[str, Analysis] = {}


def register(analysis: Analysis) -> Analysis:
    """Add an analysis to :data:`ANALYSES`, its ``analyse`` guarded against sizes torch cannot
    represent (:func:`complexo.counting.guarded`) and, with a ``symbolic`` declaration, its
    result marked with what the suite proves (:func:`complexo.prove.noted`); a name registered
    twice is refused."""
    if analysis.name in ANALYSES:
        raise ValueError(f"analysis {analysis.name!r} is registered twice")
    for f in dataclasses.fields(analysis.config):
        if KEY not in f.metadata and f.init:
            raise ValueError(f"{analysis.name}: config field {f.name} has no option()")
    from complexo.counting import guarded

    analyse = analysis.analyse
    if analysis.symbolic is not None:
        from complexo.prove import noted

        analyse = noted(analysis.symbolic, analyse)
    analysis = dataclasses.replace(analysis, analyse=guarded(analyse))
    ANALYSES[analysis.name] = analysis
    return analysis


_FLAG = re.compile(r"--([a-z][a-z0-9-]*)")


def field_names(message: str, config_type) -> str:
    """An error message in the Python API's words: each of the config's flags becomes its
    field's name (``--kv-heads 3`` -> ``kv_heads 3``, ``--in`` -> ``in_features``)."""
    by_flag: Mapping[str, str] = {v: k for k, v in flags(config_type).items()}
    return _FLAG.sub(lambda m: by_flag.get(m.group(0), m.group(0)), message)
