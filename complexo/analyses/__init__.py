"""One module per analysis, each of the same shape: ``NAME``, ``HELP``, a frozen ``Config`` that
validates itself, ``cost_model(...)`` (the sympy terms), ``build(cfg)`` (the reference block on
the meta device) and ``analyse(cfg) -> Result``."""

from complexo.analyses import mhsa

ANALYSES = {mhsa.NAME: mhsa}
