"""What each TensorRT version's ONNX parser accepts, as data for the preflight.

Version facts that msla_deploy/trt/versions.py already holds (max opset per parser, strongly and
weakly typed modes, DLA per version, JetPack) are read from there, not repeated. This module adds
what the parser takes, per version. Sources (read for this table; nothing here is copied code):

* onnx/onnx-tensorrt `docs/operators.md` on the release branches 8.5-GA (fdeeaca), 8.6-GA
  (ee0b139) and 10.1-GA (96e7811): the operator matrix ("Y" rows) and the opset range.
* onnx/onnx-tensorrt `docs/Changelog.md` (9.0 ... 10.15): INT64 and BF16 native from 9.0, Pad
  "wrap" from 10.0 EA, operators added after 10.1 (10.4 window functions, 10.5 STFT, 10.14
  Attention, 10.15 RMSNormalization, RotaryEmbedding, TensorScatter), and the 10.15
  `docs/operators.md` ("opset 9 to opset 24"). No 10.3, 10.13 or 11.x operators.md was available
  to us: those rows are 10.1's matrix plus the changelog, and 11.x uses the 10.15 matrix.
* ArgMax (onnx-tensorrt `argMinMaxHelper`: onnx2trt_utils.cpp @ 8.5-GA/8.6-GA, importerUtils.cpp @
  10.1-GA and main): a TopK layer with k=1 whose indices are INT32 on 8.x and cast to INT64 from
  10.0; the input may not be INT32 or UINT8 on 8.5, not UINT8 from 8.6 (operators.md: "FP32, FP16"
  on 8.5, "+ INT32" on 8.6, "+ BF16, INT64" on 10.1). Cast to UINT8 on 8.5 is accepted only from
  FP32/FP16 (8.5-GA importCast); 8.6 moved Cast to ICastLayer without that restriction.
* onnx/onnx-tensorrt 8.5-GA `builtin_op_importers.cpp` (importResize): the parser maps mode
  "cubic" to ResizeMode::kCUBIC since the 8.5 GA release commit (3b008c4), although every
  operators.md up to 10.15 lists only nearest and linear. Hence cubic is a warning on 8.5 ("not
  in the documented matrix, verify") and a note from 8.6 on, where it was reported working
  (docs/facts/tensorrt.md#onnx-parser).

When TensorRT itself is at hand its parser is the authority: this table lets the preflight run
on a workstation or CI machine without TensorRT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import FrozenSet, Optional, Tuple

from ..choices import TRT_TARGET_EXAMPLES
from ..errors import BadInput
from ..trt import versions as V

# "Y" rows of onnx-tensorrt docs/operators.md, 8.5-GA branch (142 operators)
_OPS_8_5 = frozenset(
    """
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast
Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor GRU Gather
GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual
GridSample HardSigmoid HardSwish Identity If ImageScaler InstanceNormalization IsNaN LRN LSTM
LeakyRelu Less LessOrEqual Log LogSoftmax Loop LpNormalization LpPool MatMul Max MaxPool Mean
MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or PRelu Pad
ParametricSoftplus Pow QuantizeLinear RNN RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence
RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign
Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split()
)
_OPS_8_6 = _OPS_8_5 | {"GroupNormalization", "IsInf", "LayerNormalization"}  # 8.6-GA matrix
_OPS_10_1 = _OPS_8_6 | {"CastLike", "DeformConv", "Gelu", "Hardmax", "Mish"}  # 10.1-GA matrix
_OPS_10_4 = _OPS_10_1 | {"BlackmanWindow", "HammingWindow", "HannWindow"}  # changelog 10.4
_OPS_10_5 = _OPS_10_4 | {"STFT"}  # changelog 10.5
_OPS_10_14 = _OPS_10_5 | {"Attention"}  # changelog 10.14
_OPS_10_15 = _OPS_10_14 | {"RMSNormalization", "RotaryEmbedding", "TensorScatter"}  # changelog and operators.md 10.15

# (first version, operator set, where it comes from); a version uses the last row at or below it
_MATRICES: Tuple[Tuple[V.Version, FrozenSet[str], str], ...] = (
    ((8, 5), _OPS_8_5, "onnx-tensorrt 8.5-GA operators.md"),
    ((8, 6), _OPS_8_6, "onnx-tensorrt 8.6-GA operators.md"),
    ((10, 0), _OPS_10_1, "onnx-tensorrt 10.1-GA operators.md (10.0 ... 10.3 add no operator)"),
    ((10, 4), _OPS_10_4, "onnx-tensorrt 10.1-GA operators.md + changelog 10.4"),
    ((10, 5), _OPS_10_5, "onnx-tensorrt 10.1-GA operators.md + changelog 10.4/10.5"),
    ((10, 14), _OPS_10_14, "onnx-tensorrt 10.1-GA operators.md + changelog 10.4 ... 10.14"),
    ((10, 15), _OPS_10_15, "onnx-tensorrt 10.15 operators.md (also used for 11.x: no 11.x matrix available)"),
)

# Resize attributes every listed parser accepts (operators.md "Restrictions" column)
RESIZE_COORDINATE_MODES = frozenset(
    {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
)
RESIZE_DOCUMENTED_MODES = frozenset({"nearest", "linear"})
EXAMPLES = TRT_TARGET_EXAMPLES  # the JetPack releases' versions (docs/facts/tensorrt.md#jetpack-releases) and 11.x


@dataclass(frozen=True)
class Target:
    """Everything the preflight needs to know about one TensorRT version."""

    version: V.TrtVersion
    jetpack: Optional[str]
    min_opset: int
    max_opset: int
    operators: FrozenSet[str]
    matrix_note: str
    cubic_resize: str  # "undocumented" (8.5: warning) | "reported" (8.6.1 on: a note)
    argmax_input_types: FrozenSet[str]  # ONNX element type names ArgMax's input may have
    argmax_indices: str  # "INT32" (8.x: TopK indices as they are) | "INT64" (10.0 on: cast to INT64)
    uint8_cast_from_float_only: bool  # 8.5: Cast to/from UINT8 only with FP32/FP16 on the other side
    int64_native: bool  # False: the 8.x parser casts INT64 to INT32, clamping (8.x operators.md)
    bf16: bool  # BF16 arrived with 9.0 (onnx-tensorrt changelog)
    pad_wrap: bool  # Pad mode "wrap": onnx-tensorrt changelog 10.0 EA
    strongly_typed: bool  # the STRONGLY_TYPED network mode exists (versions.py)
    weak_typing: str  # "yes" | "deprecated" (10.12+) | "removed" (11.0+)
    dla: str  # "yes" | "no" | "strongly-typed" (11.4+, AGX Orin with JetPack >= 7.2.2)

    @property
    def name(self) -> str:
        return self.version.short


def parse_target(text: Optional[str]) -> Optional[Target]:
    """'8.6', '8.6.1', '10.13.0', '11' (= 11.0), '11.4' -> Target; None stays None. BadInput otherwise."""
    if text is None:
        return None
    cleaned = text.strip().lower().lstrip("v")
    if cleaned.isdigit():
        cleaned += ".0"  # "11" means 11.0: DLA, for one, differs within 11.x
    try:
        version = V.parse_version(cleaned)
    except BadInput:
        version = None
    if version is None or version.major not in (8, 10, 11):  # no JetPack ships 9.x
        raise BadInput(
            f"--target-trt {text!r} is not a TensorRT version we have data for",
            f"use 8.5 ... 11.x, e.g. {', '.join(EXAMPLES)}",
        )
    operators, note = _OPS_8_5, _MATRICES[0][2]
    for since, ops, where in _MATRICES:
        if version.key >= since:
            operators, note = ops, where
    weak = (
        "removed"
        if not V.has("weak_typing", version)
        else ("deprecated" if version.at_least(V.AUTO_STRONG_SINCE) else "yes")
    )
    dla = (
        "no"
        if not V.dla_available(version)
        else ("strongly-typed" if version.at_least(V.DLA_STRONGLY_TYPED_ONLY_SINCE) else "yes")
    )
    modern = version.major >= 10
    return Target(
        version=version,
        jetpack=V.jetpack_for(version),
        min_opset=9 if modern else 1,  # "inclusive range of opset 9 to ..." since the 10.0 matrix
        max_opset=V.parser_max_opset(version),
        operators=operators,
        matrix_note=note,
        cubic_resize="undocumented" if version.key < (8, 6) else "reported",
        argmax_input_types=frozenset(
            {"FLOAT", "FLOAT16"}
            | ({"INT32"} if version.key >= (8, 6) else set())
            | ({"BFLOAT16", "INT64"} if modern else set())
        ),
        argmax_indices="INT64" if modern else "INT32",
        uint8_cast_from_float_only=version.key < (8, 6),
        int64_native=modern,
        bf16=modern,
        pad_wrap=modern,
        strongly_typed=V.has("strongly_typed", version),
        weak_typing=weak,
        dla=dla,
    )


SOURCES: Tuple[str, ...] = (
    "github.com/onnx/onnx-tensorrt docs/operators.md @ 8.5-GA, 8.6-GA, 10.1-GA; 10.15",
    "github.com/onnx/onnx-tensorrt docs/Changelog.md (9.0 ... 10.15)",
    "github.com/onnx/onnx-tensorrt builtin_op_importers.cpp @ 8.5-GA (Resize: cubic import path; Cast: UINT8)",
    "github.com/onnx/onnx-tensorrt argMinMaxHelper @ 8.5-GA, 8.6-GA, 10.1-GA, main (ArgMax: TopK k=1, index type)",
    "msla_deploy/trt/versions.py (max opset, typing modes, DLA per version, JetPack) and trt/dla.py (DLA rules)",
    "docs/facts/tensorrt.md#onnx-parser",
)
