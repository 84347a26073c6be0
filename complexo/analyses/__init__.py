"""The registered analyses. Each module declares its ``Config`` (fields with their options), its
cost model, its reference block and ``analyse(cfg)``, and ends with ``ANALYSIS = register(...)``
(:mod:`complexo.registry`); its name in :data:`NAMES` is its one registration line, and that
order is the order of ``complexo --help``. Nothing here imports torch: an analysis imports it
when it runs.

The modules are imported when first needed: :data:`ANALYSES` imports them all, :func:`load` one
(with what it imports itself), so that ``complexo mhsa`` pays for mhsa's module alone."""

from __future__ import annotations

import importlib

from complexo import registry

NAMES = (
    "mhsa",
    "lora",
    "cnn",
    "vit",
    "compare",
    "kvcache",
    "conv",
    "mlp",
    "norm",
    "video",
    "loss",
    "patch",
)

__all__ = ["ANALYSES", "NAMES", "load"]


def load(name: str) -> registry.Analysis:
    """The registered analysis ``name`` (one of :data:`NAMES`), its module imported."""
    importlib.import_module(f"{__name__}.{name}")
    return registry.ANALYSES[name]


def __getattr__(name: str):
    if name == "ANALYSES":  # every analysis, in the order of NAMES
        found = {n: load(n) for n in NAMES}
        if list(registry.ANALYSES)[: len(NAMES)] != list(NAMES):  # in import order: reorder
            ordered = found | registry.ANALYSES  # any registered elsewhere after these
            registry.ANALYSES.clear()
            registry.ANALYSES.update(ordered)
        return registry.ANALYSES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
