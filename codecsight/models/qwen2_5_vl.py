"""Adapter for the qwen2_5_vl family."""
from __future__ import annotations

from codecsight.geometry import QWEN2_5_VL
from codecsight.models.base import ModelAdapter, register


@register
class Qwen25VLAdapter(ModelAdapter):
    family = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)
    geometry = QWEN2_5_VL

    # ---- vision side --------------------------------------------------------------------------------------

    # ---- language side ------------------------------------------------------------------------------------
