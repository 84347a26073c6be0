"""The commands around the analyses: ``sweep X`` and ``profile X`` (groups with one subcommand
per registered analysis that takes them, each with that analysis's own options), and
``calibrate``, ``profiles``, ``report``, which work on recordings."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from complexo.cli import emit_json, generate, group, plain, print_rich, tracing
from complexo.cli.analysis import DEVICE, JSON, PLOT
from complexo.errors import ComplexoError, check_choice
from complexo.registry import Analysis

option = generate.option


def add(app: typer.Typer, analyses: dict[str, Analysis]) -> None:
    add_sweeps(app, analyses)
    add_profiles(app, analyses)
    _add_recordings(app)


def add_sweeps(app: typer.Typer, analyses: dict[str, Analysis]) -> None:
    """``sweep X``: one subcommand per analysis of ``analyses`` that sweeps."""
    swept = [a for a in analyses.values() if a.sweep]
    sweeps = group(
        f"Sweep an analysis over one option (or a grid of two): complexo sweep "
        f"{'|'.join(a.name for a in swept)} --vary NAME=START..STOP [--log2 | --step S | "
        "--points K] [its own options, fixed]. Every point's formulas, and the counters at enough "
        "points to check them all.",
        {
            a.name: f"complexo sweep takes analyses with one result; {a.name} compares sides "
            "and has its own sweep (its table and --plot)"
            for a in analyses.values()
            if not a.sweep
        },
    )
    for a in swept:
        _sweep_command(sweeps, a)
    app.add_typer(
        sweeps,
        name="sweep",
        short_help="Sweep an analysis over one option (or a grid of two); table, JSON, CSV, plot.",
    )


def add_profiles(app: typer.Typer, analyses: dict[str, Analysis]) -> None:
    """``profile X``: one subcommand per analysis of ``analyses`` that runs for real."""
    profiled = [a for a in analyses.values() if a.profiling is not None]
    profiles = group(
        f"Run a block for real: complexo profile {'|'.join(a.name for a in profiled)} [its "
        "options]: warm-up, then timed runs (CUDA events, or the host clock on CPU), a "
        "torch.profiler trace grouped by the formula's terms, peak memory against the memory "
        "formula, achieved FLOP/s and the roofline prediction per term.",
        {
            a.name: f"{a.name} does not run for real: it has no reference to time"
            for a in analyses.values()
            if a.profiling is None
        },
    )
    for a in profiled:
        _profile_command(profiles, a)
    app.add_typer(
        profiles,
        name="profile",
        short_help="Run a block for real: time, kernels, memory, against formulas and roofline.",
    )


def _add_recordings(app: typer.Typer) -> None:
    """calibrate, profiles, report, and derive and count (any module a user brings)."""
    app.command(
        short_help="Measure this device's ceilings (matmul FLOP/s per dtype, copy bandwidth).",
        help="A large matrix product per dtype and a large device-to-device copy, timed; saved "
        "under profiles/<device>/calibration.json for the roofline of later runs (profiles/ is "
        "$COMPLEXO_HOME's, else the checkout's, else ~/.local/share/complexo's; the command "
        "says where it wrote).",
    )(calibrate)
    app.command(
        "profiles",
        short_help="List the profiles recorded under profiles/, or show one.",
        help="Every recorded profile: device, date, analysis, config and median time; with a "
        "PATH (or its number in the list), that profile's full tables, as when it was run.",
    )(list_profiles)
    app.command(
        short_help="Write the analyses/ pages (or --check that they are up to date).",
        help="complexo report \\[TOPIC...]: writes analyses/<topic>.md and its figures, generated "
        "from the analyses; --check fails when a committed page differs from what complexo "
        "generates now.",
    )(report)
    tracing.add(app)  # derive, count: any module a user brings


def _sweep_command(sweeps: typer.Typer, a: Analysis) -> None:
    extra = [
        option("vary", list[str], ..., "NAME=START..STOP; twice for a grid."),
        option("points", int | None, None, "K evenly spaced values."),
        option("step", int | None, None, "Values START, START+S, ..."),
        option("log2", bool, False, "Double from START to STOP.", "--log2"),
        option(
            "quantity",
            str | None,
            None,
            "What the plot and a grid show (default: forward_flops, or the analysis's first "
            "FLOPs quantity).",
        ),
        option(
            "variant",
            list[str] | None,
            None,
            'Options of one line, e.g. --variant "" --variant "--causal": the sweep under each, '
            "one figure.",
        ),
        option(
            "check_all",
            bool,
            False,
            "Run the counters at every point (by default at the degree + 1 points that check "
            "the formulas at all of them).",
            "--check-all",
        ),
        option("profile", bool, False, "Also time every point.", "--profile"),
        DEVICE,
        JSON,
        option("as_csv", bool, False, "Print CSV, one row per point.", "--csv"),
        PLOT,
    ]

    def body(ctx, config, explicit, **kw):
        from complexo.cli import sweeping

        sweeping.run(a, {k: v for k, v in config.items() if k in explicit}, **kw)

    sweeps.command(
        a.name,
        short_help=plain(f"Sweep {a.name}: {a.title}"),
        help=plain(
            f"complexo sweep {a.name} --vary NAME=START..STOP [--log2 | --step S | --points K] "
            f"[{a.name}'s options, fixed]. {a.help}"
        ),
    )(generate.command(a.config, extra, body))


def _profile_command(profiles: typer.Typer, a: Analysis) -> None:
    modes = a.profiling.modes
    extra = [DEVICE]
    # a config with a field named mode keeps --mode for itself: its profile runs in the first
    # of its profiling's modes
    if "mode" not in {f.name for f in dataclasses.fields(a.config)}:
        extra.append(
            option(
                "mode",
                str | None,
                None,
                f"{' or '.join(modes)} (default {modes[0]}); train: forward, backward, "
                "optimizer step.",
            )
        )
    extra += [
        option("warmup", int | None, None, "Untimed runs first (default 3; 2 for whole models)."),
        option("repeat", int | None, None, "Timed runs (default 10; 5 for whole models)."),
        option("trace", str | None, None, "Write the Chrome/Perfetto trace to PATH."),
        option(
            "threads",
            int | None,
            None,
            "torch's intra-op threads for a CPU run (default: what torch picks); recorded.",
        ),
        option("save", bool, False, "Record it under profiles/<device>/.", "--save"),
        JSON,
    ]
    extra.append(
        option(
            "cuda_graph",
            bool,
            False,
            "Time replays of a captured CUDA graph: no launch overhead (small shapes; "
            "forward mode"
            + ("" if a.profiling.cuda_graph else f"; not for {a.name}, which refuses it")
            + ").",
            "--cuda-graph",
        )
    )

    def body(ctx, config, explicit, *, as_json, save, **runs):
        from complexo import profile as profiling

        prof = profiling.run(a, a.make(**config), **runs)
        if save:
            prof.notes.append(f"saved to {', '.join(map(str, prof.save()))}")
        emit_profile(prof, as_json)

    profiles.command(
        a.name,
        short_help=plain(f"Profile {a.name}: {a.title}"),
        help=plain(f"complexo profile {a.name} [{a.name}'s options]: {a.help}"),
    )(generate.command(a.config, extra, body))


def emit_profile(prof, as_json: bool) -> None:
    if as_json:
        emit_json(prof.to_json())
        return
    from complexo.render_runs import render_profile

    print_rich(render_profile(prof))


def calibrate(
    device: Annotated[
        str | None, typer.Option(help="cuda or cpu (default: cuda if present).")
    ] = None,
    size: Annotated[
        int | None, typer.Option(help="Matrix side (default 8192 GPU, 1024 CPU).")
    ] = None,
) -> None:
    from complexo import profile as profiling
    from complexo.units import human

    doc = profiling.calibrate(device, size=size)

    def peak(dtype: str) -> str:
        by = {kernel: rates[dtype] for kernel, rates in doc["measured"].items()}
        best = max(by, key=by.get)
        others = ", ".join(f"{k} {human(v, 'flop')}/s" for k, v in by.items() if k != best)
        return f"{dtype} {human(by[best], 'flop')}/s ({best}; {others})"

    peaks = ", ".join(peak(dtype) for dtype in doc["peak"])
    typer.echo(f"{doc['device']}: {peaks}; copy {human(doc['bandwidth'], 'byte')}/s")
    typer.echo(f"saved to {doc['path']}")


def list_profiles(
    show: Annotated[
        str | None, typer.Argument(help="A profile to show: its path, or its number.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    from complexo import profile as profiling
    from complexo.home import profiles as folder
    from complexo.units import duration

    skipped: list[str] = []
    docs = profiling.recorded(skipped=skipped)
    if show is None:  # one line each, on stderr: the listing itself stays clean
        for why in skipped:
            typer.echo(f"warning: skipped {why}", err=True)
    if show is not None:
        if not docs:
            raise ComplexoError(
                f"no recorded profile '{show}': nothing is recorded under {folder()} yet "
                "(complexo profile ... --save records one)"
            )
        by_number = {str(i): d for i, d in enumerate(docs, 1)}
        by_path = {d["path"]: d for d in docs}
        doc = by_number.get(show) or by_path.get(show)
        if doc is None:
            raise ComplexoError(
                f"no recorded profile '{show}': give a number from 1 to {len(docs)} or a path "
                "that complexo profiles lists"
            )
        try:
            prof = profiling.Profile.from_json(doc)
        except TypeError as err:
            raise ComplexoError(f"{doc['path']} is not a whole profile: {err}") from None
        emit_profile(prof, as_json)
        return
    if not docs:
        typer.echo(f"no profiles recorded under {folder()} (complexo profile ... --save)")
        return
    for i, doc in enumerate(docs, 1):
        typer.echo(
            f"{i:>3}  {doc['date']}  {doc['device_name']}  {doc['analysis']} {doc['mode']} "
            f"{profiling.shown_config(doc, ' ')}  median {duration(doc['median_s'])}  "
            f"{doc['path']}"
        )


def report(
    topics: Annotated[
        list[str] | None, typer.Argument(help="The pages to write (default: all).")
    ] = None,
    check: Annotated[bool, typer.Option("--check", help="Compare instead of writing.")] = False,
) -> None:
    from complexo import report as reports
    from complexo.home import analyses

    root = analyses()
    chosen = topics or list(reports.TOPICS)
    for topic in chosen:
        check_choice("topic", topic, reports.TOPICS)
    if check:
        stale = reports.check(chosen, root)
        if stale:
            raise ComplexoError(
                f"analyses/ is stale: {', '.join(stale)} differ from what complexo generates now; "
                "run complexo report (make report) and commit"
            )
        typer.echo(f"analyses/ up to date ({', '.join(chosen)})")
        return
    for path in reports.generate(chosen, root):
        typer.echo(f"wrote {path}")
