"""Latency measurement of an artifact on one or several backends (`msla-deploy bench`).

Torch-free except the torch backend, which imports PyTorch only when it is chosen.
"""

from ..lazy import lazy_exports

# loaded on first use: `msla-deploy --help` imports bench.command, and stats imports numpy
__getattr__, __dir__ = lazy_exports(
    __name__, {"interleaved_order": "stats", "median_ratios": "stats", "summarize": "stats"}
)
