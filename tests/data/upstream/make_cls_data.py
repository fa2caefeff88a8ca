"""Remake the classification data in tests/data/upstream/ from upstream EfficientViT's own code.

    PYTHONPATH=<this checkout> python tests/data/upstream/make_cls_data.py <upstream checkout> [names...]

<upstream checkout>: a checkout of https://github.com/mit-han-lab/efficientvit (the files were made
at commit de7d773). Writes, for the classifiers upstream's cls_model_zoo.py registers:

- state_dict_keys/efficientvit-<variant>.tsv.gz for b0, b1, b2, b3, l1, l2, l3: upstream's
  state_dict() (keys do not depend on the resolution), one row per key in upstream's order,
  columns key, shape (AxB, or scalar) and dtype, gzip'd without name or time stamp;
- cls/<zoo name>.npz for the models named (default: tests/zoo/cls_golden.py GOLDEN_NAMES):
  upstream's model with its zoo's norm eps, filled by tests/zoo/cls_golden.py fill_state_dict,
  in eval mode, run in float32 on the CPU on the recipe's input; arrays `pixels` (uint8, the
  input before input_from_pixels), `logits` (float32 [2, 1000]), `recipe` (JSON) and `upstream`.

Not a test and not needed by one: the tests read only the files it wrote. Upstream's package
imports triton, torchvision, omegaconf and segment_anything at import time; only the modules the
classifiers need are loaded here, with inert stand-ins for triton (used only by a kernel the
classifiers never call) and for the trainer's Scheduler (read only when training with drop-path).
"""

from __future__ import annotations

import gzip
import importlib
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch

from tests.zoo import cls_golden

HERE = Path(__file__).resolve().parent
VARIANTS = ("b0", "b1", "b2", "b3", "l1", "l2", "l3")


class _Inert(types.ModuleType):
    """A module whose every attribute is a no-op decorator/placeholder (stands in for triton)."""

    def __getattr__(self, name):
        return _inert

    def __call__(self, *args, **kwargs):
        return args[0] if len(args) == 1 and callable(args[0]) and not kwargs else _inert


def _inert(*args, **kwargs):
    return args[0] if len(args) == 1 and callable(args[0]) and not kwargs else _inert


def load_upstream_zoo(checkout: Path):
    """upstream's efficientvit.cls_model_zoo, importing only what the classifiers need."""
    sys.path.insert(0, str(checkout))
    triton = _Inert("triton")
    triton.language = _Inert("triton.language")
    sys.modules.update({"triton": triton, "triton.language": triton.language})
    # bare packages: their __init__ files import the SAM and DC-AE models (torchvision, omegaconf)
    for package in ("efficientvit", "efficientvit.models", "efficientvit.models.efficientvit"):
        module = types.ModuleType(package)
        module.__path__ = [str(checkout / package.replace(".", "/"))]
        sys.modules[package] = module
    # models/nn/drop.py imports the trainer's Scheduler (torchvision behind it) for drop-path training
    for package in ("efficientvit.apps", "efficientvit.apps.trainer", "efficientvit.apps.trainer.run_config"):
        sys.modules[package] = types.ModuleType(package)
    sys.modules["efficientvit.apps.trainer.run_config"].Scheduler = type("Scheduler", (), {})
    classifiers = importlib.import_module("efficientvit.models.efficientvit.cls")
    vars(sys.modules["efficientvit.models.efficientvit"]).update(
        {name: getattr(classifiers, name) for name in classifiers.__all__}
    )
    return importlib.import_module("efficientvit.cls_model_zoo")


def commit_of(checkout: Path) -> str:
    """The checkout's commit; UPSTREAM_COMMIT names it for a tree exported without .git."""
    if os.environ.get("UPSTREAM_COMMIT"):
        return os.environ["UPSTREAM_COMMIT"]
    try:
        return subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_manifest(model: torch.nn.Module, path: Path) -> None:
    rows = ["key\tshape\tdtype"]
    for key, value in model.state_dict().items():
        shape = "x".join(str(s) for s in value.shape) if value.dim() else "scalar"
        rows.append(f"{key}\t{shape}\t{str(value.dtype).replace('torch.', '')}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
        f.write(("\n".join(rows) + "\n").encode("utf-8"))


def write_golden(zoo, name: str, commit: str) -> None:
    model = zoo.create_efficientvit_cls_model(name, pretrained=False)
    cls_golden.fill_model(model)
    resolution = int(name.rsplit("-r", 1)[1]) if "-r" in name else 224
    pixels = cls_golden.make_pixels(2, resolution)
    with torch.no_grad():
        logits = model(torch.from_numpy(cls_golden.input_from_pixels(pixels))).numpy()
    path = cls_golden.golden_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        pixels=pixels,
        logits=logits.astype(np.float32),
        recipe=np.array(json.dumps(cls_golden.recipe(), sort_keys=True)),
        upstream=np.array(f"mit-han-lab/efficientvit@{commit} cls_model_zoo.create_efficientvit_cls_model({name!r})"),
    )
    top = np.sort(logits, axis=1)
    print(
        f"{name}: logits peak {np.abs(logits).max():.3f}, top-1 {logits.argmax(1).tolist()}, gap {top[:, -1] - top[:, -2]}"
    )


def main(argv) -> None:
    checkout = Path(argv[0]).resolve()
    names = argv[1:] or list(cls_golden.GOLDEN_NAMES)
    zoo = load_upstream_zoo(checkout)
    commit = commit_of(checkout)
    torch.set_grad_enabled(False)
    for variant in VARIANTS:
        with torch.device("meta"):
            model = zoo.create_efficientvit_cls_model(f"efficientvit-{variant}", pretrained=False)
        write_manifest(model, HERE / "state_dict_keys" / f"efficientvit-{variant}.tsv.gz")
    for name in names:
        write_golden(zoo, name, commit)


if __name__ == "__main__":
    main(sys.argv[1:])
