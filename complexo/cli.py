"""The command line: build a config, call the analysis, print. Nothing else lives here."""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import Annotated

import typer
from typer.core import TyperGroup

from complexo.errors import ComplexoError, check_choice

try:  # typer ≥ 0.2x vendors click and exposes its exception base as TyperException
    _UsageError = typer.TyperException
except AttributeError:  # older typer runs on click itself
    from click import ClickException as _UsageError


class _Commands(TyperGroup):
    """Bad input becomes one line on stderr and a non-zero exit, never a traceback."""

    def resolve_command(self, ctx, args):
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            check_choice("command", name, sorted(self.list_commands(ctx)))
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
    flash = "flash"


class DType(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (the contract in the README).")
]
BriefFlag = Annotated[bool, typer.Option("--brief", help="Leave out the per-term table.")]


ProfileFlag = Annotated[
    bool, typer.Option("--profile", help="Also run it for real (complexo profile has more).")
]
DeviceOption = Annotated[str | None, typer.Option(help="With --profile: cuda or cpu.")]


def _emit_profiled(result, cfg, name: str, profile: bool, device, as_json: bool, brief: bool):
    """The analysis, and with --profile a real run of the same config beside it."""
    if not profile:
        _emit(result, as_json, brief)
        return
    from complexo.render import render

    _emit_with_profile(
        result, _profile(name, cfg, device), as_json, render(result, terms=not brief)
    )


def _profile(name: str, cfg, device):
    from complexo import profile as profiling

    return profiling.run(name, cfg, device=device)


def _emit_with_profile(result, prof, as_json: bool, table) -> None:
    """The analysis (``table`` in the terminal) and, if any, its profile after it."""
    if as_json:
        doc = result.to_json() | ({"profile": prof.to_json()} if prof is not None else {})
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    from complexo.render import console, render_profile

    console().print(table, *([render_profile(prof)] if prof is not None else []))


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
            "sdpa: F.scaled_dot_product_attention (fused kernel); flash: the same kernel, "
            "read as FlashAttention's tiled algorithm (its device-memory traffic)."
        ),
    ] = Impl.naive,
    causal: Annotated[bool, typer.Option("--causal", help="Mask future tokens.")] = False,
    no_bias: Annotated[
        bool, typer.Option("--no-bias", help="Projections without biases (default: with).")
    ] = False,
    kv_heads: Annotated[
        int | None,
        typer.Option("--kv-heads", help="G key/value heads: grouped-query (1: multi-query)."),
    ] = None,
    window: Annotated[
        int | None, typer.Option(help="Sliding window W: each query sees its last W keys.")
    ] = None,
    alibi: Annotated[bool, typer.Option("--alibi", help="ALiBi distance bias on the scores.")] = (
        False
    ),
    sram: Annotated[
        int, typer.Option(help="On-chip memory per SM in KiB, for the tiled kernel's traffic.")
    ] = 192,
    profile: Annotated[
        bool,
        typer.Option(
            "--profile",
            help="Also run it for real (see complexo profile mhsa for every profiling option).",
        ),
    ] = False,
    device: Annotated[str | None, typer.Option(help="With --profile: cuda or cpu.")] = None,
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
        kv_heads=kv_heads,
        window=window,
        alibi=alibi,
        sram=sram,
    )
    _emit_profiled(analysis.analyse(cfg), cfg, "mhsa", profile, device, as_json, brief)


class Optimizer(str, Enum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16_mixed = "bf16-mixed"
    fp16_mixed = "fp16-mixed"


def _targets(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(t for t in text.replace(",", " ").split() if t)


@app.command(
    short_help="LoRA vs full fine-tuning: parameters, training memory and step FLOPs.",
    help="LoRA against full fine-tuning, for one linear layer (--in, --out) or a whole "
    "decoder-only transformer (--model, or --arch with --layers, --dim, --heads): parameters, "
    "checkpoint, training memory by part, FLOPs of a training step by part, inference merged and "
    "unmerged, and a rank sweep; checked against FlopCounterMode, fvcore, autograd's saved "
    "tensors and a real optimizer step, all on the meta device.",
)
def lora(
    model: Annotated[
        str | None,
        typer.Option(
            help="Preset: gpt2, gpt2-medium, gpt2-large, gpt2-xl, gpt3-175b, llama-7b "
            "(default gpt2 unless a layer or a raw model is given)."
        ),
    ] = None,
    in_features: Annotated[
        int | None, typer.Option("--in", help="A single layer: input width d_in.")
    ] = None,
    out_features: Annotated[
        int | None, typer.Option("--out", help="A single layer: output width d_out.")
    ] = None,
    arch: Annotated[
        str | None, typer.Option(help="Architecture of a raw model: gpt2 or llama.")
    ] = None,
    layers: Annotated[int | None, typer.Option(help="Layers L (overrides the preset).")] = None,
    dim: Annotated[int | None, typer.Option(help="Width d (overrides the preset).")] = None,
    heads: Annotated[int | None, typer.Option(help="Heads h (overrides the preset).")] = None,
    vocab: Annotated[int | None, typer.Option(help="Vocabulary V (overrides the preset).")] = None,
    ctx: Annotated[
        int | None, typer.Option(help="Context: learned positions P (gpt2), trained context.")
    ] = None,
    mlp: Annotated[int | None, typer.Option(help="MLP hidden width f (overrides).")] = None,
    rank: Annotated[int, typer.Option(help="LoRA rank r.")] = 8,
    alpha: Annotated[float, typer.Option(help="LoRA alpha; the update is scaled by α/r.")] = 16.0,
    targets: Annotated[
        str | None,
        typer.Option(help="Adapted matrices, comma-separated from q, k, v, o, mlp (default q,v)."),
    ] = None,
    optimizer: Annotated[Optimizer, typer.Option(help="Optimizer, for its state.")] = (
        Optimizer.adamw
    ),
    precision: Annotated[
        Precision,
        typer.Option(help="fp32, or 16-bit weights/activations with fp32 master weights."),
    ] = Precision.bf16_mixed,
    batch: Annotated[int, typer.Option(help="Batch size B.")] = 1,
    seq: Annotated[
        int | None, typer.Option(help="Tokens per sequence n (default: the model's context).")
    ] = None,
    as_json: JsonFlag = False,
    brief: Annotated[bool, typer.Option("--brief", help="Leave out the formulas.")] = False,
    terms: Annotated[bool, typer.Option("--terms", help="Add each side's per-term table.")] = False,
    plot: PlotOption = None,
    profile: Annotated[
        bool,
        typer.Option(
            "--profile",
            help="Also run both training steps for real (see complexo profile lora).",
        ),
    ] = False,
    device: DeviceOption = None,
    full_depth: Annotated[
        bool,
        typer.Option(
            "--full-depth",
            help="Measure every layer; by default a model is measured on its 2- and 3-layer "
            "copies and extrapolated (its middle layers are identical), so depth costs nothing.",
        ),
    ] = False,
) -> None:
    from complexo.analyses import lora as analysis

    cfg = analysis.Config(
        model=model,
        in_features=in_features,
        out_features=out_features,
        arch=arch,
        layers=layers,
        dim=dim,
        heads=heads,
        vocab=vocab,
        ctx=ctx,
        mlp=mlp,
        rank=rank,
        alpha=alpha,
        targets=_targets(targets),
        optimizer=optimizer.value,
        precision=precision.value,
        batch=batch,
        seq=seq,
        full_depth=full_depth,
    )
    result = analysis.analyse(cfg)
    if plot:
        from complexo import plot as plots

        fig, (left, right) = plots.figure(2, width=6.0)
        plots.draw_lora(left, right, result)
        fig.suptitle(f"LoRA vs full fine-tuning: {cfg.model or 'one layer'}, r = {cfg.rank}")
        plots.save(fig, plot, plots.footer(f"{cfg.precision}, {cfg.optimizer}"))
    from complexo.render import render_comparison

    prof = _profile("lora", cfg, device) if profile else None
    _emit_with_profile(
        result, prof, as_json, render_comparison(result, formulas=not brief, terms=terms)
    )


ResOption = Annotated[int, typer.Option("--res", help="Image side R (H = W = R).")]
BatchOption = Annotated[int, typer.Option(help="Batch size B.")]
DTypeOption = Annotated[DType, typer.Option(help="Element type; bytes per element e.")]


@app.command(
    short_help="A ResNet alone: FLOPs per stage, parameters, activations at a resolution.",
    help="A ResNet (resnet18, 34, 50, 101, 152, built as torchvision builds them): forward FLOPs "
    "per stage and per element-wise op, parameters, training activations, at image side R; "
    "checked against fvcore, FlopCounterMode and autograd's saved tensors on the meta device.",
)
def cnn(
    model: Annotated[
        str, typer.Option(help="resnet18, resnet34, resnet50, resnet101, resnet152.")
    ] = "resnet50",
    res: ResOption = 224,
    batch: BatchOption = 1,
    dtype: DTypeOption = DType.fp32,
    profile: ProfileFlag = False,
    device: DeviceOption = None,
    as_json: JsonFlag = False,
    brief: BriefFlag = False,
) -> None:
    from complexo.analyses import cnn as analysis

    cfg = analysis.Config(model, res, batch, dtype.value)
    _emit_profiled(analysis.analyse(cfg), cfg, "cnn", profile, device, as_json, brief)


@app.command(
    short_help="A Vision Transformer alone: FLOPs per term, parameters, activations.",
    help="A ViT (vit-ti/s/b/l/h with patch 16, 14 or 32, e.g. vit-b16; deit-ti16/s16/b16), built "
    "as torchvision builds it: forward FLOPs per term (patch embedding, projections, attention, "
    "MLP, head, element-wise), parameters, training activations at image side R, checked "
    "against fvcore, FlopCounterMode and autograd's saved tensors on the meta device.",
)
def vit(
    model: Annotated[
        str, typer.Option(help="vit-b16, vit-l32, vit-h14, deit-s16, ...")
    ] = "vit-b16",
    res: ResOption = 224,
    batch: BatchOption = 1,
    dtype: DTypeOption = DType.fp32,
    profile: ProfileFlag = False,
    device: DeviceOption = None,
    as_json: JsonFlag = False,
    brief: BriefFlag = False,
) -> None:
    from complexo.analyses import vit as analysis

    cfg = analysis.Config(model, res, batch, dtype.value)
    _emit_profiled(analysis.analyse(cfg), cfg, "vit", profile, device, as_json, brief)


@app.command(
    short_help="CNN vs ViT: FLOPs, parameters, activations, and how each scales with R.",
    help="complexo compare cnn vit [--res 224 384 ...]: a ResNet beside a ViT at each "
    "resolution, a table by resolution, big-O in R, and the resolutions where the ViT's "
    "attention overtakes its projections and where the ViT's FLOPs cross the CNN's.",
)
def compare(
    kinds: Annotated[
        list[str], typer.Argument(help="cnn vit (resolutions may follow --res, space-separated)")
    ],
    res: Annotated[
        list[int] | None, typer.Option("--res", help="Image side R; several allowed.")
    ] = None,
    cnn: Annotated[str, typer.Option("--cnn", help="The CNN preset.")] = "resnet50",
    vit: Annotated[str, typer.Option("--vit", help="The ViT preset.")] = "vit-b16",
    batch: BatchOption = 1,
    dtype: DTypeOption = DType.fp32,
    as_json: JsonFlag = False,
    plot: PlotOption = None,
    profile: Annotated[
        bool,
        typer.Option("--profile", help="Also time both models' inference at every resolution."),
    ] = False,
    device: DeviceOption = None,
    save: Annotated[
        bool, typer.Option("--save", help="With --profile: record the runs under profiles/.")
    ] = False,
) -> None:
    from complexo.analyses import compare as analysis

    words = [k for k in kinds if not k.isdigit()]
    # `--res 224 384 512` leaves 384 and 512 to the positional words: they are resolutions
    resolutions = [*(res or []), *(int(k) for k in kinds if k.isdigit())] or [224]
    for word in words:
        check_choice("kind", word, analysis.KINDS)
    if sorted(words) != sorted(analysis.KINDS):
        raise ComplexoError(
            f"compare takes the kinds to compare: 'cnn vit' (got {' '.join(words) or 'none'})"
        )
    cfg = analysis.Config(cnn, vit, tuple(resolutions), batch, dtype.value)
    result = analysis.analyse(cfg)
    if plot:
        from complexo import plot as plots

        fig, (left, right) = plots.figure(2, width=6.5)
        plots.draw_compare(left, right, result)
        plots.save(fig, plot, plots.footer(f"{dtype.value}, batch {batch}"))
    from complexo.render import render_compare

    prof = None
    if profile:
        from complexo import profile as profiling

        prof = profiling.profile_compare(cfg, device=device)
        if save:
            prof.notes.append(f"saved to {', '.join(map(str, prof.save()))}")
    elif save:
        raise ComplexoError("--save records profiles: add --profile")
    _emit_with_profile(result, prof, as_json, render_compare(result))


class CacheDType(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"
    int8 = "int8"


@app.command(
    short_help="KV-cache decoding: cache bytes, decode FLOPs with and without it, what fits.",
    help="The KV cache of a decoder-only model (--model PRESET, default llama-7b, or --arch with "
    "--layers, --dim, --heads; --kv-heads for grouped-query attention): bytes per token and in "
    "total, decode FLOPs per token with the cache and recomputing the prefix without it, prefill "
    "against decode arithmetic intensity, and the largest context or batch that fits a device.",
)
def kvcache(
    model: Annotated[str | None, typer.Option(help="Preset (default llama-7b).")] = None,
    arch: Annotated[str | None, typer.Option(help="gpt2 or llama, for a raw model.")] = None,
    layers: Annotated[int | None, typer.Option(help="Layers L.")] = None,
    dim: Annotated[int | None, typer.Option(help="Width d.")] = None,
    heads: Annotated[int | None, typer.Option(help="Query heads h.")] = None,
    kv_heads: Annotated[
        int | None, typer.Option("--kv-heads", help="Key/value heads G (1: multi-query).")
    ] = None,
    vocab: Annotated[int | None, typer.Option(help="Vocabulary V.")] = None,
    ctx: Annotated[int | None, typer.Option(help="The model's context (positions).")] = None,
    mlp: Annotated[int | None, typer.Option(help="MLP width f.")] = None,
    context: Annotated[
        int | None, typer.Option(help="Tokens in the cache n (default: the model's context).")
    ] = None,
    batch: Annotated[int, typer.Option(help="Sequences decoded together B.")] = 1,
    dtype: Annotated[CacheDType, typer.Option(help="Cache (and weight) element type.")] = (
        CacheDType.bf16
    ),
    device: Annotated[
        str | None, typer.Option(help="h100-sxm, h100-pcie, h200, a100-80gb, a100-40gb, l40s, l4.")
    ] = None,
    device_memory: Annotated[
        float | None, typer.Option("--device-memory", help="Device memory in GB (10^9 bytes).")
    ] = None,
    as_json: JsonFlag = False,
    brief: BriefFlag = False,
    profile: Annotated[
        bool,
        typer.Option(
            "--profile",
            help="Also decode for real on this machine (cuda if present; complexo profile "
            "kvcache --device picks).",
        ),
    ] = False,
) -> None:
    from complexo.analyses import kvcache as analysis

    cfg = analysis.Config(
        model=model,
        arch=arch,
        layers=layers,
        dim=dim,
        heads=heads,
        kv_heads=kv_heads,
        vocab=vocab,
        ctx=ctx,
        mlp=mlp,
        context=context,
        batch=batch,
        dtype=dtype.value,
        device=device,
        device_memory=device_memory,
    )
    _emit_profiled(analysis.analyse(cfg), cfg, "kvcache", profile, None, as_json, brief)


PlotOption = Annotated[
    str | None, typer.Option("--plot", help="Also draw the figure to PATH (.png or .svg).")
]


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    short_help="Sweep an analysis over one option (or a grid of two); table, JSON, CSV, plot.",
    help="complexo sweep ANALYSIS --vary NAME=START..STOP [--log2 | --step S | --points K] "
    "[the analysis's own options, fixed]: e.g. complexo sweep mhsa --vary seq=256..65536 "
    "--log2 --dim 1024. Every point is a full analysis (formulas and counters).",
)
def sweep(
    ctx: typer.Context,
    analysis: Annotated[str, typer.Argument(help="mhsa, cnn or vit.")],
    vary: Annotated[list[str], typer.Option("--vary", help="NAME=START..STOP; twice for a grid.")],
    points: Annotated[int | None, typer.Option(help="K evenly spaced values.")] = None,
    step: Annotated[int | None, typer.Option(help="Values START, START+S, ...")] = None,
    log2: Annotated[bool, typer.Option("--log2", help="Double from START to STOP.")] = False,
    quantity: Annotated[
        str | None,
        typer.Option(
            help="What the plot and a grid show (default: forward_flops, or the analysis's "
            "first FLOPs quantity)."
        ),
    ] = None,
    variant: Annotated[
        list[str] | None,
        typer.Option(
            "--variant",
            help='Options of one line, e.g. --variant "" --variant "--causal" --variant '
            '"--window 512": the sweep under each, one figure.',
        ),
    ] = None,
    profile: Annotated[
        bool, typer.Option("--profile", help="Also time every point (mhsa, cnn, vit, kvcache).")
    ] = False,
    device: Annotated[str | None, typer.Option(help="With --profile: cuda or cpu.")] = None,
    as_json: JsonFlag = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV, one row per point.")] = False,
    plot: PlotOption = None,
) -> None:
    from complexo import sweep as sweeps
    from complexo.analyses import ANALYSES

    check_choice("analysis", analysis, [a for a in ANALYSES if a != "lora"])
    if plot:
        from complexo.plot import check_path

        check_path(plot)
    module = ANALYSES[analysis]
    fixed = sweeps.config_options(module.Config, ctx.args)
    varies = [sweeps.parse_vary(v, points=points, step=step, log2=log2) for v in vary]
    total = 1
    for v in varies:
        total *= len(v.values)
    from rich.progress import Progress

    from complexo.render import console

    if quantity is None:
        flops = [q.name for q in module.QUANTITIES if q.unit_kind.unit == "flop"]
        quantity = "forward_flops" if "forward_flops" in flops else flops[0]
    with Progress(console=console(stderr=True), transient=True, disable=total < 4) as bar:
        task = bar.add_task(f"sweeping {analysis}", total=total * len(variant or [1]))

        def progress(i: int, n: int) -> None:
            bar.update(task, completed=i)

        if variant:
            lines = sweeps.run_variants(module, fixed, varies, variant, quantity, progress)
            _emit_variants(lines, as_json, as_csv, plot)
            return
        result = sweeps.run(module, fixed, varies, progress)
        if profile:
            if len(varies) != 1:
                raise ComplexoError("--profile draws time against one varied option")
            bar.update(task, description=f"running {analysis} for real", completed=0)
            sweeps.profile_points(result, device=device, progress=progress)
    names = {q.name for q in result.points[0].result.quantities}
    if quantity not in names:
        check_choice("--quantity", quantity, sorted(names))
    if plot:
        from complexo import plot as plots

        if profile:
            fig, (ax, right) = plots.figure(2, width=8.5)
            plots.draw_times(right, result)
        else:
            fig, (ax,) = plots.figure(width=10.5)
        plots.draw_sweep(ax, result, quantity)
        plots.save(fig, plot, plots.footer(_fixed_text(result.points[0].result.config)))
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
    elif as_csv:
        sys.stdout.write(result.to_csv())
    else:
        from complexo.render import render_sweep

        console().print(render_sweep(result, quantity))


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    short_help="Run a block for real: time, kernels, memory, against formulas and roofline.",
    help="complexo profile mhsa|lora|cnn|vit|kvcache [its options]: warm-up, then timed runs (CUDA "
    "events, or the host clock on CPU), a torch.profiler trace grouped by the formula's terms, "
    "peak memory against the memory formula, achieved FLOP/s and the roofline prediction per "
    "term.",
)
def profile(
    ctx: typer.Context,
    analysis: Annotated[str, typer.Argument(help="mhsa, lora, cnn, vit or kvcache.")],
    device: Annotated[
        str | None, typer.Option(help="cuda or cpu (default: cuda if present).")
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            help="forward, or train (forward, backward, optimizer step); default: forward, "
            "train for lora."
        ),
    ] = None,
    warmup: Annotated[int, typer.Option(help="Untimed runs first.")] = 3,
    repeat: Annotated[int, typer.Option(help="Timed runs.")] = 10,
    trace: Annotated[
        str | None, typer.Option(help="Write the Chrome/Perfetto trace to PATH.")
    ] = None,
    save: Annotated[
        bool, typer.Option("--save", help="Record it under profiles/<device>/.")
    ] = False,
    cuda_graph: Annotated[
        bool,
        typer.Option(
            "--cuda-graph",
            help="Time replays of a captured CUDA graph: no launch overhead (small shapes; "
            "mhsa, cnn, vit in forward mode).",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    from complexo import profile as profiling
    from complexo import sweep as sweeps
    from complexo.analyses import ANALYSES

    check_choice("analysis to profile", analysis, profiling.PROFILED)
    config = ANALYSES[analysis].Config
    prof = profiling.run(
        analysis,
        config(**sweeps.config_options(config, ctx.args)),
        device=device,
        mode=mode,
        warmup=warmup,
        repeat=repeat,
        trace=trace,
        cuda_graph=cuda_graph,
    )
    if save:
        prof.notes.append(f"saved to {', '.join(map(str, prof.save()))}")
    _emit_profile(prof, as_json)


def _emit_profile(prof, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(prof.to_json(), indent=2) + "\n")
        return
    from complexo.render import console, render_profile

    console().print(render_profile(prof))


@app.command(
    short_help="Measure this device's ceilings (matmul FLOP/s per dtype, copy bandwidth).",
    help="A large matrix product per dtype and a large device-to-device copy, timed; saved "
    "under profiles/<device>/calibration.json for the roofline of later runs.",
)
def calibrate(
    device: Annotated[
        str | None, typer.Option(help="cuda or cpu (default: cuda if present).")
    ] = None,
    size: Annotated[
        int | None, typer.Option(help="Matrix side (default 8192 GPU, 1024 CPU).")
    ] = None,
) -> None:
    from complexo import profile as profiling
    from complexo.render import human

    doc = profiling.calibrate(device, size=size)

    def peak(dtype: str) -> str:
        by = {kernel: rates[dtype] for kernel, rates in doc["measured"].items()}
        best = max(by, key=by.get)
        others = ", ".join(f"{k} {human(v, 'flop')}/s" for k, v in by.items() if k != best)
        return f"{dtype} {human(by[best], 'flop')}/s ({best}; {others})"

    peaks = ", ".join(peak(dtype) for dtype in doc["peak"])
    path = profiling.calibration_path(doc["device"])
    typer.echo(f"{doc['device']}: {peaks}; copy {human(doc['bandwidth'], 'byte')}/s")
    typer.echo(f"saved to {path}")


@app.command(
    "profiles",
    short_help="List the profiles recorded under profiles/, or show one.",
    help="Every recorded profile: device, date, analysis, config and median time; with a "
    "PATH (or its number in the list), that profile's full tables, as when it was run.",
)
def list_profiles(
    show: Annotated[
        str | None, typer.Argument(help="A profile to show: its path, or its number.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    from complexo import profile as profiling
    from complexo.render import duration

    docs = profiling.recorded()
    if show is not None:
        by_number = {str(i): d for i, d in enumerate(docs, 1)}
        by_path = {d["path"]: d for d in docs}
        doc = by_number.get(show) or by_path.get(show)
        if doc is None:
            raise ComplexoError(
                f"no recorded profile '{show}': give a number from 1 to {len(docs)} or a path "
                "that complexo profiles lists"
            )
        _emit_profile(profiling.Profile.from_json(doc), as_json)
        return
    if not docs:
        typer.echo("no profiles recorded yet (complexo profile ... --save writes them)")
        return
    for i, doc in enumerate(docs, 1):
        typer.echo(
            f"{i:>3}  {doc['date']}  {doc['device_name']}  {doc['analysis']} {doc['mode']} "
            f"{profiling.shown_config(doc, ' ')}  median {duration(doc['median_s'])}  "
            f"{doc['path']}"
        )


@app.command(
    short_help="Write the analyses/ pages (or --check that they are up to date).",
    help="complexo report [TOPIC...]: writes analyses/<topic>.md and its figures for mhsa, lora "
    "and cnn-vs-vit, generated from the analyses; --check fails when a committed page differs "
    "from what complexo generates now.",
)
def report(
    topics: Annotated[
        list[str] | None, typer.Argument(help="mhsa, lora, cnn-vs-vit (all).")
    ] = None,
    check: Annotated[bool, typer.Option("--check", help="Compare instead of writing.")] = False,
) -> None:
    from complexo import report as reports

    chosen = topics or list(reports.TOPICS)
    for topic in chosen:
        check_choice("topic", topic, reports.TOPICS)
    if check:
        stale = reports.check(chosen)
        if stale:
            raise ComplexoError(
                f"analyses/ is stale: {', '.join(stale)} differ from what complexo generates now; "
                "run complexo report (make report) and commit"
            )
        typer.echo(f"analyses/ up to date ({', '.join(chosen)})")
        return
    for path in reports.generate(chosen):
        typer.echo(f"wrote {path}")


def _emit_variants(lines, as_json: bool, as_csv: bool, plot: str | None) -> None:

    first = next(iter(lines.sweeps.values())).points[0].result
    check_choice("--quantity", lines.quantity, sorted(q.name for q in first.quantities))
    if plot:
        from complexo import plot as plots

        fig, (ax,) = plots.figure(width=8.5)
        plots.draw_variants(ax, lines)
        plots.save(fig, plot, plots.footer(_fixed_text(first.config)))
    if as_json:
        sys.stdout.write(json.dumps(lines.to_json(), indent=2) + "\n")
    elif as_csv:
        sys.stdout.write(lines.to_csv())
    else:
        from complexo.render import console, render_variants

        console().print(render_variants(lines))


def _fixed_text(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items() if k in ("dtype", "precision"))


def main() -> None:
    app()
