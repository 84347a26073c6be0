"""One module per page of ``analyses/``. Importing one registers its topic, so the order here is
the order of ``complexo report``'s topics and of the index: mhsa, lora, cnn-vs-vit,
training-memory."""

from complexo.report.topics import mhsa

# isort: split
from complexo.report.topics import lora

# isort: split
from complexo.report.topics import cnn_vs_vit

# isort: split
from complexo.report.topics import training_memory

__all__ = ["cnn_vs_vit", "lora", "mhsa", "training_memory"]
