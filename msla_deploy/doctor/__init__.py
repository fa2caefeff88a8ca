"""`msla-deploy doctor`: what this machine has, what really runs, and which commands can run here.

Torch-free and quick: the first thing to run on a new machine (a Jetson above all), and what a
bug report pastes (`--json`).
"""

from ..lazy import lazy_exports

__all__ = ["DoctorReport", "diagnose"]
# loaded on first use: `msla-deploy --help` imports doctor.command, and the probes import the runtimes
__getattr__, __dir__ = lazy_exports(__name__, {name: "report" for name in __all__})
