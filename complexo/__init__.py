"""complexo: what does a deep-learning building block cost, and why?

>>> import complexo
>>> "mhsa" in complexo.ANALYSES
True

``complexo.analyse("mhsa", seq=4096, dim=1024)`` analyses one config of a registered analysis
(its keywords are the config's fields, as ``complexo.ANALYSES[name].config`` lists them) and
returns its result: ``r.quantities["forward_flops"].value`` (exact), ``.expr`` (sympy),
``.measured`` (each counter's reading); ``r.to_json()``; ``r.render()`` for rich; in a notebook
it shows itself as HTML or Markdown; ``r.plot(ax=...)`` draws it. Importing complexo does not
import torch: an analysis does when it runs.
"""

from __future__ import annotations

from complexo.errors import ComplexoError

__version__ = "0.1.0"
__all__ = ["ANALYSES", "ComplexoError", "__version__", "analyse"]


def analyse(name: str, *, check: bool = True, **options):
    """Analyse one config of the registered analysis ``name``; bad input raises
    :class:`ComplexoError` in the config's own words (``dim 100 is not divisible by heads
    12``). ``check=False``: the formulas alone, no counter run (nor torch imported)."""
    import contextlib

    from complexo import registry
    from complexo.analyses import NAMES, load
    from complexo.counting import unchecked
    from complexo.errors import check_choice

    if name in NAMES:  # its module alone: importing every analysis costs more than most answers
        a = load(name)
    else:  # registered by the caller, or a bad name (answered with the closest of them all)
        from complexo.analyses import ANALYSES

        check_choice("analysis", name, ANALYSES)
        a = ANALYSES[name]
    try:
        with contextlib.nullcontext() if check else unchecked():
            return a.analyse(a.make(**options))
    except ComplexoError as err:
        raise ComplexoError(registry.field_names(str(err), a.config)) from None


def __getattr__(name: str):
    if name == "ANALYSES":  # loaded on first use: the analyses' modules import sympy
        from complexo.analyses import ANALYSES

        return ANALYSES
    raise AttributeError(f"module 'complexo' has no attribute {name!r}")
