"""What each TensorRT version's ONNX parser (and DLA) accepts, as data for the preflight.

Sources (read for this table; nothing here is copied code):

* onnx/onnx-tensorrt `docs/operators.md` on the release branches 8.5-GA (fdeeaca), 8.6-GA
  (ee0b139) and 10.1-GA (96e7811): the operator matrix ("Y" rows) and the opset range.
* onnx/onnx-tensorrt `docs/Changelog.md` (10.2 ... 10.15 entries): operators added after 10.1
  (10.4 window functions, 10.5 STFT, 10.14 Attention, 10.15 RMSNormalization, RotaryEmbedding,
  TensorScatter), and `docs/operators.md` of 10.15 ("opset 9 to opset 24").
  No 10.3, 10.13 or 11.x operators.md was available to us: 10.3 is 10.1's matrix plus the
  changelog (10.2/10.3 added no operator), 10.13 adds 10.4/10.5, and 11 is taken as the 10.15
  matrix (TensorRT 11 removed APIs, not parser operators, as far as the public notes say).
* onnx/onnx-tensorrt 8.5-GA `builtin_op_importers.cpp` (importResize): the parser maps
  mode "cubic" to ResizeMode::kCUBIC since the 8.5 GA release commit (3b008c4), although every
  operators.md up to 10.15 still lists only nearest and linear. Hence cubic is a warning
  ("not in the documented matrix") on 8.5 and a note from 8.6.1 on, where it was reported working
  (FACTS.md §3).
* Max opset per parser, weak typing deprecated in 10.12 and removed in 11.0, DLA availability
  (last 10.x with DLA: 10.7; none in 10.8 ... 11.3; 11.4.1 strongly typed only): FACTS.md §3.
* DLA layers: TensorRT "DLA Supported Layers and Restrictions" (docs.nvidia.com, latest) and the
  IResizeLayer API docs (DLA resize: 4 scales, first two 1, last two integer, [1, 32] nearest,
  [1, 4] linear; half_pixel for linear/cubic). Numbers not stated there are not checked.

When TensorRT itself is at hand, its parser is the authority: this table exists so that the
preflight works on a workstation without TensorRT and on CI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, FrozenSet, Optional, Tuple

# "Y" rows of onnx-tensorrt docs/operators.md, 8.5-GA branch (142 operators)
_OPS_8_5 = frozenset("""
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
""".split())
_OPS_8_6 = _OPS_8_5 | {"GroupNormalization", "IsInf", "LayerNormalization"}  # 8.6-GA matrix
_OPS_10_3 = _OPS_8_6 | {"CastLike", "DeformConv", "Gelu", "Hardmax", "Mish"}  # 10.1-GA matrix
_OPS_10_13 = _OPS_10_3 | {"BlackmanWindow", "HammingWindow", "HannWindow", "STFT"}  # changelog 10.4, 10.5
_OPS_11 = _OPS_10_13 | {"Attention", "RMSNormalization", "RotaryEmbedding", "TensorScatter"}  # 10.14, 10.15

# Resize attributes every listed parser accepts (operators.md "Restrictions" column)
RESIZE_COORDINATE_MODES = frozenset({"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"})
RESIZE_DOCUMENTED_MODES = frozenset({"nearest", "linear"})


@dataclass(frozen=True)
class TrtVersion:
    name: str  # as given on the command line
    jetpack: str
    min_opset: int
    max_opset: int
    operators: FrozenSet[str]
    cubic_resize: str  # "undocumented" (warning) | "reported" (note)
    int64_native: bool  # False: the parser casts INT64 down to INT32, clamping (8.x operators.md)
    bf16: bool
    strongly_typed: bool  # the STRONGLY_TYPED network flag exists
    weak_typing: str  # "yes" | "deprecated" | "removed": the FP16 builder flag and layer precisions
    dla: str  # "yes" | "no" | "strongly-typed" (11.4.1+ on AGX Orin, JetPack >= 7.2.2)
    pad_wrap: bool  # Pad mode "wrap" (onnx-tensorrt changelog 10.0 EA)
    matrix_note: str  # where the operator set comes from


VERSIONS: Dict[str, TrtVersion] = {
    v.name: v
    for v in (
        TrtVersion("8.5", "5.1", 1, 17, _OPS_8_5, "undocumented", False, False, False, "yes", "yes", False,
                   "onnx-tensorrt 8.5-GA operators.md"),
        TrtVersion("8.6", "6.0", 1, 17, _OPS_8_6, "reported", False, False, False, "yes", "yes", False,
                   "onnx-tensorrt 8.6-GA operators.md"),
        TrtVersion("10.3", "6.1 / 6.2", 9, 20, _OPS_10_3, "reported", True, True, True, "yes", "yes", True,
                   "onnx-tensorrt 10.1-GA operators.md + changelog 10.2/10.3"),
        TrtVersion("10.13", "7.0 / 7.1", 9, 24, _OPS_10_13, "reported", True, True, True, "deprecated", "no", True,
                   "onnx-tensorrt 10.1-GA operators.md + changelog 10.2 ... 10.13"),
        TrtVersion("11", "7.2+", 9, 24, _OPS_11, "reported", True, True, True, "removed", "strongly-typed", True,
                   "onnx-tensorrt 10.15 operators.md (no 11.x matrix available)"),
    )
}

SOURCES: Tuple[str, ...] = (
    "github.com/onnx/onnx-tensorrt docs/operators.md @ 8.5-GA, 8.6-GA, 10.1-GA; 10.15",
    "github.com/onnx/onnx-tensorrt docs/Changelog.md (10.2 ... 10.15)",
    "github.com/onnx/onnx-tensorrt builtin_op_importers.cpp @ 8.5-GA (Resize: cubic import path)",
    "docs.nvidia.com TensorRT 'DLA Supported Layers and Restrictions'; IResizeLayer API (DLA limits)",
    "shared/docs/FACTS.md §3 (opset per parser, weak typing, DLA per version)",
)


def parse_version(text: Optional[str]) -> Optional[TrtVersion]:
    """'8.6', '8.6.1', '10.13.0', '11', '11.2' -> the table entry; None stays None; else KeyError."""
    if text is None:
        return None
    parts = text.strip().lower().lstrip("v").split(".")
    if parts and parts[0] == "11":
        return VERSIONS["11"]  # one row for 11.x: the DLA distinction (11.4.1+) is reported, not keyed
    key = ".".join(parts[:2])
    if key in VERSIONS:
        return VERSIONS[key]
    raise KeyError(text)


# ---- DLA ------------------------------------------------------------------------------------------
# ONNX op -> the TensorRT layer DLA runs it as. Anything not here falls back to the GPU.
DLA_LAYERS: Dict[str, str] = {
    "Conv": "Convolution",
    "ConvTranspose": "Deconvolution",
    "MaxPool": "Pooling",
    "AveragePool": "Pooling",
    "GlobalAveragePool": "Pooling",
    "GlobalMaxPool": "Pooling",
    "Relu": "Activation",
    "Sigmoid": "Activation",
    "Tanh": "Activation",
    "Clip": "Activation (clipped ReLU)",
    "LeakyRelu": "Activation",
    "PRelu": "Parametric ReLU",
    "Add": "ElementWise",
    "Sub": "ElementWise",
    "Mul": "ElementWise",
    "Div": "ElementWise",
    "Max": "ElementWise",
    "Min": "ElementWise",
    "Pow": "ElementWise",
    "BatchNormalization": "Scale",
    "LRN": "LRN",
    "Concat": "Concatenation (channel axis)",
    "Resize": "Resize",
    "Softmax": "SoftMax",
    "Reshape": "Shuffle",
    "Transpose": "Shuffle",
    "Flatten": "Shuffle",
    "Squeeze": "Shuffle",
    "Unsqueeze": "Shuffle",
    "Slice": "Slice",
    "Split": "Slice",
    "ReduceMax": "Reduce (MAX only)",
    "Abs": "Unary",
    "Sin": "Unary",
    "Cos": "Unary",
    "Atan": "Unary",
}
# ops that become no layer at all (folded or aliased): never "fall back"
DLA_NO_LAYER = frozenset({"Constant", "Identity", "Dropout"})
# why notable ops are not on DLA, for the report
DLA_FALLBACK_REASONS: Dict[str, str] = {
    "HardSwish": "activation not on DLA (only ReLU, Sigmoid, TanH, clipped/leaky ReLU)",
    "HardSigmoid": "activation not on DLA (only ReLU, Sigmoid, TanH, clipped/leaky ReLU)",
    "Gelu": "activation not on DLA (only ReLU, Sigmoid, TanH, clipped/leaky ReLU)",
    "Erf": "GELU's Erf is not on DLA",
    "Elu": "activation not on DLA (only ReLU, Sigmoid, TanH, clipped/leaky ReLU)",
    "Selu": "activation not on DLA (only ReLU, Sigmoid, TanH, clipped/leaky ReLU)",
    "Softplus": "activation not on DLA (only ReLU, Sigmoid, TanH, clipped/leaky ReLU)",
    "MatMul": "matrix multiply is not in DLA's layer list",
    "Gemm": "matrix multiply is not in DLA's layer list",
    "ReduceSum": "DLA's Reduce supports MAX only",
    "ReduceMean": "DLA's Reduce supports MAX only",
    "Cast": "Cast layers run on the GPU",
    "Equal": "DLA comparisons are INT8 only",
    "Greater": "DLA comparisons are INT8 only",
    "Less": "DLA comparisons are INT8 only",
}
DLA_MAX_DIM = 8192  # largest non-batch dimension DLA takes
DLA_CONV_KERNEL = (1, 32)
DLA_CONV_STRIDE = (1, 8)
DLA_RESIZE_SCALE_MAX = {"nearest": 32, "linear": 4}  # integer scales on H and W only
