"""int8 as explicit Q/DQ in the ONNX: the fp32 export in, a TensorRT-ready Q/DQ graph out.

Why ONNX Runtime's static quantizer (`onnxruntime.quantization.quantize_static`, QDQ format):
it ships inside the onnxruntime (or onnxruntime-gpu) wheel the project already depends on, so
it installs on a CPU-only machine and on a Jetson without anything beside it. NVIDIA ModelOpt's
ONNX PTQ places Q/DQ the TensorRT way too, but its `[onnx]` extra pulls onnxruntime-gpu and cupy
on x86, and two onnxruntime wheels must never share an environment
(docs/facts/onnxruntime.md#one-wheel-per-environment); its attention
rule (MatMul->Softmax->MatMul) does not match LiteMLA either, so the placement is ours anyway.

What TensorRT consumes (docs/facts/tensorrt.md#int8), and the quantize_static options that give it:
  - int8 with zero point 0 everywhere: QuantType.QInt8 for both, ActivationSymmetric and
    WeightSymmetric True;
  - per-channel weight scales on the output-channel axis: per_channel=True (axis 0 for Conv);
    per-tensor activation scales (the default for activations);
  - Q/DQ only on the inputs of weighted layers (NVIDIA's placement advice): op types Conv,
    ConvTranspose, Gemm, their outputs not quantized (OpTypesToExcludeOutputQuantization), bias
    left in fp32 (QuantizeBias False), as TensorRT fuses bias, activation and a following
    residual Add into the int8 convolution;
  - residual Adds: with conv outputs unquantized, ORT shares the skip tensor's Q/DQ pair (placed
    there for the next block's convs) with the Add, giving Add(Conv(...), DQ(skip)): the pattern
    TensorRT fuses as conv + add (+ activation) with an int8 residual input. Add itself is not
    quantized (no Q/DQ on the conv branch);
  - the LiteMLA attention core: its fp32 island (the export's fp32 nodes: matmuls, normaliser,
    eps, division) gets no Q/DQ, and the q/k/v path into it is rewired to the unquantized
    tensors, so no DequantizeLinear feeds the island: TensorRT would otherwise fuse DQ -> MatMul
    into an int8 activation x activation matmul, which is where LiteMLA's numerics break.

The labels head (`--head labels|both`: Resize to the input size, ArgMax, Cast): every node
downstream of the logits is kept out of quantization (nodes_to_exclude), so the labels are the
argmax of the int8 graph's logits resized in fp32, never of a quantized resize. Its float nodes
(the Resize and the ArgMax) join the fp32 nodes, so a weakly typed build pins them to fp32 too.

Modules, not node names: the exporters' node names carry no module scope, so nodes are mapped to
PyTorch modules through the probe tensors (PROBE_PREFIX + module path) the export keeps: a node
belongs to the innermost probed module whose output it computes. torch-free.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set

import numpy as np
import onnx

from ..artifact.names import (
    INPUT_NAME,
    LABELS_NAME,
    META_FP32_NODES,
    META_INT8_CALIBRATION,
    META_INT8_MODULES,
    META_INT8_POLICY,
    META_PRECISION,
    OUTPUT_NAME,
    PROBE_PREFIX,
)
from ..choices import CALIB_METHODS
from ..errors import MissingRuntime, install_extra
from .islands import BOUNDARY_OPS, island_nodes

QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm")  # weighted layers: TensorRT's int8 kernels
ATTENTION_OPS = ("MatMul",)  # what a generic quantizer would quantize inside LiteMLA
ROOT = "<output>"  # nodes after the last probed module: the layers producing the graph output
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# the labels head's post-processing (nn/heads.py): resize, argmax, cast of the indices
HEAD_OPS = ("Resize", "ArgMax", "Cast")


def _ort_quantization():
    try:
        from onnxruntime import quantization
    except ImportError:
        raise MissingRuntime(
            "int8 export needs ONNX Runtime's quantizer (onnxruntime.quantization), which is not importable",
            f"{install_extra('cpu')} (or the gpu extra); both wheels ship the quantizer",
        ) from None
    return quantization


def _calibration_method(method: str):
    q = _ort_quantization()
    return {
        "max": q.CalibrationMethod.MinMax,
        "entropy": q.CalibrationMethod.Entropy,
        "percentile": q.CalibrationMethod.Percentile,
    }[method]


# --- modules of the graph ----------------------------------------------------------------------
@dataclass
class Unit:
    """A quantization unit: the nodes a probed PyTorch module owns (innermost owner wins)."""

    module: str
    kind: str  # "block" (convs: quantized by default) or "attention" (a LiteMLA core: fp32)
    nodes: List[str]  # every node it owns
    quantizable: List[str]  # the nodes Q/DQ would go on (weighted layers; matmuls of a core)

    def to_dict(self) -> Dict:
        return {"module": self.module, "kind": self.kind, "nodes": len(self.nodes), "quantizable": self.quantizable}


def graph_probes(model: onnx.ModelProto) -> Dict[str, str]:
    """module path -> tensor, read from the graph itself (the probe tensors keep their names)."""
    return {t[len(PROBE_PREFIX) :]: t for n in model.graph.node for t in n.output if t.startswith(PROBE_PREFIX)}


def _is_core(module: str) -> bool:
    return module == "core" or module.endswith(".core")


def _nested(inner: str, outer: str) -> bool:
    return inner.startswith(outer + ".") or inner == outer


def node_owners(model: onnx.ModelProto) -> Dict[str, str]:
    """node name -> the innermost probed module computing it (ROOT for nodes after all probes).

    A module's nodes are found by walking back from its probe tensor, stopping at the probe
    tensors of modules outside it (earlier blocks); an attention core owns exactly its fp32
    island (the same walk the export used to find the island nodes)."""
    probes = graph_probes(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    stop_of = {tensor: module for module, tensor in probes.items()}
    owners: Dict[str, str] = {}
    depth: Dict[str, int] = {}
    for module, tensor in probes.items():
        level = module.count(".") + 1
        for name in _module_nodes(model, module, tensor, producer, stop_of):
            if level > depth.get(name, 0):
                owners[name], depth[name] = module, level
    for node in model.graph.node:
        owners.setdefault(node.name, ROOT)
    return owners


def _module_nodes(
    model: onnx.ModelProto, module: str, tensor: str, producer: Dict[str, onnx.NodeProto], stop_of: Dict[str, str]
) -> Set[str]:
    """The nodes computing `module`'s probe tensor, back to the probes of modules outside it."""
    if _is_core(module):
        return set(island_nodes(model, [tensor]))
    members: Set[str] = set()
    stack = [tensor]
    while stack:
        t = stack.pop()
        other = stop_of.get(t)
        if other is not None and t != tensor and not _nested(other, module):
            continue
        node = producer.get(t)
        if node is None or node.name in members:
            continue
        members.add(node.name)
        stack.extend(node.input)
    return members


def graph_units(model: onnx.ModelProto) -> List[Unit]:
    """Every module that owns a quantizable node, in graph order."""
    owners = node_owners(model)
    units: Dict[str, Unit] = {}
    for node in model.graph.node:
        module = owners[node.name]
        core = _is_core(module)
        unit = units.setdefault(module, Unit(module, "attention" if core else "block", [], []))
        unit.nodes.append(node.name)
        if node.op_type in (ATTENTION_OPS if core else QUANTIZED_OPS):
            unit.quantizable.append(node.name)
    return [u for u in units.values() if u.quantizable]


def default_quantized(units: Sequence[Unit]) -> List[str]:
    """The default plan: every block quantized, every attention core in fp32."""
    return [u.module for u in units if u.kind == "block"]


# --- the labels head ------------------------------------------------------------------------------
def logits_tensor(model: onnx.ModelProto) -> str:
    """The tensor holding the logits: the `logits` output, or, in a labels-only graph, what the
    labels head (Resize -> ArgMax -> Cast) reads."""
    outputs = [o.name for o in model.graph.output]
    if OUTPUT_NAME in outputs or LABELS_NAME not in outputs:
        return OUTPUT_NAME
    producer = {o: n for n in model.graph.node for o in n.output}
    tensor = LABELS_NAME
    while tensor in producer and producer[tensor].op_type in HEAD_OPS:
        tensor = producer[tensor].input[0]
    return tensor


def head_nodes(model: onnx.ModelProto) -> List[str]:
    """Every node computed from the logits (the labels head), in graph order; none for a logits graph."""
    logits = logits_tensor(model)
    downstream, reached = set(), {logits}
    for node in model.graph.node:  # graph order is topological
        if any(t in reached for t in node.input):
            downstream.add(node.name)
            reached.update(node.output)
    return [n.name for n in model.graph.node if n.name in downstream]


def _float_head_nodes(model: onnx.ModelProto) -> List[str]:
    """The head nodes that compute on floats (Resize, ArgMax): what a weak build pins to fp32.
    The Cast of the int64 indices has no float arithmetic to pin."""
    head = set(head_nodes(model))
    return [n.name for n in model.graph.node if n.name in head and n.op_type != "Cast"]


# --- calibration and quantization ----------------------------------------------------------------
class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over a list of input batches, with the
    ranges (`set_range`) its strided calibration reads chunk by chunk."""

    def __init__(
        self,
        batches: Sequence[np.ndarray],
        progress: Optional[Callable[[int, int], None]] = None,
        input_name: str = INPUT_NAME,
    ) -> None:
        self._batches = list(batches)
        self._input = input_name
        self._it = iter(self._batches)
        self._progress, self._fed = progress, 0

    def __len__(self) -> int:
        return len(self._batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._it = iter(self._batches[start_index:end_index])

    def get_next(self):
        batch = next(self._it, None)
        if batch is None:
            return None
        self._fed += 1
        if self._progress is not None:  # batches handed to the calibrator: the pass's progress
            self._progress(min(self._fed, len(self._batches)), len(self._batches))
        return {self._input: batch}


# ONNX Runtime's calibrators hold every tensor of every batch until ranges are computed: at
# 1024x2048 that is gigabytes per picture. Feeding at most this many batches per chunk
# (CalibStridedMinMax; histogram methods merge chunk by chunk) bounds it, same ranges.
CALIB_CHUNK = 4


def _stride(count: int) -> int:
    """The largest chunk <= CALIB_CHUNK that divides `count` (ONNX Runtime requires a divisor)."""
    return next(s for s in range(min(CALIB_CHUNK, max(count, 1)), 0, -1) if count % s == 0)


@contextlib.contextmanager
def _quiet():
    # quantize_static logs a pre-processing advice (for CPU speed, not for TensorRT) at WARNING,
    # and the histogram calibrators print their settings: stdout belongs to --json
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


@dataclass
class Calibration:
    """Tensor ranges measured once on the calibration pictures, reused by every quantization."""

    method: str
    count: int  # pictures
    cache: Path  # ONNX Runtime's calibration cache (TensorsData as JSON)
    batches: List[np.ndarray] = field(repr=False, default_factory=list)

    def to_dict(self) -> Dict:
        return {"method": self.method, "pictures": self.count}


def _qdq_options(method: str, batches: int) -> Dict:
    options = {
        "CalibStridedMinMax": _stride(batches),
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QuantizeBias": False,
        "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),
    }
    if method == "percentile":
        options["CalibPercentile"] = 99.999
    return options


def _quantize_static(
    fp32_path: Path,
    out_path: Path,
    calibration: Calibration,
    nodes: List[str],
    progress: Optional[Callable[[int, int], None]] = None,
) -> None:
    q = _ort_quantization()
    # the labels head is never quantized: named explicitly, whatever op types a quantizer version adds
    model = onnx.load(str(fp32_path), load_external_data=False)
    exclude = head_nodes(model)
    kwargs = dict(
        quant_format=q.QuantFormat.QDQ,
        # both families listed so that one calibration covers a plan with attention quantized
        op_types_to_quantize=list(QUANTIZED_OPS + ATTENTION_OPS),
        per_channel=True,
        reduce_range=False,
        activation_type=q.QuantType.QInt8,
        weight_type=q.QuantType.QInt8,
        nodes_to_quantize=nodes,
        nodes_to_exclude=exclude,
        calibrate_method=_calibration_method(calibration.method),
        extra_options=_qdq_options(calibration.method, len(calibration.batches)),
    )
    if "calibration_cache_path" in inspect.signature(q.quantize_static).parameters:
        kwargs["calibration_cache_path"] = str(calibration.cache)
    # older ONNX Runtime: no cache, calibrate again (same data, same ranges, slower)
    with _quiet():
        reader = _Reader(calibration.batches, progress, input_name(model))
        q.quantize_static(str(fp32_path), str(out_path), reader, **kwargs)


def calibrate(
    fp32_path: Path,
    batches: Sequence[np.ndarray],
    method: str,
    workdir: Path,
    progress: Optional[Callable[[int, int], None]] = None,
) -> Calibration:
    """Measure the ranges of every quantizable tensor on `batches` (one quantization pass);
    `progress(done, total)` as the batches are fed."""
    if method not in CALIB_METHODS:
        raise ValueError(f"unknown calibration method {method!r}")
    calibration = Calibration(method, sum(len(b) for b in batches), Path(workdir) / "calibration.json", list(batches))
    # ONNX Runtime reuses an existing cache file without asking which model or pictures made it:
    # a workdir used before (another model, other weights) would silently lend its ranges
    with contextlib.suppress(FileNotFoundError):
        os.remove(calibration.cache)
    units = graph_units(onnx.load(str(fp32_path), load_external_data=False))
    nodes = [n for u in units for n in u.quantizable]
    _quantize_static(fp32_path, Path(workdir) / "calibrating.onnx", calibration, nodes, progress)
    return calibration


@dataclass
class QuantizedGraph:
    proto: onnx.ModelProto
    modules: Dict[str, str]  # module -> "int8" | "fp32", every unit
    quantized_nodes: List[str]
    fp32_nodes: List[str]  # the attention islands and the head's float nodes (weakly typed pins, the Q/DQ check)
    rewired: List[str]  # attention inputs reconnected to their unquantized tensors
    calibration: Dict
    head_nodes: List[str] = field(default_factory=list)  # the labels head: never quantized

    def record(self) -> Dict:
        """What the manifest records (precision.int8) and the metadata summarises."""
        return {
            "quantizer": "onnxruntime.quantization.quantize_static",
            "format": "QDQ",
            "activations": "int8, symmetric (zero point 0), per-tensor",
            "weights": "int8, symmetric (zero point 0), per-channel on the output-channel axis",
            "bias": "fp32",
            "calibration": self.calibration,
            "modules": self.modules,
            "quantized_modules": [m for m, p in self.modules.items() if p == "int8"],
            "fp32_modules": [m for m, p in self.modules.items() if p != "int8"],
            "quantized_nodes": self.quantized_nodes,
            "attention_inputs_unquantized": self.rewired,
            # --head labels|both: resize and argmax of the int8 logits, in fp32
            "labels_head": {"precision": "fp32", "nodes": self.head_nodes} if self.head_nodes else None,
        }


def _rewire_attention_inputs(model: onnx.ModelProto, fp32_cores: Iterable[str], owners: Dict[str, str]) -> List[str]:
    """Feed the fp32 islands from unquantized tensors: walk back from each island's inputs through
    the reshapes, splits and ReLUs that feed it, and reconnect any input that is a DQ(Q(x)) to x."""
    producer = {o: n for n in model.graph.node for o in n.output}
    cores = set(fp32_cores)
    frontier = [n for n in model.graph.node if owners.get(n.name) in cores]
    seen, rewired = set(), []
    while frontier:
        node = frontier.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        for i in range(len(node.input)):
            source = _bypass_qdq(node, i, producer, rewired)
            # keep walking through the data-movement ops between the convs and the island
            if source is not None and (
                source.op_type in BOUNDARY_OPS or source.op_type in ("Concat", "Transpose", "Identity")
            ):
                frontier.append(source)
    return sorted(set(rewired))


def _bypass_qdq(
    node: onnx.NodeProto, i: int, producer: Dict[str, onnx.NodeProto], rewired: List[str]
) -> Optional[onnx.NodeProto]:
    """Reconnect input `i` of `node` to x where it reads DQ(Q(x)) (noted in `rewired`); returns
    the node producing that input now (None for a graph input or an initializer)."""
    source = producer.get(node.input[i])
    if source is None or source.op_type != "DequantizeLinear":
        return source
    quant = producer.get(source.input[0])
    if quant is None or quant.op_type != "QuantizeLinear":
        return source
    node.input[i] = quant.input[0]
    rewired.append(node.name)
    return producer.get(quant.input[0])


def quantize(
    fp32_path: Path,
    calibration: Calibration,
    quantized: Optional[Iterable[str]] = None,
    workdir: Optional[Path] = None,
) -> QuantizedGraph:
    """The Q/DQ graph with the units in `quantized` (default: every block, no attention core) in
    int8 and the rest in fp32. Metadata: the fp32 graph's, with precision int8 and the module list."""
    fp32 = onnx.load(str(fp32_path))
    units = graph_units(fp32)
    chosen = set(default_quantized(units) if quantized is None else quantized)
    unknown = chosen - {u.module for u in units}
    if unknown:
        raise ValueError(f"not quantization units of this graph: {sorted(unknown)}")
    nodes = [n for u in units if u.module in chosen for n in u.quantizable]
    owners = node_owners(fp32)
    # nothing to quantize: quantize_static would read an empty list as "everything"
    proto = _quantized_proto(fp32_path, calibration, nodes, workdir) if nodes else fp32
    fp32_cores = [u.module for u in units if u.kind == "attention" and u.module not in chosen]
    rewired = _rewire_attention_inputs(proto, fp32_cores, owners)
    modules = {u.module: ("int8" if u.module in chosen else "fp32") for u in units}
    island = [n.name for n in fp32.graph.node if owners.get(n.name) in set(fp32_cores)]
    head = head_nodes(fp32)
    fp32_nodes = island + [n for n in _float_head_nodes(fp32) if n not in island]
    _set_int8_metadata(proto, fp32, fp32_nodes, modules, calibration)
    return QuantizedGraph(proto, modules, nodes, fp32_nodes, rewired, calibration.to_dict(), head)


def _quantized_proto(
    fp32_path: Path, calibration: Calibration, nodes: List[str], workdir: Optional[Path]
) -> onnx.ModelProto:
    """quantize_static's Q/DQ graph of `nodes`, read back into memory (its file removed)."""
    with contextlib.ExitStack() as stack:
        folder = (
            Path(workdir)
            if workdir is not None
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="msla-int8-")))
        )
        out = folder / "quantized.onnx"
        _quantize_static(fp32_path, out, calibration, nodes)
        proto = onnx.load(str(out))
        with contextlib.suppress(OSError):
            os.remove(out)
    return proto


def _set_int8_metadata(
    proto: onnx.ModelProto,
    fp32: onnx.ModelProto,
    fp32_nodes: List[str],
    modules: Dict[str, str],
    calibration: Calibration,
) -> None:
    """The fp32 graph's metadata, with precision int8, its fp32 nodes, modules and calibration."""
    meta = {p.key: p.value for p in fp32.metadata_props}
    meta.update(
        {
            META_PRECISION: "int8",
            META_FP32_NODES: ",".join(fp32_nodes),
            META_INT8_MODULES: json.dumps(modules, separators=(",", ":")),
            META_INT8_CALIBRATION: json.dumps(calibration.to_dict(), separators=(",", ":")),
        }
    )
    del proto.metadata_props[:]
    for key in sorted(meta):
        proto.metadata_props.add(key=key, value=meta[key])


def set_policy_metadata(proto: onnx.ModelProto, name: str, kept_float: List[str]) -> None:
    """SAM's encoder policy in the graph's metadata (what `inspect` shows of a lone encoder.onnx)."""
    value = json.dumps({"name": name, "kept_float": list(kept_float)}, separators=(",", ":"))
    for prop in proto.metadata_props:
        if prop.key == META_INT8_POLICY:
            prop.value = value
            return
    proto.metadata_props.add(key=META_INT8_POLICY, value=value)


# --- what TensorRT needs of the result ------------------------------------------------------------
def _initializer(model: onnx.ModelProto, name: str) -> Optional[np.ndarray]:
    for init in model.graph.initializer:
        if init.name == name:
            return onnx.numpy_helper.to_array(init)
    return None


def check_qdq(model: onnx.ModelProto, fp32_nodes: Iterable[str] = ()) -> List[str]:
    """Problems that would make TensorRT reject the graph or quantize the wrong thing (empty: fine):
    a non-int8 or non-zero zero point, per-channel activation scales, per-tensor weight scales, a
    weight scale on another axis than the output channels, Q/DQ touching an fp32 island node."""
    problems = []
    island = set(fp32_nodes)
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: Dict[str, List[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for t in node.input:
            consumers.setdefault(t, []).append(node)
    for node in model.graph.node:
        if node.op_type in QDQ_OPS:
            problems += _qdq_problems(model, node, island, producer, consumers)
        elif node.name in island:
            dequantized = [
                producer[t] for t in node.input if t in producer and producer[t].op_type == "DequantizeLinear"
            ]
            problems += [
                f"{node.name} (fp32 island) reads a DequantizeLinear output ({src.name})" for src in dequantized
            ]
    return problems


def _qdq_problems(
    model: onnx.ModelProto,
    node: onnx.NodeProto,
    island: Set[str],
    producer: Dict[str, onnx.NodeProto],
    consumers: Dict[str, List[onnx.NodeProto]],
) -> List[str]:
    """One QuantizeLinear/DequantizeLinear node against what TensorRT accepts (check_qdq)."""
    if len(node.input) < 3:
        return [f"{node.name}: no zero point (TensorRT needs an explicit int8 zero point of 0)"]
    zero = _initializer(model, node.input[2])
    scale = _initializer(model, node.input[1])
    if zero is None or scale is None:
        return [f"{node.name}: scale or zero point is not a constant"]
    problems = []
    if zero.dtype != np.int8 or np.any(zero != 0):
        problems.append(f"{node.name}: zero point {zero.dtype} {zero.ravel()[:4].tolist()} is not int8 0 (asymmetric)")
    weight = _initializer(model, node.input[0]) if node.op_type == "DequantizeLinear" else None
    if weight is not None:  # a weight: per-channel on axis 0
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if weight.ndim > 1 and (scale.size != weight.shape[0] or axis != 0):
            problems.append(
                f"{node.name}: weight scales {list(scale.shape)} on axis {axis}, not per output channel (axis 0, "
                f"{weight.shape[0]})"
            )
    elif scale.size != 1:
        problems.append(f"{node.name}: activation scale has {scale.size} values, not per-tensor")
    touching = [producer[t].name for t in node.input if t in producer] + [
        c.name for t in node.output for c in consumers.get(t, [])
    ]
    inside = [n for n in touching if n in island]
    if inside:
        problems.append(f"{node.name}: Q/DQ next to fp32 island node(s) {', '.join(sorted(set(inside)))}")
    return problems


def residual_adds(model: onnx.ModelProto) -> List[Dict[str, str]]:
    """Every Add of a conv output and another tensor, with what feeds its other input: the
    TensorRT conv+add fusion wants a DequantizeLinear there (and no Q/DQ on the conv side)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    rows = []
    for node in model.graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        kinds = [producer[t].op_type if t in producer else "input" for t in node.input]
        if "Conv" in kinds:
            other = kinds[1 - kinds.index("Conv")]
            rows.append({"node": node.name, "conv_side": "Conv", "other_side": other})
    return rows


# --- running ----------------------------------------------------------------------------------------
def session(model: onnx.ModelProto):
    """An ONNX Runtime CPU session on a graph in memory (real integer kernels for Q/DQ)."""
    from ..runtime.onnxruntime import import_onnxruntime

    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def with_outputs(model: onnx.ModelProto, tensors: Sequence[str]) -> onnx.ModelProto:
    """A copy of `model` that also outputs `tensors` (the logits of a labels-only graph)."""
    present = {o.name for o in model.graph.output}
    missing = [t for t in tensors if t not in present]
    if not missing:
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for t in missing:
        copy.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    return copy


def run_batches(model: onnx.ModelProto, batches: Sequence[np.ndarray], output: Optional[str] = None) -> np.ndarray:
    """One output (default: the logits, also of a labels-only graph) of every batch, concatenated."""
    name = output or logits_tensor(model)
    s = session(with_outputs(model, [name]))
    return np.concatenate([s.run([name], {input_name(model): b})[0] for b in batches])


def input_name(model: onnx.ModelProto) -> str:
    """The graph's one picture input: `input` (segmentation, classification) or SAM's encoder's `image`."""
    initializers = {t.name for t in model.graph.initializer}
    return next(i.name for i in model.graph.input if i.name not in initializers)


# --- variants of one Q/DQ graph ---------------------------------------------------------------------
def without_qdq(
    quantized: onnx.ModelProto, fp32: onnx.ModelProto, quantized_nodes: Iterable[str], nodes: Iterable[str]
) -> onnx.ModelProto:
    """A copy of `quantized` (whose Q/DQ quantize() placed for `quantized_nodes`) with `nodes` float
    again, as quantize() would have written it for the others, without quantizing again (a sweep's
    variants then cost a session, not a pass). quantize_static places one Q/DQ pair per tensor that a
    quantized node reads, and every reader of that tensor reads the pair (a residual Add, a float
    node beside): so a pair stays while one of its readers stays quantized, else its readers read
    the tensor itself; a float node's int8 weight is the fp32 graph's weight again. Q/DQ nodes and
    int8 weights nobody reads any more are dropped."""
    model = onnx.ModelProto()
    model.CopyFrom(quantized)
    floated = set(nodes)
    staying = set(quantized_nodes) - floated
    producer = {o: n for n in model.graph.node for o in n.output}
    originals = {n.name: n for n in fp32.graph.node}
    fp32_weights = {t.name: t for t in fp32.graph.initializer}
    present = {t.name for t in model.graph.initializer}
    readers: Dict[str, List[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for t in node.input:
            readers.setdefault(t, []).append(node)
    for dq in [n for n in model.graph.node if n.op_type == "DequantizeLinear"]:
        source = producer.get(dq.input[0])
        users = readers.get(dq.output[0], [])
        if source is not None and source.op_type == "QuantizeLinear":  # an activation's pair
            if not any(u.name in staying for u in users):
                _read_instead(users, dq.output[0], source.input[0])
            continue
        for user in (u for u in users if u.name in floated):  # a stored int8 weight of a float node
            index = list(user.input).index(dq.output[0])
            original = originals[user.name].input[index]
            user.input[index] = original
            if original in fp32_weights and original not in present:
                model.graph.initializer.append(fp32_weights[original])
                present.add(original)
    _drop_unread(model)
    return model


def _read_instead(users: Sequence[onnx.NodeProto], tensor: str, instead: str) -> None:
    for user in users:
        for i, name in enumerate(user.input):
            if name == tensor:
                user.input[i] = instead


def _drop_unread(model: onnx.ModelProto) -> None:
    """Remove the Q/DQ nodes whose outputs nobody reads, then the initializers nobody reads."""
    while True:
        read = {t for n in model.graph.node for t in n.input} | {o.name for o in model.graph.output}
        dead = [n for n in model.graph.node if n.op_type in QDQ_OPS and not any(o in read for o in n.output)]
        if not dead:
            break
        for node in dead:
            model.graph.node.remove(node)
    read = {t for n in model.graph.node for t in n.input}
    for init in [t for t in model.graph.initializer if t.name not in read]:
        model.graph.initializer.remove(init)
