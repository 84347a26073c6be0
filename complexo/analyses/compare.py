"""A CNN beside a ViT at one or several resolutions: each model's own analysis (``cnn``, ``vit``)
per resolution, and where their costs cross as the resolution R grows.

The ViT's projections and MLP grow with R², its attention with R⁴, the CNN's convolutions with
R²; so a ViT that costs about what a CNN costs at 224 overtakes it at some R, found here as the
positive real roots of ViT(R) = CNN(R) with every other size fixed at the config (the CNN's
⌈R/2^k⌉ taken as R/2^k, exact for R a multiple of 32).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import sympy

from complexo.analyses import cnn, vit
from complexo.conventions import CONVENTION, DTYPES
from complexo.cost import Crossover, Kind
from complexo.errors import ComplexoError, check_choice
from complexo.presets import RESNETS, VITS
from complexo.registry import Analysis, Figure, Profiling, check_options, option, register
from complexo.result import Result, Shown, crossover_json
from complexo.symbols import R

NAME = "compare"
KINDS = ("cnn", "vit")


@dataclass(frozen=True)
class Config:
    cnn: str = option("resnet50", "The CNN preset.", choices=(*RESNETS,), sweep=False)
    vit: str = option("vit-b16", "The ViT preset.", choices=(*VITS,), sweep=False)
    res: tuple[int, ...] = option(
        (), "Image side R; several allowed (default 224).", multiple=True, min=1
    )
    batch: int = option(1, "Batch size B.", min=1)
    dtype: str = option("fp32", "Element type; bytes per element e.", choices=(*DTYPES,))
    kinds: tuple[str, ...] = option(
        KINDS,
        "cnn vit (resolutions may follow --res, space-separated)",
        positional=True,
        sweep=False,
    )

    def __post_init__(self):
        # `--res 224 384 512` leaves 384 and 512 to the positional words: they are resolutions
        words = [k for k in self.kinds if not str(k).isdigit()]
        extra = tuple(int(k) for k in self.kinds if str(k).isdigit())
        object.__setattr__(self, "kinds", tuple(words))
        object.__setattr__(self, "res", tuple(dict.fromkeys((*self.res, *extra))) or (224,))
        check_options(self)
        for word in words:
            check_choice("kind", word, KINDS)
        if sorted(words) != sorted(KINDS):
            raise ComplexoError(
                f"compare takes the kinds to compare: 'cnn vit' (got {' '.join(words) or 'none'})"
            )
        for res in self.res:  # each model checks its own: divisibility, downsampling, names
            self.configs(res)

    def configs(self, res: int) -> tuple[cnn.Config, vit.Config]:
        return (
            cnn.Config(self.cnn, res, self.batch, self.dtype),
            vit.Config(self.vit, res, self.batch, self.dtype),
        )


@dataclass
class Comparison(Shown):
    config: Config
    results: list[tuple[int, dict[str, Result]]]
    crossovers: list[Crossover] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    analysis: str = NAME

    def to_json(self) -> dict:
        return {
            "analysis": NAME,
            "config": {
                k: list(v) if k == "res" else v
                for k, v in self.config.__dict__.items()
                if k != "kinds"
            },
            "convention": CONVENTION,
            "results": [
                {"res": res, "models": {name: r.to_json() for name, r in models.items()}}
                for res, models in self.results
            ],
            "crossovers": [crossover_json(c) for c in self.crossovers],
            "notes": self.notes,
        }

    def render(self, brief: bool = False, terms: bool = False):
        """Both models at the first resolution, a table by resolution, gaps, complexity."""
        return _render(self)

    def plot(self, ax=None) -> dict:
        """FLOPs and activations of both models against R (two panels)."""
        from complexo.plot import draw_registered

        return draw_registered(self, ax)


def flops_crossings(vit_result: Result, cnn_result: Result) -> list[float]:
    """Positive real R at which the ViT's forward FLOPs equal the CNN's."""
    # every size but R as a number (xreplace: one rebuild of the tree, where subs took 40 ms)
    fixed = lambda r: {s: sympy.sympify(v) for s, v in r.values.items() if s != R}  # noqa: E731
    a = vit_result.model.total(Kind.FORWARD).xreplace(fixed(vit_result))
    b = cnn_result.model.total(Kind.FORWARD).replace(sympy.ceiling, lambda x: x)
    poly = sympy.Poly(sympy.expand(a - b.xreplace(fixed(cnn_result))), R)
    # below the CNN's smallest input the equation has a root too (the class token's constant
    # cost against a vanishing CNN): outside what both models accept, so left out
    return sorted(float(x) for x in poly.nroots(n=12) if x.is_real and x >= cnn.MIN_RES)


def analyse(cfg: Config) -> Comparison:
    results = []
    for res in cfg.res:
        c, v = cfg.configs(res)
        results.append((res, {cfg.cnn: cnn.analyse(c), cfg.vit: vit.analyse(v)}))
    first = results[0][1]
    cnn_result, vit_result = first[cfg.cnn], first[cfg.vit]
    crossovers = list(vit_result.summary.crossovers)
    crossings = flops_crossings(vit_result, cnn_result)
    notes = []
    for x in crossings:
        crossovers.append(
            Crossover(
                f"{cfg.vit}'s forward FLOPs cross {cfg.cnn}'s",
                R,
                sympy.Float(round(x, 1), 6),
                Fraction(x).limit_denominator(1000),
            )
        )
    if not crossings:
        ratio = [
            models[cfg.vit].quantities[0].value / models[cfg.cnn].quantities[0].value
            for _, models in results
        ]
        more = "more" if ratio[0] > 1 else "less"
        notes.append(
            f"{cfg.vit} costs {more} forward FLOPs than {cfg.cnn} at every resolution: "
            f"the two never cross (here {', '.join(f'{x:.2f}×' for x in ratio)})"
        )
    return Comparison(cfg, results, crossovers, notes)


def _resolutions_table(cmp):
    from complexo.render import new_table
    from complexo.units import human, times

    names = list(cmp.results[0][1])
    table = new_table("By resolution (formula values; every one checked)")
    table.add_column("R", justify="right")
    for quantity in ("forward FLOPs", "activations"):
        for name in names:
            table.add_column(f"{name} {quantity}", justify="right")
        table.add_column(f"{names[1]}/{names[0]}", justify="right")
    for res, models in cmp.results:
        row = [str(res)]
        for i in (0, 3):  # forward_flops, activation_bytes
            qs = [models[name].quantities[i] for name in names]
            row += [human(q.value, q.unit) for q in qs]
            row.append(times(qs[1].value / qs[0].value))
        table.add_row(*row)
    return table


def _render(cmp):
    from rich.console import Group
    from rich.text import Text

    from complexo.render import crossover_line, gap_lines
    from complexo.render_sides import models_table, sides_complexity

    cfg = ", ".join(f"{k}={v}" for k, v in cmp.to_json()["config"].items())
    parts: list = [
        Text.assemble((f"complexo {cmp.analysis}", "bold"), f"  {cfg}\n", (CONVENTION, "dim")),
    ]
    res, models = cmp.results[0]
    parts.append(models_table(models, f"At R = {res} (formula values vs. independent counts)"))
    if len(cmp.results) > 1:
        parts.append(_resolutions_table(cmp))
    gaps = [line for name, r in models.items() for line in gap_lines(r, f"{name}: ")]
    if gaps:
        parts += [Text(f"Where the counters disagree, at R = {res}", style="bold underline")]
        parts += gaps
    notes = dict.fromkeys(n for r in models.values() for n in r.notes)
    parts += [Text(f"note: {note}", style="dim") for note in [*notes, *cmp.notes]]
    parts += sides_complexity(models, 10)
    parts += [crossover_line(c, models[list(models)[1]].values) for c in cmp.crossovers]
    return Group(*parts)


def draw(axes, cmp: Comparison) -> dict:
    """FLOPs and activations of both models against R (formula curves over a range of R,
    the analysed resolutions as markers), with the crossovers."""
    from complexo.cost import evaluate, plain
    from complexo.plot import UNIT_LABEL, log_axes, mark
    from complexo.symbols import p

    ax_flops, ax_memory = axes
    res_list = [res for res, _ in cmp.results]
    models = cmp.results[0][1]
    names = list(models)
    patch = next(r for r in models.values() if r.analysis == "vit").values[p]
    top = max(max(res_list) * 2, *(float(c.value) * 1.25 for c in cmp.crossovers))
    grid = [patch * m for m in geometric(max(1, -(-32 // patch)), int(top // patch))]
    drawn: dict = {}
    for ax, quantity, kind in (
        (ax_flops, "forward_flops", Kind.FORWARD),
        (ax_memory, "activation_bytes", Kind.ACTIVATION),
    ):
        for name in names:
            r = models[name]
            expr = r.model.total(kind)
            ys = [evaluate(expr, {**r.values, R: x}) for x in grid]
            ax.plot(grid, ys, lw=2, label=f"{name} (formula)")
            drawn[f"{name} {quantity}"] = (grid, ys)
            pts = [m[name].quantity(quantity).value for _, m in cmp.results]
            ax.scatter(res_list, pts, s=40, zorder=5, label=f"{name}, analysed and checked")
            drawn[f"{name} {quantity} analysed"] = (res_list, pts)
        log_axes(ax, kind.unit)
        ax.set_xlabel("image side R (pixels)")
        ax.set_ylabel(UNIT_LABEL[kind.unit])
    for c in cmp.crossovers:
        formula, value = plain(c.expr), f"{float(c.value):,.0f}"
        at = value if c.expr.is_Number or len(formula) > 24 else f"{formula} = {value}"
        mark(ax_flops, float(c.value), f"R = {at}: {c.label}")
        drawn[f"crossover {c.label}"] = ([float(c.value)] * 2, [0, 0])
    ax_flops.set_title(f"forward FLOPs: {' vs '.join(names)} (lines: formulas)")
    ax_memory.set_title("activations saved for backward")
    for ax in (ax_flops, ax_memory):
        ax.legend(fontsize=8, loc="upper left")
    return drawn


def geometric(lo: int, hi: int, steps: int = 48) -> list[int]:
    hi = max(hi, lo + 1)
    ratio = (hi / lo) ** (1 / steps)
    return sorted({round(lo * ratio**i) for i in range(steps + 1)})


@dataclass
class CompareProfile:
    """The CNN's and the ViT's inference timed at each resolution: one :class:`Profile` each."""

    runs: list[tuple[int, dict]]  # (R, {model: profile})
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "analysis": "compare",
            "results": [
                {"res": res, "models": {name: p.to_json() for name, p in models.items()}}
                for res, models in self.runs
            ],
            "notes": self.notes,
        }

    def save(self, root=None) -> list:
        kw = {} if root is None else {"root": root}
        return [path for _, models in self.runs for p in models.values() for path in p.save(**kw)]

    def render(self):
        return _render_profile(self)


def profile(
    cfg: Config, *, device: str | None = None, warmup: int = 3, repeat: int = 10, **runs
) -> CompareProfile:
    """``complexo compare cnn vit`` for real: both models' inference at every resolution."""
    from complexo.profile import run

    found = []
    for res in cfg.res:
        c, v = cfg.configs(res)
        found.append(
            (
                res,
                {
                    cfg.cnn: run(cnn.ANALYSIS, c, device=device, warmup=warmup, repeat=repeat),
                    cfg.vit: run(vit.ANALYSIS, v, device=device, warmup=warmup, repeat=repeat),
                },
            )
        )
    return CompareProfile(found)


def _render_profile(prof):
    """Each resolution: both models' median time and achieved FLOP/s, and the time ratio
    beside the FLOPs ratio (equal if both ran equally close to the hardware's limits)."""
    from rich.console import Group
    from rich.text import Text

    from complexo.render import new_table
    from complexo.units import duration, human

    first = prof.runs[0][1]
    names = list(first)
    p0 = first[names[0]]
    table = new_table(
        f"Measured inference, {p0.device_name} ({p0.device}), {p0.dtype}, "
        f"torch {p0.torch}, {p0.date}"
    )
    table.add_column("R", justify="right")
    for name in names:
        table.add_column(f"{name} median", justify="right")
        table.add_column("achieved", justify="right")
    table.add_column(f"{names[1]} / {names[0]}: time", justify="right")
    table.add_column("FLOPs", justify="right")
    for res, models in prof.runs:
        a, b = (models[n] for n in names)
        cells = []
        for p in (a, b):
            cells += [duration(p.median), f"{human(p.achieved, 'flop')}/s"]
        table.add_row(str(res), *cells, f"{b.median / a.median:.2f}×", f"{b.flops / a.flops:.2f}×")
    return Group(table, *(Text(f"note: {note}", style="dim") for note in prof.notes))


ANALYSIS = register(
    Analysis(
        name=NAME,
        title="CNN vs ViT: FLOPs, parameters, activations, and how each scales with R.",
        help="complexo compare cnn vit [--res 224 384 ...]: a ResNet beside a ViT at each "
        "resolution, a table by resolution, big-O in R, and the resolutions where the ViT's "
        "attention overtakes its projections and where the ViT's FLOPs cross the CNN's.",
        config=Config,
        analyse=analyse,
        sweep=False,
        profiling=Profiling(("forward",), run=profile, sweep=False),
        figure=Figure(
            draw,
            panels=2,
            width=6.5,
            footer=lambda cmp: f"{cmp.config.dtype}, batch {cmp.config.batch}",
        ),
    )
)
