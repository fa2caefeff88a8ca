"""Apply a BuildPlan to the TensorRT Python API. Decides nothing: every choice is in the plan.

The `trt` module is passed in (runtime.import_tensorrt() in production, a recording fake in the
tests), so the tests prove which API a plan touches on 8.6, 10.x and 11.x: a weakly typed plan
uses BuilderFlag.FP16 / OBEY_PRECISION_CONSTRAINTS / layer.precision / set_output_type; a
strongly typed plan touches none of them (they raise AttributeError on 11.x).

Why the raw API and not Polygraphy's loaders: CreateConfig(use_dla=True) always selects DLA core
0 and adds PREFER_PRECISION_CONSTRAINTS by itself below 11.0, it has no per-layer output types,
and Polygraphy is not part of the base install on a Jetson. The calls below are the ones its
loaders make (builder, network flags, OnnxParser.parse_from_file, create_builder_config,
memory pool, timing cache, build_serialized_network), in a dozen lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, List, Optional, Tuple

from ..errors import BadInput, CheckFailed, MissingRuntime
from ..progress import Steps
from . import versions as V
from .plan import BuildPlan


@dataclass
class EngineBuild:
    engine: bytes
    timing_cache: Optional[bytes]
    timing_cache_loaded: bool
    layer_info: Optional[str]  # JSON text from IEngineInspector, None where unavailable
    pinned_layers: List[str] = field(default_factory=list)
    unmatched_fp32_nodes: List[str] = field(default_factory=list)
    dla_fallback_layers: Optional[List[str]] = None  # TensorRT's own answer (can_run_on_DLA)
    notes: List[str] = field(default_factory=list)


def _bytes(buffer: Any) -> bytes:
    return bytes(memoryview(buffer))


def create_network(trt, plan: BuildPlan, logger) -> Tuple[Any, Any, Any]:
    """Builder, network (with the plan's creation flags) and a parser that has read the ONNX."""
    builder = trt.Builder(logger)
    flags = 0
    if plan.explicit_batch_flag:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if plan.strongly_typed_flag:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(plan.onnx)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BadInput(
            f"TensorRT {plan.trt_version} could not parse {Path(plan.onnx).name}: "
            + ("; ".join(errors[:3]) or "no error text"),
            f"check the opset (TensorRT {plan.trt_version} parses up to {V.parser_max_opset(plan.version)}) and "
            "re-export",
        )
    return builder, network, parser


def _layers(network) -> Iterable[Any]:
    for i in range(network.num_layers):
        yield network.get_layer(i)


def pin_layers(trt, network, plan: BuildPlan, onnx_node_names: Iterable[str] = ()) -> Tuple[List[str], List[str]]:
    """Force fp32 on the plan's layers (weak typing only). Returns (pinned layer names, nodes not found).

    The ONNX parser names a node's first layer after the node and any further layers
    '<node>_<counter>' (onnx-tensorrt ImporterContext::registerLayer), so both are pinned,
    unless '<node>_<n>' is itself the name of another ONNX node. Without the ONNX's node names
    only exact names are pinned (a node 'add' would otherwise claim the layer of node 'add_1').
    """
    if not plan.layer_precisions:
        return [], []
    wanted = dict(plan.layer_precisions)
    typed = dict(plan.layer_output_types)
    node_names = set(onnx_node_names)
    fp32 = trt.DataType.FLOAT
    floats = (trt.DataType.FLOAT, trt.DataType.HALF)
    pinned, seen = [], set()
    for layer in _layers(network):
        name = layer.name
        owner = name if name in wanted else None
        if owner is None:
            match = re.fullmatch(r"(.+)_(\d+)", name)
            if node_names and match and match.group(1) in wanted and name not in node_names:
                owner = match.group(1)
        if owner is None:
            continue
        layer.precision = fp32
        if owner in typed:
            for j in range(layer.num_outputs):
                if layer.get_output(j).dtype in floats:
                    layer.set_output_type(j, fp32)
        pinned.append(name)
        seen.add(owner)
    unmatched = [n for n in wanted if n not in seen]
    if unmatched and not seen:
        raise CheckFailed(
            f"none of the {len(wanted)} fp32 nodes matched a TensorRT layer name: the fp16 engine would not keep "
            "attention in fp32",
            "re-export the directory; if it persists, build strongly typed (--typing strong, TensorRT >= 9.0)",
        )
    return pinned, unmatched


def configure(trt, builder, network, plan: BuildPlan, timing_cache_data: bytes = b"") -> Tuple[Any, bool, List[str]]:
    """The IBuilderConfig for the plan. Returns (config, timing cache loaded, notes)."""
    notes: List[str] = []
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    if plan.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    if plan.int8_flag:  # explicit quantization (Q/DQ graph) in a weakly typed build: 8.5-10.x
        config.set_flag(trt.BuilderFlag.INT8)
    if plan.obey_precision_constraints:
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    if plan.tf32:
        config.set_flag(trt.BuilderFlag.TF32)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)  # TF32 is on by default for fp32 layers
    if plan.opt_level is not None:
        config.builder_optimization_level = plan.opt_level
    if plan.hardware_compat != "none":
        config.hardware_compatibility_level = getattr(
            trt.HardwareCompatibilityLevel, V.HARDWARE_COMPAT_API[plan.hardware_compat]
        )
    if plan.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    # a dynamic batch: one profile covering every dynamic input (trtexec --minShapes/--optShapes/--maxShapes)
    if plan.profiles:
        profile = builder.create_optimization_profile()
        for p in plan.profiles:
            profile.set_shape(p.name, p.min, p.opt, p.max)
        config.add_optimization_profile(profile)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    config.avg_timing_iterations = plan.avg_timing_iterations  # as trtexec: it always sets its default of 8
    if plan.dla_core is not None:
        _configure_dla(trt, builder, config, plan)
    loaded = False
    cache = config.create_timing_cache(timing_cache_data)
    if config.set_timing_cache(cache, False):
        loaded = bool(timing_cache_data)
    else:  # made by another TensorRT version or device: start empty rather than fail
        notes.append("the timing cache did not match this TensorRT/GPU; started an empty one")
        config.set_timing_cache(config.create_timing_cache(b""), False)
    return config, loaded, notes


def _configure_dla(trt, builder, config, plan: BuildPlan) -> None:
    """Place the build on the plan's DLA core, with the flags `trtexec --useDLACore` sets."""
    cores = builder.num_DLA_cores
    if cores == 0:
        raise MissingRuntime(
            "this device has no DLA cores", "drop --dla-core to build for the GPU (DLA: Jetson AGX Orin / Orin NX)"
        )
    if plan.dla_core >= cores:
        raise BadInput(
            f"--dla-core {plan.dla_core}: this device has {cores} DLA core(s)",
            f"use --dla-core 0{' or 1' if cores > 1 else ''}",
        )
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = plan.dla_core
    if plan.gpu_fallback:
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    # the flags `trtexec --useDLACore` adds by itself (versions.DLA_IMPLIES): the same engine either way
    if plan.prefer_precision_constraints:
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    if plan.direct_io:
        config.set_flag(trt.BuilderFlag.DIRECT_IO)


def dla_fallback_layers(network, config, exclude=frozenset()) -> List[str]:
    """Layers TensorRT says cannot run on DLA (those placed on the GPU on purpose left out)."""
    return [layer.name for layer in _layers(network) if layer.name not in exclude and not config.can_run_on_DLA(layer)]


def layer_information(
    trt, engine_bytes: bytes, logger, *, version_compatible: bool = False, dla_core: Optional[int] = None
) -> Optional[str]:
    """The engine's layers as JSON (IEngineInspector), or None where the version has no inspector.

    Loaded like any other engine (runtime.deserialize_engine): a version-compatible or DLA engine
    that does not load here is an error, not silently missing layer information.
    """
    from .runtime import deserialize_engine

    engine = deserialize_engine(
        trt, engine_bytes, logger=logger, version_compatible=version_compatible, dla_core=dla_core
    )
    if not hasattr(engine, "create_engine_inspector"):
        return None
    inspector = engine.create_engine_inspector()
    return str(inspector.get_engine_information(trt.LayerInformationFormat.JSON))


def build_engine(
    trt, plan: BuildPlan, steps: Optional[Steps] = None, onnx_node_names: Iterable[str] = (), logger=None
) -> EngineBuild:
    """Parse, configure, build, serialize. Raises MslaError subclasses on expected failures."""
    steps = steps or Steps()
    logger = logger or trt.Logger(trt.Logger.WARNING)
    with steps.step(
        "parse", f"Parsing {Path(plan.onnx).name} with TensorRT {plan.trt_version} ({plan.typing}ly typed)"
    ):
        builder, network, _parser = create_network(trt, plan, logger)
        pinned, unmatched = pin_layers(trt, network, plan, onnx_node_names)
    cache_path = Path(plan.timing_cache)
    cache_data = cache_path.read_bytes() if cache_path.is_file() else b""
    config, loaded, notes = configure(trt, builder, network, plan, cache_data)
    on_gpu = set(pinned) if plan.layer_device_types else set()
    for layer in _layers(network) if on_gpu else ():  # fp32-pinned layers of a DLA build: GPU, explicitly
        if layer.name in on_gpu:
            config.set_device_type(layer, trt.DeviceType.GPU)
    fallback = dla_fallback_layers(network, config, exclude=on_gpu) if plan.dla_core is not None else None
    if fallback and not plan.gpu_fallback:
        raise BadInput(
            f"{len(fallback)} layers cannot run on DLA (first: {fallback[0]}) and GPU fallback is off",
            "add --gpu-fallback, or build for the GPU",
        )
    with steps.step("build", f"Building the {plan.precision} engine (TensorRT tries tactics: minutes)"):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise CheckFailed(
            f"TensorRT {plan.trt_version} could not build the engine",
            "its log above says why; MSLA_DEPLOY_DEBUG=1 shows more",
        )
    engine_bytes = _bytes(serialized)
    timing = config.get_timing_cache()
    timing_bytes = _bytes(timing.serialize()) if timing is not None else None
    info = None
    if V.has("engine_inspector", plan.version):
        with steps.step("inspect", "Reading the engine's layer information"):
            info = layer_information(
                trt, engine_bytes, logger, version_compatible=plan.version_compatible, dla_core=plan.dla_core
            )
    return EngineBuild(
        engine=engine_bytes,
        timing_cache=timing_bytes,
        timing_cache_loaded=loaded,
        layer_info=info,
        pinned_layers=pinned,
        unmatched_fp32_nodes=unmatched,
        dla_fallback_layers=fallback,
        notes=notes,
    )
