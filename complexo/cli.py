"""The command line: build a config, call the analysis, print. Nothing else lives here."""

from __future__ import annotations

import difflib
import json
import sys
from enum import Enum
from typing import Annotated

import typer
from typer.core import TyperGroup

from complexo.errors import ComplexoError

try:  # typer ≥ 0.2x vendors click and exposes its exception base as TyperException
    _UsageError = typer.TyperException
except AttributeError:  # older typer runs on click itself
    from click import ClickException as _UsageError


class _Commands(TyperGroup):
    """Bad input becomes one line on stderr and a non-zero exit, never a traceback."""

    def resolve_command(self, ctx, args):
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            names = sorted(self.list_commands(ctx))
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ComplexoError(f"unknown command '{name}'; {hint}choose from: {', '.join(names)}")
        return super().resolve_command(ctx, args)

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except _UsageError as err:  # typer's usage errors: bad values, unknown options
            _fail(err.format_message(), getattr(err, "exit_code", 2))
        except ComplexoError as err:
            _fail(str(err), 2)
        except typer.Abort:
            _fail("aborted", 1)
        sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


app = typer.Typer(
    cls=_Commands,
    help="complexo: what does a deep-learning building block cost, and why? "
    "Symbolic formulas, checked against fvcore, FlopCounterMode and autograd's saved tensors.",
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


class Impl(str, Enum):
    naive = "naive"
    sdpa = "sdpa"


class DType(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (the contract in the README).")
]
BriefFlag = Annotated[bool, typer.Option("--brief", help="Leave out the per-term table.")]


def _emit(result, as_json: bool, brief: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
        return
    from complexo.render import console, render

    console().print(render(result, terms=not brief))


@app.command(
    short_help="Multi-head self-attention: FLOPs, parameters and memory, checked by counters.",
    help="Multi-head self-attention: forward and backward FLOPs, parameters, saved activations "
    "and the attention matrix, per term, against fvcore, FlopCounterMode and autograd.",
)
def mhsa(
    batch: Annotated[int, typer.Option(help="Batch size B.")] = 1,
    seq: Annotated[int, typer.Option(help="Sequence length n (tokens).")] = 4096,
    dim: Annotated[int, typer.Option(help="Model width d; must be divisible by --heads.")] = 1024,
    heads: Annotated[int, typer.Option(help="Number of heads h; head size is d/h.")] = 16,
    dtype: Annotated[DType, typer.Option(help="Element type; sets the bytes per element e.")] = (
        DType.fp32
    ),
    impl: Annotated[
        Impl,
        typer.Option(
            help="naive: explicit matmuls and softmax (materialises the n×n matrix); "
            "sdpa: F.scaled_dot_product_attention (fused kernel)."
        ),
    ] = Impl.naive,
    causal: Annotated[bool, typer.Option("--causal", help="Mask future tokens.")] = False,
    no_bias: Annotated[
        bool, typer.Option("--no-bias", help="Projections without biases (default: with).")
    ] = False,
    as_json: JsonFlag = False,
    brief: BriefFlag = False,
) -> None:
    from complexo.analyses import mhsa as analysis

    cfg = analysis.Config(
        batch=batch,
        seq=seq,
        dim=dim,
        heads=heads,
        dtype=dtype.value,
        impl=impl.value,
        causal=causal,
        bias=not no_bias,
    )
    _emit(analysis.analyse(cfg), as_json, brief)


def main() -> None:
    app()
