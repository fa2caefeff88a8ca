"""The build plan: every decision of a TensorRT build, made once, from the options, the export and
the TensorRT version, before TensorRT is touched.

The plan is plain data. engine.py applies it to the TensorRT API, trtexec.py renders it as a
trtexec command line; neither decides anything. That is what lets the plan be tested for every
version on a machine without TensorRT.

Precision policy (docs/facts/tensorrt.md#weak-and-strong-typing):

- strong typing (TensorRT >= 9.0): tensor types come from the ONNX. An fp16 build parses the
  mixed-precision fp16 ONNX (explicit Casts keep attention in fp32) and never sets the FP16 flag
  (STRONGLY_TYPED + FP16 is an API usage error on 10.x; the flag does not exist on 11.x).
- weak typing (TensorRT < 11.0): an fp16 build parses the fp32 ONNX, sets the FP16 flag, and pins
  the export's fp32 nodes to fp32 with OBEY_PRECISION_CONSTRAINTS.
- auto: strong from 10.12 (weak typing deprecated there, removed in 11.0), weak before.
- int8 (an int8 export's Q/DQ graph, explicit quantization): strongly typed wherever it exists
  (9.0+) for the GPU, with no precision flag; weakly typed on 8.5/8.6 and for DLA before 11
  (--int8 --fp16, the export's fp32 nodes, LiteMLA cores and labels head, pinned to fp32 and,
  on DLA, placed on the GPU). DLA on 11.4+ is strongly typed only: the fp32 nodes and every layer
  the Q/DQ leave in float32 can only run there through GPU fallback, so fallback cannot be off.
- fp16 asked and impossible is an error with a fix, never an fp32 engine.
- TF32 is off unless --tf32: the fp32 layers of these engines (all of an fp32 build, the pinned
  attention of an fp16 one) are fp32 for accuracy, and TF32 rounds matmul inputs to fp16's
  mantissa width (NVIDIA/TensorRT #3999: wrong fp32 results on 10.0 fixed by --noTF32).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..artifact.names import ENGINE_STEM, LAYER_INFO_SUFFIX, META_MAX_BATCH, engine_name, is_engine_file
from ..errors import BadInput
from . import versions as V
from .inputs import ModelInput, TensorSpec
from .options import BuildOptions
from .versions import TrtVersion


@dataclass(frozen=True)
class Profile:
    """One dynamic input's optimisation profile: the shapes TensorRT tunes for (opt) and accepts (min..max)."""

    name: str
    min: Tuple[int, ...]
    opt: Tuple[int, ...]
    max: Tuple[int, ...]

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def batch_profiles(
    inputs: Tuple[TensorSpec, ...], max_batch: Optional[int], opt_batch: Optional[int], source: Path, dla: bool
) -> Tuple[Profile, ...]:
    """Profiles for a dynamic-batch export (the batch is the only dynamic dimension, 1..max_batch,
    tuned at opt_batch, default max_batch as trtexec users and Triton's batcher want throughput at
    the top); BadInput for anything else that is dynamic."""
    dynamic = [i for i in inputs if not i.static]
    if not dynamic:
        if opt_batch is not None:
            raise BadInput(
                f"--opt-batch {opt_batch}: {source} has a static batch",
                "drop --opt-batch (it is for `export --batch dynamic` graphs)",
            )
        return ()
    described = ", ".join(f"{i.name} {list(i.shape)}" for i in dynamic)
    batch_only = all(i.static_but_batch for i in dynamic)
    if batch_only and max_batch is None:
        raise BadInput(
            f"{source} has a dynamic batch ({described}) but does not say its largest (ONNX metadata {META_MAX_BATCH})",
            "export it with msla-deploy export --batch dynamic --max-batch N, or set that metadata to N",
        )
    if not batch_only:
        raise BadInput(
            f"the ONNX has dynamic input dimensions ({described}); this tool builds engines whose only dynamic "
            "dimension is "
            "the batch of an `export --batch dynamic` graph",
            "export with a fixed resolution, and a static --batch N or --batch dynamic --max-batch N",
        )
    if dla:
        raise BadInput(
            f"DLA needs static shapes; {source} has a dynamic batch ({described})",
            "export for DLA with a static --batch N, or drop --dla-core to build for the GPU",
        )
    opt = max_batch if opt_batch is None else opt_batch
    if not 1 <= opt <= max_batch:
        raise BadInput(
            f"--opt-batch {opt} is outside the export's batch range 1..{max_batch}", f"use a batch in 1..{max_batch}"
        )
    return tuple(Profile(i.name, (1, *i.shape[1:]), (opt, *i.shape[1:]), (max_batch, *i.shape[1:])) for i in dynamic)


def graph_profiles(
    inputs: Tuple[TensorSpec, ...], record, opt_batch: Optional[int], source: Path, dla: bool
) -> Tuple[Profile, ...]:
    """Profiles for a multi-graph artifact's graph (artifact/graphs.py GraphRecord): each input with
    a dynamic dimension gets the shapes at the manifest's min/opt/max of its named dimensions (SAM's
    decoder: `prompts` and `points`); static inputs get none. The ONNX must say what the record
    says (BadInput where they disagree)."""
    role = record.role
    if opt_batch is not None:
        raise BadInput(
            f"--opt-batch: the {role} graph's dynamic dimensions have their profile in the manifest "
            f"({_dims_text(record)})",
            "drop --opt-batch (it is for `export --batch dynamic` graphs)",
        )
    dynamic = [i for i in inputs if not i.static]
    if not dynamic:
        return ()
    if dla:
        raise BadInput(
            f"DLA needs static shapes; the {role} graph has dynamic dimensions ({_dims_text(record)})",
            "drop --dla-core to build for the GPU",
        )
    recorded = {t.name: t.shape for t in record.inputs}
    for spec in inputs:
        shape = recorded.get(spec.name)
        agrees = shape is not None and len(shape) == len(spec.shape)
        for onnx_dim, dim in zip(spec.shape, shape or ()):
            if isinstance(onnx_dim, int) and onnx_dim > 0:
                agrees = agrees and dim == onnx_dim
            else:
                agrees = agrees and isinstance(dim, str) and dim in record.profile
        if not agrees:
            raise BadInput(
                f"the manifest's {role} graph and its ONNX disagree on {spec.name}: the manifest says "
                f"{list(shape) if shape is not None else 'nothing'}, {Path(source).name}/{record.file} has "
                f"{list(spec.shape)}",
                "re-export the directory",
            )
    shapes = {point: record.shapes(point) for point in ("min", "opt", "max")}
    return tuple(Profile(i.name, shapes["min"][i.name], shapes["opt"][i.name], shapes["max"][i.name]) for i in dynamic)


def _dims_text(record) -> str:
    return ", ".join(f"{dim} {p.min}..{p.max}" for dim, p in record.profile.items()) or "none in the manifest"


def input_profiles(model: ModelInput, graph, opt_batch: Optional[int], dla: bool) -> Tuple[Profile, ...]:
    """The optimisation profiles of the graph `graph` (GraphFacts) of `model`: from the manifest's
    graph record for a multi-graph artifact, else the dynamic batch of an `export --batch dynamic` graph."""
    inputs = graph.inputs if graph is not None else ()
    if model.graph is not None:
        return graph_profiles(inputs, model.graph, opt_batch, model.source, dla)
    return batch_profiles(inputs, graph.max_batch if graph is not None else None, opt_batch, model.source, dla)


@dataclass(frozen=True)
class BuildPlan:
    trt_version: str  # "10.13"
    precision: str  # what was asked: fp32 | fp16 | int8
    typing: str  # resolved: strong | weak
    typing_requested: str  # auto | strong | weak
    onnx: Path  # the ONNX to parse (absolute)
    onnx_role: str  # which of the export's graphs: "fp32", "fp16" (mixed precision) or "int8" (Q/DQ)
    root: Path  # the artifact directory (paths in the trtexec command are relative to it)
    engine: Path
    layer_info: Path
    timing_cache: Path
    explicit_batch_flag: bool  # NetworkDefinitionCreationFlag.EXPLICIT_BATCH (before 10.0)
    strongly_typed_flag: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED (9.0-10.x)
    fp16_flag: bool  # BuilderFlag.FP16 (weak typing only)
    tf32: bool
    obey_precision_constraints: bool
    layer_precisions: Tuple[Tuple[str, str], ...]  # (layer name, "fp32")
    layer_output_types: Tuple[Tuple[str, str], ...]
    layer_device_types: Tuple[Tuple[str, str], ...]  # (layer name, "GPU"): fp32-pinned layers of a DLA build
    inputs: Tuple[TensorSpec, ...]
    workspace_bytes: int
    opt_level: Optional[int] = None
    hardware_compat: str = "none"
    version_compatible: bool = False
    dla_core: Optional[int] = None
    gpu_fallback: bool = False
    # what `trtexec --useDLACore` adds by itself (versions.DLA_IMPLIES), so `build` makes the same engine
    prefer_precision_constraints: bool = False
    direct_io: bool = False
    profiles: Tuple[Profile, ...] = ()  # one per dynamic input; none for static shapes (TensorRT needs none)
    profiling_verbosity: str = "detailed"  # full layer information for the inspector / --exportLayerInfo
    avg_timing_iterations: int = V.TRTEXEC_AVG_TIMING  # trtexec's default, not the API's (1)
    warnings: Tuple[str, ...] = field(default=())
    int8_flag: bool = False  # BuilderFlag.INT8: a Q/DQ graph built weakly typed (8.5-10.x)

    def __post_init__(self) -> None:
        # invariants that no combination of options may break (docs/facts/tensorrt.md#weak-and-strong-typing)
        weak_fields = (
            self.fp16_flag
            or self.int8_flag
            or self.obey_precision_constraints
            or self.prefer_precision_constraints
            or self.layer_precisions
            or self.layer_output_types
        )
        if self.typing == "strong" and weak_fields:
            raise AssertionError("a strongly typed plan must not carry FP16 / precision constraints / layer precisions")
        if weak_fields and not V.has("weak_typing", self.version):
            raise AssertionError(f"weak-typing settings in a plan for TensorRT {self.trt_version}")
        if self.precision == "fp16" and self.typing == "weak" and not self.fp16_flag:
            raise AssertionError("an fp16 weakly typed plan without the FP16 flag would build fp32")

    @property
    def version(self) -> TrtVersion:
        return V.parse_version(self.trt_version)

    @property
    def uses_dla(self) -> bool:
        return self.dla_core is not None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "trt_version": self.trt_version,
            "precision": self.precision,
            "typing": self.typing,
            "typing_requested": self.typing_requested,
            "onnx": str(self.onnx),
            "onnx_role": self.onnx_role,
            "engine": str(self.engine),
            "layer_info": str(self.layer_info),
            "timing_cache": str(self.timing_cache),
            "network_flags": {"explicit_batch": self.explicit_batch_flag, "strongly_typed": self.strongly_typed_flag},
            "builder_flags": {
                "fp16": self.fp16_flag,
                "int8": self.int8_flag,
                "tf32": self.tf32,
                "obey_precision_constraints": self.obey_precision_constraints,
                "version_compatible": self.version_compatible,
                "gpu_fallback": self.gpu_fallback,
                "prefer_precision_constraints": self.prefer_precision_constraints,
                "direct_io": self.direct_io,
            },
            "layer_precisions": [list(p) for p in self.layer_precisions],
            "layer_output_types": [list(p) for p in self.layer_output_types],
            "layer_device_types": [list(p) for p in self.layer_device_types],
            "inputs": [i.to_dict() for i in self.inputs],
            "profiles": [p.to_dict() for p in self.profiles],
            "workspace_bytes": self.workspace_bytes,
            "builder_optimization_level": self.opt_level,
            "hardware_compatibility_level": self.hardware_compat,
            "dla_core": self.dla_core,
            "profiling_verbosity": self.profiling_verbosity,
            "avg_timing_iterations": self.avg_timing_iterations,
            "warnings": list(self.warnings),
        }


def default_engine_path(model: ModelInput, precision: str, version: TrtVersion, dla_core: Optional[int]) -> Path:
    """model_fp16_trt10.3.engine in the artifact directory (beside a bare ONNX: <stem>_fp16_trt10.3.engine;
    a multi-graph artifact's graph: encoder_fp16_trt10.3.engine). names.engine_name spells it."""
    if model.graph is not None:
        stem = model.graph.role
    else:
        stem = ENGINE_STEM if model.kind == "directory" else Path(model.source).stem
    return model.root / engine_name(stem, precision, version.short, dla_core)


def layer_info_path(engine: Path) -> Path:
    base = engine.name[: -len(engine.suffix)] if is_engine_file(engine.name) else engine.name
    return engine.parent / f"{base}{LAYER_INFO_SUFFIX}"


def default_timing_cache(model: ModelInput, version: TrtVersion) -> Path:
    return model.root / f"timing_trt{version.short}.cache"


def _typing(options: BuildOptions, version: TrtVersion) -> str:
    strong_ok = V.has("strongly_typed", version)
    weak_ok = V.has("weak_typing", version)
    if options.typing == "weak" and not weak_ok:
        fix = (
            "use --typing strong (or auto) with an fp16 export's mixed-precision ONNX (msla-deploy export "
            "--precision fp16)"
            if options.precision == "fp16"
            else "use --typing strong (or auto)"
        )
        raise BadInput(f"weak typing was removed in TensorRT 11.0 (asked for TensorRT {version})", fix)
    if options.typing == "strong" and not strong_ok:
        raise BadInput(
            f"strong typing does not exist in TensorRT {version} (NetworkDefinitionCreationFlag.STRONGLY_TYPED and "
            "--stronglyTyped appeared in 9.0)",
            "use --typing weak (or auto): "
            + (
                "the Q/DQ graph with the INT8 and FP16 flags and the attention pinned to fp32"
                if options.precision == "int8"
                else "the fp32 ONNX with the FP16 flag and the attention pinned to fp32"
            ),
        )
    if options.typing == "auto":
        if options.precision == "int8" and strong_ok and options.dla_core is None:
            return "strong"  # a Q/DQ graph's types are explicit: strongly typed wherever it exists (9.0+)
        return "strong" if version.at_least(V.AUTO_STRONG_SINCE) else "weak"
    return options.typing


def _pick_onnx(options: BuildOptions, model: ModelInput, typing: str, version: TrtVersion) -> str:
    """Which of the export's graphs this build parses: 'fp32', 'fp16' or 'int8'."""
    have = set(model.onnx_files)
    if options.precision == "int8":
        if "int8" not in have:
            raise BadInput(
                f"--precision int8 needs an int8 Q/DQ ONNX; {model.source} has none",
                "export with `msla-deploy export --precision int8 --calib-images DIR` (implicit calibration was "
                "removed in TensorRT 11)",
            )
        return "int8"
    if options.precision == "fp32":
        if "fp32" not in have:
            raise BadInput(
                f"an fp32 build needs the fp32 ONNX; {model.source} holds only the mixed-precision fp16 graph",
                "pass the export directory (it keeps model_fp32.onnx beside model.onnx), or build --precision fp16",
            )
        return "fp32"
    if typing == "strong":
        if "fp16" not in have:
            if V.has("weak_typing", version):
                fix = (
                    "re-export with `msla-deploy export --precision fp16` (mixed-precision ONNX for strongly typed "
                    "builds), "
                    "or pass --typing weak to build the fp32 graph with the FP16 flag (deprecated from TensorRT 10.12)"
                )
            else:
                fix = (
                    f"re-export with `msla-deploy export --precision fp16`: TensorRT {version} builds fp16 only from a "
                    "strongly typed mixed-precision ONNX (weak typing and the FP16 flag were removed in 11.0)"
                )
            raise BadInput(
                f"--precision fp16 with strong typing (TensorRT {version}) needs the mixed-precision fp16 ONNX; "
                f"{model.source} has only the fp32 graph",
                fix,
            )
        return "fp16"
    if "fp32" not in have:
        raise BadInput(
            f"a weakly typed fp16 build parses the fp32 graph; {model.source} holds only the mixed-precision fp16 ONNX",
            "pass the export directory (it keeps model_fp32.onnx), or use --typing strong (TensorRT >= 9.0)",
        )
    return "fp32"


def graph_to_build(model: ModelInput, version: TrtVersion) -> Tuple[str, str, str]:
    """(graph role, typing, precision) a plain `msla-deploy build DIR` parses for this version:
    what `inspect DIR --target-trt` must check, so that the two never look at different graphs."""
    options = resolve_options(BuildOptions(source=model.source), model)
    typing = _typing(options, version)
    return _pick_onnx(options, model, typing, version), typing, options.precision or "fp32"


def resolve_options(options: BuildOptions, model: ModelInput) -> BuildOptions:
    """Fill what defaults to the export: the precision (an fp16 export builds fp16)."""
    if options.precision is None:
        precision = model.export_precision if model.export_precision in ("fp32", "fp16", "int8") else "fp32"
        options = dataclasses.replace(options, precision=precision)
    return options


def _dla_placement(
    options: BuildOptions,
    model: ModelInput,
    version: TrtVersion,
    typing: str,
    layer_precisions: Tuple[Tuple[str, str], ...],
    warnings: List[str],
) -> Tuple[bool, Tuple[Tuple[str, str], ...]]:
    """A DLA build: (GPU fallback, layers placed on the GPU), or BadInput; what to know goes to `warnings`."""
    layer_device_types: Tuple[Tuple[str, str], ...] = ()
    gpu_fallback = True if options.gpu_fallback is None else options.gpu_fallback
    if version.at_least(V.DLA_STRONGLY_TYPED_ONLY_SINCE):
        warnings.append(
            "DLA on TensorRT 11.4 needs 11.4.1 or later on Jetson AGX Orin with JetPack >= 7.2.2 (11.4.0: "
            "Windows on ARM only)"
        )
    elif typing == "strong":
        # trtexec --useDLACore sets the FP16 flag, which a strongly typed network refuses
        raise BadInput(
            f"--typing strong with --dla-core on TensorRT {version}: trtexec --useDLACore adds the FP16 flag, "
            "which a strongly typed network refuses (trtexec: 'Invalid usage')",
            "drop --typing strong (auto builds DLA engines weakly typed before TensorRT 11), or drop --dla-core",
        )
    if options.precision == "int8" and typing == "strong" and model.fp32_nodes:
        # nothing pins or places layers in a strongly typed build: DLA refuses the fp32 ones
        if not gpu_fallback:
            raise BadInput(
                f"--no-gpu-fallback with an int8 DLA build on TensorRT {version}: strongly typed, the export's "
                f"{len(model.fp32_nodes)} fp32 nodes (LiteMLA cores, labels head) cannot run on DLA (fp16/int8 "
                "only)",
                "keep GPU fallback on (the default), or build for DLA with TensorRT <= 10.7 (weakly typed, fp32 "
                "layers placed on the GPU)",
            )
        warnings.append(
            f"int8 on DLA, strongly typed: the export's {len(model.fp32_nodes)} fp32 nodes and every layer the "
            "Q/DQ leave in float32 run on the GPU through GPU fallback (`msla-deploy inspect --dla` lists them)"
        )
    if not gpu_fallback:
        warnings.append("GPU fallback is off: the build fails if any layer cannot run on DLA")
    if layer_precisions:
        # DLA computes fp16/int8 only: the layers pinned to fp32 are placed on the GPU explicitly
        layer_device_types = tuple((name, "GPU") for name, _ in layer_precisions)
        if not V.trtexec_has("--layerDeviceTypes", version):
            warnings.append(
                f"trtexec {version} has no --layerDeviceTypes: the printed command leaves the fp32-pinned layers "
                "to GPU fallback"
            )
    return gpu_fallback, layer_device_types


def make_plan(options: BuildOptions, model: ModelInput, version: TrtVersion) -> BuildPlan:
    """Every decision of the build, or BadInput with a fix. No TensorRT needed."""
    options = resolve_options(options, model)
    options.check()
    warnings: List[str] = []
    if options.dla_core is not None and not V.dla_available(version):
        raise BadInput(
            f"TensorRT {version} has no DLA (10.7 was the last 10.x with DLA; it returns in 11.4.1 on Jetson AGX "
            "Orin with JetPack >= 7.2.2)",
            "drop --dla-core to build for the GPU, or build with TensorRT <= 10.7 (JetPack 6: 10.3)",
        )
    typing = _typing(options, version)
    role = _pick_onnx(options, model, typing, version)
    graph = model.graphs.get(role)
    inputs = graph.inputs if graph is not None else ()

    profiles = input_profiles(model, graph, options.opt_batch, options.dla_core is not None)

    # an int8 Q/DQ graph built weakly typed (8.5-10.x): the INT8 flag for its Q/DQ layers, FP16 for
    # the rest, with the attention island pinned to fp32 as in a weak fp16 build
    int8_flag = options.precision == "int8" and typing == "weak"
    fp16_flag = options.precision in ("fp16", "int8") and typing == "weak"
    layer_precisions: Tuple[Tuple[str, str], ...] = ()
    layer_output_types: Tuple[Tuple[str, str], ...] = ()
    if fp16_flag:
        missing = [n for n in model.fp32_nodes if graph is not None and n not in graph.node_names]
        if missing:
            raise BadInput(
                f"{len(missing)} of the export's fp32 nodes are not in {model.onnx_files[role].name} (first: "
                f"{missing[0]}): manifest and ONNX disagree",
                "re-export the directory; never edit model_fp32.onnx by hand",
            )
        layer_precisions = tuple((n, "fp32") for n in model.fp32_nodes)
        # Output types too, so a pinned layer's fp32 result is not cast to fp16 before the next
        # pinned layer reads it; only for single-output nodes (a Split becomes several layers).
        single = graph.single_output_nodes if graph is not None else frozenset()
        layer_output_types = tuple((n, "fp32") for n in model.fp32_nodes if n in single)
        if not layer_precisions:
            warnings.append(
                "no fp32 nodes recorded for this export: every layer may run in fp16, attention included "
                "(NVIDIA/TensorRT #3893: EfficientViT scored mIoU 0 in fp16 on TensorRT 8.6); re-export to record them"
            )
        if version.at_least(V.AUTO_STRONG_SINCE):
            warnings.append(
                f"weak typing is deprecated from TensorRT 10.12 and removed in 11.0 (building for {version})"
            )

    if options.opt_level is not None and not V.has("builder_optimization_level", version):
        raise BadInput(f"--opt-level needs TensorRT >= 8.6 (asked for {version})", "drop --opt-level")
    if options.hardware_compat != "none" and not V.has(V.HARDWARE_COMPAT_FEATURE[options.hardware_compat], version):
        first = V.API[V.HARDWARE_COMPAT_FEATURE[options.hardware_compat]].since
        raise BadInput(
            f"--hardware-compat {options.hardware_compat} needs TensorRT >= {first[0]}.{first[1]} (asked for "
            f"{version})",
            "drop --hardware-compat"
            + (
                ", or use ampere+"
                if options.hardware_compat == "same-cc" and V.has("hardware_compat_ampere_plus", version)
                else ""
            ),
        )
    if options.version_compatible and not V.has("version_compatible", version):
        raise BadInput(f"--version-compatible needs TensorRT >= 8.6 (asked for {version})", "drop --version-compatible")

    gpu_fallback = False
    layer_device_types: Tuple[Tuple[str, str], ...] = ()
    if options.dla_core is not None:
        gpu_fallback, layer_device_types = _dla_placement(options, model, version, typing, layer_precisions, warnings)

    if graph is not None:
        max_opset = V.parser_max_opset(version)
        if graph.opset > max_opset:
            warnings.append(
                f"the ONNX is opset {graph.opset}; TensorRT {version}'s parser is documented up to opset {max_opset} "
                f"(export with --opset {max_opset})"
            )
        if graph.layer_norm and version.key == (8, 5):  # docs/facts/tensorrt.md#onnx-parser
            warnings.append(
                "TensorRT 8.5's ONNX parser has no LayerNormalization (8.6 added it); this graph has one: re-export "
                "with --opset 16, which writes the LayerNorm as elementary operators"
            )
        if graph.cubic_resize and version.key == (8, 5):
            warnings.append(
                "TensorRT 8.5's parser lists Resize modes nearest and linear only; this graph upsamples with cubic "
                "(8.6.1 was reported to work)"
            )

    engine = (
        Path(options.out).resolve()
        if options.out is not None
        else default_engine_path(model, options.precision, version, options.dla_core)
    )
    timing_cache = (
        Path(options.timing_cache).resolve()
        if options.timing_cache is not None
        else default_timing_cache(model, version)
    )
    return BuildPlan(
        trt_version=version.short,
        precision=options.precision,
        typing=typing,
        typing_requested=options.typing,
        onnx=model.onnx_files[role],
        onnx_role=role,
        root=model.root,
        engine=engine,
        layer_info=layer_info_path(engine),
        timing_cache=timing_cache,
        explicit_batch_flag=V.has("explicit_batch_flag", version),
        strongly_typed_flag=typing == "strong" and V.has("strongly_typed_flag", version),
        fp16_flag=fp16_flag,
        int8_flag=int8_flag,
        tf32=bool(options.tf32),
        obey_precision_constraints=bool(layer_precisions),
        layer_precisions=layer_precisions,
        layer_output_types=layer_output_types,
        layer_device_types=layer_device_types,
        inputs=tuple(inputs),
        profiles=profiles,
        workspace_bytes=options.workspace_bytes,
        opt_level=options.opt_level,
        hardware_compat=options.hardware_compat,
        version_compatible=options.version_compatible,
        dla_core=options.dla_core,
        gpu_fallback=gpu_fallback,
        prefer_precision_constraints=options.dla_core is not None
        and V.dla_implies("prefer_precision_constraints", version),
        direct_io=options.dla_core is not None and not gpu_fallback and V.dla_implies("direct_io", version),
        warnings=tuple(warnings),
    )
