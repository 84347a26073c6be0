"""The normalisation layers' training steps as they really peak (:mod:`complexo.peak`): ledgers
written by reading torch's modules (what ``norm`` measures) and autograd's formulas op by op.

X = N·e (x, its output, its gradient), S groups (one μ and 1/σ each), P the size of γ (and β);
see :func:`complexo.analyses.norm_cost.sizes`. The step is the profiler's: the input needs its
gradient, SGD keeps no state; the output (and ``out.sum()``) is held through the backward.

Fused kernels (LayerNorm, BatchNorm, GroupNorm): the forward is one op, the output and two
statistics per group (μ, 1/σ, in x's dtype on the CPU and under fake tensors), and the backward
one op, dx (and dγ, dβ) at once; the statistics go once it has run. GroupNorm's backward first
copies the output's gradient contiguous (the seed ``sum`` hands back is expanded, a stride-0
view): one more X beside dx. InstanceNorm is a BatchNorm over (1, B·C, R, R): γ and β repeated
per sample (B·C each; the repeated β freed once the forward returns, γ's saved), and in its
backward the repeated dγ, dβ summed back over the batch, one after the other.

RMSNorm (torch 2.13 runs ``nn.RMSNorm`` as its composite ops, in fp32: u = 4 bytes, x copied
up first where it is 16-bit): x², its mean and 1/rms = rsqrt(mean + ε) (x² and the mean freed
at once), x̂ = x·(1/rms), y = x̂·γ, cast back to x's dtype. Its backward runs each op's own
formula: × γ's (dy·γ, dy·x̂ and its sum: dγ), × 1/rms's (two N-sized products, one summed),
rsqrt's (three S-sized), the mean's (an N-sized division), x²'s (x¹, 2·x¹, and their product
with the gradient: three N-sized at once), and x's two gradients summed. The step peaks at x²'s
backward: six N-sized fp32 tensors beside x and the output, seven N·u in all where a fused
kernel's backward holds x, y, dx (and the seed copy).
"""

from __future__ import annotations

from complexo.conventions import FP32_BYTES
from complexo.cost import Kind
from complexo.peak import Ledger
from complexo.symbols import e


def _given(cfg) -> dict:
    """Weights, buffers (BatchNorm's running statistics and its int64 count) and x."""
    from complexo.analyses.norm_cost import cost_model, sizes

    model = cost_model(cfg.kind, cfg.shape_layout, cfg.affine, True)
    N = sizes(cfg.kind, cfg.shape_layout)[0]
    given = {"weights": model.total(Kind.PARAMS) * e, "x": N * e}
    if cfg.kind == "batchnorm":
        given["buffers"] = model.total(Kind.MEMORY, tag="buffers")
    return given


def ledger(cfg) -> Ledger:
    """The training step's allocations and frees of ``cfg`` (a norm Config in train mode), as
    sympy over its symbols."""
    from complexo.analyses.norm_cost import sizes

    N, S, P, channels = sizes(cfg.kind, cfg.shape_layout)
    book = Ledger(**_given(cfg))
    if cfg.kind == "rmsnorm":
        _rms(book, cfg, N, S, P)
    elif cfg.kind == "instancenorm":
        _instance(book, cfg.affine, N, S, channels)
    else:
        book.alloc(f"{cfg.kind}'s forward: y, μ, 1/σ", out=N * e, mean=S * e, rstd=S * e)
        book.alloc("out.sum() and its seed gradient", loss=2 * e)
        book.phase = "backward"
        if cfg.kind == "groupnorm":
            book.alloc("the output's gradient copied contiguous", g_out=N * e)
        grads = {"g_gamma": P * e, "g_beta": P * e} if cfg.affine else {}
        what = "dx, dγ, dβ" if cfg.affine else "dx"
        book.alloc(f"{cfg.kind}'s backward: {what}", g_x=N * e, **grads)
        if cfg.kind == "groupnorm":
            book.free("g_out")
        book.free("mean", "rstd")
    book.free("loss")
    book.phase = "optimizer"
    return book


def _instance(book: Ledger, affine: bool, N, S, channels) -> None:
    """F.instance_norm: a batch norm over (1, B·C, R, R); S = B·C."""
    if affine:
        book.alloc("γ repeated per sample", gamma_rep=S * e)
        book.alloc("β repeated per sample", beta_rep=S * e)
    book.alloc("batch_norm's forward: y, μ, 1/σ", out=N * e, mean=S * e, rstd=S * e)
    if affine:
        book.free("beta_rep")
    book.alloc("out.sum() and its seed gradient", loss=2 * e)
    book.phase = "backward"
    if not affine:
        book.alloc("batch_norm's backward: dx", g_x=N * e)
        book.free("mean", "rstd")
        return
    book.alloc("batch_norm's backward: dx, repeated dγ, dβ", g_x=N * e, d_gr=S * e, d_br=S * e)
    book.free("gamma_rep", "mean", "rstd")
    book.alloc("repeat's backward: dγ summed over the batch", g_gamma=channels * e)
    book.free("d_gr")
    book.alloc("repeat's backward: dβ summed over the batch", g_beta=channels * e)
    book.free("d_br")


def _rms(book: Ledger, cfg, N, S, P) -> None:
    """RMSNorm's composite in fp32 (u bytes per element), forward and backward."""
    up = cfg.dtype != "fp32"
    u = FP32_BYTES if up else e
    x = "x"
    if up:
        book.alloc("x copied up to fp32", xf=N * u)
        x = "xf"
    book.alloc("x²", sq=N * u)
    book.alloc("mean(x²)", ms=S * u)
    book.alloc("1/rms = rsqrt(mean + ε)", rstd=S * u)
    book.free("sq", "ms")
    book.alloc("x̂ = x·(1/rms)", xhat=N * u)
    y = "xhat"
    if cfg.affine:
        book.alloc("y = x̂·γ", y=N * u)
        y = "y"
    if up:
        book.alloc("y cast back to x's dtype", out=N * e)
        book.free(y)
    else:
        book.live["out"] = book.live.pop(y)
    book.alloc("out.sum() and its seed gradient", loss=2 * e)
    book.phase = "backward"
    dy = None  # the seed expanded: a view, in fp32
    if up:
        book.alloc("the output's gradient cast up to fp32", dy=N * u)
        dy = "dy"
    if cfg.affine:
        book.alloc("× γ's backward: dy·γ", d_xhat=N * u)
        book.alloc("× γ's backward: dy·x̂", full=N * u)
        book.alloc("× γ's backward: Σ dy·x̂ (dγ)", g_gamma_u=P * u)
        book.free("full")
        if up:
            book.alloc("dγ cast to γ's dtype", g_gamma=P * e)
            book.free("g_gamma_u")
            book.free("dy")
        else:
            book.live["g_gamma"] = book.live.pop("g_gamma_u")
        book.free("xhat")
        dy = "d_xhat"
    book.alloc("× 1/rms's backward: dx̂·(1/rms)", dx1=N * u)
    book.alloc("× 1/rms's backward: dx̂·x", full=N * u)
    book.alloc("× 1/rms's backward: Σ dx̂·x (d(1/rms))", d_r=S * u)
    book.free("full")
    if dy is not None:
        book.free(dy)
    book.alloc("rsqrt's backward: (1/rms)³", r3=S * u)
    book.alloc("rsqrt's backward: −½·(1/rms)³", r3h=S * u)
    book.alloc("rsqrt's backward: d(mean)", d_ms=S * u)
    book.free("r3", "r3h")
    book.free("d_r", "rstd")
    book.alloc("mean's backward: d(x²) = d(mean)/N, expanded", d_sq=N * u)
    book.free("d_ms")
    book.alloc("x²'s backward: x¹", x1=N * u)
    book.alloc("x²'s backward: 2·x¹", x2=N * u)
    book.alloc("x²'s backward: d(x²)·2·x", dx2=N * u)
    book.free("x1", "x2")
    book.free("d_sq", *((x,) if up else ()))
    book.alloc("x's two gradients summed", dx=N * u)
    book.free("dx1", "dx2")
    if up:
        book.alloc("x's gradient cast to x's dtype", g_x=N * e)
        book.free("dx")


def tracked(cfg, optimizer: str = "sgd"):
    """The same step measured by MemTracker under FakeTensorMode
    (:func:`complexo.peak.tracked_build`): torch's module."""
    from complexo.analyses.norm import build
    from complexo.peak import tracked_build

    return tracked_build(build, cfg, "torch", optimizer=optimizer)


def all_live(cfg) -> int:
    """The sum the issue measured against: weights and their gradients, buffers, the output
    and what torch's kernel saves (x among it, in fp32 for RMSNorm: x itself only in fp32), as
    if all were live at once (SGD keeps no state)."""
    from complexo.analyses.norm_cost import cost_model, sizes
    from complexo.cost import evaluate

    model, values = cost_model(cfg.kind, cfg.shape_layout, cfg.affine, True), cfg.values
    N = evaluate(sizes(cfg.kind, cfg.shape_layout)[0], values)
    weights = evaluate(model.total(Kind.PARAMS), values) * values[e]
    buffers = evaluate(model.total(Kind.MEMORY, tag="buffers"), values)
    x = N * values[e] if cfg.kind == "rmsnorm" and cfg.dtype != "fp32" else 0
    saved = evaluate(model.total(Kind.ACTIVATION), values)
    return 2 * weights + buffers + x + N * values[e] + saved


def quantity(cfg):
    """The training step's peak as a quantity, MemTracker's reading beside it, and its note."""
    from complexo.peak import peak_quantity

    return peak_quantity(ledger(cfg), cfg.values, lambda: tracked(cfg), all_live(cfg))
