"""The report mechanism: pages and figure data written, and --check catching any drift. (The
real pages are checked by `complexo report --check` in `make test`.)"""

from complexo import plot as plots
from complexo import report


def tiny_page():
    page = report.Page("tiny", "Tiny")
    page.add("# Tiny", "", "2·B·d²·n")
    fig, (ax,) = plots.figure()
    ax.plot([1, 2], [3, 4])
    plots.finish(fig, plots.footer())
    page.figure("tiny", fig, {"line": [[1.0, 2.0], [3.0, 4.0]]}, "a line")
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
