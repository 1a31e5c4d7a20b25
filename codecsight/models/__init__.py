"""One adapter per model family. The rest of CodecSight talks to `ModelAdapter` only and never asks which family
it drives."""
from codecsight.models.base import ModelAdapter, load_adapter, register

__all__ = ["ModelAdapter", "load_adapter", "register"]
