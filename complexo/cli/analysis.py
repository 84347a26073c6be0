"""The command of one registered analysis: its options (from its config), then what every
analysis command takes: ``--json``, ``--brief``, ``--terms`` (two-sided), ``--plot PATH`` (where
it draws a figure), ``--profile`` with ``--device`` and ``--save`` (where it runs for real) and
``--check/--no-check`` (the counters, or the formulas alone without importing torch)."""

from __future__ import annotations

import typer

from complexo.cli import emit_json, generate, plain, print_rich
from complexo.errors import ComplexoError
from complexo.registry import Analysis

JSON = generate.option(
    "as_json", bool, False, "Print one JSON document (the contract in the README).", "--json"
)
DEVICE = generate.option(
    "device", str | None, None, "With --profile: cuda or cpu (default: cuda if present)."
)
PLOT = generate.option("plot", str | None, None, "Also draw the figure to PATH (.png or .svg).")


CHECK = generate.option(
    "check",
    bool,
    True,
    "Check the formulas against the counters on the meta device (--no-check: the formulas "
    "alone, without importing torch or fvcore; a note says they were not checked).",
    "--check/--no-check",
)

PROVE = generate.option(
    "prove",
    bool,
    False,
    "Prove the hand formulas for all shapes here: trace the reference block with symbolic "
    "sizes and check sympy.simplify(hand − traced) = 0 per quantity (exit 1 if one differs).",
)


def add(app: typer.Typer, a: Analysis) -> None:
    extra = [JSON, CHECK]
    if a.sides:
        extra += [
            generate.option("brief", bool, False, "Leave out the formulas."),
            generate.option("terms", bool, False, "Add each side's per-term table."),
        ]
    else:
        extra.append(generate.option("brief", bool, False, "Leave out the per-term table."))
    if a.figure is not None:
        extra.append(PLOT)
    if a.symbolic is not None:
        extra.append(PROVE)
    if a.profiling is not None:
        extra += [
            generate.option(
                "profile",
                bool,
                False,
                f"Also run it for real (complexo profile {a.name} has every profiling option).",
            ),
            DEVICE,
            generate.option("save", bool, False, "With --profile: record the run under profiles/."),
        ]

    def body(ctx, config, explicit, *, as_json, brief, check, terms=False, plot=None, **runs):
        run(a, config, as_json=as_json, brief=brief, check=check, terms=terms, plot=plot, **runs)

    app.command(a.name, short_help=plain(a.title), help=plain(a.help))(
        generate.command(a.config, extra, body)
    )


def run(
    a: Analysis,
    config: dict,
    *,
    as_json: bool,
    brief: bool,
    check: bool = True,
    terms: bool = False,
    plot: str | None = None,
    profile: bool = False,
    device: str | None = None,
    save: bool = False,
    prove: bool = False,
) -> None:
    """Check every option first (the config, the figure's path, the profiling flags), then
    analyse, draw, run for real, print."""
    if save and not profile:
        raise ComplexoError("--save records profiles: add --profile")
    if device is not None and not profile:
        raise ComplexoError("--device says where --profile runs: add --profile")
    cfg = a.make(**config)
    if plot is not None:
        from complexo.plot import check_path

        check_path(plot)
    proof = None
    if prove:  # first: a variant with no proof is refused before anything runs
        from complexo import prove as proving

        proof = proving.prove(a, cfg)
    if check:
        result = a.analyse(cfg)
    else:
        from complexo.counting import unchecked

        with unchecked():
            result = a.analyse(cfg)
    if plot is not None:
        draw(a, result, plot)
    if proof is not None:
        proving.mark(result, a.symbolic, cfg, f"{proving.PROVED} (--prove)", proof)
    prof = None
    if profile:
        from complexo import profile as profiling

        prof = profiling.run(a, cfg, device=device)
        if save:
            prof.notes.append(f"saved to {', '.join(map(str, prof.save()))}")
    if as_json:
        extra = {"profile": prof.to_json()} if prof is not None else {}
        emit_json(result.to_json() | extra | ({"proof": proof.to_json()} if proof else {}))
        _proved(proof)
        return
    from complexo.render_runs import render_profile

    shown = result.render(brief=brief, terms=terms)
    print_rich(shown, *([render_profile(prof)] if prof is not None else []))
    if proof is not None:
        print("\n".join(proof.lines()))
    _proved(proof)


def _proved(proof) -> None:
    """Exit 1 after the output when a live proof failed (the differing terms are printed)."""
    if proof is not None and not proof.proved:
        raise typer.Exit(1)


def draw(a: Analysis, result, path: str) -> None:
    """The analysis's figure of ``result``, saved to ``path`` with the convention at its foot."""
    from complexo import plot as plots

    with plots.style():
        fig, axes = plots.figure(a.figure.panels, width=a.figure.width)
        a.figure.draw(axes, result)
        plots.save(fig, path, plots.footer(a.figure.footer(result)))
