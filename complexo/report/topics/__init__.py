"""One module per page of ``analyses/``. Importing one registers its topic, so the order here is
the order of ``complexo report``'s topics and of the index: mhsa, lora, cnn-vs-vit,
transformer-internals."""

from complexo.report.topics import mhsa

# isort: split
from complexo.report.topics import lora

# isort: split
from complexo.report.topics import cnn_vs_vit

# isort: split
from complexo.report.topics import internals

__all__ = ["cnn_vs_vit", "internals", "lora", "mhsa"]
