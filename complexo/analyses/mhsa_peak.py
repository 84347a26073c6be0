"""The MHSA block's training step as it really peaks (:mod:`complexo.peak`): a ledger written by
reading ``blocks/attention.py`` and autograd's formulas line by line.

Forward: q, k, v are Python locals of ``forward`` (alive to its end; with grouped heads the raw
k and v too, beside their copies repeated to h heads, which Q·Kᵀ and A·V save); every
element-wise pass over the B·h·n·m scores is out of place, so two matrices coexist, and the
softmax's output P is saved; the causal mask's ones and tril are locals of ``attend``, ~keep is
saved by masked_fill; the heads are merged by a copy (naive; SDPA's output is laid out so that
the merge is a view; so is naive's with one head or one token, and with head size 1 a strided
view that out_proj's matmul copies); the output stays alive (the step holds it).

Backward, in autograd's order: out_proj's dX, dW, db (its saved input freed after); A·V's dV
and dP (an n×m matrix; y's gradient and V freed after); softmax's dS (P and dP freed after,
so three n×m matrices are live at this moment: P, dP, dS); the mask's and the scale's
gradients (one matrix each, the previous freed); Q·Kᵀ's dQ and dK (the scores' gradient, Q and
K freed after); then each projection's backward: the heads' gradient copied contiguous where
its layout needs it, dX, dW, db, and x's gradient accumulated over the q, k, v branches. SGD
keeps no state and allocates nothing.
"""

from __future__ import annotations

from complexo.conventions import BOOL_BYTES, FP32_BYTES
from complexo.cost import Kind
from complexo.peak import Ledger
from complexo.symbols import B, G, P, d, d_c, e, h, m, n

INT64_BYTES = 8


def ledger(cfg) -> Ledger:
    """The step's allocations and frees for ``cfg`` (an mhsa Config), as sympy over its
    symbols."""
    model = cfg.model()
    hs = d / h
    gqa = cfg.kv_heads is not None and cfg.kv_heads != cfg.heads
    kv = G * hs if cfg.kv_heads is not None else d  # width of k and v
    keys = m if cfg.cross else n
    width = d_c if cfg.kv_dim is not None else d
    X = B * n * d * e  # a (B, n, d) tensor
    KV = B * keys * kv * e  # k or v as projected
    KH = B * keys * d * e  # k or v at h heads
    S = B * h * n * keys * e  # one score matrix
    mask = BOOL_BYTES * n**2
    given = {"weights": model.total(Kind.PARAMS) * e, "x": X}
    if cfg.cross:
        given["context"] = B * keys * width * e
    pos = getattr(cfg, "pos", "none")
    if pos == "sinusoidal":  # fixed tables are buffers beside the weights
        given["table"] = P * d * e
    elif pos == "rope":  # cos and sin, (P, hs/2) each
        given["cos_sin"] = P * hs * e
    book = Ledger(**given)
    if pos in ("learned", "sinusoidal"):  # x + table[:n]: the projections' input, saved
        book.alloc("x + positions", xp=X)
    book.alloc("q projection", q=X)
    book.alloc("k projection", k=KV)
    book.alloc("v projection", v=KV)
    kh, vh = "k", "v"
    if gqa:
        book.alloc("k repeated to h heads", kh=KH)
        book.alloc("v repeated to h heads", vh=KH)
        kh, vh = "kh", "vh"
    # torch.matmul folds (B, h) into one batch dimension: a view only when one of them is 1
    # or the sequence is one token, else q (and k, v when not repeated) are copied contiguous,
    # and the copies are saved
    copies = not cfg.fused and cfg.batch > 1 and cfg.heads > 1
    q_copy = copies and cfg.seq > 1
    kv_copy = copies and not gqa and (cfg.kv_seq if cfg.cross else cfg.seq) > 1
    if q_copy:
        book.alloc("q copied for the batched product", q_c=X)
    if kv_copy:
        book.alloc("k copied for the batched product", k_c=KH)
    if cfg.fused:
        book.alloc("SDPA: output and fp32 log-sum-exp", y=X, lse=FP32_BYTES * B * h * n)
        merged = "y"
    else:
        book.alloc("scores Q·Kᵀ", s1=S)
        book.alloc("scaled scores (out of place)", s2=S)
        book.free("s1")
        last = "s2"
        if cfg.alibi:
            _alibi(book, cfg, S)
            book.free("s2")
            last = "s3"
        if cfg.causal:
            book.alloc("causal mask: ones", ones=mask)
            book.alloc("causal mask: tril", keep=mask)
            if cfg.window is not None:
                book.alloc("window: triu", triu=mask)
                book.alloc("window: tril & triu", band=mask)
                book.free("keep", "triu")
                book.live["keep"] = book.live.pop("band")
            book.alloc("causal mask: ~keep", notkeep=mask)
            book.alloc("masked scores", s4=S)
            book.free(last)
            last = "s4"
        book.alloc("softmax P (saved)", p=S)
        book.free(last)
        if kv_copy:
            book.alloc("v copied for the batched product", v_c=KH)
        book.alloc("A·V", y=X)
        if cfg.causal:
            book.free("ones", "keep")
        merged = _merge(book, cfg, X)
    if merged != "y-view":
        book.alloc("out projection", out=X)
    else:  # F.linear on the strided view: matmul folds it to (B·n, d), a copy for B > 1 (saved;
        # for B = 1 a transposed view, which mm takes as it is), mm, then the bias added
        if cfg.batch > 1:
            book.alloc("out projection: its matmul's copy of the merged heads", merged=X)
        book.alloc("out projection: mm", out=X)
        if cfg.bias:  # out of place under FakeTensorMode (a tensor subclass); real: add_
            book.alloc("out projection: + the bias (out of place)", out_b=X)
            book.free("out")
            book.live["out"] = book.live.pop("out_b")
        if cfg.batch > 1:
            book.free("y")  # the view's base, a local of the forward
        merged = "merged" if cfg.batch > 1 else "y"
    if gqa:
        book.free("k", "v")  # forward's locals; the repeated copies are what is saved
    for name in ("q", "k", "v") if q_copy or kv_copy else ():
        if f"{name}_c" in book.live:  # the copy is what is saved; the local goes
            book.free(name)
            book.live[name] = book.live.pop(f"{name}_c")
    # the loss and its seed gradient exist before autograd's engine starts: MemTracker's forward
    book.alloc("loss out.sum() and its seed gradient", loss=2 * e)
    book.phase = "backward"
    bias = {"b": d * e} if cfg.bias else {}
    book.alloc("out_proj backward: dX", dy=X)
    book.alloc("out_proj backward: dW", g_wo=d * d * e)
    if cfg.bias:
        book.alloc("out_proj backward: db", g_bo=d * e)
    if cfg.fused:
        book.alloc("SDPA backward: dQ, dK, dV", dq=X, dkh=KH, dvh=KH)
        book.free("dy", "q", kh, vh, "lse", "y")
    else:
        book.free(merged)
        book.alloc("A·V backward: dV", dvh=KH)
        book.alloc("A·V backward: dP", dp=S)
        book.free("dy", vh)
        book.alloc("softmax backward: dS", ds=S)
        book.free("p", "dp")
        if cfg.causal:
            book.alloc("masked_fill backward", ds_mask=S)
            book.free("ds", "notkeep")
            book.live["ds"] = book.live.pop("ds_mask")
        book.alloc("scale backward", ds_scale=S)
        book.free("ds")
        book.alloc("Q·Kᵀ backward: dQ", dq=X)
        book.alloc("Q·Kᵀ backward: dK", dkh=KH)
        book.free("ds_scale", "q", kh)
    _projections(book, cfg, gqa, X, KV, B * keys * width * e, kv, width, bias)
    # the learned table's gradient: dY summed over the batch, into its n rows. At the smallest
    # sizes, where the step peaks here at its tail, MemTracker reads d·e bytes fewer (n = 2,
    # d = 2: 344 against 352 bytes in fp32); the peak of any size where it is elsewhere is exact
    if pos == "learned":
        book.alloc("learned table backward: dY summed over the batch", g_rows=n * d * e)
        book.alloc("learned table backward: its (P, d) gradient", g_table=P * d * e)
        book.free("g_rows")
    if pos in ("learned", "sinusoidal"):
        book.free("xp")  # the projections' saved input, released with the graph
    del merged
    return book


def _merge(book: Ledger, cfg, X) -> str:
    """``y.transpose(1, 2).reshape(B, n, d)``: a copy of A·V's (B, h, n, d/h) output (y freed
    at once) unless the layout allows a view: one head or one token (a contiguous view, y is
    the merged tensor), or head size 1 (``"y-view"``: a strided view, which out_proj's
    matmul copies)."""
    if cfg.heads == 1 or cfg.seq == 1:
        return "y"
    if cfg.dim == cfg.heads:
        return "y-view"
    book.alloc("heads merged (a copy)", merged=X)
    book.free("y")
    return "merged"


def _alibi(book: Ledger, cfg, S) -> None:
    """``alibi_bias``: fp32 slopes (h), int64 positions (n), their int64 n×n difference and its
    absolute value (both live while abs runs), the negated slopes beside the fp32 h×n×n
    product, then its cast to the block's dtype; what ``att + bias`` adds is freed after."""
    book.alloc("ALiBi: slopes, positions", slopes=4 * h, pos=INT64_BYTES * n)
    book.alloc("ALiBi: i − j", diff=INT64_BYTES * n**2)
    book.alloc("ALiBi: |i − j|", distance=INT64_BYTES * n**2)
    book.free("diff")
    book.alloc("ALiBi: −slopes · |i − j| in fp32", neg=4 * h, bias32=4 * h * n**2)
    book.free("neg")
    built = ["slopes", "pos", "distance"]
    if cfg.dtype != "fp32":
        book.alloc("ALiBi bias cast to the block's dtype", bias=h * n**2 * e)
        built.append("bias32")
    else:
        book.live["bias"] = book.live.pop("bias32")
    book.free(*built)
    book.alloc("scores + ALiBi", s3=S)
    book.free("bias")


def _projections(book: Ledger, cfg, gqa, X, KV, C, kv, width, bias) -> None:
    """The three input projections' backward, in autograd's order (the latest-made node first:
    v, k, q; with grouped heads v's and k's repeats summed before), and x's (and the
    context's) gradient accumulated."""
    e_ = e
    if gqa:
        for name in ("dvh", "dkh"):
            book.alloc(f"sum of the h/G copies' gradient ({name[1]})", **{name[:2]: KV})
            book.free(name)
        paths = [("dv", C, width, kv, True), ("dk", C, width, kv, True), ("dq", X, d, d, True)]
    else:
        book.live["dk"] = book.live.pop("dkh")
        book.live["dv"] = book.live.pop("dvh")
        # naive: dV's and dQ's heads need a contiguous copy (the batched products give them
        # as (B, h, n, d/h)), unless one head makes that layout (B, n, d) already; dKᵀ's
        # layout is (B, n, d) as it comes; SDPA's kernel gives all three as (B, n, h, d/h)
        copy = not cfg.fused and cfg.heads > 1
        paths = [("dv", C, width, kv, copy), ("dk", C, width, kv, False), ("dq", X, d, d, copy)]
    acc = {"x": [], "context": []}
    for grad, rows_bytes, w_in, w_out, copy in paths:
        src = "context" if cfg.cross and grad != "dq" else "x"
        if copy:
            book.alloc(
                f"{grad[1]} heads' gradient made contiguous", **{f"{grad}_c": book.live[grad]}
            )
            book.free(grad)
            grad = f"{grad}_c"
        book.alloc(f"{grad[1]}_proj backward: dX", **{f"dx_{grad}": rows_bytes})
        book.alloc(f"{grad[1]}_proj backward: dW", **{f"g_w{grad}": w_in * w_out * e_})
        if bias:
            book.alloc(f"{grad[1]}_proj backward: db", **{f"g_b{grad}": w_out * e_})
        book.free(grad)
        acc[src].append(f"dx_{grad}")
        if len(acc[src]) == 2:
            book.alloc(
                f"{src}'s gradient summed over branches", **{f"sum_{src}_{grad}": rows_bytes}
            )
            book.free(*acc[src])
            acc[src] = [f"sum_{src}_{grad}"]
            # AccumulateGrad copies the sum under FakeTensorMode (the sum kept to the step's
            # end); on real tensors it takes the sum itself: C bytes fewer, in the tail only
            if src == "context":
                book.alloc("the context's gradient copied into its .grad", g_context=rows_bytes)
    book.free("loss")
    book.phase = "optimizer"


def tracked(cfg, optimizer: str = "sgd"):
    """The same step measured by MemTracker under FakeTensorMode
    (:func:`complexo.peak.tracked_step`)."""
    from complexo.peak import tracked_step

    return tracked_step(lambda: _build(cfg), optimizer)


def _build(cfg):
    """The reference block and its inputs as ``mhsa.build`` makes them, in the current (fake)
    mode."""
    from complexo.analyses.mhsa import build

    return build(cfg, device=None)


def all_live(cfg, model) -> int:
    """The sum the issue measured against: weights, their gradients, x (and the context), the
    output and every saved activation, as if all were live at once."""
    from complexo.cost import evaluate

    values = cfg.values
    weights = evaluate(model.total(Kind.PARAMS), values) * values[e]
    given = cfg.batch * cfg.seq * cfg.dim * values[e]
    if cfg.cross:
        given += cfg.batch * cfg.kv_seq * (cfg.kv_dim or cfg.dim) * values[e]
    out = cfg.batch * cfg.seq * cfg.dim * values[e]
    return 2 * weights + given + out + evaluate(model.total(Kind.ACTIVATION), values)


def quantity(cfg, model):
    """The training step's peak as a quantity, MemTracker's reading beside it, and its note."""
    from complexo.peak import peak_quantity

    return peak_quantity(ledger(cfg), cfg.values, lambda: tracked(cfg), all_live(cfg, model))
