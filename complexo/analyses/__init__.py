"""One module per analysis, each of the same shape: ``NAME``, a frozen ``Config`` that
validates itself, ``cost_model(...)`` (the sympy terms), ``build(cfg)`` (the reference block on
the meta device) and ``analyse(cfg) -> Result``. Its command in :mod:`complexo.cli` only builds
the ``Config`` from options and prints the result."""

from complexo.analyses import cnn, kvcache, lora, mhsa, vit

ANALYSES = {m.NAME: m for m in (mhsa, lora, cnn, vit, kvcache)}
