"""ResNets: what a convolutional network costs at resolution R, stage by stage, and why.

Symbols: B batch, R image side, C image channels, w the first stage's width (64), D1..D4 blocks
per stage, K classes, e bytes per element. A stage at total stride 2^k has side ⌈R/2^k⌉ (every
downsampling here, 7×7/2 pad 3, 3×3/2 pad 1 and 1×1/2, maps s to ⌈s/2⌉). Stage i has width
w·2^(i−1) and, for bottlenecks, 4× that many output channels. Reference: ``blocks/resnet.py``.

Training-mode activations: each convolution keeps its input, each BatchNorm its input and fp32
batch mean and 1/std per channel, each in-place ReLU its output, max pooling its int64 indices,
the classifier its input; one storage counts once.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import sympy

from complexo.analyses import cnn_peak
from complexo.analyses.cnn_proof import SYMBOLIC
from complexo.analyses.vision import (
    BATCH_NORM,
    CONV,
    CONV_BWD,
    LINEAR,
    QUANTITIES,
    build_image,
    measure,
    moved,
)
from complexo.analyses.vision_profile import PROFILING
from complexo.conventions import DTYPES, ELEMENTWISE_FLOPS, FP32_BYTES, NORM_FWD_FLOPS
from complexo.cost import CostModel, Kind, Terms
from complexo.errors import ComplexoError
from complexo.presets import RESNETS as PRESETS
from complexo.presets import RESNETS_PUBLISHED as PUBLISHED
from complexo.registry import Analysis, check_options, option, register
from complexo.result import Result, summarise
from complexo.symbols import B, C, D, K, R, e, w

NAME = "cnn"
INDEX_BYTES = 8  # max pooling's argmax indices are int64
MIN_RES = 32  # five halvings


@dataclass(frozen=True)
class Config:
    model: str = option("resnet50", "The ResNet.", choices=(*PRESETS,), sweep=False)
    res: int = option(224, "Image side R (H = W = R).", min=1)
    batch: int = option(1, "Batch size B.", min=1)
    dtype: str = option("fp32", "Element type; bytes per element e.", choices=(*DTYPES,))

    def __post_init__(self):
        check_options(self)
        if self.res < MIN_RES:
            raise ComplexoError(
                f"--res {self.res} is too small for {self.model}: it halves the image five times "
                f"(total stride 32), so the resolution must be at least {MIN_RES}"
            )
        last = -(-self.res // 32)
        if self.batch * last * last < 2:
            raise ComplexoError(
                f"at --res {self.res} with --batch {self.batch} the last stage is {last}×{last} "
                "for one image: BatchNorm in training mode needs more than one value per "
                "channel; use --batch 2 or --res 33 and above"
            )

    @property
    def values(self) -> dict:
        arch = PRESETS[self.model]
        return {
            B: self.batch,
            R: self.res,
            C: arch.channels,
            K: arch.classes,
            w: arch.width,
            e: DTYPES[self.dtype].bytes,
            **dict(zip(D, arch.depths, strict=True)),
        }


def side(k: int):
    """The feature map's side at total stride 2^k."""
    return sympy.ceiling(R / 2**k)


@functools.cache  # the ledger's all-live sum asks again: build the model once
def cost_model(block: str) -> CostModel:
    """Forward FLOPs per stage (convolutions, the classifier) and per element-wise op,
    parameters per stage, and activations saved for a training backward."""
    t, EW = Terms(), ELEMENTWISE_FLOPS
    exp = 4 if block == "bottleneck" else 1

    def convolution(stage, c_in, c_out, k, s_out, count=1, s_in=None):
        s_in = s_out if s_in is None else s_in
        flops = count * 2 * B * c_out * s_out**2 * c_in * k * k
        t.add(Kind.FORWARD, stage, flops, mm=True, ops=CONV)
        # Backward: the weight gradient and (past the image, which needs none) the input
        # gradient, each a convolution of the forward's size.
        t.add(Kind.BACKWARD, stage, flops * (1 if stage == "stem" else 2), mm=True, ops=CONV_BWD)
        out = B * c_out * s_out**2
        moved(t, "convolutions", count * (B * c_in * s_in**2 + c_out * c_in * k * k + out) * e)
        moved(t, "batchnorm", count * (2 * out + 4 * c_out) * e, "γ, β, running μ and σ²")
        t.add(Kind.PARAMS, stage, count * c_out * c_in * k * k)
        # BatchNorm after it: its FLOPs, γ and β, its input (the conv output) and fp32 stats.
        t.add(
            Kind.FORWARD, "batchnorm", count * NORM_FWD_FLOPS * B * c_out * s_out**2, ops=BATCH_NORM
        )
        t.add(Kind.PARAMS, stage, count * 2 * c_out)
        t.add(Kind.ACTIVATION, "conv_outputs", count * B * c_out * s_out**2 * e, note="kept by BN")
        t.add(Kind.ACTIVATION, "bn_statistics", count * 2 * FP32_BYTES * c_out, note="fp32 μ, 1/σ")

    def relu(c, s, count=1):
        t.add(Kind.FORWARD, "relu", count * EW * B * c * s**2, ops=("aten::relu_", "aten.relu_"))
        moved(t, "relu", count * 2 * B * c * s**2 * e, "in place: read, write")
        t.add(Kind.ACTIVATION, "relu_outputs", count * B * c * s**2 * e, note="kept by ReLU")

    # Stem: 7×7/2 convolution, BN, ReLU, 3×3/2 max pooling.
    t.add(Kind.ACTIVATION, "image", B * C * R**2 * e, note="input of the first convolution")
    convolution("stem", C, w, 7, side(1), s_in=R)
    relu(w, side(1))
    moved(t, "pooling", B * w * (side(1) ** 2 + side(2) ** 2) * e, "max pooling")
    t.add(
        Kind.FORWARD,
        "maxpool",
        8 * B * w * side(2) ** 2,
        ops=("aten::max_pool2d", "aten.max_pool2d_with_indices"),
    )
    t.add(
        Kind.ACTIVATION,
        "maxpool",
        B * w * side(2) ** 2 * (INDEX_BYTES + e),
        note="int64 indices, and its output",
    )

    c_in, s_in = w, side(2)
    for i in range(4):
        stage, width, s = f"layer{i + 1}", w * 2**i, side(i + 2)
        for first, count in ((True, 1), (False, D[i] - 1)):
            cin, a = (c_in, s_in) if first else (width * exp, s)
            if block == "bottleneck":
                convolution(stage, cin, width, 1, a, count)
                relu(width, a, count)
                convolution(stage, width, width, 3, s, count, s_in=a)  # the stride sits here
                relu(width, s, count)
                convolution(stage, width, width * exp, 1, s, count)
            else:
                convolution(stage, cin, width, 3, s, count, s_in=a)
                relu(width, s, count)
                convolution(stage, width, width, 3, s, count)
            relu(width * exp, s, count)  # after the residual add; the block's output
            t.add(
                Kind.FORWARD,
                "residual_add",
                count * EW * B * width * exp * s**2,
                ops=("aten::add_", "aten.add_"),
            )
            if first and (i > 0 or cin != width * exp):  # projection shortcut
                convolution(stage, cin, width * exp, 1, s, s_in=s_in)
        c_in, s_in = width * exp, s

    # Head: global average pooling, the classifier.
    features = 8 * w * exp
    t.add(
        Kind.FORWARD,
        "avgpool",
        EW * B * features * side(5) ** 2,
        ops=("aten::adaptive_avg_pool2d", "aten._adaptive_avg_pool2d"),
    )
    moved(t, "pooling", B * features * (side(5) ** 2 + 1) * e, "average pooling")
    moved(t, "linear layers", (B * features + features * K + K + B * K) * e, "the classifier")
    t.add(Kind.FORWARD, "fc", 2 * B * features * K, mm=True, ops=LINEAR)
    t.add(Kind.BACKWARD, "fc", 2 * 2 * B * features * K, mm=True, ops=("aten.mm",), note="dX, dW")
    t.add(Kind.FORWARD, "fc_bias", EW * B * K, ops=LINEAR)
    t.add(Kind.PARAMS, "fc", features * K + K)
    t.add(Kind.ACTIVATION, "fc_input", B * features * e, note="pooled features")
    return t.model()


def build(cfg: Config, device: str | None = "meta"):
    from complexo.blocks.resnet import ResNet

    arch = PRESETS[cfg.model]
    return build_image(lambda: ResNet(arch), cfg, arch.channels, device)


def feature_maps(cfg: Config) -> str:
    return " → ".join(f"{-(-cfg.res // 2**k)}²" for k in range(1, 6))


def analyse(cfg: Config) -> Result:
    from complexo.conventions import CONV_NOTE

    block = PRESETS[cfg.model].block
    model, values = cost_model(block), cfg.values
    quantities = measure(lambda: build(cfg), values, model, QUANTITIES)
    summary = summarise(model, values, growing=(B, R, w), bounds={}, crossovers=())
    notes = [CONV_NOTE]
    if cfg.model in PUBLISHED:
        params, gmacs, source = PUBLISHED[cfg.model]
        notes.append(f"published ({source}): {params:,} parameters, {gmacs} GMAC at 224 per image")
    facts = {"feature maps": f"{feature_maps(cfg)} (stem, stages 1-4)"}
    peak, peak_note = cnn_peak.quantity(cfg)  # the training step's high-water mark
    notes.append(peak_note)
    return Result(NAME, asdict(cfg), values, model, [*quantities, peak], summary, notes, facts)


def examples():
    """Small ResNets at small and odd resolutions, for the registry-wide tests."""
    from hypothesis import strategies as st

    return st.builds(
        Config,
        model=st.sampled_from(["resnet18", "resnet50"]),
        res=st.integers(33, 70),
        batch=st.integers(1, 2),
        dtype=st.sampled_from(list(DTYPES)),
    )


ANALYSIS = register(
    Analysis(
        name=NAME,
        title="A ResNet alone: FLOPs per stage, parameters, activations at a resolution.",
        help="A ResNet (resnet18, 34, 50, 101, 152, built as torchvision builds them): forward "
        "FLOPs per stage and per element-wise op, parameters, training activations, at image "
        "side R; checked against fvcore, FlopCounterMode and autograd's saved tensors on the "
        "meta device.",
        config=Config,
        analyse=analyse,
        profiling=PROFILING,
        examples=examples,
        symbolic=SYMBOLIC,
    )
)
