"""Sizes past what torch can represent. The counters run on meta tensors, whose storage is still
sized in 64-bit integers: a tensor of 2**63 bytes or more cannot be made, even with no data. The
formulas have no such limit, so at those sizes an analysis answers from its formulas alone, its
counters' readings None and a note saying why.

An analysis wraps its counting in :func:`counted`; :func:`guarded` (applied by
:func:`complexo.registry.register` to every analysis) adds the note to the result, and turns an
overflow that escaped an analysis without :func:`counted` into one line instead of a traceback.
This module imports nothing heavy: it recognises torch's errors by their words.

>>> counted(lambda: {"x": 1}, {})
{'x': 1}
>>> def too_big():
...     raise RuntimeError("Storage size calculation overflowed with sizes=[2, 4]")
>>> with skips() as skipped:
...     counted(too_big, {})
{}
>>> skipped
['Storage size calculation overflowed with sizes=[2, 4]']
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from complexo.errors import ComplexoError

T = TypeVar("T")

LIMIT = "2**63 bytes"
NOTE = (
    f"counters skipped: a tensor at these sizes exceeds what torch can represent ({LIMIT}), even "
    "on the meta device; the values are the formulas' alone"
)

UNCHECKED = (
    "counters not run (--no-check, or check=False): the values are the formulas' alone, unchecked"
)

_OVERFLOW = re.compile(r"overflow|too large|out of range for", re.IGNORECASE)
_skipped: ContextVar[list[str] | None] = ContextVar("complexo_skipped", default=None)
_checking: ContextVar[bool] = ContextVar("complexo_checking", default=True)


@contextmanager
def unchecked() -> Iterator[None]:
    """Run analyses from their formulas alone: :func:`counted` calls no counter (so neither
    torch nor fvcore is imported) and :func:`guarded` says so in a note."""
    token = _checking.set(False)
    try:
        yield
    finally:
        _checking.reset(token)


def overflowed(err: BaseException) -> bool:
    """Whether ``err`` is torch (or Python) refusing a size it cannot represent: 'Storage size
    calculation overflowed', 'Overflow when unpacking long long', an OverflowError."""
    if isinstance(err, OverflowError):
        return True
    return isinstance(err, RuntimeError | TypeError | ValueError) and bool(
        _OVERFLOW.search(str(err).split("\n", 1)[0])
    )


def counted(count: Callable[[], T], empty: T) -> T:
    """What ``count()`` returns (the counters' readings); ``empty`` where the sizes are past
    what torch can represent, the reason kept for :func:`guarded`'s note; ``empty`` without
    counting at all inside :func:`unchecked`."""
    if not _checking.get():
        found = _skipped.get()
        if found is not None:
            found.append(UNCHECKED)
        return empty
    try:
        with _quiet_fake_tensors():
            return count()
    except Exception as err:
        if not overflowed(err):
            raise
        found = _skipped.get()
        if found is not None:
            found.append(str(err).split("\n", 1)[0])
        return empty


@contextmanager
def _quiet_fake_tensors() -> Iterator[None]:
    """FakeTensorMode logs a traceback of any op that fails before it raises (a tensor past
    torch's sizes under MemTracker): the exception is what counts, and is either the overflow
    this module reports in a note or raised on."""
    import logging

    logger = logging.getLogger("torch._subclasses.fake_tensor")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def skips() -> Iterator[list[str]]:
    """Collect what :func:`counted` skipped while the block runs."""
    found: list[str] = []
    token = _skipped.set(found)
    try:
        yield found
    finally:
        _skipped.reset(token)


def guarded(analyse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``analyse`` with the note when counters were skipped (a result with ``notes``), and a
    size torch cannot represent refused in one line where the analysis does not skip them."""

    @functools.wraps(analyse)
    def run(cfg):
        with skips() as skipped:
            try:
                result = analyse(cfg)
            except ComplexoError:
                raise
            except Exception as err:
                if not overflowed(err):
                    raise
                raise ComplexoError(
                    f"these sizes exceed what torch can represent ({LIMIT}) and this analysis "
                    "cannot answer without its counters: choose smaller sizes"
                ) from None
        notes = getattr(result, "notes", None)
        note = UNCHECKED if UNCHECKED in skipped else NOTE
        if skipped and isinstance(notes, list) and note not in notes:
            notes.append(note)
        return result

    return run
