"""Figures. Each ``draw_*`` takes its axes and returns the data it drew (label -> (x, y)), so
tests check the drawing against the tables; ``figure()`` and ``save()`` are called by the CLI
only. Output is deterministic: no dates in the files, a fixed SVG hash salt, fixed fonts.
"""

from __future__ import annotations

import math

from complexo.conventions import CONVENTION
from complexo.cost import Kind, evaluate, plain
from complexo.sweep import Sweep, fit_exponent

Drawn = dict[str, tuple[list[float], list[float]]]

UNIT_LABEL = {"flop": "FLOPs (FLOP = 2·MAC)", "byte": "bytes", "param": "parameters"}


# complexo's own look, applied only inside :func:`style` (a local rc context): the user's
# rcParams and backend are never changed, so a notebook's inline plots keep working.
STYLE = {"svg.hashsalt": "complexo", "font.family": "DejaVu Sans", "font.size": 10}


def style():
    """A context in which complexo draws and saves its own figures."""
    import matplotlib

    return matplotlib.rc_context(STYLE)


def figure(panels: int = 1, width: float = 7.5, height: float = 5.2):
    """A figure of its own, outside pyplot (no backend chosen, nothing registered with pyplot's
    figure manager): ``save`` writes it through the Agg or SVG canvas that the format needs."""
    from matplotlib.figure import Figure

    with style():
        fig = Figure(figsize=(width * panels, height))
        axes = fig.subplots(1, panels, squeeze=False)
    return fig, list(axes[0])


def axes_for(ax, panels: int = 1, width: float = 7.5, height: float = 5.2) -> list:
    """The axes to draw on: ``ax`` (one, or a list for several panels) as given by a notebook,
    or new ones, without touching the user's backend or style."""
    if ax is not None:
        return list(ax) if isinstance(ax, list | tuple) else [ax]
    import matplotlib.pyplot as plt

    _, axes = plt.subplots(1, panels, figsize=(width * panels, height), squeeze=False)
    return list(axes[0])


def draw_registered(result, ax=None) -> Drawn:
    """The registered analysis's own figure of ``result``."""
    from complexo.errors import ComplexoError
    from complexo.registry import ANALYSES

    how = ANALYSES[result.analysis].figure
    if how is None:
        raise ComplexoError(f"{result.analysis} has no figure")
    return how.draw(axes_for(ax, how.panels, how.width), result)


def draw_terms(result, ax=None) -> Drawn:
    """One result's forward FLOPs (or its first kind's terms), one horizontal bar per term,
    each labelled with its share."""
    kinds = [k for k in Kind if result.model.terms(k)]
    kind = Kind.FORWARD if Kind.FORWARD in kinds else kinds[0]
    (ax,) = axes_for(ax)
    terms = result.model.terms(kind)
    values = [evaluate(t.expr, result.values) for t in terms]
    total = sum(values) or 1
    names = [t.name for t in terms]
    ax.barh(names, values)
    for i, v in enumerate(values):
        ax.annotate(f" {v / total:.1%}", (v, i), va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(UNIT_LABEL[kind.unit])
    ax.set_title(f"complexo {result.analysis}: {kind.value.replace('_', ' ')} by term")
    return {name: ([i], [v]) for i, (name, v) in enumerate(zip(names, values, strict=True))}


def check_path(path: str) -> str:
    """The format of ``path`` (png or svg), refused otherwise before any work is done."""
    from complexo.paths import check_output

    return check_output(path, "--plot", ("png", "svg")).suffix.lower().lstrip(".")


def finish(fig, footer: str) -> None:
    """The convention at the figure's foot, and the layout."""
    fig.text(0.01, 0.01, footer, fontsize=8, color="0.35")
    fig.tight_layout(rect=(0, 0.04, 1, 1))


def save(fig, path: str, footer: str | None) -> None:
    """Write ``fig`` (with the convention at its foot unless already finished)."""
    from complexo.errors import ComplexoError

    suffix = check_path(path)
    if footer is not None:
        finish(fig, footer)
    metadata = {"Date": None} if suffix == "svg" else {"Software": "complexo"}
    try:
        with style():
            fig.savefig(path, dpi=110, metadata=metadata)
    except OSError as err:
        raise ComplexoError(f"cannot write {path}: {err.strerror}") from None
    finally:
        close(fig)


def save_svg(fig, path) -> None:
    save(fig, str(path), None)


def close(fig) -> None:
    """Let go of a figure: one made by :func:`figure` is not pyplot's; one a caller made with
    pyplot is closed there."""
    import sys

    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)


def _positive(ys):
    return [y if y and y > 0 else math.nan for y in ys]


def draw_sweep(ax, sweep: Sweep, quantity: str = "forward_flops") -> Drawn:
    """Log-log: every term of ``quantity``'s kind, the total, the counters' readings as markers
    (with the slope fitted to them), the crossovers in the swept symbol."""
    first = sweep.points[0].result
    q0 = first.quantity(quantity)
    kind = q0.kind
    name, sym = sweep.vary[0].name, sweep.symbol
    xs = [p.config[name] for p in sweep.points]
    exps = sweep.exponents(kind)
    drawn: Drawn = {}
    for t in first.model.terms(kind):
        ys = sweep.term_series(kind, t.name)
        if not any(ys):
            continue
        label = f"{t.name} ∝ {sym}^{exps.get(t.name, 0)}" if sym is not None else t.name
        ax.plot(xs, _positive(ys), lw=1.2, alpha=0.75, label=label)
        drawn[label] = (xs, ys)
    total = sweep.series(quantity)
    ax.plot(xs, total, color="black", lw=2.4, label=f"{quantity} (formula)")
    drawn[f"{quantity} (formula)"] = (xs, total)
    matmul = quantity.replace("_flops", "_matmul_flops")
    names = {q.name for q in first.quantities}
    if matmul != quantity and matmul in names:
        mm = sweep.series(matmul)
        ax.plot(xs, mm, color="black", lw=1.4, ls="--", label=f"{matmul} (formula)")
        drawn[f"{matmul} (formula)"] = (xs, mm)
    measured_on = matmul if matmul in names else quantity
    for counter, marker in (("torch", "o"), ("fvcore", "x")):
        # the points the counters ran at (a sweep counts where that checks every point)
        found = [
            (x, p.result.quantity(measured_on).measured.get(counter))
            for x, p in zip(xs, sweep.points, strict=True)
        ]
        found = [(x, m) for x, m in found if m is not None]
        if len(found) < 2 or not all(m for _, m in found):
            continue
        mx, ms = [x for x, _ in found], [m for _, m in found]
        slope = f", slope {fit_exponent(mx, ms):.2f}" if len(mx) > 2 else ""
        label = f"{counter} count of {measured_on}{slope}"
        ax.scatter(mx, ms, marker=marker, s=46, zorder=5, label=label)
        drawn[label] = (mx, ms)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    leading = [
        c
        for c in first.summary.crossovers
        if sym is not None and c.symbol == sym and c.kind in (None, kind)
    ][:1]  # the first one a model states is between its leading terms
    for c in leading:
        at = float(c.value)
        if xs[0] <= at <= xs[-1]:
            mark(ax, at, f"{sym} = {plain(c.expr)}: {c.label}")
            drawn[f"crossover {c.label}"] = ([at, at], [0, 0])
    ax.set_xlabel(f"{name} ({sym})" if sym is not None else name)
    ax.set_ylabel(UNIT_LABEL[q0.unit])
    fixed = ", ".join(f"{k}={v}" for k, v in sweep.fixed.items())
    ax.set_title(
        f"complexo {sweep.analysis}: {quantity} against {name}" + (f"\n{fixed}" if fixed else "")
    )
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return drawn


def draw_times(ax, sweep: Sweep) -> Drawn:
    """Measured time against the swept option, the roofline prediction, and the exponent fitted
    to the measured points beside the formula's (FLOPs') over the same range."""
    name, sym = sweep.vary[0].name, sweep.symbol
    xs = [p.config[name] for p in sweep.points]
    measured, predicted = sweep.times()
    flops = [p.profile.flops for p in sweep.points]  # the formula's, for the timed iteration
    fitted, formula = fit_exponent(xs, measured), fit_exponent(xs, flops)
    drawn: Drawn = {}
    label = f"measured median (fitted slope {fitted:.2f}; formula FLOPs {formula:.2f})"
    ax.scatter(xs, measured, s=46, zorder=5, color="black", label=label)
    drawn["measured"] = (xs, measured)
    if all(t is not None for t in predicted):
        ax.plot(
            xs, predicted, lw=2, label="roofline prediction: Σ max(FLOPs/peak, bytes/bandwidth)"
        )
        drawn["predicted"] = (xs, predicted)
    prof = sweep.points[0].profile
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(f"{name} ({sym})" if sym is not None else name)
    from complexo.registry import ANALYSES

    ax.set_ylabel(f"seconds per {ANALYSES[sweep.analysis].profiling.iteration}")
    ax.set_title(f"measured on {prof.device_name} ({prof.device}), {prof.dtype}")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="upper left")
    return drawn


def draw_impl_times(ax, series: dict, title: str) -> Drawn:
    """Measured median time against n for each implementation (markers), and its roofline
    floor (dashed, same colour). ``series``: {impl: [(n, measured s, floor s or None), ...]}."""
    drawn: Drawn = {}
    for (impl, points), colour in zip(series.items(), ("C3", "C0", "C2", "C1"), strict=False):
        xs = [n for n, _, _ in points]
        measured = [t * 1e3 for _, t, _ in points]
        ax.plot(xs, measured, marker="o", lw=2, color=colour, label=f"{impl}: measured median")
        drawn[f"{impl} measured"] = (xs, measured)
        if all(f for _, _, f in points):
            floor = [f * 1e3 for _, _, f in points]
            ax.plot(  # above the measured lines: floors can lie on another's measurement
                xs, floor, ls="--", lw=1.5, color=colour, zorder=4, label=f"{impl}: roofline floor"
            )
            drawn[f"{impl} floor"] = (xs, floor)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length (n)")
    ax.set_ylabel("ms per forward")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="upper left")
    return drawn


def draw_variants(ax, variants) -> Drawn:
    """One line per variant of ``variants.quantity`` against the swept option, log-log, with
    each line's slope fitted in the legend."""
    drawn: Drawn = {}
    quantity, first = variants.quantity, next(iter(variants.sweeps.values()))
    name, sym = first.vary[0].name, first.symbol
    unit = first.points[0].result.quantity(quantity).unit
    for label, sweep in variants.sweeps.items():
        xs = [p.config[name] for p in sweep.points]
        ys = sweep.series(quantity)
        slope = f", slope {fit_exponent(xs, ys):.2f}" if len(xs) > 2 and all(ys) else ""
        ax.plot(xs, _positive(ys), marker="o", lw=2, label=f"{label}{slope}")
        drawn[label] = (xs, ys)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(f"{name} ({sym})" if sym is not None else name)
    ax.set_ylabel(UNIT_LABEL[unit])
    ax.set_title(f"complexo {variants.analysis}: {quantity} against {name}, by variant")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="upper left")
    return drawn


def mark(ax, at: float, text: str) -> None:
    """A dotted vertical line at a crossover, its label written along it."""
    ax.axvline(at, color="0.3", ls=":", lw=1.3)
    ax.annotate(
        text,
        (at, 0.98),
        xycoords=("data", "axes fraction"),
        xytext=(-4, 0),
        textcoords="offset points",
        fontsize=8,
        rotation=90,
        ha="right",
        va="top",
        color="0.2",
    )


def footer(extra: str = "") -> str:
    return CONVENTION + (f"; {extra}" if extra else "")
