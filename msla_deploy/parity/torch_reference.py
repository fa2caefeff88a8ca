"""The PyTorch side of validate, for the two jobs that need it: localizing drift and turning
pictures into reference outputs. Both rebuild the exported model from its manifest.

Imported lazily (torch is optional on the runtime side); `require_torch` fails early and cleanly.
The model is rebuilt by the export's own `load_model`, from options reconstructed field by field
out of manifest["options"], and checked against the manifest's weight hash, so the reference is
the exported model and not merely one with the same name.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..errors import BadInput, MissingRuntime

INSTALL_TORCH = "install PyTorch (CPU: pip install torch==2.13.0) and onnxscript"


def require_torch(purpose: str, alternative: str = "") -> None:
    """PyTorch, or MissingRuntime whose fix is installing it, then `alternative` (what works without it)."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        if not alternative and purpose == "--localize":
            alternative = "validate without --localize"
        fix = f"{INSTALL_TORCH}; or {alternative}" if alternative else INSTALL_TORCH
        raise MissingRuntime(f"{purpose} needs PyTorch to rebuild the exported model ({exc})", fix) from None
    except Exception as exc:  # installed but broken (a missing shared library, mixed versions): still exit 3
        raise MissingRuntime(f"{purpose} needs PyTorch, which is installed but does not import ({type(exc).__name__}: {exc})",
                             "reinstall it: pip install --force-reinstall torch") from None


def rebuild_model(manifest: Dict, purpose: str):
    """The exported nn.Module (eval mode, weights verified against the manifest)."""
    from ..artifact.trust import check_model_code

    check_model_code(manifest, purpose)  # the manifest's model code runs only if the user names it again
    require_torch(purpose)
    from ..export.options import ExportOptions
    from ..export.pipeline import load_model

    options, weights = manifest.get("options"), manifest.get("weights")
    if not isinstance(options, dict) or not isinstance(weights, dict) or "model" not in options:
        raise BadInput(f"{purpose} needs the manifest's 'options' and 'weights' to rebuild the model", "use an export directory written by msla-deploy export")
    checkpoint = None
    if weights.get("source") == "checkpoint":
        checkpoint = Path(weights["path"])
        if not checkpoint.is_file():
            raise BadInput(
                f"{purpose}: the checkpoint the artifact was exported from, {checkpoint}, is not there",
                "run from the directory the export ran in, or put the checkpoint back at that path",
            )
    with tempfile.TemporaryDirectory() as empty:
        # models_dir is empty on purpose: random weights must not turn into a checkpoint that
        # happens to lie in ./models now; a checkpoint source is passed explicitly above
        rebuilt = ExportOptions(
            model=options["model"],
            weights=checkpoint,
            resolution=tuple(options.get("resolution", (1024, 2048))),
            batch=int(options.get("batch", 1)),
            precision=options.get("precision", "fp32"),
            seed=int(options.get("seed", 0)),
            stress_weights=bool(options.get("stress_weights", False)),  # changes the weights themselves
            models_dir=Path(empty),
        )
        loaded = load_model(rebuilt)
    expected = weights.get("state_dict_sha256")
    actual = loaded.weights.get("state_dict_sha256")
    if expected and actual != expected:
        raise BadInput(
            f"{purpose}: the rebuilt PyTorch model's weights (sha256 {actual[:12]}) are not the exported ones ({expected[:12]})",
            "the checkpoint or the model code changed since the export; re-export",
        )
    return loaded.module


def run_with_probes(module, x: np.ndarray, names: Sequence[str]) -> Tuple[np.ndarray, List[Tuple[str, np.ndarray]]]:
    """The model's output on `x` and the named modules' outputs in execution (completion) order."""
    import torch

    from ..export.probes import capture

    known = dict(module.named_modules())
    missing = [n for n in names if n not in known]
    if missing:
        raise BadInput(f"probe module {missing[0]!r} of the manifest is not in the rebuilt model", "re-export with this version of msla-deploy")
    with torch.no_grad(), capture(module, list(names)) as captured:
        output = module(torch.from_numpy(np.ascontiguousarray(x)))
        probes = [(name, t.detach().float().numpy().copy()) for name, t in captured if t is not output]
    return output.detach().float().numpy(), probes


def run_model(module, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return module(torch.from_numpy(np.ascontiguousarray(x))).detach().float().numpy()
