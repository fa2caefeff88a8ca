"""`build`, the library side: options -> input -> plan -> (trtexec command | engine + record).

Order of checks: everything that can be judged without TensorRT first (bad options and
impossible plans are exit 2 even on a machine without TensorRT), then TensorRT (exit 3 when
missing), then the GPU (exit 3), then the build.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from .. import __version__
from ..artifact.builds import BuildRecord, BuildsFile, DlaBuild, FileEntry, Fp32Layers, OnnxEntry, TimingCacheEntry
from ..artifact.files import environment, sha256_file, write_bytes_atomic
from ..artifact.manifest import read_manifest, write_manifest
from ..artifact.names import BUILD_RECORD_NAME
from ..errors import BadInput
from ..progress import Steps
from . import versions as V
from .dla import Preflight, preflight
from .inputs import ModelInput, load_model_input
from .options import BuildOptions
from .plan import BuildPlan, batch_profiles, make_plan, resolve_options
from .trtexec import display_path, trtexec_argv, trtexec_command


@dataclass
class PlannedBuild:
    options: BuildOptions
    model: ModelInput
    plan: BuildPlan
    preflight: Optional[Preflight]  # DLA builds only

    @property
    def argv(self) -> List[str]:
        return trtexec_argv(self.plan)

    @property
    def command(self) -> str:
        return trtexec_command(self.argv)


@dataclass
class BuildResult:
    planned: PlannedBuild
    record: BuildRecord
    record_path: Path  # the manifest.json or build.json that holds it

    @property
    def plan(self) -> BuildPlan:
        return self.planned.plan


def _planned(options: BuildOptions, model: ModelInput, version: V.TrtVersion) -> PlannedBuild:
    plan = make_plan(options, model, version)
    # the pinned layers; strongly typed, an int8 export's fp32 nodes (nothing pins them; the Q/DQ say the rest)
    fp32 = [name for name, _ in plan.layer_precisions] or (list(model.fp32_nodes) if plan.onnx_role == "int8" else [])
    checked = preflight(plan.onnx, fp32, strongly_typed=plan.typing == "strong") if plan.uses_dla else None
    if checked is not None and checked.problems:
        raise BadInput(
            f"DLA: {checked.problems[0]}",
            "export with static shapes no larger than 8192 per dimension, or drop --dla-core",
        )
    return PlannedBuild(options, model, plan, checked)


def plan_for_trtexec(options: BuildOptions, installed_version: Callable[[], Optional[str]]) -> PlannedBuild:
    """The plan behind --print-trtexec: --trt-version, else the installed TensorRT, else BadInput."""
    options.check()
    model = load_model_input(options.source)
    options = resolve_options(options, model)
    options.check()
    if options.trt_version != "auto":
        version = V.parse_version(options.trt_version)
    else:
        text = installed_version()
        if text is None:
            raise BadInput(
                "--print-trtexec needs --trt-version X.Y when TensorRT is not installed",
                "name the device's TensorRT, e.g. --trt-version 8.6 (JetPack 6.0), 10.3 (JetPack 6.1/6.2), 10.13 "
                "(JetPack 7.0/7.1)",
            )
        version = V.parse_version(text)
    return _planned(options, model, version)


def plan_for_runtime(source: Path, version: Union[str, V.TrtVersion], **options: Any) -> BuildPlan:
    """The plan `build` makes with default options for the installed TensorRT `version`.

    For validate and bench, which build an engine from an export themselves: the version is
    decided first and the graph follows from it, in this one place. On 8.5-10.11 an fp16 export
    is built weakly typed from model_fp32.onnx with the FP16 flag and the export's fp32 nodes
    pinned; on 10.12+ and 11.x strongly typed from the mixed-precision model.onnx (TensorRT 8.x
    has no strong typing at all: Polygraphy's strongly_typed=True raises there). A plan that
    cannot be made (a bare mixed-precision ONNX on 8.x, dynamic shapes) is BadInput with the fix.
    `options` are BuildOptions fields (out=..., timing_cache=...) for callers that need them.
    """
    version = version if isinstance(version, V.TrtVersion) else V.parse_version(str(version))
    built = BuildOptions(source=Path(source), trt_version=version.text, **options)
    built.check()
    model = load_model_input(built.source)
    resolved = resolve_options(built, model)
    resolved.check()
    return make_plan(resolved, model, version)


def build_for_runtime(
    trt, source: Path, steps: Optional[Steps] = None, logger=None, **options: Any
) -> Tuple[BuildPlan, Any]:
    """plan_for_runtime for the installed `trt`, then engine.build_engine (nothing written): (plan, EngineBuild).

    The ONNX node names go to the layer pinning, as `build` passes them; load the result with
    runtime.deserialize_engine(trt, built.engine, version_compatible=plan.version_compatible, dla_core=plan.dla_core).
    """
    from .engine import build_engine

    plan = plan_for_runtime(source, str(trt.__version__), **options)
    graph = load_model_input(Path(source)).graphs.get(plan.onnx_role)
    return plan, build_engine(trt, plan, steps, graph.node_names if graph is not None else (), logger=logger)


def _file_entry(path: Path, root: Path, kind=FileEntry, **more: Any) -> FileEntry:
    return kind(file=display_path(path, root), sha256=sha256_file(path), bytes=path.stat().st_size, **more)


def _plan_record(plan: BuildPlan) -> Dict[str, Any]:
    data = plan.to_dict()
    for key in ("onnx", "engine", "layer_info", "timing_cache"):
        data[key] = display_path(Path(data[key]), plan.root)
    return data


def append_record(model: ModelInput, plan: BuildPlan, record: BuildRecord) -> Path:
    """Add the record to the export's manifest ("builds"), or to build.json beside the engine."""
    if model.kind == "directory":
        manifest = read_manifest(model.root)  # re-read: another stage may have written since
        manifest.builds.append(record)
        return write_manifest(model.root, manifest)
    builds = BuildsFile.read_beside(Path(plan.engine)) or BuildsFile(onnx=str(model.source))
    builds.builds.append(record)
    return builds.write(Path(plan.engine).parent / BUILD_RECORD_NAME)


def run_build(
    options: BuildOptions,
    steps: Optional[Steps] = None,
    on_plan: Optional[Callable[[PlannedBuild], None]] = None,
    trt=None,
    gpu_probe: Optional[Callable[[], Any]] = None,
) -> BuildResult:
    """`_run_build` holding the export directory's write lock (one writer at a time: an export
    must not swap the directory under a build that will add its engine and record)."""
    import contextlib

    from ..artifact.lock import directory_lock
    from ..artifact.staging import real_target

    source = Path(options.source)
    with directory_lock(real_target(source, "build")) if source.is_dir() else contextlib.nullcontext():
        return _run_build(options, steps, on_plan, trt, gpu_probe)


def _run_build(
    options: BuildOptions,
    steps: Optional[Steps] = None,
    on_plan: Optional[Callable[[PlannedBuild], None]] = None,
    trt=None,
    gpu_probe: Optional[Callable[[], Any]] = None,
) -> BuildResult:
    """Build the engine on this machine's TensorRT and GPU; write engine, layer info, timing cache, record.

    `on_plan` is called with the plan (and the DLA forecast) before the long build starts.
    `trt` and `gpu_probe` are for tests; by default TensorRT is imported and the GPU probed.
    """
    from .engine import build_engine
    from .runtime import cuda_runtime_version, import_tensorrt, probe_gpu, tensorrt_distribution

    steps = steps or Steps()
    options.check()
    model = load_model_input(options.source)
    options = resolve_options(options, model)
    options.check()
    asked = V.parse_version(options.trt_version) if options.trt_version != "auto" else None
    if asked is not None:
        _planned(options, model, asked)  # an impossible plan is exit 2, even without TensorRT
    for graph in model.graphs.values():
        # the batch and its profile need no version: exit 2 before TensorRT is looked for
        batch_profiles(graph.inputs, graph.max_batch, options.opt_batch, model.source, options.dla_core is not None)
    trt = trt if trt is not None else import_tensorrt()
    installed = V.parse_version(str(trt.__version__))
    if asked is not None and asked.key != installed.key:
        raise BadInput(
            f"--trt-version {asked} but TensorRT {installed.text} is installed: an engine only runs on the TensorRT "
            "that built it",
            "drop --trt-version to build with the installed TensorRT, or add --print-trtexec to get the command for "
            "the other version",
        )
    gpu = (gpu_probe or probe_gpu)()
    planned = _planned(options, model, installed)
    plan = planned.plan
    if on_plan is not None:
        on_plan(planned)

    started = time.perf_counter()
    graph = model.graphs.get(plan.onnx_role)
    built = build_engine(trt, plan, steps, graph.node_names if graph is not None else ())
    seconds = time.perf_counter() - started

    with steps.step("write", "Writing the engine, its layer information and the timing cache"):
        write_bytes_atomic(Path(plan.engine), built.engine)
        if built.layer_info is not None:
            write_bytes_atomic(Path(plan.layer_info), built.layer_info.encode())
        if built.timing_cache is not None:
            write_bytes_atomic(Path(plan.timing_cache), built.timing_cache)

    root = plan.root
    record = BuildRecord(
        created_unix=round(time.time(), 3),
        tool={"name": "msla-deploy", "version": __version__},
        engine=_file_entry(Path(plan.engine), root),
        layer_info=_file_entry(Path(plan.layer_info), root) if built.layer_info is not None else None,
        timing_cache=_file_entry(Path(plan.timing_cache), root, TimingCacheEntry, loaded=built.timing_cache_loaded)
        if built.timing_cache is not None
        else None,
        onnx=_file_entry(Path(plan.onnx), root, OnnxEntry, role=plan.onnx_role),
        precision=plan.precision,
        typing=plan.typing,
        options=options.to_dict(),
        plan=_plan_record(plan),
        trtexec_equivalent=planned.command,
        tensorrt={"version": str(trt.__version__), "distribution": tensorrt_distribution()},
        cuda={"driver_version": getattr(gpu, "driver_cuda_version", None), "runtime_version": cuda_runtime_version()},
        gpu=gpu.to_dict() if hasattr(gpu, "to_dict") else gpu,
        fp32_layers=Fp32Layers(pinned=list(built.pinned_layers), unmatched_nodes=list(built.unmatched_fp32_nodes)),
        dla=None
        if not plan.uses_dla
        else DlaBuild(
            core=plan.dla_core,
            gpu_fallback=plan.gpu_fallback,
            forecast=planned.preflight.to_dict() if planned.preflight is not None else None,
            tensorrt_gpu_layers=built.dla_fallback_layers,
        ),
        warnings=list(plan.warnings),
        notes=list(built.notes),
        build_seconds=round(seconds, 3),
        timings_s=dict(steps.timings),
        environment=environment(),
    )
    record_path = append_record(model, plan, record)
    return BuildResult(planned, record, record_path)
