"""Imports every family module so that each registers its adapter."""
from codecsight.models import internvl3, qwen2_5_vl, qwen3_vl  # noqa: F401
