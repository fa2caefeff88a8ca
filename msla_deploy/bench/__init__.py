"""Latency measurement of an artifact on one or several backends (`msla-deploy bench`).

Torch-free except the torch backend, which imports PyTorch only when it is chosen.
"""

from .stats import interleaved_order, median_ratios, summarize  # noqa: F401
