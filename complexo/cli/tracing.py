"""``complexo derive`` (a block's costs as formulas in your size names, by a symbolic trace) and
``complexo count`` (the same block counted at fixed sizes by fvcore and FlopCounterMode). torch
is imported inside the commands: ``complexo --help`` stays light."""

from __future__ import annotations

from typing import Annotated

import typer

from complexo.cli import emit_json

BLOCK = Annotated[
    str, typer.Argument(help="FILE.py:NAME or package.module:NAME, an nn.Module subclass.")
]
JSON = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
DTYPE = Annotated[str, typer.Option(help="float32, bfloat16, float16 or float64.")]


def add(app: typer.Typer) -> None:
    app.command(
        short_help="A block's FLOPs, parameters and saved bytes as formulas in your size names.",
        help="complexo derive FILE.py:NAME --ctor d,f --input B,n,d: builds the block inside "
        "FakeTensorMode with symbolic sizes (SymInts) on the meta device, runs forward and "
        "backward under FlopCounterMode and a saved-tensors hook, and prints the formulas "
        "(FLOP = 2·MAC, matrix products, per op), parameters, bytes saved for backward, "
        "big-O, the dominant term and the guards under which the formulas hold.",
    )(derive)
    app.command(
        short_help="Count any block at fixed sizes: fvcore vs FlopCounterMode, op by op.",
        help="complexo count FILE.py:NAME --input 1,3,224,224 [--ctor 64,128]: on the meta "
        "device (nothing allocated), fvcore's forward and FlopCounterMode's forward and "
        "backward per op, every disagreement named, parameters, saved bytes, and peak training "
        "memory from torch's MemTracker under fake tensors.",
    )(count)


def derive(
    block: BLOCK,
    input_: Annotated[
        str, typer.Option("--input", help="Input shapes over named sizes: B,n,d (';' between).")
    ],
    ctor: Annotated[
        str, typer.Option(help="Constructor arguments over named sizes: 'h*hs,h' or d,f.")
    ] = "",
    dims: Annotated[
        str | None,
        typer.Option(help="Sample sizes for the trace, B=2,n=3 (default: distinct primes)."),
    ] = None,
    at: Annotated[
        str | None, typer.Option(help="Evaluate the formulas at B=8,n=4096,... .")
    ] = None,
    dtype: DTYPE = "float32",
    as_json: JSON = False,
) -> None:
    from complexo import derive as tracing
    from complexo import userblock

    cls = userblock.load_class(block)
    values = userblock.parse_values(at, "--at")
    found = tracing.derive(cls, ctor, input_, dims, dtype)
    unknown = sorted(set(values) - set(found.names))
    if unknown:
        userblock.raise_unknown("--at", unknown)
    if as_json:
        emit_json(tracing.to_json(found, values))
    else:
        typer.echo("\n".join(tracing.lines(found, values)))


def count(
    block: BLOCK,
    input_: Annotated[
        str, typer.Option("--input", help="Input shapes: 1,3,224,224 (';' between inputs).")
    ],
    ctor: Annotated[str, typer.Option(help="Constructor arguments: 64,128.")] = "",
    dtype: DTYPE = "float32",
    optimizer: Annotated[
        str, typer.Option(help="Optimizer of the memory step: adam, sgd or none.")
    ] = "adam",
    as_json: JSON = False,
) -> None:
    from complexo import count as counting
    from complexo.errors import check_choice
    from complexo.userblock import load_class

    check_choice("--optimizer", optimizer, ["adam", "sgd", "none"])
    found = counting.count(load_class(block), ctor, input_, dtype, optimizer)
    if as_json:
        emit_json(counting.to_json(found))
    else:
        typer.echo("\n".join(counting.lines(found)))
