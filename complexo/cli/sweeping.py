"""``complexo sweep X``: every point a full analysis, one option varied (or two, a grid), the
rest fixed; a table, JSON, CSV or a figure, with a progress bar on stderr."""

from __future__ import annotations

from complexo.cli import emit_json, print_rich
from complexo.errors import ComplexoError, check_choice
from complexo.registry import Analysis


def run(
    a: Analysis,
    fixed: dict,
    *,
    vary: list[str],
    points: int | None,
    step: int | None,
    log2: bool,
    quantity: str | None,
    variant: list[str] | None,
    profile: bool,
    device: str | None,
    as_json: bool,
    as_csv: bool,
    plot: str | None,
    check_all: bool = False,
) -> None:
    import sys

    from complexo import progress as progress_bar
    from complexo import sweep as sweeps

    if device is not None and not profile:
        raise ComplexoError("--device needs --profile")
    if plot is not None:
        from complexo.plot import check_path

        check_path(plot)
    varies = [sweeps.parse_vary(v, points=points, step=step, log2=log2) for v in vary]
    total = 1
    for v in varies:
        total *= len(v.values)
    with progress_bar.task(f"sweeping {a.name}", total=total * len(variant or [1])) as advance:

        def progress(i: int, n: int) -> None:
            advance(completed=i)

        if variant:
            quantity = quantity or "forward_flops"
            lines = sweeps.run_variants(
                a, fixed, varies, variant, quantity, progress, check_all=check_all
            )
        else:
            result = sweeps.run(a, fixed, varies, progress, check_all=check_all)
    if variant:
        _emit_variants(lines, as_json, as_csv, plot)
        return
    if profile:
        if len(varies) != 1:
            raise ComplexoError("--profile draws time against one varied option")
        with progress_bar.task(f"running {a.name} for real", total=total) as advance:
            sweeps.profile_points(result, device=device, progress=lambda i, n: advance())
    names = [q.name for q in result.points[0].result.quantities]
    if quantity is None:
        flops = [q.name for q in result.points[0].result.quantities if q.unit == "flop"]
        quantity = "forward_flops" if "forward_flops" in flops else (flops or names)[0]
    check_choice("--quantity", quantity, sorted(names))
    if plot is not None:
        from complexo import plot as plots

        with plots.style():
            if profile:
                fig, (ax, right) = plots.figure(2, width=8.5)
                plots.draw_times(right, result)
            else:
                fig, (ax,) = plots.figure(width=10.5)
            plots.draw_sweep(ax, result, quantity)
            plots.save(fig, plot, plots.footer(_fixed_text(result.points[0].result.config)))
    if as_json:
        emit_json(result.to_json())
    elif as_csv:
        sys.stdout.write(result.to_csv())
    else:
        from complexo.render_runs import render_sweep

        print_rich(render_sweep(result, quantity))


def _emit_variants(lines, as_json: bool, as_csv: bool, plot: str | None) -> None:
    import sys

    first = next(iter(lines.sweeps.values())).points[0].result
    check_choice("--quantity", lines.quantity, sorted(q.name for q in first.quantities))
    if plot is not None:
        from complexo import plot as plots

        with plots.style():
            fig, (ax,) = plots.figure(width=8.5)
            plots.draw_variants(ax, lines)
            plots.save(fig, plot, plots.footer(_fixed_text(first.config)))
    if as_json:
        emit_json(lines.to_json())
    elif as_csv:
        sys.stdout.write(lines.to_csv())
    else:
        from complexo.render_runs import render_variants

        print_rich(render_variants(lines))


def _fixed_text(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items() if k in ("dtype", "precision"))
