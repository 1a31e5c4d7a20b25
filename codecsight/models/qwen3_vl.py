"""Adapter for the qwen3_vl family."""
from __future__ import annotations

from codecsight.geometry import QWEN3_VL
from codecsight.models.base import ModelAdapter, register


@register
class Qwen3VLAdapter(ModelAdapter):
    family = "qwen3_vl"
    model_types = ("qwen3_vl",)
    geometry = QWEN3_VL

    # ---- vision side --------------------------------------------------------------------------------------

    # ---- language side ------------------------------------------------------------------------------------
