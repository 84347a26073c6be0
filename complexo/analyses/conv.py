"""A standard k×k convolution against its depthwise-separable factorisation (MobileNet): what each
costs, and why separable is 1/C_out + 1/k² of the FLOPs and weights but not of the bytes.

Symbols: B batch, C_in and C_out channels, R image side (H = W = R), k kernel side (odd), s
stride, e bytes per element. S = ⌈R/s⌉ is the output side: with padding k//2 = (k − 1)/2 it is
⌊(R + 2·(k − 1)/2 − k)/s⌋ + 1 = ⌊(R − 1)/s⌋ + 1 = ⌈R/s⌉, exact for every R and s (tested).
Reference: :mod:`complexo.blocks.conv`.

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

from complexo.analyses.vision import CONV, CONV_BWD, conv, depthwise_separable
from complexo.conventions import DTYPES, ELEMENTWISE_FLOPS, torch_dtype
from complexo.cost import CostModel, Crossover, Kind, Terms, crossover, evaluate, plain
from complexo.errors import ComplexoError
from complexo.registry import Analysis, check_options, option, register
from complexo.result import Comparison, QuantitySpec, Result, build_quantity, ratio_key, summarise
from complexo.symbols import B, C_in, C_out, R, e, k, s

NAME = "conv"
SIDES = ("standard", "separable")
# MobileNet's ratio (Howard et al. 2017, eq. 5): separable / standard, FLOPs and weights.
MOBILENET = 1 / C_out + 1 / k**2
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

    def __post_init__(self):
        check_options(self)
        # With an odd k the output side is ⌈R/s⌉ ≥ 1 for every R ≥ 1 and s ≥ 1: no config of
        # positive sizes has an empty output, so the kernel's parity is the one check left.
        if self.kernel % 2 == 0:
            raise ComplexoError(
                f"--kernel {self.kernel} must be odd: padding k//2 centres an odd kernel only "
                f"(output side ⌈R/s⌉); try {self.kernel - 1} or {self.kernel + 1}"
            )

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
        }


def out_side():
    """The output side S of a k×k convolution with padding k//2 and stride s, k odd.

    >>> out_side()
    ceiling(R/s)
    """
    return sympy.ceiling(R / s)


def _convolution(t: Terms, name: str, c_in, c_out, kk, bias: bool, x_in, groups=1) -> None:
    """One convolution's terms; ``x_in`` is its input's size in elements."""
    S = out_side()
    flops, weights = conv(B, c_in, c_out, kk, S, groups=groups)  # 2·B·c_out·S²·(c_in/g)·k²
    y = B * c_out * S**2  # its output, (B, c_out, S, S)
    t.add(Kind.FORWARD, name, flops, mm=True, ops=CONV)
    t.add(Kind.BACKWARD, f"{name}.dx", flops, mm=True, ops=CONV_BWD, tags={"dx"}, note="dY ⋆ W")
    t.add(Kind.BACKWARD, f"{name}.dw", flops, mm=True, ops=CONV_BWD, tags={"dw"}, note="x ⋆ dY")
    t.add(Kind.PARAMS, name, weights, tags={"weights"})
    b = c_out if bias else 0
    if bias:
        t.add(Kind.FORWARD, f"{name}_bias", ELEMENTWISE_FLOPS * y, ops=CONV, note="+ b per output")
        t.add(
            Kind.BACKWARD,
            f"{name}.db",
            ELEMENTWISE_FLOPS * y,
            ops=CONV_BWD,
            tags={"db"},
            note="Σ dY over B, S, S",
        )
        t.add(Kind.PARAMS, f"{name}_bias", b, tags={"bias"})
    t.add(
        Kind.MEMORY,
        f"moved_{name}",
        (x_in + weights + b + y) * e,
        tags={"moved", "convolutions"},
        note="reads x, W, b; writes y" if bias else "reads x, W; writes y",
    )


def cost_model(side: str, bias: bool) -> CostModel:
    """The symbolic cost of one side: FLOPs forward and backward, parameters, saved activations,
    bytes moved."""
    t, S = Terms(), out_side()
    x = B * C_in * R**2  # the block's input, (B, C_in, R, R)
    t.add(Kind.ACTIVATION, "input", x * e, note="x, kept by the first convolution for dW")
    if side == "standard":
        _convolution(t, "conv", C_in, C_out, k, bias, x)
    else:
        _convolution(t, "depthwise", C_in, C_in, k, bias, x, groups=C_in)
        mid = B * C_in * S**2  # the depthwise output, (B, C_in, S, S)
        t.add(Kind.ACTIVATION, "depthwise_output", mid * e, note="kept by the pointwise conv")
        _convolution(t, "pointwise", C_in, C_out, 1, bias, mid)
    return t.model()


def mobilenet_ratio() -> sympy.Expr:
    """separable / standard for the convolutions' FLOPs and their weights, from the two pure
    formulas, simplified: the output side S cancels, and so do B and C_in.

    >>> mobilenet_ratio() == 1 / C_out + 1 / k**2, sympy.factor(mobilenet_ratio())
    (True, (C_out + k**2)/(C_out*k**2))
    """
    S = out_side()
    standard, separable = conv(B, C_in, C_out, k, S), depthwise_separable(B, C_in, C_out, k, S)
    flops = sympy.simplify(separable[0] / standard[0])
    weights = sympy.simplify(separable[1] / standard[1])
    if sympy.simplify(flops - weights) != 0:
        raise AssertionError(f"FLOPs ratio {flops} is not the weights' ratio {weights}")
    return flops


QUANTITIES = (
    QuantitySpec("forward_flops", "forward FLOPs", Kind.FORWARD),
    QuantitySpec("forward_matmul_flops", "  of which convolutions", Kind.FORWARD, matmul_only=True),
    QuantitySpec("backward_flops", "backward FLOPs (dX, dW, bias gradients)", Kind.BACKWARD),
    QuantitySpec(
        "backward_matmul_flops",
        "  of which convolutions (dX, dW)",
        Kind.BACKWARD,
        matmul_only=True,
    ),
    QuantitySpec("params", "parameters", Kind.PARAMS),
    QuantitySpec("activation_bytes", "activations saved for backward", Kind.ACTIVATION),
    QuantitySpec(
        "forward_moved_bytes", "bytes moved by a forward (fewest)", Kind.MEMORY, tag="moved"
    ),
)


def build(cfg: Config, side: str, device: str = "meta"):
    """The reference block of one side in ``cfg.dtype`` and a (B, C_in, R, R) input that needs
    its gradient, on ``device``."""
    import torch

    from complexo.blocks.conv import DepthwiseSeparableConv, StandardConv

    block = StandardConv if side == "standard" else DepthwiseSeparableConv
    dtype = torch_dtype(cfg.dtype)
    with torch.device(device):
        module = block(cfg.cin, cfg.cout, cfg.kernel, cfg.stride, cfg.bias).to(dtype)
        x = torch.randn(cfg.batch, cfg.cin, cfg.res, cfg.res, dtype=dtype, requires_grad=True)
    return module, x


def measure(cfg: Config, side: str) -> dict:
    """Every reading of one side, by quantity and counter: FlopCounterMode and autograd's saved
    tensors from one forward and backward on meta tensors, fvcore's count of the forward, the
    module's parameters, and the bytes each Conv2d call reads and writes (forward hooks)."""
    from complexo.measure import (
        GROUPED_CONV_FORMULAS,
        count_fvcore,
        measure_torch,
        module_traffic,
        param_counts,
    )

    module, x = build(cfg, side)
    run = measure_torch(
        lambda: module(x),
        list(module.parameters()),
        attention="math",
        custom_mapping=GROUPED_CONV_FORMULAS,
    )
    forward = {"fvcore": count_fvcore(module, (x.detach(),)), "torch": run.forward}
    backward = {"fvcore": None, "torch": run.backward}
    traffic = module_traffic(module, (x.detach(),), {"Conv2d": "convolutions"})
    return {
        "forward_flops": forward,
        "forward_matmul_flops": forward,
        "backward_flops": backward,
        "backward_matmul_flops": backward,
        "params": param_counts(module),
        "activation_bytes": {"fvcore": None, "torch": run.saved_bytes},
        "forward_moved_bytes": {"fvcore": None, "torch": traffic["convolutions"]},
    }


def _side(cfg: Config, side: str) -> Result:
    from complexo.counting import counted
    from complexo.measure import CONV_NOTE, GROUPED_CONV_NOTE

    model, values = cost_model(side, cfg.bias), cfg.values
    readings = counted(lambda: measure(cfg, side), {})
    quantities = [build_quantity(q, model, values, readings.get(q.name, {})) for q in QUANTITIES]
    crossovers, notes = [], [CONV_NOTE]
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
    summary = summarise(model, values, (B, C_in, C_out, R, k), {}, crossovers)
    S = evaluate(out_side(), values)
    channels = cfg.cin if side == "standard" else f"{cfg.cin} → {cfg.cin}"
    facts = {
        "shapes": f"({cfg.batch}, {channels} → {cfg.cout}, {cfg.res}² → {S}²); "
        f"S = ⌈R/s⌉ = ⌈{cfg.res}/{cfg.stride}⌉ = {S}"
    }
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
    ratio = mobilenet_ratio()
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
        if sympy.simplify(of - MOBILENET) != 0:
            raise AssertionError(f"separable/standard is {of}, not {MOBILENET}")
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
            a, b = separable.total(kind), standard.total(kind)
            found.append(crossover(a, b, symbol, values=values, label=label))
    return found


def _notes(cfg: Config, sides: dict[str, Result], ratio: sympy.Expr) -> list[str]:
    values = cfg.values
    std, sep = (sides[side] for side in SIDES)

    def q(side: Result, name: str) -> int:
        return side.quantity(name).value

    r = ratio.subs(values)
    notes = [
        f"MobileNet's ratio: separable/standard = {plain(sympy.factor(ratio))} = 1/C_out + 1/k² "
        f"(sympy simplifies the two formulas' quotient: S, B and C_in cancel) for the "
        f"convolutions' FLOPs, forward and backward, and their weights; here 1/{cfg.cout} + "
        f"1/{cfg.kernel}² = {float(r):.4g}" + (f", {float(1 / r):.3g}× fewer." if r < 1 else "."),
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
    notes.append(
        f"separable saves more for backward, not less: its depthwise output (B·C_in·S²) besides "
        f"the input x: 1 + S²/R² times standard's, here {saved:.3g}×."
    )
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
    """Tiny convolutions: odd kernels, odd and even sides, strides past the side."""
    from hypothesis import strategies as st

    return st.builds(
        Config,
        cin=st.integers(1, 6),
        cout=st.integers(1, 6),
        kernel=st.sampled_from([1, 3, 5]),
        res=st.integers(1, 12),
        stride=st.integers(1, 3),
        batch=st.integers(1, 2),
        dtype=st.sampled_from(list(DTYPES)),
        bias=st.booleans(),
    )


ANALYSIS = register(
    Analysis(
        name=NAME,
        title="A k×k convolution vs its depthwise-separable factorisation (MobileNet).",
        help="A standard k×k convolution against a depthwise k×k then pointwise 1×1 one: "
        "forward and backward FLOPs, parameters, activations saved for backward and bytes "
        "moved, MobileNet's ratio 1/C_out + 1/k² derived with sympy, and where the two cost "
        "the same; checked against fvcore, FlopCounterMode, autograd's saved tensors and the "
        "module calls, on the meta device.",
        config=Config,
        analyse=analyse,
        sides=SIDES,
        sweep=False,
        examples=examples,
    )
)
