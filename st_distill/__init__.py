"""st-distill: train cross-encoder re-rankers by distillation with sentence-transformers."""

__version__ = "0.1.0"
