"""The newer blocks' training steps as they really peak (complexo/analyses/*_peak.py for mlp,
conv, video, patch), against what the code did not compute from the formula: torch's
MemTracker under FakeTensorMode (any size, nothing allocated) and the CPU profiler's record of
every allocation and free (a real step at small sizes, one thread). Every expected peak is
derived by hand above it; conventions: fp32 unless said, bytes of tensor storages, the step
``out = f(x); out.sum().backward(); sgd.step()`` with ``out`` held."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from complexo.analyses import conv, conv_peak, mlp, mlp_peak, video, video_peak
from complexo.peak import cpu_step_peak, peak


def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    return threads


def _cpu(module, inputs) -> int:
    threads = _one_thread()
    try:
        return cpu_step_peak(module, inputs)
    finally:
        torch.set_num_threads(threads)


def _ids(variant: dict) -> str:
    return ",".join(f"{k}={x}" for k, x in variant.items()) or "default"


# --- mlp -------------------------------------------------------------------------------------


def _mlp_peak(cfg, side):
    return peak(mlp_peak.ledger(cfg, side).moments, cfg.values)


def test_gelu_mlp_peaks_at_fc_outs_dx_and_swiglu_at_the_products_backward():
    """B=2, n=16, d=8, f=32, f_g=24, fp32: X = 2·16·8·4 = 1024, H = 2·16·32·4 = 4096, G =
    2·16·24·4 = 3072. GELU: weights 2·8·32·4 = 2048 + x 1024 + h, GELU(h) 2·4096 + the output
    1024 + out.sum() and its seed 8 + fc_out's dW 8·32·4 = 1024 + its dX 4096 = 17416 (the
    forward's high-water mark: 2048 + 1024 + 8192 + 1024 + 8 = 12296). SwiGLU: weights
    3·8·24·4 = 2304 + x 1024 + g, SiLU(g), u 3·3072 (the product freed by down_proj's
    backward) + the output 1024 + 8 + down_proj's dW 768 + its dX and the product's two
    gradients 3·3072 = 23560: six G live at once."""
    cfg = mlp.Config(batch=2, seq=16, dim=8, hidden=32, gated_hidden=24)
    best = _mlp_peak(cfg, "gelu")
    assert (best.bytes, best.phase, best.what) == (17416, "backward", "fc_out's backward: dX")
    assert best.phase_peaks()["forward"] == 12296
    assert mlp_peak.tracked(cfg, "gelu").bytes == 17416
    best = _mlp_peak(cfg, "gated")
    assert (best.bytes, best.what) == (23560, "the product's backward: dy⊙act(g)")
    assert mlp_peak.tracked(cfg, "gated").bytes == 23560
    # the all-live sum: 2·weights + the output + saved (x, and h, GELU(h) or 4 G):
    # GELU 4096 + 1024 + 1024 + 8192 = 14336, 18% under; gated 4608 + 1024 + 1024 + 12288 =
    # 18944, 20% under
    assert (mlp_peak.all_live(cfg, "gelu"), mlp_peak.all_live(cfg, "gated")) == (14336, 18944)


MLP_VARIANTS = [
    dict(),
    dict(bias=True),
    dict(dtype="bf16"),
    dict(gated="geglu", bias=True, dtype="fp16"),
    dict(match_params=True),
    dict(seq=1, dim=64),  # the weights outweigh the tokens: the step peaks in its tail
]


@pytest.mark.parametrize("side", mlp.SIDES)
@pytest.mark.parametrize("variant", MLP_VARIANTS, ids=_ids)
def test_every_mlp_variant_peaks_where_memtracker_says(side, variant):
    """Against MemTracker, every phase's high-water mark, not only the step's."""
    cfg = mlp.Config(**{"batch": 2, "seq": 16, "dim": 8, **variant})
    best, tracked = _mlp_peak(cfg, side), mlp_peak.tracked(cfg, side)
    assert (best.bytes, best.phase) == (tracked.bytes, tracked.phase)
    assert best.phase_peaks() == tracked.phase_peaks()


def test_llama_7b_mlp_step_under_fake_tensors():
    """LLaMA-7B's SwiGLU MLP (d = 4096, f_g = 11008), B=8, n=2048, bf16, which no CPU here
    could hold: weights 3·4096·11008·2 = 270,532,608, X = 8·2048·4096·2 = 134,217,728, G =
    8·2048·11008·2 = 360,710,144; at the product's backward weights + x and the output 2·X +
    g, SiLU(g), u, down_proj's dX and the product's two gradients 6·G + down_proj's dW
    4096·11008·2 = 90,177,536 + 2·2 = 2,793,406,468, and MemTracker agrees to the byte."""
    cfg = mlp.Config(batch=8, seq=2048, dim=4096, gated_hidden=11008, dtype="bf16")
    X, G = 8 * 2048 * 4096 * 2, 8 * 2048 * 11008 * 2
    expected = 3 * 4096 * 11008 * 2 + 2 * X + 6 * G + 4096 * 11008 * 2 + 4
    best = _mlp_peak(cfg, "gated")
    assert best.bytes == expected == 2_793_406_468
    assert mlp_peak.tracked(cfg, "gated").bytes == expected


@pytest.mark.parametrize("bias", [False, True])
def test_mlps_on_the_cpu_add_the_seeds_copy_at_fc_out(bias):
    """Real steps, B=2, n=64, d=32 (f = 128, f_g = 256), one thread. The gated MLP's peak is
    the ledger's to the byte. The GELU MLP's is X = 2·64·32·4 = 16384 bytes more without
    biases: fc_out's backward, where it peaks, multiplies the output's gradient, the loss's
    seed expanded to (B, n, d) (a stride-0 view, which fake tensors never copy), and the
    CPU's mm copies it contiguous for the product. With biases the peak moment is the
    bias's Σ dY, after the copy is freed: X less that db, d·4 = 128: 16256 more."""
    cfg = mlp.Config(batch=2, seq=64, dim=32, bias=bias)
    for side, gap in (("gated", 0), ("gelu", 16384 - 128 * bias)):
        module, x = mlp.build(cfg, side, "cpu")
        assert _cpu(module, (x,)) - _mlp_peak(cfg, side).bytes == gap


# --- conv ------------------------------------------------------------------------------------


def _conv_peak(cfg, side):
    return peak(conv_peak.ledger(cfg, side).moments, cfg.values)


def _moment(cfg, side, what) -> int:
    """The ledger's live bytes just after the allocation named ``what``."""
    best = _conv_peak(cfg, side)
    return next(b for _, name, b in best.timeline if name == what)


def test_unfolded_columns_are_live_from_the_forward_to_the_products_backward():
    """C_in=4, C_out=8, k=3, R=9, B=2, fp32, bias: S = 9, U = B·C_in·k²·S²·4 = 2·36·81·4 =
    23,328 (the columns), Y = 2·8·81·4 = 5,184, x 2·4·81·4 = 2,592, weights (8·36 + 8)·4 =
    1,184. Direct: weights, dW, db 2·1,184 + x, dX 2·2,592 + the output 5,184 + 8 = 12,744, at
    the convolution's backward. Unfolded: F.linear copies the transposed columns (B > 1), so
    the forward holds two U and, adding the bias out of place, two Y: 1,184 + 2,592 + 2·23,328
    + 2·5,184 = 60,800, 4.8× the direct step's peak; the backward's dcols moment holds the
    saved copy and dcols, 3,776 + 2·23,328 + 5,184 + 8 + db 32 + dW 1,152 = 56,808."""
    cfg = conv.Config(cin=4, cout=8, kernel=3, res=9, batch=2)
    assert _conv_peak(cfg, "standard").bytes == conv_peak.tracked(cfg, "standard").bytes == 12744
    cfg = conv.Config(cin=4, cout=8, kernel=3, res=9, batch=2, impl="unfold")
    best = _conv_peak(cfg, "standard")
    assert (best.bytes, best.phase, best.what) == (60800, "forward", "+ the bias (out of place)")
    assert best.phase_peaks()["backward"] == 56808
    tracked = conv_peak.tracked(cfg, "standard")
    assert (tracked.bytes, tracked.phase_peaks()["backward"]) == (60800, 56808)


CONV_VARIANTS = [
    dict(),
    dict(bias=False),
    dict(stride=2),
    dict(frames=4),
    dict(frames=4, causal=True),
    dict(frames=5, causal=True, stride=2, bias=False, kernel=5),
    dict(frames=3, causal=True, dtype="bf16"),
    dict(impl="unfold"),
    dict(impl="unfold", batch=1),  # the transposed columns fold as a view: no copy
    dict(impl="unfold", bias=False, stride=3),
    dict(impl="unfold", res=1),  # one output pixel: contiguous columns, one addmm
    dict(impl="unfold", cin=1, kernel=1, dtype="fp16"),  # C_in·k² = 1: the same
    dict(cin=64, cout=64, res=4),  # the weights outweigh the maps
]


@pytest.mark.parametrize("side", conv.SIDES)
@pytest.mark.parametrize("variant", CONV_VARIANTS, ids=_ids)
def test_every_conv_variant_peaks_where_memtracker_says(side, variant):
    cfg = conv.Config(**{"cin": 4, "cout": 8, "res": 9, "batch": 2, **variant})
    best, tracked = _conv_peak(cfg, side), conv_peak.tracked(cfg, side)
    assert (best.bytes, best.phase) == (tracked.bytes, tracked.phase)
    assert best.phase_peaks() == tracked.phase_peaks()


def test_a_video_vaes_causal_3d_convolution_under_fake_tensors():
    """C_in = C_out = 128, k = 3, T = 17 frames of 256², B=1, bf16, causal, no CPU run: x and the
    output 128·17·256²·2 = 285,212,672 each, F.pad's copy P = 128·(17 + 2)·258²·2 =
    323,767,296, weights (128·128·27 + 128)·2 = 884,992. At the convolution's backward the
    padded copy and its gradient are live at once: 2·884,992 + x + the output + 2·P + 2·2 =
    1,219,729,924, and MemTracker agrees to the byte."""
    cfg = conv.Config(cin=128, cout=128, kernel=3, res=256, frames=17, causal=True, dtype="bf16")
    X, P, W = 128 * 17 * 256**2 * 2, 128 * 19 * 258**2 * 2, (128 * 128 * 27 + 128) * 2
    best = _conv_peak(cfg, "standard")
    assert best.bytes == 2 * W + 2 * X + 2 * P + 4 == 1_219_729_924
    assert best.what == "the convolution's backward: dX, dW, db"
    assert conv_peak.tracked(cfg, "standard").bytes == best.bytes


def test_unfolded_columns_on_the_cpu_and_x_grads_storage():
    """Real steps (im2col, mm, col2im: aten's own CPU kernels), C_in=4, C_out=8, k=3, R=9, fp32.
    B=1, no bias: the ledger's peak at dcols (the columns fold as a view: no copy) and Y =
    8·81·4 = 2,592 more, the loss's seed expanded to the output's shape, which the CPU's mm
    copies contiguous (fake tensors never copy it). B=2, with or without a bias: the CPU peaks
    at col2im, U = 2·36·81·4 = 23,328 above the ledger's dcols moment: the CPU's col2im makes
    its output with empty_like(dcols), U bytes, and resizes it down to x's shape (the storage
    keeps its U bytes: x.grad holds them after the step, where the ledger counts x's 2·4·81·4
    = 2,592), and copies the transposed dcols contiguous (U); the saved copy of the columns
    and dcols' own U are freed by then. With a bias the real F.linear adds it in place
    (FakeTensor, a tensor subclass, takes the out-of-place add): the CPU's forward holds one
    Y less than the ledger's 60,800."""
    for batch, bias, gap in ((1, False, 2592), (2, False, 23328), (2, True, 23328)):
        cfg = conv.Config(cin=4, cout=8, kernel=3, res=9, batch=batch, bias=bias, impl="unfold")
        module, x = conv.build(cfg, "standard", "cpu")
        dcols = _moment(cfg, "standard", "the product's backward: dcols")
        assert _cpu(module, (x,)) - dcols == gap
    module, x = conv.build(cfg, "standard", "cpu")
    module(x).sum().backward()
    assert (x.grad.untyped_storage().nbytes(), x.grad.numel() * 4) == (23328, 2592)


def _avx512() -> bool:
    return torch.backends.cpu.get_cpu_capability() == "AVX512"


@pytest.mark.skipif(not _avx512(), reason="oneDNN's blocked layouts follow the instruction set")
@pytest.mark.parametrize(
    "variant",
    [
        dict(),
        dict(kernel=5),
        dict(res=16, bias=False),
        dict(cout=48, res=16, batch=4),
        dict(batch=1, kernel=5),  # B = 1 with a kernel over 3×3: oneDNN still
        dict(frames=4),
        dict(frames=4, causal=True),
    ],
    ids=_ids,
)
def test_direct_convolution_on_onednn_holds_the_seeds_copy_and_two_reorders(variant):
    """C_in=16, C_out=32, k=3, R=32, B=2, fp32, one thread, AVX-512 (16-channel blocks: no
    padding at these channel counts). aten::convolution_backward (mkldnn) runs the data
    gradient, then the weight gradient; during the latter it holds, beside the ledger's dX, dW
    and db (its own blocked dW and db made first, then copied out), three storages no op
    returns: the output's gradient made contiguous (the loss's seed, expanded: Y), and
    oneDNN's reorders of that gradient (Y) and of the convolution's input (X_in: x, or the
    causally padded P). So the CPU's peak is the ledger's + 2·Y + X_in, e.g. 2·262,144 +
    131,072 = 655,360 at the default sizes (+117%); the data gradient's moment (the seed's
    copy, the gradient's and the weight's reorders, the blocked dX) is lower by X + b."""
    cfg = conv.Config(**{"cin": 16, "cout": 32, "kernel": 3, "res": 32, "batch": 2, **variant})
    frames = cfg.frames or 1
    Y = cfg.batch * cfg.cout * frames * cfg.res**2 * 4
    pad = cfg.kernel - 1 if cfg.causal else 0  # --causal: (k − 1) frames before, k//2 a side
    x_in = cfg.batch * 16 * (frames + pad) * (cfg.res + (pad if cfg.causal else 0)) ** 2 * 4
    module, x = conv.build(cfg, "standard", "cpu")
    assert _cpu(module, (x,)) - _conv_peak(cfg, "standard").bytes == 2 * Y + x_in


@pytest.mark.skipif(not _avx512(), reason="oneDNN's blocked layouts follow the instruction set")
@pytest.mark.parametrize(
    "cin,cout,res,batch", [(4, 8, 9, 2), (3, 24, 16, 2), (8, 16, 16, 4)], ids=str
)
def test_direct_convolution_on_onednn_with_padded_channel_blocks(cin, cout, res, batch):
    """Channel counts under a 16-channel block: oneDNN pads each to whole blocks (c̄ =
    16·⌈c/16⌉), and the peak moves to the data gradient, where aten::convolution_backward
    holds the output's gradient made contiguous (Y), its blocked reorder (Ȳ = B·c̄_out·R²·4),
    the weight reordered for the data gradient (W̄ = c̄_out·c̄_in·k²·4) and the blocked dX
    (X̄ = B·c̄_in·R²·4), before the ledger's dX, dW, db exist: the CPU's peak is the
    ledger's + Y + Ȳ + W̄ + X̄ − (X + W + b). At 4→8, R=9, B=2: 5,184 + 10,368 + 9,216 +
    10,368 − (2,592 + 1,152 + 32) = 31,360."""
    cfg = conv.Config(cin=cin, cout=cout, kernel=3, res=res, batch=batch)
    blocks = lambda c: -(-c // 16) * 16  # noqa: E731
    X, Y = batch * cin * res**2 * 4, batch * cout * res**2 * 4
    W, b = cout * cin * 9 * 4, cout * 4
    held = Y + batch * blocks(cout) * res**2 * 4 + blocks(cout) * blocks(cin) * 9 * 4
    held += batch * blocks(cin) * res**2 * 4
    module, x = conv.build(cfg, "standard", "cpu")
    assert _cpu(module, (x,)) - _conv_peak(cfg, "standard").bytes == held - (X + W + b)


@pytest.mark.skipif(not _avx512(), reason="oneDNN's blocked layouts follow the instruction set")
@pytest.mark.parametrize("variant", [dict(), dict(cout=16), dict(batch=4)], ids=_ids)
def test_stride_2_convolution_on_onednn_peaks_holding_three_input_sized_copies(variant):
    """C_in=16, k=3, R=32, stride 2 (output R/2), fp32, one thread, AVX-512: the allocation
    record inside aten::convolution_backward (mkldnn) peaks after the data gradient, holding
    the output's gradient made contiguous (Y = B·C_out·(R/2)²·4) and three input-sized
    storages (X = B·C_in·R²·4): oneDNN's blocked dX, its reorder to torch's layout and a
    second X-sized copy, made before the blocked one is let go; the ledger's moment holds dX,
    dW and db there. So the CPU's peak is the ledger's + Y + 3·X − (X + W + b): at C_out=32,
    B=2: 65,536 + 3·131,072 − (131,072 + 18,432 + 128) = 309,120 (the data gradient's own
    moment, Y + Ȳ + W̄ + dX̄ and a 69,656-byte scratch for the strided data gradient, is
    lower at these sizes; at R=16 it is the higher one, not pinned here)."""
    cfg = conv.Config(
        **{"cin": 16, "cout": 32, "kernel": 3, "res": 32, "batch": 2, "stride": 2, **variant}
    )
    Y = cfg.batch * cfg.cout * (cfg.res // 2) ** 2 * 4
    X = cfg.batch * cfg.cin * cfg.res**2 * 4
    W, b = cfg.cout * cfg.cin * 9 * 4, cfg.cout * 4
    module, x = conv.build(cfg, "standard", "cpu")
    gap = _cpu(module, (x,)) - _conv_peak(cfg, "standard").bytes
    assert gap == Y + 3 * X - (X + W + b)
    if not variant:
        assert gap == 309_120


@pytest.mark.parametrize(
    "variant",
    [dict(), dict(bias=False), dict(cin=8, cout=16, res=16), dict(cin=4, cout=8, res=9)],
    ids=_ids,
)
def test_direct_convolution_at_batch_1_holds_the_seeds_copy_and_im2cols_columns(variant):
    """B=1, k=3, C_in·R² ≤ 20,480, one thread: torch picks its native kernel
    (aten::thnn_conv2d, not mkldnn: ATen's use_mkldnn wants B > 1, a kernel over 3×3, groups
    or a larger input), whose backward (aten::_slow_conv2d_backward) unfolds x into im2col's
    columns, C_in·k²·R²·4 bytes, beside the output's gradient made contiguous (Y): at C_in=16,
    C_out=32, R=32: 16·9·1024·4 + 32·1024·4 = 589,824 + 131,072 = 720,896 above the ledger,
    whatever the instruction set."""
    cfg = conv.Config(**{"cin": 16, "cout": 32, "kernel": 3, "res": 32, "batch": 1, **variant})
    Y = cfg.cout * cfg.res**2 * 4
    columns = cfg.cin * 9 * cfg.res**2 * 4
    module, x = conv.build(cfg, "standard", "cpu")
    assert _cpu(module, (x,)) - _conv_peak(cfg, "standard").bytes == Y + columns


@pytest.mark.skipif(not _avx512(), reason="oneDNN's blocked layouts follow the instruction set")
@pytest.mark.parametrize(
    "variant", [dict(), dict(cout=16, res=16), dict(res=16, bias=False)], ids=_ids
)
def test_separable_convolution_on_the_cpu_holds_the_depthwise_reorders(variant):
    """C_in=16, C_out=32, k=3, R=32, B=2, one thread, AVX-512: the pointwise 1×1 convolution
    runs torch's native kernel (one thread, B < 16), which adds nothing at the peak; the
    depthwise one (groups = C_in: oneDNN) holds at its weight gradient the reorders of its
    output's gradient and of x, X each: the ledger's peak (the depthwise backward) + 2·X, e.g.
    2·(2·16·32²·4) = 262,144."""
    cfg = conv.Config(**{"cin": 16, "cout": 32, "kernel": 3, "res": 32, "batch": 2, **variant})
    X = cfg.batch * 16 * cfg.res**2 * 4
    best = _conv_peak(cfg, "separable")
    assert best.what == "the depthwise convolution's backward: dX, dW, db"
    module, x = conv.build(cfg, "separable", "cpu")
    assert _cpu(module, (x,)) - best.bytes == 2 * X


@pytest.mark.parametrize("variant", [dict(), dict(frames=4), dict(frames=4, causal=True)], ids=_ids)
def test_direct_convolutions_on_the_cpu_add_their_kernels_copies(variant):
    """C_in=16, C_out=32, k=3, R=32, B=2, fp32, one thread: the CPU's convolution backward
    copies what MemTracker never sees, inside the op: the loss's seed expanded to the output's
    shape made contiguous (Y), and oneDNN's reordered copies of the output's gradient and of
    the input for dW (their layout, and so whether and how much, depends on the CPU's
    instruction set; on AVX-512 here the standard 2D step holds 2·Y + X = 2·262,144 + 131,072
    = 655,360 bytes more, +117%). Bounded here on any CPU, both sides: more than nothing, at
    most those copies of the output and the input (P with --causal) twice over; the tests
    above pin each path's gap exactly (oneDNN on AVX-512, the native kernel at B = 1)."""
    cfg = conv.Config(cin=16, cout=32, kernel=3, res=32, batch=2, **variant)
    frames = cfg.frames or 1
    Y = 2 * 32 * frames * 32**2 * 4
    x_in = 2 * 16 * (frames + 2 if cfg.causal else frames) * (34 if cfg.causal else 32) ** 2 * 4
    for side in conv.SIDES:
        module, x = conv.build(cfg, side, "cpu")
        gap = _cpu(module, (x,)) - _conv_peak(cfg, side).bytes
        assert 0 < gap <= 2 * (Y + x_in), (side, gap)


# --- video -----------------------------------------------------------------------------------


def _video_peak(cfg):
    return peak(video_peak.ledger(cfg).moments, cfg.values)


def test_joint_and_factorized_video_attention_peak_where_the_ledger_says():
    """T=2, S=(8/4)² = 4, d=8, h=2, B=2, fp32, biases: every layout of the tokens is X =
    2·2·4·8·4 = 512 bytes; joint's scores B·h·(T·S)²·4 = 2·2·64·4 = 1024, weights 4·(64 + 8)·4
    = 1152. Joint peaks at A·V's backward: weights 1152 + x 512 + q, k, v (their copies for the
    batched product) 1536 + P 1024 + the output 512 + 8 + out_proj's dW, db 288 + the heads'
    gradient 512 + dV 512 + dP 1024 = 7080. Factorized (weights 2·1152 = 2304; temporal scores
    B·S·h·T²·4 = 8·2·4·4 = 256, spatial B·T·h·S²·4 = 4·2·16·4 = 512) peaks in the forward, at
    the spatial heads' merge: 2304 + x 512 + the transposed copy 512 + the temporal layer's
    saved q, k, v 1536, P 256 and merged heads 512 + the spatial input 512 + the spatial q, k,
    v and their copies 3072, P 512, A·V 512 and merged heads 512 = 10752."""
    sizes = dict(frames=2, res=8, patch=4, dim=8, heads=2, batch=2)
    cfg = video.Config(**sizes, attn="joint")
    best = _video_peak(cfg)
    assert (best.bytes, best.phase, best.what) == (7080, "backward", "joint: A·V backward: dP")
    assert video_peak.tracked(cfg).bytes == 7080
    cfg = video.Config(**sizes, attn="factorized")
    best = _video_peak(cfg)
    assert (best.bytes, best.phase) == (10752, "forward")
    assert best.what == "spatial: heads merged (a copy)"
    assert video_peak.tracked(cfg).bytes == 10752


VIDEO_VARIANTS = [
    dict(),
    dict(batch=1),
    dict(heads=1),
    dict(bias=False),
    dict(dtype="bf16"),
    dict(frames=1),
    dict(res=4),  # one token a frame
    dict(frames=3, res=12, dim=16, heads=4),
    dict(attn="window", window="2,2,2"),  # the grid tiles: no padding
    dict(attn="window", frames=3, res=12, window="2,2,2"),  # padded in every axis
    dict(attn="window", frames=5, res=8, window="2,2,2"),  # padded in time only: crop a view
    dict(attn="window", frames=3, res=20, window="2,2,3", batch=1),
    dict(dim=2),  # head size 1: the heads merge by a strided view, out_proj's matmul copies it
    dict(dim=2, batch=1, bias=False),  # ... one sequence: mm takes the view transposed
    dict(attn="window", res=12, patch=2, dim=4, heads=4, batch=1, window="1,1,2"),
    # windows of one column: the merge back is a view, so the crop (nothing to crop) copies
    dict(attn="window", dim=2, heads=1, batch=1, bias=False, window="3,3,1"),
]


@st.composite
def _small_clips(draw):
    """Clips where copies turn into views: head sizes 1 and 2, sequences and windows of one
    token along an axis, padded grids, one or two clips."""
    heads = draw(st.sampled_from([1, 2, 4]))
    patch = draw(st.sampled_from([1, 2, 4]))
    return video.Config(
        frames=draw(st.integers(1, 5)),
        res=patch * draw(st.integers(1, 5)),
        patch=patch,
        heads=heads,
        dim=heads * draw(st.sampled_from([1, 2])),
        batch=draw(st.integers(1, 2)),
        bias=draw(st.booleans()),
        attn=draw(st.sampled_from(["window", "window", "joint", "factorized"])),
        window=",".join(str(draw(st.integers(1, 3))) for _ in range(3)),
    )


@pytest.mark.slow  # MemTracker over 60 random clips: about 9 s
@settings(max_examples=60, deadline=None)
@given(_small_clips())
def test_small_clips_peak_where_memtracker_says_in_every_phase(cfg):
    best, tracked = _video_peak(cfg), video_peak.tracked(cfg)
    assert (best.bytes, best.phase) == (tracked.bytes, tracked.phase)
    assert best.phase_peaks() == tracked.phase_peaks()


@pytest.mark.parametrize("variant", VIDEO_VARIANTS, ids=_ids)
@pytest.mark.parametrize("attn", ["joint", "factorized"])
def test_every_video_attention_peaks_where_memtracker_says(attn, variant):
    cfg = video.Config(
        **{"frames": 2, "res": 8, "patch": 4, "dim": 8, "heads": 2, "batch": 2, "attn": attn}
        | variant
    )
    best, tracked = _video_peak(cfg), video_peak.tracked(cfg)
    assert (best.bytes, best.phase) == (tracked.bytes, tracked.phase)
    assert best.phase_peaks() == tracked.phase_peaks()


def test_vivit_scale_joint_attention_under_fake_tensors():
    """ViViT-B's joint attention over 16 frames of 224² in 16² patches (T·S = 16·196 = 3,136
    tokens), d = 768, h = 12, B=1, bf16: one score matrix h·(T·S)²·2 = 12·3136²·2 = 236,027,904
    bytes, X = 3136·768·2 = 4,816,896, weights 4·(768² + 768)·2 = 4,724,736. At the softmax's
    backward: weights 4,724,736 + x, q, k, the output and dV 5·X (v freed by A·V's backward)
    + out_proj's dW, db (768² + 768)·2 = 1,181,184 + P, dP, dS 3·236,027,904 + 2·2 =
    738,074,116, and MemTracker agrees to the byte."""
    cfg = video.Config(frames=16, res=224, patch=16, dim=768, heads=12, dtype="bf16", attn="joint")
    X, A = 3136 * 768 * 2, 12 * 3136**2 * 2
    expected = 4 * (768**2 + 768) * 2 + 5 * X + (768**2 + 768) * 2 + 3 * A + 4
    best = _video_peak(cfg)
    assert (best.bytes, best.what) == (expected, "joint: softmax backward: dS")
    assert best.bytes == 738_074_116
    assert video_peak.tracked(cfg).bytes == expected


@pytest.mark.parametrize("attn", ["joint", "factorized", "window"])
def test_video_attention_on_the_cpu_is_the_ledger_and_the_scale_scalars(attn):
    """Real steps, T=4, S=(32/8)² = 16, d=32, h=4, B=2, windows 2×2×2, one thread: the ledger's
    peak and 8 bytes per attention layer live then, the Python scalar 1/√(d/h) as a 0-dim fp64
    tensor that mul saves for its backward (MemTracker does not see it): joint and window one
    layer, factorized two (both layers' scalars are saved when the spatial layer peaks)."""
    cfg = video.Config(
        frames=4, res=32, patch=8, dim=32, heads=4, batch=2, attn=attn, window="2,2,2"
    )
    block, x = video.build(cfg, "cpu")
    assert _cpu(block, (x,)) - _video_peak(cfg).bytes == 8 * (2 if attn == "factorized" else 1)
