"""The one exception type for user errors; the CLI prints it as one line and exits non-zero."""

import difflib
from collections.abc import Iterable


class ComplexoError(ValueError):
    """A bad request: wrong sizes, unknown names, a device that is not there."""


def check_choice(what: str, value: str, valid: Iterable[str]) -> None:
    """Refuse an unknown name, suggesting the closest valid one and listing them all.

    >>> check_choice("--opt", "adma", ["adam", "sgd"])
    Traceback (most recent call last):
    complexo.errors.ComplexoError: unknown --opt 'adma'; did you mean 'adam'? choose from: adam, sgd
    """
    valid = list(valid)
    if value not in valid:
        close = difflib.get_close_matches(value, valid, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ComplexoError(f"unknown {what} '{value}'; {hint}choose from: {', '.join(valid)}")
