"""Remake the EfficientViT-SAM data in tests/data/upstream/sam/ from upstream's own code.

    PYTHONPATH=<this checkout> python tests/data/upstream/sam/make_sam_data.py <efficientvit> <segment-anything>

<efficientvit>: a checkout of https://github.com/mit-han-lab/efficientvit (made at commit de7d773);
<segment-anything>: a checkout of https://github.com/facebookresearch/segment-anything (made at
commit dca509f), whose PromptEncoder, MaskDecoder and TwoWayTransformer upstream's SAM models use.
For trees exported without .git, UPSTREAM_COMMIT and SAM_COMMIT name the commits. Writes:

- state_dict_keys/efficientvit-sam-<variant>.tsv.gz for l0, l1, l2, xl0, xl1: upstream's
  state_dict() as sam_model_zoo.create_efficientvit_sam_model builds it (on the meta device), one
  row per key in upstream's order, columns key, shape (AxB, or scalar) and dtype;
- decoder.npz: upstream's prompt encoder + mask decoder (weights by tests/zoo/sam_golden.py's
  recipe, the same in every variant) on sam_golden.synthetic_embeddings(), for every prompt case;
- efficientvit-sam-l0.npz and efficientvit-sam-xl0.npz: the whole model on the recipe's picture:
  a summary of the image embeddings, then every prompt case on those embeddings.

All in float32 on the CPU, in eval mode, with the zoo's norm eps. Not a test and not needed by one.
Upstream's packages import triton, torchvision and more at import time; only the modules the SAM
models need are loaded here, with inert stand-ins for the rest (torchvision's transforms are only
called by upstream's preprocessing and predictor, which this script does not use).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch._dynamo  # noqa: F401 (imported before any stand-in module exists: torch probes for triton)

from tests.data.upstream.make_cls_data import load_upstream_zoo, write_manifest
from tests.zoo import sam_golden

HERE = Path(__file__).resolve().parent
VARIANTS = ("l0", "l1", "l2", "xl0", "xl1")


def _placeholder(*args, **kwargs):
    return None


def _stand_in(name: str, *attributes: str) -> types.ModuleType:
    module = types.ModuleType(name)
    for attribute in attributes:
        setattr(module, attribute, _placeholder)
    sys.modules[name] = module
    return module


def load_upstream_sam(efficientvit: Path, segment_anything: Path):
    """upstream's efficientvit.sam_model_zoo, with segment-anything's real modeling package."""
    torchvision = _stand_in("torchvision")
    torchvision.transforms = _stand_in("torchvision.transforms", "Compose", "ToTensor", "Normalize")
    torchvision.transforms.functional = _stand_in("torchvision.transforms.functional", "resize", "to_pil_image")
    # a bare package: segment_anything/__init__.py imports the predictor and mask generator (torchvision)
    package = types.ModuleType("segment_anything")
    package.__path__ = [str(segment_anything / "segment_anything")]
    package.SamAutomaticMaskGenerator = type("SamAutomaticMaskGenerator", (), {})  # subclassed, never used
    sys.modules["segment_anything"] = package
    load_upstream_zoo(efficientvit)
    sam = importlib.import_module("efficientvit.models.efficientvit.sam")
    vars(sys.modules["efficientvit.models.efficientvit"]).update({name: getattr(sam, name) for name in sam.__all__})
    zoo = importlib.import_module("efficientvit.sam_model_zoo")
    # torch's meta-device paths import triton when a module by that name exists: drop the stand-in
    for name in ("triton", "triton.language"):
        sys.modules.pop(name, None)
    return zoo


def commit_of(checkout: Path, variable: str) -> str:
    if os.environ.get(variable):
        return os.environ[variable]
    try:
        return subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _save(path: Path, arrays: dict, upstream: str) -> None:
    np.savez_compressed(
        path,
        **arrays,
        recipe=np.array(json.dumps(sam_golden.recipe(), sort_keys=True)),
        upstream=np.array(upstream),
    )
    print(f"{path.name}: {path.stat().st_size / 1024:.0f} kB")


def _report(results: dict) -> None:
    for name, (low_res, iou) in results.items():
        inside, scores = (low_res > 0).mean(), iou.ravel().round(3).tolist()
        print(f"  {name}: {list(low_res.shape)} peak {np.abs(low_res).max():.2f} inside {inside:.3f} iou {scores}")


def write_decoder(model, source: str) -> None:
    results = sam_golden.run_cases(model.prompt_encoder, model.mask_decoder, sam_golden.synthetic_embeddings())
    _report(results)
    arrays = {**sam_golden.case_arrays(results, sam_golden.LOGIT_STRIDE), **sam_golden.mask_input_arrays(results)}
    _save(sam_golden.decoder_path(), arrays, source)


def write_golden(model, name: str, side: int, source: str) -> None:
    pixels = sam_golden.make_pixels(side)
    embeddings = model.image_encoder(torch.from_numpy(sam_golden.input_from_pixels(pixels, side)))
    print(f"  embeddings {list(embeddings.shape)} peak {embeddings.abs().max():.3f}")
    results = sam_golden.run_cases(model.prompt_encoder, model.mask_decoder, embeddings)
    _report(results)
    arrays = {
        "pixels": pixels,
        **sam_golden.embedding_summary(embeddings.numpy()),
        **sam_golden.case_arrays(results, sam_golden.E2E_LOGIT_STRIDE),
        **sam_golden.mask_input_arrays(results),
    }
    _save(sam_golden.golden_path(name), arrays, source)


def main(argv) -> None:
    efficientvit, segment_anything = (Path(arg).resolve() for arg in argv[:2])
    zoo = load_upstream_sam(efficientvit, segment_anything)
    commits = (
        f"mit-han-lab/efficientvit@{commit_of(efficientvit, 'UPSTREAM_COMMIT')} + "
        f"facebookresearch/segment-anything@{commit_of(segment_anything, 'SAM_COMMIT')}"
    )
    torch.set_grad_enabled(False)
    for variant in VARIANTS:
        with torch.device("meta"):
            model = zoo.create_efficientvit_sam_model(f"efficientvit-sam-{variant}", pretrained=False)
        write_manifest(model, HERE / "state_dict_keys" / f"efficientvit-sam-{variant}.tsv.gz")
    for name in sam_golden.GOLDEN_NAMES:
        model = sam_golden.fill_model(zoo.create_efficientvit_sam_model(name, pretrained=False))
        source = f"{commits} sam_model_zoo.create_efficientvit_sam_model({name!r})"
        if name == sam_golden.GOLDEN_NAMES[0]:
            print("decoder (synthetic embeddings):")
            write_decoder(model, source)
        print(f"{name}:")
        write_golden(model, name, 512 if "-sam-l" in name else 1024, source)


if __name__ == "__main__":
    main(sys.argv[1:])
