"""Run an ONNX file in ONNX Runtime and say which provider actually ran it."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..errors import MissingRuntime


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingRuntime(
            f"ONNX Runtime is not installed ({exc})",
            "pip install onnxruntime (or onnxruntime-gpu, never both)",
        ) from None
    return onnxruntime


def run_onnx(
    path: Path, feeds: Dict[str, np.ndarray], providers: Sequence[str] = ("CPUExecutionProvider",)
) -> Tuple[Dict[str, np.ndarray], List[str]]:
    """Outputs by name, and the providers the session really uses (ORT falls back silently)."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers are noise here
    session = ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, feeds)
    return dict(zip(names, values)), session.get_providers()
