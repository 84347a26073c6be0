"""Every hand-written formula proved for all shapes: the reference block traced with symbolic
sizes (:mod:`complexo.symtrace`), and ``sympy.simplify(hand − traced) == 0`` per quantity.

An analysis declares how (``Analysis(..., symbolic=Symbolic(...))``): for a config, the
:class:`Case` s to trace (one per side of a comparison), each with its symbolic sizes, how to
build its reference block and inputs from them, its hand formulas by result quantity and which
traced quantity each is measured by; quantities no trace measures are listed with the reason.
``variants``: one config per structural variant (naive, SDPA, causal, ...), those that
``tests/test_proofs.py`` proves; the analyses' output says "proved for all shapes" only for a
variant among them, or for any config after ``--prove`` has run its proof live.

Floors and ceilings (a strided convolution's ⌈R/2⌉) that ``simplify`` cannot cancel are proved
by residues: R = q·k + j for every j < q, each case by ``simplify``. A block that pads a size
up to a multiple of a fixed m (a clip padded to whole windows) traces to a ``Mod`` in a symbol:
its cases share a :class:`complexo.residues.Residues` (``Case.classes``), one trace per way the
block branches, and every class X = m·k − r is proved in the trace whose guards it meets.

Nothing here imports torch until a proof runs.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import sympy

from complexo.symtrace import TRACED, Dim  # noqa: F401  (a declaration's names, here too)

PROVED = "proved for all shapes"
HOW = "sympy.simplify(hand − traced) = 0, the reference block traced with symbolic sizes"
SUITE = "tests/test_proofs.py"

# the result quantities most traces measure under the same names (:data:`symtrace.TRACED`):
# the products, parameters and saved bytes; with ELEMENTWISE, all FLOPs by complexo's
# conventions (complexo.elementwise)
MATMULS = {
    name: name
    for name in ("forward_matmul_flops", "backward_matmul_flops", "params", "activation_bytes")
}
ELEMENTWISE = {"forward_flops": "forward_flops", "backward_flops": "backward_flops"}


@dataclass(frozen=True)
class Case:
    """One traced block: ``build(sizes) -> (block, inputs)``, sizes the dims' SymInts by name;
    ``hand``: result quantity -> its hand formula; ``traced``: result quantity -> the traced
    quantity (:data:`complexo.symtrace.TRACED`) that measures it; ``residues``: (symbol,
    modulus) for formulas with floors; ``formulas``: FlopCounterMode formulas to use instead of
    torch's (a function returning them: torch is imported inside it)."""

    dims: tuple[Dim, ...]
    build: Callable[[Mapping[str, Any]], tuple]
    hand: Mapping[str, sympy.Expr]
    traced: Mapping[str, str]
    side: str = ""
    residues: tuple[sympy.Symbol, int] | None = None
    formulas: Callable[[], Mapping] | None = None
    dtype: str = "bfloat16"  # 2 bytes: fp32 statistics told apart from e
    at: Mapping[sympy.Symbol, int] = field(default_factory=dict)  # fixed on both sides: e = 4
    backward: bool = True  # False: the forward alone, as inference runs it (a decode step)
    # proved class by class (complexo.residues): the cases that share it are traces of one
    # block at sizes that branch differently (padding or none), each class proved in the one
    # whose guards it meets
    classes: Any = None


@dataclass(frozen=True)
class Symbolic:
    """How an analysis's hand formulas are proved (module docstring). ``variant(cfg)``: the name
    of the config's structural variant; ``cases(cfg)``: what to trace; ``variants``: the suite's
    variants, name -> config fields; ``untraced``: quantity -> why no trace measures it, in
    every variant or in those it names (HBM traffic is no count of a run);
    ``slow``: variants whose proof takes long (marked slow in the suite); ``unproved``: the
    variants that have no case to trace, and why; ``where``: the sizes a variant's proof holds
    for, as its trace's guards read (the suite checks them: a claim says no more than it);
    ``note``: how the cases cover a size no trace keeps symbolic (a loop's count)."""

    variant: Callable[[Any], str]
    cases: Callable[[Any], list[Case]]
    variants: Mapping[str, Mapping[str, Any]]
    untraced: Mapping[str, str] = field(default_factory=dict)
    slow: frozenset[str] = frozenset()
    unproved: Mapping[str, str] = field(default_factory=dict)  # variant -> why it has no proof
    where: Mapping[str, str] = field(default_factory=dict)  # variant -> its trace's guards
    note: str = ""  # how the traces cover what no single trace can (a loop's count)


def hand_from(specs, model, names=None) -> dict[str, sympy.Expr]:
    """Each quantity spec's hand formula as the result builds it: the sum of its terms."""
    out = {}
    for spec in specs:
        if names is None or spec.name in names:
            terms = model.terms(spec.kind, matmul_only=spec.matmul_only, tag=spec.tag)
            out[spec.name] = sympy.Add(*(t.expr for t in terms))
    return out


@dataclass
class Check:
    """One quantity of one case: proved when ``difference`` (hand − traced, simplified) is 0."""

    quantity: str
    traced_as: str
    hand: sympy.Expr
    traced: sympy.Expr
    difference: sympy.Expr
    method: str
    side: str = ""

    @property
    def proved(self) -> bool:
        return self.difference == 0

    def line(self) -> str:
        who = f"{self.side}: " if self.side else ""
        if self.proved:
            return f"{who}{self.quantity}: {PROVED} ({self.method})"
        return (
            f"{who}{self.quantity}: NOT PROVED: hand − traced = {self.difference} "
            f"(hand {self.hand}; traced {self.traced_as} {self.traced})"
        )


@dataclass
class ProofReport:
    analysis: str
    variant: str
    checks: list[Check]
    untraced: Mapping[str, str]
    # the conditions of each part of the proof, all needed: a part is the cases that prove the
    # same quantities of a side at the same fixed values, which hold where one of them does
    # ("(a, b) or (c)": a layer traced both ways round); different quantities, or the same at
    # another fixed L, are different parts (a decode step's and a prefill's guards)
    guards: list[str]
    pinned: dict[str, int]
    seconds: float
    no_convention: list[str] = field(default_factory=list)  # ops whose work goes uncounted
    note: str = ""  # the declaration's (Symbolic.note)

    @property
    def proved(self) -> bool:
        return all(c.proved for c in self.checks) and not self.pinned

    @property
    def where(self) -> str:
        if len(self.guards) == 1:
            return self.guards[0]
        return " and ".join(f"({g})" if " or " in g else g for g in self.guards)

    def lines(self) -> list[str]:
        out = [f"proof of {self.analysis} ({self.variant}): {HOW}"]
        out += ["  " + c.line() for c in self.checks]
        out += [f"  {q}: not traced: {why}" for q, why in self.untraced.items()]
        if self.no_convention:
            ops = ", ".join(self.no_convention)
            out.append(f"  ran with no element-wise convention (their work not counted): {ops}")
        if self.pinned:
            out.append(f"  the trace pinned {self.pinned}: nothing holds beyond that value")
        if self.guards:
            out.append(f"  where (the trace's guards): {self.where}")
        if self.note:
            out.append(f"  {self.note}")
        out.append(f"  traced and proved in {self.seconds:.1f} s")
        return out

    def to_json(self) -> dict:
        return {
            "variant": self.variant,
            "how": HOW,
            "proved": self.proved,
            "quantities": {
                (f"{c.side}." if c.side else "") + c.quantity: {
                    "proved": c.proved,
                    "traced_as": c.traced_as,
                    "method": c.method,
                    "hand": str(c.hand),
                    "traced": str(c.traced),
                    "difference": str(c.difference),
                }
                for c in self.checks
            },
            "not_traced": dict(self.untraced),
            "guards": self.guards,
            "pinned": self.pinned,
            "no_convention": self.no_convention,
            **({"note": self.note} if self.note else {}),
            "seconds": round(self.seconds, 2),
        }


def difference(hand: sympy.Expr, traced: sympy.Expr, residues=None) -> tuple[sympy.Expr, str]:
    """hand − traced, simplified: 0 when they are equal for every size. With ``residues``
    (symbol x, modulus q) and floors or ceilings left, x = q·k + j for each j (k ≥ 0): the
    differences of the residues that do not vanish, named by their residue."""
    diff = sympy.simplify(sympy.expand(hand - traced))
    if diff == 0:
        return diff, "simplify"
    rounding = diff.has(sympy.floor) or diff.has(sympy.ceiling)
    if residues is None or not rounding:
        return sympy.factor(diff), "simplify"
    x, q = residues
    k = sympy.Symbol("k", integer=True, nonnegative=True)
    left = {}
    for j in range(q):
        case = sympy.simplify(sympy.expand((hand - traced).subs(x, q * k + j)))
        if case != 0:
            left[j] = case
    method = f"{x} = {q}·k + j, each of the {q} residues j by simplify"
    if not left:
        return sympy.Integer(0), method
    named = [sympy.Eq(sympy.Symbol(f"[{x}={q}k+{j}]"), v) for j, v in left.items()]
    return sympy.Tuple(*named), method


def prove(analysis, cfg, hand: Mapping[str, Mapping[str, sympy.Expr]] | None = None):
    """Trace ``cfg``'s cases and prove each mapped quantity. ``hand``: formulas to prove instead
    of the declared ones, by side ('' for an analysis without sides) and quantity (a test passes
    a wrong one, to see the differing terms named)."""
    from complexo.symtrace import trace

    sym: Symbolic = analysis.symbolic
    t0 = time.perf_counter()
    checks: list[Check] = []
    parts: dict[tuple, list[str]] = {}  # the alternatives' conditions, by part (ProofReport)
    pinned: dict[str, int] = {}
    no_convention: list[str] = []
    cases = sym.cases(cfg)
    classed: list[tuple] = []  # (case, trace) of the cases proved by residue classes
    if not cases:
        from complexo.errors import ComplexoError

        name = sym.variant(cfg)
        words = set(name.split())  # a key names the variant, or words every such one has
        why = next(
            (why for key, why in sym.unproved.items() if set(key.split()) <= words),
            "no symbolic trace is declared for it",
        )
        raise ComplexoError(f"no proof of {analysis.name}'s {name} variant: {why}")
    for case in cases:
        extra = case.formulas() if case.formulas else None
        tr = trace(case.build, case.dims, case.dtype, formulas=extra, backward=case.backward)
        pinned.update(tr.pinned)
        if {"forward_flops", "backward_flops"} & set(case.traced.values()):
            no_convention += [op for op in tr.no_convention if op not in no_convention]
        if case.classes is not None:
            classed.append((case, tr))
            continue
        formulas = {**case.hand, **((hand or {}).get(case.side, {}))}
        at = dict(case.at)
        fixed = ", at " + ", ".join(f"{k} = {v}" for k, v in at.items()) if at else ""
        for quantity, traced_as in case.traced.items():
            traced = sympy.expand(tr.value(traced_as).subs(at))
            hand_expr = sympy.sympify(formulas[quantity]).subs(at)
            diff, method = difference(hand_expr, traced, case.residues)
            checks.append(
                Check(quantity, traced_as, hand_expr, traced, diff, method + fixed, case.side)
            )
        group = ", ".join(_main_guards(tr.guards))
        part = (case.side, tuple(case.traced.items()), tuple(at.items()))
        alternatives = parts.setdefault(part, [])
        if f"({group})" not in alternatives:
            alternatives.append(f"({group})")
    guards = _where(parts.values())
    note = sym.note
    if classed:
        from complexo.residues import prove_classes

        def hand_of(case):
            return {**case.hand, **((hand or {}).get(case.side, {}))}

        class_checks, where = prove_classes(classed[0][0].classes, classed, hand_of)
        checks += class_checks
        if where:
            guards.append(", ".join(where))
        note = classed[0][0].classes.note(len(classed))
    return ProofReport(
        analysis.name,
        sym.variant(cfg),
        checks,
        sym.untraced,
        guards,
        pinned,
        time.perf_counter() - t0,
        no_convention,
        note,
    )


def _where(parts) -> list[str]:
    """Each part's conditions, once: its alternatives joined by "or"; none where one of them
    holds for every size."""
    out: list[str] = []
    for alternatives in parts:
        text = "" if "()" in alternatives else " or ".join(alternatives)
        if text and text not in out:
            out.append(text)
    return out


def _main_guards(guards: list[sympy.Expr]) -> list[str]:
    """The guards that say for which sizes the formulas hold (the ≠ ones only record that two
    sizes differed at the sample values)."""
    from complexo.derive import conditions
    from complexo.symtrace import ceilings

    main, _ = conditions([ceilings(g) for g in guards])
    # torch's int64 bounds (k < 2⁶³) hold for every size a tensor can have
    big = [g for g in main if any(abs(a) >= 2**62 for a in g.atoms(sympy.Number))]
    return [str(g) for g in main if g not in big]


# ---------------------------------------------------------------- what the output claims


def noted(symbolic: Symbolic, analyse: Callable) -> Callable:
    """``analyse`` whose result says, per quantity and in a note, what the suite proves of the
    config's variant (nothing when the suite does not prove that variant)."""

    @functools.wraps(analyse)  # the analysis's own module and name, as the registry lists it
    def run(cfg):
        result = analyse(cfg)
        name = symbolic.variant(cfg)
        where = symbolic.where.get(name)
        proof = f"{PROVED}{f' where {where}' if where else ''} ({SUITE}, variant {name!r})"
        mark(result, symbolic, cfg, proof)
        return result

    return run


def mark(result, symbolic: Symbolic, cfg, proof: str, report: ProofReport | None = None) -> None:
    """Set ``proof`` on each quantity a proof covers, side by side for a comparison, and add
    the note; with a live ``report``, only what it proved. Nothing for a variant the suite
    does not prove, unless a live report proved it."""
    if report is None and symbolic.variant(cfg) not in symbolic.variants:
        return
    proved: dict[str, set[str]] = {}
    for case in symbolic.cases(cfg):
        proved.setdefault(case.side, set()).update(case.traced)
    if report is not None:
        proved = {}
        for c in report.checks:
            if c.proved:
                proved.setdefault(c.side, set()).add(c.quantity)
    sides = getattr(result, "sides", None) or {"": result}
    labels: dict[str, str] = {}
    for side, res in sides.items():
        names = proved.get(side if side in proved else "", set())
        res.quantities[:] = [
            replace(q, proof=proof) if q.name in names else q for q in res.quantities
        ]
        labels.update({q.name: q.name for q in res.quantities if q.name in names})
    if labels:
        prefix = "" if len(sides) == 1 else "each side's "
        how = "" if report is not None else "; --prove runs the proof here"
        result.notes.append(f"{proof}: {prefix}{', '.join(labels.values())} ({HOW}{how}).")
