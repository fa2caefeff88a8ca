"""The PyTorch model an export is made from, built once by export and rebuilt by the stages that
need it again (the torch backend, localize, reference pictures). Needs torch.

Building: the zoo name or a FILE.py:FACTORY, weights from --weights, models/ or seeded random,
LiteMLA swapped for the export-friendly one, stress weights if asked. Rebuilding: the same from
the manifest's recorded options (ExportOptions.from_dict), checked against the recorded weight
hash, so the rebuilt model is the exported one and not merely one with the same name.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch

from . import convert, timm_models, zoo
from .artifact.manifest import Manifest
from .artifact.names import WEIGHTS_CHECKPOINT, WEIGHTS_FACTORY, WEIGHTS_RANDOM
from .artifact.options import ExportOptions, is_factory_spec
from .errors import BadInput
from .nn.stress import apply_stress_weights
from .user_model import build_user_model


@dataclass
class LoadedModel:
    module: torch.nn.Module
    name: str
    source: str  # "zoo", "factory" or "timm"
    num_classes: Optional[int]
    weights: Dict
    swapped: List[Dict] = field(default_factory=list)


def state_dict_sha256(module: torch.nn.Module) -> str:
    """Hash of the weights as loaded (names, dtypes, shapes, bytes): identifies random weights too."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return digest.hexdigest()


def _stress(module: torch.nn.Module) -> List[str]:
    """Trained-model magnitudes where fp16 breaks: every LiteMLA, and a SAM image encoder's neck too."""
    from .zoo.sam import EfficientViTSam

    if isinstance(module, EfficientViTSam):
        from .zoo.sam.stress import apply_sam_stress_weights

        return apply_sam_stress_weights(module.image_encoder)
    return apply_stress_weights(module)


def load_model(options: ExportOptions) -> LoadedModel:
    """Build the model, load weights (flag, then models/, else seeded random), swap LiteMLA."""
    torch.manual_seed(options.seed)  # random weights are reproducible
    if timm_models.is_timm_spec(options.model):  # before the factory test: timm:NAME has a colon too
        module, name, source = timm_models.build(options.model), options.model_label, "timm"
        num_classes = getattr(module, "num_classes", None)
        checkpoint = options.weights
        weights = {
            "source": WEIGHTS_RANDOM,
            "seed": options.seed,
            "note": "RANDOM WEIGHTS: timm model built with pretrained=False and no --weights",
        }
    elif is_factory_spec(options.model):
        module, _ = build_user_model(options.model)
        name = options.model_label
        source, num_classes = "factory", None
        weights = {"source": WEIGHTS_FACTORY, "note": "as returned by the factory"}
        checkpoint = options.weights
    else:
        spec = zoo.get_spec(options.model)
        module, name, source, num_classes = zoo.build(spec.name), spec.name, "zoo", spec.num_classes
        checkpoint = options.weights or zoo.find_checkpoint(spec.name, Path(options.models_dir))
        weights = {
            "source": WEIGHTS_RANDOM,
            "seed": options.seed,
            "note": "RANDOM WEIGHTS: no checkpoint given or found",
        }
    if checkpoint is not None:
        digest = zoo.load_checkpoint(module, Path(checkpoint))
        weights = {"source": WEIGHTS_CHECKPOINT, "path": str(checkpoint), "sha256": digest}
    module, records = convert.swap_litemla(module)
    module.eval()
    if options.stress_weights:
        weights["stress"] = _stress(module)
        weights["note"] = "STRESS WEIGHTS: LiteMLA q/k/v rescaled, head 0 queries zeroed"
    weights["state_dict_sha256"] = state_dict_sha256(module)
    return LoadedModel(module, name, source, num_classes, weights, [r.to_dict() for r in records])


def rebuild_exported_model(manifest: Manifest, purpose: str) -> torch.nn.Module:
    """The exported nn.Module (eval mode), weights verified against the manifest."""
    if manifest.options is None or not manifest.weights:
        raise BadInput(
            f"{purpose} needs the manifest's 'options' and 'weights' to rebuild the model",
            "use an export directory written by msla-deploy export",
        )
    weights = manifest.weights
    checkpoint = None
    if weights.get("source") == "checkpoint":
        checkpoint = Path(str(weights.get("path")))
        if not checkpoint.is_file():
            raise BadInput(
                f"{purpose}: the checkpoint the artifact was exported from, {checkpoint}, is not there",
                "run from the directory the export ran in, or put the checkpoint back at that path",
            )
    with tempfile.TemporaryDirectory() as empty:
        # models_dir is empty on purpose: random weights must not turn into a checkpoint that
        # happens to lie in ./models now; a checkpoint source is passed explicitly above
        rebuilt = ExportOptions.from_dict(
            {**manifest.options.to_dict(), "weights": checkpoint, "models_dir": empty, "out": None}
        )
        loaded = load_model(rebuilt)
    expected = weights.get("state_dict_sha256")
    actual = loaded.weights.get("state_dict_sha256")
    if expected and actual != expected:
        raise BadInput(
            f"{purpose}: the rebuilt PyTorch model's weights (sha256 {actual[:12]}) are not the exported ones "
            f"({expected[:12]})",
            "the checkpoint or the model code changed since the export; re-export",
        )
    return loaded.module
