"""A small symbolic cost model that every analysis builds on.

A model is a list of named :class:`Term` s, each a sympy expression over the block's symbols and of
one :class:`Kind`. Totals are sums of terms; evaluation substitutes a config and returns exact
integers; big-O keeps the leading monomials in the growing symbols; crossovers are solved with
sympy.

>>> from complexo.symbols import n, d
>>> m = CostModel([Term("proj", Kind.FORWARD, 8 * n * d**2, matmul=True),
...                Term("scores", Kind.FORWARD, 4 * n**2 * d, matmul=True)])
>>> m.crossover(["scores"], ["proj"], n).expr
2*d
>>> plain(m.total(Kind.FORWARD))
'4·d·n·(2·d + n)'
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from fractions import Fraction

import sympy


class Kind(str, Enum):
    FORWARD = "forward_flops"
    BACKWARD = "backward_flops"
    PARAMS = "params"
    ACTIVATION = "activation_bytes"  # saved by autograd for the backward
    MEMORY = "memory_bytes"  # other memory: the attention matrix, weights, optimizer state, ...
    CHECKPOINT = "checkpoint_bytes"  # what is written to disk
    ALTERNATIVE = "alternative_flops"  # what another implementation would execute instead

    @property
    def unit(self) -> str:
        flops = ("forward_flops", "backward_flops", "alternative_flops")
        return "flop" if self.value in flops else "param" if self.value == "params" else "byte"


@dataclass(frozen=True)
class Term:
    """One named piece of cost. ``matmul`` marks matrix products, the only work that fvcore and
    FlopCounterMode count; ``ops`` names the operators that carry the term in the reference
    implementation (TorchScript names for fvcore, dispatcher names for torch), so that a counter's
    gap can be attributed to the ops it skipped. ``tags`` let a quantity pick a subset of a kind's
    terms (``"dw"``: weight gradients, ``"trainable"`` parameters, ...)."""

    name: str
    kind: Kind
    expr: sympy.Expr
    matmul: bool = False
    ops: tuple[str, ...] = ()
    note: str = ""
    tags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Crossover:
    label: str
    symbol: sympy.Symbol
    expr: sympy.Expr  # the value of ``symbol`` at which the two groups are equal
    value: Fraction  # that value at the config
    kind: Kind | None = None  # what was compared, when one kind


class CostModel:
    def __init__(self, terms: Iterable[Term]):
        self._terms = list(terms)
        seen: set[tuple[Kind, str]] = set()
        for t in self._terms:
            if (t.kind, t.name) in seen:
                raise ValueError(f"duplicate term {t.kind.value}/{t.name}")
            seen.add((t.kind, t.name))

    def terms(
        self, kind: Kind | tuple[Kind, ...], *, matmul_only: bool = False, tag: str = ""
    ) -> list[Term]:
        """Terms of one kind (or several), optionally only matrix products or one tag's."""
        kinds = kind if isinstance(kind, tuple) else (kind,)
        return [
            t
            for t in self._terms
            if t.kind in kinds and (t.matmul or not matmul_only) and (not tag or tag in t.tags)
        ]

    def term(self, kind: Kind, name: str) -> Term:
        for t in self.terms(kind):
            if t.name == name:
                return t
        raise KeyError(f"{kind.value}/{name}")

    def total(
        self, kind: Kind | tuple[Kind, ...], *, matmul_only: bool = False, tag: str = ""
    ) -> sympy.Expr:
        return sympy.Add(*(t.expr for t in self.terms(kind, matmul_only=matmul_only, tag=tag)))

    def group(self, kind: Kind, names: Sequence[str]) -> sympy.Expr:
        return sympy.Add(*(self.term(kind, name).expr for name in names))

    def dominant(self, kind: Kind, values: Mapping) -> tuple[Term, int, Fraction]:
        """The largest term of ``kind`` at a config, its value and its share of the total."""
        scored = [(evaluate(t.expr, values), t) for t in self.terms(kind)]
        total = sum(v for v, _ in scored)
        value, term = max(scored, key=lambda vt: vt[0])
        return term, value, Fraction(value, total) if total else Fraction(0)

    def crossover(
        self,
        grows: Sequence[str],
        against: Sequence[str],
        symbol: sympy.Symbol,
        *,
        kind: Kind = Kind.FORWARD,
        values: Mapping | None = None,
        label: str = "",
    ) -> Crossover:
        """Solve sum(grows) = sum(against) for the positive ``symbol``."""
        a, b = self.group(kind, grows), self.group(kind, against)
        return replace(crossover(a, b, symbol, values=values, label=label), kind=kind)


def crossover(
    a: sympy.Expr,
    b: sympy.Expr,
    symbol: sympy.Symbol,
    *,
    values: Mapping | None = None,
    label: str = "",
) -> Crossover:
    """Solve a = b for the positive ``symbol``.

    >>> from complexo.symbols import d, r
    >>> crossover(r * 2 * d, d**2, r).expr  # a rank-r adapter of a d×d matrix: r·(d + d) = d²
    d/2
    """
    candidates, tidied = _roots(sympy.sympify(a), sympy.sympify(b), symbol)
    if values is not None:  # positive here (a root positive at a config is never known < 0)
        candidates = tuple(x for x in candidates if at(x, values).is_positive)
    else:  # not known to be negative (asking sympy's assumptions is slow on large roots)
        candidates = tuple(x for x in candidates if x.is_positive is not False)
    if len(candidates) != 1:
        raise ValueError(f"expected one positive crossover in {symbol}, got {list(candidates)}")
    root = candidates[0] if tidied else _tidy(candidates[0])
    value = Fraction(0)
    if values is not None:
        q = at(root, values)
        # exact when rational; an irrational crossover (R = p·√(2d + f − 1)) to 6 decimals
        value = (
            Fraction(int(q.p), int(q.q))
            if q.is_Rational
            else Fraction(float(q)).limit_denominator(10**6)
        )
    return Crossover(label, symbol, root, value)


@functools.lru_cache(maxsize=1024)
def _roots(a: sympy.Expr, b: sympy.Expr, symbol: sympy.Symbol) -> tuple[tuple, bool]:
    """The roots of a = b in ``symbol``, and whether they are already in :func:`tidy`'s form;
    once per process for each pair (a sweep asks the same question at every point).

    Costs are polynomials in ``symbol``. Linear in it (most crossovers: a batch, a rank, a
    length), a = b is c₁·x + c₀ = 0 and its root −c₀/c₁ is read off the expanded terms, each
    coefficient's common factors pulled out: tidy's form, a third of the time of building a
    Poly over a common denominator and tidying its root (LoRA's four crossovers, 60 → 25 ms).
    x·(c₁·x + c₀) = 0 likewise, x = 0 being no positive size (MHSA's three, 12 → 7 ms).
    Otherwise (x in a denominator, a quadratic) sympy.roots, faster than sympy.solve's search."""
    difference = sympy.expand(a - b)
    linear = _linear(difference, symbol)
    if linear is not None:
        c1, c0 = linear
        return (sympy.factor_terms(-c0) / sympy.factor_terms(c1),), True
    # xᵏ·(c₁·x + c₀) = 0 (scores against projections, 4·B·n²·d = 8·B·n·d²): c₁·x + c₀ = 0,
    # its root tidied as sympy.roots' would be, the sign in the numerator: (S + 2·d)/(S − 1)
    reduced = _over_lowest_power(difference, symbol)
    linear = None if reduced is difference else _linear(reduced, symbol)
    if linear is not None:
        c1, c0 = linear
        return ((c0 / -c1) if c1.could_extract_minus_sign() else (-c0 / c1),), False
    try:  # over the coefficients' common denominator (cheaper than sympy.together's walk)
        poly = sympy.Poly(difference, symbol).clear_denoms()[1]
    except sympy.PolynomialError:  # the symbol in a denominator
        poly = sympy.Poly(sympy.numer(sympy.together(difference)), symbol)
    if poly.degree() == 1:
        c1, c0 = poly.all_coeffs()
        return (-c0 / c1,), False
    poly = poly.primitive()[1]  # the coefficients' common factor (4·B·L·d) has no root in x
    step = math.gcd(*(k for (k,), _ in poly.terms()))
    if step > 1:  # a polynomial in x^step (a ViT's FLOPs in R: (R/p)² tokens): roots for x^step
        inner = sympy.Poly.from_dict({(k // step,): c for (k,), c in poly.terms()}, symbol)
        found = []
        for y in sympy.roots(inner):  # a quartic's four roots cost 4× its quadratic's two
            x = y ** sympy.Rational(1, step)
            found += [x, -x] if step % 2 == 0 else [x]  # the real ones: what can be positive
        return tuple(found), False
    return tuple(sympy.roots(poly)), False


def _over_lowest_power(expr: sympy.Expr, x: sympy.Symbol) -> sympy.Expr:
    """``expr`` divided by the highest power of x that divides every term: its roots but
    x = 0, which is no positive root. Scores against projections, 4·B·n²·d = 8·B·n·d², is then
    linear in n (4·B·n·d − 8·B·d² = 0), its root read off the terms.

    >>> from complexo.symbols import B, d, n
    >>> _over_lowest_power(4 * B * n**2 * d - 8 * B * n * d**2, n)
    -8*B*d**2 + 4*B*d*n
    """
    if any(p.exp.is_negative for p in expr.atoms(sympy.Pow)):
        return expr
    powers = []
    for term in sympy.Add.make_args(expr):
        c, k = term.as_coeff_exponent(x)
        if not (k.is_Integer and k > 0) or c.has(x):
            return expr
        powers.append((c, k))
    low = min(k for _, k in powers)
    return sympy.Add(*(c * x ** (k - low) for c, k in powers))


def _linear(expr: sympy.Expr, x: sympy.Symbol) -> tuple[sympy.Expr, sympy.Expr] | None:
    """(c₁, c₀) with expr = c₁·x + c₀, both polynomials free of x, c₁ ≠ 0; else None (x under
    a ceiling, squared, or absent; a symbol in a denominator, whose root reads best over the
    common denominator that sympy.together finds).

    >>> from complexo.symbols import B, d, n
    >>> _linear(sympy.expand(4 * B * n * d + 2 * d**2 - n), n)
    (4*B*d - 1, 2*d**2)
    >>> _linear(n**2 + n, n) is None, _linear(d / n + 1, n) is None, _linear(n / d + 1, n) is None
    (True, True, True)
    """
    if any(p.exp.is_negative for p in expr.atoms(sympy.Pow)):
        return None
    by_power: dict[int, list] = {0: [], 1: []}
    for term in sympy.Add.make_args(expr):
        c, k = term.as_coeff_exponent(x)
        if k not in by_power or c.has(x):
            return None
        by_power[k].append(c)
    c1 = sympy.Add(*by_power[1])
    return None if c1 == 0 else (c1, sympy.Add(*by_power[0]))


class Terms:
    """Builds a :class:`CostModel` term by term; adding to an existing (kind, name) sums, so
    per-layer or per-stage contributions accumulate into one named term each."""

    def __init__(self):
        self._terms: dict[tuple[Kind, str], Term] = {}
        self._parts: dict[tuple[Kind, str], list] = {}  # summed once, in model()

    def add(self, kind: Kind, name: str, expr, *, mm=False, ops=(), note="", tags=()) -> None:
        key = (kind, name)
        if key not in self._terms:
            self._terms[key] = Term(name, kind, sympy.S.Zero, mm, ops, note, frozenset(tags))
            self._parts[key] = []
        self._parts[key].append(sympy.sympify(expr))

    def model(self) -> CostModel:
        """The terms, each summed and expanded once (a ResNet adds to one term per layer:
        summing as they come re-flattens the growing sum at every layer)."""
        terms = [
            replace(t, expr=expanded(sympy.Add(*self._parts[key])))
            for key, t in self._terms.items()
        ]
        return CostModel(t for t in terms if t.expr != 0)


def expanded(expr: sympy.Expr) -> sympy.Expr:
    """``sympy.expand(expr)`` for a sum of products of sizes: symbols, numbers, their integer
    powers, functions of products (⌈R/4⌉) and sums of such products, distributed here by hand,
    without expand's walk of every hint down every subtree (ResNet-50's terms: 41 → 17 ms);
    anything else (a power of a sum, a sum inside a ceiling) goes to sympy.expand.

    >>> from complexo.symbols import B, R, d
    >>> expanded(2 * B * (d - 1) * (R + sympy.ceiling(R / 4)) ** 1)
    2*B*R*d - 2*B*R + 2*B*d*ceiling(R/4) - 2*B*ceiling(R/4)
    """
    out = []
    for term in sympy.Add.make_args(expr):
        products = [sympy.S.One]
        for factor in sympy.Mul.make_args(term):
            if factor.is_Add:
                parts = sympy.Add.make_args(expanded(factor))
                products = [p * q for p in products for q in parts]
            elif _product_factor(factor):
                products = [p * factor for p in products]
            else:
                return sympy.expand(expr)
        out += products
    return sympy.Add(*out)


def _product_factor(x: sympy.Expr) -> bool:
    """A symbol, a number, a function with no sum in its arguments, or an integer power of one
    of those: what expand leaves as it is."""
    if x.is_Pow:
        return x.exp.is_Integer and _product_factor(x.base) and not x.base.is_Pow
    if x.is_Function:
        return not any(arg.has(sympy.Add) for arg in x.args)
    return bool(x.is_Symbol or x.is_Number)


def tidy(expr: sympy.Expr) -> sympy.Expr:
    """A compact form: the common factors pulled out over a common denominator,
    4·B·d·n·(2·d + n). Not sympy.factor: on the 65 formulas of six analyses' default configs
    both print the same, and factor took 3× as long (0.62 s against 0.19 s); on large
    multivariate expressions its factorisation (Wang's algorithm) picks random evaluation
    points, and some draws take minutes."""
    return _tidy(sympy.sympify(expr))


@functools.lru_cache(maxsize=4096)
def _tidy(expr: sympy.Expr) -> sympy.Expr:
    """:func:`tidy`, once per process for each expression (a sweep or a table asks again for
    the same formulas)."""
    return sympy.factor_terms(sympy.together(expr))


def evaluate(expr: sympy.Expr, values: Mapping) -> int:
    """An exact integer count at a config; refuses anything that is not a whole number."""
    v = at(expr, values)
    if not v.is_Integer:
        raise ValueError(f"{expr} is not a whole number at {values}: {v}")
    return int(v)


def at(expr: sympy.Expr, values: Mapping) -> sympy.Expr:
    """``expr`` at a config, exactly. Symbols are swapped for sympy numbers by ``xreplace``,
    which rebuilds the tree once (30× faster than ``subs`` on MHSA's formulas: a sweep
    evaluates every formula at every point); ``subs`` remains for what that does not reduce
    to a number (keys given as names, floats)."""
    expr = sympy.sympify(expr)
    numbers = {k: sympy.Integer(v) if isinstance(v, int) else v for k, v in values.items()}
    v = expr.xreplace(numbers)
    return v if v.is_number else expr.subs(values)


def big_o(
    expr: sympy.Expr,
    growing: Sequence[sympy.Symbol],
    bounds: Mapping[sympy.Symbol, sympy.Symbol] | None = None,
) -> sympy.Expr:
    """Leading monomials of a polynomial ``expr`` as the ``growing`` symbols grow.

    Coefficients and other symbols are constants. ``bounds`` states orderings among growing
    symbols (``{h: d}``: h ≤ d), so that B·h·n² is recognised as dominated by B·n²·d.
    """
    return _big_o(sympy.sympify(expr), tuple(growing), tuple((bounds or {}).items()))


@functools.lru_cache(maxsize=1024)
def _big_o(expr: sympy.Expr, growing: tuple, bound_items: tuple) -> sympy.Expr:
    """:func:`big_o`, once per process for each expression."""
    bounds = dict(bound_items)
    expr = expanded(expr.replace(sympy.ceiling, lambda x: x))  # ⌈R/2^k⌉ grows as R/2^k
    monomials = _monomials(expr, growing)
    if monomials is None:  # not a polynomial in the growing sizes term by term: sympy's Poly
        monomials = [m for m, c in sympy.Poly(expr, *growing).terms() if c != 0]

    def dominates(big: tuple[int, ...], small: tuple[int, ...]) -> bool:
        r = dict(zip(growing, (x - y for x, y in zip(big, small, strict=True)), strict=True))
        for s, bound in bounds.items():
            if r[s] < 0:  # s ≤ bound: a missing power of s is covered by one of bound
                r[bound] += r[s]
                r[s] = 0
        return all(x >= 0 for x in r.values())

    leading = [m for m in monomials if not any(o != m and dominates(o, m) for o in monomials)]
    leading.sort(key=lambda m: (-sum(m), [-x for x in m]))
    return sympy.Add(
        *(sympy.Mul(*(s**k for s, k in zip(growing, m, strict=True))) for m in leading),
        evaluate=False,
    )


def _monomials(expr: sympy.Expr, growing: tuple) -> list[tuple[int, ...]] | None:
    """The exponents of ``growing`` in each monomial of an expanded ``expr`` whose coefficient
    (the other symbols' part, summed over the terms sharing it) is not zero; None where a term
    is no monomial in them (a growing size in a denominator or inside a function): read off
    the terms instead of building a Poly (ResNet-50's three big-Os 40 → 15 ms)."""
    by_monomial: dict[tuple[int, ...], list] = {}
    for term in sympy.Add.make_args(expr):
        powers = term.as_powers_dict()
        key = []
        for s in growing:
            k = powers.pop(s, 0)
            if not (isinstance(k, int) or k.is_Integer) or k < 0:
                return None
            key.append(int(k))
        if any(base.has(*growing) for base in powers):
            return None
        by_monomial.setdefault(tuple(key), []).append(term)
    return [m for m, terms in by_monomial.items() if sympy.Add(*terms) != 0]


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def plain(expr: sympy.Expr, *, factor: bool = True) -> str:
    """Readable one-line text: 2·B·d²·n. Factored when that is shorter.

    >>> from complexo.symbols import C_out, k
    >>> plain(1 / C_out + 1 / k**3, factor=False)
    '1/C_out + k⁻³'
    """
    return _plain(sympy.sympify(expr), factor)


@functools.lru_cache(maxsize=4096)
def _plain(expr: sympy.Expr, factor: bool) -> str:
    if factor:
        f = tidy(expr)
        if len(sympy.sstr(f)) < len(sympy.sstr(expr)):
            expr = f
    text = sympy.sstr(expr, order="grlex")
    # sympy writes k**2 and k**(-3): both as superscripts, k² and k⁻³
    power = r"\*\*(?:(\d+)|\((-\d+)\))"
    text = re.sub(power, lambda m: (m.group(1) or m.group(2)).translate(_SUPERSCRIPT), text)
    return text.replace("*", "·")


def big_o_text(expr: sympy.Expr) -> str:
    parts = [plain(t, factor=False) for t in sympy.Add.make_args(expr)]
    return "O(" + " + ".join(parts) + ")"


def latex(expr: sympy.Expr) -> str:
    return sympy.latex(expr)
