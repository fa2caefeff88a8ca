"""`reference --inputs DIR ARTIFACT_DIR`: real pictures into an export's reference bundle.

Synthetic noise proves the arithmetic; label agreement means more on pictures a model was made
for. The pictures are preprocessed like upstream, the exported PyTorch model (rebuilt from the
manifest, weights verified) gives their reference outputs, and they are appended after the
export's synthetic samples. Running it again replaces the pictures added before (the synthetic
samples stay), so the bundle does not grow with every run. The manifest's hashes are updated.

The bundle's three files and the manifest change together: they are written into a staged copy
of the directory and swapped in whole (artifact/staging.py), under the directory's write lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..artifact.files import describe_files, sha256_file
from ..artifact.manifest import read_manifest_if_any, write_manifest
from ..artifact.names import MANIFEST_NAME, REFERENCE_DIR
from ..artifact.reference import ReferenceBundle, read_reference, write_reference
from ..artifact.staging import recover_interrupted_swap, staged_update
from ..errors import BadInput
from ..progress import Steps
from ..runtime.picture_files import list_images, load_rgb, preprocess
from ..runtime.processing import PREPROCESSING


@dataclass
class ReferenceImagesResult:
    directory: Path
    images: List[Dict]
    samples: int  # in the bundle now, synthetic ones included
    synthetic: int
    replaced: int = 0  # pictures of an earlier run that these replaced


def add_reference_images(directory: Path, images_dir: Path, steps: Optional[Steps] = None) -> ReferenceImagesResult:
    steps = steps or Steps()
    directory = Path(directory)
    recover_interrupted_swap(directory, on_warning=steps.warn)
    if not directory.is_dir() or read_manifest_if_any(directory) is None:
        raise BadInput(
            f"{directory} is not an export directory (no {MANIFEST_NAME})",
            "pass the directory msla-deploy export wrote",
        )
    with staged_update(directory, on_warning=steps.warn) as staging:
        return _add_images(directory, staging, images_dir, steps)


def _add_images(directory: Path, staging: Path, images_dir: Path, steps: Steps) -> ReferenceImagesResult:
    """Read from the locked `directory`, write into its staged copy `staging`."""
    manifest = read_manifest_if_any(directory)
    if manifest is None:
        raise BadInput(
            f"{directory} is not an export directory (no {MANIFEST_NAME})",
            "pass the directory msla-deploy export wrote",
        )
    if manifest.options is None:
        raise BadInput(f"{directory / MANIFEST_NAME} has no options.resolution", "re-export with msla-deploy export")
    (height, width), batch = manifest.options.resolution, manifest.options.batch
    bundle = read_reference(directory / REFERENCE_DIR)
    if len(bundle.inputs) != 1 or len(bundle.outputs) != 1:
        raise BadInput(
            f"the reference bundle has {len(bundle.inputs)} inputs and {len(bundle.outputs)} outputs",
            "pictures can be added to one-input, one-output models only",
        )
    files = list_images(images_dir)
    if len(files) % batch and not manifest.options.dynamic_batch:
        # a dynamic batch takes any count, in groups of up to N
        raise BadInput(
            f"{len(files)} picture(s) for a model with static batch {batch}", f"give a multiple of {batch} pictures"
        )

    with steps.step("images", f"Reading {len(files)} picture(s) at {height}x{width}"):
        sizes, preprocessed = [], []
        steps.advance(0, len(files))
        for done, f in enumerate(files, 1):  # one decoded picture in memory at a time
            decoded = load_rgb(f)
            sizes.append(list(decoded.shape[:2]))
            preprocessed.append(preprocess(decoded, height, width))
            steps.advance(done, len(files))
        pixels = np.stack(preprocessed)
        del preprocessed
    from ..runtime.torch_backend import rebuild  # torch: only now that the input is known good
    from .torch_reference import run_model

    with steps.step("build", "Rebuilding the exported PyTorch model"):
        module = rebuild(manifest, "reference --inputs")
        from ..nn.heads import with_head

        # the head on the rebuilt logits, like the export's reference (labels: upstream's bicubic resize + argmax)
        options = manifest.options
        module = with_head(module, options.head, options.resolution, "cubic", manifest.model.task)
    with steps.step("reference", f"Computing the PyTorch reference outputs of {len(files)} picture(s)"):
        parts = []
        steps.advance(0, len(files))  # the bar (counts, ETA) shows before the first batch, the slowest
        for i in range(0, len(files), batch):
            parts.append(run_model(module, pixels[i : i + batch]))
            steps.advance(min(i + batch, len(files)), len(files))
        outputs = np.concatenate(parts)

    (input_name, old_inputs), (output_name, old_outputs) = (
        next(iter(bundle.inputs.items())),
        next(iter(bundle.outputs.items())),
    )
    if outputs.shape[1:] != old_outputs.shape[1:]:
        raise BadInput(
            f"the rebuilt model gives {list(outputs.shape[1:])} per sample, the bundle holds "
            f"{list(old_outputs.shape[1:])}",
            "re-export",
        )
    info = dict(bundle.info or {})
    # samples before the first picture are the export's synthetic ones; earlier pictures are replaced
    synthetic = int(info.get("synthetic_samples", old_inputs.shape[0]))
    replaced = max(int(old_inputs.shape[0]) - synthetic, 0)
    images = [{"file": f.name, "sha256": sha256_file(f), "size": size} for f, size in zip(files, sizes)]
    # "inputs" says what the bundle holds now; the export's own words for its samples are kept
    synthetic_text = info.get("synthetic_inputs") or info.get("inputs") or "synthetic uniform-noise RGB images"
    info.update(
        {
            "synthetic_inputs": synthetic_text,
            "inputs": _describe(synthetic, synthetic_text, images, Path(images_dir).resolve()),
            "synthetic_samples": synthetic,
            "images": images,
            "image_preprocessing": PREPROCESSING,
            "image_source_dir": str(Path(images_dir).resolve()),
        }
    )
    new = ReferenceBundle(
        inputs={input_name: np.concatenate([old_inputs[:synthetic], pixels.astype(old_inputs.dtype)])},
        outputs={output_name: np.concatenate([old_outputs[:synthetic], outputs.astype(old_outputs.dtype)])},
        info=info,
    )
    with steps.step("write", "Writing the reference bundle and the manifest"):
        written = write_reference(staging, new)
        manifest.artifacts = {**(manifest.artifacts or {}), **describe_files(staging, written)}
        manifest.extra["reference_images"] = {
            "count": len(images),
            "synthetic_samples": synthetic,
            "preprocessing": PREPROCESSING,
        }
        write_manifest(staging, manifest)
    return ReferenceImagesResult(directory, images, synthetic + len(images), synthetic, replaced)


def _describe(synthetic: int, synthetic_text: str, images: List[Dict], images_dir: Path, shown: int = 10) -> str:
    names = ", ".join(i["file"] for i in images[:shown])
    if len(images) > shown:
        names += f" and {len(images) - shown} more (see images)"
    first, last = synthetic, synthetic + len(images) - 1
    pictures = f"samples {first}-{last}: {len(images)} picture(s) from {images_dir} ({names}), {PREPROCESSING}"
    return f"samples 0-{synthetic - 1}: {synthetic_text}; {pictures}" if synthetic else pictures
