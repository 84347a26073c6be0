"""Numbers as people read them: three significant figures with the unit's prefix (SI for
FLOPs and parameters, binary for bytes), durations and ratios. No rich here: an answer printed
as JSON formats its notes with these and never needs the terminal's tables."""

from __future__ import annotations

_SI = ["", "k", "M", "G", "T", "P", "E", "Z"]
_BINARY = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]


def human(value: int | float | None, unit: str) -> str:
    """34.4 GFLOP, 1.50 GiB, 4.20 M params: three significant figures and the unit."""
    if value is None:
        return "—"
    if unit == "byte":
        number, prefix = _scaled(value, 1024, _BINARY)
        return f"{number} {prefix}"
    number, prefix = _scaled(value, 1000, _SI)
    return f"{number} {prefix}".rstrip() if unit == "param" else f"{number} {prefix}FLOP"


def duration(seconds: float) -> str:
    """Three significant figures in s, ms or µs: 1.09 s, 58.1 ms, 373 µs, 4.91 µs."""
    if seconds >= 1:
        return f"{seconds:.3g} s"
    return f"{seconds * 1e3:.3g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.3g} µs"


def times(x: float) -> str:
    """A ratio as a multiple to three significant figures: 2.00×, 8.09×, 205×, 1,311×.

    >>> times(2), times(205.4), times(0.125), times(1310.72)
    ('2.00×', '205×', '0.125×', '1,311×')
    """
    x = float(x)  # Fractions and sympy numbers too
    return f"{x:,.0f}×" if x >= 100 else f"{x:#.3g}×"


def _scaled(value: float, base: int, prefixes: list[str]) -> tuple[str, str]:
    v, i = float(value), 0
    while abs(v) >= base and i < len(prefixes) - 1:
        v, i = v / base, i + 1
    return (f"{int(v)}" if i == 0 else _sig3(v)), prefixes[i]


def _sig3(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 99.95 else f"{v:.1f}" if abs(v) >= 9.995 else f"{v:.2f}"
