"""The architectures complexo knows by name, and what their papers and model cards publish:
plain data, no torch, so that the analyses (and ``complexo --help``) load without it. The
reference modules in :mod:`complexo.blocks` are built from these configs."""

from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------------------------------------
# Decoder-only transformers (blocks/transformer.py): the GPT-2 family and LLaMA

ARCHS = ("gpt2", "llama")


@dataclass(frozen=True)
class ModelConfig:
    arch: str  # one of ARCHS
    layers: int  # L
    dim: int  # d
    heads: int  # h
    vocab: int  # V
    ctx: int  # context length: the learned positions P of gpt2, the trained context of llama
    mlp: int  # f, hidden width of the MLP
    kv_heads: int | None = None  # G key/value heads (grouped-query attention); None: h
    window: int | None = None  # W, sliding-window attention: each token sees the last W; None: all

    @property
    def groups(self) -> int:
        return self.kv_heads or self.heads

    @property
    def learned_positions(self) -> bool:
        return self.arch == "gpt2"

    @property
    def bias(self) -> bool:
        return self.arch == "gpt2"

    @property
    def tied(self) -> bool:
        return self.arch == "gpt2"

    @property
    def swiglu(self) -> bool:
        return self.arch == "llama"


def gpt2(layers: int, dim: int, heads: int, *, ctx: int = 1024, vocab: int = 50257):
    return ModelConfig("gpt2", layers, dim, heads, vocab, ctx, 4 * dim)


def llama_mlp_width(dim: int, multiple_of: int = 256) -> int:
    """LLaMA's SwiGLU width: 2/3 of 4·d, rounded up to a multiple of 256 (11008 for d = 4096)."""
    f = int(2 * 4 * dim / 3)
    return multiple_of * ((f + multiple_of - 1) // multiple_of)


TRANSFORMERS: dict[str, ModelConfig] = {
    "gpt2": gpt2(12, 768, 12),
    "gpt2-medium": gpt2(24, 1024, 16),
    "gpt2-large": gpt2(36, 1280, 20),
    "gpt2-xl": gpt2(48, 1600, 25),
    # GPT-3's largest model: GPT-2's blocks at d = 12288, 96 layers and heads, 2048 positions.
    "gpt3-175b": gpt2(96, 12288, 96, ctx=2048),
    "llama-7b": ModelConfig("llama", 32, 4096, 32, 32000, 2048, llama_mlp_width(4096)),
    # LLaMA 2 (Touvron et al. 2023b, Table 1: 4096 context; GQA for 70B only). The 70B MLP is
    # not 2/3·4·d rounded (22016): Meta's ffn_dim_multiplier 1.3 makes it 28672.
    "llama-2-13b": ModelConfig("llama", 40, 5120, 40, 32000, 4096, llama_mlp_width(5120)),
    "llama-2-70b": ModelConfig("llama", 80, 8192, 64, 32000, 4096, 28672, kv_heads=8),
    # LLaMA 3: GQA with 8 key/value heads at every size, a 128,256-token vocabulary, 8192
    # context; MLP widths 14336 and 28672 (multiplier 1.3, multiple of 1024).
    "llama-3-8b": ModelConfig("llama", 32, 4096, 32, 128256, 8192, 14336, kv_heads=8),
    "llama-3-70b": ModelConfig("llama", 80, 8192, 64, 128256, 8192, 28672, kv_heads=8),
    # Mistral 7B v0.1 (Jiang et al. 2023, Table 1): LLaMA's blocks with GQA (8), MLP 14336,
    # a 4096-token sliding window and an 8192-token context.
    "mistral-7b": ModelConfig("llama", 32, 4096, 32, 32000, 8192, 14336, kv_heads=8, window=4096),
}

# What the model cards and papers say, and where.
TRANSFORMERS_PUBLISHED: dict[str, tuple[int, str]] = {
    "gpt2": (124_439_808, "Hugging Face gpt2, num_parameters()"),
    "gpt2-medium": (354_823_168, "Hugging Face gpt2-medium, num_parameters()"),
    "gpt2-large": (774_030_080, "Hugging Face gpt2-large, num_parameters()"),
    "gpt2-xl": (1_557_611_200, "Hugging Face gpt2-xl, num_parameters()"),
    "gpt3-175b": (175_000_000_000, "Brown et al. 2020, Table 2.1: 175.0B, given to 0.1B"),
    "llama-7b": (6_738_415_616, "Hugging Face huggyllama/llama-7b, num_parameters()"),
    "llama-2-13b": (13_015_864_320, "Hugging Face meta-llama/Llama-2-13b-hf, num_parameters()"),
    "llama-2-70b": (68_976_648_192, "Hugging Face meta-llama/Llama-2-70b-hf, num_parameters()"),
    "llama-3-8b": (8_030_261_248, "Hugging Face meta-llama/Meta-Llama-3-8B, num_parameters()"),
    "llama-3-70b": (
        70_553_706_496,
        "Hugging Face meta-llama/Meta-Llama-3-70B, num_parameters()",
    ),
    "mistral-7b": (7_241_732_096, "Hugging Face mistralai/Mistral-7B-v0.1, num_parameters()"),
}


# ---------------------------------------------------------------------------------------------
# ResNets (blocks/resnet.py)


@dataclass(frozen=True)
class ResNetConfig:
    block: str  # "basic" or "bottleneck"
    depths: tuple[int, int, int, int]  # blocks per stage
    width: int = 64  # channels of the first stage (its bottleneck width)
    classes: int = 1000
    channels: int = 3

    @property
    def expansion(self) -> int:
        return 4 if self.block == "bottleneck" else 1


RESNETS: dict[str, ResNetConfig] = {
    "resnet18": ResNetConfig("basic", (2, 2, 2, 2)),
    "resnet34": ResNetConfig("basic", (3, 4, 6, 3)),
    "resnet50": ResNetConfig("bottleneck", (3, 4, 6, 3)),
    "resnet101": ResNetConfig("bottleneck", (3, 4, 23, 3)),
    "resnet152": ResNetConfig("bottleneck", (3, 8, 36, 3)),
}

# torchvision's model docs: parameters, and "GFLOPS" at 224 (multiply-accumulates, in G).
RESNETS_PUBLISHED: dict[str, tuple[int, float, str]] = {
    "resnet18": (11_689_512, 1.81, "torchvision resnet18 (IMAGENET1K_V1)"),
    "resnet34": (21_797_672, 3.66, "torchvision resnet34 (IMAGENET1K_V1)"),
    "resnet50": (25_557_032, 4.09, "torchvision resnet50 (IMAGENET1K_V2)"),
    "resnet101": (44_549_160, 7.80, "torchvision resnet101 (IMAGENET1K_V2)"),
    "resnet152": (60_192_808, 11.51, "torchvision resnet152 (IMAGENET1K_V2)"),
}


# ---------------------------------------------------------------------------------------------
# Vision Transformers (blocks/vit.py)


@dataclass(frozen=True)
class ViTConfig:
    patch: int  # p
    dim: int  # d
    heads: int  # h
    layers: int  # L
    mlp: int  # f
    classes: int = 1000
    channels: int = 3


_SIZES = {"ti": (192, 3, 12), "s": (384, 6, 12), "b": (768, 12, 12), "l": (1024, 16, 24)}
_SIZES["h"] = (1280, 16, 32)

# Activation checkpointing of a ViT's training step (blocks/vit.py, ``complexo vit --checkpoint``).
VIT_CHECKPOINTS = ("none", "full", "selective")

VITS: dict[str, ViTConfig] = {
    f"vit-{size}{patch}": ViTConfig(patch, d, heads, layers, 4 * d)
    for size, (d, heads, layers) in _SIZES.items()
    for patch in (16, 14, 32)
}
# DeiT differs from ViT in its training recipe only: the same networks at these sizes.
VITS |= {f"deit-{size}16": VITS[f"vit-{size}16"] for size in ("ti", "s", "b")}

# Published parameter counts (at the resolution given) and, where published, "GFLOPS"
# (multiply-accumulates, in G) at that resolution.
VITS_PUBLISHED: dict[str, tuple[int, int, float | None, str]] = {
    "vit-b16": (86_567_656, 224, 17.56, "torchvision vit_b_16"),
    "vit-b32": (88_224_232, 224, 4.41, "torchvision vit_b_32"),
    "vit-l16": (304_326_632, 224, 61.55, "torchvision vit_l_16"),
    "vit-l32": (306_535_400, 224, 15.38, "torchvision vit_l_32"),
    "vit-h14": (633_470_440, 518, 1016.72, "torchvision vit_h_14 IMAGENET1K_SWAG_E2E_V1"),
    "deit-ti16": (5_717_416, 224, None, "Touvron et al. 2021 / timm deit_tiny_patch16_224"),
    "deit-s16": (22_050_664, 224, None, "Touvron et al. 2021 / timm deit_small_patch16_224"),
    "deit-b16": (86_567_656, 224, None, "Touvron et al. 2021 / timm deit_base_patch16_224"),
}
# Second cards of the same networks at another resolution (the position table grows with R),
# cited instead of the first at their own resolution.
VITS_PUBLISHED_AT: dict[tuple[str, int], tuple[int, int, float | None, str]] = {
    ("vit-b16", 384): (86_859_496, 384, 55.48, "torchvision vit_b_16 IMAGENET1K_SWAG_E2E_V1"),
    ("vit-h14", 224): (632_045_800, 224, 167.3, "torchvision vit_h_14 IMAGENET1K_SWAG_LINEAR_V1"),
}


# ---------------------------------------------------------------------------------------------
# LoRA targets (blocks/lora.py)

# Which linear layers each target names, in complexo's reference blocks (attention.py,
# transformer.py): the attention projections, and every matrix of the MLP (GELU or SwiGLU).
TARGETS: dict[str, tuple[str, ...]] = {
    "q": ("q_proj",),
    "k": ("k_proj",),
    "v": ("v_proj",),
    "o": ("out_proj",),
    "mlp": ("fc_in", "fc_out", "gate_proj", "up_proj", "down_proj"),
}
DEFAULT_TARGETS = ("q", "v")  # as in the LoRA paper's GPT experiments
