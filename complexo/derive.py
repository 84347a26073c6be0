"""A block's costs as sympy formulas in the user's own size names, derived by running it.

``derive(cls, ctor="d,f", inputs="B,n,d")``: every name becomes a symbol and a SymInt of one
``ShapeEnv``; the block is *constructed* inside a ``FakeTensorMode`` on the meta device with
SymInts as its constructor arguments (so its parameters have symbolic shapes too), then run
forward and backward under ``FlopCounterMode`` and autograd's saved-tensor hook. Nothing is
allocated. What the run decided on the way (a view that needs d divisible by h, a branch on a
size) is a guard of the ShapeEnv: the formulas hold for every size that satisfies the guards,
which are reported with them.

Conventions: FLOP = 2·MAC, matrix products (FlopCounterMode's registry: mm, addmm, bmm,
convolution, SDPA); element-wise FLOPs beside them, by complexo's per-element conventions
(:mod:`complexo.elementwise`: softmax 5, GELU 5, an add 1, ...); the backward starts from ones
(the output's sum's gradient; no loss op, no sum counted), the input requires
a gradient (the block sits inside a network); saved bytes are the unique storages autograd keeps,
parameters and buffers excluded, at the dtype asked for.

torch is imported inside the functions: ``import complexo`` stays light.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import sympy

from complexo.cost import big_o, big_o_text, plain
from complexo.errors import ComplexoError
from complexo.symtrace import ceilings, step_counts
from complexo.userblock import (
    _NAME,
    DTYPES,
    _one_line,
    _where,
    parse_ctor,
    parse_shapes,
    parse_values,
    sample_hints,
    symbol,
)

CONVENTION = (
    "FLOP = 2·MAC, matrix products (FlopCounterMode's formulas); element-wise FLOPs apart, by "
    "complexo's per-element conventions (complexo.elementwise); backward from ones (the "
    "output's sum), input requires grad; saved bytes: unique storages autograd keeps for the "
    "backward, parameters excluded"
)


# ---------------------------------------------------------------- the traps, disarmed


@contextlib.contextmanager
def default_dtype(dtype):
    """Build the block in ``dtype`` (module.to() cannot swap fake parameters under MemTracker)."""
    import torch

    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def _unchanged(*args, **kwargs):
    """An nn.init fill that fills nothing: the tensor, given first or as ``tensor=``."""
    return args[0] if args else kwargs.get("tensor")


@contextlib.contextmanager
def _tracing_patches(torch):
    """For the trace only: (1) nn.init fills do nothing, wherever they were imported (each draw
    on a SymFloat bound such as 1/sqrt(fan_in) pins the size; values change no shape or FLOP);
    (2) nn.LayerNorm/RMSNorm(SymInt) get (d,) (they call tuple(d) on a non-Integral);
    (3) math.sqrt(SymInt) goes to torch._sym_sqrt (math.sqrt pins the size to its hint), and
    math.isqrt of a square (a video's S = g·g tokens) is its root g, symbolic;
    (4) ops whose meta kernels take concrete sizes only (:data:`DECOMPOSED`: F.pad's
    constant_pad_nd) run as torch's decompositions, under the counters, which see the op."""
    init, saved = torch.nn.init, []
    for name in dir(init):
        fn = getattr(init, name)
        if name.endswith("_") and not name.startswith("_") and callable(fn):
            # the code itself is swapped, so that names bound by `from torch.nn.init import
            # xavier_uniform_` (nn.MultiheadAttention) fill nothing either
            saved.append((fn, "__code__", fn.__code__))
            fn.__code__ = _unchanged.__code__
    for cls in (torch.nn.LayerNorm, torch.nn.RMSNorm):

        def wrapped(self, shape, *a, __init=cls.__init__, **k):
            __init(self, (shape,) if isinstance(shape, torch.SymInt) else shape, *a, **k)

        saved.append((cls, "__init__", cls.__init__))
        cls.__init__ = wrapped
    real_sqrt, real_isqrt = math.sqrt, math.isqrt
    saved += [(math, "sqrt", real_sqrt), (math, "isqrt", real_isqrt)]
    math.sqrt = lambda x: torch._sym_sqrt(x) if isinstance(x, torch.SymInt) else real_sqrt(x)
    math.isqrt = lambda x: _isqrt(torch, x) if isinstance(x, torch.SymInt) else real_isqrt(x)
    try:
        with _Decomposed(torch):
            yield
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)


def _isqrt(torch, x):
    """⌊√x⌋ of a SymInt: its root, symbolic, where x is a square of sizes (g·g); otherwise
    math.isqrt of its value (which pins x, as it always did)."""
    from torch.fx.experimental.sym_node import SymNode

    node = x.node
    root = sympy.sqrt(node.expr)
    if root.is_Pow or not root.is_integer:  # no square of integer sizes: as math.isqrt does
        return math.isqrt(int(x))
    hint = None if node.hint is None else math.isqrt(node.hint)
    return torch.SymInt(SymNode(root, node.shape_env, int, hint))


# ops whose meta kernels want concrete sizes (torch 2.13): F.pad's constant_pad_nd (symbolic
# amounts: "SymIntArrayRef expected to contain only concrete integers"); F.unfold's im2col and
# its backward col2im, whose kernels pin B, C and the sides to their sample values (kernel size
# and stride stay concrete all the same: their schema takes them as int[2])
DECOMPOSED = ("constant_pad_nd", "im2col", "col2im")


def _Decomposed(torch):
    """A dispatch mode that runs :data:`DECOMPOSED` as torch._decomp's decompositions (their
    torch._refs), which build the result from sizes a SymInt can be; entered below the
    counters, which still see (and count) the op itself."""
    from torch._decomp import decomposition_table
    from torch.utils._python_dispatch import TorchDispatchMode

    aten = torch.ops.aten
    table = {op: decomposition_table[op] for op in (getattr(aten, n).default for n in DECOMPOSED)}

    def pad(x, amounts, mode="constant", value=None):  # F.pad inside a decomposition (im2col's)
        if mode != "constant":
            return aten.pad.default(x, amounts, mode, value)
        return aten.constant_pad_nd.default(x, amounts, 0 if value is None else value)

    table[aten.pad.default] = pad

    class Decomposed(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func not in table:
                return func(*args, **(kwargs or {}))
            with self:  # the ops it decomposes into may be among them (im2col pads)
                return table[func](*args, **(kwargs or {}))

    return Decomposed()


# ---------------------------------------------------------------- the trace


@dataclass
class Derivation:
    names: list[str]
    hints: dict[str, int]
    dtype: str
    forward: dict[str, sympy.Expr]  # FLOPs per op
    backward: dict[str, sympy.Expr]
    params: sympy.Expr
    saved: list[tuple[tuple, str, sympy.Expr]]  # (shape, dtype, bytes) per storage
    guards: list[sympy.Expr]
    uncounted: list[str]  # ops that ran with no FLOP formula (element-wise, norms ...)
    seconds: float
    pinned: dict[str, int] = field(default_factory=dict)
    # element-wise FLOPs by complexo's conventions (complexo.elementwise), by op; the ops that
    # did arithmetic with no convention
    forward_elementwise: dict[str, sympy.Expr] = field(default_factory=dict)
    backward_elementwise: dict[str, sympy.Expr] = field(default_factory=dict)
    no_convention: list[str] = field(default_factory=list)

    def quantities(self) -> dict[str, sympy.Expr]:
        total = lambda ops: sympy.expand(sum(ops.values(), sympy.Integer(0)))  # noqa: E731
        fwd, bwd = total(self.forward), total(self.backward)
        saved = sympy.expand(sum((b for *_, b in self.saved), sympy.Integer(0)))
        return {
            "forward_flops": fwd,
            "backward_flops": bwd,
            "training_flops": sympy.expand(fwd + bwd),
            "forward_elementwise_flops": total(self.forward_elementwise),
            "backward_elementwise_flops": total(self.backward_elementwise),
            "params": self.params,
            "saved_bytes": saved,
        }

    def symbols(self) -> list[sympy.Symbol]:
        return [symbol(x) for x in self.names]


def derive(cls, ctor: str, inputs: str, dims: str | None = None, dtype: str = "float32"):
    """Trace ``cls(*ctor)`` on inputs of the shapes ``inputs`` with symbolic sizes."""
    ctor_args, ctor_kwargs, ctor_names = parse_ctor(ctor, symbolic=True)
    shapes = parse_shapes(inputs)
    names = list(dict.fromkeys([*ctor_names, *_NAME.findall(inputs)]))
    hints = sample_hints(names, parse_values(dims, "--dims"))
    if dtype not in DTYPES:
        raise ComplexoError(f"--dtype {dtype}: choose from {', '.join(DTYPES)}")

    import torch
    import torch._dynamo.config  # seconds to import: only derive pays it
    from torch._dynamo.source import ConstantSource
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, uninteresting_files

    uninteresting_files()  # imports torch.export and AOTAutograd (0.4 s): an import, not the trace
    t0 = time.perf_counter()
    env = ShapeEnv(duck_shape=False)  # equal hints must not merge two names into one symbol
    with torch._dynamo.config.patch(fake_tensor_cache_enabled=False):  # 3x faster on one pass
        fake = FakeTensorMode(shape_env=env, allow_non_fake_inputs=True)
    ours: dict[sympy.Symbol, sympy.Symbol] = {}
    sym: dict[sympy.Symbol, object] = {}
    for name in names:
        src = ConstantSource(name)
        s = env.create_symbol(hints[name], src, dynamic_dim=DimDynamic.DYNAMIC)
        ours[s] = symbol(name)
        sym[symbol(name)] = env.create_symintnode(s, hint=hints[name], source=src)

    def size(expr):
        if not isinstance(expr, sympy.Expr):  # a literal: 0.0, True, 'gelu'
            return expr
        if expr.is_Integer:
            return int(expr)
        num, den = sympy.fraction(sympy.together(expr))
        value = sympy.lambdify(list(sym), num)(*sym.values())
        return value // sympy.lambdify(list(sym), den)(*sym.values()) if den != 1 else value

    tdtype = getattr(torch, dtype)
    saved: dict[int, tuple] = {}
    tried = f" [sizes tried: {', '.join(f'{k}={v}' for k, v in hints.items())}; others: --dims]"
    try:
        with fake, torch.device("meta"), _tracing_patches(torch):
            try:
                with default_dtype(tdtype):
                    block = cls(
                        *[size(x) for x in ctor_args],
                        **{k: size(x) for k, x in ctor_kwargs.items()},
                    )
            except Exception as err:
                raise ComplexoError(
                    f"{cls.__name__}({ctor}) failed: {_one_line(err)}{_where(err)}{tried}"
                ) from None
            args = [
                torch.empty([size(x) for x in shape], dtype=tdtype, requires_grad=True)
                for shape in shapes
            ]
            step = step_counts(block, args, name=cls.__name__)
            saved.update(step.saved)
            fwd, fwd_ew, total, total_ew = step.fwd, step.fwd_ew, step.total, step.total_ew
            params, registry, no_convention = step.params, step.registry, step.no_convention
    except ComplexoError:
        raise
    except Exception as err:
        data = "DataDependent" in type(err).__name__ or "data-dependent" in str(err)
        hint = (
            "its control flow depends on tensor values, which neither a symbolic trace nor "
            "a count on meta (no data) can follow"
            if data
            else "complexo count measures it at fixed sizes"
        )
        raise ComplexoError(
            f"cannot trace {cls.__name__} with symbolic sizes: {_one_line(err)}{_where(err)}; "
            f"{hint}{tried}"
        ) from None

    def named(value) -> sympy.Expr:  # ⌊(R − 1)/2⌋ + 1 read as the ⌈R/2⌉ it is
        expr = value.node.expr if isinstance(value, torch.SymInt) else sympy.sympify(value)
        return sympy.expand(ceilings(_plain(env.replace(expr)).xreplace(ours)))

    guards = list(dict.fromkeys(ceilings(_plain(g.expr).xreplace(ours)) for g in env.guards))
    divides = _divides(guards)

    def exact(expr):  # floor(d/h) is d/h where a guard says h divides d
        for a, b in divides:
            expr = expr.subs(sympy.floor(a / b), a / b)
        return sympy.expand(expr)

    def by_op(counts):
        out = {str(k): exact(named(v)) for k, v in counts.items()}
        return {k: v for k, v in out.items() if v != 0}

    pinned = {
        f"{ours.get(k, k)}={int(v)}{_pinned_at(env, k)}": int(v)
        for k, v in env.replacements.items()
        if sympy.sympify(v).is_Integer
    }
    return Derivation(
        names=names,
        hints=hints,
        dtype=dtype,
        forward=by_op(fwd),
        backward=by_op({k: v - fwd.get(k, 0) for k, v in total.items()}),
        params=exact(named(params)),
        saved=[
            (
                tuple(exact(named(s)) for s in shape),
                str(dt).removeprefix("torch."),
                exact(named(nb)),
            )
            for shape, dt, nb in saved.values()
        ],
        guards=guards,
        uncounted=sorted(step.seen - registry),
        seconds=time.perf_counter() - t0,
        pinned=pinned,
        forward_elementwise=by_op(fwd_ew),
        backward_elementwise=by_op({k: v - fwd_ew.get(k, 0) for k, v in total_ew.items()}),
        no_convention=no_convention,
    )


def _pinned_at(env, s) -> str:
    """Where the first guard on ``s`` alone was recorded: the line that pinned it."""
    for g in env.guards:
        if g.expr.free_symbols == {s}:
            return f" (by {g.sloc})"
    return ""


def _tensors(y, torch) -> list:
    if isinstance(y, torch.Tensor):
        return [y]
    if isinstance(y, (tuple, list)):
        return [t for x in y for t in _tensors(x, torch)]
    if isinstance(y, dict):
        return [t for x in y.values() for t in _tensors(x, torch)]
    return []


def _plain(expr: sympy.Expr) -> sympy.Expr:
    """torch's FloorDiv, CeilDiv and Mod as sympy's floor, ceiling and Mod."""
    from torch.utils._sympy.functions import CeilDiv, FloorDiv, Mod, PythonMod

    as_sympy = {
        FloorDiv: lambda a, b: sympy.floor(a / b),
        CeilDiv: lambda a, b: sympy.ceiling(a / b),
        PythonMod: sympy.Mod,
        Mod: sympy.Mod,
    }
    return sympy.sympify(expr).replace(
        lambda x: type(x) in as_sympy, lambda x: as_sympy[type(x)](*x.args)
    )


# ---------------------------------------------------------------- reading it out


def conditions(guards: list[sympy.Expr]) -> tuple[list[sympy.Expr], list[sympy.Expr]]:
    """The guards simplified, those true for every positive size dropped: (equalities and
    orderings, the ones that say for which sizes the formulas hold; the "≠" ones, sizes that
    only happened to differ at the sample values, e.g. B ≠ 1)."""
    divides = _divides(guards)
    kept: dict[sympy.Expr, None] = {}
    for g in guards:
        for a, b in divides:
            g = g.subs(sympy.floor(a / b), a / b)
        with contextlib.suppress(Exception):  # an unsimplified guard is still true
            g = sympy.simplify(g)
        if g is not sympy.true:
            kept[g] = None
    main = [g for g in kept if not isinstance(g, sympy.Ne)]
    return main, [g for g in kept if isinstance(g, sympy.Ne)]


def _divides(guards) -> list[tuple[sympy.Expr, sympy.Expr]]:
    """(a, b) for each guard Mod(a, b) = 0."""
    return [
        g.lhs.args
        for g in guards
        if isinstance(g, sympy.Eq) and g.rhs == 0 and isinstance(g.lhs, sympy.Mod)
    ]


def guard_text(g: sympy.Expr) -> str:
    ops = {sympy.Eq: "=", sympy.Ne: "≠", sympy.Ge: "≥", sympy.Gt: ">", sympy.Le: "≤", sympy.Lt: "<"}
    for kind, op in ops.items():
        if isinstance(g, kind):
            return f"{g.lhs} {op} {g.rhs}"
    return str(g)


def evaluate(expr: sympy.Expr, values: dict[str, int]) -> int | float:
    value = sympy.sympify(expr).subs({symbol(k): v for k, v in values.items()})
    if not value.is_number:
        missing = ", ".join(sorted(str(s) for s in value.free_symbols))
        raise ComplexoError(f"--at: give a value for {missing}")
    return int(value) if value.is_integer else float(value)


def dominant(expr: sympy.Expr, values: dict[str, int]) -> tuple[sympy.Expr, float]:
    """The largest term of the expanded ``expr`` at ``values`` and its share of the total."""
    terms = sympy.Add.make_args(sympy.expand(expr))
    scored = [(evaluate(t, values), t) for t in terms]
    total = sum(v for v, _ in scored)
    value, term = max(scored, key=lambda vt: vt[0])
    return term, (value / total if total else 0.0)


def growth(expr: sympy.Expr, symbols: list[sympy.Symbol]) -> str:
    """O(...) of a polynomial in the sizes (floor(R/2) and ceiling(R/2) grow as R/2);
    otherwise '-'."""
    expr = expr.replace(sympy.floor, lambda x: x).replace(sympy.ceiling, lambda x: x)
    try:
        used = [s for s in symbols if s in expr.free_symbols]
        return big_o_text(big_o(expr, used)) if used else "O(1)"
    except Exception:
        return "-"


def to_json(dv: Derivation, at: dict[str, int] | None = None) -> dict:
    values = {**dv.hints, **(at or {})}
    return {
        "convention": CONVENTION,
        "dtype": dv.dtype,
        "hints": dv.hints,
        "at": values,
        "quantities": {
            name: {
                "formula": str(expr),
                "latex": sympy.latex(expr),
                "value": evaluate(expr, values),
                "big_o": growth(expr, dv.symbols()),
            }
            for name, expr in dv.quantities().items()
        },
        "by_op": {
            "forward": {op: str(x) for op, x in dv.forward.items()},
            "backward": {op: str(x) for op, x in dv.backward.items()},
            "forward_elementwise": {op: str(x) for op, x in dv.forward_elementwise.items()},
            "backward_elementwise": {op: str(x) for op, x in dv.backward_elementwise.items()},
        },
        "no_elementwise_convention": dv.no_convention,
        "saved": [
            {"shape": [str(s) for s in shape], "dtype": dt, "bytes": str(b)}
            for shape, dt, b in dv.saved
        ],
        "guards": [str(g) for g in dv.guards],
        "conditions": [str(g) for part in conditions(dv.guards) for g in part],
        "pinned": dv.pinned,
        "uncounted_ops": dv.uncounted,
        "seconds": round(dv.seconds, 3),
    }


def lines(dv: Derivation, at: dict[str, int] | None = None) -> list[str]:
    """The plain-text report."""
    values = {**dv.hints, **(at or {})}
    q = dv.quantities()
    where = ", ".join(f"{k}={v}" for k, v in values.items())
    out = [f"convention: {CONVENTION}; dtype {dv.dtype}", f"values at {where}"]
    for name, expr in q.items():
        out.append(f"{name:26} {plain(expr)}   = {evaluate(expr, values):,}")
    for label, ops in (
        ("forward", dv.forward),
        ("backward", dv.backward),
        ("forward element-wise", dv.forward_elementwise),
        ("backward element-wise", dv.backward_elementwise),
    ):
        for op, x in ops.items():
            out.append(f"  {label} {op}: {plain(x)}")
    for shape, dt, b in dv.saved:
        dims = "×".join(plain(s, factor=False) for s in shape) or "scalar"
        out.append(f"  saved ({dims}) {dt}: {plain(b)} bytes")
    train = q["training_flops"]
    out.append(f"big-O (training FLOPs): {growth(train, dv.symbols())}")
    if train != 0:
        term, share = dominant(train, values)
        out.append(f"dominant term at these values: {plain(term)} ({share:.0%} of training FLOPs)")
    main, differ = conditions(dv.guards)
    holds = ", ".join(guard_text(g) for g in main) or "every positive size"
    if differ:
        holds += (
            f"; and {len(differ)} sizes that differed at the sample values (≠, e.g. "
            f"{guard_text(differ[0])}; --json lists all {len(dv.guards)} guards)"
        )
    out.append(f"holds for: {holds}")
    if dv.pinned:
        pins = ", ".join(dv.pinned)
        out.append(f"warning: the trace pinned {pins}: the formulas hold at that value only")
    if dv.uncounted:
        out.append(f"no matmul FLOP formula: {', '.join(dv.uncounted)}")
    if dv.no_convention:
        out.append(f"no element-wise convention (not counted): {', '.join(dv.no_convention)}")
    out.append(f"traced in {dv.seconds:.2f} s")
    return out
