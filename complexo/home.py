"""Where complexo's folders are: ``profiles/`` (recorded runs, calibrations) and ``analyses/`` (the
written pages), found the same way from any working directory.

1. ``$COMPLEXO_HOME``, when set: a folder holding both.
2. The checkout complexo runs from: the folder above the package whose ``pyproject.toml`` names
   the project ``complexo`` (an editable install, or ``PYTHONPATH`` at a clone).
3. Otherwise (an installed wheel) ``profiles/`` lives under the user's data folder,
   ``$XDG_DATA_HOME/complexo`` (``~/.local/share/complexo``), and the written pages, which belong
   to a checkout, are refused in one line.

The current directory plays no part: a command run from anywhere writes where it says it wrote.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from complexo.errors import ComplexoError

PACKAGE = Path(__file__).resolve().parent
_NAMED = re.compile(r'^\s*name\s*=\s*"complexo"\s*$', re.MULTILINE)


def checkout() -> Path | None:
    """``$COMPLEXO_HOME``, else the checkout the package lives in, else None."""
    given = os.environ.get("COMPLEXO_HOME")
    if given is not None:
        home = Path(given).expanduser()
        if not given.strip() or not home.is_dir():
            raise ComplexoError(f"COMPLEXO_HOME '{given}' is not a folder")
        return home.resolve()
    root = PACKAGE.parent
    try:
        text = (root / "pyproject.toml").read_text()
    except OSError:
        return None
    return root if _NAMED.search(text) else None


def user_data() -> Path:
    """The user's data folder for complexo, outside any checkout."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "complexo"


def profiles() -> Path:
    """Where recorded profiles and calibrations are kept."""
    home = checkout()
    return (home if home is not None else user_data()) / "profiles"


def analyses() -> Path:
    """The written pages' folder; refused outside a checkout."""
    home = checkout()
    if home is None:
        raise ComplexoError(
            "complexo report works on a checkout's analyses/ folder: run it from a clone "
            "(pip install -e .) or set COMPLEXO_HOME to one"
        )
    return home / "analyses"
