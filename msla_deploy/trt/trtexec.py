"""The trtexec command line equivalent to a build plan, for the TensorRT version of the plan.

This is how a Jetson user without our Python stack builds: copy the artifact directory, cd into
it, run the printed command (JetPack puts trtexec in /usr/src/tensorrt/bin/). Paths are relative
to the artifact directory where they lie inside it.

Per-version differences (every flag's versions are in versions.TRTEXEC_FLAGS, with sources):
- --memPoolSize=workspace:N is printed as a plain number of MiB, which every version reads the
  same; a suffixed "1024M" is scaled twice by trtexec 10.0.x (see versions.TRTEXEC_FLAGS).
  --workspace=N (MiB) is deprecated by --memPoolSize already in 8.5 and gone in 10.0, so it is
  never printed.
- 8.5 has --buildOnly where 8.6+ has --skipInference (--buildOnly is gone from 10.0).
- weak typing (< 11.0): --fp16 --precisionConstraints=obey --layerPrecisions=L:fp32,...
  --layerOutputTypes=L:fp32,...; 11.x has none of these flags.
- strong typing: --stronglyTyped on 9.0-10.x, never with --fp16; on 11.x every network is
  strongly typed and the flag is a deprecated no-op, so it is left out.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import List, Optional

from ..errors import BadInput
from . import versions as V
from .plan import BuildPlan

TRTEXEC = "trtexec"
JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
MIB = 1 << 20


def display_path(path: Path, root: Optional[Path]) -> str:
    """Relative to the artifact directory when inside it (the user copies that directory)."""
    path = Path(path)
    if root is not None:
        try:
            return (
                Path(os.path.relpath(path.resolve(), Path(root).resolve())).as_posix()
                if _inside(path, root)
                else str(path)
            )
        except ValueError:  # another drive on Windows
            return str(path)
    return str(path)


def _inside(path: Path, root: Path) -> bool:
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
        return True
    except ValueError:
        return False


def _mib(nbytes: int) -> str:
    if nbytes % MIB == 0:
        return str(nbytes // MIB)
    return f"{nbytes / MIB:.4f}".rstrip("0").rstrip(".")


def _layer_spec(pairs) -> str:
    for name, _ in pairs:
        if any(ch in name for ch in ",:") or not name:
            raise BadInput(
                f"layer name {name!r} cannot be written in a trtexec --layerPrecisions spec (',' and ':' are "
                "separators)",
                "build with `msla-deploy build` (Python API), or re-export so node names have no ',' or ':'",
            )
    return ",".join(f"{name}:{precision}" for name, precision in pairs)


def trtexec_argv(  # noqa: C901 (one flat `if` per trtexec flag: read best as one list)
    plan: BuildPlan, trtexec: str = TRTEXEC, relative_to: Optional[Path] = None
) -> List[str]:
    """argv for the plan's TensorRT version; paths relative to `relative_to` (default: the artifact dir)."""
    version = plan.version
    root = plan.root if relative_to is None else relative_to

    def p(path: Path) -> str:
        return display_path(path, root)

    argv = [trtexec, f"--onnx={p(plan.onnx)}", f"--saveEngine={p(plan.engine)}"]
    if plan.typing == "strong" and V.has("strongly_typed_flag", version):
        argv.append("--stronglyTyped")
    if plan.int8_flag:
        argv.append("--int8")
    if plan.fp16_flag:
        argv.append("--fp16")
    if plan.obey_precision_constraints:
        argv.append("--precisionConstraints=obey")
        if plan.layer_precisions:
            argv.append(f"--layerPrecisions={_layer_spec(plan.layer_precisions)}")
        if plan.layer_output_types:
            argv.append(f"--layerOutputTypes={_layer_spec(plan.layer_output_types)}")
    if plan.profiles:  # a dynamic batch: the profile, in trtexec's name:NxCxHxW spelling
        for flag, which in (("--minShapes", "min"), ("--optShapes", "opt"), ("--maxShapes", "max")):
            argv.append(
                f"{flag}=" + ",".join(f"{p.name}:" + "x".join(str(d) for d in getattr(p, which)) for p in plan.profiles)
            )
    if not plan.tf32:
        argv.append("--noTF32")
    argv.append(f"--memPoolSize=workspace:{_mib(plan.workspace_bytes)}")  # plain MiB: never a suffix (10.0.x)
    argv.append(f"--timingCacheFile={p(plan.timing_cache)}")
    if plan.opt_level is not None:
        argv.append(f"--builderOptimizationLevel={plan.opt_level}")
    if plan.hardware_compat != "none":
        argv.append(f"--hardwareCompatibilityLevel={V.HARDWARE_COMPAT_TRTEXEC[plan.hardware_compat]}")
    if plan.version_compatible:
        argv.append("--versionCompatible")
    if plan.dla_core is not None:
        argv.append(f"--useDLACore={plan.dla_core}")
        if plan.gpu_fallback:
            argv.append("--allowGPUFallback")
        if plan.layer_device_types and V.trtexec_has("--layerDeviceTypes", version):
            argv.append(f"--layerDeviceTypes={_layer_spec(plan.layer_device_types)}")
    argv.append(f"--profilingVerbosity={plan.profiling_verbosity}")
    argv.append(f"--exportLayerInfo={p(plan.layer_info)}")
    argv.append("--skipInference" if V.trtexec_has("--skipInference", version) else "--buildOnly")

    for arg in argv[1:]:  # a flag this version's trtexec lacks is our bug, never the user's
        flag = arg.split("=", 1)[0]
        if not V.trtexec_has(flag, version):
            raise AssertionError(f"trtexec {version} has no {flag}")
    return argv


def trtexec_command(argv: List[str]) -> str:
    return shlex.join(argv)
