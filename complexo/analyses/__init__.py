"""The registered analyses. Each module declares its ``Config`` (fields with their options), its
cost model, its reference block and ``analyse(cfg)``, and ends with ``ANALYSIS = register(...)``
(:mod:`complexo.registry`); importing it here is its one registration line, and this order is the
order of ``complexo --help``. Nothing here imports torch: an analysis imports it when it runs."""

# ruff: noqa: F401, I001
from complexo.analyses import mhsa
from complexo.analyses import lora
from complexo.analyses import cnn
from complexo.analyses import vit
from complexo.analyses import compare
from complexo.analyses import kvcache
from complexo.analyses import conv
from complexo.analyses import mlp
from complexo.analyses import norm
from complexo.analyses import video
from complexo.analyses import loss
from complexo.analyses import patch
from complexo.registry import ANALYSES

__all__ = ["ANALYSES"]
