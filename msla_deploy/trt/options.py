"""`build` options, parsed and checked before anything is read or built.

Checks here need no TensorRT and no version: they are wrong for every version (an opt level of
9, a workspace of "banana", DLA in fp32). Version-dependent checks live in plan.py.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from ..choices import HARDWARE_COMPAT, PRECISIONS, TYPINGS  # noqa: F401 (int8: an int8 export's Q/DQ graph)
from ..errors import BadInput

MAX_OPT_LEVEL = 5  # IBuilderConfig::setBuilderOptimizationLevel: 0..5, default 3 (docs/facts/tensorrt.md#build-api)
DEFAULT_WORKSPACE = 1 << 30  # 1 GiB: a limit, not an allocation; plenty for EfficientViT-Seg tactics

_UNITS = {"": 1 << 20, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str, option: str = "--workspace") -> int:
    """'1G', '512M', '1536MiB', '0.5GiB', '2048' (MiB, as trtexec reads a bare number) -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", text or "")
    if not match:
        raise BadInput(f"{option} {text!r} is not a size", "write it like 1G, 512M or 2048 (a bare number is MiB)")
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size < (1 << 20):
        raise BadInput(f"{option} {text} is below 1 MiB", "give TensorRT at least a few hundred MiB, e.g. 1G")
    return size


@dataclass(frozen=True)
class BuildOptions:
    source: Path  # an export directory or an .onnx file
    precision: Optional[str] = None  # None: the export's precision
    typing: str = "auto"
    trt_version: str = "auto"  # "auto": the installed TensorRT
    workspace: Optional[str] = None  # text as given; parsed by workspace_bytes
    timing_cache: Optional[Path] = None
    opt_level: Optional[int] = None
    dla_core: Optional[int] = None
    gpu_fallback: Optional[bool] = None  # None: on with DLA
    hardware_compat: str = "none"
    version_compatible: bool = False
    tf32: Optional[bool] = None  # None: off (see plan.py)
    out: Optional[Path] = None
    opt_batch: Optional[int] = None  # dynamic-batch exports: the batch TensorRT tunes for (default: the largest)

    @property
    def workspace_bytes(self) -> int:
        return DEFAULT_WORKSPACE if self.workspace is None else parse_size(self.workspace)

    def check(self) -> None:
        for option, value, allowed in (
            ("--precision", self.precision or "fp32", PRECISIONS),
            ("--typing", self.typing, TYPINGS),
            ("--hardware-compat", self.hardware_compat, HARDWARE_COMPAT),
        ):
            if value not in allowed:
                raise BadInput(f"{option} {value!r} is not one of {', '.join(allowed)}", f"use {option} {allowed[0]}")
        if self.trt_version != "auto":
            from .versions import parse_version

            parse_version(self.trt_version)
        _ = self.workspace_bytes  # parses (BadInput on a bad size)
        if self.opt_level is not None and not 0 <= self.opt_level <= MAX_OPT_LEVEL:
            raise BadInput(
                f"--opt-level {self.opt_level} is outside 0..{MAX_OPT_LEVEL}",
                "TensorRT's builder optimization level is 0-5 (default 3); 5 searches longest",
            )
        if self.dla_core is not None:
            if self.dla_core < 0:
                raise BadInput(f"--dla-core {self.dla_core} is negative", "Orin has DLA cores 0 and 1")
            if self.precision == "fp32":
                raise BadInput(
                    "--dla-core with --precision fp32: DLA runs fp16 and int8 only",
                    "add --precision fp16, or drop --dla-core to build for the GPU",
                )
        elif self.gpu_fallback:
            raise BadInput("--gpu-fallback applies only to DLA builds", "add --dla-core N, or drop --gpu-fallback")
        if self.timing_cache is not None and Path(self.timing_cache).is_dir():
            raise BadInput(f"--timing-cache {self.timing_cache} is a directory", "name a file, e.g. timing.cache")
        if self.out is not None and Path(self.out).is_dir():
            raise BadInput(f"--out {self.out} is a directory", "name the engine file, e.g. model.engine")

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        for key in ("source", "timing_cache", "out"):
            data[key] = None if data[key] is None else str(data[key])
        return data
