"""The report mechanism: pages and figure data written, and --check catching any drift; and the
committed pages under analyses/ checked against what complexo generates now, one test per page
(so that the test processes share the pages out)."""

import pytest

from complexo import plot as plots
from complexo import report
from complexo.report.measured import _measured_section
from complexo.report.topics.cnn_vs_vit import _image_ratios
from complexo.report.topics.lora import _lora_phases
from complexo.report.topics.mhsa import _impl_timings, _kvcache_timings
from complexo.units import duration


def tiny_page():
    page = report.Page("tiny", "Tiny")
    page.add("# Tiny", "", "2·B·d²·n")
    fig, (ax,) = plots.figure()
    ax.plot([1, 2], [3, 4])
    page.figure("tiny", fig, {"line": ([1, 2], [3, 4])}, "a line", "")
    return page


def test_generate_then_check_then_drift(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "TOPICS", {"tiny": tiny_page})
    monkeypatch.setattr(report, "_index", lambda: "# index\n")
    written = report.generate(["tiny"], tmp_path)
    assert {p.name for p in written} == {"tiny.svg", "tiny.json", "tiny.md", "README.md"}
    assert "![a line](figures/tiny.svg)" in (tmp_path / "tiny.md").read_text()
    assert report.check(["tiny"], tmp_path) == []
    (tmp_path / "tiny.md").write_text("# Tiny, edited by hand\n")
    (tmp_path / "figures" / "tiny.json").write_text('{"line": [[1, 2], [3, 5]]}\n')
    assert report.check(["tiny"], tmp_path) == [
        str(tmp_path / "tiny.md"),
        str(tmp_path / "figures" / "tiny.json"),
    ]


def test_measured_section_shows_the_recorded_profiles_by_device(tmp_path, monkeypatch):
    """A real CPU profile of both LoRA sides, and the same relabelled as a CUDA run (none can be
    made here), is what the page's tables read: one row per side, with its own numbers."""
    import json

    from complexo.analyses.lora import Config
    from complexo.analyses.lora_profile import profile_lora

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMPLEXO_HOME", str(tmp_path))  # profiles/ here
    cfg = Config(in_features=16, out_features=8, rank=2, seq=4, precision="fp32")
    prof = profile_lora(cfg, device="cpu", warmup=0, repeat=1)
    for path in prof.save():
        doc = json.loads(path.read_text())
        gpu = path.with_name(f"gpu-{path.name}")
        gpu.write_text(json.dumps(doc | {"device": "cuda", "memory_peak": 12345}))
    page = report.Page("lora", "LoRA")
    _measured_section(page, "lora")
    gpu, cpu = page.text.split("### On a CPU")
    for text, memory in ((gpu, "12.1 KiB"), (cpu, "—")):
        rows = [line for line in text.splitlines() if line.startswith("| ") and "side=" in line]
        assert len(rows) == 2 and {"side=full" in r for r in rows} == {True, False}
        assert all(f"| {memory} |" in r for r in rows), rows
        full = next(r for r in rows if "side=full" in r)
        assert f"| {duration(prof.sides['full'].median)} |" in full, full
    page = report.Page("lora", "LoRA")  # one pair per device: the GPU's first
    _lora_phases(page)
    full, lora = prof.sides["full"], prof.sides["lora"]
    took = f"the LoRA step took {lora.median / full.median:.0%} of the full step's time"
    assert page.text.count(took) == 2 and page.text.index("(cuda)") < page.text.index("(cpu)")
    backward = full.by_term["backward"], lora.by_term["backward"]
    share = f"{backward[1]['measured_s'] / backward[0]['measured_s']:.0%}"
    assert any(r.startswith("| backward |") and f"| {share} |" in r for r in page.text.splitlines())
    page = report.Page("mhsa", "MHSA")
    _measured_section(page, "mhsa")
    assert "No GPU profile" in page.text and "complexo profile mhsa" in page.text
    assert "### On a CPU" not in page.text


def test_naive_against_sdpa_timings_come_from_the_recorded_profiles(tmp_path, monkeypatch):
    """Four real CPU profiles (two lengths, both implementations): the figure draws their
    medians and floors, and the sentence's speed-up is their ratio."""
    from complexo import profile as profiling
    from complexo.analyses.mhsa import Config
    from complexo.analyses.mhsa_profile import profile_mhsa

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMPLEXO_HOME", str(tmp_path))  # profiles/ here
    profiling.calibrate("cpu", size=128)
    medians = {}
    for impl in ("naive", "sdpa"):
        for seq in (32, 64):
            cfg = Config(batch=1, seq=seq, dim=32, heads=4, impl=impl)
            prof = profile_mhsa(cfg, device="cpu", warmup=0, repeat=3)
            prof.save()
            medians[impl, seq] = (prof.median, prof.predicted_s)
    page = report.Page("mhsa", "MHSA")
    _impl_timings(page)
    (_, data) = page.figures["mhsa-measured"]
    for impl in ("naive", "sdpa"):
        assert data[f"{impl} measured"] == [
            [32.0, 64.0],
            [medians[impl, n][0] * 1e3 for n in (32, 64)],
        ]
        assert data[f"{impl} floor"][1] == [medians[impl, n][1] * 1e3 for n in (32, 64)]
    ratios = sorted(medians["naive", n][0] / medians["sdpa", n][0] for n in (32, 64))
    took = f"{ratios[0]:.1f}" + (
        f"–{ratios[1]:.1f}" if f"{ratios[0]:.1f}" != f"{ratios[1]:.1f}" else ""
    )
    assert f"the naive implementation took {took}× the time of the fused kernel" in page.text
    assert "d = 32, h = 4" in page.text and "over n = 32..64 the naive" in page.text


def test_cnn_and_vit_at_the_same_resolution_are_paired(tmp_path, monkeypatch):
    from complexo.analyses import cnn, vit
    from complexo.analyses.vision_profile import profile_image

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMPLEXO_HOME", str(tmp_path))  # profiles/ here
    runs = {}
    for analysis, module, model in (("cnn", cnn, "resnet18"), ("vit", vit, "vit-ti16")):
        for res in (64, 96):
            cfg = module.Config(model=model, res=res)
            prof = profile_image(analysis, cfg, device="cpu", warmup=0, repeat=2)
            prof.save()
            runs[analysis, res] = prof
    page = report.Page("cnn-vs-vit", "CNN vs ViT")
    _image_ratios(page)
    lines = [line for line in page.text.splitlines() if line.startswith("- ")]
    assert len(lines) == 2
    for res, line in zip((64, 96), lines, strict=True):
        a, b = runs["cnn", res], runs["vit", res]
        assert f"R = {res}, batch 1: vit-ti16 took {b.median / a.median:.2f}× resnet18's" in line
        assert f"for {b.flops / a.flops:.2f}× its FLOPs" in line


def test_kvcache_decoding_table_from_a_recorded_profile(tmp_path, monkeypatch):
    from complexo.analyses import kvcache
    from complexo.analyses.kvcache_profile import profile_kvcache

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMPLEXO_HOME", str(tmp_path))  # profiles/ here
    cfg = kvcache.Config(arch="llama", layers=2, dim=32, heads=4, vocab=50, ctx=64, context=32)
    prof = profile_kvcache(cfg, device="cpu", warmup=0, repeat=2)
    prof.save()
    page = report.Page("mhsa", "MHSA")
    _kvcache_timings(page)
    (row,) = [line for line in page.text.splitlines() if line.startswith("| ") and "(cpu)" in line]
    t = prof.by_term
    assert f"| {t['no cache']['measured_s'] / t['decode']['measured_s']:.1f}× |" in row
    assert "context=32" in row and row.count("FLOP/B") == 3


def test_the_shared_toolkit_names_no_analysis():
    """Everything in complexo/report/ but topics/ serves every page alike: it names no analysis
    (a word, in any case, in code, strings or comments) and no side of one (a quoted "full" or
    "lora"); what is particular to a page lives in that page's module under topics/."""
    import re
    from pathlib import Path

    analyses = re.compile(r"\b(mhsa|lora|cnn|vit|kvcache|compare|conv)\b", re.IGNORECASE)
    sides = re.compile(r"""["'](full|lora)["']""")
    root = Path(report.__file__).parent
    toolkit = [p for p in root.rglob("*.py") if "topics" not in p.relative_to(root).parts]
    assert {p.name for p in toolkit} >= {"__init__.py", "page.py", "measured.py"}
    for path in toolkit:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            where = f"{path.relative_to(root)}:{n}: {line}"
            assert not analyses.search(line) and not sides.search(line), where


@pytest.mark.parametrize("topic", list(report.TOPICS))
def test_the_committed_page_is_what_complexo_generates_now(topic):
    """`complexo report --check TOPIC`: the Markdown byte for byte, the figures' data."""
    stale = report.check([topic])
    assert not stale, f"stale: {stale}; run complexo report (make report) and commit"


@pytest.mark.slow
def test_the_internals_page_answers_each_question_with_counted_numbers():
    """Each section of transformer-internals.md: the question, the derivation, a table of
    complexo's numbers, the short answer; no counter disagreement left unexplained."""
    from complexo.report.page import TOPICS

    text = TOPICS["transformer-internals"].page().text
    sections = text.split("\n## ")[1:]
    assert len(sections) == 6
    for section in sections:
        for part in ("**The question.**", "**Derivation.**", "|---|", "**The short answer.**"):
            assert part in section, (section[:40], part)
    assert "UNEXPLAINED" not in text and "exact" in text
    # RoPE: 3 FLOPs per element of q and k forward, B·n·(d + d) = 4096·2048 elements: 25.2
    # MFLOP; 4 backward (the add joining the halves' gradients): 33.6 MFLOP
    assert "| rope | 0 | 25.2 MFLOP | 33.6 MFLOP |" in text
