"""`build`, the library side: options -> input -> plan -> (trtexec command | engine + record).

Order of checks: everything that can be judged without TensorRT first (bad options and
impossible plans are exit 2 even on a machine without TensorRT), then TensorRT (exit 3 when
missing), then the GPU (exit 3), then the build.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from .. import __version__
from ..artifact.builds import BuildRecord, BuildsFile, DlaBuild, FileEntry, Fp32Layers, OnnxEntry, TimingCacheEntry
from ..artifact.files import environment, sha256_file, write_bytes_atomic
from ..artifact.graphs import ENCODER
from ..artifact.manifest import read_manifest, write_manifest
from ..artifact.names import BUILD_RECORD_NAME, MANIFEST_NAME
from ..errors import BadInput
from ..progress import Steps
from . import versions as V
from .dla import Preflight, preflight
from .inputs import ModelInput, graph_roles, load_graph, load_model_input
from .options import BuildOptions
from .plan import BuildPlan, input_profiles, make_plan, resolve_options
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


def _trtexec_version(options: BuildOptions, installed_version: Callable[[], Optional[str]]) -> V.TrtVersion:
    if options.trt_version != "auto":
        return V.parse_version(options.trt_version)
    text = installed_version()
    if text is None:
        raise BadInput(
            "--print-trtexec needs --trt-version X.Y when TensorRT is not installed",
            "name the device's TensorRT, e.g. --trt-version 8.6 (JetPack 6.0), 10.3 (JetPack 6.1/6.2), 10.13 "
            "(JetPack 7.0/7.1)",
        )
    return V.parse_version(text)


def plan_for_trtexec(options: BuildOptions, installed_version: Callable[[], Optional[str]]) -> PlannedBuild:
    """The plan behind --print-trtexec: --trt-version, else the installed TensorRT, else BadInput."""
    options.check()
    model = load_model_input(options.source)
    options = resolve_options(options, model)
    options.check()
    return _planned(options, model, _trtexec_version(options, installed_version))


def plan_for_runtime(
    source: Path, version: Union[str, V.TrtVersion], graph: Optional[str] = None, **options: Any
) -> BuildPlan:
    """The plan `build` makes with default options for the installed TensorRT `version`.

    For validate and bench, which build an engine from an export themselves: the version is
    decided first and the graph follows from it, in this one place. On 8.5-10.11 an fp16 export
    is built weakly typed from model_fp32.onnx with the FP16 flag and the export's fp32 nodes
    pinned; on 10.12+ and 11.x strongly typed from the mixed-precision model.onnx (TensorRT 8.x
    has no strong typing at all: Polygraphy's strongly_typed=True raises there). A plan that
    cannot be made (a bare mixed-precision ONNX on 8.x, dynamic shapes) is BadInput with the fix.
    `options` are BuildOptions fields (out=..., timing_cache=...) for callers that need them.
    `graph` names one graph of a multi-graph artifact (SAM: "encoder" or "decoder"; the decoder's
    plan carries its optimisation profile): the engine `build` makes of that graph.
    """
    version = version if isinstance(version, V.TrtVersion) else V.parse_version(str(version))
    built = BuildOptions(source=Path(source), trt_version=version.text, **options)
    built.check()
    model = load_model_input(built.source, graph)
    resolved = resolve_options(built, model)
    resolved.check()
    return make_plan(resolved, model, version)


def build_for_runtime(
    trt, source: Path, steps: Optional[Steps] = None, logger=None, graph: Optional[str] = None, **options: Any
) -> Tuple[BuildPlan, Any]:
    """plan_for_runtime for the installed `trt`, then engine.build_engine (nothing written): (plan, EngineBuild).

    The ONNX node names go to the layer pinning, as `build` passes them; load the result with
    runtime.deserialize_engine(trt, built.engine, version_compatible=plan.version_compatible, dla_core=plan.dla_core).
    """
    from .engine import build_engine

    plan = plan_for_runtime(source, str(trt.__version__), graph, **options)
    facts = load_model_input(Path(source), graph).graphs.get(plan.onnx_role)
    return plan, build_engine(trt, plan, steps, facts.node_names if facts is not None else (), logger=logger)


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


def graph_roles_of(source: Path) -> List[str]:
    """The graphs of a multi-graph artifact (SAM: ["encoder", "decoder"]); [] for anything else
    (a single-graph export, a bare ONNX, a path that is not there: load_model_input says what it is)."""
    from ..artifact.manifest import read_manifest_if_any

    source = Path(source)
    folder = source.parent if source.name == MANIFEST_NAME else source
    manifest = read_manifest_if_any(folder) if folder.is_dir() else None
    return graph_roles(manifest) if manifest is not None else []


#: the graphs `--precision` applies to; the others build at the precision they were exported in
#: (SAM's prompt decoder is exported fp32 only: tiny next to the encoder, and its fp16 gains nothing)
PRECISION_GRAPHS = (ENCODER,)


def graph_jobs(options: BuildOptions) -> List[Tuple[BuildOptions, ModelInput]]:
    """One (options, graph) per graph of a multi-graph artifact, options resolved for each graph."""
    options.check()
    roles = graph_roles_of(options.source)
    source = Path(options.source)
    source = source.parent if source.name == MANIFEST_NAME else source
    if options.out is not None:
        raise BadInput(
            f"--out names one engine; {source} has {len(roles)} graphs ({', '.join(roles)}), an engine each",
            "drop --out: the engines are named <graph>_<precision>_trt<X.Y>.engine in the artifact directory",
        )
    manifest = read_manifest(source)
    dynamic = [g.role for g in manifest.graphs if g.dynamic]
    if options.dla_core is not None and dynamic:
        raise BadInput(
            f"--dla-core: DLA needs static shapes, and {source}'s {' and '.join(dynamic)} graph has dynamic "
            f"dimensions ({', '.join(d for g in manifest.graphs for d in g.profile)})",
            "drop --dla-core to build every graph for the GPU",
        )
    jobs = []
    for role in roles:
        model = load_graph(source, role, manifest)
        asked = options if role in PRECISION_GRAPHS else dataclasses.replace(options, precision=None)
        resolved = resolve_options(asked, model)
        resolved.check()
        jobs.append((resolved, model))
    return jobs


def plan_graphs_for_trtexec(
    options: BuildOptions, installed_version: Callable[[], Optional[str]]
) -> List[PlannedBuild]:
    """--print-trtexec for a multi-graph artifact: one plan per graph, for one TensorRT version."""
    jobs = graph_jobs(options)
    version = _trtexec_version(options, installed_version)
    return [_planned(graph_options, model, version) for graph_options, model in jobs]


def run_build(
    options: BuildOptions,
    steps: Optional[Steps] = None,
    on_plan: Optional[Callable[[PlannedBuild], None]] = None,
    trt=None,
    gpu_probe: Optional[Callable[[], Any]] = None,
) -> BuildResult:
    """`_run_builds` of a single-graph export or a bare ONNX, holding the export directory's write
    lock (one writer at a time: an export must not swap the directory under a build that will add
    its engine and record)."""

    def jobs() -> List[Tuple[BuildOptions, ModelInput]]:
        options.check()
        model = load_model_input(options.source)
        resolved = resolve_options(options, model)
        resolved.check()
        return [(resolved, model)]

    return _locked(options, lambda: _run_builds(jobs(), options, steps, on_plan, trt, gpu_probe))[0]


def run_graph_builds(
    options: BuildOptions,
    steps: Optional[Steps] = None,
    on_plan: Optional[Callable[[PlannedBuild], None]] = None,
    trt=None,
    gpu_probe: Optional[Callable[[], Any]] = None,
) -> List[BuildResult]:
    """An engine per graph of a multi-graph artifact (SAM: encoder, then decoder with its
    optimisation profile), each recorded in the manifest as it is written; under the directory's
    write lock. Every plan is checked before TensorRT is looked for, so a bad option builds nothing."""
    return _locked(options, lambda: _run_builds(graph_jobs(options), options, steps, on_plan, trt, gpu_probe))


def _locked(options: BuildOptions, work: Callable[[], List[BuildResult]]) -> List[BuildResult]:
    import contextlib

    from ..artifact.lock import directory_lock
    from ..artifact.staging import real_target

    source = Path(options.source)
    with directory_lock(real_target(source, "build")) if source.is_dir() else contextlib.nullcontext():
        return work()


def _run_builds(
    jobs: List[Tuple[BuildOptions, ModelInput]],
    options: BuildOptions,
    steps: Optional[Steps] = None,
    on_plan: Optional[Callable[[PlannedBuild], None]] = None,
    trt=None,
    gpu_probe: Optional[Callable[[], Any]] = None,
) -> List[BuildResult]:
    """Build each job's engine on this machine's TensorRT and GPU; write engine, layer info, timing
    cache, record.

    `on_plan` is called with each plan (and the DLA forecast) before its long build starts.
    `trt` and `gpu_probe` are for tests; by default TensorRT is imported and the GPU probed.
    """
    from .runtime import import_tensorrt, probe_gpu

    steps = steps or Steps()
    asked = V.parse_version(options.trt_version) if options.trt_version != "auto" else None
    for job_options, model in jobs:
        if asked is not None:
            _planned(job_options, model, asked)  # an impossible plan is exit 2, even without TensorRT
        for graph in model.graphs.values():
            # the batch and its profile need no version: exit 2 before TensorRT is looked for
            input_profiles(model, graph, job_options.opt_batch, job_options.dla_core is not None)
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
    results = []
    for job_options, model in jobs:
        planned = _planned(job_options, model, installed)
        if on_plan is not None:
            on_plan(planned)
        if len(jobs) > 1:
            steps.timings.clear()  # each graph's record keeps its own steps' times
        results.append(_build_one(trt, gpu, planned, steps))
    return results


def _build_one(trt, gpu, planned: PlannedBuild, steps: Steps) -> BuildResult:
    from .engine import build_engine
    from .runtime import cuda_runtime_version, tensorrt_distribution

    plan, model, options = planned.plan, planned.model, planned.options
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
        graph=model.graph.role if model.graph is not None else None,
    )
    record_path = append_record(model, plan, record)
    return BuildResult(planned, record, record_path)
