"""LLM prefill over sliding windows of frame segments: one position planner, KV reuse with re-rotated keys and
selective refresh, standing questions on a shared window."""
from codecsight.prefill.engine import (DEFAULT_BUDGET, DEFAULT_POLICY, POLICIES, Answer, PrefillStats, WindowKV,
                                       WindowPrefill)
from codecsight.prefill.positions import PositionRule, TextRun, VisionBlock, plan
from codecsight.prefill.window import Layout, Segment, Text, Vision, Window, build_layout

__all__ = ["DEFAULT_BUDGET", "DEFAULT_POLICY", "POLICIES", "Answer", "Layout", "PositionRule", "PrefillStats",
           "Segment", "Text", "TextRun", "Vision", "VisionBlock", "Window", "WindowKV", "WindowPrefill",
           "build_layout", "plan"]
