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

_PREFIXES = {
    "flop": (1000, ["", "k", "M", "G", "T", "P", "E"]),
    "param": (1000, ["", "k", "M", "G", "T"]),
}
_BYTES = (1024, ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"])


def tick(value: float, unit: str) -> str:
    """A tick label in SI (FLOPs, parameters) or binary (bytes) units, with no trailing zeros:
    10 GFLOP, 512 MiB, 4.2 M.

    >>> tick(1e10, "flop"), tick(2**29, "byte"), tick(4.2e6, "param"), tick(0.5, "flop")
    ('10 GFLOP', '512 MiB', '4.2 M', '0.5 FLOP')
    """
    base, prefixes = _BYTES if unit == "byte" else _PREFIXES.get(unit, (1000, [""]))
    v, i = float(value), 0
    while abs(v) >= base and i < len(prefixes) - 1:
        v, i = v / base, i + 1
    number = f"{v:.3g}"
    if unit == "byte":
        return f"{number} {prefixes[i]}"
    return f"{number} {prefixes[i]}FLOP" if unit == "flop" else f"{number} {prefixes[i]}".rstrip()


def log_axes(ax, unit: str | None = None, *, x_base: int = 2) -> None:
    """Log-log axes that read as numbers: x ticks as plain values (256, 512, 1024, not 2⁸),
    y ticks in GFLOP, GiB or M parameters (bytes on powers of two)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log", base=x_base)
    ax.xaxis.set_major_locator(LogLocator(base=x_base, numticks=8))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: number(x)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if unit == "byte":
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_locator(LogLocator(base=2, numticks=8))
    else:
        ax.set_yscale("log")
    ax.yaxis.set_minor_formatter(NullFormatter())
    shown = (lambda y, _: tick(y, unit)) if unit is not None else (lambda y, _: number(y))
    ax.yaxis.set_major_formatter(FuncFormatter(shown))
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", alpha=0.1)


def number(x: float) -> str:
    """A tick as a plain number: 256, 16384, 0.5 (no powers, no exponents).

    >>> number(16384.0), number(0.5), number(1e-3)
    ('16384', '0.5', '0.001')
    """
    return f"{x:.0f}" if x >= 1 and float(x).is_integer() else f"{x:.4g}"


def axis_name(analysis: str, field: str) -> str:
    """An option's name as its help says it, for an axis: --seq: "Sequence length n"."""
    import dataclasses

    from complexo.registry import ANALYSES, KEY

    for f in dataclasses.fields(ANALYSES[analysis].config):
        if f.name == field and KEY in f.metadata:
            text = f.metadata[KEY].help.split(";")[0].split(" (")[0].rstrip(".")
            return text if len(text) <= 32 else field
    return field


def block_name(analysis: str) -> str:
    """The analysis's subject, as its one-line title starts: "Multi-head self-attention"."""
    from complexo.registry import ANALYSES

    return ANALYSES[analysis].title.split(":")[0].rstrip(".")


def power(symbol, exponent: int) -> str:
    """∝ n, ∝ n², ∝ n³: a term's growth in the swept symbol."""
    sup = str(exponent).translate(str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻"))
    return "constant" if exponent == 0 else f"∝ {symbol}" + ("" if exponent == 1 else sup)


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
    each labelled with its share: of the kind's total, or for terms with a dotted prefix (a
    decoder's decode., prefill.) of their prefix's subtotal, as the terms table gives them."""
    from complexo.render import term_groups

    kinds = [k for k in Kind if result.model.terms(k)]
    kind = Kind.FORWARD if Kind.FORWARD in kinds else kinds[0]
    (ax,) = axes_for(ax)
    terms = result.model.terms(kind)
    values = [evaluate(t.expr, result.values) for t in terms]
    value = dict(zip((t.name for t in terms), values, strict=True))
    subtotal = {}
    for group in term_groups(terms).values():  # each group summed once
        whole = sum(value[t.name] for t in group) or 1
        subtotal.update(dict.fromkeys((t.name for t in group), whole))
    names = [t.name for t in terms]
    ax.barh(names, values)
    for i, (t, v) in enumerate(zip(terms, values, strict=True)):
        of = f" of {t.name.partition('.')[0]}" if "." in t.name else ""
        ax.annotate(f" {v / subtotal[t.name]:.1%}{of}", (v, i), va="center", fontsize=8)
    ax.invert_yaxis()
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: tick(x, kind.unit)))
    ax.set_xlabel(UNIT_LABEL[kind.unit])
    what = kind.value.replace("_", " ").replace("flops", "FLOPs")
    ax.set_title(f"{block_name(result.analysis)}: {what} by term")
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
    """Log-log: every term of ``quantity``'s kind (terms whose curves coincide, such as the four
    projections, as one line), the total, the counters' readings as markers (with the slope
    fitted to them), the crossovers in the swept symbol (in the legend, off the data)."""
    first = sweep.points[0].result
    q0 = first.quantity(quantity)
    kind = q0.kind
    name, sym = sweep.vary[0].name, sweep.symbol
    xs = [p.config[name] for p in sweep.points]
    exps = sweep.exponents(kind)
    drawn: Drawn = {}
    same: dict[tuple, list[str]] = {}  # identical series drawn once
    for t in first.model.terms(kind):
        ys = sweep.term_series(kind, t.name)
        if any(ys):
            same.setdefault(tuple(ys), []).append(t.name)
    for ys, names in same.items():
        grows = f" {power(sym, exps.get(names[0], 0))}" if sym is not None else ""
        label = ", ".join(names) + grows
        ax.plot(xs, _positive(list(ys)), lw=1.2, alpha=0.8, label=label)
        drawn[label] = (xs, list(ys))
    total = sweep.series(quantity)
    ax.plot(xs, total, color="black", lw=2.4, label=f"{q0.label.strip()}, total (formula)")
    drawn[f"{quantity} (formula)"] = (xs, total)
    matmul = quantity.replace("_flops", "_matmul_flops")
    names = {q.name for q in first.quantities}
    if matmul != quantity and matmul in names:
        mm = sweep.series(matmul)
        label = "of which matmuls (formula)"
        ax.plot(xs, mm, color="black", lw=1.4, ls="--", label=label)
        drawn[f"{matmul} (formula)"] = (xs, mm)
    measured_on = matmul if matmul in names else quantity
    what = "matmuls" if measured_on != quantity else q0.label.strip()
    for counter, marker, who in (("torch", "o", "FlopCounterMode"), ("fvcore", "x", "fvcore")):
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
        ax.scatter(
            mx, ms, marker=marker, s=46, zorder=5, label=f"{who}'s count of the {what}{slope}"
        )
        drawn[f"{counter} count of {measured_on}{slope}"] = (mx, ms)
    log_axes(ax, q0.unit)
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
    axis = axis_name(sweep.analysis, name)
    ax.set_xlabel(axis)
    ax.set_ylabel(UNIT_LABEL[q0.unit])
    fixed = ", ".join(f"{k} = {v}" for k, v in sweep.fixed.items())
    ax.set_title(
        f"{block_name(sweep.analysis)}: {q0.label.strip()} against {axis[0].lower()}{axis[1:]}"
        + (f"\n{fixed}" if fixed else "")
    )
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return drawn


def draw_times(ax, sweep: Sweep) -> Drawn:
    """Measured time against the swept option, the roofline prediction, and the exponent fitted
    to the measured points beside the formula's (FLOPs') over the same range."""
    name = sweep.vary[0].name
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
    log_axes(ax)
    from matplotlib.ticker import FuncFormatter

    from complexo.units import duration

    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: duration(y)))  # 10 ms, 373 µs
    ax.set_xlabel(axis_name(sweep.analysis, name))
    from complexo.registry import ANALYSES

    ax.set_ylabel(f"time per {ANALYSES[sweep.analysis].profiling.iteration}")
    ax.set_title(f"measured on {prof.device_name} ({prof.device}), {prof.dtype}")
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
    log_axes(ax)
    ax.set_xlabel("sequence length n")
    ax.set_ylabel("ms per forward")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left")
    return drawn


def variant_label(text: str) -> str:
    """A variant's options in words for a legend: "--causal --impl sdpa" -> "causal, impl sdpa";
    no options: "default"."""
    if text.startswith("("):
        return "default"
    words, out = text.split(), []
    for w in words:
        if w.startswith("--"):
            out.append(w[2:])
        elif out:
            out[-1] += f" {w}"
    return ", ".join(out) or text


def draw_variants(ax, variants) -> Drawn:
    """One line per variant of ``variants.quantity`` against the swept option, log-log, with
    each line's slope fitted in the legend; variants whose lines coincide share one."""
    drawn: Drawn = {}
    quantity, first = variants.quantity, next(iter(variants.sweeps.values()))
    name = first.vary[0].name
    q0 = first.points[0].result.quantity(quantity)
    same: dict[tuple, list[str]] = {}
    for label, sweep in variants.sweeps.items():
        same.setdefault(tuple(sweep.series(quantity)), []).append(label)
        drawn[label] = ([p.config[name] for p in sweep.points], sweep.series(quantity))
    for ys, labels in same.items():
        xs = drawn[labels[0]][0]
        slope = f", slope {fit_exponent(xs, ys):.2f}" if len(xs) > 2 and all(ys) else ""
        words = "; ".join(variant_label(label) for label in labels)
        words += " (equal)" if len(labels) > 1 else ""
        ax.plot(xs, _positive(list(ys)), marker="o", lw=2, label=f"{words}{slope}")
    log_axes(ax, q0.unit)
    axis = axis_name(variants.analysis, name)
    ax.set_xlabel(axis)
    ax.set_ylabel(UNIT_LABEL[q0.unit])
    ax.set_title(
        f"{block_name(variants.analysis)}: {q0.label.strip()} against "
        f"{axis[0].lower()}{axis[1:]}, by variant"
    )
    ax.legend(fontsize=8, loc="upper left")
    return drawn


def mark(ax, at: float, text: str) -> None:
    """A dotted vertical line at a crossover, said in the legend (a label written along the
    line crossed the data)."""
    ax.axvline(at, color="0.3", ls=":", lw=1.3, label=text)


def footer(extra: str = "") -> str:
    return CONVENTION + (f"; {extra}" if extra else "")
