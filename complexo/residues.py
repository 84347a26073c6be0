"""Proofs by residue classes (:mod:`complexo.prove`): hand formulas with ceilings of sizes over
fixed numbers (a clip padded up to whole windows, ⌈T/2⌉) against traces whose sizes read as
⌊T/2 + ((−T) mod 2)/2⌋, a modulus ``simplify`` cannot cancel.

Each such size X is padded up to a multiple of a fixed m: X = m·k − r, k a positive integer and r
one of 0 … m − 1, so the r's together cover every X. In one class (one r per size) every
``Mod(−X, m)`` is the number r and every ⌈X/m⌉ is k: hand and traced are polynomials there, and
``simplify`` decides each class. A trace holds only where its guards do (it branched on the
sizes it ran at: padding or none): a class is proved in a trace whose every guard the class's
substitution leaves true or undecided, never false, and a class no trace covers is named.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import sympy


@dataclass(frozen=True)
class Residues:
    """``sizes``: (size, m, quotient name) each: the size (a symbol of the hand formulas, or the
    root of one: √S) is m·k − r in each class, k the symbol named."""

    sizes: tuple[tuple[sympy.Expr, int, str], ...]

    def classes(self) -> list[tuple[int, ...]]:
        """Every class: one r per size, r < m (m·∏ of them)."""
        return list(itertools.product(*(range(m) for _, m, _ in self.sizes)))

    def quotient(self, name: str) -> sympy.Symbol:
        return sympy.Symbol(name, integer=True, positive=True)

    def substitute(self, expr: sympy.Expr, rs: tuple[int, ...]) -> sympy.Expr:
        """``expr`` in the class ``rs``: each size X -> m·k − r (√S: S -> (m·k − r)², through a
        positive stand-in so that √ of the square is its root)."""
        expr = sympy.sympify(expr)
        for (size, m, name), r in zip(self.sizes, rs, strict=True):
            value = m * self.quotient(name) - r
            if isinstance(size, sympy.Pow) and size.exp == sympy.Rational(1, 2):
                root = sympy.Dummy("root", integer=True, positive=True)
                expr = expr.subs(size.base, root**2).subs(root, value)
            else:
                expr = expr.subs(size, value)
        return expr

    def back(self, expr: sympy.Expr, rs: tuple[int, ...]) -> sympy.Expr:
        """``expr`` of a class read in the sizes again: k -> (X + r)/m."""
        subs = {
            self.quotient(name): (size + r) / m
            for (size, m, name), r in zip(self.sizes, rs, strict=True)
        }
        return sympy.expand(sympy.sympify(expr).subs(subs))

    def label(self, rs: tuple[int, ...]) -> str:
        """ "T = 2·q − 1, √S = 7·c": the class ``rs``."""
        return ", ".join(
            f"{_name(size)} = {m}·{name}" + (f" − {r}" if r else "")
            for (size, m, name), r in zip(self.sizes, rs, strict=True)
        )

    def describe(self) -> str:
        """ "T = 2·q − r (r < 2), √S = 7·c − r (r < 7)": every class at once."""
        return ", ".join(f"{_name(s)} = {m}·{k} − r (r < {m})" for s, m, k in self.sizes)

    def note(self, traces: int) -> str:
        """What a proof by these classes covers."""
        return (
            f"covered: every size in the {len(self.classes())} residue classes "
            f"{self.describe()} (every size the trace's guards allow), from {traces} traces"
        )


def _name(size: sympy.Expr) -> str:
    if isinstance(size, sympy.Pow) and size.exp == sympy.Rational(1, 2):
        return f"√{size.base}"
    return str(size)


def covers(residues: Residues, guards, rs) -> tuple[bool, list[sympy.Expr]]:
    """Whether the class ``rs`` meets a trace's ``guards`` (none false after the substitution),
    and the conditions left, read in the sizes again: those the class's own k ≥ 1 does not
    settle (√S ≥ 7 where √S = 7·c − 3 needs c ≥ 2); where it does not, the guard it fails."""
    left: list[sympy.Expr] = []
    for g in guards:
        if not g.has(sympy.floor, sympy.ceiling, sympy.Mod, sympy.Max, sympy.Min):
            # a polynomial guard reads the same in every class (X -> m·k − r and back): a ≠
            # is no identity (the trace would have it true), an ordering is left as it is
            if not isinstance(g, sympy.Ne) and g is not sympy.true:
                left.append(g)
            continue
        given, g = g, residues.substitute(g, rs)
        if g is sympy.false:
            return False, [given]
        if g is sympy.true or not isinstance(g, sympy.core.relational.Relational):
            continue
        if isinstance(g, sympy.Ne):
            continue  # sizes that differed at the sample values (prove._main_guards)
        gap = sympy.factor(g.lhs - g.rhs) if isinstance(g, (sympy.Ge, sympy.Gt)) else None
        if gap is not None and (
            gap.is_positive or (isinstance(g, sympy.Ge) and gap.is_nonnegative)
        ):
            continue
        left.append(residues.back(g, rs))
    return True, left


def prove_classes(residues: Residues, traced: list[tuple], hand_of) -> tuple[list, list[str]]:
    """Each quantity proved in every class, each class in the first trace it meets the guards
    of. ``traced``: (case, Traced) of the traces; ``hand_of(case)``: the hand formulas to prove.
    Returns the checks (one per quantity: proved when every class is) and the conditions left
    (:func:`covers`), as prove's guards."""
    from complexo.prove import Check, _main_guards

    case0 = traced[0][0]
    per: dict[str, list[tuple[str, sympy.Expr, sympy.Expr]]] = {q: [] for q in case0.traced}
    where: list[sympy.Expr] = []
    uncovered: list[str] = []
    guards = [list(tr.guards) for _, tr in traced]  # a guard a class failed first: the branch's
    for rs in residues.classes():
        label = residues.label(rs)
        for (case, tr), order in zip(traced, guards, strict=True):
            ok, left = covers(residues, order, rs)
            if not ok:
                order.remove(left[0])
                order.insert(0, left[0])  # the next class of another branch fails it at once
                continue
            where += [g for g in left if g not in where]
            hand = hand_of(case)
            for quantity, traced_as in case.traced.items():
                mine = sympy.expand(residues.substitute(tr.value(traced_as), rs))
                theirs = sympy.expand(residues.substitute(hand[quantity], rs))
                per[quantity].append((label, mine, sympy.simplify(theirs - mine)))
            break
        else:
            uncovered.append(label)
    n = len(residues.classes())
    method = (
        f"by residues {residues.describe()}: each of the {n} classes by simplify, in the trace "
        f"whose guards it meets ({len(traced)} traces)"
    )
    checks = []
    for quantity, traced_as in case0.traced.items():
        rows = per[quantity]
        wrong = [sympy.Eq(sympy.Symbol(f"[{lab}]"), diff) for lab, _, diff in rows if diff != 0]
        wrong += [sympy.Eq(sympy.Symbol(f"[{lab}]"), sympy.Symbol("untraced")) for lab in uncovered]
        diff = sympy.Tuple(*wrong) if wrong else sympy.Integer(0)
        values = sympy.Tuple(*(sympy.Eq(sympy.Symbol(f"[{lab}]"), v) for lab, v, _ in rows))
        hand = sympy.sympify(hand_of(case0)[quantity])
        checks.append(Check(quantity, traced_as, hand, values, diff, method, case0.side))
    return checks, sorted(_main_guards(where))
