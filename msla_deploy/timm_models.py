"""`--model timm:NAME`: a model built by timm (pytorch-image-models), e.g. its EfficientViT (MIT)
classifiers `timm:efficientvit_b1.r224_in1k`.

timm is optional and imported only when such a model is built. The model is built with
`timm.create_model(NAME, pretrained=False)`: seeded random weights, or the checkpoint given with
--weights (timm's state-dict names, loaded strictly as any checkpoint); nothing is downloaded.
Its LiteMLA blocks are timm's own (`efficientvit_mit.LiteMLA`), which the plug-and-play swap
(convert.py) replaces like upstream's, keeping timm's eps (1e-5, not upstream's 1e-15) and every
norm's eps as timm sets them.

NAME is one of timm's registered names (`timm.list_models("efficientvit*")`), optionally with
its pretrained tag; hub and file prefixes (`hf-hub:`, `local-dir:`) are refused, since they load
weights and configuration from elsewhere. timm's models are ImageNet classifiers: a timm model's
task is classification (TASK), and a `.rNNN` tag names its resolution (default_resolution).

Torch-free until `build` is called: the command line and the zoo's option defaults import it.
"""

from __future__ import annotations

import re
from typing import Tuple

from .artifact.options import TIMM_PREFIX as PREFIX
from .artifact.options import is_timm_spec  # noqa: F401 (the prefix's test, owned with it)
from .errors import BadInput
from .tasks import CLASSIFICATION

TASK = CLASSIFICATION
DEFAULT_RESOLUTION = (224, 224)
_NAME = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)?")
_RESOLUTION_TAG = re.compile(r"(?:^|_)r(\d+)(?:_|$)")


def timm_name(spec: str) -> str:
    """The timm model name of `timm:NAME` (checked: a registered name, not a hub or file path)."""
    name = spec[len(PREFIX) :]
    if not _NAME.fullmatch(name):
        raise BadInput(
            f"--model {spec}: {name!r} is not a timm model name",
            "use timm:NAME with a name of timm.list_models('efficientvit*'), e.g. timm:efficientvit_b1.r224_in1k",
        )
    return name


def default_resolution(spec: str) -> Tuple[int, int]:
    """The resolution a pretrained tag names (`efficientvit_b1.r224_in1k`: 224 x 224); a name
    without one is 224 x 224, the resolution of every efficientvit_mit model's default tag."""
    _, _, tag = timm_name(spec).partition(".")
    found = _RESOLUTION_TAG.search(tag)
    return (int(found.group(1)), int(found.group(1))) if found else DEFAULT_RESOLUTION


def _import_timm():
    try:
        import timm
    except ModuleNotFoundError as exc:
        if exc.name == "timm":
            raise BadInput("--model timm:...: timm is not installed", "pip install timm") from None
        raise BadInput(f"--model timm:...: importing timm failed: {exc}", "pip install timm torchvision") from None
    except Exception as exc:  # timm imports torchvision, which fails on some torch builds
        raise BadInput(
            f"--model timm:...: importing timm failed: {type(exc).__name__}: {exc}".splitlines()[0],
            "install a timm and torchvision that match this torch",
        ) from None
    return timm


def build(spec: str):
    """timm.create_model(NAME, pretrained=False): an nn.Module with timm's random initialisation
    (seeded by the caller's torch.manual_seed)."""
    name = timm_name(spec)
    timm = _import_timm()
    try:
        return timm.create_model(name, pretrained=False)
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        close = [m for m in timm.list_models(name.split(".")[0].rsplit("_", 1)[0] + "*")][:5]
        hint = f"timm has: {', '.join(close)}" if close else "see timm.list_models('efficientvit*')"
        raise BadInput(f"--model {spec}: timm cannot build {name!r} ({str(exc).splitlines()[0]})", hint) from None
