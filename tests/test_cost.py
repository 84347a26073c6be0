"""The generic cost model: totals, exact evaluation, big-O, crossovers, text forms."""

from fractions import Fraction

import pytest
import sympy

from complexo.cost import CostModel, Kind, Term, big_o, big_o_text, evaluate, plain
from complexo.symbols import B, d, h, n


def toy() -> CostModel:
    return CostModel(
        [
            Term("proj", Kind.FORWARD, 8 * B * n * d**2, matmul=True),
            Term("scores", Kind.FORWARD, 4 * B * n**2 * d, matmul=True),
            Term("softmax", Kind.FORWARD, 5 * B * h * n**2),
        ]
    )


def test_totals_split_matmul_from_elementwise():
    m = toy()
    assert m.total(Kind.FORWARD, matmul_only=True) == 8 * B * n * d**2 + 4 * B * n**2 * d
    assert m.total(Kind.FORWARD) - m.total(Kind.FORWARD, matmul_only=True) == 5 * B * h * n**2
    assert m.total(Kind.BACKWARD) == 0


def test_evaluate_is_exact_and_refuses_fractions():
    # 8·1·4096·1024² = 34359738368: past float's exact range for the sum below, so use ints
    values = {B: 1, n: 4096, d: 1024, h: 16}
    assert evaluate(toy().total(Kind.FORWARD), values) == 34359738368 + 68719476736 + 1342177280
    with pytest.raises(ValueError, match="not a whole number"):
        evaluate(d / h, {d: 10, h: 4})


def test_duplicate_term_names_are_refused():
    with pytest.raises(ValueError, match="duplicate"):
        CostModel([Term("a", Kind.FORWARD, n), Term("a", Kind.FORWARD, d)])


def test_big_o_drops_dominated_monomials_using_bounds():
    expr = toy().total(Kind.FORWARD) + 4 * B * n * d  # a bias-like B·n·d term
    # without h ≤ d, B·h·n² is not dominated by B·n²·d
    assert big_o(expr, (B, n, d, h)) == B * n * d**2 + B * n**2 * d + B * h * n**2
    assert big_o(expr, (B, n, d, h), {h: d}) == B * n * d**2 + B * n**2 * d
    assert big_o_text(big_o(expr, (n,))) == "O(n²)"


def test_crossover_is_solved_symbolically():
    c = toy().crossover(["scores"], ["proj"], n, values={B: 1, n: 1, d: 1024, h: 16})
    assert c.expr == 2 * d  # 4·B·n²·d = 8·B·n·d²  <=>  n = 2·d
    assert c.value == Fraction(2048)
    c = toy().crossover(["scores", "softmax"], ["proj"], n, values={B: 1, d: 1024, h: 16})
    assert sympy.simplify(c.expr - 8 * d**2 / (4 * d + 5 * h)) == 0


def test_a_crossover_with_a_root_at_zero_reads_the_other_off_its_terms():
    """x·(c₁·x + c₀) = 0: the root x = 0 is no positive size, the other is −c₀/c₁, and its
    form is the one sympy.roots' root of the quadratic takes once tidied."""
    from complexo.cost import _roots, crossover
    from complexo.symbols import S, T, w_h, w_t, w_w

    x = n
    # (S − 1)·n² = (S + 2·d)·n  <=>  n = (S + 2·d)/(S − 1), the sign kept out of the numerator
    c = crossover((S - 1) * x**2, (S + 2 * d) * x, x, values={S: 3, d: 5})
    assert str(c.expr) == "(S + 2*d)/(S - 1)" and c.value == Fraction(3 + 10, 3 - 1)
    # 2·n² = (w_t·w_h·w_w − S − T)·n  <=>  n = (w_t·w_h·w_w − S − T)/2, over one denominator
    window = w_t * w_h * w_w
    c = crossover(2 * x**2, (window - S - T) * x, x, values={S: 1, T: 1, w_t: 2, w_h: 2, w_w: 2})
    assert str(c.expr) == "(-S - T + w_h*w_t*w_w)/2" and c.value == Fraction(8 - 1 - 1, 2)
    # the same roots as sympy's, but for 0: a cubic's n²·(4·B·d·n − 8·B·d²) = 0
    roots, _ = _roots(4 * B * d * n**3, 8 * B * d**2 * n**2, n)
    assert set(roots) == set(sympy.roots(4 * B * d * n**3 - 8 * B * d**2 * n**2, n)) - {0}


def test_dominant_term_and_share():
    term, value, share = toy().dominant(Kind.FORWARD, {B: 1, n: 4096, d: 1024, h: 16})
    assert term.name == "scores" and value == 68719476736
    assert share == Fraction(68719476736, 34359738368 + 68719476736 + 1342177280)


def test_plain_text_uses_middle_dots_and_superscripts():
    assert plain(2 * B * n * d**2, factor=False) == "2·B·d²·n"


def test_human_units():
    from complexo.units import human

    assert human(105_226_698_752, "flop") == "105 GFLOP"
    assert human(16_777_216, "byte") == "16.0 MiB"
    assert human(1_159_725_056, "byte") == "1.08 GiB"
    assert human(4_198_400, "param") == "4.20 M"
    assert human(512, "byte") == "512 B" and human(7, "param") == "7"
    assert human(None, "flop") == "—"
