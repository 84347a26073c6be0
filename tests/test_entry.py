"""The console script ends without the interpreter's teardown (complexo.cli.entry, os._exit):
what it printed and wrote must be whole all the same, and its exit status the command's."""

import json
import subprocess
import sys


def _complexo(*words, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "complexo", *words], capture_output=True, text=True, **kwargs
    )


def test_a_document_longer_than_a_pipe_arrives_whole():
    run = _complexo("compare", "cnn", "vit", "--res", "64", "224", "384", "--no-check", "--json")
    assert run.returncode == 0, run.stderr
    assert len(run.stdout) > 65536  # more than a Linux pipe holds: written in several rounds
    doc = json.loads(run.stdout)
    assert doc["analysis"] == "compare" and run.stdout.endswith("}\n")


def test_a_figure_is_written_whole_before_the_process_ends(tmp_path):
    path = tmp_path / "lora.png"
    run = _complexo("lora", "--no-check", "--plot", str(path))
    assert run.returncode == 0, run.stderr
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82")  # PNG's last chunk


def test_bad_input_still_exits_2_with_one_line():
    run = _complexo("mhsa", "--heads", "7", "--no-check")
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: ")
