"""Multi-head self-attention's cost model: one term per line (forward, backward, parameters,
saved activations, the n×n matrix, the decoder's k and v, device-memory traffic, and what other
implementations would execute), with the operators that carry each term. See
:mod:`complexo.analyses.mhsa` for the symbols, the conventions and the analysis.

Cross-attention (``cross``): q from the n tokens, k and v from m context tokens of width d_c
(``context_width``; d otherwise). The n×n matrix becomes n×m; every term that reads keys or
values reads m of them, and the projections of k and v are m·d_c·(G·d/h) products.
"""

from __future__ import annotations

import sympy
from sympy import Integer

from complexo.analyses.positions import position_terms
from complexo.conventions import (
    BOOL_BYTES,
    ELEMENTWISE_FLOPS,
    FP32_BYTES,
    SOFTMAX_BWD_FLOPS,
    SOFTMAX_FWD_FLOPS,
    SOFTMAX_RECOMPUTE_FLOPS,
)
from complexo.cost import CostModel, Kind, Term
from complexo.symbols import B, G, M, W, d, d_c, e, h, m, n

BLOCK = 128  # tile of a block-skipping fused kernel (FlashAttention's 128 × 128 blocks)

# Operators that carry each term: TorchScript names (what fvcore sees) and dispatcher names (what
# FlopCounterMode sees on meta tensors).
LINEAR = ("aten::linear", "aten.addmm", "aten.mm")
MATMUL = ("aten::matmul", "aten.bmm")
SDPA = ("aten::scaled_dot_product_attention", "aten._scaled_dot_product_flash_attention_for_cpu")
SDPA_BWD = ("aten._scaled_dot_product_flash_attention_for_cpu_backward",)
# The kernels SDPA dispatches to, as the profiler names them (CPU; CUDA flash, efficient, cuDNN).
SDPA_KERNELS = (
    "aten::_scaled_dot_product_flash_attention_for_cpu",
    "aten::_scaled_dot_product_flash_attention",
    "aten::_scaled_dot_product_efficient_attention",
    "aten::_scaled_dot_product_cudnn_attention",
)
SOFTMAX = ("aten::softmax", "aten._softmax")
SOFTMAX_OUT = ("aten._softmax", "aten._safe_softmax")
SOFTMAX_BWD = ("aten._softmax_backward_data",)
MASK = ("aten::masked_fill", "aten.masked_fill")


def cost_model(
    impl: str = "naive",
    causal: bool = False,
    bias: bool = True,
    *,
    gqa: bool = False,
    window: bool = False,
    alibi: bool = False,
    cross: bool = False,
    context_width: bool = False,
    pos: str = "none",
) -> CostModel:
    """The symbolic cost of one MHSA block: one term per line, then sums.

    >>> from complexo.cost import plain
    >>> plain(cost_model().total(Kind.FORWARD, matmul_only=True))
    '4·B·d·n·(2·d + n)'
    """
    fused = impl != "naive"
    causal = causal or window
    hs = d / h  # head size
    kv = G * hs if gqa else d  # width of k and v: G heads of d/h
    keys = m if cross else n  # keys and values per sequence: the context's m, or the n tokens
    width = d_c if context_width else d  # width of what k and v are projected from
    S = B * h * n * keys  # elements of the (B, h, n, m) score matrix (n × n in self-attention)
    EW = ELEMENTWISE_FLOPS

    def ops(eager: tuple[str, ...], kernel: tuple[str, ...]) -> tuple[str, ...]:
        return kernel if fused else eager  # inside the fused kernel, or separate eager ops

    def fwd(name, expr, op, note="", mm=False):
        return Term(name, Kind.FORWARD, expr, mm, op, note)

    def bwd(name, expr, op, note="", mm=False):
        return Term(name, Kind.BACKWARD, expr, mm, op, note)

    def act(name, expr, note):
        return Term(name, Kind.ACTIVATION, expr, note=note)

    def when(condition: bool, *terms: Term) -> list[Term]:
        return list(terms) if condition else []

    att, att_bwd = ops(MATMUL, SDPA), ops(("aten.bmm",), SDPA_BWD)
    # elements the four projections' biases are added to: q and out over n tokens, k, v over m
    biased = B * (2 * n * d + 2 * m * kv) if cross else B * n * (2 * d + 2 * kv)
    recompute = EW * (2 if causal else 1) + SOFTMAX_RECOMPUTE_FLOPS  # scale, mask, exp(S − L)
    t = [
        # Forward. Projections: (B·n, d) x (d, d). Scores: B·h products (n, d/h) x (d/h, n).
        fwd("q_proj", 2 * B * n * d**2, LINEAR, "x·W_q: 2·(B·n)·d·d", mm=True),
        fwd("k_proj", 2 * B * keys * width * kv, LINEAR, "c·W_k" if cross else "x·W_k", mm=True),
        fwd("v_proj", 2 * B * keys * width * kv, LINEAR, "c·W_v" if cross else "x·W_v", mm=True),
        *when(bias, fwd("bias_add", EW * biased, LINEAR, "1 per element")),
        fwd("scores", 2 * B * h * n * keys * hs, att, "Q·Kᵀ, per head", mm=True),
        fwd("scale", EW * S, ops(("aten::mul", "aten.mul"), SDPA), "× 1/√(d/h)"),
        *when(alibi, fwd("alibi_bias", EW * (h + 2) * n**2, ALIBI_BUILD, "−m·|i − j|, once")),
        *when(alibi, fwd("alibi_add", EW * S, ("aten::add", "aten.add"), "added to the scores")),
        *when(causal, fwd("causal_mask", EW * S, ops(MASK, SDPA), "one select")),
        fwd("softmax", SOFTMAX_FWD_FLOPS * S, ops(SOFTMAX, SDPA), "5 per element"),
        fwd("attn_v", 2 * B * h * n * keys * hs, att, "A·V, per head", mm=True),
        fwd("out_proj", 2 * B * n * d**2, LINEAR, "y·W_o", mm=True),
        # Backward: dX = dY·Wᵀ and dW = Xᵀ·dY for every product, twice its forward.
        bwd("q_proj", 4 * B * n * d**2, ("aten.mm",), "dX and dW", mm=True),
        bwd("k_proj", 4 * B * keys * width * kv, ("aten.mm",), "dX and dW", mm=True),
        bwd("v_proj", 4 * B * keys * width * kv, ("aten.mm",), "dX and dW", mm=True),
        bwd("out_proj", 4 * B * n * d**2, ("aten.mm",), "dX and dW", mm=True),
        *when(bias, bwd("bias_grad", EW * biased, ("aten.sum",), "Σ dY")),
        *when(gqa, bwd("kv_share_grad", 2 * EW * B * keys * (d - kv), ("aten.sum",), "Σ h/G")),
        *when(not cross, bwd("x_grad_sum", 2 * EW * B * n * d, ("aten.add",), "q, k, v branches")),
        *when(cross, bwd("context_grad_sum", EW * B * m * width, ("aten.add",), "k, v branches")),
        # The fused kernel keeps no n×n matrix: it recomputes S = Q·Kᵀ and P = exp(S − L).
        *when(fused, bwd("scores_recompute", 2 * B * h * n * keys * hs, att_bwd, "Q·Kᵀ", mm=True)),
        *when(fused, bwd("probs_recompute", recompute * S, att_bwd, "scale, mask, exp(S − L)")),
        bwd("scores", 4 * B * h * n * keys * hs, att_bwd, "dQ and dK", mm=True),
        bwd("scale", EW * S, ops(("aten.mul",), SDPA_BWD)),
        *when(causal and not fused, bwd("causal_mask", EW * S, ("aten.masked_fill",))),
        bwd("softmax", SOFTMAX_BWD_FLOPS * S, ops(SOFTMAX_BWD, SDPA_BWD), "4 per element"),
        bwd("attn_v", 4 * B * h * n * keys * hs, att_bwd, "dA and dV", mm=True),
        # Parameters, as nn.Linear and nn.MultiheadAttention have them (W_k, W_v: d_c × G·d/h).
        Term("weights", Kind.PARAMS, 2 * d**2 + 2 * width * kv),
        *when(bias, Term("biases", Kind.PARAMS, 2 * d + 2 * kv)),
        # Saved for the backward: unique storages, parameters excluded.
        act("x", B * n * d * e, "input of the q projection" if cross else "input of q, k, v"),
        *when(cross, act("context", B * m * width * e, "input of the k and v projections")),
        act("q", B * n * d * e, "saved by SDPA" if fused else "saved by Q·Kᵀ"),
        act("k", B * keys * d * e, "saved by SDPA" if fused else "saved by Q·Kᵀ"),
        act("v", B * keys * d * e, "saved by SDPA" if fused else "saved by A·V"),
    ]
    if fused:
        t += [
            act("attn_out", B * n * d * e, "SDPA's output, also out_proj's input: one storage"),
            act("logsumexp", FP32_BYTES * B * h * n, "softmax statistics, fp32"),
        ]
    else:
        t += [
            *when(causal, act("causal_mask", BOOL_BYTES * n**2, "bool mask, kept by masked_fill")),
            act("probs", S * e, "softmax output, kept by softmax and A·V"),
            act("heads_out", B * n * d * e, "concatenated heads, input of out_proj"),
        ]
    # The n×n matrix the implementation materialises: the probabilities, or nothing.
    matrix = Integer(0) if fused else S * e
    note = "never materialised" if fused else "B·h·n·m probabilities" if cross else "B·h·n²"
    t.append(Term("attention_matrix", Kind.MEMORY, matrix, ops=SOFTMAX_OUT, note=note, tags=MATRIX))
    kv_note = "the context's, once per sample" if cross else "what a decoder caches"
    t.append(Term("kv", Kind.MEMORY, 2 * B * keys * kv * e, note=kv_note, tags=KV))
    t.append(Term("hbm", Kind.MEMORY, _traffic(fused, keys), note=TRAFFIC[fused], tags=HBM))
    t.append(
        Term(
            "hbm_backward",
            Kind.MEMORY,
            _traffic_backward(fused, keys),
            note=TRAFFIC_BWD[fused],
            tags=HBM_BWD,
        )
    )
    # What other implementations of the same attention would execute: only the pairs the mask
    # keeps (a banded kernel), or whole 128×128 tiles on and below the diagonal.
    pairs = n * W - W * (W - 1) / 2 if window else n * (n + 1) / 2 if causal else n * keys
    t.append(
        Term(
            "useful",
            Kind.ALTERNATIVE,
            4 * B * d * pairs,
            True,
            note="kept pairs only",
            tags=frozenset({"useful"}),
        )
    )
    if causal and not window:
        t.append(
            Term(
                "block_skip",
                Kind.ALTERNATIVE,
                2 * B * d * n * (n + BLOCK),
                True,
                note=f"{BLOCK}-wide tiles on and below the diagonal (n a multiple of it)",
                tags=frozenset({"block_skip"}),
            )
        )
    t += position_terms(pos, gqa)  # learned, sinusoidal, RoPE (ALiBi's terms are above)
    return CostModel(t)


MATRIX, KV, HBM = frozenset({"matrix"}), frozenset({"kv"}), frozenset({"hbm"})
HBM_BWD = frozenset({"hbm_bwd"})
ALIBI_BUILD = ("aten::mul", "aten.mul")
TRAFFIC = {
    False: "standard attention: read Q, K; write, read S; write, read P; read V; write O",
    True: "FlashAttention's tiled loop: K, V once; Q, O, l, m once per K/V block",
}


def _traffic(fused: bool, keys=n):
    """Device-memory bytes of the attention core (Q, K, V in, O out), per the FlashAttention
    paper's analysis, for n queries and ``keys`` keys (m in cross-attention): standard attention
    moves 2·n·(d/h) + 2·m·(d/h) + 4·n·m elements per head (Q, O; K, V; S and P written and read),
    Θ(n·d + n·m); the tiled algorithm with on-chip memory M loads K and V once and Q, O (and
    fp32 l, m) once per outer block of B_c = ⌈M/(4·(d/h)·e)⌉ keys: Θ(n·m·d²/M)."""
    hs = d / h
    if not fused:
        return B * h * (2 * n * hs + 2 * keys * hs + 4 * n * keys) * e
    passes = sympy.ceiling(keys / sympy.ceiling(M / (4 * hs * e)))  # T_c outer iterations
    elements = n * hs + 2 * keys * hs + passes * 3 * n * hs  # init O; K, V; Q, O in and O out
    statistics = FP32_BYTES * (2 * n + passes * 4 * n)  # init l, m; read and write per pass
    return B * h * (elements * e + statistics)


TRAFFIC_BWD = {
    False: "standard backward: read P, dO; write dV, dP; read P, dP; write dS; read dS twice",
    True: "FlashAttention's backward: K, V once; Q, O, dO, dQ (and l, m) once per K/V block",
}


def _traffic_backward(fused: bool, keys=n):
    """Device-memory bytes of the attention core's backward (dO in; dQ, dK, dV out), per the
    FlashAttention paper's Algorithms 3 and 4. Standard attention re-reads the n×m matrices it
    wrote: P and dO for dV = Pᵀ·dO (dV written), dO and V for dP = dO·Vᵀ (dP written), P and dP
    for dS (dS written), dS and K for dQ, dS and Q for dK: 7·n·m + 4·(n + m)·(d/h) elements per
    head. The tiled kernel keeps no matrix: it writes dQ = 0, then per outer block of B_c keys
    loads K_j, V_j once (dK_j, dV_j written once at its end) and, for every query block, Q_i,
    O_i, dO_i, dQ_i and fp32 l_i, m_i, writing dQ_i back; P is recomputed on chip from Q, K and
    the statistics: Θ(n·m·d²/M) again."""
    hs = d / h
    if not fused:
        return B * h * (7 * n * keys + 4 * (n + keys) * hs) * e
    passes = sympy.ceiling(keys / sympy.ceiling(M / (4 * hs * e)))  # T_c outer iterations
    elements = n * hs + 4 * keys * hs + passes * 5 * n * hs  # dQ = 0; K, V, dK, dV; per pass
    statistics = FP32_BYTES * passes * 2 * n  # l and m read per pass
    return B * h * (elements * e + statistics)
