"""What else was running: the thread count a CPU run used (``--threads``, else torch's choice)
and the machine's load, recorded with every profile, and the warning a profile carries when its
timed runs spread so widely that its median (and everything compared with it) is not to be
trusted."""

from __future__ import annotations

import contextlib
import os
import statistics
from collections.abc import Iterator

from complexo.errors import ComplexoError

MAX_THREADS = 1024

# A profile whose interquartile range exceeds this fraction of its median says so: its median,
# the shares and floors compared with it, and its achieved FLOP/s may move on a re-run.
NOISY = 0.25


def check_threads(threads: int | None) -> None:
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise ComplexoError(f"--threads is a thread count from 1 to {MAX_THREADS:,}, got {threads}")


@contextlib.contextmanager
def threads_set(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` inside (None: left as torch picked it),
    and restored after."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load() -> float | None:
    """The machine's one-minute load average (runnable processes), None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def iqr(times: list[float]) -> float:
    """The interquartile range of the timed runs (0 for one run)."""
    if len(times) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(times, n=4)
    return q3 - q1


def spread_warning(times: list[float], threads: int | None, load_avg: float | None) -> str | None:
    """A warning when the runs' IQR exceeds :data:`NOISY` of their median, with what the
    machine was doing, else None."""
    from complexo.units import duration

    median = statistics.median(times)
    spread = iqr(times)
    if not median or spread <= NOISY * median:
        return None
    busy = []
    if load_avg is not None:
        busy.append(f"load {load_avg:g} on {os.cpu_count()} cores")
    if threads is not None:
        busy.append(f"{threads} torch thread{'s' * (threads != 1)}")
    context = f" ({', '.join(busy)})" if busy else ""
    return (
        f"NOISY: the timed runs spread over an IQR of {duration(spread)}, {spread / median:.0%} "
        f"of their median {duration(median)}{context}: the median, the shares and floors compared "
        "with it and the achieved FLOP/s may move on a re-run; run on a quieter machine, with "
        "more --repeat, or with --threads below the free cores"
    )
