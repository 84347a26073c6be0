"""complexo: what does a deep-learning building block cost, and why?"""

__version__ = "0.1.0"
__all__ = ["__version__"]
