"""The adapter interface every model family implements, and the loader that picks the family from a config.

Two halves, kept in separate sections of each family file:
- vision side: own frame preprocessing, the (pruned) vision tower, the merger/projector;
- language side: the decoder stack, rotary kind and position rule, text embedding, answer head.
"""
from __future__ import annotations

import json
import os
from typing import ClassVar

from codecsight.errors import ConfigError
from codecsight.geometry import TokenGeometry

_FAMILIES: dict[str, type["ModelAdapter"]] = {}


def register(cls: type["ModelAdapter"]) -> type["ModelAdapter"]:
    for model_type in cls.model_types:
        _FAMILIES[model_type] = cls
    return cls


class ModelAdapter:
    """Wraps one transformers VLM. Subclasses set `family`, `model_types` and `geometry`."""

    family: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]
    geometry: ClassVar[TokenGeometry]

    def __init__(self, model, tokenizer=None):
        self.model = model.eval()
        self.tokenizer = tokenizer

    @property
    def config(self):
        return self.model.config

    @classmethod
    def from_pretrained(cls, id_or_path: str, dtype=None, device: str = "cpu") -> "ModelAdapter":
        raise NotImplementedError

    @classmethod
    def tiny(cls, seed: int = 0, **overrides) -> "ModelAdapter":
        """A randomly initialised model of the real class from a tiny config, for tests."""
        raise NotImplementedError

    # ---- vision side (token plan, pruned ViT) -------------------------------------------------------------
    # ---- language side (window prefill, KV reuse) ---------------------------------------------------------


def _model_type(id_or_path: str) -> str:
    cfg = os.path.join(id_or_path, "config.json")
    if os.path.isfile(cfg):
        with open(cfg) as f:
            return json.load(f).get("model_type", "")
    from transformers import AutoConfig  # hub id: the config tells the family (cached or downloaded)

    return AutoConfig.from_pretrained(id_or_path).model_type


def load_adapter(id_or_path: str, **kwargs) -> ModelAdapter:
    """Load a model by hub id or local folder and wrap it in its family's adapter."""
    import codecsight.models.families  # noqa: F401  (registers the families)

    model_type = _model_type(id_or_path)
    if model_type not in _FAMILIES:
        raise ConfigError(f"{id_or_path}: model type {model_type!r} is not supported "
                          f"(supported: {', '.join(sorted(_FAMILIES))})")
    return _FAMILIES[model_type].from_pretrained(id_or_path, **kwargs)
