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


def test_the_console_script_collects_its_oldest_generation_rarely_and_the_api_does_not():
    """complexo.cli.collect_rarely: the oldest generation after 1000 young collections (Python's
    default 10), the younger two as they were; importing complexo or analysing through the API
    leaves the caller's collector alone. Run in a fresh process: the settings are global."""
    script = (
        "import gc, sys, complexo, complexo.cli as cli\n"
        "gc.set_threshold(500, 7, 10)\n"
        "complexo.analyse('mhsa', check=False)\n"
        "before = gc.get_threshold()\n"
        "sys.argv = ['complexo', '--version']\n"
        "cli.main = lambda: print(before, gc.get_threshold())\n"
        "cli.entry()\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[0] == "(500, 7, 10) (500, 7, 1000)"
