"""LLaMA-style models' training steps for :mod:`complexo.analyses.lora_peak`: the ledger of
``blocks/transformer.py``'s llama path (RMSNorm written out, rotary positions, SwiGLU, no
biases, grouped-query attention, an untied head), op by op as autograd runs it, with the same
:class:`~complexo.analyses.lora_peak_ops.Book` and linear layers as the GPT-2 path; RMSNorm's
and the rotation's ops are :mod:`complexo.analyses.lora_peak_llama_ops`'s. The rotary tables
are made once per forward, kept by every layer's q·cos and (−x₂, x₁)·sin that needs a
gradient. SwiGLU: gate, SiLU, up, the product (SiLU's output and up's kept by it, the gate's by
SiLU), down.

Activation checkpointing (``cfg.checkpoint``, the GPT-2 path's semantics): ``full`` runs each
block under ``torch.utils.checkpoint`` with the rotary tables among its arguments, so each
checkpoint keeps the block's input and both tables until its backward has run; the forward
saves nothing, and the backward runs the block again, stopped once down_proj's last saved
tensor is packed (its weight, and its input where it trains; with an adapter, B's), before its
product. ``selective`` checkpoints the core: it keeps the rotated q and k and v (G heads), and
just before SDPA's backward runs the repeats and SDPA again, their output and log-sum-exp
saved.

Symbols: X = B·n·d·e, K = B·n·G·(d/h)·e (k and v with G heads), F = B·n·f·e.
"""

from __future__ import annotations

from complexo.analyses.lora_peak_llama_ops import RMSNorm, Rotate, rotary_tables
from complexo.analyses.lora_peak_ops import Book, Linear
from complexo.conventions import FP32_BYTES
from complexo.symbols import B, G, V, d, e, f, h, n, r


def layer(book: Book, cfg, i: int, x: str, x_grad: bool, full: bool, tables, output: str = ""):
    """One LLaMA block's forward: returns (its output, whether it needs a gradient, the
    backward to run later). ``output``: the block is a checkpoint's rerun (``book.rerun``),
    stopped before down_proj's product; its output is the forward's, ``output``."""
    from complexo.analyses.lora_cost import _adapted
    from complexo.analyses.lora_peak import _core_again, _residual

    spec, targets = cfg.spec, () if full else cfg.targets
    selective, since = cfg.checkpoint == "selective", book.count
    gqa = spec.groups != spec.heads
    kv = G * d / h

    def linear(name, i_, o_):
        adapted = _adapted(name, targets)
        return Linear(book, f"layer {i} {name}", i_, o_, bias=False, trained=full, adapted=adapted)

    norm1, norm2 = RMSNorm(book, f"layer {i} norm1", full), RMSNorm(book, f"layer {i} norm2", full)
    q, k, v, o = (
        linear(name, d, w)
        for name, w in zip(("q_proj", "k_proj", "v_proj", "out_proj"), (d, kv, kv, d), strict=True)
    )
    if gqa and spec.groups > 1:  # G = 1: (B, n, 1, d/h) is contiguous, nothing to copy
        k.copy_grad = v.copy_grad = True
    gate, up, down = linear("gate_proj", d, f), linear("up_proj", d, f), linear("down_proj", f, d)
    h1, h1_grad = norm1.forward(x, x_grad)
    qkv = [m.forward(h1, h1_grad) for m in (q, k, v)]
    att = any(grad for _, grad in qkv)
    rq, rk = (
        Rotate(book, f"layer {i} rotate q", d, tables),
        Rotate(book, f"layer {i} rotate k", kv, tables),
    )
    q_r = rq.forward(qkv[0][0], qkv[0][1])
    k_r = rk.forward(qkv[1][0], qkv[1][1])
    book.drop(qkv[0][0])  # q and k rebound to their rotations
    book.drop(qkv[1][0])
    shared = [q_r]
    for label, name in (("k", k_r), ("v", qkv[2][0])):
        repeat = {"kh": B * n * d * e}
        shared += book.make(f"layer {i}: {label} repeated to h heads", **repeat) if gqa else [name]
    y, lse = book.make(f"layer {i}: SDPA", y=B * n * d * e, lse=FP32_BYTES * B * h * n)
    core = [q_r, k_r, qkv[2][0]]  # the core's arguments
    if selective and att:  # the core under a checkpoint: it keeps q, k, v; SDPA nothing
        for name in core:
            book.hold(name, f"checkpoint {i}")
    if att and book.saving and not selective:
        for name in (*shared, y, lse):
            book.hold(name, f"layer {i} sdpa")
    book.drop(lse)
    for name in shared[1:] if gqa else []:  # the copies: SDPA's arguments, until it returns
        book.drop(name)
    out, o_grad = o.forward(y, att)
    for name in (q_r, k_r, qkv[2][0], y, h1):  # attention's locals, until it returns
        book.drop(name)
    (x1,) = book.make(f"layer {i}: residual", x1=B * n * d * e)
    book.drop(out)
    x1_grad = x_grad or o_grad
    h2, h2_grad = norm2.forward(x1, x1_grad)
    g_, g_grad = gate.forward(h2, h2_grad)
    (s,) = book.make(f"layer {i}: SiLU", silu=B * n * f * e)
    if g_grad:
        book.hold(g_, f"layer {i} silu")
    book.drop(g_)
    u, u_grad = up.forward(h2, h2_grad)
    (prod,) = book.make(f"layer {i}: SiLU(gate)·up", prod=B * n * f * e)
    if u_grad:
        book.hold(s, f"layer {i} prod")
    if g_grad:
        book.hold(u, f"layer {i} prod")
    book.drop(s)
    book.drop(u)
    m, m_grad = down.forward(prod, g_grad or u_grad, stop=bool(output))
    x2 = book.block_end(i, x, x1, m, (prod, h2), output, since)

    def backward():
        _residual(book, x2, x1, x1_grad, m, m_grad)
        if m_grad:
            down.backward()
            gp = book.take(prod)
            ds = (
                book.make(f"layer {i}: product's backward: dy·up", ds=B * n * f * e)
                if g_grad
                else []
            )
            du = (
                book.make(f"layer {i}: product's backward: dy·SiLU", du=B * n * f * e)
                if u_grad
                else []
            )
            book.drop(gp, f"grad:{prod}")
            if u_grad:
                book.drop(s, f"layer {i} prod")
            if g_grad:
                book.drop(u, f"layer {i} prod")
            for name in du:
                book.contribute(u, name, f"layer {i} prod")
                up.backward()
            for name in ds:
                (dg,) = book.make(f"layer {i}: SiLU's backward", dg=B * n * f * e)
                book.drop(name)
                book.drop(g_, f"layer {i} silu")
                book.contribute(g_, dg, f"layer {i} silu")
                gate.backward()
            if h2_grad:
                norm2.backward()
        if not x1_grad:
            return
        _residual(book, x1, x, x_grad, out, o_grad)
        if o_grad:
            o.backward()
        if not att:
            return
        gy = book.take(y)
        saved, saved_y, saved_lse = shared, y, lse
        if selective:  # out_proj let go of y; the core runs again for SDPA's backward
            saved, saved_y, saved_lse = _core_again(book, i, [(t, True) for t in core], gqa)
        names = book.make(
            f"layer {i}: SDPA's backward: dQ, dK, dV",
            dq=B * n * d * e,
            dk=B * n * d * e,
            dv=B * n * d * e,
        )
        book.drop(gy, f"grad:{y}")
        for name in saved:
            book.drop(name, f"layer {i} sdpa")
        book.drop(saved_y, f"layer {i} sdpa")
        book.drop(saved_lse, f"layer {i} sdpa")
        for name in core if selective else ():
            book.drop(name, f"checkpoint {i}")
        for (_, grad), dname in zip(qkv, names, strict=True):
            if not grad:
                book.drop(dname)
        if gqa:  # the repeats' backward (v's first): each head group's gradients summed
            for (_, grad), dname in zip(qkv[:0:-1], names[:0:-1], strict=True):
                if grad:
                    (summed,) = book.make(
                        f"layer {i}: {dname[1]}'s repeats summed", dkv=B * n * kv * e
                    )
                    book.drop(dname)
                    names[names.index(dname)] = summed
        for (_, grad), name, dname in zip(qkv, (q_r, k_r, qkv[2][0]), names, strict=True):
            if grad:
                book.contribute(name, dname, f"layer {i} sdpa")
        for rot, (_, grad) in ((rk, qkv[1]), (rq, qkv[0])):
            if grad:
                rot.backward()
        for m_, (_, grad) in zip((v, k, q), reversed(qkv), strict=True):
            if grad:
                m_.backward()
        if h1_grad:
            norm1.backward()

    return x2, x1_grad or m_grad, backward


def checkpointed(book: Book, cfg, i: int, x: str, x_grad: bool, full: bool, tables):
    """Block i under torch.utils.checkpoint (full): the checkpoint keeps its arguments, the
    block's input and the rotary tables, until its backward has run; the forward saves nothing
    else; the backward runs the block again, stopped before down_proj's product, then the
    block's backward."""
    for name in (x, *tables):
        book.hold(name, f"checkpoint {i}")
    book.saving = False
    out, out_grad, _ = layer(book, cfg, i, x, x_grad, full, tables)
    book.saving = True

    def backward():
        book.rerun = True
        _, _, inner = layer(book, cfg, i, x, x_grad, full, tables, output=out)
        inner()
        book.rerun = False
        for name in (x, *tables):
            book.drop(name, f"checkpoint {i}")

    return out, out_grad, backward


def model(book: Book, cfg, full: bool) -> None:
    """The whole step's forward and backward: wte, the rotary tables, the layers (a deep
    model's middle ones as one lump, :func:`complexo.analyses.lora_peak.stack_forward`), the
    final RMSNorm, the untied head, the cross-entropy."""
    from complexo.analyses.lora_peak import stack_backward, stack_forward

    X = B * n * d * e
    (x,) = book.make("token embeddings", x0=X)
    x0 = x
    tables = rotary_tables(book, cfg)
    block = checkpointed if cfg.checkpoint == "full" else layer
    x, stack = stack_forward(book, cfg, x, full, block, tables)
    norm_f = RMSNorm(book, "final norm", full)
    hf, _ = norm_f.forward(x, True)
    (logits,) = book.make("lm_head's logits", logits=B * n * V * e)
    if full:
        book.hold(hf, "lm_head")
    book.drop(hf)
    (lp,) = book.make("cross-entropy: log_softmax", lp=B * n * V * e)
    loss, tw = book.make("cross-entropy: nll", loss=e, tw=e)
    book.drop(logits)  # the forward's locals, until it returns
    book.drop(x)
    for table in tables:
        book.drop(table)
    (total,) = book.make("out.sum()", total=e)
    (seed,) = book.make("the backward's seed gradient", seed=e)
    book.phase = "backward"
    (dlp,) = book.make("nll's backward", dlp=B * n * V * e)
    book.drop(seed)
    (dz,) = book.make("log_softmax's backward", dz=B * n * V * e)
    book.drop(dlp)
    book.drop(lp)
    if full:
        book.make("lm_head's backward: dW", g_head=V * d * e)
    (dx,) = book.make("lm_head's backward: dX", dx=X)
    book.drop(dz)
    if full:
        book.drop(hf, "lm_head")
    book.contribute(hf, dx, "lm_head")
    norm_f.backward()
    stack_backward(book, stack)
    if full:
        g = book.take(x0)
        book.make("wte's backward", g_wte=V * d * e)
        book.drop(g, f"grad:{x0}")
    book.drop(total)
    book.drop(tw)
    del loss  # the step's output, held


def trained_tensors(cfg, side: str) -> tuple[list, list, list]:
    """The trained parameters' sizes (elements) in ``module.parameters()`` order: wte's, one
    layer's (norm1, q, k, v, o, norm2, gate, up, down; LoRA: each adapted matrix's A and B),
    norm_f's and the head's."""
    from complexo.analyses.lora_cost import _adapted, _symbolic_matrices

    matrices = _symbolic_matrices(cfg.spec)
    if side == "lora":
        adapted = [(i, o) for name, i, o in matrices if _adapted(name, cfg.targets)]
        return [], [size for i, o in adapted for size in (r * i, o * r)], []
    attn, mlp = [i * o for _, i, o in matrices[:4]], [i * o for _, i, o in matrices[4:]]
    return [V * d], [d, *attn, d, *mlp], [d, V * d]
