"""The report mechanism: pages and figure data written, and --check catching any drift. (The
real pages are checked by `complexo report --check` in `make test`.)"""

from complexo import plot as plots
from complexo import report


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


def test_gpu_section_shows_the_recorded_cuda_profiles(tmp_path, monkeypatch):
    """A real CPU profile of both LoRA sides, relabelled as a CUDA run (none can be made here),
    is what the page's table reads: one row per side, with its own numbers."""
    import json

    from complexo import profile as profiling
    from complexo.analyses.lora import Config

    monkeypatch.chdir(tmp_path)
    cfg = Config(in_features=16, out_features=8, rank=2, seq=4, precision="fp32")
    for path in profiling.profile_lora(cfg, device="cpu", warmup=0, repeat=1).save():
        doc = json.loads(path.read_text())
        path.write_text(json.dumps(doc | {"device": "cuda", "memory_peak": 12345}))
    page = report.Page("lora", "LoRA")
    report._gpu_section(page, "lora")
    rows = [line for line in page.text.splitlines() if line.startswith("| ") and "side=" in line]
    assert len(rows) == 2 and {"side=full" in r for r in rows} == {True, False}
    assert all("12.1 KiB" in r and " ms |" in r for r in rows), rows
    page = report.Page("mhsa", "MHSA")
    report._gpu_section(page, "mhsa")
    assert "No GPU profile" in page.text and "complexo profile mhsa" in page.text
