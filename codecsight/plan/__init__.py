"""Token plan: per temporal patch, which LLM tokens the ViT encodes, from the change maps of its frames."""
from codecsight.plan.plan import REASONS, PatchPlan, PlanConfig, TokenPlanner, plan_file, planned_samples

__all__ = ["REASONS", "PatchPlan", "PlanConfig", "TokenPlanner", "plan_file", "planned_samples"]
