"""Options converted without pydantic (complexo/cli/coerce.py): the same values and the same
refusals as typer's own pydantic conversion, which is the oracle here, and a formula-only
answer that imports neither pydantic nor rich."""

import json
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from complexo.cli import coerce

pydantic = pytest.importorskip("pydantic")

WORDS = [
    "8", " 8 ", "+8", "-3", "08", "8_000", "8.0", "8.50", "1e3", "1.5", "0x10", "", " ", "inf",
    "nan", "-0", "1_", "1__0", "_1", "true", "No", "OFF", "t", "2", "yes ", "١٢", "١٢.0", "8.0 ",
]  # fmt: skip


def _pydantic(item, word):
    try:
        return pydantic.TypeAdapter(item).validate_python(word)
    except pydantic.ValidationError as err:
        return ("refused", err.errors()[0]["msg"])


def _ours(item, word):
    try:
        return coerce.convert(item, word)
    except ValueError as err:
        return ("refused", str(err))


@pytest.mark.parametrize("item", [int, float, str, bool])
@pytest.mark.parametrize("word", WORDS)
def test_a_word_converts_as_pydantic_converts_it(item, word):
    ours, theirs = _ours(item, word), _pydantic(item, word)
    if item is float and word.strip().lower() == "nan":
        assert isinstance(ours, float) and ours != ours and theirs != theirs  # nan ≠ nan
        return
    assert ours == theirs and type(ours) is type(theirs)


@given(st.integers(-(10**30), 10**30), st.sampled_from(["{}", " {} ", "{}.0", "{}.000"]))
def test_any_whole_number_converts_as_pydantic_converts_it(value, form):
    word = form.format(value)
    assert _ours(int, word) == _pydantic(int, word)


def test_a_formula_only_answer_imports_neither_pydantic_nor_rich():
    """typer would import pydantic (~50 ms) to convert --seq; a JSON document needs no rich."""
    code = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: print(json.dumps(sorted(m for m in sys.modules\n"
        "    if m.split('.')[0] in ('pydantic', 'rich', 'torch'))), file=sys.stderr))\n"
        "sys.argv = ['complexo', 'mhsa', '--seq', '64', '--no-check', '--json']\n"
        "from complexo.cli import main\n"
        "main()\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["config"]["seq"] == 64
    assert json.loads(run.stderr.strip().splitlines()[-1]) == []


def test_a_bad_number_is_one_line_in_pydantics_words():
    run = subprocess.run(
        [sys.executable, "-m", "complexo", "mhsa", "--seq", "1e3", "--no-check"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert run.stderr.strip() == (
        "error: Invalid value for '--seq': Input should be a valid integer, unable to parse "
        "string as an integer"
    )
