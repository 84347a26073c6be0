"""A standard k×k convolution against its depthwise-separable factorisation (MobileNet): what each
costs, and why separable is 1/C_out + 1/k² of the FLOPs and weights but not of the bytes.

Symbols: B batch, C_in and C_out channels, R image side (H = W = R), T frames (with --frames),
k kernel side (odd), s stride, e bytes per element. S = ⌈R/s⌉ is the output side: with padding
k//2 = (k − 1)/2 it is ⌊(R + 2·(k − 1)/2 − k)/s⌋ + 1 = ⌊(R − 1)/s⌋ + 1 = ⌈R/s⌉, exact for
every R and s (tested).
Reference: :mod:`complexo.blocks.conv`. Cost model: :mod:`complexo.analyses.conv_cost`.

--frames T makes every convolution 3D, k×k×k over T×R×R (T' = ⌈T/s⌉ frames out; MobileNet's
ratio becomes 1/C_out + 1/k³); --causal pads k − 1 frames in front only, so the output is the
same size and the FLOPs unchanged, but the block pads a copy, (T + k − 1)·(R + k − 1)² per
channel, which the first convolution keeps for dW instead of x. --impl unfold computes the
standard convolution as F.unfold + one matrix product (im2col): the same FLOPs, plus one add per
column element in the backward (col2im), and the (B, C_in·k², S²) columns materialised.

Standard: one k×k convolution, 2·B·C_out·S²·C_in·k² FLOPs. Separable: a k×k depthwise
convolution (groups = C_in; the stride sits here), 2·B·C_in·S²·k², then a 1×1 pointwise one,
2·B·C_in·C_out·S². Formulas: :func:`complexo.analyses.vision.conv`. A bias adds 1 FLOP per output
element forward and 1 backward (its gradient sums dY over B, S, S); the counters skip both.
Backward: dX and dW of every convolution, each of the forward's size (the block's input needs its
gradient: see :mod:`complexo.conventions`). Saved for backward: each convolution's input, so the
separable block keeps its depthwise output besides x. Bytes moved, fewest (inference): each
convolution reads its input, weights and bias once and writes its output once.

>>> cmp = analyse(Config(cin=32, cout=64, kernel=3, res=112))
>>> [cmp.sides[side].quantity("forward_matmul_flops").value for side in SIDES]
[462422016, 58605568]
>>> cmp.mobilenet_ratio == 1 / C_out + 1 / k**2
True
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import sympy

from complexo.analyses import conv_peak
from complexo.analyses.conv_cost import (
    IMPLS,
    MOBILENET,
    QUANTITIES,
    SIDES,
    UNFOLD,
    UNFOLDED,
    cost_model,
    mobilenet,
    mobilenet_ratio,
    out_side,
)
from complexo.analyses.conv_profile import PROFILING
from complexo.analyses.conv_proof import SYMBOLIC
from complexo.conventions import DTYPES, torch_dtype
from complexo.cost import CostModel, Crossover, Kind, crossover, evaluate, plain
from complexo.errors import ComplexoError
from complexo.registry import Analysis, check_options, option, register
from complexo.result import Comparison, Result, build_quantity, ratio_key, summarise
from complexo.symbols import B, C_in, C_out, R, T, e, k, s

NAME = "conv"
COUTS = (1, 4, 16, 64, 256, 1024)  # the sweep's output channels


@dataclass(frozen=True)
class Config:
    cin: int = option(32, "Input channels C_in.", min=1)
    cout: int = option(64, "Output channels C_out.", min=1)
    kernel: int = option(3, "Kernel side k, odd: padding k//2 keeps it centred.", min=1)
    res: int = option(112, "Image side R (H = W = R).", min=1)
    stride: int = option(
        1, "Stride s; the output side is ⌈R/s⌉ (separable: on the depthwise conv).", min=1
    )
    batch: int = option(1, "Batch size B.", min=1)
    dtype: str = option("fp32", "Element type; bytes per element e.", choices=(*DTYPES,))
    bias: bool = option(
        True, "A bias on every convolution (--no-bias: none, as before a BatchNorm)."
    )
    frames: int | None = option(
        None, "Frames T: every convolution 3D, k×k×k over T×R×R (default: 2D images).", min=1
    )
    causal: bool = option(
        False,
        "With --frames: pad k − 1 frames in front and none behind (spatially k//2 as in 2D), "
        "as video VAEs' causal 3D downsamplers do.",
    )
    impl: str = option(
        "direct",
        "direct: one convolution op; unfold: the standard side as F.unfold + a matrix product "
        "(im2col, 2D), materialising the (B, C_in·k², S²) columns.",
        choices=IMPLS,
    )

    def __post_init__(self):
        check_options(self)
        # With an odd k the output side is ⌈R/s⌉ ≥ 1 for every R ≥ 1 and s ≥ 1: no config of
        # positive sizes has an empty output, so the kernel's parity is the one check left.
        if self.kernel % 2 == 0:
            raise ComplexoError(
                f"--kernel {self.kernel} must be odd: padding k//2 centres an odd kernel only "
                f"(output side ⌈R/s⌉); try {self.kernel - 1} or {self.kernel + 1}"
            )
        if self.causal and self.frames is None:
            raise ComplexoError("--causal pads frames: give --frames T (a 3D convolution)")
        if self.impl == "unfold" and self.frames is not None:
            raise ComplexoError(
                "--impl unfold is 2D (F.unfold takes (B, C, H, W) input): drop --frames"
            )

    @property
    def dims(self) -> int:
        return 2 if self.frames is None else 3

    @property
    def values(self) -> dict:
        return {
            B: self.batch,
            C_in: self.cin,
            C_out: self.cout,
            k: self.kernel,
            R: self.res,
            s: self.stride,
            e: DTYPES[self.dtype].bytes,
            **({T: self.frames} if self.frames is not None else {}),
        }

    def model(self, side: str) -> CostModel:
        return cost_model(side, self.bias, self.dims, self.causal, self.impl)


def build(cfg: Config, side: str, device: str | None = "meta"):
    """The reference block of one side in ``cfg.dtype`` and a (B, C_in, [T,] R, R) input that
    needs its gradient, on ``device``; None: in the current mode (a FakeTensorMode:
    :func:`complexo.peak.in_dtype`)."""
    import torch

    from complexo.blocks.conv import DepthwiseSeparableConv, StandardConv, UnfoldConv
    from complexo.peak import in_dtype

    dtype = torch_dtype(cfg.dtype)
    args = (cfg.cin, cfg.cout, cfg.kernel, cfg.stride, cfg.bias)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        if side == "standard" and cfg.impl == "unfold":
            module = UnfoldConv(*args)
        else:
            block = StandardConv if side == "standard" else DepthwiseSeparableConv
            module = block(*args, dims=cfg.dims, causal=cfg.causal)
        frames = () if cfg.frames is None else (cfg.frames,)
        shape = (cfg.batch, cfg.cin, *frames, cfg.res, cfg.res)
        x = torch.randn(*shape, dtype=dtype, requires_grad=True)
    return in_dtype(module, dtype, device), x


TRAFFIC = {"Conv2d": "convolutions", "Conv3d": "convolutions", "UnfoldConv": "convolutions"}


def measure(cfg: Config, side: str) -> dict:
    """Every reading of one side, by quantity and counter: FlopCounterMode and autograd's saved
    tensors from one forward and backward on meta tensors, fvcore's count of the forward (2D and
    3D), the module's parameters, and the bytes each
    convolution call reads and writes (forward hooks; an unfolded one also writes and reads
    back the columns im2col made, read off that op's output)."""
    from complexo.measure import (
        GROUPED_CONV_FORMULAS,
        count_fvcore,
        measure_torch,
        module_traffic,
        step_readings,
    )

    module, x = build(cfg, side)
    run = measure_torch(
        lambda: module(x),
        list(module.parameters()),
        attention="math",
        custom_mapping=GROUPED_CONV_FORMULAS,
    )
    unfolded = sum(b for op, _, b in run.outputs if op == UNFOLD[1])
    traffic = module_traffic(module, (x.detach(),), TRAFFIC)["convolutions"] + 2 * unfolded
    return {
        **step_readings(module, run, count_fvcore(module, (x.detach(),))),
        "forward_moved_bytes": {"fvcore": None, "torch": traffic},
        "unfolded_bytes": {"fvcore": None, "torch": unfolded},
    }


def _side(cfg: Config, side: str) -> Result:
    from complexo.conventions import CONV_NOTE, GROUPED_CONV_NOTE
    from complexo.counting import counted

    model, values = cfg.model(side), cfg.values
    readings = counted(lambda: measure(cfg, side), {})
    specs = (*QUANTITIES, UNFOLDED) if cfg.impl == "unfold" else QUANTITIES
    quantities = [build_quantity(q, model, values, readings.get(q.name, {})) for q in specs]
    crossovers: list[Crossover] = []
    notes = [CONV_NOTE]
    if side == "separable":
        notes.append(GROUPED_CONV_NOTE)
        crossovers.append(
            model.crossover(
                ["pointwise"],
                ["depthwise"],
                C_out,
                values=values,
                label="the pointwise conv's FLOPs reach the depthwise conv's",
            )
        )
    if cfg.bias:
        notes.append(
            "biases: 1 FLOP per output element forward and 1 for their gradient (Σ dY); the "
            "counters count convolutions only, so their gap is exactly these terms."
        )
    if side == "standard" and cfg.impl == "unfold":
        notes.append(
            "im2col: the product's operands are the columns (B·S², C_in·k²) and the weight "
            "(C_in·k², C_out); the backward folds dcols back into dX (col2im: 1 add per column "
            "element, which no counter counts). F.linear on the transposed columns copies them "
            "once more (aten.clone) before the product; that copy is what autograd keeps."
        )
    peak, peak_note = conv_peak.quantity(cfg, side)  # the training step's high-water mark
    quantities.append(peak)
    notes.append(peak_note)
    growing = (B, C_in, C_out, R, k) + ((T,) if cfg.dims == 3 else ())
    summary = summarise(model, values, growing, {}, crossovers)
    S = evaluate(out_side(), values)
    channels = cfg.cin if side == "standard" else f"{cfg.cin} → {cfg.cin}"
    time = "" if cfg.frames is None else f"{cfg.frames}×"
    time_out = "" if cfg.frames is None else f"{evaluate(out_side(T), values)}×"
    facts = {
        "shapes": f"({cfg.batch}, {channels} → {cfg.cout}, {time}{cfg.res}² → {time_out}{S}²); "
        f"S = ⌈R/s⌉ = ⌈{cfg.res}/{cfg.stride}⌉ = {S}"
        + ("" if cfg.frames is None else f", T' = ⌈T/s⌉ = ⌈{cfg.frames}/{cfg.stride}⌉")
    }
    if cfg.causal:
        facts["causal"] = (
            f"F.pad: {cfg.kernel - 1} zero frames in front, none behind; {cfg.kernel // 2} "
            "each side in space"
        )
    return Result(NAME, asdict(cfg), values, model, quantities, summary, notes, facts)


@dataclass
class ConvComparison(Comparison):
    """The comparison, with MobileNet's ratio as sympy derived it."""

    mobilenet_ratio: sympy.Expr = MOBILENET

    def to_json(self) -> dict:
        values = next(iter(self.sides.values())).values
        return {
            **super().to_json(),
            "mobilenet_ratio": {
                "formula": str(self.mobilenet_ratio),
                "factored": str(sympy.factor(self.mobilenet_ratio)),
                "value": float(self.mobilenet_ratio.subs(values)),
                "of": ["forward_matmul_flops", "backward_matmul_flops", "weights"],
            },
        }


def analyse(cfg: Config) -> ConvComparison:
    sides = {side: _side(cfg, side) for side in SIDES}
    standard, separable = (sides[side].model for side in SIDES)
    ratio, expected = mobilenet_ratio(cfg.dims), mobilenet(cfg.dims)
    # MobileNet's ratio, from the pure formulas and from the cost models' totals: the
    # convolutions forward and backward, and the weights.
    derived = [ratio]
    for kind, tag, mm in (
        (Kind.FORWARD, "", True),
        (Kind.BACKWARD, "", True),
        (Kind.PARAMS, "weights", False),
    ):
        a, b = (side.total(kind, matmul_only=mm, tag=tag) for side in (separable, standard))
        derived.append(sympy.simplify(a / b))
    for of in derived:
        if sympy.simplify(of - expected) != 0:
            raise AssertionError(f"separable/standard is {of}, not {expected}")
    return ConvComparison(
        NAME,
        asdict(cfg),
        sides,
        sweep=_cout_sweep(cfg, sides),
        crossovers=tuple(_crossovers(standard, separable, cfg.values)),
        notes=_notes(cfg, sides, ratio),
        mobilenet_ratio=ratio,
    )


def _crossovers(standard: CostModel, separable: CostModel, values: dict) -> list[Crossover]:
    """Where the two sides cost the same: in C_out for FLOPs and parameters (separable is
    cheaper above), in B for bytes moved (separable moves more above)."""
    found = []
    for kind, symbol, label in (
        (Kind.FORWARD, C_out, "separable's forward FLOPs reach standard's (cheaper above)"),
        (Kind.PARAMS, C_out, "separable's parameters reach standard's (fewer above)"),
        (Kind.MEMORY, B, "separable moves as many bytes as standard (more above)"),
    ):
        # no positive crossing where one side always costs more: FLOPs and parameters at
        # k = 1, bytes while C_out·(k² − 1) is at most k² (+ 1 with biases)
        with contextlib.suppress(ValueError):
            tag = "moved" if kind == Kind.MEMORY else ""
            a, b = separable.total(kind, tag=tag), standard.total(kind, tag=tag)
            found.append(crossover(a, b, symbol, values=values, label=label))
    return found


def _notes(cfg: Config, sides: dict[str, Result], ratio: sympy.Expr) -> list[str]:
    values = cfg.values
    std, sep = (sides[side] for side in SIDES)

    def q(side: Result, name: str) -> int:
        return side.quantity(name).value

    r = ratio.subs(values)
    notes = [
        f"MobileNet's ratio: separable/standard = {plain(sympy.factor(ratio))} = "
        f"{plain(mobilenet(cfg.dims), factor=False)} "
        f"(sympy simplifies the two formulas' quotient: S, B and C_in cancel) for the "
        f"convolutions' FLOPs, forward and backward, and their weights; here 1/{cfg.cout} + "
        f"1/{cfg.kernel}{'²' if cfg.dims == 2 else '³'} = {float(r):.4g}"
        + (f", {float(1 / r):.3g}× fewer." if r < 1 else "."),
    ]
    dw = evaluate(sep.model.term(Kind.FORWARD, "depthwise").expr, values)
    pw = evaluate(sep.model.term(Kind.FORWARD, "pointwise").expr, values)
    notes.append(
        f"separable's convolution FLOPs: pointwise C_out/(C_out + k²) = {pw / (dw + pw):.1%}, "
        f"depthwise k²/(C_out + k²) = {dw / (dw + pw):.1%}: the 1×1 conv dominates once "
        "C_out > k²."
    )
    if cfg.kernel == 1:
        notes.append(
            "k = 1: the depthwise conv is a per-channel scale in front of the same 1×1 conv; "
            "separable costs more than standard at every size."
        )
    saved = q(sep, "activation_bytes") / q(std, "activation_bytes")
    if cfg.impl == "direct":
        notes.append(
            f"separable saves more for backward, not less: its depthwise output besides the "
            f"input x (1 + S²/R² times standard's in 2D), here {saved:.3g}×."
        )
    notes += _variant_notes(cfg, std)
    intensity = [q(side, "forward_flops") / q(side, "forward_moved_bytes") for side in (std, sep)]
    work = q(sep, "forward_flops") / q(std, "forward_flops")
    moved = q(sep, "forward_moved_bytes") / q(std, "forward_moved_bytes")
    notes.append(
        f"FLOPs per byte moved (forward): standard {intensity[0]:.3g}, separable "
        f"{intensity[1]:.3g}. Separable does {work:.3g}× the work on {moved:.3g}× the bytes: "
        "below a device's FLOPs-per-byte ridge a layer is bound by memory, so its time falls by "
        "less than its FLOPs. Separable moves fewer bytes only where standard's weights "
        "(C_out·C_in·k²) outweigh what it adds: its depthwise output, written and read back "
        "(2·B·C_in·S²), and its own weights; so at small images, few of them, many channels "
        "(the crossover in B)."
    )
    return notes


def _variant_notes(cfg: Config, std: Result) -> list[str]:
    """What --causal and --impl unfold cost, in numbers."""
    from complexo.units import human

    notes, values = [], cfg.values
    x = evaluate(B * C_in * R**2 * (T if cfg.frames else 1) * e, values)
    if cfg.causal:
        pad = evaluate(std.model.total(Kind.MEMORY, tag="padded"), values)
        notes.append(
            f"causal: the same output (⌈T/s⌉ frames) and FLOPs as centred padding, but F.pad "
            f"copies the input, B·C_in·(T + k − 1)·(R + k − 1)²·e = {human(pad, 'byte')} for x's "
            f"{human(x, 'byte')} ({pad / x:.3g}×), and the first convolution keeps that copy for "
            "dW; a convolution with built-in padding pads inside its kernel, but only "
            "symmetrically."
        )
    if cfg.impl == "unfold":
        cols = std.quantity("unfolded_bytes").value
        notes.append(
            f"unfold: the columns hold B·C_in·k²·S² elements, {human(cols, 'byte')}, "
            f"k²·S²/R² = {cols / x:.3g}× the input ({human(x, 'byte')}); the product keeps "
            "them for dW instead of x, and a forward writes and reads them back "
            f"({human(2 * cols, 'byte')} more traffic than a direct convolution)."
        )
    return notes


def _cout_sweep(cfg: Config, sides: dict[str, Result]) -> list[dict]:
    """Separable's FLOPs, parameters and bytes against C_out, each with its ratio to standard."""
    std, sep = (sides[side] for side in SIDES)
    names = ("forward_flops", "params", "forward_moved_bytes")
    rows = []
    for cout in sorted({*COUTS, cfg.cout}):
        at = {**cfg.values, C_out: cout}
        row: dict = {"cout": cout}
        for name in names:
            value = evaluate(sep.quantity(name).expr, at)
            row[name] = value
            row[ratio_key(name)] = value / evaluate(std.quantity(name).expr, at)
        rows.append(row)
    return rows


def examples():
    """Tiny convolutions: odd kernels, odd and even sides, strides past the side; 2D direct or
    unfolded, 3D centred or causal."""
    from hypothesis import strategies as st

    @st.composite
    def configs(draw):
        frames = draw(st.sampled_from([None, None, 1, 2, 4]))
        return Config(
            cin=draw(st.integers(1, 4)),
            cout=draw(st.integers(1, 4)),
            kernel=draw(st.sampled_from([1, 3, 5])),
            res=draw(st.integers(1, 12 if frames is None else 6)),
            stride=draw(st.integers(1, 3)),
            batch=draw(st.integers(1, 2)),
            dtype=draw(st.sampled_from(list(DTYPES))),
            bias=draw(st.booleans()),
            frames=frames,
            causal=frames is not None and draw(st.booleans()),
            impl="direct" if frames is not None else draw(st.sampled_from(IMPLS)),
        )

    return configs()


ANALYSIS = register(
    Analysis(
        name=NAME,
        title="A k×k convolution vs its depthwise-separable factorisation (MobileNet).",
        help="A standard k×k convolution against a depthwise k×k then pointwise 1×1 one (3D "
        "k×k×k over --frames, causal or centred in time; or the standard one as unfold + "
        "matmul): "
        "forward and backward FLOPs, parameters, activations saved for backward and bytes "
        "moved, MobileNet's ratio 1/C_out + 1/k² derived with sympy, and where the two cost "
        "the same; checked against fvcore, FlopCounterMode, autograd's saved tensors and the "
        "module calls, on the meta device.",
        config=Config,
        analyse=analyse,
        sides=SIDES,
        sweep=False,
        profiling=PROFILING,
        examples=examples,
        symbolic=SYMBOLIC,
    )
)
