"""A transformer's MLP: the two-layer GELU MLP against a gated one (SwiGLU or GeGLU), what each
costs, and why a gated MLP at f_g = 2·f/3 has the GELU MLP's parameters and matmul FLOPs but
keeps more activations for backward.

Symbols: B batch, n tokens, d width, f the GELU MLP's hidden width, f_g the gated MLP's, e bytes
per element. Reference: :mod:`complexo.blocks.mlp`. Per-element costs (GELU, SiLU, the gate's
product, forward and backward): :mod:`complexo.conventions`.

GELU MLP: two matrices, d -> f -> d: 2·2·B·n·d·f matmul FLOPs forward. Gated: three, gate and up
d -> f_g, down f_g -> d: 3·2·B·n·d·f_g. Backward: dX and dW of every matrix (the block's input
needs its gradient), a bias's Σ dY, each element-wise op's backward, and for the gated MLP the
sum of the two input gradients (x feeds gate and up). Saved for backward (autograd, measured):
the input x once, and per hidden element two tensors (GELU's input and output) or four (the
gate's pre- and post-activation, the up projection, their product). Bytes moved (forward, eager:
every op reads its inputs and writes its output once, weights and biases read once).

>>> cmp = analyse(Config(dim=768, batch=1, seq=1))
>>> [cmp.sides[side].quantity("params").value for side in SIDES]
[4718592, 4718592]
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import sympy

from complexo.analyses import mlp_ckpt, mlp_peak
from complexo.analyses.mlp_profile import PROFILING
from complexo.analyses.mlp_proof import SYMBOLIC
from complexo.checkpointing import CHECKPOINTS
from complexo.conventions import (
    DTYPES,
    ELEMENTWISE_FLOPS,
    GATE_BWD_FLOPS,
    GATE_FWD_FLOPS,
    GELU_BWD_FLOPS,
    GELU_FWD_FLOPS,
    SILU_BWD_FLOPS,
    SILU_FWD_FLOPS,
    torch_dtype,
)
from complexo.cost import CostModel, Crossover, Kind, Terms, crossover, plain
from complexo.counting import counted
from complexo.errors import ComplexoError
from complexo.registry import Analysis, check_options, option, register
from complexo.result import Comparison, QuantitySpec, Result, build_quantity, summarise
from complexo.symbols import B, d, e, f, f_g, n

NAME = "mlp"
SIDES = ("gelu", "gated")
GATED = ("swiglu", "geglu")
MULTIPLE_OF = 256  # LLaMA rounds its SwiGLU width up to a multiple of 256
LINEAR = ("aten::linear", "aten.addmm", "aten.mm")
# (TorchScript name for fvcore, dispatcher names for FlopCounterMode) of each element-wise op
ACT_OPS = {"gelu": ("aten::gelu", "aten.gelu"), "swiglu": ("aten::silu", "aten.silu")}
ACT_OPS["geglu"] = ACT_OPS["gelu"]
# on the meta device SiLU's backward runs decomposed: sigmoid, mul, add, ...
ACT_BWD_OPS = {"gelu": ("aten.gelu_backward",), "swiglu": ("aten.silu_backward", "aten.sigmoid")}
ACT_BWD_OPS["geglu"] = ACT_BWD_OPS["gelu"]
ACT_COST = {"gelu": (GELU_FWD_FLOPS, GELU_BWD_FLOPS), "swiglu": (SILU_FWD_FLOPS, SILU_BWD_FLOPS)}
ACT_COST["geglu"] = ACT_COST["gelu"]
MUL = ("aten::mul", "aten.mul")
# inputs of each element-wise forward op: its traffic is its output's bytes × (inputs + 1)
ELEMENTWISE_INPUTS = {"aten.gelu": 1, "aten.silu": 1, "aten.mul": 2}


def gated_width(hidden: int, multiple_of: int = MULTIPLE_OF) -> int:
    """LLaMA's rule for a gated MLP's width from a GELU MLP's f: ⌊2·f/3⌋ rounded up to a
    multiple of 256 (at f = 4·d, :func:`complexo.presets.llama_mlp_width`).

    >>> from complexo.presets import llama_mlp_width
    >>> gated_width(4 * 4096), llama_mlp_width(4096)
    (11008, 11008)
    """
    return multiple_of * max(1, -(-(2 * hidden // 3) // multiple_of))


def matched_width(dim: int, hidden: int, bias: bool) -> int:
    """The gated width whose parameters equal the GELU MLP's, to the nearest integer:
    3·d·f_g + b·(2·f_g + d) = 2·d·f + b·(f + d)  ⇔  f_g = (2·d + b)·f/(3·d + 2·b)."""
    b = int(bias)
    return max(1, round((2 * dim + b) * hidden / (3 * dim + 2 * b)))


@dataclass(frozen=True)
class Config:
    batch: int = option(1, "Batch size B.", min=1)
    seq: int = option(1024, "Tokens n per sequence.", min=1)
    dim: int = option(768, "Model width d.", min=1)
    hidden: int | None = option(None, "The GELU MLP's hidden width f (default 4·d).", min=1)
    gated: str = option(
        "swiglu", "The gated side: swiglu (SiLU gate, LLaMA) or geglu (GELU gate).", choices=GATED
    )
    gated_hidden: int | None = option(
        None,
        "The gated MLP's hidden width f_g (default: LLaMA's rule, ⌊2·f/3⌋ rounded up to a "
        "multiple of 256).",
        min=1,
    )
    match_params: bool = option(
        False, "Set f_g so the gated MLP has the GELU MLP's parameters (2·f/3 without biases)."
    )
    dtype: str = option("fp32", "Element type; bytes per element e.", choices=(*DTYPES,))
    bias: bool = option(False, "Biases on every matrix (GPT-2 has them; LLaMA has none).")
    checkpoint: str = option(
        "none",
        "Activation checkpointing: none, or full (the block under torch.utils.checkpoint: x "
        "alone kept, the block run again in the backward); selective needs an attention core.",
        choices=CHECKPOINTS,
    )

    def __post_init__(self):
        check_options(self)
        if self.match_params and self.gated_hidden is not None:
            raise ComplexoError(
                f"--match-params chooses f_g itself: drop --gated-hidden {self.gated_hidden}"
            )
        if self.checkpoint == "selective":
            raise ComplexoError(
                "--checkpoint selective recomputes an attention core, and the MLP block has "
                "none: use --checkpoint full (the whole block) or none"
            )

    @property
    def f(self) -> int:
        return self.hidden or 4 * self.dim

    @property
    def f_g(self) -> int:
        if self.match_params:
            return matched_width(self.dim, self.f, self.bias)
        return self.gated_hidden or gated_width(self.f)

    @property
    def values(self) -> dict:
        return {B: self.batch, n: self.seq, d: self.dim, f: self.f, f_g: self.f_g, e: self.e}

    @property
    def e(self) -> int:
        return DTYPES[self.dtype].bytes


def _linear(t: Terms, name: str, d_in, d_out, bias: bool) -> None:
    """One linear layer over the B·n tokens: its matmul forward, dX and dW backward, its bias,
    weights, and the bytes it moves."""
    tokens = B * n
    mm = 2 * tokens * d_in * d_out  # (B·n, d_in) x (d_in, d_out): 2·B·n·d_in·d_out
    t.add(Kind.FORWARD, name, mm, mm=True, ops=LINEAR)
    t.add(Kind.BACKWARD, f"{name}.dx", mm, mm=True, ops=("aten.mm",), tags={"dx"}, note="dY·Wᵀ")
    t.add(Kind.BACKWARD, f"{name}.dw", mm, mm=True, ops=("aten.mm",), tags={"dw"}, note="xᵀ·dY")
    t.add(Kind.PARAMS, name, d_in * d_out, tags={"weights"})
    if bias:
        out = ELEMENTWISE_FLOPS * tokens * d_out
        t.add(Kind.FORWARD, f"{name}_bias", out, ops=LINEAR, note="+ b per output element")
        t.add(Kind.BACKWARD, f"{name}.db", out, ops=("aten.sum",), tags={"db"}, note="Σ dY")
        t.add(Kind.PARAMS, f"{name}_bias", d_out, tags={"bias"})
    moved = tokens * d_in + d_in * d_out + (d_out if bias else 0) + tokens * d_out
    t.add(Kind.MEMORY, f"moved_{name}", moved * e, tags={"moved"}, note="reads x, W; writes y")


def cost_model(side: str, bias: bool, checkpoint: str = "none") -> CostModel:
    """One side's symbolic cost: ``side`` is "gelu" or a gated variant ("swiglu", "geglu");
    ``checkpoint`` full: x alone kept (by the checkpoint), the rerun as backward terms
    (:mod:`complexo.analyses.mlp_ckpt`)."""
    t, tokens, kept = Terms(), B * n, checkpoint == "none"
    t.add(Kind.ACTIVATION, "input", tokens * d * e, note="x, kept by the first matrices for dW")
    mlp_ckpt.recomputed(t, side, bias, checkpoint)
    fwd_cost, bwd_cost = ACT_COST[side]
    act, act_bwd = ACT_OPS[side], ACT_BWD_OPS[side]
    if side == "gelu":
        hid = tokens * f  # (B, n, f)
        _linear(t, "fc_in", d, f, bias)
        t.add(Kind.FORWARD, "gelu", fwd_cost * hid, ops=act, note="x·Φ(x), erf form")
        t.add(Kind.BACKWARD, "gelu", bwd_cost * hid, ops=act_bwd, note="dy·(Φ + x·φ)")
        _linear(t, "fc_out", f, d, bias)
        if kept:
            t.add(Kind.ACTIVATION, "fc_in_output", hid * e, note="h, kept by GELU")
            t.add(Kind.ACTIVATION, "gelu_output", hid * e, note="GELU(h), kept by fc_out for dW")
        t.add(Kind.MEMORY, "moved_gelu", 2 * hid * e, tags={"moved"}, note="reads h, writes a")
        return t.model()
    hid = tokens * f_g  # (B, n, f_g)
    name = "silu" if side == "swiglu" else "gelu"
    _linear(t, "gate_proj", d, f_g, bias)
    _linear(t, "up_proj", d, f_g, bias)
    t.add(Kind.FORWARD, name, fwd_cost * hid, ops=act, note="on the gate")
    t.add(Kind.FORWARD, "gate_product", GATE_FWD_FLOPS * hid, ops=MUL, note="act(g) ⊙ u")
    _linear(t, "down_proj", f_g, d, bias)
    t.add(Kind.BACKWARD, name, bwd_cost * hid, ops=act_bwd)
    t.add(Kind.BACKWARD, "gate_product", GATE_BWD_FLOPS * hid, ops=("aten.mul",), note="dy⊙u, dy⊙a")
    t.add(
        Kind.BACKWARD,
        "dx_sum",
        ELEMENTWISE_FLOPS * tokens * d,
        ops=("aten.add",),
        note="x feeds gate and up: their dX add",
    )
    for what, note in (
        ("gate_output", f"g, kept by {name.upper()}"),
        (f"{name}_output", f"{name}(g), kept by the product"),
        ("up_output", "u, kept by the product"),
        ("product", "a ⊙ u, kept by down_proj for dW"),
    ):
        if kept:
            t.add(Kind.ACTIVATION, what, hid * e, note=note)
    t.add(Kind.MEMORY, f"moved_{name}", 2 * hid * e, tags={"moved"}, note="reads g, writes a")
    t.add(Kind.MEMORY, "moved_product", 3 * hid * e, tags={"moved"}, note="reads a, u; writes")
    return t.model()


QUANTITIES = (
    QuantitySpec("forward_flops", "forward FLOPs", Kind.FORWARD),
    QuantitySpec("forward_matmul_flops", "  of which matmuls", Kind.FORWARD, matmul_only=True),
    QuantitySpec("backward_flops", "backward FLOPs", Kind.BACKWARD),
    QuantitySpec(
        "backward_matmul_flops", "  of which matmuls (dX, dW)", Kind.BACKWARD, matmul_only=True
    ),
    QuantitySpec("params", "parameters", Kind.PARAMS),
    QuantitySpec("activation_bytes", "activations saved for backward", Kind.ACTIVATION),
    QuantitySpec(
        "forward_moved_bytes", "bytes moved by a forward (eager)", Kind.MEMORY, tag="moved"
    ),
)


def build(cfg: Config, side: str, device: str | None = "meta"):
    """The reference block of one side ("gelu" or "gated") in ``cfg.dtype`` and a (B, n, d)
    input that needs its gradient. ``device`` None: in the current mode (a FakeTensorMode:
    :func:`complexo.peak.in_dtype`)."""
    import torch

    from complexo.blocks.mlp import GatedMLP, GeluMLP
    from complexo.peak import in_dtype

    dtype = torch_dtype(cfg.dtype)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        full = cfg.checkpoint == "full"
        if side == "gelu":
            module = GeluMLP(cfg.dim, cfg.f, cfg.bias, full)
        else:
            module = GatedMLP(cfg.dim, cfg.f_g, cfg.gated, cfg.bias, full)
        x = torch.randn(cfg.batch, cfg.seq, cfg.dim, dtype=dtype, requires_grad=True)
    return in_dtype(module, dtype, device), x


def measure(cfg: Config, side: str) -> dict:
    """Every reading of one side: FlopCounterMode and autograd's saved tensors from a forward
    and backward on meta tensors, fvcore's count of the forward, the module's parameters, and
    the bytes moved: each Linear call's (forward hooks) and each element-wise op's (its output,
    recorded by the FLOP counter, times its inputs + 1)."""
    from complexo.measure import count_fvcore, measure_torch, module_traffic, step_readings

    module, x = build(cfg, side)
    run = measure_torch(lambda: module(x), list(module.parameters()))
    linear = module_traffic(module, (x.detach(),), {"Linear": "linear"})["linear"]
    elementwise = sum(
        nbytes * (ELEMENTWISE_INPUTS[op] + 1)
        for op, _, nbytes in run.outputs
        if op in ELEMENTWISE_INPUTS
    )
    return {
        **step_readings(module, run, count_fvcore(module, (x.detach(),))),
        "forward_moved_bytes": {"fvcore": None, "torch": linear + elementwise},
    }


def _side(cfg: Config, side: str) -> Result:
    variant = side if side == "gelu" else cfg.gated
    model, values = cost_model(variant, cfg.bias, cfg.checkpoint), cfg.values
    readings = counted(lambda: measure(cfg, side), {})
    quantities = [build_quantity(q, model, values, readings.get(q.name, {})) for q in QUANTITIES]
    width = f if side == "gelu" else f_g
    summary = summarise(model, values, (B, n, d, width), {}, [])
    if side == "gelu":
        facts = {"widths": f"d = {cfg.dim} → f = {cfg.f} → d, exact GELU"}
    else:
        how = (
            "--match-params"
            if cfg.match_params
            else "--gated-hidden"
            if cfg.gated_hidden
            else f"LLaMA's rule: ⌊2·{cfg.f}/3⌋ rounded up to a multiple of {MULTIPLE_OF}"
        )
        facts = {"widths": f"{cfg.gated}: d = {cfg.dim} → 2 × f_g = {cfg.f_g} ({how}) → d"}
    peak, peak_note = mlp_peak.quantity(cfg, side)  # the training step's high-water mark
    quantities.append(peak)
    notes = [peak_note, *mlp_ckpt.notes(cfg, variant, model)]
    fv = readings.get("forward_flops", {}).get("fvcore")
    if fv is not None and fv.uncounted_ops:
        skipped = ", ".join(sorted(fv.uncounted_ops))
        notes.append(f"fvcore lists {skipped} as unsupported: the element-wise terms' gap.")
    return Result(NAME, asdict(cfg), values, model, quantities, summary, notes, facts)


def analyse(cfg: Config) -> Comparison:
    sides = {side: _side(cfg, side) for side in SIDES}
    gelu, gated = (sides[side].model for side in SIDES)
    return Comparison(
        NAME,
        asdict(cfg),
        sides,
        crossovers=tuple(_crossovers(gelu, gated, cfg.values)),
        notes=_notes(cfg, sides),
    )


def same_params_width(bias: bool = False) -> sympy.Expr:
    """The gated width with the GELU MLP's parameters, solved by sympy.

    >>> same_params_width(), same_params_width().subs(f, 4 * d)
    (2*f/3, 8*d/3)
    """
    gelu, gated = (cost_model(side, bias).total(Kind.PARAMS) for side in ("gelu", "swiglu"))
    return crossover(gated, gelu, f_g).expr


def _crossovers(gelu: CostModel, gated: CostModel, values: dict) -> list[Crossover]:
    """The gated width at which each cost equals the GELU MLP's (the gated one costs more
    above): parameters, forward FLOPs, activations saved."""
    found = []
    for kind, label in (
        (Kind.PARAMS, "the gated MLP's parameters reach the GELU MLP's"),
        (Kind.FORWARD, "the gated MLP's forward FLOPs reach the GELU MLP's"),
        (Kind.ACTIVATION, "the gated MLP saves as many activation bytes as the GELU MLP"),
    ):
        with contextlib.suppress(ValueError):
            found.append(
                crossover(gated.total(kind), gelu.total(kind), f_g, values=values, label=label)
            )
    return found


def _notes(cfg: Config, sides: dict[str, Result]) -> list[str]:
    gelu, gated = (sides[side] for side in SIDES)

    def q(side: Result, name: str) -> int:
        return side.quantity(name).value

    width = same_params_width(cfg.bias)
    notes = [
        f"same parameters: sympy solves params(gated, f_g) = params(GELU, f) for f_g = "
        f"{plain(width)}; at f = 4·d that is {plain(sympy.factor(width.subs(f, 4 * d)))}"
        + ("." if cfg.bias else " (LLaMA rounds it up to a multiple of 256: 11008 at d = 4096).")
        + f" Here f_g = {cfg.f_g}: params {q(gated, 'params') / q(gelu, 'params'):.4g}× the GELU "
        "MLP's.",
        "matmul FLOPs are 2 per weight per token forward (4 backward) on both sides, so equal "
        f"parameters mean equal matmul FLOPs: here {q(gated, 'forward_matmul_flops'):,} vs "
        f"{q(gelu, 'forward_matmul_flops'):,}.",
    ]
    saved = q(gated, "activation_bytes") / q(gelu, "activation_bytes")
    notes.append(
        f"activations saved: the gated MLP keeps 4 tensors of B·n·f_g (gate, {cfg.gated}'s "
        "output, up, product) against GELU's 2 of B·n·f (fc_in's output, GELU's output): at "
        f"f_g = 2·f/3, 8/3 against 2 per token and f; here {saved:.3g}× the GELU MLP's."
    )
    shares = []
    for name, side in zip(("gelu", cfg.gated), (gelu, gated), strict=True):
        mm, total = q(side, "forward_matmul_flops"), q(side, "forward_flops")
        shares.append(f"{name} {(total - mm) / total:.2%}")
    notes.append(
        "element-wise work (activations, the gate's product, biases), which neither counter "
        f"counts, is a small share of the forward FLOPs: {', '.join(shares)} (O(1/d) of it)."
    )
    notes.append(
        "GELU here is the exact erf form, F.gelu's default; GPT-2 used the tanh approximation "
        "(the same matmuls; its per-element cost differs, and neither counter sees it)."
    )
    eager = {s: q(sides[s], "forward_moved_bytes") for s in SIDES}
    notes.append(
        "bytes moved (eager): "
        + ", ".join(f"{s} {eager[s]:,}" for s in SIDES)
        + "; a kernel that applies the activation (and the gate's product) in the matmul's "
        "epilogue skips the element-wise reads and writes (2·B·n·f·e for GELU, 5·B·n·f_g·e gated)."
    )
    return notes


def examples():
    """Tiny MLPs: each variant, with and without biases, every width rule."""
    from hypothesis import strategies as st

    return st.builds(
        Config,
        batch=st.integers(1, 2),
        seq=st.integers(1, 3),
        dim=st.integers(1, 8),
        hidden=st.none() | st.integers(1, 24),
        gated=st.sampled_from(GATED),
        gated_hidden=st.integers(1, 24),
        dtype=st.sampled_from(list(DTYPES)),
        bias=st.booleans(),
        checkpoint=st.sampled_from(["none", "full"]),
    ) | st.builds(
        Config,
        dim=st.integers(1, 8),
        hidden=st.integers(1, 24),
        match_params=st.just(True),
        bias=st.booleans(),
    )


ANALYSIS = register(
    Analysis(
        name=NAME,
        title="A GELU MLP vs a gated one (SwiGLU, GeGLU): parameters, FLOPs, activations.",
        help="The two-layer GELU MLP (d -> f -> d) against a gated MLP (gate and up d -> f_g, "
        "down f_g -> d; --gated swiglu or geglu): forward and backward FLOPs by term, "
        "parameters, activations saved for backward and bytes moved, the gated width with "
        "the same parameters (2·f/3, 8·d/3 at f = 4·d) derived with sympy, checked against "
        "fvcore, FlopCounterMode, autograd's saved tensors and the module calls on the meta "
        "device; --checkpoint full: the block under torch.utils.checkpoint (x alone kept, the "
        "rerun's FLOPs, the step's peak against MemTracker).",
        config=Config,
        analyse=analyse,
        sides=SIDES,
        sweep=False,
        profiling=PROFILING,
        examples=examples,
        symbolic=SYMBOLIC,
    )
)
