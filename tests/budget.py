"""How many examples a property test draws: its CI budget under ``make test`` (``-m "not
slow"``), and its full budget when the slow tests run too (``make test-all``), which
tests/conftest.py decides before any test module is imported. Derandomised (conftest.py), CI
draws the same examples on every run; the explicit ``@example``s that pin known edge cases run
in both."""

FULL = False  # set by conftest.py: this run includes the slow tests


def examples(ci: int, full: int) -> int:
    """``max_examples``: ``ci`` in make test, ``full`` (at least as many) in make test-all."""
    assert full >= ci
    return full if FULL else ci
