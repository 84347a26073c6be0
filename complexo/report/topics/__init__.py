"""One module per page of ``analyses/``. Importing one registers its topic, so the order here is
the order of ``complexo report``'s topics and of the index: mhsa, lora, cnn-vs-vit,
transformer-internals, training-memory, video, conv, proofs."""

from complexo.report.topics import mhsa

# isort: split
from complexo.report.topics import lora

# isort: split
from complexo.report.topics import cnn_vs_vit

# isort: split
from complexo.report.topics import internals

# isort: split
from complexo.report.topics import training_memory

# isort: split
from complexo.report.topics import video

# isort: split
from complexo.report.topics import conv

# isort: split
from complexo.report.topics import proofs

__all__ = [
    "cnn_vs_vit",
    "conv",
    "internals",
    "lora",
    "mhsa",
    "proofs",
    "training_memory",
    "video",
]
