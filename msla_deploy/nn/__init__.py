"""Export-friendly building blocks: LiteMLA with static plans, and the layers around it."""

from .litemla import AttentionCore, AttentionPlan, LiteMLA
from .planning import attention_modules, clear_plans, plan_static

__all__ = ["AttentionCore", "AttentionPlan", "LiteMLA", "attention_modules", "clear_plans", "plan_static"]
