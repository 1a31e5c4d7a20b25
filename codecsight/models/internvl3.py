"""Adapter for the internvl3 family."""
from __future__ import annotations

from codecsight.geometry import INTERNVL3
from codecsight.models.base import ModelAdapter, register


@register
class InternVL3Adapter(ModelAdapter):
    family = "internvl3"
    model_types = ("internvl",)
    geometry = INTERNVL3

    # ---- vision side --------------------------------------------------------------------------------------

    # ---- language side ------------------------------------------------------------------------------------
