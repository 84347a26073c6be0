"""The pieces of :mod:`complexo.analyses.lora_peak`'s ledgers: a ledger whose tensors live while
something holds them (a Python name, a backward node that saved them, a gradient buffer), and
the linear layers (frozen, trained, LoRA-adapted) and LayerNorms of ``blocks/lora.py`` and
``blocks/transformer.py``, forward and backward, written op by op as autograd runs them.

Symbols: B batch, n tokens, d width, r rank, e bytes per element."""

from __future__ import annotations

from complexo.peak import Ledger
from complexo.symbols import B, d, e, n, r


class Book(Ledger):
    """A ledger whose tensors are freed when the last thing holding them lets go."""

    def __init__(self, **given):
        super().__init__(**given)
        self.holders: dict[str, set[str]] = {}
        self.grads: dict[str, str] = {}  # tensor -> the buffer summing its gradient
        self.count = 0
        # False under a checkpoint's forward: a backward node saves nothing (its holds are
        # not taken), Python's and the gradient buffers' are
        self.saving = True
        self.rerun = False  # a checkpoint's rerun: a recomputed input goes once unpacked

    def make(self, what: str, **tensors) -> list[str]:
        """Allocate ``tensors`` in one op, each held by Python ("py") until let go."""
        names = []
        for key in tensors:
            self.count += 1
            names.append(f"{key}#{self.count}")
        self.alloc(what, **dict(zip(names, tensors.values(), strict=True)))
        for name in names:
            self.holders[name] = {"py"}
        return names

    def hold(self, name: str, tag: str) -> None:
        if self.saving or tag == "py" or tag.startswith(("grad:", "checkpoint")):
            self.holders[name].add(tag)

    def release(self, since: int) -> None:
        """Python lets go of every tensor made after the ``since``-th (a checkpoint's rerun
        stopped: its frames unwind)."""
        for name in [k for k, held in self.holders.items() if "py" in held]:
            if int(name.rsplit("#", 1)[1]) > since:
                self.drop(name)

    def drop(self, name: str, tag: str = "py") -> None:
        held = self.holders[name]
        held.discard(tag)
        if not held:
            del self.holders[name]
            self.free(name)

    def contribute(self, tensor: str, grad: str, what: str) -> None:
        """``grad`` (held by "py") arrives for ``tensor``: the buffer, or its out-of-place sum
        with what the buffer holds."""
        tag = f"grad:{tensor}"
        old = self.grads.get(tensor)
        if old is None:
            self.hold(grad, tag)
            self.drop(grad)
            self.grads[tensor] = grad
            return
        (summed,) = self.make(f"{what}: gradients summed", g=self.live[old])
        self.hold(summed, tag)
        self.drop(summed)
        self.drop(old, tag)
        self.drop(grad)
        self.grads[tensor] = summed

    def block_end(self, i: int, x: str, x1: str, m: str, locals_, output: str, since) -> str:
        """A block's last lines: a checkpoint's rerun (``output``) stops after its last
        product, its frames unwinding to ``since``; else the MLP's ``locals_`` go, the residual
        sum is made, and the branch ``m``, the block's local ``x1`` and the caller's name for
        its input ``x`` (rebound to the output) are let go. The block's output."""
        if output:
            self.release(since)
            return output
        for name in locals_:
            self.drop(name)
        (x2,) = self.make(f"layer {i}: residual", x2=B * n * d * e)
        self.drop(m)
        self.drop(x1)
        self.drop(x)
        return x2

    def take(self, tensor: str) -> str:
        """The summed gradient of ``tensor`` for the node that made it (held as "grad:…")."""
        return self.grads.pop(tensor)


class Linear:
    """One linear layer's forward and backward: ``y = x·Wᵀ (+ b)``, frozen or trained, and
    LoRA's ``y + (α/r)·B(A(x))`` where adapted."""

    def __init__(self, book: Book, name: str, i, o, *, bias: bool, trained: bool, adapted: bool):
        self.book, self.name, self.i, self.o = book, name, i, o
        self.bias, self.trained, self.adapted = bias, trained, adapted
        self.copy_grad = False

    def forward(self, x: str, x_grad: bool, stop: bool = False) -> tuple[str, bool]:
        """``stop``: a checkpoint's rerun ends here, once this layer's last input is saved,
        before the product that needs it runs (its output then only names a gradient)."""
        book, p, rows = self.book, self.name, B * n
        self.x, self.x_grad = x, x_grad
        self.base_node = x_grad or self.trained
        if self.trained:  # saved before the product runs
            book.hold(x, f"{p}.W")
        if stop and not self.adapted:
            self.y = self.out = f"{p}: not run again"
            return self.out, self.base_node
        (y,) = book.make(f"{p}: x·Wᵀ", y=rows * self.o * e)
        self.y = y
        if not self.adapted:
            self.out = y
            return y, self.base_node
        book.hold(x, f"{p}.A")
        (z,) = book.make(f"{p}: LoRA x·Aᵀ", z=rows * r * e)
        book.hold(z, f"{p}.B")
        if stop:
            self.s = f"{p}: scale not run again"
            self.out = f"{p}: not run again"
            self.z = z
            return self.out, True
        (u,) = book.make(f"{p}: LoRA B·z", u=rows * self.o * e)
        (s,) = book.make(f"{p}: LoRA scaled by α/r", s=rows * self.o * e)
        book.drop(u)
        (out,) = book.make(f"{p}: base + LoRA", out=rows * self.o * e)
        for name in (y, s, z):
            book.drop(name)
        self.z, self.s, self.out = z, s, out
        return out, True

    def backward(self) -> None:
        book, p, rows = self.book, self.name, B * n
        g = book.take(self.out)
        if self.copy_grad:  # summed over the repeats as (B, G, n, d/h): (B, n, G·d/h) copies
            (copy,) = book.make(f"{p}: heads' gradient made contiguous", gc=rows * self.o * e)
            book.hold(copy, f"grad:{self.out}")
            book.drop(copy)
            book.drop(g, f"grad:{self.out}")
            g = copy
        if self.adapted:  # the add hands its gradient to both paths; the later-made runs first
            if self.base_node:
                book.hold(g, f"grad:{self.y}")
            book.hold(g, f"grad:{self.s}")
            book.drop(g, f"grad:{self.out}")
            (gs,) = book.make(f"{p}: LoRA scale's backward", gs=rows * self.o * e)
            book.drop(g, f"grad:{self.s}")
            book.make(f"{p}: LoRA B's backward: dW, dX", **{f"g_B_{p}": self.o * r * e})
            (dz,) = book.make(f"{p}: LoRA B's backward: dX", dz=rows * r * e)
            book.drop(gs)
            book.drop(self.z, f"{p}.B")
            book.make(f"{p}: LoRA A's backward: dW", **{f"g_A_{p}": r * self.i * e})
            dx = (
                book.make(f"{p}: LoRA A's backward: dX", dx=rows * self.i * e)
                if self.x_grad
                else []
            )
            book.drop(dz)
            book.drop(self.x, f"{p}.A")
            for grad in dx:
                book.contribute(self.x, grad, p)
            tag = f"grad:{self.y}"
        else:
            tag = f"grad:{self.out}"
        if not self.base_node:
            return
        dx = []
        released = False
        if self.bias:  # addmm: dX, dW, db
            if self.x_grad:
                dx = book.make(f"{p}: dX", dx=rows * self.i * e)
            if self.trained:
                book.make(f"{p}: dW", **{f"g_W_{p}": self.i * self.o * e})
                if book.rerun:  # recomputed: let go once unpacked for dW, before db
                    book.drop(self.x, f"{p}.W")
                    released = True
                book.make(f"{p}: db", **{f"g_b_{p}": self.o * e})
        else:  # mm: dW, dX
            if self.trained:
                book.make(f"{p}: dW", **{f"g_W_{p}": self.i * self.o * e})
            if self.x_grad:
                dx = book.make(f"{p}: dX", dx=rows * self.i * e)
        book.drop(g, tag)
        if self.trained and not released:
            book.drop(self.x, f"{p}.W")
        for grad in dx:
            book.contribute(self.x, grad, p)


class Norm:
    """LayerNorm: its output and statistics; input and statistics kept where a gradient
    passes."""

    def __init__(self, book: Book, name: str, trained: bool):
        self.book, self.name, self.trained = book, name, trained

    def forward(self, x: str, x_grad: bool) -> tuple[str, bool]:
        book = self.book
        out, stats = book.make(f"{self.name}: LayerNorm", h=B * n * d * e, stats=2 * B * n * e)
        self.x, self.x_grad, self.stats, self.out = x, x_grad, stats, out
        self.node = x_grad or self.trained
        if self.node and book.saving:
            book.hold(x, self.name)
            book.hold(stats, self.name)
        book.drop(stats)
        return out, self.node

    def backward(self) -> None:
        book = self.book
        g = book.take(self.out)
        made = {"dx": B * n * d * e} if self.x_grad else {}
        if self.trained:
            made[f"g_{self.name}"] = 2 * d * e
        names = book.make(f"{self.name}: LayerNorm's backward", **made)
        book.drop(g, f"grad:{self.out}")
        book.drop(self.x, self.name)
        book.drop(self.stats, self.name)
        for name in names[:1] if self.x_grad else []:
            book.contribute(self.x, name, self.name)
