"""Files the user asks complexo to write (``--plot``, ``--trace``), checked before any work: a
run that takes minutes must not end by failing to write, or by writing somewhere else.

>>> check_output("", "--trace")
Traceback (most recent call last):
complexo.errors.ComplexoError: --trace needs a file name, got ''
"""

from __future__ import annotations

import os
from pathlib import Path

from complexo.errors import ComplexoError


def check_output(path: str, option: str, suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` as a file that can be written: a name (not only a suffix, not a folder), in a
    folder that exists and is writable; with ``suffixes``, ending in one of them."""
    if not path.strip():
        raise ComplexoError(f"{option} needs a file name, got '{path}'")
    p = Path(path).expanduser()
    if path.endswith(("/", os.sep)) or p.is_dir():
        raise ComplexoError(f"{option} {path} is a folder: give a file name")
    if suffixes:
        if p.name.lower() in {f".{s}" for s in suffixes}:  # '.png': a suffix, no name
            raise ComplexoError(f"{option} {path} has no name before {p.name}")
        if p.suffix.lower().lstrip(".") not in suffixes:
            shown = " or ".join(f".{s}" for s in suffixes)
            raise ComplexoError(f"{option} writes {shown}, not '{path}'")
    parent = p.parent
    if not parent.is_dir():
        raise ComplexoError(f"{option} {path}: no folder {parent}")
    existed = p.exists()
    try:  # the one sure test (permissions, read-only mounts, /proc): open it, as the writer will
        with open(p, "a"):
            pass
    except OSError as err:
        raise ComplexoError(f"{option} {path}: cannot write it ({err.strerror})") from None
    if not existed:
        p.unlink()
    return p
