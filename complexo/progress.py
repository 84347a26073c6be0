"""Progress of long work, on stderr: a profile's warm-up and timed runs, a calibration, a sweep's
points, a report's pages. The library says what it is doing (:func:`task`); only the command line
shows it (:func:`shown`), and only on a terminal and never with ``--json`` or ``--csv``, so
scripts and pipes see nothing but their output. Without :func:`shown`, :func:`task` does nothing.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

_bar = None  # the rich Progress the command line put up, while it is up


@contextlib.contextmanager
def shown(enabled: bool = True) -> Iterator[None]:
    """Show the tasks started inside as transient progress bars on stderr, when ``enabled``
    and stderr is a terminal."""
    global _bar
    if not enabled or _bar is not None or not sys.stderr.isatty():
        yield
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    # no redirection of sys.stdout into the bar's console: the command's output stays on stdout
    shown = Progress(
        *columns,
        console=Console(stderr=True),
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    )
    with shown as bar:
        _bar = bar
        try:
            yield
        finally:
            _bar = None


@contextlib.contextmanager
def task(description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """A step of long work, shown while it runs (``total``: its count of units, None for a
    spinner); yields ``advance(n=1)``, ``advance(completed=k)`` to set it."""
    bar = _bar
    if bar is None:
        yield _nothing
        return
    tid = bar.add_task(description, total=total)

    def advance(n: int = 1, *, completed: int | None = None) -> None:
        if completed is None:
            bar.advance(tid, n)
        else:
            bar.update(tid, completed=completed)

    try:
        yield advance
    finally:
        bar.remove_task(tid)


def _nothing(n: int = 1, *, completed: int | None = None) -> None:
    return None
