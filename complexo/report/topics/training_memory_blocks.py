"""The training-memory page's sections on the newer blocks (mlp, conv, video, patch, norm): each
one's step ledger (``complexo/analyses/mlp_peak.py``, ``conv_peak.py``, ``video_peak.py``,
``patch_peak.py``, ``norm_peak.py``) against
MemTracker under fake tensors and, where the step is small and runs on aten's own CPU kernels,
the CPU profiler's record of a real step."""

from __future__ import annotations

from complexo.report.page import Page, _table

MIB_256 = 2**28  # real CPU steps below this only


def _cases():
    """(label, analysis module, ledger module, config, side or None, run on the CPU)."""
    from complexo.analyses import conv, conv_peak, mlp, mlp_peak, video, video_peak

    small_mlp = dict(batch=4, seq=256, dim=768)
    llama = dict(batch=8, seq=2048, dim=4096, gated_hidden=11008, dtype="bf16")
    stem = dict(cin=64, cout=128, kernel=3, res=56, batch=8)
    vae = dict(cin=128, cout=128, kernel=3, res=256, frames=17, causal=True, dtype="bf16")
    small_clip = dict(frames=8, res=112, patch=16, dim=192, heads=3, batch=2)
    vivit = dict(frames=16, res=224, patch=16, dim=768, heads=12, dtype="bf16")
    return [
        ("mlp GELU, B=4 n=256 d=768 f=3072", mlp, mlp_peak, small_mlp, "gelu", True),
        ("mlp SwiGLU, same (f_g=2048)", mlp, mlp_peak, small_mlp, "gated", True),
        (
            "mlp SwiGLU, LLaMA-7B (d=4096 f_g=11008), B=8 n=2048 bf16",
            mlp,
            mlp_peak,
            llama,
            "gated",
            False,
        ),
        ("conv standard 3×3, 64→128 at 56², B=8", conv, conv_peak, stem, "standard", False),
        ("conv separable, same", conv, conv_peak, stem, "separable", False),
        (
            "conv standard as unfold + matmul, same",
            conv,
            conv_peak,
            {**stem, "impl": "unfold"},
            "standard",
            True,
        ),
        (
            "conv causal 3D, 128→128, 17×256², bf16 (a video VAE's)",
            conv,
            conv_peak,
            vae,
            "standard",
            False,
        ),
        (
            "video joint, T=8 S=49 d=192 h=3, B=2",
            video,
            video_peak,
            {**small_clip, "attn": "joint"},
            None,
            True,
        ),
        (
            "video factorized, same",
            video,
            video_peak,
            {**small_clip, "attn": "factorized"},
            None,
            True,
        ),
        (
            "video window 8×7×7, same",
            video,
            video_peak,
            {**small_clip, "attn": "window"},
            None,
            True,
        ),
        (
            "video joint, ViViT-B 16×224² (3,136 tokens), bf16",
            video,
            video_peak,
            {**vivit, "attn": "joint"},
            None,
            False,
        ),
        ("video factorized, same", video, video_peak, {**vivit, "attn": "factorized"}, None, False),
    ]


def blocks_section(page: Page, cpu_peak) -> None:
    """The table and its named gaps; ``cpu_peak(build, cfg)``: the CPU profiler's peak on one
    thread."""
    rows = [_row(case, cpu_peak) for case in _cases()]
    page.add(
        "## The newer blocks: MLPs, convolutions, video attention",
        "",
        "The same columns for `complexo mlp`, `conv` and `video`, each side's ledger written "
        "from its reference module. A gated MLP's backward holds six (B, n, f_g) tensors at the "
        "product's backward (the gate's input, act(g), u, and down_proj's dX, the product's two "
        "gradients); the unfolded convolution keeps im2col's columns from the forward to the "
        "product's backward, two copies at once in the forward for B > 1 (F.linear copies the "
        "transposed columns), and a third matrix of their size, dcols, in the backward; a causal "
        "3D convolution holds its padded copy and that copy's gradient at once; factorized video "
        "attention peaks in its forward where its score matrices are small beside the two "
        "layers' saved tensors.",
        "",
        _table(
            ["step", "all-live sum", "ledger's peak", "where", "MemTracker", "CPU profiler"],
            rows,
        ),
        "MemTracker agrees to the byte. The CPU's gaps, each named: the GELU MLP's "
        "fc_out backward multiplies the loss's seed expanded to (B, n, d), a stride-0 view the "
        "CPU's mm copies contiguous (B·n·d·e more while it runs), which fake tensors never "
        "copy; the unfolded convolution's col2im on the CPU makes its output as large as the "
        "columns and resizes it down to x's shape (x.grad keeps that storage) and copies the "
        "transposed dcols contiguous, one column matrix above the ledger's dcols moment "
        "(and its F.linear adds the bias in place, where FakeTensor, a tensor subclass, "
        "takes the out-of-place add); each video attention layer saves the Python scalar "
        "1/√(d/h) as an 8-byte fp64 tensor. Direct convolutions are not run here (their "
        "kernels follow the CPU's instruction set); `tests/test_peak_blocks.py` pins their "
        "gaps. On oneDNN (B > 1, fp32, AVX-512's 16-channel blocks) "
        "aten::convolution_backward holds, at its weight gradient, the output's gradient "
        "made contiguous (Y: the loss's seed, expanded) and oneDNN's reorders of that gradient "
        "(Y) and of the convolution's input (X_in): 2·Y + X_in above the ledger, +117% at "
        "C 16→32, R=32, B=2, 2D or 3D, causal or not. Channel counts under a block are "
        "padded to whole blocks and the data gradient's moment peaks instead: the gradient's "
        "copy Y and blocked copies of the gradient, the weight and dX (Ȳ + W̄ + X̄ at the "
        "padded counts) before dX, dW, db exist (exact at 4→8, 3→24, 8→16; counts that pad "
        "both ways, 17→33, stay bounded). With stride 2 the op peaks after the data "
        "gradient, holding Y and three input-sized storages (the blocked dX, its reorder and "
        "a second X-sized copy) where the ledger holds dX, dW, db: Y + 3·X − (X + W + b), "
        "309,120 bytes at C 16→32, R=32, B=2 (exact at three shapes; at R=16 the strided "
        "data gradient's own scratch peaks instead, unpinned). At B = 1 with a 3×3 kernel and "
        "C_in·R² ≤ 20,480 torch runs its native kernel instead, whose backward "
        "(aten::_slow_conv2d_backward) holds im2col's columns, C_in·k²·R²·e, beside Y. A "
        "separable block's depthwise convolution (oneDNN) holds the reorders of its output's "
        "gradient and of x, 2·X; its pointwise 1×1 one, run by the native kernel on one "
        "thread, adds nothing at the peak.",
        "",
    )


def _norm_patch_cases():
    """(label, analysis module, ledger module, config, side or None, run on the CPU)."""
    from complexo.analyses import norm, norm_peak, patch, patch_peak

    vit = dict(res=224, patch=16, channels=3, dim=768, batch=8, dtype="bf16")
    small_patch = dict(res=64, patch=8, channels=3, dim=64, batch=4)
    wide = dict(batch=8, seq=2048, dim=4096)
    small = dict(batch=8, seq=128, dim=256)
    image = dict(batch=8, channels=64, res=56)
    rows = [
        ("patch conv, ViT-B/16 at 224², B=8, bf16", vit, "conv", False),
        ("patch reshape + linear, same", vit, "linear", False),
        ("patch reshape + linear, 64² in 8² patches, d=64, B=4", small_patch, "linear", True),
    ]
    cases = [(label, patch, patch_peak, c, side, cpu) for label, c, side, cpu in rows]
    rows = [
        ("norm LayerNorm, B=8 n=2048 d=4096 (LLaMA's width)", {**wide, "kind": "layernorm"}, 0),
        ("norm RMSNorm (torch's composite ops), same", {**wide, "kind": "rmsnorm"}, 0),
        ("norm RMSNorm, same, bf16", {**wide, "kind": "rmsnorm", "dtype": "bf16"}, 0),
        ("norm LayerNorm, B=8 n=128 d=256", {**small, "kind": "layernorm"}, 1),
        ("norm RMSNorm, same", {**small, "kind": "rmsnorm"}, 1),
        ("norm BatchNorm2d, 64 channels at 56², B=8", {**image, "kind": "batchnorm"}, 0),
        ("norm GroupNorm (32 groups), same", {**image, "kind": "groupnorm"}, 0),
        ("norm InstanceNorm2d, same", {**image, "kind": "instancenorm"}, 0),
    ]
    return cases + [(label, norm, norm_peak, c, None, bool(cpu)) for label, c, cpu in rows]


def norm_patch_section(page: Page, cpu_peak) -> None:
    """The patch embeddings' and normalisation layers' rows and their named gaps."""
    rows = [_row(case, cpu_peak) for case in _norm_patch_cases()]
    page.add(
        "## Patch embeddings and normalisation layers",
        "",
        "`complexo patch` (`patch_peak.py`) and `complexo norm` (`norm_peak.py`, torch's "
        "modules, the input needing its gradient). The reshape + linear patch embedding holds "
        "its copy of the pixels in patch order from the forward to addmm's backward, one image "
        "batch more than the convolution. A fused norm's backward is one op (dx, dγ, dβ at "
        "once; GroupNorm's copies the output's gradient contiguous first); torch 2.13 runs "
        "nn.RMSNorm as its composite ops in fp32, whose backward holds five B·n·d fp32 tensors "
        "at x²'s (x¹, 2·x¹ and their product beside d(x²) and the × 1/rms part of dx), six "
        "where x is 16-bit (its fp32 copy): 2.3× LayerNorm's peak at the same size in fp32.",
        "",
        _table(
            ["step", "all-live sum", "ledger's peak", "where", "MemTracker", "CPU profiler"],
            rows,
        ),
        "MemTracker agrees to the byte. The CPU's gaps, each named (`tests/"
        "test_peak_norm_patch.py`): the linear patch embedding's mm for dW copies the loss's "
        "seed expanded to the tokens' shape contiguous (B·N·d·e, freed before db: B·N·d·e − "
        "d·e above the ledger's db moment); LayerNorm's CPU backward copies the same seed "
        "contiguous (B·n·d·e) and holds its partial sums of dγ and dβ (2·d·e) inside the op. "
        "RMSNorm's composite runs the ops the ledger reads and agrees to the byte. Not run "
        "here: the patch convolution (oneDNN's layouts follow the CPU's instruction set; on "
        "AVX-512 at p=8 its backward holds the seed's copy Y = B·N·d·4, its blocked reorder "
        "and oneDNN's blocked dW and db, then copies them out: Y + max(Y, W + b) above the "
        "ledger, exact at five shapes; at p=16 a larger scratch for dW, 246,016 bytes at "
        "64², C=3, d=16, stays bounded), BatchNorm and InstanceNorm (one per-channel "
        "buffer more inside the kernel's backward), GroupNorm (its fp32 per-(sample, channel) "
        "sums, 2·B·C·4 bytes).",
        "",
    )


def _row(case, cpu_peak) -> list[str]:
    """One table row: the ledger's peak, the all-live sum, MemTracker and, where small enough
    and asked for, the CPU profiler."""
    from complexo.peak import peak
    from complexo.report.topics.training_memory import peak_row

    label, analysis, ledgers, values, side, cpu_ok = case
    cfg = analysis.Config(**values)
    args = () if side is None else (side,)
    best = peak(ledgers.ledger(cfg, *args).moments, cfg.values)
    cpu = None
    if cpu_ok and best.bytes < MIB_256:

        def build(c, analysis=analysis, args=args):
            module, x = analysis.build(c, *args, device="cpu")
            return module, (x,)

        cpu = cpu_peak(build, cfg)
    return peak_row(
        label, ledgers.all_live(cfg, *args), best, ledgers.tracked(cfg, *args).bytes, cpu
    )
