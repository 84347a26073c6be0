"""The pieces of LLaMA-style models' ledgers (:mod:`complexo.analyses.lora_peak_llama`), op by op
as ``blocks/transformer.py``'s llama path runs them and autograd undoes them: RMSNorm written
out, the rotary tables and the rotation of q or k.

RMSNorm is the from-scratch module's ops: x², its mean, + ε, rsqrt (each freed when the next
is made; 1/rms kept), x·(1/rms), then × w. Its backward runs each op's formula: × w's (dy·w
and, where w trains, dy·(x/rms) summed to w's gradient), × 1/rms's (two B·n·d products, one
summed per token), rsqrt's (three per-token tensors), the mean's (a B·n·d division) and x²'s
(x¹, 2·x¹ and their product with the gradient: three B·n·d at once), x's gradients summed as
they arrive. The rotary tables are made once per forward in fp32 (cast to the model's dtype);
rotating q or k makes q·cos, −x₂, the cat, its product with sin and the sum, and its backward
dy·sin, −dy₂, dy·cos, the halves' cat and their sum.

Symbols: X = B·n·d·e, T = n·(d/h) (one rotary table's elements), S = B·n·e (a per-token
statistic).
"""

from __future__ import annotations

from complexo.analyses.lora_peak_ops import Book
from complexo.conventions import FP32_BYTES
from complexo.symbols import B, d, e, h, n

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
