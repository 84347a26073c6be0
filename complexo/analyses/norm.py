"""One normalisation layer (LayerNorm, RMSNorm, BatchNorm, GroupNorm, InstanceNorm): what it
costs, and why it is bound by memory, not arithmetic.

Symbols: B batch; tokens (B, n, d) or an image (B, C, R, R); g GroupNorm's groups; e bytes per
element. Cost model: :mod:`complexo.analyses.norm_cost`; per-element costs:
:mod:`complexo.conventions`; reference implementations: :mod:`complexo.blocks.norm`.

Measured: torch's own modules (nn.LayerNorm, nn.RMSNorm, nn.BatchNorm1d/2d, nn.GroupNorm,
nn.InstanceNorm2d) on the meta device: FlopCounterMode (it has no formula for any norm: 0),
fvcore (its own 5 MACs per element with γ, 4 without; 2 or 1 for BatchNorm in inference),
autograd's saved tensors, the parameters and buffers, the bytes each call reads and writes; and
what complexo's from-scratch reference keeps for backward.

>>> r = analyse(Config(kind="layernorm", batch=1, seq=1, dim=768))
>>> r.quantity("forward_flops").value  # 7 per element and 4 per token: 7·768 + 4
5380
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from complexo.analyses import norm_peak
from complexo.analyses.norm_cost import KINDS, LAYOUTS, cost_model, sizes
from complexo.analyses.norm_profile import PROFILING
from complexo.analyses.norm_proof import SYMBOLIC
from complexo.conventions import DTYPES, torch_dtype
from complexo.cost import Kind, evaluate
from complexo.counting import counted
from complexo.devices import DEVICES
from complexo.errors import ComplexoError
from complexo.registry import Analysis, check_options, option, register
from complexo.result import QuantitySpec, Result, build_quantity, summarise
from complexo.symbols import B, C, R, d, e, g, n

NAME = "norm"
IMAGE_ONLY = ("groupnorm", "instancenorm")  # they normalise channel groups of an image
MODULES = ("LayerNorm", "RMSNorm", "BatchNorm1d", "BatchNorm2d", "GroupNorm", "InstanceNorm2d")
DEFAULTS = {"seq": 1024, "dim": 768, "channels": 64, "res": 56, "groups": 32}
RIDGE_DEVICE = "h100-sxm"


@dataclass(frozen=True)
class Config:
    kind: str = option("layernorm", "Which normalisation.", choices=KINDS)
    layout: str | None = option(
        None,
        "tokens (B, n, d) or image (B, C, R, R); default: tokens for layernorm and rmsnorm, "
        "image for the others.",
        choices=LAYOUTS,
    )
    batch: int = option(8, "Batch size B.", min=1)
    seq: int | None = option(None, "Tokens n (tokens layout; default 1024).", min=1)
    dim: int | None = option(None, "Features d (tokens layout; default 768).", min=1)
    channels: int | None = option(None, "Channels C (image layout; default 64).", min=1)
    res: int | None = option(None, "Image side R, H = W = R (image layout; default 56).", min=1)
    groups: int | None = option(
        None, "GroupNorm's groups g; must divide C (default 32, or C if fewer).", min=1
    )
    dtype: str = option("fp32", "Element type; bytes per element e.", choices=(*DTYPES,))
    affine: bool = option(True, "Learned γ and β (RMSNorm: γ only).")
    mode: str = option(
        "train",
        "train: batch statistics, a forward and its backward; eval: an inference forward "
        "(BatchNorm uses its running statistics).",
        choices=("train", "eval"),
    )

    def __post_init__(self):
        check_options(self)
        tokens = self.shape_layout == "tokens"
        if self.kind in IMAGE_ONLY and tokens:
            raise ComplexoError(
                f"--kind {self.kind} normalises channel groups of an image: use --layout image"
            )
        for name in ("seq", "dim") if not tokens else ("channels", "res"):
            if getattr(self, name) is not None:
                raise ComplexoError(
                    f"--{name} sizes the {'tokens' if name in ('seq', 'dim') else 'image'} "
                    f"layout; this is --layout {self.shape_layout}"
                )
        if self.groups is not None and self.kind != "groupnorm":
            raise ComplexoError("--groups applies to --kind groupnorm only")
        if self.kind == "groupnorm" and self.size("channels") % self.g:
            raise ComplexoError(f"--groups {self.g} must divide --channels {self.size('channels')}")
        per_channel = self.batch * (self.size("seq") if tokens else self.size("res") ** 2)
        if self.kind == "batchnorm" and self.mode == "train" and per_channel == 1:
            raise ComplexoError(
                "BatchNorm in training needs more than one value per channel (B·n or B·R² > 1): "
                "the unbiased running variance divides by N − 1"
            )
        if self.kind == "instancenorm" and self.size("res") == 1:
            raise ComplexoError(
                "InstanceNorm needs more than one pixel per channel: --res must be at least 2"
            )

    @property
    def shape_layout(self) -> str:
        if self.layout:
            return self.layout
        return "tokens" if self.kind in ("layernorm", "rmsnorm") else "image"

    def size(self, name: str) -> int:
        value = getattr(self, name)
        return DEFAULTS[name] if value is None else value

    @property
    def g(self) -> int:
        return self.groups or min(DEFAULTS["groups"], self.size("channels"))

    @property
    def train(self) -> bool:
        return self.mode == "train"

    @property
    def values(self) -> dict:
        shape = (
            {n: self.size("seq"), d: self.size("dim")}
            if self.shape_layout == "tokens"
            else {C: self.size("channels"), R: self.size("res")}
        )
        extra = {g: self.g} if self.kind == "groupnorm" else {}
        return {B: self.batch, **shape, **extra, e: DTYPES[self.dtype].bytes}


QUANTITIES = (
    QuantitySpec("forward_flops", "forward FLOPs", Kind.FORWARD),
    QuantitySpec("backward_flops", "backward FLOPs (dx, dγ, dβ)", Kind.BACKWARD),
    QuantitySpec("params", "parameters (γ, β)", Kind.PARAMS),
    QuantitySpec("buffer_bytes", "buffers (running statistics)", Kind.MEMORY, tag="buffers"),
    QuantitySpec("activation_bytes", "saved for backward by torch's kernel", Kind.ACTIVATION),
    QuantitySpec(
        "reference_saved_bytes", "saved for backward by the reference", Kind.MEMORY, tag="reference"
    ),
    QuantitySpec(
        "forward_moved_bytes",
        "bytes moved by a forward (fewest)",
        Kind.MEMORY,
        tag="moved",
    ),
)


def build(cfg: Config, impl: str = "torch", device: str | None = "meta"):
    """torch's module (``impl="torch"``) or complexo's reference (``"reference"``) in
    ``cfg.dtype`` and mode, and its input, needing its gradient in training. ``device`` None:
    in the current mode (a FakeTensorMode: :func:`complexo.peak.in_dtype`)."""
    import contextlib

    import torch
    import torch.nn as nn

    from complexo.blocks import norm as ref
    from complexo.peak import in_dtype

    tokens = cfg.shape_layout == "tokens"
    c = cfg.size("dim") if tokens else cfg.size("channels")
    shape = (c,) if tokens else (c, cfg.size("res"), cfg.size("res"))
    mine = impl == "reference"
    dtype = torch_dtype(cfg.dtype)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        if cfg.kind == "layernorm":
            make = ref.LayerNorm if mine else nn.LayerNorm
            module = make(shape, 1e-5, cfg.affine)
        elif cfg.kind == "rmsnorm":
            make = ref.RMSNorm if mine else nn.RMSNorm
            module = make(shape, 1e-6, cfg.affine)
        elif cfg.kind == "batchnorm":
            torch_bn = nn.BatchNorm1d if tokens else nn.BatchNorm2d
            module = ref.BatchNorm(c, affine=cfg.affine) if mine else torch_bn(c, affine=cfg.affine)
            module = ref.TokenBatchNorm(module) if tokens else module
        elif cfg.kind == "groupnorm":
            module = (
                ref.GroupNorm(c, cfg.g, affine=cfg.affine)
                if mine
                else nn.GroupNorm(cfg.g, c, affine=cfg.affine)
            )
        else:
            make = ref.InstanceNorm if mine else nn.InstanceNorm2d
            module = make(c, affine=cfg.affine)
        module = in_dtype(module, dtype, device).train(cfg.train)
        lead = (cfg.batch, cfg.size("seq")) if tokens else (cfg.batch,)
        x = torch.randn(*lead, *shape, dtype=dtype, requires_grad=cfg.train)
    if not cfg.train:
        module.requires_grad_(False)
    return module, x


def _saved(cfg: Config, impl: str):
    from complexo.measure import measure_torch

    module, x = build(cfg, impl)
    state = [*module.parameters(), *module.buffers()]
    return module, x, measure_torch(lambda: module(x), state, backward=cfg.train)


def measure(cfg: Config) -> dict:
    """Every reading: FlopCounterMode and autograd's saved tensors from torch's module (forward
    and, in training, backward) and from the reference, fvcore's count of the forward, the
    parameters, the buffers, and the bytes the norm's call reads and writes (forward hooks)."""
    from complexo.measure import count_fvcore, module_traffic, param_counts, storage_bytes

    module, x, run = _saved(cfg, "torch")
    _, _, reference = _saved(cfg, "reference")
    groups = dict.fromkeys(MODULES, "norm")
    return {
        "forward_flops": {"fvcore": count_fvcore(module, (x.detach(),)), "torch": run.forward},
        "backward_flops": {"fvcore": None, "torch": run.backward},
        "params": param_counts(module),
        "buffer_bytes": {"fvcore": None, "torch": storage_bytes(module.buffers())},
        "activation_bytes": {"fvcore": None, "torch": run.saved_bytes},
        "reference_saved_bytes": {"fvcore": None, "torch": reference.saved_bytes},
        "forward_moved_bytes": {
            "fvcore": None,
            "torch": module_traffic(module, (x.detach(),), groups)["norm"],
        },
    }


def analyse(cfg: Config) -> Result:
    layout = cfg.shape_layout
    model, values = cost_model(cfg.kind, layout, cfg.affine, cfg.train), cfg.values
    readings = counted(lambda: measure(cfg), {})
    quantities = [build_quantity(q, model, values, readings.get(q.name, {})) for q in QUANTITIES]
    growing = (B, n, d) if layout == "tokens" else (B, C, R)
    summary = summarise(model, values, growing, {}, [])
    N, S, _, _ = (evaluate(x, values) for x in sizes(cfg.kind, layout))
    shape = "(B, n, d)" if layout == "tokens" else "(B, C, R, R)"
    dims = [cfg.batch] + (
        [cfg.size("seq"), cfg.size("dim")]
        if layout == "tokens"
        else [cfg.size("channels"), cfg.size("res"), cfg.size("res")]
    )
    facts = {
        "shape": f"{shape} = ({', '.join(map(str, dims))}): {N:,} elements in {S:,} groups of "
        f"{N // S:,}, one μ and σ each"
    }
    notes = _notes(cfg, readings, {q.name: q.value for q in quantities}, N)
    if cfg.train:  # the training step's high-water mark
        peak, peak_note = norm_peak.quantity(cfg)
        quantities.append(peak)
        notes.insert(0, peak_note)
    return Result(NAME, asdict(cfg), values, model, quantities, summary, notes, facts)


def _notes(cfg: Config, readings: dict, v: dict[str, int], N: int) -> list[str]:
    from complexo.conventions import BN_EVAL_FLOPS, NORM_FWD_FLOPS

    fv = readings.get("forward_flops", {}).get("fvcore")
    notes = [
        "FlopCounterMode has no FLOP formula for any normalisation op (it counts matmuls, "
        "convolutions and attention): its 0 is the whole formula, op by op below."
    ]
    if cfg.kind == "rmsnorm":
        notes.append(
            "fvcore has no handle for aten::rms_norm (unsupported: 0). torch 2.13 runs nn.RMSNorm "
            "on the CPU and meta devices as its composite ops (pow, mean, add, rsqrt, mul), in "
            "fp32: autograd keeps an fp32 x, 1/rms and, with γ, an fp32 x̂, whatever the dtype."
        )
    elif fv is not None and fv.total:
        per = fv.total / N
        ours = "2 per element (x·a + b)" if cfg.kind == "batchnorm" and not cfg.train else None
        ours = ours or f"{NORM_FWD_FLOPS if cfg.affine else NORM_FWD_FLOPS - 2} per element"
        notes.append(
            f"fvcore counts {per:g} FLOPs per element ({per / 2:g} MACs: its own rough constant, "
            f"'5 is just a rough estimate' with γ, 4 without; BatchNorm in inference 2 or 1); "
            f"complexo counts {ours} plus per-group statistics, each piece named."
        )
    if cfg.kind == "batchnorm":
        notes.append(
            "BatchNorm normalises with the batch's biased variance (÷ N) in training and moves "
            "its running variance towards the unbiased one (÷ N − 1); inference uses the running "
            f"statistics, folded into x·a + b ({BN_EVAL_FLOPS} FLOPs per element). Its int64 "
            "num_batches_tracked += 1 is the aten::add_ fvcore lists as unsupported."
        )
    flops, moved = v["forward_flops"], v["forward_moved_bytes"]
    device = DEVICES[RIDGE_DEVICE]
    ridge = device.ridge(cfg.dtype)
    notes.append(
        f"memory-bound: {flops / moved:.3g} FLOPs per byte moved, against {RIDGE_DEVICE}'s "
        f"{cfg.dtype} ridge of {ridge:.3g} ({ridge * moved / flops:.3g}× below it): at "
        f"{device.bandwidth / 1e12:.3g} TB/s the bytes take "
        f"{moved / device.bandwidth * 1e6:.3g} µs, the FLOPs "
        f"{flops / device.peak[cfg.dtype] * 1e6:.3g} µs at peak. A real kernel moves "
        "more than this least: a training BatchNorm reads x twice (statistics, then normalising: "
        "a channel's B·R² values do not fit on chip) and writes μ, 1/σ and the running statistics."
    )
    if cfg.train:
        mine, fused = v["reference_saved_bytes"], v["activation_bytes"]
        notes.append(
            f"saved for backward: torch's kernel keeps {fused:,} bytes, the from-scratch "
            f"reference {mine:,} ({mine / fused:.3g}×): the reference keeps x − μ, 1/σ and, with "
            "γ, x̂ (one more tensor of x's size); a fused kernel keeps x and two statistics per "
            "group and recomputes x̂ in its backward."
        )
        if cfg.dtype != "fp32" and cfg.kind in ("layernorm", "batchnorm", "instancenorm"):
            notes.append(
                "μ and 1/σ are fp32 here, as the meta device (and the CUDA kernels) keep them; "
                f"torch's CPU kernel keeps them in {cfg.dtype} (2 bytes each instead of 4)."
            )
    else:
        notes.append("eval: an inference forward, so no backward and nothing saved for it.")
    return notes


def examples():
    """Tiny layers of every kind, layout, dtype and mode."""
    from hypothesis import strategies as st

    tokens = st.builds(
        Config,
        kind=st.sampled_from(("layernorm", "rmsnorm", "batchnorm")),
        layout=st.just("tokens"),
        batch=st.integers(2, 3),
        seq=st.integers(1, 4),
        dim=st.integers(1, 8),
        dtype=st.sampled_from(list(DTYPES)),
        affine=st.booleans(),
        mode=st.sampled_from(("train", "eval")),
    )

    @st.composite
    def image(draw):
        kind = draw(st.sampled_from(KINDS))
        groups = draw(st.integers(1, 3))
        channels = (
            groups * draw(st.integers(1, 3)) if kind == "groupnorm" else draw(st.integers(1, 6))
        )
        return Config(
            kind=kind,
            layout="image",
            batch=draw(st.integers(1, 2)),
            channels=channels,
            res=draw(st.integers(2, 5)),
            groups=groups if kind == "groupnorm" else None,
            dtype=draw(st.sampled_from(list(DTYPES))),
            affine=draw(st.booleans()),
            mode=draw(st.sampled_from(("train", "eval"))),
        )

    return tokens | image()


ANALYSIS = register(
    Analysis(
        name=NAME,
        title="A normalisation layer: LayerNorm, RMSNorm, BatchNorm, GroupNorm, InstanceNorm.",
        help="One normalisation layer over tokens (B, n, d) or an image (B, C, R, R): FLOPs per "
        "element and per group, named piece by piece, forward and backward; parameters and "
        "buffers; what torch's kernel and a from-scratch reference keep for backward; bytes "
        "moved and FLOPs per byte (memory-bound). Checked against fvcore (its own per-element "
        "constants), FlopCounterMode (no norm formulas: 0), autograd's saved tensors and the "
        "module calls, on the meta device.",
        config=Config,
        analyse=analyse,
        profiling=PROFILING,
        examples=examples,
        symbolic=SYMBOLIC,
    )
)
