"""Parity between a deployed artifact and the PyTorch reference: metrics, budgets, runners.

torch-free by design: a Jetson validates against a reference bundle with numpy and a runtime.
"""

from .budgets import Budget, default_budget
from .metrics import OutputParity, compare_outputs

__all__ = ["Budget", "default_budget", "OutputParity", "compare_outputs"]
