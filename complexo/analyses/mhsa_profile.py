"""The MHSA block run for real: the rows a profiler can tell apart (the four projections with
their bias adds, the two attention products and each element-wise pass over the n×n scores; or
the fused kernel), the memory it should peak at, and the step (a forward without autograd, or
forward, backward and SGD in profiler ranges). :func:`complexo.profile.run` does the rest.

Bias adds belong to the projections' row: ``nn.Linear`` runs ``addmm``, which adds the bias in
the matrix product's epilogue, so no profiler can time them apart.
"""

from __future__ import annotations

from sympy import Integer

from complexo.analyses.positions import PROFILED
from complexo.conventions import BOOL_BYTES, DTYPES
from complexo.cost import Kind, evaluate
from complexo.registry import Profiling, Row, Setup, sgd_rows
from complexo.symbols import B, G, d, d_c, e, h, m, n

F = Kind.FORWARD
PROJECTIONS = ("aten::addmm", "aten::mm")
RANGED = ("learned", "sinusoidal", "rope")  # encodings with a module of their own
POSITION_TERMS = ("pos_add", "rope_q", "rope_k")


def rows(cfg, mode: str, side: str = "") -> list[Row]:
    """The forward's rows (inside the forward's range in training), then in training the
    backward and the optimizer, which complete the step, and the forward phase as a whole
    beside them. Bytes: each input read once and each output written once."""
    from complexo.analyses.mhsa_cost import SDPA_KERNELS, _traffic

    hs = d / h
    kv = G * hs if cfg.kv_heads is not None else d
    keys = m if cfg.cross else n  # the context's m tokens in cross-attention
    width = d_c if cfg.kv_dim is not None else d  # what k and v are projected from
    x, S = B * n * d * e, B * h * n * keys * e  # one (B, n, d) tensor; the score matrix
    c = B * keys * width * e  # k and v's input: x, or the context
    # with positions, a forward's ops are read inside its range too: RoPE's multiplies are
    # aten::mul as the scale's are, told apart by the range they run in
    within = "complexo::forward" if mode == "train" or cfg.pos in RANGED else ""

    def row(name, names, moved, ops):
        return Row(name, tuple((F, t) for t in names), moved, ops, within)

    # q and out: x and W in, (B, n, d) out; k and v: x (or context) and W in, (B, m, G·hs) out
    proj_bytes = 2 * (2 * x + d * d * e) + 2 * (c + width * kv * e + B * keys * kv * e)
    projections = ["q_proj", "k_proj", "v_proj", "out_proj"]
    if cfg.bias:
        projections.append("bias_add")
        proj_bytes += (2 * d + 2 * kv) * e
    out = [row("projections", projections, proj_bytes, PROJECTIONS)]
    if cfg.pos in RANGED:
        out.append(_positions_row(cfg))
    if cfg.fused:
        names = ["scores", "scale", *(["causal_mask"] if cfg.causal else []), "softmax", "attn_v"]
        out.append(row("attention kernel", names, _traffic(True, keys), SDPA_KERNELS))
    else:
        # Q·Kᵀ: q, k in, S out; A·V: P, v in, y out (k and v of h heads, over the m keys)
        kv_heads = 2 * B * keys * d * e
        out.append(
            row("QKᵀ and A·V", ["scores", "attn_v"], 2 * x + kv_heads + 2 * S, ("aten::bmm",))
        )
        out.append(row("scale", ["scale"], 2 * S, ("aten::mul",)))
        if cfg.alibi:
            out.append(
                row("alibi", ["alibi_bias", "alibi_add"], 2 * S + h * n**2 * e, ("aten::add",))
            )
        if cfg.causal:
            mask = 2 * S + BOOL_BYTES * n**2
            out.append(row("mask", ["causal_mask"], mask, ("aten::masked_fill",)))
        out.append(row("softmax", ["softmax"], 2 * S, ("aten::_softmax",)))
    if mode == "train":
        out += sgd_rows(cfg.model(), sum((r.bytes for r in out), Integer(0)))
    return out


def _positions_row(cfg) -> Row:
    """The encoding's forward ops, inside their own range (its module's calls). Fewest bytes:
    learned, sinusoidal: x and table[:n] read, x + table written; RoPE: q and k read and written,
    the n rows of cos and sin read. 1 FLOP per 8 fp32 bytes (the add), 3 per 8 (RoPE): far below
    any device's ridge, memory-bound."""
    model = cfg.model()
    names = tuple((F, t.name) for t in model.terms(F) if t.name in POSITION_TERMS)
    if cfg.pos == "rope":
        kv = G * d / h if cfg.kv_heads is not None else d
        moved = 2 * B * n * (d + kv) * e + n * d / h * e
    else:
        moved = 2 * B * n * d * e + n * d * e
    return Row("positions", names, moved, PROFILED, "complexo::positions")


def memory(cfg, mode: str, side: str, model) -> tuple[int, int, str]:
    """Inference: what the block is given and its high-water mark above that
    (:func:`forward_peak`); training: the step's high-water mark with lifetimes
    (:mod:`complexo.analyses.mhsa_peak`: weights, x, what is live at the moment it peaks)."""
    from complexo.units import human

    values = cfg.values
    weights = evaluate(model.total(Kind.PARAMS), values) * values[e]
    x_bytes = cfg.batch * cfg.seq * cfg.dim * values[e]  # x, and the output: (B, n, d) each
    given = x_bytes  # what the block is given: x, and in cross-attention the context
    if cfg.cross:
        given += cfg.batch * cfg.kv_seq * (cfg.kv_dim or cfg.dim) * values[e]
    if cfg.pos in ("sinusoidal", "rope"):  # a fixed table: a buffer beside the weights
        given += evaluate(model.total(Kind.MEMORY, tag="positions"), values)
    if mode == "train":
        from complexo.analyses.mhsa_peak import ledger
        from complexo.peak import peak

        predicted = peak(ledger(cfg).moments, values).bytes
    else:
        predicted = weights + given + forward_peak(cfg)
    # n×n matrices: two coexist in the forward (each element-wise pass is out of place); the
    # probabilities are saved for the backward
    matrix = evaluate(model.total(Kind.MEMORY, tag="matrix"), values)
    scores = 2 * matrix if mode == "forward" else matrix
    hint = "a smaller --seq or --batch" + (
        f", or --impl sdpa: its n×n score matrices are {human(scores, 'byte')} of it"
        if not cfg.fused and scores > predicted / 2
        else ""
    )
    return predicted, predicted, hint


def setup(cfg, mode: str, side: str, device: str) -> Setup:
    import torch

    from complexo.analyses.mhsa import build
    from complexo.profile.trace import _module_ranges, _phased_step

    block, inputs = build(cfg, device=device)
    inputs = [t.detach().requires_grad_(mode == "train") for t in inputs]  # x (and the context)
    ranges = None
    if cfg.pos in RANGED:
        # while profiled: the encoding's module calls in complexo::positions, the block's in
        # complexo::forward (RoPE's aten::mul told from the scale's by the range it runs in)
        names = {"": "forward", "positions": "positions", "rope": "positions"}

        def ranges():
            return _module_ranges(block, lambda path, _m: names.get(path))

    if mode == "train":
        step = _phased_step(lambda: block(*inputs), torch.optim.SGD(block.parameters(), lr=1e-6))
        notes = [
            "training: the terms' times are their ops' inside the forward's range; the phases "
            "(forward, backward, optimizer) are the whole step, timed by range"
        ]
        given = [*block.parameters(), *inputs, *block.buffers()]
        return Setup(step, given, ranges=ranges, notes=notes)

    def forward():
        with torch.no_grad():
            block(*inputs)

    notes = []
    if ranges:
        notes.append(
            "with --pos, the block's ops run inside profiler ranges (complexo::forward, "
            "::positions): the time no row covers is not named op by op"
        )
    return Setup(forward, [*block.parameters(), *inputs, *block.buffers()], ranges, notes=notes)


PROFILING = Profiling(
    ("forward", "train"),
    model=lambda cfg, side="": cfg.model(),
    rows=rows,
    memory=memory,
    setup=setup,
    cuda_graph=True,
)


def profile_mhsa(cfg, **runs):
    """The block at ``cfg`` run for real (:func:`complexo.profile.step.profile_side`)."""
    from complexo.analyses.mhsa import ANALYSIS
    from complexo.profile.step import profile_side

    return profile_side(ANALYSIS, cfg, **runs)


def forward_peak(cfg) -> int:
    """Bytes the reference block allocates at its high-water mark in one inference forward
    (no autograd), beyond its weights and inputs: what a run needs on top of what it was given.
    Stage by stage in ``blocks/attention.py``: q, k, v stay alive to the end of ``forward``;
    with grouped heads, k and v repeated to h heads live through ``attend``; every element-wise
    pass over the scores is out of place, so two B·h·n·m matrices coexist (the scores and their
    scaled copy, then the softmax's input and output; m = n in self-attention); the causal mask
    holds three n×n bools (all-ones, tril, its negation) as masked_fill runs; ALiBi builds an
    int64 n×n distance (two while abs runs) and an fp32 h×n×n bias, then casts it (at tiny
    sizes the int64 pair is its largest stage); after ``attend`` the heads are
    merged by a copy. The fused kernel keeps no matrix (its own work buffers are internal)."""
    B, n, d, h, e = cfg.batch, cfg.seq, cfg.dim, cfg.heads, DTYPES[cfg.dtype].bytes
    m = cfg.kv_seq or n  # keys: the context's, or the n tokens
    kv = d // h * (cfg.kv_heads or cfg.heads)
    qkv = (B * n * d + 2 * B * m * kv) * e
    shared = 2 * B * m * d * e if cfg.kv_heads not in (None, cfg.heads) else 0
    y, S = B * n * d * e, B * h * n * m * e
    merge = 2 * y  # the heads and their merged copy, then the merged copy and the output
    # RoPE turns q, then k, out of place before v exists: at its cat q, k, the two rotated
    # halves and the whole, |q| + |k| + 2·max(|q|, |k|) ≤ q, k, v and the merge's 2·|y|: never
    # the peak; nor is an added table's x + table[:n] beside q, k, v (|y| ≤ 2·|y|)
    if cfg.fused:
        return qkv + max(shared + y, merge)
    stages = [2 * S, S + y]  # scale / softmax: input and output; A·V: probabilities and y
    if cfg.causal or cfg.window is not None:
        masks = 3 * n**2 * BOOL_BYTES  # ones, tril (and the window's band), ~keep
        stages += [2 * S + masks, S + 2 * n**2 * BOOL_BYTES + y]
        if cfg.window is not None:  # tril, triu and their & beside the ones
            stages.append(S + 4 * n**2 * BOOL_BYTES)
    if cfg.alibi:
        # fp32 slopes (4h) and int64 positions (8n) throughout; i − j and its |·| (int64 n×n
        # each) while abs runs; then the distance, the negated slopes and the fp32 h×n×n
        # product; then that product and its cast to the block's dtype (the negation freed)
        kept = 4 * h + 8 * n
        cast = h * n**2 * e if e != 4 else 0
        stages += [
            S + kept + 16 * n**2,
            S + kept + 4 * h + 8 * n**2 + 4 * h * n**2,
            S + kept + 8 * n**2 + 4 * h * n**2 + cast,
            2 * S + h * n**2 * e,
        ]
    return qkv + max(shared + max(stages), merge)
