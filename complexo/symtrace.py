"""A reference block traced with symbolic sizes, in complexo's own symbols: the other side of a
proof (:mod:`complexo.prove`).

``trace(build, dims)``: each :class:`Dim` becomes a SymInt of one ``ShapeEnv``; ``build(sizes)``
constructs the block and its inputs inside a ``FakeTensorMode`` on the meta device (nothing is
allocated), then it runs forward and backward (from the output's sum) under ``FlopCounterMode``
and autograd's saved-tensor hook, as :func:`complexo.derive.derive` does for a user's block
(``backward=False``: the forward alone, without autograd, as inference runs it: a decoder's
step). A
dim may stand for an expression of complexo's symbols (``hs`` for d/h, so that h divides d by
construction rather than by a guard); every traced number is read back in those symbols.

Bytes: tensors of the compute dtype count ``e`` per element (the hand formulas' bytes per
element), any other dtype its own size (bool masks 1, fp32 statistics 4); trace in a 2-byte
dtype so that fp32 statistics are told apart from ``e``.

torch is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import sympy

from complexo.symbols import e

# The traced quantities a declaration may map a result's quantities onto.
TRACED = (
    "forward_matmul_flops",  # FlopCounterMode's registry: mm, addmm, bmm, convolution, SDPA
    "backward_matmul_flops",
    "forward_flops",  # the matmuls, and element-wise ops by complexo's conventions
    "backward_flops",  # (complexo.elementwise); ops with no convention: Traced.no_convention
    "step_matmul_flops",  # the two together: a training step's
    "params",
    "trainable_params",  # those that require grad
    "param_bytes",  # their unique storages (tied weights once)
    "buffer_bytes",  # the block's buffers' unique storages (a decoder's KV cache)
    "activation_bytes",  # unique storages autograd saved, parameters and buffers excluded
)
# and OUTPUT + an op's name ("output_bytes:aten.im2col"): the bytes of that op's outputs in the
# forward (the columns F.unfold materialises), as the analyses read them off a count
OUTPUT = "output_bytes:"


def ceilings(expr: sympy.Expr) -> sympy.Expr:
    """Floors that are ceilings, shown as the ceilings they are: ⌊(x − 1)/q⌋ = ⌈x/q⌉ − 1 for
    integers x and q ≥ 1 (x = q·a + b, 1 ≤ b ≤ q: both sides are a), and so, for a number q,
    ⌊(x + m·q − 1)/q⌋ = ⌈x/q⌉ + m − 1 (torch writes ⌈R/2⌉ as (R + 1)//2); so a strided
    convolution's output side ⌊(R + 2·p − k)/s⌋ + 1 with p = (k − 1)/2 reads ⌈R/s⌉, and
    ``floor(R/2 − 1/2) + 1`` reads ``ceiling(R/2)``. Inner floors first (a ResNet's sides
    nest). Floors of any other form are left as they are.

    >>> from complexo.symbols import R, s
    >>> ceilings(sympy.floor(R / s - 1 / s) + 1)
    ceiling(R/s)
    >>> ceilings(sympy.floor(R / 2 + sympy.Rational(1, 2)))  # F.unfold's side (R + 1)//2
    ceiling(R/2)
    >>> ceilings(sympy.floor(R / 2))
    floor(R/2)
    """

    def rewrite(arg):
        num, den = sympy.fraction(sympy.together(arg))
        if den == 1 or not (num.is_integer and den.is_integer and den.is_positive):
            return sympy.floor(arg)
        constant, _ = sympy.expand(num).as_coeff_Add()
        if constant == -1:  # ⌊(x − 1)/q⌋ = ⌈x/q⌉ − 1
            return sympy.ceiling(sympy.expand(num + 1) / den) - 1
        if den.is_Integer and (constant + 1) % den == 0:  # ⌊(x + m·q − 1)/q⌋ = ⌈x/q⌉ + m − 1
            return sympy.ceiling(sympy.expand(num - constant) / den) + (constant + 1) / den - 1
        return sympy.floor(arg)

    return expr.replace(lambda x: isinstance(x, sympy.floor), lambda x: rewrite(x.args[0]))


@dataclass(frozen=True)
class Dim:
    """A symbolic size: ``name`` (its ShapeEnv source), a ``hint`` the trace runs at (≥ 2, and
    distinct from the other hints: 0 and 1 are specialised, equal hints may be merged), and what
    it ``means`` in complexo's symbols (default: the symbol of that name)."""

    name: str
    hint: int
    means: sympy.Expr | None = None

    @property
    def expr(self) -> sympy.Expr:
        if self.means is not None:
            return self.means
        return sympy.Symbol(self.name, integer=True, positive=True)


@dataclass
class Traced:
    quantities: dict[str, sympy.Expr]
    forward: dict[str, sympy.Expr]  # matmul FLOPs by op
    backward: dict[str, sympy.Expr]
    forward_elementwise: dict[str, sympy.Expr]  # by complexo's conventions, by op
    backward_elementwise: dict[str, sympy.Expr]
    no_convention: list[str]  # ops that did arithmetic with no element-wise convention
    guards: list[sympy.Expr]
    pinned: dict[str, int]
    uncounted: list[str]  # ops that ran with no FLOP formula (element-wise, norms ...)
    seconds: float
    saved: list[tuple[tuple, str, sympy.Expr]] = field(default_factory=list)
    outputs: list[tuple[str, sympy.Expr]] = field(default_factory=list)  # forward's, (op, bytes)

    def value(self, name: str) -> sympy.Expr:
        """A traced quantity (:data:`TRACED`), or OUTPUT + op: the bytes of that op's outputs."""
        if name.startswith(OUTPUT):
            op = name.removeprefix(OUTPUT)
            return sympy.expand(sum((b for o, b in self.outputs if o == op), sympy.Integer(0)))
        return self.quantities[name]


def trace(
    build: Callable[[Mapping[str, object]], tuple],
    dims: tuple[Dim, ...],
    dtype: str = "bfloat16",
    formulas: Mapping | None = None,
    backward: bool = True,
) -> Traced:
    """Trace ``build(sizes) -> (block, inputs)``; ``sizes`` maps each dim's name to its SymInt.
    ``formulas``: FlopCounterMode formulas to use instead of its own (a grouped convolution's
    weight gradient); ``backward=False``: the forward alone, under no_grad (no backward FLOPs,
    nothing saved)."""
    import torch
    import torch._dynamo.config  # seconds to import: only a trace pays it
    from torch._dynamo.source import ConstantSource
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, uninteresting_files

    from complexo.derive import _plain, _tracing_patches, default_dtype

    uninteresting_files()  # imports torch.export and AOTAutograd once: not the trace's time
    t0 = time.perf_counter()
    env = ShapeEnv(duck_shape=False)
    with torch._dynamo.config.patch(fake_tensor_cache_enabled=False):  # 3x faster on one pass
        fake = FakeTensorMode(shape_env=env, allow_non_fake_inputs=True)
    ours: dict[sympy.Symbol, sympy.Expr] = {}
    sizes: dict[str, object] = {}
    for dim in dims:
        src = ConstantSource(dim.name)
        s = env.create_symbol(dim.hint, src, dynamic_dim=DimDynamic.DYNAMIC)
        ours[s] = dim.expr
        sizes[dim.name] = env.create_symintnode(s, hint=dim.hint, source=src)

    tdtype = getattr(torch, dtype)
    saved: dict[int, tuple] = {}
    with fake, torch.device("meta"), _tracing_patches(torch):
        with default_dtype(tdtype):
            block, inputs = build(sizes)
        step = step_counts(block, inputs, formulas, backward=backward)
        saved.update(step.saved)
        fwd, fwd_ew, total, total_ew = step.fwd, step.fwd_ew, step.total, step.total_ew
        params, trainable = step.params, step.trainable
        registry, no_convention = step.registry, step.no_convention

    def named(value) -> sympy.Expr:
        expr = value.node.expr if isinstance(value, torch.SymInt) else sympy.sympify(value)
        return sympy.expand(ceilings(_plain(env.replace(expr)).xreplace(ours)))

    def by_op(counts) -> dict[str, sympy.Expr]:
        out = {str(k): named(v) for k, v in counts.items()}
        return {k: v for k, v in out.items() if v != 0}

    def nbytes(dt, nb) -> sympy.Expr:
        item = torch.empty((), dtype=dt).element_size()
        return named(nb) / item * (e if dt == tdtype else item)

    forward = by_op(fwd)
    backward = by_op({k: v - fwd.get(k, 0) for k, v in total.items()})
    forward_ew = by_op(fwd_ew)
    backward_ew = by_op({k: v - fwd_ew.get(k, 0) for k, v in total_ew.items()})
    items = [
        (tuple(named(s) for s in shape), str(dt).removeprefix("torch."), nbytes(dt, nb))
        for shape, dt, nb in saved.values()
    ]
    total_of = lambda ops: sympy.expand(sum(ops.values(), sympy.Integer(0)))  # noqa: E731
    quantities = {
        "forward_matmul_flops": total_of(forward),
        "backward_matmul_flops": total_of(backward),
        "forward_flops": total_of(forward) + total_of(forward_ew),
        "backward_flops": total_of(backward) + total_of(backward_ew),
        "step_matmul_flops": total_of({**forward, **{f"bwd {k}": v for k, v in backward.items()}}),
        "params": named(params),
        "trainable_params": named(trainable),
        "param_bytes": sum((nbytes(dt, nb) for dt, nb in step.param_storages), sympy.Integer(0)),
        "buffer_bytes": sum((nbytes(dt, nb) for dt, nb in step.buffer_storages), sympy.Integer(0)),
        "activation_bytes": sympy.expand(sum((b for *_, b in items), sympy.Integer(0))),
    }
    pinned = {
        str(ours.get(k, k)): int(v)
        for k, v in env.replacements.items()
        if sympy.sympify(v).is_Integer
    }
    return Traced(
        quantities=quantities,
        forward=forward,
        backward=backward,
        forward_elementwise=forward_ew,
        backward_elementwise=backward_ew,
        no_convention=no_convention,
        # ceilings first in the trace's own sizes: ⌊(3·j − 1)/j⌋ = 2 (a chunk in two) is true there
        guards=list(dict.fromkeys(ceilings(_plain(g.expr)).xreplace(ours) for g in env.guards)),
        pinned=pinned,
        uncounted=sorted(step.seen - registry),
        seconds=time.perf_counter() - t0,
        saved=items,
        outputs=[(op, nbytes(dt, nb)) for op, dt, nb in step.outputs],
    )


@dataclass
class StepCounts:
    """One forward and backward of a block, counted: FlopCounterMode's FLOPs by op after the
    forward (``fwd``) and after both (``total``), the same by complexo's element-wise
    conventions (``fwd_ew``, ``total_ew``), the tensors saved for the backward by storage
    (parameters and buffers aside: held anyway), the parameters, and the ops the counters
    know."""

    fwd: dict
    fwd_ew: dict
    total: dict
    total_ew: dict
    saved: dict
    params: object
    trainable: object
    registry: set
    no_convention: list
    seen: set  # every op the counter saw
    param_storages: list = field(default_factory=list)  # (dtype, nbytes) of each unique storage
    buffer_storages: list = field(default_factory=list)
    outputs: list = field(default_factory=list)  # (op, dtype, nbytes) of each forward output


def step_counts(
    block, inputs, formulas=None, name: str = "the block", backward: bool = True
) -> StepCounts:
    """Count ``block(*inputs)`` and its backward from ones (as the outputs' sum would give,
    without counting a sum: the block alone), in the caller's mode (fake tensors with symbolic
    sizes, for :func:`derive` and :mod:`complexo.symtrace`). ``backward=False``: the forward
    alone, under no_grad (``total`` is then ``fwd``, nothing is saved)."""
    import torch

    from complexo import elementwise
    from complexo.derive import _tensors
    from complexo.measure import (
        CPUAttentionDispatch,
        _RecordingFlopCounter,
        cpu_attention_formulas,
    )

    saved: dict[int, tuple] = {}
    state = {t.untyped_storage()._cdata for t in [*block.parameters(), *block.buffers()]}

    def pack(t):
        st = t.untyped_storage()
        if st._cdata not in state:
            saved[st._cdata] = (tuple(t.shape), t.dtype, st.nbytes())
        return t

    counter = _RecordingFlopCounter({**cpu_attention_formulas(), **(formulas or {})})
    ew = elementwise.counter()
    grad = contextlib.nullcontext() if backward else torch.no_grad()
    with CPUAttentionDispatch(), counter, ew:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), grad:
            y = block(*inputs)
        fwd = dict(counter.get_flop_counts().get("Global", {}))
        fwd_ew = dict(ew.get_flop_counts().get("Global", {}))
        counter.record_outputs = False
        records = zip(counter.outputs, counter.output_dtypes, strict=True)
        outputs = [(op, dt, nb) for (op, _, nb), dt in records]
        if backward:
            outs = [t for t in _tensors(y, torch) if t.requires_grad]
            if not outs:
                from complexo.errors import ComplexoError

                raise ComplexoError(f"{name}'s output needs no gradient")
            torch.autograd.backward(outs, [torch.ones_like(t) for t in outs])
        total = dict(counter.get_flop_counts().get("Global", {}))
        total_ew = dict(ew.get_flop_counts().get("Global", {}))
    return StepCounts(
        fwd,
        fwd_ew,
        total,
        total_ew,
        saved,
        sum(p.numel() for p in block.parameters()),
        sum(p.numel() for p in block.parameters() if p.requires_grad),
        {str(k) for k in counter.flop_registry},
        elementwise.uncounted(ew),
        set(counter.seen),
        _storages(block.parameters()),
        _storages(block.buffers()),
        outputs,
    )


def _storages(tensors) -> list[tuple]:
    """(dtype, nbytes) of each unique storage behind ``tensors`` (tied weights once)."""
    out = {t.untyped_storage()._cdata: (t.dtype, t.untyped_storage().nbytes()) for t in tensors}
    return list(out.values())
