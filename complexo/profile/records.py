"""What is recorded under profiles/: the saved profiles, listed newest first, and the options that
tell one from another in a listing or a report's table."""

from __future__ import annotations

import json
from pathlib import Path

from complexo.profile.core import PROFILES, _why, folder

# The options that tell one recorded profile from another in a listing or a report's table.
SHOWN_CONFIG = ("model", "side", "res", "batch", "seq", "context", "dim", "impl", "rank")


def shown_config(doc: dict, sep: str = ", ") -> str:
    """A saved profile's distinguishing options, ``key=value`` each (a batch of one goes
    without saying)."""
    config = doc["config"]
    shown = [k for k in SHOWN_CONFIG if config.get(k) and not (k == "batch" and config[k] == 1)]
    return sep.join(f"{k}={config[k]}" for k in shown)


# What a listing reads of every recorded profile.
RECORDED_KEYS = ("analysis", "config", "mode", "device_name", "date", "times")


def recorded(root: Path = PROFILES, skipped: list[str] | None = None) -> list[dict]:
    """Every saved profile under ``root``, newest first. A file that is not one (malformed
    JSON, keys missing) is left out, and why appended to ``skipped``."""
    docs = []
    for path in sorted(folder(root).glob("*/*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            if skipped is not None:
                skipped.append(f"{path}: {_why(err)}")
            continue
        if not isinstance(doc, dict) or path.name == "calibration.json":
            continue
        missing = [k for k in RECORDED_KEYS if k not in doc]
        if missing or not doc["times"] or not isinstance(doc["config"], dict):
            if "times" in doc and skipped is not None:  # a calibration, a sweep: not a profile
                skipped.append(f"{path}: not a profile (lacks {', '.join(missing) or 'times'})")
            continue
        doc["path"] = str(path)
        docs.append(doc)
    return sorted(docs, key=lambda d: str(d.get("date", "")), reverse=True)
