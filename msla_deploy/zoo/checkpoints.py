"""Finding and loading official checkpoints, safely.

Checkpoints are read with `weights_only=True`: a file that needs arbitrary Python objects to
unpickle can run code on load, so it is refused rather than trusted. Loading is strict, and a
mismatch is reported on one line with the first offending keys, so a wrong variant or dataset
is obvious at a glance.

Before anything is unpickled, the sizes the file declares are checked against what this model's
state dict can need: a small file of deflated zeros (a zip bomb) would otherwise expand to
gigabytes in memory before it could be rejected.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, List, Mapping, Optional, Union

import torch
from torch import nn

from ..errors import BadInput
from .variants import find_checkpoint, get_spec  # noqa: F401 (find_checkpoint: torch-free, listed by `models`)

#: how many keys of each kind a mismatch message names
_SHOWN = 3


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


#: a checkpoint may hold a little more than the weights (buffers, a few metadata entries, an EMA
#: copy): this factor over the model's own state-dict bytes, plus the slack below, is accepted
SIZE_FACTOR = 4
SIZE_SLACK = 64 << 20


def state_dict_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def declared_bytes(path: Path) -> int:
    """What loading `path` expands to, as the file declares it: the sum of the uncompressed
    sizes of its zip members (torch.save's format), or the file's size (the legacy format,
    plain pickles, is not compressed)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return sum(max(info.file_size, 0) for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return path.stat().st_size


def check_size(model: nn.Module, path: Path) -> None:
    expected = state_dict_bytes(model)
    limit = SIZE_FACTOR * expected + SIZE_SLACK
    declared = declared_bytes(path)
    if declared > limit:
        raise BadInput(
            f"{path} declares {declared / 2**20:,.0f} MiB of contents, above the limit of {limit / 2**20:,.0f} MiB for "
            f"{type(model).__name__} ({SIZE_FACTOR} x its {expected / 2**20:,.1f} MiB of weights + "
            f"{SIZE_SLACK >> 20} MiB); not loaded",
            "pass this model's own state dict (torch.save(model.state_dict(), path)); a file that expands this far "
            "is not one",
        )


def _read(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's own message is a page long; keep the part that names the offending object
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = f"it stores the Python object {found.group(1)}" if found else "it is not a weights-only pickle"
        raise BadInput(
            f"{path}: loading it would need unsafe unpickling ({what}); only plain state dicts are accepted",
            "re-save it with torch.save(model.state_dict(), path) from a trusted environment",
        ) from None
    except Exception as err:  # zip/EOF/key errors: whatever torch raises for a foreign file
        detail = (str(err).splitlines() or [""])[0][:120]
        raise BadInput(
            f"{path} is not a PyTorch checkpoint (torch.load failed with {type(err).__name__} {detail})".rstrip(),
            "pass the .pt file saved with torch.save",
        ) from None


def _as_state_dict(loaded: Any, path: Path) -> Mapping[str, torch.Tensor]:
    if isinstance(loaded, Mapping) and "state_dict" in loaded:
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise BadInput(
            f"{path} holds a {type(loaded).__name__}, not a state dict of tensors",
            "save the model's state_dict() (optionally under a top-level 'state_dict' key)",
        )
    return loaded


def _first(items: List[str]) -> str:
    more = f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more


def _mismatch(model: nn.Module, weights: Mapping[str, torch.Tensor]) -> Optional[str]:
    """One line describing missing, unexpected and mis-shaped keys, or None if all match."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    misshaped = [
        f"{k} checkpoint {list(weights[k].shape)} vs model {list(v.shape)}"
        for k, v in expected.items()
        if k in weights and weights[k].shape != v.shape
    ]
    parts = [
        f"{label} {len(keys)}: {_first(keys)}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
        if keys
    ]
    return "; ".join(parts) if parts else None


def load_checkpoint(model: nn.Module, path: Union[str, Path]) -> str:
    """Strictly load a state-dict checkpoint into `model`; return the file's sha256 (hex)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BadInput(
            f"checkpoint {path} not found (or not a file)",
            "download the official checkpoint; models/README.md lists the expected file names",
        )
    check_size(model, path)  # before torch.load: a zip bomb must not expand first
    weights = _as_state_dict(_read(path), path)
    problem = _mismatch(model, weights)
    if problem:
        raise BadInput(
            f"{path} does not fit {type(model).__name__}: {problem}",
            "check that the checkpoint is for this model variant and dataset",
        )
    model.load_state_dict(weights, strict=True)
    return _sha256(path)
