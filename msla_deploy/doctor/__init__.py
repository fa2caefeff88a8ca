"""`msla-deploy doctor`: what this machine has, what really runs, and which commands can run here.

Torch-free and quick: the first thing to run on a new machine (a Jetson above all), and what a
bug report pastes (`--json`).
"""

from .report import DoctorReport, diagnose

__all__ = ["DoctorReport", "diagnose"]
