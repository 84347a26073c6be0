import os

# Stable terminal output for the CLI tests: fixed width, no colour.
os.environ["COLUMNS"] = "160"
os.environ["NO_COLOR"] = "1"
os.environ["TERM"] = "dumb"
# One torch thread per test process: on CI's 2 cores, two threads made tiny forwards 47–117×
# slower (torch reads this when it is first imported, which is after this file).
os.environ.setdefault("OMP_NUM_THREADS", "1")

from hypothesis import settings

from complexo.cli import collect_rarely

# The oldest generation collected as the console script collects it: a test process holds
# torch, sympy and hypothesis, and each full walk of them is tens of ms (the fast suite
# 119 → 108 s on 2 cores; the commands' JSON is the same either way).
collect_rarely()

# Derandomised: the same shapes on every run, so a failure reproduces; no deadline on a 2-core CI.
settings.register_profile("complexo", derandomize=True, deadline=None, max_examples=40)
settings.load_profile("complexo")


def pytest_configure(config):
    """A run that keeps the slow tests (make test-all, no ``-m "not slow"``) draws each property
    test's full budget of examples (budget.examples), make test its CI budget."""
    import budget

    budget.FULL = "not slow" not in (config.getoption("markexpr") or "")
