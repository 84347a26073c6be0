"""The registered analyses. Each module declares its ``Config`` (fields with their options), its
cost model, its reference block and ``analyse(cfg)``, and ends with ``ANALYSIS = register(...)``
(:mod:`complexo.registry`); importing it here is its one registration line. Nothing here
imports torch: an analysis imports it when it runs."""

from complexo.analyses import (
    cnn,  # noqa: F401
    compare,  # noqa: F401
    conv,  # noqa: F401
    kvcache,  # noqa: F401
    lora,  # noqa: F401
    mhsa,  # noqa: F401
    vit,  # noqa: F401
)
from complexo.registry import ANALYSES

__all__ = ["ANALYSES"]
