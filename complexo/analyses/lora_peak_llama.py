"""LLaMA-style models' training steps for :mod:`complexo.analyses.lora_peak`: the ledger of
``blocks/transformer.py``'s llama path (RMSNorm written out, rotary positions, SwiGLU, no
biases, grouped-query attention, an untied head), op by op as autograd runs it, with the same
:class:`~complexo.analyses.lora_peak_ops.Book` and linear layers as the GPT-2 path.

RMSNorm is the from-scratch module's ops: x², its mean, + ε, rsqrt (each freed when the next
is made; 1/rms kept), x·(1/rms), then × w. Its backward runs each op's formula: × w's (dy·w
and, where w trains, dy·(x/rms) summed to w's gradient), × 1/rms's (two B·n·d products, one
summed per token), rsqrt's (three per-token tensors), the mean's (a B·n·d division) and x²'s
(x¹, 2·x¹ and their product with the gradient: three B·n·d at once), x's gradients summed as
they arrive. The rotary tables are made once per forward in fp32 (cast to the model's dtype),
kept by every layer's q·cos and (−x₂, x₁)·sin that needs a gradient; rotating q or k makes
q·cos, −x₂, the cat, its product with sin and the sum, and its backward dy·sin, −dy₂, dy·cos,
the halves' cat and their sum. SwiGLU: gate, SiLU, up, the product (SiLU's output and up's
kept by it, the gate's by SiLU), down.

Symbols: X = B·n·d·e, K = B·n·G·(d/h)·e (k and v with G heads), F = B·n·f·e, T = n·(d/h)
(one rotary table's elements), S = B·n·e (a per-token statistic).
"""

from __future__ import annotations

from complexo.analyses.lora_peak_ops import Book, Linear
from complexo.conventions import FP32_BYTES
from complexo.symbols import B, G, V, d, e, f, h, n, r

INT64_BYTES = 8


class RMSNorm:
    """``x * rsqrt(mean(x²) + ε) * w`` (blocks/transformer.py), forward and backward."""

    def __init__(self, book: Book, name: str, trained: bool):
        self.book, self.name, self.trained = book, name, trained

    def forward(self, x: str, x_grad: bool) -> tuple[str, bool]:
        book, p, X, S = self.book, self.name, B * n * d * e, B * n * e
        (sq,) = book.make(f"{p}: x²", sq=X)
        (ms,) = book.make(f"{p}: mean(x²)", ms=S)
        book.drop(sq)
        (a,) = book.make(f"{p}: mean(x²) + ε", a=S)
        book.drop(ms)
        (rstd,) = book.make(f"{p}: 1/rms", rstd=S)
        book.drop(a)
        (xr,) = book.make(f"{p}: x·(1/rms)", xr=X)
        (out,) = book.make(f"{p}: × w", h=X)
        if x_grad:  # x² keeps x; x·(1/rms) keeps both
            book.hold(x, p)
            book.hold(rstd, p)
        if self.trained:
            book.hold(xr, p)
        book.drop(xr)
        book.drop(rstd)
        self.x, self.x_grad, self.rstd, self.xr, self.out = x, x_grad, rstd, xr, out
        return out, x_grad or self.trained

    def backward(self) -> None:
        book, p, X, S = self.book, self.name, B * n * d * e, B * n * e
        g = book.take(self.out)
        d_xr = book.make(f"{p}: × w's backward: dy·w", d_xr=X) if self.x_grad else []
        if self.trained:
            (full,) = book.make(f"{p}: × w's backward: dy·(x/rms)", full=X)
            book.make(f"{p}: × w's backward: dw (summed)", **{f"g_{p}": d * e})
            book.drop(full)
            book.drop(self.xr, p)
        book.drop(g, f"grad:{self.out}")
        if not self.x_grad:
            return
        (d_xr,) = d_xr
        (dx_a,) = book.make(f"{p}: × 1/rms's backward: dx̂·(1/rms)", dx=X)
        (full,) = book.make(f"{p}: × 1/rms's backward: dx̂·x", full=X)
        (d_r,) = book.make(f"{p}: × 1/rms's backward: d(1/rms)", d_r=S)
        book.drop(full)
        book.drop(d_xr)
        book.contribute(self.x, dx_a, p)
        (r3,) = book.make(f"{p}: rsqrt's backward: (1/rms)³", r3=S)
        (half,) = book.make(f"{p}: rsqrt's backward: −½·(1/rms)³", r3h=S)
        (d_ms,) = book.make(f"{p}: rsqrt's backward: d(mean)", d_ms=S)
        book.drop(r3)
        book.drop(half)
        book.drop(d_r)
        book.drop(self.rstd, p)
        (d_sq,) = book.make(f"{p}: mean's backward: d(x²)", d_sq=X)
        book.drop(d_ms)
        (x1,) = book.make(f"{p}: x²'s backward: x¹", x1=X)
        (x2,) = book.make(f"{p}: x²'s backward: 2·x¹", x2=X)
        (dx_b,) = book.make(f"{p}: x²'s backward: d(x²)·2·x", dx=X)
        book.drop(x1)
        book.drop(x2)
        book.drop(d_sq)
        book.drop(self.x, p)
        book.contribute(self.x, dx_b, p)


def rotary_tables(book: Book, cfg) -> tuple[str, str]:
    """``rotary_tables(n, hs, x)``: the inverse frequencies (hs/2), the angles (n, hs/2), cat to
    (n, hs), cos and sin, in fp32 and cast to the model's dtype where it is 16-bit."""
    half, hs, four = d / h / 2, d / h, FP32_BYTES
    (ar,) = book.make("rotary: arange(0, hs, 2)", ar=INT64_BYTES * half)
    (fl,) = book.make("rotary: .float()", fl=four * half)
    book.drop(ar)
    (dv,) = book.make("rotary: ÷ hs", dv=four * half)
    book.drop(fl)
    (pw,) = book.make("rotary: base^(…)", pw=four * half)
    book.drop(dv)
    (rc,) = book.make("rotary: 1/base^(…)", rc=four * half)
    (inv,) = book.make("rotary: inverse frequencies", inv=four * half)
    book.drop(pw)
    book.drop(rc)
    (pos,) = book.make("rotary: arange(n)", pos=INT64_BYTES * n)
    (pf,) = book.make("rotary: positions as float", pf=four * n)
    book.drop(pos)
    (ang,) = book.make("rotary: outer(positions, frequencies)", ang=four * n * half)
    book.drop(pf)
    (cat,) = book.make("rotary: angles cat twice", cat=four * n * hs)
    book.drop(ang)
    tables = []
    for fn in ("cos", "sin"):
        (t,) = book.make(f"rotary: {fn}", **{fn: four * n * hs})
        if cfg.dtype != "fp32":
            (cast,) = book.make(f"rotary: {fn} in the model's dtype", **{fn: e * n * hs})
            book.drop(t)
            t = cast
        tables.append(t)
    book.drop(inv)
    book.drop(cat)
    return tables[0], tables[1]


class Rotate:
    """``x·cos + cat(−x₂, x₁)·sin`` of q (width d) or k (G heads: width G·d/h)."""

    def __init__(self, book: Book, name: str, width, tables: tuple[str, str]):
        self.book, self.name, self.size, self.tables = book, name, B * n * width * e, tables

    def forward(self, t: str, t_grad: bool) -> str:
        book, p, W = self.book, self.name, self.size
        cos, sin = self.tables
        (a,) = book.make(f"{p}: x·cos", a=W)
        (neg,) = book.make(f"{p}: −x₂", neg=W / 2)
        (cat,) = book.make(f"{p}: cat(−x₂, x₁)", cat=W)
        book.drop(neg)
        (s,) = book.make(f"{p}: cat·sin", s=W)
        book.drop(cat)
        (out,) = book.make(f"{p}: rotated", rot=W)
        book.drop(a)
        book.drop(s)
        if t_grad:
            book.hold(cos, p)
            book.hold(sin, p)
        self.t, self.t_grad, self.out = t, t_grad, out
        return out

    def backward(self) -> None:
        book, p, W = self.book, self.name, self.size
        cos, sin = self.tables
        g = book.take(self.out)
        (d_cat,) = book.make(f"{p}'s backward: dy·sin", d_cat=W)
        book.drop(sin, p)
        (d_neg,) = book.make(f"{p}'s backward: −dy₂", d_neg=W / 2)
        (d_a,) = book.make(f"{p}'s backward: dy·cos", d_a=W)
        book.drop(g, f"grad:{self.out}")
        book.drop(cos, p)
        book.contribute(self.t, d_a, p)
        (d_halves,) = book.make(f"{p}'s backward: the halves' gradients cat", d_h=W)
        book.drop(d_cat)
        book.drop(d_neg)
        book.contribute(self.t, d_halves, p)


def layer(book: Book, cfg, i: int, x: str, x_grad: bool, full: bool, tables):
    """One LLaMA block's forward: returns (its output, whether it needs a gradient, the
    backward to run later)."""
    from complexo.analyses.lora_cost import _adapted
    from complexo.analyses.lora_peak import _residual

    spec, targets = cfg.spec, () if full else cfg.targets
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
    if att:
        for name in shared:
            book.hold(name, f"layer {i} sdpa")
        book.hold(y, f"layer {i} sdpa")
    else:
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
    m, m_grad = down.forward(prod, g_grad or u_grad)
    book.drop(prod)
    book.drop(h2)
    (x2,) = book.make(f"layer {i}: residual", x2=B * n * d * e)
    book.drop(m)
    book.drop(x1)  # the block's local, until it returns
    book.drop(x)  # the caller's name for the block's input, rebound to its output

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
        names = book.make(
            f"layer {i}: SDPA's backward: dQ, dK, dV",
            dq=B * n * d * e,
            dk=B * n * d * e,
            dv=B * n * d * e,
        )
        book.drop(gy, f"grad:{y}")
        for name in shared:
            book.drop(name, f"layer {i} sdpa")
        book.drop(y, f"layer {i} sdpa")
        book.drop(lse)
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


def model(book: Book, cfg, full: bool) -> None:
    """The whole step's forward and backward: wte, the rotary tables, the layers (a deep
    model's middle ones as one lump, :func:`complexo.analyses.lora_peak._lump_forward`), the
    final RMSNorm, the untied head, the cross-entropy."""
    from complexo.analyses.lora_peak import UNROLLED, _lump_backward, _lump_forward

    X = B * n * d * e
    (x,) = book.make("token embeddings", x0=X)
    x0 = x
    tables = rotary_tables(book, cfg)
    x_grad, layers, backwards = full, cfg.layers, []
    written = range(1, layers + 1) if layers <= UNROLLED else (1, 2, layers - 1, layers)
    lump, kept = None, 0
    for i in written:
        if i == layers - 1 and layers > UNROLLED:  # layers 3 .. L − 2: one lump
            lump = _lump_forward(book, x, kept)
            x = lump[1]
        before = book.total()
        x, x_grad, backward = layer(book, cfg, i, x, x_grad, full, tables)
        kept = book.total() - before  # what a layer adds: its output and what it saved
        backwards.append((i, backward))
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
    for i, backward in reversed(backwards):
        before = book.total()
        backward()
        if i == layers - 1 and lump is not None:
            _lump_backward(book, lump, book.total() - before + kept)
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
