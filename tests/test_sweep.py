"""Sweeps and figures: a sweep's numbers are the point-by-point analyses'; the figures draw what
the tables say (their data is returned, not scraped from pixels); the exponent fit recovers a
known power; files are written, deterministic, and refused in formats we do not write."""

import json

import numpy as np
import pytest
from helpers import assert_one_line_error, runner

from complexo import plot as plots
from complexo import sweep as sweeps
from complexo.analyses import compare, lora, mhsa
from complexo.cli import app
from complexo.counting import unchecked
from complexo.errors import ComplexoError

SMALL = {"dim": 32, "heads": 4}


def small_sweep(check_all=True):
    vary = sweeps.parse_vary("seq=32..256", points=None, step=None, log2=True)
    return sweeps.run(mhsa, SMALL, [vary], check_all=check_all)


def test_a_sweep_counts_at_degree_plus_one_points_and_evaluates_the_rest():
    # every MHSA term is a polynomial of degree ≤ 2 in n: 3 points (the ends among them) check
    # it everywhere; the 4 points 32, 64, 128, 256 are counted at indices round(k·3/2) = 0, 2, 3
    sweep = small_sweep(check_all=False)
    assert sweep.counted == [0, 2, 3] and "degree at most 2 in n" in sweep.why
    full = small_sweep()
    for i, (point, checked) in enumerate(zip(sweep.points, full.points, strict=True)):
        pairs = zip(point.result.quantities, checked.result.quantities, strict=True)
        for q, c in pairs:
            assert q.value == c.value
            assert q.measured == (
                c.measured if i in sweep.counted else {k: None for k in c.measured}
            )
    assert [p["seq"] for p in sweep.to_json()["counted"]] == [32, 128, 256]


def test_sweep_points_are_the_point_by_point_analyses():
    sweep = small_sweep()
    assert [p.config["seq"] for p in sweep.points] == [32, 64, 128, 256]
    for point in sweep.points:
        alone = mhsa.analyse(mhsa.Config(seq=point.config["seq"], **SMALL))
        assert [(q.name, q.value, q.measured) for q in point.result.quantities] == [
            (q.name, q.value, q.measured) for q in alone.quantities
        ]


def test_sweep_knows_each_terms_slope_in_the_swept_symbol():
    exps = small_sweep().exponents()
    assert exps["q_proj"] == 1 and exps["scores"] == 2 and exps["softmax"] == 2


def test_a_grid_of_two_options():
    vary = [
        sweeps.parse_vary("seq=16..32", points=2, step=None, log2=False),
        sweeps.parse_vary("dim=8..16", points=None, step=8, log2=False),
    ]
    grid = sweeps.run(mhsa, {"heads": 2}, vary)
    assert [tuple(p.config.values()) for p in grid.points] == [(16, 8), (16, 16), (32, 8), (32, 16)]


@pytest.mark.parametrize(
    ("text", "kw", "message"),
    [
        ("seq=100", {}, "NAME=START..STOP"),
        ("seq=0..8", {}, "0 < START"),
        ("seq=1..8", {"log2": True, "points": 3}, "one of --points, --step, --log2"),
        ("seq=1..1000", {"step": 1}, "at most 64"),
    ],
)
def test_bad_vary(text, kw, message):
    with pytest.raises(ComplexoError, match=message):
        sweeps.parse_vary(text, **{"points": None, "step": None, "log2": False, **kw})


@pytest.mark.parametrize("exponent", [1.0, 2.0, 4.0, 0.5])
def test_fit_recovers_a_known_exponent(exponent):
    rng = np.random.default_rng(0)
    xs = 2.0 ** np.arange(4, 14)
    ys = 3.0 * xs**exponent * rng.uniform(0.97, 1.03, xs.size)  # ±3% noise
    assert sweeps.fit_exponent(xs, ys) == pytest.approx(exponent, abs=0.02)


def test_sweep_figure_draws_the_table(tmp_path):
    sweep = small_sweep()
    fig, (ax,) = plots.figure()
    drawn = plots.draw_sweep(ax, sweep)
    xs, total = drawn["forward_flops (formula)"]
    assert xs == [32, 64, 128, 256] and total == sweep.series("forward_flops")
    label = next(k for k in drawn if k.startswith("torch count of forward_matmul_flops"))
    assert drawn[label][1] == [
        p.result.quantity("forward_matmul_flops").measured["torch"] for p in sweep.points
    ]
    # Q·Kᵀ and A·V are each 2·B·d·n²: one line, both named; the four projections 2·B·d²·n
    assert drawn["scores, attn_v ∝ n²"][1] == sweep.term_series(mhsa.Kind.FORWARD, "scores")
    assert drawn["q_proj, k_proj, v_proj, out_proj ∝ n"][1] == [
        2 * 32 * 32 * n for n in (32, 64, 128, 256)
    ]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "forward FLOPs, total (formula)" in labels
    # the crossover n = 2·d = 64 (inside 32..256) said in the legend, not written over the data
    assert "n = 2·d: attention matmuls overtake the projections" in labels
    title = (
        "Multi-head self-attention: forward FLOPs against sequence length n\ndim = 32, heads = 4"
    )
    assert ax.get_title() == title
    # SI-scaled ticks (1 MFLOP, not 10⁶) and plain sides (1024, not 2¹⁰)
    assert ax.yaxis.get_major_formatter()(1e6, 0) == "1 MFLOP"
    assert ax.xaxis.get_major_formatter()(1024, 0) == "1024"
    path = tmp_path / "sweep.png"
    plots.save(fig, str(path), plots.footer())
    assert path.stat().st_size > 10_000


def test_compare_and_lora_figures_draw_their_results(tmp_path):
    with unchecked():  # the figures draw formula values: no counter runs
        cmp = compare.analyse(compare.Config("resnet18", "vit-ti16", (64, 128)))
    fig, (left, right) = plots.figure(2)
    drawn = compare.draw([left, right], cmp)
    assert drawn["vit-ti16 forward_flops analysed"] == (
        [64, 128],
        [m["vit-ti16"].quantity("forward_flops").value for _, m in cmp.results],
    )
    grid, ys = drawn["resnet18 activation_bytes"]
    assert (
        64 in grid
        and ys[grid.index(64)] == cmp.results[0][1]["resnet18"].quantity("activation_bytes").value
    )
    plots.save(fig, str(tmp_path / "compare.svg"), plots.footer())
    with unchecked():
        result = lora.analyse(lora.Config(in_features=64, out_features=32, rank=4, seq=8))
    fig, (left, right) = plots.figure(2)
    drawn = lora.draw([left, right], result)
    assert drawn["optimizer_bytes"][1] == [
        result.sides[s].quantity("optimizer_bytes").value for s in ("full", "lora")
    ]
    assert drawn["trainable_params"][1] == [row["trainable_params"] for row in result.sweep]
    plots.save(fig, str(tmp_path / "lora.png"), plots.footer())
    assert all(p.stat().st_size > 5_000 for p in tmp_path.iterdir())


def test_svg_figures_are_byte_for_byte_reproducible(tmp_path):
    sweep = small_sweep()
    for name in ("a.svg", "b.svg"):
        fig, (ax,) = plots.figure()
        plots.draw_sweep(ax, sweep)
        plots.save(fig, str(tmp_path / name), plots.footer())
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()


def test_sweep_command_json_csv_and_plot(tmp_path):
    args = ["sweep", "mhsa", "--vary", "seq=32..128", "--log2", "--dim", "32", "--heads", "4"]
    result = runner.invoke(app, [*args, "--json", "--plot", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["of"] == "mhsa" and doc["vary"] == {"seq": [32, 64, 128]}
    assert doc["fixed"] == {"dim": 32, "heads": 4} and doc["symbol"] == "n"
    assert [p["config"]["seq"] for p in doc["points"]] == [32, 64, 128]
    assert (tmp_path / "s.png").stat().st_size > 10_000
    csv = runner.invoke(app, [*args, "--csv", "--causal", "--no-bias"])
    assert csv.exit_code == 0, csv.output
    header, *rows = csv.stdout.strip().splitlines()
    assert header.startswith("seq,forward_flops,forward_flops_fvcore,forward_flops_torch")
    assert [r.split(",")[0] for r in rows] == ["32", "64", "128"]
    table = runner.invoke(app, args)
    assert table.exit_code == 0 and "scores ∝ n^2" in table.stdout  # the table's slopes


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["sweep", "lora", "--vary", "rank=1..8"],
            "takes analyses with one result; lora compares sides",
        ),
        (["sweep", "mhsa", "--vary", "seq=8"], "NAME=START..STOP"),
        (["sweep", "mhsa", "--vary", "size=8..16"], "mhsa has no such option"),
        (["sweep", "mhsa", "--vary", "seq=8..16", "--foo", "3"], "No such option: --foo"),
        (["sweep", "mhsa", "--vary", "seq=8..16", "--dim", "x"], "Invalid value for '--dim'"),
        (["sweep", "mhsa", "--vary", "seq=8..16", "--seq", "8"], "both fixed and varied"),
        (["sweep", "mhsa", "--vary", "seq=8..16", "--plot", "a.jpg"], "--plot writes .png or .svg"),
        (["sweep", "mhsa", "--vary", "seq=8..16", "--quantity", "flops"], "unknown --quantity"),
        (["sweep", "vit", "--vary", "res=200..300", "--points", "2"], "not divisible"),
    ],
)
def test_sweep_bad_input_is_one_line(args, message):
    result = runner.invoke(app, args)
    assert_one_line_error(result, message)


def test_variants_draw_one_line_each_and_agree_with_their_own_sweeps(tmp_path):
    vary = [sweeps.parse_vary("seq=32..128", points=None, step=None, log2=True)]
    lines = sweeps.run_variants(
        mhsa, SMALL, vary, ["", "--causal", "--window 8"], "useful_score_flops"
    )
    assert list(lines.sweeps) == ["(no extra options)", "--causal", "--window 8"]
    fig, (ax,) = plots.figure()
    drawn = plots.draw_variants(ax, lines)
    for label, sweep in lines.sweeps.items():
        assert drawn[label] == ([32, 64, 128], sweep.series("useful_score_flops"))
    plots.save(fig, str(tmp_path / "variants.svg"), plots.footer())
    # all pairs n², causal n(n+1)/2, window 8: 8n − 28; scores and A·V 4·d per pair
    assert drawn["--window 8"][1] == [4 * 32 * (8 * x - 28) for x in (32, 64, 128)]
    assert drawn["--causal"][1] == [4 * 32 * x * (x + 1) // 2 for x in (32, 64, 128)]
    header, *rows = lines.to_csv().strip().splitlines()
    assert header == (
        "seq,useful_score_flops [(no extra options)],useful_score_flops [--causal],"
        "useful_score_flops [--window 8]"
    )
    assert len(rows) == 3 and lines.to_json()["quantity"] == "useful_score_flops"


def test_variant_command_and_its_errors(tmp_path):
    args = [
        "sweep",
        "mhsa",
        "--vary",
        "seq=32..64",
        "--log2",
        "--dim",
        "32",
        "--heads",
        "4",
        "--quantity",
        "kv_bytes",
        "--variant",
        "",
        "--variant",
        "--kv-heads 1",
    ]
    result = runner.invoke(app, [*args, "--plot", str(tmp_path / "v.png")])
    assert result.exit_code == 0, result.output
    assert "--kv-heads 1" in result.stdout and (tmp_path / "v.png").stat().st_size > 10_000
    clash = runner.invoke(app, [*args[:-2], "--variant", "--heads 2"])
    assert clash.exit_code != 0 and "also fixed" in clash.stderr


def test_profiled_sweep_draws_measured_time_beside_the_formula(tmp_path):
    sweep = small_sweep()
    sweeps.profile_points(sweep, device="cpu", repeat=2)
    measured, _ = sweep.times()
    assert len(measured) == 4 and all(t > 0 for t in measured)
    fig, (left, right) = plots.figure(2)
    plots.draw_sweep(left, sweep)
    drawn = plots.draw_times(right, sweep)
    assert drawn["measured"] == ([32, 64, 128, 256], measured)
    plots.save(fig, str(tmp_path / "timed.png"), plots.footer())
    assert (tmp_path / "timed.png").stat().st_size > 10_000
    doc = sweep.to_json()
    assert [p["profile"]["median_s"] for p in doc["points"]] == measured


def test_profiled_kvcache_sweep_times_one_decoded_token_per_context():
    from complexo.analyses import kvcache

    model = {"arch": "llama", "layers": 1, "dim": 32, "heads": 4, "vocab": 50, "ctx": 256}
    vary = [sweeps.parse_vary("context=16..64", points=None, step=None, log2=True)]
    sweep = sweeps.run(kvcache, model, vary)
    sweeps.profile_points(sweep, device="cpu", repeat=2)
    measured, _ = sweep.times()
    assert len(measured) == 3 and all(t > 0 for t in measured)
    decode = sweep.series("decode_flops_per_token")
    assert [p.profile.flops for p in sweep.points] == decode
    with pytest.raises(ComplexoError, match="--profile times mhsa, cnn, vit, kvcache"):
        sweep.analysis = "lora"
        sweeps.profile_points(sweep, device="cpu")


def test_figures_leave_the_users_backend_and_style_alone(tmp_path):
    # a notebook's inline backend and its rcParams must survive complexo drawing and saving:
    # figure() is outside pyplot, and complexo's style is a local rc context
    import sys

    import matplotlib

    def pyplots_figures() -> list[int]:  # what other tests in this process left there aside
        pyplot = sys.modules.get("matplotlib.pyplot")
        return pyplot.get_fignums() if pyplot is not None else []

    before_backend, before_figures = matplotlib.get_backend(), pyplots_figures()
    sweep = small_sweep(check_all=False)
    with matplotlib.rc_context({"font.size": 13.0, "svg.hashsalt": None}):
        for name in ("a.svg", "b.svg"):
            fig, (ax,) = plots.figure()
            with plots.style():
                plots.draw_sweep(ax, sweep)
            plots.save(fig, str(tmp_path / name), plots.footer())
        assert matplotlib.rcParams["font.size"] == 13.0
        assert matplotlib.rcParams["svg.hashsalt"] is None
    assert matplotlib.get_backend() == before_backend
    # saved in complexo's style all the same: its fixed hash salt makes the two files equal
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()
    assert pyplots_figures() == before_figures  # complexo registered nothing with pyplot


def test_a_sweep_whose_config_zeroes_a_term_still_picks_its_points():
    # causal SDPA keeps no attention matrix: a term that is 0 (sympy's degree of 0 is -oo, which
    # ended `sweep --variant "--causal --impl sdpa"` in a traceback); it takes no part in the
    # degree, and the causal terms (not polynomials in n) have every point counted
    vary = sweeps.parse_vary("seq=32..256", points=None, step=None, log2=True)
    sweep = sweeps.run(mhsa, {**SMALL, "causal": True, "impl": "sdpa"}, [vary])
    assert any(t.expr == 0 for t in sweep.points[0].result.model.terms(tuple(mhsa.Kind))), (
        "no zero term: this test no longer covers it"
    )
    assert sweep.counted == [0, 1, 2, 3] and "not a polynomial in n" in sweep.why
