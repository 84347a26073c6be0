"""The patch embeddings' and normalisation layers' training steps as they really peak
(complexo/analyses/patch_peak.py, norm_peak.py) against what the code did not compute from the
formula: torch's MemTracker under FakeTensorMode (any size, nothing allocated) and the CPU
profiler's record of every allocation and free (a real step at small sizes, one thread). Every
expected peak is derived by hand above it; conventions: bytes of tensor storages, the step
``out = f(x); out.sum().backward(); sgd.step()`` with ``out`` held."""

from __future__ import annotations

import pytest
import torch

from complexo.analyses import norm, norm_peak, patch, patch_peak
from complexo.measure import storage_bytes
from complexo.peak import cpu_step_peak, peak


def _cpu(module, inputs) -> int:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return cpu_step_peak(module, inputs)
    finally:
        torch.set_num_threads(threads)


def _ids(variant: dict) -> str:
    return ",".join(f"{k}={x}" for k, x in variant.items()) or "default"


# --- patch -----------------------------------------------------------------------------------


def _patch_peak(cfg, side):
    return peak(patch_peak.ledger(cfg, side).moments, cfg.values)


def test_vit_b16_patch_embedding_by_hand():
    """ViT-B/16's embedding, R=224, p=16, C=3, d=768, B=8, bf16 (e=2): W = (3·256·768 + 768)·2 =
    1,181,184, x = 8·3·224²·2 = 2,408,448, tokens Y = 8·196·768·2 = 2,408,448. Conv: at
    convolution_backward (dW, db at once) W + x + Y + out.sum() and its seed 2·2 + dW, db W =
    7,179,268. Linear: the patchify's copy of the pixels (x's bytes, saved by addmm) is live
    from the forward until addmm's backward has run, so it peaks at db with one x more:
    9,587,716. The all-live sum (2·W + Y + the pixels, and the linear side's copy) misses only
    out.sum() and its seed: 7,179,264 and 9,587,712, 4 bytes under each."""
    cfg = patch.Config(res=224, patch=16, channels=3, dim=768, batch=8, dtype="bf16")
    W, X, Y = (3 * 256 * 768 + 768) * 2, 8 * 3 * 224**2 * 2, 8 * 196 * 768 * 2
    conv_best = _patch_peak(cfg, "conv")
    assert conv_best.bytes == 2 * W + X + Y + 4 == 7_179_268
    assert conv_best.what == "the convolution's backward: dW, db (no dX)"
    linear_best = _patch_peak(cfg, "linear")
    assert linear_best.bytes == 2 * W + 2 * X + Y + 4 == 9_587_716
    assert linear_best.what == "addmm's backward: db (Σ dY)"
    for side, best in (("conv", conv_best), ("linear", linear_best)):
        assert patch_peak.tracked(cfg, side).bytes == best.bytes
    # conv: 2·W + Y + x (saved); linear: 2·W + Y + x (given) + the copy (saved) = one more x
    assert patch_peak.all_live(cfg, "conv") == 2 * W + X + Y
    assert patch_peak.all_live(cfg, "linear") == 2 * W + 2 * X + Y


PATCH_VARIANTS = [
    dict(),
    dict(batch=1, dtype="fp16"),
    dict(res=16, patch=16, channels=1),  # one patch of one channel: patch order is memory order
    dict(res=8, patch=1, channels=1),  # 1×1 patches of one channel: no copy either
    dict(frames=4, tubelet=2),
    dict(frames=4, dtype="bf16"),
    dict(dim=256, res=16, patch=8),  # the weights outweigh the pixels
]


@pytest.mark.parametrize("side", patch.SIDES)
@pytest.mark.parametrize("variant", PATCH_VARIANTS, ids=_ids)
def test_every_patch_variant_peaks_where_memtracker_says(side, variant):
    cfg = patch.Config(**{"res": 32, "patch": 8, "channels": 3, "dim": 16, "batch": 2, **variant})
    best, tracked = _patch_peak(cfg, side), patch_peak.tracked(cfg, side)
    assert (best.bytes, best.phase) == (tracked.bytes, tracked.phase)
    assert best.phase_peaks() == tracked.phase_peaks()


@pytest.mark.parametrize("variant", [dict(), dict(frames=4, tubelet=2)], ids=_ids)
def test_patch_embeddings_on_the_cpu(variant):
    """Real steps, R=32, p=8, C=3, d=16, B=2, fp32, one thread: N = 16 tokens a frame (32 a
    clip of 4 frames in tubelets of 2), Y = B·N·d·4 = 2,048 (4,096), db d·4 = 64.
    Linear: the CPU's mm for dW copies the output's gradient, the loss's seed expanded to
    (B, N, d) (a stride-0 view, which fake tensors never copy), contiguous: it peaks at dW with
    that copy live, Y − db above the ledger's db moment: 1,984 (4,032). Conv: the CPU's
    convolution backward copies the same seed and allocates oneDNN's scratch for dW inside
    the op (its size depends on the CPU's instruction set): bounded, more than nothing and at
    most the seed's copy and four times the weights and the pixels."""
    cfg = patch.Config(res=32, patch=8, channels=3, dim=16, batch=2, **variant)
    frames = cfg.frames // cfg.p_t if cfg.video else 1
    Y = 2 * 16 * frames * 16 * 4
    module, x = patch.build(cfg, "linear", "cpu")
    assert _cpu(module, (x,)) - _patch_peak(cfg, "linear").bytes == Y - 64
    module, x = patch.build(cfg, "conv", "cpu")
    W, X = storage_bytes(module.parameters()), storage_bytes([x])
    gap = _cpu(module, (x,)) - _patch_peak(cfg, "conv").bytes
    assert 0 < gap <= Y + 4 * (W + X), gap


# --- norm ------------------------------------------------------------------------------------


def _norm_peak(cfg):
    return peak(norm_peak.ledger(cfg).moments, cfg.values)


def test_layernorm_and_rmsnorm_at_llama_width_by_hand():
    """B=8, n=2048, d=4096, fp32: X = 8·2048·4096·4 = 268,435,456, S = B·n = 16,384 rows.
    LayerNorm peaks at its backward's one op: γ, β 2·4096·4 = 32,768 + x + y + μ, 1/σ 2·S·4 =
    131,072 + out.sum() and its seed 8 + dx + dγ, dβ 32,768 = 3·X + 196,616 = 805,502,984.
    RMSNorm (torch's composite ops) peaks at x²'s backward: γ 16,384 + x + y + 8 + dγ 16,384
    + dx̂·(1/rms) + d(x²) + x¹, 2·x¹ and their product with d(x²): 7·X + 32,776 =
    1,879,080,968, 2.3× LayerNorm's; the all-live sum (2·γ + y + x, 1/rms, x̂ saved) says
    3·X + 98,304 = 805,404,672, 57% under."""
    X = 8 * 2048 * 4096 * 4
    sizes = dict(batch=8, seq=2048, dim=4096)
    cfg = norm.Config(kind="layernorm", **sizes)
    best = _norm_peak(cfg)
    assert best.bytes == 3 * X + 32768 + 131072 + 8 + 32768 == 805_502_984
    assert best.what == "layernorm's backward: dx, dγ, dβ"
    assert norm_peak.tracked(cfg).bytes == best.bytes
    cfg = norm.Config(kind="rmsnorm", **sizes)
    best = _norm_peak(cfg)
    assert best.bytes == 7 * X + 16384 + 8 + 16384 == 1_879_080_968
    assert best.what == "x²'s backward: d(x²)·2·x"
    assert norm_peak.tracked(cfg).bytes == best.bytes
    assert norm_peak.all_live(cfg) == 3 * X + 2 * 16384 + 16384 * 4 == 805_404_672


def test_groupnorm_copies_the_seed_and_instancenorm_repeats_gamma():
    """C=4, R=4, B=2, fp32: X = 2·4·16·4 = 512. GroupNorm (g=2, S = B·g = 4): at its backward,
    γ, β 32 + x + y + μ, 1/σ 2·4·4 = 32 + 8 + the output's gradient copied contiguous X + dx +
    dγ, dβ 32 = 4·X + 104 = 2,152. InstanceNorm (S = B·C = 8): γ and β repeated per sample
    (8·4 = 32 each; β's freed when the forward returns, γ's saved), at batch_norm's backward: γ,
    β 32 + x + y + μ, 1/σ 64 + the repeated γ 32 + 8 + dx + the repeated dγ, dβ 64 = 3·X + 200
    = 1,736."""
    cfg = norm.Config(kind="groupnorm", batch=2, channels=4, res=4, groups=2)
    assert _norm_peak(cfg).bytes == norm_peak.tracked(cfg).bytes == 4 * 512 + 104 == 2152
    cfg = norm.Config(kind="instancenorm", batch=2, channels=4, res=4)
    assert _norm_peak(cfg).bytes == norm_peak.tracked(cfg).bytes == 3 * 512 + 200 == 1736


NORM_KINDS = [
    ("layernorm", "tokens"),
    ("rmsnorm", "tokens"),
    ("batchnorm", "image"),
    ("batchnorm", "tokens"),
    ("groupnorm", "image"),
    ("instancenorm", "image"),
    ("layernorm", "image"),
    ("rmsnorm", "image"),
]


def _norm_cfg(kind, layout, **kw):
    sizes = dict(seq=16, dim=32) if layout == "tokens" else dict(channels=8, res=8)
    if kind == "groupnorm":
        sizes["groups"] = 2
    return norm.Config(kind=kind, layout=layout, batch=2, **sizes, **kw)


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize(("kind", "layout"), NORM_KINDS)
def test_every_norm_variant_peaks_where_memtracker_says(kind, layout, affine, dtype):
    cfg = _norm_cfg(kind, layout, affine=affine, dtype=dtype)
    best, tracked = _norm_peak(cfg), norm_peak.tracked(cfg)
    assert (best.bytes, best.phase) == (tracked.bytes, tracked.phase)
    assert best.phase_peaks() == tracked.phase_peaks()


def _cpu_gap(kind, layout, affine, dtype) -> tuple[int, int, int]:
    """(the CPU's peak − the ledger's, X, e) for torch's module of one variant."""
    cfg = _norm_cfg(kind, layout, affine=affine, dtype=dtype)
    module, x = norm.build(cfg, "torch", "cpu")
    # cpu_step_peak counts the parameters and x as given; BatchNorm's buffers are given too
    cpu = _cpu(module, (x,)) + storage_bytes(module.buffers())
    return cpu - _norm_peak(cfg).bytes, storage_bytes([x]), x.element_size()


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("affine", [True, False])
def test_norms_on_the_cpu_name_each_kernels_own_copies(affine, dtype):
    """Real steps, one thread, tokens (B=2, n=16, d=32) or an image (B=2, C=8, R=8): X = 4,096
    bytes in fp32, 2,048 in bf16. RMSNorm runs the same composite ops the ledger reads: its
    peak to the byte. The fused kernels allocate inside their op what no storage an op
    returns shows: LayerNorm's CPU backward copies the output's gradient (the seed expanded, a
    stride-0 view) contiguous, X, and with γ, β holds their partial sums, 2·P·e (P = d = 32, or
    C·R² = 512 for an image); BatchNorm's and InstanceNorm's (a batch norm inside) one
    per-channel buffer of S·e (S = C, d, or B·C = 16); GroupNorm's its fp32 per-(sample,
    channel) sums of dy·x and dy, 2·B·C·4 = 128 (the contiguous copy of the seed both make)."""
    for (kind, layout), per_e in [
        (("rmsnorm", "tokens"), lambda X, e: 0),
        (("rmsnorm", "image"), lambda X, e: 0),
        (("layernorm", "tokens"), lambda X, e: X + 2 * 32 * e * affine),
        (("layernorm", "image"), lambda X, e: X + 2 * 512 * e * affine),
        (("batchnorm", "image"), lambda X, e: 8 * e),
        (("batchnorm", "tokens"), lambda X, e: 32 * e),
        (("instancenorm", "image"), lambda X, e: 16 * e),
        (("groupnorm", "image"), lambda X, e: 2 * 2 * 8 * 4),
    ]:
        gap, X, e = _cpu_gap(kind, layout, affine, dtype)
        assert gap == per_e(X, e), (kind, layout, gap)


def _avx512() -> bool:
    return torch.backends.cpu.get_cpu_capability() == "AVX512"


@pytest.mark.skipif(not _avx512(), reason="oneDNN's blocked layouts follow the instruction set")
@pytest.mark.parametrize(
    "variant",
    [dict(), dict(res=64), dict(dim=32), dict(batch=4), dict(frames=4, tubelet=2)],
    ids=_ids,
)
def test_patch_convolution_on_onednn_holds_the_seeds_copies_and_blocked_dw(variant):
    """p=8 (C=3, d=16 or 32), fp32, one thread, AVX-512: aten::convolution_backward (no dX:
    the pixels need no gradient) allocates the output's gradient made contiguous (the loss's
    seed, Y = B·N·d·4), oneDNN's reorder of it (Y), then its blocked dW and db (W + b, the
    weights' bytes); it lets the reorder go and copies dW and db out (W + b again) before it
    returns. The ledger's moment holds dW and db, so the CPU's peak is the ledger's +
    max(2·Y + W_b, Y + 2·W_b) − W_b = Y + max(Y, W_b), W_b = W + b: at R=32, d=16, B=2:
    2,048 + 12,352 = 14,400; at R=64: 8,192 + 12,352 = 20,544."""
    cfg = patch.Config(**{"res": 32, "patch": 8, "channels": 3, "dim": 16, "batch": 2, **variant})
    frames = cfg.frames // cfg.p_t if cfg.video else 1
    Y = cfg.batch * (cfg.res // 8) ** 2 * frames * cfg.dim * 4
    module, x = patch.build(cfg, "conv", "cpu")
    Wb = storage_bytes(module.parameters())
    best = _patch_peak(cfg, "conv")
    assert best.what == "the convolution's backward: dW, db (no dX)"
    gap = _cpu(module, (x,)) - best.bytes
    assert gap == Y + max(Y, Wb)
    if variant == dict(res=64):
        assert gap == 20_544
