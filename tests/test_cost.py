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
