"""DLA preflight: does the target have DLA at all, and which layers would fall back to the GPU.

The per-layer forecast is msla_deploy/trt/dla.py's (one DLA rule table in the project, with its
sources); this module adds what only a typed graph tells: in a strongly typed graph the fp32
islands cannot run on DLA (fp16/int8 only), nor can nodes pinned to fp32 in a weak build. An
int8 Q/DQ graph: its Q/DQ nodes fold into the layers around them and are not counted; its fp32
nodes (the LiteMLA cores, the labels head) fall back; strongly typed (11.4+), so does every layer
the Q/DQ leave in float32.
A fallback is a warning (with GPU fallback allowed the engine builds, slower); no DLA in the
version, or shapes DLA cannot take, are errors.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Dict, List, Set, Tuple

import onnx

from ..trt import dla as trt_dla
from .model_view import ModelView
from .precision import PrecisionContext
from .report import ERROR, WARNING, Finding
from .trt_support import Target

_LAYOUT = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Slice", "Split", "Concat", "Cast"})


def check_dla(view: ModelView, target: Target, context: PrecisionContext, info: Dict) -> List[Finding]:
    if target.dla == "no":
        return [
            Finding(
                ERROR,
                "dla-unavailable",
                "",
                f"TensorRT {target.name} has no DLA support (10.7 was the last 10.x with DLA; none in 10.8 ... 11.3)",
                "build for DLA with TensorRT <= 10.7 (JetPack 6.x ships 10.3), or 11.4.1+ strongly typed on AGX Orin",
            )
        ]
    findings: List[Finding] = []
    if target.dla == "strongly-typed":
        findings.append(
            Finding(
                WARNING,
                "dla-version",
                "",
                "DLA on TensorRT 11.x needs 11.4.1+ on Jetson AGX Orin with JetPack >= 7.2.2",
                "check the device's TensorRT and JetPack",
            )
        )
        if not context.graph_has_fp16 and context.assumed != "int8":
            findings.append(
                Finding(
                    ERROR,
                    "dla-unavailable",
                    "",
                    f"DLA on TensorRT {target.name} is strongly typed only and computes fp16/int8: this fp32 graph "
                    "cannot run on it",
                    "export the mixed-precision fp16 ONNX",
                )
            )
    int8 = context.assumed == "int8"
    forecast = _forecast(view, _fp32_nodes(view, context), strongly_typed=int8 and context.typing == "strong")
    if int8 and target.dla == "strongly-typed":
        typed = [n.name for n in forecast.nodes if n.reason == trt_dla.FP32_TYPED]
        if typed:
            findings.append(
                Finding(
                    WARNING,
                    "dla-int8-typed",
                    typed[0],
                    f"DLA on TensorRT {target.name} is strongly typed: {len(typed)} layer(s) of this int8 graph are "
                    "not quantized and "
                    "compute in float32, which DLA does not run: they run on the GPU",
                    "keep GPU fallback on; for more of the graph on DLA, build with TensorRT <= 10.7 (weakly typed: "
                    "--int8 --fp16)",
                    nodes=typed,
                )
            )
    for problem in forecast.problems:
        findings.append(Finding(ERROR, "dla-shape", "", problem, "export with static shapes within DLA's limits"))
    labels = {view.label(n): n for n in view.nodes}
    for verdict, check in (("gpu", "dla-fallback"), ("maybe", "dla-maybe")):
        groups: Dict[Tuple[str, str], List[str]] = {}
        for node in forecast.nodes:
            if node.verdict == verdict:
                groups.setdefault((node.op_type, node.reason), []).append(node.name)
        for (op, reason), names in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])):
            first = labels.get(names[0])
            module, source = view.module_of(first) if first is not None else (None, None)
            what = "falls back to the GPU" if verdict == "gpu" else "may fall back to the GPU"
            findings.append(
                Finding(
                    WARNING,
                    check,
                    names[0],
                    f"{op} x{len(names)} {what}: {reason}",
                    "allow GPU fallback (--allowGPUFallback); a DLA-friendly op (e.g. ReLU for HardSwish) keeps the "
                    "work on DLA",
                    op,
                    module,
                    source,
                    nodes=names,
                )
            )
    fallback = Counter(n.op_type for n in forecast.nodes if n.verdict == "gpu")
    info["dla"] = {
        **forecast.counts(),
        "qdq_fused": forecast.qdq_fused,  # Q/DQ nodes: folded into their neighbours, not layers, not counted
        "int8_layers": len(forecast.quantized),
        "fallback_by_op": dict(sorted(fallback.items())),
        "source": "msla_deploy/trt/dla.py rule table (a forecast; TensorRT's can_run_on_DLA decides)",
    }
    return findings


def _fp32_nodes(view: ModelView, context: PrecisionContext) -> Set[str]:
    """Nodes that compute in fp32 in this build: DLA cannot run them."""
    if context.typing == "weak" or context.assumed == "int8":
        # int8, strongly typed: the pins name the fp32 nodes; trt/dla.py reads the rest off the Q/DQ
        return set(context.pinned)
    if context.typing == "strong":
        return {
            n.name for n in view.nodes if n.name and n.op_type not in _LAYOUT and not context.computes_fp16(view, n)
        }
    return set()


def _forecast(view: ModelView, fp32_nodes: Set[str], strongly_typed: bool = False) -> trt_dla.Preflight:
    # trt/dla.py reads a file (it is also used on artifact directories); an in-memory model is
    # written to a temporary one
    if Path(view.path).is_file():
        return trt_dla.preflight(Path(view.path), fp32_nodes, strongly_typed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save(view.model, str(path))
        return trt_dla.preflight(path, fp32_nodes, strongly_typed)
