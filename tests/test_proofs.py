"""Every hand-written formula that the counters measure, proved for all shapes: for each
registered analysis with a ``symbolic`` declaration and each of its variants, the reference
block traced with symbolic sizes and ``sympy.simplify(hand − traced) == 0`` per quantity
(:mod:`complexo.prove`). What the output claims is what these tests run."""

from __future__ import annotations

import pytest
import sympy

from complexo.analyses import ANALYSES
from complexo.prove import PROVED, prove
from complexo.symbols import B, d, e, h, n

CASES = [
    pytest.param(
        a.name,
        variant,
        id=f"{a.name}[{variant}]",
        marks=[pytest.mark.slow] if variant in a.symbolic.slow else [],
    )
    for a in ANALYSES.values()
    if a.symbolic is not None
    for variant in a.symbolic.variants
]


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_every_hand_formula_equals_the_trace(name, variant):
    a = ANALYSES[name]
    cfg = a.make(**a.symbolic.variants[variant])
    assert a.symbolic.variant(cfg) == variant  # the config is of the variant it is listed as
    report = prove(a, cfg)
    assert report.checks, "a proof that checks nothing"
    assert report.proved, "\n".join(report.lines())
    # the sizes it holds for, as the output claims them: the trace's own guards
    assert report.where == a.symbolic.where.get(variant, ""), report.where
    # every quantity of the analysis is proved here or said why not (in this variant or all)
    cases = a.symbolic.cases(cfg)
    said = {q for case in cases for q in case.traced} | set(a.symbolic.untraced)
    assert {c.quantity for c in report.checks} <= said


def test_a_wrong_formula_is_named_by_its_differing_terms():
    """A hand formula with the scores' 2·B·n²·d forgotten (passed in, the source untouched):
    the proof fails and says hand − traced = −2·B·d·n², and the exact FLOPs it traced."""
    a = ANALYSES["mhsa"]
    cfg = a.make(impl="sdpa")
    # the forward's matmuls, hand-written: 4 projections 2·B·n·d² each = 8·B·n·d²,
    # scores 2·B·n²·d and A·V 2·B·n²·d; the wrong one leaves out the scores
    wrong = 8 * B * n * d**2 + 2 * B * n**2 * d
    report = prove(a, cfg, hand={"": {"forward_matmul_flops": wrong}})
    assert not report.proved
    check = next(c for c in report.checks if c.quantity == "forward_matmul_flops")
    assert check.difference == -2 * B * d * n**2
    assert sympy.expand(check.traced - (8 * B * n * d**2 + 4 * B * n**2 * d)) == 0
    text = "\n".join(report.lines())
    assert "forward_matmul_flops: NOT PROVED: hand − traced = -2*B*d*n**2" in text
    # the others still proved: e.g. activations, 5 (B, n, d) tensors and fp32 log-sum-exp
    # 4·B·h·n bytes (x, q, k, v, the attention output before out_proj)
    saved = next(c for c in report.checks if c.quantity == "activation_bytes")
    assert saved.proved and sympy.expand(saved.traced - (5 * B * n * d * e + 4 * B * h * n)) == 0


def test_the_output_claims_only_what_the_suite_proves():
    a = ANALYSES["mhsa"]
    from complexo.counting import unchecked

    with unchecked():
        proved = a.analyse(a.make(impl="naive", causal=True, seq=64, dim=32, heads=4))
        # a variant the suite does not list: no claim (--prove proves it live)
        other = a.analyse(a.make(impl="flash", causal=True, kv_heads=2, seq=64, dim=32, heads=4))
    marked = {q.name for q in proved.quantities if q.proof}
    # all six FLOP, parameter and byte quantities the counters measure (the naive causal
    # variant's element-wise work by complexo's conventions)
    assert marked == {
        "forward_flops",
        "forward_matmul_flops",
        "backward_flops",
        "backward_matmul_flops",
        "params",
        "activation_bytes",
    }
    assert all(q.proof.startswith(PROVED) for q in proved.quantities if q.proof)
    assert any(PROVED in note for note in proved.notes)
    assert not any(q.proof for q in other.quantities)
    assert not any(PROVED in note for note in other.notes)
    assert proved.to_json()["quantities"]["params"]["proof"].startswith(PROVED)


def test_an_unfold_proof_claims_its_own_kernel_and_stride_only():
    """im2col takes k and s as int[2]: the suite's unfold proofs hold at k = 3 (s = 1, 2), for
    every B, C_in, C_out and R; a config at another k is not claimed (--prove proves it live)."""
    from complexo.counting import unchecked

    a = ANALYSES["conv"]
    with unchecked():
        three = a.analyse(a.make(impl="unfold", stride=2, cin=4, cout=6, res=9))
        five = a.analyse(a.make(impl="unfold", kernel=5, cin=4, cout=6, res=9))
    marked = {q.name for q in three.sides["standard"].quantities if q.proof}
    assert "unfolded_bytes" in marked and "forward_flops" in marked
    assert not any(q.proof for side in five.sides.values() for q in side.quantities)
    report = prove(a, a.make(impl="unfold", kernel=5, stride=3))
    assert report.proved and report.variant == "2d unfold k=5 s=3"
    cols = next(c for c in report.checks if c.quantity == "unfolded_bytes")
    # the (B, C_in·k², ⌈R/s⌉²) columns, e bytes each: B·C_in·25·⌈R/3⌉²·e
    C_in, R = (sympy.Symbol(x, integer=True, positive=True) for x in ("C_in", "R"))
    expected = B * C_in * 25 * sympy.ceiling(R / 3) ** 2 * e
    assert sympy.simplify(cols.traced - expected) == 0, cols.traced


def test_floors_sympy_cannot_cancel_are_proved_by_residues():
    from complexo.prove import difference
    from complexo.symbols import R

    # ⌊R/2⌋ + ⌈R/2⌉ = R for every integer R: simplify leaves it, R = 2·k + j settles it
    diff, method = difference(sympy.floor(R / 2) + sympy.ceiling(R / 2), R, (R, 2))
    assert diff == 0 and method.startswith("R = 2·k + j")
    # 2·⌊R/2⌋ = R for even R only: the odd residue is named, with its difference −1
    diff, _ = difference(2 * sympy.floor(R / 2), R, (R, 2))
    assert diff == sympy.Tuple(sympy.Eq(sympy.Symbol("[R=2k+1]"), -1))


def test_prove_on_the_command_line():
    """--prove runs the proof for the config given and puts it in the output; a variant with no
    symbolic trace is refused in one line before anything runs."""
    import json

    from helpers import assert_one_line_error, runner

    from complexo.cli import app

    args = ["conv", "--cin", "4", "--cout", "6", "--res", "9", "--stride", "2", "--no-check"]
    result = runner.invoke(app, [*args, "--prove", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["proof"]["proved"] and doc["proof"]["variant"] == "2d"
    # each side's six quantities, e.g. the standard side's forward: 2·B·C_in·C_out·k²·⌈R/s⌉²
    # (the bias add beside it, 1 per output element: B·C_out·⌈R/s⌉²)
    fwd = doc["proof"]["quantities"]["standard.forward_matmul_flops"]
    assert fwd["traced"] == "2*B*C_in*C_out*k**2*ceiling(R/s)**2" and fwd["difference"] == "0"
    assert len(doc["proof"]["quantities"]) == 12
    assert doc["standard"]["quantities"]["params"]["proof"] == f"{PROVED} (--prove)"
    text = runner.invoke(app, [*args, "--prove"])
    assert "standard: forward_flops: proved for all shapes (simplify)" in text.output
    refused = runner.invoke(app, ["video", "--compare", "--prove"])
    assert_one_line_error(refused, "no proof of video's compare variant: --compare sets three")


def test_residue_classes_cover_every_size_and_read_each_class():
    from complexo.residues import Residues, covers
    from complexo.symbols import S, T

    res = Residues(((T, 2, "q"), (sympy.sqrt(S), 7, "c")))
    q, c = res.quotient("q"), res.quotient("c")
    assert len(res.classes()) == 2 * 7 and res.classes()[0] == (0, 0)
    # every T ≥ 1 is 2·q − r for exactly one r < 2 and q ≥ 1: the classes cover every size
    for x in range(1, 20):
        assert sum((x + r) % 2 == 0 for r in range(2)) == 1
    # in T = 2·q − 1, √S = 7·c − 3: ⌈T/2⌉ = q, ⌈√S/7⌉ = c, (−T) mod 2 = 1, S = (7·c − 3)²
    assert res.substitute(sympy.ceiling(T / 2) * sympy.ceiling(sympy.sqrt(S) / 7), (1, 3)) == q * c
    assert res.substitute(sympy.Mod(-T, 2), (1, 3)) == 1
    assert sympy.expand(res.substitute(S, (1, 3)) - (7 * c - 3) ** 2) == 0
    assert res.label((1, 3)) == "T = 2·q − 1, √S = 7·c − 3"
    # a trace that branched on T padding (its guard: T mod 2 ≠ 0) covers the odd T only; a
    # guard k ≥ 1 settles (⌈√S/7⌉ ≥ 1) is dropped, one it does not (√S ≥ 7) is left, in √S
    guards = [sympy.Ne(sympy.Mod(T, 2), 0), sympy.ceiling(sympy.sqrt(S) / 7) >= 1]
    guards.append(sympy.floor(sympy.sqrt(S) / 7 + sympy.Mod(-sympy.sqrt(S), 7) / 7) * 7 >= 7)
    assert covers(res, guards, (0, 3)) == (False, [guards[0]])
    ok, left = covers(res, [*guards, sympy.sqrt(S) >= 7], (1, 3))
    assert ok and [sympy.simplify(g) for g in left] == [sympy.sqrt(S) >= 7]


def test_padded_window_traces_branch_every_way_the_block_can():
    """One trace per way WindowAttention branches (which axes pad), at hints that branch that
    way with at least 3 windows an axis; none for a way no size takes."""
    a = ANALYSES["video"]
    cases = a.symbolic.cases(a.make(attn="window", window="2,7,7", frames=3))
    hints = [{dim.name: dim.hint for dim in case.dims} for case in cases]
    # 2 ways for T (pads or not) × 2 for the square side (rows and columns pad together)
    assert sorted((x["T"] % 2 != 0, x["g"] % 7 != 0) for x in hints) == sorted(
        (pt, ps) for pt in (False, True) for ps in (False, True)
    )
    assert all(x["T"] >= 5 and x["g"] >= 15 for x in hints)  # ≥ 3 windows: 2·2 + 1, 2·7 + 1
    assert all(
        case.classes.describe() == "T = 2·q − r (r < 2), √S = 7·c − r (r < 7)" for case in cases
    )
    # 2×4×2: the side pads rows alone (6), both (5), neither (8), never columns alone (4 | g
    # makes 2 | g): 3 ways × 2 for T
    skewed = a.symbolic.cases(a.make(attn="window", window="2,4,2", frames=3))
    assert len(skewed) == 6
    assert skewed[0].classes.describe() == "T = 2·q − r (r < 2), √S = 4·c − r (r < 4)"


@pytest.mark.slow
def test_a_floor_for_the_window_count_fails_the_padded_proof():
    """Windows that pad (2×7×7 over 3 frames): the forward's matmuls written with ⌊·⌋ for the
    window count fail in every class that pads, and hold in the one that does not; the rest of
    the proof still holds."""
    from complexo.symbols import S, T

    a = ANALYSES["video"]
    cfg = a.make(attn="window", window="2,7,7", frames=3)
    # per window n = N = 2·7·7 = 98 tokens, b = B·nW sequences: projections 8·b·n·d² =
    # 784·B·nW·d², scores and A·V 4·b·n²·d = 38416·B·nW·d; nW written ⌊T/2⌋·⌊√S/7⌋² (wrong)
    windows = sympy.floor(T / 2) * sympy.floor(sympy.sqrt(S) / 7) ** 2
    wrong = (784 * B * d**2 + 38416 * B * d) * windows
    report = prove(a, cfg, hand={"": {"forward_matmul_flops": wrong}})
    assert not report.proved
    fwd = next(c for c in report.checks if c.quantity == "forward_matmul_flops")
    failed = {str(eq.lhs): eq.rhs for eq in fwd.difference}
    assert len(failed) == 13 and "[T = 2·q, √S = 7·c]" not in failed  # 14 classes, 1 tiles
    # T = 2·q − 1, √S = 7·c: ⌊T/2⌋ = q − 1 where the trace has q windows along T, so hand −
    # traced = −(784·B·d² + 38416·B·d)·c²
    c = sympy.Symbol("c", integer=True, positive=True)
    gap = failed["[T = 2·q − 1, √S = 7·c]"]
    assert sympy.expand(gap + (784 * B * d**2 + 38416 * B * d) * c**2) == 0
    assert all(ch.proved for ch in report.checks if ch.quantity != "forward_matmul_flops")
    assert report.where == "B*S*T*d >= 2, h > 1, sqrt(S) >= 7"
