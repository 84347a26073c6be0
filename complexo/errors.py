"""The one exception type for user errors; the CLI prints it as one line and exits non-zero."""


class ComplexoError(ValueError):
    """A bad request: wrong sizes, unknown names, a device that is not there."""
