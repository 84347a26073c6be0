"""The symbolic cost of a loss: softmax cross-entropy behind an LM head (or focal loss), and
CLIP's symmetric InfoNCE. Each log-sum-exp pass a named term (its per-element cost from
:mod:`complexo.conventions`), what autograd keeps (the written-out reference, measured), what
``F.cross_entropy`` keeps, the logits' bytes, and a chunked loss's peak and saved bytes.

Symbols: B batch, n tokens, d the head's input width, V vocabulary, c chunks, e bytes per element.
The head's matmul x·Wᵀ is included (it is what a chunked loss fuses; without it the logits would
be an input and chunking could not keep them from existing). Logits are upcast to fp32.

>>> from complexo.symbols import B, n, V
>>> cost_model("xent", fp32=True).term(Kind.FORWARD, "max").expr
B*V*n
"""

from __future__ import annotations

from complexo.conventions import (
    CHUNK_GRAD_FLOPS,
    FLOPS_PER_MAC,
    FOCAL_BWD_FLOPS,
    FOCAL_FWD_FLOPS,
    FP32_BYTES,
    LOG_SOFTMAX_FLOPS,
    LSE_EXP_FLOPS,
    LSE_MAX_FLOPS,
    LSE_SUBTRACT_FLOPS,
    LSE_SUM_FLOPS,
    XENT_BWD_FLOPS,
    XENT_ROW_BWD_FLOPS,
    XENT_ROW_FWD_FLOPS,
)
from complexo.cost import CostModel, Kind, Terms
from complexo.symbols import B, V, c, d, e, n

KINDS = ("xent", "infonce", "focal")
INT64_BYTES = 8  # class indices
MM = ("aten::linear", "aten::matmul", "aten.mm")


def _xent(t: Terms, prefix: str, rows, width) -> None:
    """One cross-entropy over ``rows`` rows of ``width`` fp32 logits, written out: each pass a
    term, forward and backward, and what autograd keeps."""
    N = rows * width
    fwd = lambda name, expr, ops, note: t.add(  # noqa: E731
        Kind.FORWARD, prefix + name, expr, ops=(f"aten::{ops}", f"aten.{ops}"), note=note
    )
    fwd("max", LSE_MAX_FLOPS * N, "amax", "m = max z per row (no autograd)")
    fwd("subtract", LSE_SUBTRACT_FLOPS * N, "sub", "z − m")
    fwd("exp", LSE_EXP_FLOPS * N, "exp", "exp(z − m)")
    fwd("sum", LSE_SUM_FLOPS * N, "sum", "s = Σ exp(z − m)")
    fwd("log_softmax", LOG_SOFTMAX_FLOPS * N, "sub", "(z − m) − log s")
    fwd("rows", XENT_ROW_FWD_FLOPS * rows, "log", "log s, −log p_t, mean: per row")
    bwd = lambda name, expr, note: t.add(  # noqa: E731
        Kind.BACKWARD, prefix + name, expr, ops=("aten.sum", "aten.mul", "aten.add"), note=note
    )
    bwd("backward", XENT_BWD_FLOPS * N, "Σ d log p, ⊙ exp(z − m), the two paths added")
    bwd("backward_rows", XENT_ROW_BWD_FLOPS * rows, "1/(B·n), negation, ÷ s: per row")
    act = lambda name, expr, note: t.add(Kind.ACTIVATION, prefix + name, expr, note=note)  # noqa: E731
    act("exp", FP32_BYTES * N, "exp(z − m), kept by exp's backward")
    act("log_softmax", FP32_BYTES * N, "log p, kept by gather (its backward asks for its input)")
    act("row_sum", FP32_BYTES * rows, "s, kept by log")


def cost_model(kind: str, fp32: bool) -> CostModel:
    """One loss's cost; ``fp32``: the compute dtype is fp32 (no upcast copy of the logits)."""
    t = Terms()
    if kind == "infonce":
        _infonce(t, fp32)
        return t.model()
    rows, N = B * n, B * n * V
    head = FLOPS_PER_MAC * B * n * d * V
    t.add(Kind.FORWARD, "head", head, mm=True, ops=MM, note="x·Wᵀ: (B, n, d) x (d, V)")
    _xent(t, "", rows, V)
    t.add(Kind.BACKWARD, "head_dx", head, mm=True, ops=MM, note="dz·W")
    t.add(Kind.BACKWARD, "head_dw", head, mm=True, ops=MM, note="dzᵀ·x")
    t.add(Kind.PARAMS, "head", V * d)
    t.add(Kind.ACTIVATION, "input", rows * d * e, note="x, kept by the head for dW")
    t.add(Kind.ACTIVATION, "targets", INT64_BYTES * rows, note="y, kept by gather")
    if kind == "focal":
        ops = ("aten::pow", "aten.pow")
        t.add(Kind.FORWARD, "focal", FOCAL_FWD_FLOPS * rows, ops=ops, note="(1 − p_t)^γ·log p_t")
        t.add(Kind.BACKWARD, "focal", FOCAL_BWD_FLOPS * rows, ops=ops, note="through p_t, pow")
        t.add(Kind.ACTIVATION, "focal", 4 * FP32_BYTES * rows, note="log p_t, p_t, 1 − p_t, w")
    mem = lambda name, expr, tag, note: t.add(  # noqa: E731
        Kind.MEMORY, name, expr, tags={tag}, note=note
    )
    mem("logits", N * e, "logits", "z = x·Wᵀ in the compute dtype")
    if not fp32:
        mem("upcast", N * FP32_BYTES, "logits", "z in fp32")
    mem("logits_grad", N * FP32_BYTES, "grad", "dz in fp32")
    if not fp32:
        mem("logits_grad_low", N * e, "grad", "dz in the compute dtype, into the head")
    # F.cross_entropy: log_softmax keeps its fp32 output, nll_loss the targets and its weight
    fused = lambda name, expr, note: mem("fused_" + name, expr, "fused", note)  # noqa: E731
    fused("input", rows * d * e, "x, kept by the head")
    fused("log_softmax", N * FP32_BYTES, "log p, kept by log_softmax's backward")
    fused("targets", INT64_BYTES * rows, "y")
    fused("total_weight", FP32_BYTES, "nll_loss's total weight, a scalar")
    _chunked(t)
    return t.model()


def _chunked(t: Terms) -> None:
    """The chunked loss: c chunks of B·n/c rows, each chunk's gradient made in the forward."""
    rows, N, head = B * n, B * n * V, FLOPS_PER_MAC * B * n * d * V
    alt = lambda name, expr, note, mm=False: t.add(  # noqa: E731
        Kind.ALTERNATIVE, "chunked_" + name, expr, mm=mm, ops=MM if mm else (), note=note
    )
    alt("head", 3 * head, "x·Wᵀ, g·W and gᵀ·x per chunk, all in the forward", mm=True)
    passes = LSE_MAX_FLOPS + LSE_SUBTRACT_FLOPS + LSE_EXP_FLOPS + LSE_SUM_FLOPS
    alt("softmax", (passes + CHUNK_GRAD_FLOPS) * N, "max, −, exp, Σ; p = ·/s, ÷ B·n")
    alt("rows", (XENT_ROW_FWD_FLOPS + 1) * rows, "log s, m + log s − z_t, mean, − 1/(B·n)")
    alt("dw_sum", c * V * d, "each chunk's dW added to the running one")
    mem = lambda name, expr, tag, note: t.add(Kind.MEMORY, name, expr, tags={tag}, note=note)  # noqa: E731
    mem("chunked_dx", rows * d * e, "chunked_saved", "dx, made in the forward")
    mem("chunked_dw", V * d * e, "chunked_saved", "dW, made in the forward")
    # one chunk at a time: its logits (e), fp32 z, exp(z − m), g, g in e; dx, fp32 dW held
    chunk = rows * V / c
    mem("chunk_logits", chunk * (2 * e + 3 * FP32_BYTES), "chunk_peak", "z, exp, g per chunk")
    mem("chunk_grads", rows * d * e + V * d * FP32_BYTES, "chunk_peak", "dx, fp32 dW")


def _infonce(t: Terms, fp32: bool) -> None:
    """CLIP: (B, d) x (d, B) similarities, scaled, and a cross-entropy each way."""
    sim = FLOPS_PER_MAC * B * B * d
    t.add(Kind.FORWARD, "similarity", sim, mm=True, ops=MM, note="a·bᵀ: (B, d) x (d, B)")
    t.add(Kind.FORWARD, "scale", B * B, ops=("aten::mul", "aten.mul"), note="× 1/τ")
    _xent(t, "rows_", B, B)
    _xent(t, "cols_", B, B)
    t.add(Kind.FORWARD, "average", 2, ops=("aten::add", "aten.add"), note="(rows + cols)/2")
    t.add(Kind.BACKWARD, "similarity_da", sim, mm=True, ops=MM, note="dz·b")
    t.add(Kind.BACKWARD, "similarity_db", sim, mm=True, ops=MM, note="dzᵀ·a")
    t.add(Kind.BACKWARD, "scale", B * B, ops=("aten.mul",), note="× 1/τ")
    t.add(Kind.BACKWARD, "paths", B * B, ops=("aten.add",), note="rows' and columns' dz added")
    t.add(Kind.ACTIVATION, "embeddings", 2 * B * d * e, note="a and b, kept by the product")
    t.add(Kind.ACTIVATION, "targets", INT64_BYTES * B, note="arange(B), shared by both gathers")
    t.add(Kind.MEMORY, "logits", B * B * e, tags={"logits"}, note="a·bᵀ in the compute dtype")
    if not fp32:
        t.add(Kind.MEMORY, "upcast", B * B * FP32_BYTES, tags={"logits"}, note="in fp32")
    t.add(Kind.MEMORY, "logits_grad", B * B * FP32_BYTES, tags={"grad"}, note="dz in fp32")
