"""fp16 hazards: numbers that fp16 cannot hold, sums that outgrow it, divisions without a guard.

Each check looks only where the arithmetic happens in fp16 (see precision.py for that rule),
except "missing eps", which is a NaN in fp32 as much as in fp16 (0/0). The thresholds below are
fp16's own limits; the long-reduction lengths are a judgement, explained where they are defined.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import onnx

from .model_view import VALUE_PRESERVING, ModelView, attribute
from .precision import _NO_ARITHMETIC, PINNED_KEY, PrecisionContext
from .report import ERROR, WARNING, Finding

FP16_MAX = 65504.0
FP16_SMALLEST = 2.0**-24  # smallest subnormal, ~5.96e-8: anything below about half of it becomes 0
FP16_MIN_NORMAL = 2.0**-14  # ~6.1e-5: below it fp16 keeps only a few significant bits
# A sum of K terms overflows fp16 once the mean |term| exceeds 65504 / K: 16 at 4096 terms (the
# products of trained activations reach that; LiteMLA at stride 16 of a 1024x2048 input sums 8192
# tokens), 64 at 1024 (possible, worth a look). Below 1024 terms fp16 sums are routine.
LONG_REDUCTION_ERROR = 4096
LONG_REDUCTION_WARNING = 1024
# A contraction whose terms are scaled down by a constant is safe when the scale is at most
# 1/sqrt(L) (L terms): the sum is then at most sqrt(L) * mean|unscaled term| (90x at 8192 terms)
# rather than L times it (8192x). LiteMLA's token scaling multiplies k and v by
# 1/sqrt(N) each (kv = v @ k^T: scale 1/N) and sums k / sqrt(N) (scale 1/sqrt(N)). The tolerance
# absorbs fp16's rounding of the stored scale (1/sqrt(8192) = 0.011049 is 0.01105 in fp16).
SCALE_TOLERANCE = 2.0**-9
# ops that only move, re-type or relabel values: a scale applied before them still applies
_SHAPE_ONLY = frozenset({"Transpose", "Reshape", "Cast", "Identity", "Squeeze", "Unsqueeze", "Flatten"})
# relative change of an eps by fp16 rounding that is worth a warning (1e-7 -> 1.19e-7 is +19%)
EPS_ROUNDING_WARNING = 0.10

# walking back from a denominator: ops that keep a zero a zero
_ZERO_PRESERVING = VALUE_PRESERVING | {"Transpose", "Slice", "Gather", "Split", "Sqrt"}
# sums that are exactly 0 for an all-zero (e.g. ReLU-killed) input
_SUMS = frozenset({"ReduceSum", "ReduceMean", "ReduceL1", "ReduceL2", "ReduceSumSquare", "MatMul", "Gemm", "Einsum"})
_POSITIVE = frozenset({"Exp", "Sigmoid", "Softplus"})  # sums of these are > 0: softmax needs no eps
_SUM_REDUCTIONS = frozenset({"ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2"})
#: normalisations whose statistics overflow in fp16 (export pins them to fp32 for weakly typed builds)
NORM_OPS = frozenset({"LayerNormalization", "InstanceNormalization", "GroupNormalization"})
_WEIGHTS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
_OFFSETS = frozenset({"Add", "Sub", "Sum"})
_BOUNDS = frozenset({"Max", "Min", "Clip"})


def check_all(view: ModelView, context: PrecisionContext, notes: Optional[List[str]] = None) -> List[Finding]:
    findings: List[Finding] = []
    findings += check_missing_eps(view, context)
    findings += check_constants(view, context)
    findings += check_nonfinite_fp16_constants(view, context)
    findings += check_long_reductions(view, context, notes)
    findings += check_normalizations(view, context)
    findings += check_hand_written_layer_norms(view, context)
    return findings


def _finding(view: ModelView, node: onnx.NodeProto, severity: str, check: str, detail: str, fix: str = "") -> Finding:
    module, source = view.module_of(node)
    return Finding(severity, check, view.label(node), detail, fix, node.op_type, module, source)


def _keep_fp32_fix(context: PrecisionContext, node: onnx.NodeProto) -> str:
    # one wording per typing, without the node's name: the report lists each fix once
    if context.typing == "weak":
        return (
            f"pin the node to fp32 (list it in the metadata {PINNED_KEY}; build with --precisionConstraints=obey "
            f"--layerPrecisions=<node>:fp32), or export the mixed-precision fp16 ONNX"
        )
    return (
        "compute it in an fp32 island (Cast to float32 before, back to float16 after), as msla-deploy's fp16 export "
        "does"
    )


def _short(name: str, keep: int = 28) -> str:
    """Exporters name constants after the first module that used them: keep the telling tail."""
    return name if len(name) <= keep else "..." + name[-(keep - 3) :]


def _show(value: np.ndarray) -> str:
    flat = value.reshape(-1)
    if flat.size == 1:
        return f"{float(flat[0]):.3g} ({value.dtype.name})"
    nonzero = np.abs(flat[flat != 0])
    span = f"|x| in [{nonzero.min():.3g}, {nonzero.max():.3g}]" if nonzero.size else "all 0"
    return f"{flat.size} values, {span} ({value.dtype.name})"


# ---- sensitive uses --------------------------------------------------------------------------
def _feeds_denominator(view: ModelView, tensor: str, depth: int = 12) -> bool:
    """Does this tensor end up (through zero-preserving ops) as a divisor, a Reciprocal, a Sqrt or
    a Log? There an eps that became 0 lets a 0 through: inf or NaN."""
    frontier, seen = [tensor], set()
    while frontier and depth > 0:
        depth -= 1
        name = frontier.pop()
        if name in seen:
            continue
        seen.add(name)
        for user, index in view.users(name):
            if (user.op_type == "Div" and index == 1) or user.op_type in ("Reciprocal", "Sqrt", "Log"):
                return True
            if user.op_type in _ZERO_PRESERVING:
                frontier.extend(o for o in user.output if o)
    return False


def _walk_denominator(view: ModelView, tensor: str) -> Tuple[str, Optional[onnx.NodeProto], Optional[str]]:
    """Follow a divisor back to what makes it. Returns (kind, node, constant input):
    "guard" (an Add/Max/Clip of a constant), "sum" (a reduction or matmul, no guard between),
    "positive" (a sum of exp/sigmoid/softplus), or "other"."""
    name = tensor
    for _ in range(64):
        node = view.producer.get(name)
        if node is None or view.is_const(name):
            return "other", node, None
        op = node.op_type
        if op in ("Add", "Sum", "Max"):
            consts = [i for i in node.input if view.is_const(i)]
            return ("guard", node, consts[0]) if consts else ("other", node, None)
        if op == "Clip":
            low = node.input[1] if len(node.input) > 1 else ""
            if view.is_const(low):
                return "guard", node, low
            if attribute(node, "min") is not None:  # opset < 11 keeps the bound as an attribute
                return "guard", node, None
            return "other", node, None
        if op in _SUMS:
            return ("positive" if _positive_source(view, node) else "sum"), node, None
        if op in _ZERO_PRESERVING and node.input:
            name = node.input[0]
            continue
        return "other", node, None
    return "other", None, None


def _positive_source(view: ModelView, reduction: onnx.NodeProto) -> bool:
    if reduction.op_type not in ("ReduceSum", "ReduceMean") or not reduction.input:
        return False
    name = reduction.input[0]
    for _ in range(16):
        node = view.producer.get(name)
        if node is None:
            return False
        if node.op_type in _POSITIVE:
            return True
        if node.op_type not in _ZERO_PRESERVING or not node.input:
            return False
        name = node.input[0]
    return False


# ---- checks --------------------------------------------------------------------------------------
def check_missing_eps(view: ModelView, context: PrecisionContext) -> List[Finding]:
    """Div(x, sum) with no positive constant added: an all-zero query gives 0/0 = NaN, in any
    precision. This is what torch's dynamo exporter leaves of upstream LiteMLA's `+ 1e-15`."""
    findings = []
    for node in view.nodes:
        if node.op_type == "Div" and len(node.input) > 1:
            divisor = node.input[1]
        elif node.op_type == "Reciprocal" and node.input:
            divisor = node.input[0]
        else:
            continue
        kind, source, const = _walk_denominator(view, divisor)
        if kind == "sum":
            findings.append(
                _finding(
                    view,
                    node,
                    ERROR,
                    "missing-eps",
                    f"divides by the {source.op_type} '{view.label(source)}' with no eps added: where that sum is 0 "
                    f"(e.g. an all-zero ReLU query) the result is 0/0 = NaN",
                    "add a positive eps before the division (den + eps, eps >= 6.1e-5 if it runs in fp16); with "
                    "torch's "
                    "dynamo exporter keep eps in a 1-element tensor (a scalar within 1e-8 of 0 is optimised away), "
                    "or export with the legacy exporter (dynamo=False)",
                )
            )
        elif kind == "guard" and const is not None:
            value = view.const_value(const)
            guarded = [i for i in source.input if i and i != const]
            # a zero "eps" only matters in front of a sum that can be 0 (not x - 1 written as Add)
            if (
                value is not None
                and value.dtype.kind == "f"
                and value.size
                and np.all(value == 0)
                and guarded
                and _walk_denominator(view, guarded[0])[0] == "sum"
            ):
                stored_fp16 = value.dtype == np.float16
                findings.append(
                    _finding(
                        view,
                        source,
                        ERROR,
                        "eps-underflow" if stored_fp16 else "missing-eps",
                        f"the eps '{_short(const)}' guarding the division '{view.label(node)}' is {_show(value)}"
                        + (
                            ": fp16 cannot hold an eps below ~6e-8 (a converter rounded e.g. 1e-15 to 0), so 0/0 = NaN"
                            if stored_fp16
                            else ": no guard, 0/0 = NaN"
                        ),
                        "keep the normaliser and the division in fp32 (an fp32 island with eps 1e-15), or use an eps "
                        ">= 6.1e-5 that fp16 holds",
                    )
                )
    return findings


def check_constants(view: ModelView, context: PrecisionContext) -> List[Finding]:
    """Constants used in fp16 arithmetic that fp16 turns into 0 or inf."""
    findings = []
    for node in view.nodes:
        op = node.op_type
        if op not in _WEIGHTS | _OFFSETS | _BOUNDS | {"Mul", "Div", "Pow", "Where"}:
            continue
        if not context.computes_fp16(view, node):
            continue
        for index, name in enumerate(node.input):
            value = view.const_value(name)
            if value is None or value.dtype.kind != "f" or value.size == 0 or value.dtype == np.float16:
                continue  # already float16: what it holds is what runs (zero eps: check_missing_eps)
            with np.errstate(over="ignore", under="ignore", invalid="ignore"):
                half = value.astype(np.float16)
            finite = np.isfinite(value)
            overflow = int(np.count_nonzero(finite & ~np.isfinite(half)))
            underflow = int(np.count_nonzero((value != 0) & (half == 0)))
            if overflow and op not in _BOUNDS:  # an infinite bound is still no bound
                severity = WARNING if op == "Where" else ERROR
                findings.append(
                    _finding(
                        view,
                        node,
                        severity,
                        "fp16-overflow",
                        f"constant '{_short(name)}' ({_show(value)}) has {overflow} value(s) beyond fp16's max "
                        "65504: inf in fp16",
                        _keep_fp32_fix(context, node),
                    )
                )
            if not underflow or op in _WEIGHTS or op == "Pow" or (op == "Div" and index == 0):
                continue  # tiny weights rounding to 0 is ordinary fp16 quantisation
            eps_role = op in _OFFSETS | _BOUNDS and _feeds_denominator(view, node.output[0])
            severity = ERROR if (eps_role or op in ("Mul", "Div")) else WARNING
            effect = {
                True: "the eps guard vanishes: 0/0 = NaN where the denominator is 0",
                False: {"Mul": "the product is 0", "Div": "division by 0: inf"}.get(op, "the constant is lost"),
            }[eps_role]
            findings.append(
                _finding(
                    view,
                    node,
                    severity,
                    "eps-underflow" if eps_role else "fp16-underflow",
                    f"constant '{_short(name)}' = {_show(value)} is 0 in fp16 (smallest subnormal ~6e-8): {effect}",
                    _keep_fp32_fix(context, node),
                )
            )
    return findings


# inf as a constant is meaningful here: a bound of +-inf is no bound, a comparison with inf is defined
_INF_IS_MEANINGFUL = _BOUNDS | {"Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Equal", "IsInf", "IsNaN"}


def _fp16_nonfinite_origin(view: ModelView, name: str) -> Optional[Tuple[str, np.ndarray]]:
    """Where a constant input holds inf/NaN as float16: the value as used or, walking back
    through value-preserving ops (e.g. a Cast back to float32), as stored. Returns (tensor, value)
    of the nearest float16 value with a non-finite element; None otherwise."""
    for _ in range(16):
        value = view.const_value(name)
        if value is None:
            return None
        if value.dtype == np.float16 and not np.all(np.isfinite(value)):
            return name, value
        node = view.producer.get(name)
        if node is None or node.op_type not in VALUE_PRESERVING or not node.input:
            return None
        name = node.input[0]
    return None


def check_nonfinite_fp16_constants(view: ModelView, context: PrecisionContext) -> List[Finding]:
    """float16 constants (initializers, Constant nodes, or fp32 constants Cast to float16) that
    hold inf or NaN and feed arithmetic: e.g. `y * 1e5` exported under model.half() (1e5 > 65504
    is stored as inf). The value is already lost, so this holds whatever the build precision.
    Exceptions, as for fp32 constants in check_constants: an infinite bound (Clip/Max/Min) or
    comparison is left alone, and Where with inf (a -inf mask) is a warning. NaN is always an error."""
    findings = []
    for node in view.nodes:
        if node.op_type in _NO_ARITHMETIC:
            continue  # ops that only move values (Cast, Reshape, ...): judged where the value is used
        for name in node.input:
            origin = _fp16_nonfinite_origin(view, name)
            if origin is None:
                continue
            tensor, value = origin
            nan = int(np.count_nonzero(np.isnan(value)))
            inf = int(np.count_nonzero(np.isinf(value)))
            if not nan and node.op_type in _INF_IS_MEANINGFUL:
                continue
            severity = WARNING if (not nan and node.op_type == "Where") else ERROR
            what = " and ".join(p for p in (f"{inf} inf" if inf else "", f"{nan} NaN" if nan else "") if p)
            stored = "" if tensor == name else f" (from '{_short(tensor)}')"
            findings.append(
                _finding(
                    view,
                    node,
                    severity,
                    "fp16-overflow",
                    f"constant '{_short(name)}'{stored} is {what} in fp16 ({value.size} value(s)): "
                    "a value beyond fp16's max 65504 was stored as inf, and inf/NaN spreads through the "
                    f"{node.op_type}",
                    "keep the constant within fp16's range (|c| <= 65504; rescale the computation), or keep it and "
                    "its use in fp32 (export that part in fp32 and Cast the result to float16)",
                )
            )
    return findings


def _reduced_length(view: ModelView, node: onnx.NodeProto) -> Optional[int]:
    op = node.op_type
    if op == "MatMul":
        a, b = node.input[0], node.input[1]
        if view.is_const(a) or view.is_const(b):
            return None  # a layer with weights, like a conv: trained to fp16-friendly ranges
        shape = view.shape(a)
        return shape[-1] if shape and isinstance(shape[-1], int) else None
    if op == "Gemm":
        if view.is_const(node.input[1]):
            return None
        shape = view.shape(node.input[0])
        if not shape or len(shape) != 2:
            return None
        k = shape[0] if attribute(node, "transA", 0) else shape[1]
        return k if isinstance(k, int) else None
    if op in _SUM_REDUCTIONS:
        shape = view.shape(node.input[0])
        if not shape:
            return None
        axes = attribute(node, "axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            const = view.const_value(node.input[1])
            axes = None if const is None else [int(a) for a in const.reshape(-1)]
        if not axes:
            if attribute(node, "noop_with_empty_axes", 0):
                return None
            axes = list(range(len(shape)))
        dims = [shape[a] for a in axes if -len(shape) <= a < len(shape)]
        if not dims or not all(isinstance(d, int) for d in dims):
            return None
        return int(np.prod(dims))
    return None


def _scalar(view: ModelView, name: str) -> Optional[float]:
    """|c| of a constant with a single element (a scalar, [1], [1, 1], ...); None otherwise."""
    value = view.const_value(name)
    if value is None or value.dtype.kind != "f" or value.size != 1:
        return None
    c = abs(float(value.reshape(-1)[0]))
    return c if np.isfinite(c) else None


def _input_scale(view: ModelView, tensor: str, depth: int = 32) -> float:
    """The constant factor a tensor was multiplied by on its way here: walk back through
    shape-only ops (Transpose/Reshape/Cast/...) and scalar Mul (either operand order) or Div by a
    scalar constant, multiplying the factors found. 1.0 where there is none."""
    scale, name = 1.0, tensor
    for _ in range(depth):
        node = view.producer.get(name)
        if node is None or view.is_const(name):
            break
        if node.op_type in _SHAPE_ONLY and node.input:
            name = node.input[0]
            continue
        if node.op_type == "Mul" and len(node.input) == 2:
            a, b = node.input[0], node.input[1]
            ca, cb = _scalar(view, a), _scalar(view, b)
            if cb is not None and ca is None:
                scale, name = scale * cb, a
                continue
            if ca is not None and cb is None:
                scale, name = scale * ca, b
                continue
        if node.op_type == "Div" and len(node.input) == 2 and not view.is_const(node.input[0]):
            c = _scalar(view, node.input[1])
            if c:  # a 0 divisor is not a scale (and check_constants reports it)
                scale, name = scale / c, node.input[0]
                continue
        break
    return scale


def _contraction_scale(view: ModelView, node: onnx.NodeProto) -> float:
    """Product of the constant scales on the summed terms: both factors of a MatMul/Gemm (Gemm's
    alpha too), the one input of a sum reduction."""
    if node.op_type in ("MatMul", "Gemm"):
        scale = _input_scale(view, node.input[0]) * _input_scale(view, node.input[1])
        if node.op_type == "Gemm":
            scale *= abs(float(attribute(node, "alpha", 1.0)))
        return scale
    return _input_scale(view, node.input[0])


def check_long_reductions(
    view: ModelView, context: PrecisionContext, notes: Optional[List[str]] = None
) -> List[Finding]:
    """Sums over many terms typed fp16: the result itself can pass 65504. (ReduceMean is left
    out: a mean is bounded by its terms; so are convolutions and matmuls with weights.) A sum of
    L terms scaled by constants whose product is <= 1/sqrt(L) (see SCALE_TOLERANCE) is safe: it is
    left out, with a note when notes is given."""
    findings, scaled = [], []
    for node in view.nodes:
        if node.op_type not in _SUM_REDUCTIONS | {"MatMul", "Gemm"} or not context.computes_fp16(view, node):
            continue
        length = _reduced_length(view, node)
        if length is None or length < LONG_REDUCTION_WARNING:
            continue
        # ReduceSumSquare/L2 square their terms first: a scale on the input does not bound the sum alike
        if node.op_type in ("MatMul", "Gemm", "ReduceSum", "ReduceL1"):
            scale = _contraction_scale(view, node)
            if scale <= (1.0 + SCALE_TOLERANCE) / np.sqrt(length):
                scaled.append(f"{view.label(node)} ({length} terms, scale {scale:.3g})")
                continue
        what = "contracts over" if node.op_type in ("MatMul", "Gemm") else "sums"
        findings.append(
            _finding(
                view,
                node,
                ERROR if length >= LONG_REDUCTION_ERROR else WARNING,
                "long-reduction",
                f"{what} {length} terms in fp16: the result overflows fp16 (max 65504) once the mean |term| "
                f"exceeds {FP16_MAX / length:.3g}",
                _keep_fp32_fix(context, node) + "; or scale the terms first (LiteMLA's normalised attention is "
                "invariant to dividing k and v by sqrt(token count)): a constant scale <= 1/sqrt(terms) is "
                "recognised as safe",
            )
        )
    if scaled and notes is not None:
        notes.append(f"long fp16 sums scaled by <= 1/sqrt(terms), safe: {', '.join(scaled)}")
    return findings


def check_normalizations(view: ModelView, context: PrecisionContext) -> List[Finding]:
    findings = []
    for node in view.nodes:
        op = node.op_type
        if op != "BatchNormalization" and op not in NORM_OPS:
            continue
        if not context.computes_fp16(view, node):
            continue
        eps = float(attribute(node, "epsilon", 1e-5))
        half = float(np.float16(eps))
        if op == "BatchNormalization":
            findings += _batchnorm(view, node, context, eps, half)
            continue
        if half == 0:
            findings.append(
                _finding(
                    view,
                    node,
                    ERROR,
                    "norm-eps",
                    f"epsilon {eps:g} is 0 in fp16: a constant input (variance 0) divides by 0",
                    _keep_fp32_fix(context, node) + f", or use epsilon >= {FP16_MIN_NORMAL:.2g}",
                )
            )
        elif abs(half - eps) > EPS_ROUNDING_WARNING * eps:
            findings.append(
                _finding(
                    view,
                    node,
                    WARNING,
                    "norm-eps",
                    f"epsilon {eps:g} becomes {half:.3g} in fp16 (a subnormal)",
                    _keep_fp32_fix(context, node),
                )
            )
        findings.append(
            _finding(
                view,
                node,
                WARNING,
                "norm-fp16",
                f"{op} statistics in fp16: the mean of squares overflows once |x| exceeds ~256",
                _keep_fp32_fix(context, node),
            )
        )
    return findings


def _batchnorm(
    view: ModelView, node: onnx.NodeProto, context: PrecisionContext, eps: float, half: float
) -> List[Finding]:
    """Inference BN is a per-channel scale and shift: scale = gamma / sqrt(var + eps). A dead
    channel (var ~ 0) with a tiny eps gives a scale fp16 cannot hold."""
    findings = []
    values = [view.const_value(n) if n else None for n in list(node.input[1:5])]
    if len(values) == 4 and all(v is not None for v in values):
        gamma, beta, mean, var = (v.astype(np.float64) for v in values)
        scale = gamma / np.sqrt(np.maximum(var, 0) + eps)
        shift = beta - mean * scale
        worst = float(max(np.abs(scale).max(initial=0), np.abs(shift).max(initial=0)))
        if worst > FP16_MAX:
            findings.append(
                _finding(
                    view,
                    node,
                    ERROR,
                    "bn-variance",
                    f"variance ~0 with epsilon {eps:g} folds to a scale/shift of {worst:.3g} > 65504: inf in fp16",
                    _keep_fp32_fix(context, node) + ", or raise epsilon",
                )
            )
    if half == 0:
        findings.append(
            _finding(
                view,
                node,
                WARNING,
                "norm-eps",
                f"epsilon {eps:g} is 0 in fp16; harmless only while TensorRT folds the BN into fp32 weights",
                "fold BN into the preceding convolution at export (both exporters do by default)",
            )
        )
    return findings


# ---- hand-written LayerNorm ----------------------------------------------------------------------
# LayerNorm written out as elementary ops, as EfficientViT-SAM's LayerNorm2d (and segment-anything's)
# is: m = mean_c(x); c = x - m; v = mean_c(c^2); y = c / sqrt(v + eps). Exporters keep it so (it is
# not nn.LayerNorm), in two spellings: ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div (upstream's), or
# sums times 1/C and c * c (this project's zoo). In fp16 its squares overflow once |x - m| > 256 (a
# trained SAM neck gives pre-norm features in the hundreds to thousands): v is inf, y is 0 or NaN;
# and eps 1e-6 is an fp16 subnormal. efficientvit #113 / #142 (TensorRT #3893): NaN fp16 encoders,
# fixed upstream's way by keeping the LayerNorm in fp32.


def _mean_of(view: ModelView, tensor: str) -> Optional[Tuple[str, List[onnx.NodeProto]]]:
    """(x, nodes) when `tensor` is a mean of x: ReduceMean(x), ReduceSum(x) * c (either order), ReduceSum(x) / c."""
    node = view.producer.get(tensor)
    if node is None:
        return None
    if node.op_type == "ReduceMean" and node.input:
        return node.input[0], [node]
    if node.op_type in ("Mul", "Div") and len(node.input) == 2:
        orders = ((0, 1), (1, 0)) if node.op_type == "Mul" else ((0, 1),)
        for data, scale in orders:
            inner = view.producer.get(node.input[data])
            if view.is_const(node.input[scale]) and inner is not None and inner.op_type == "ReduceSum":
                return inner.input[0], [inner, node]
    return None


def _square_of(view: ModelView, tensor: str) -> Optional[Tuple[str, onnx.NodeProto]]:
    """(c, node) when `tensor` is c squared: Pow(c, 2) or Mul(c, c)."""
    node = view.producer.get(tensor)
    if node is None or len(node.input) != 2:
        return None
    if node.op_type == "Mul" and node.input[0] == node.input[1]:
        return node.input[0], node
    if node.op_type == "Pow":
        exponent = view.const_value(node.input[1])
        if exponent is not None and exponent.size == 1 and float(exponent.reshape(-1)[0]) == 2.0:
            return node.input[0], node
    return None


def _hand_written_layer_norm(view: ModelView, sqrt: onnx.NodeProto):
    """The LayerNorm whose standard deviation `sqrt` computes: (square node, variance nodes, eps Add,
    eps tensor, every node of it), or None when `sqrt` is something else."""
    add = view.producer.get(sqrt.input[0]) if sqrt.input else None
    if add is None or add.op_type != "Add" or len(add.input) != 2:
        return None
    consts = [i for i in add.input if view.is_const(i)]
    if len(consts) != 1:
        return None
    variance = _mean_of(view, next(i for i in add.input if i != consts[0]))
    squared = _square_of(view, variance[0]) if variance else None
    centre = view.producer.get(squared[0]) if squared else None
    if centre is None or centre.op_type != "Sub" or len(centre.input) != 2:
        return None
    mean = _mean_of(view, centre.input[1])
    if mean is None or mean[0] != centre.input[0]:
        return None
    users = [u for u, _ in view.users(sqrt.output[0]) if u.op_type in ("Div", "Reciprocal")]
    nodes = [*mean[1], centre, squared[1], *variance[1], add, sqrt, *users]
    return squared[1], variance[1], add, consts[0], nodes


def check_hand_written_layer_norms(view: ModelView, context: PrecisionContext) -> List[Finding]:
    findings = []
    for sqrt in (n for n in view.nodes if n.op_type == "Sqrt"):
        found = _hand_written_layer_norm(view, sqrt)
        if found is None:
            continue
        square, variance, add, eps_name, nodes = found
        if not any(context.computes_fp16(view, n) for n in (square, *variance)):
            continue  # squares and their mean in fp32 (pinned, or an fp32 island): what keeps it safe
        detail = (
            "a hand-written LayerNorm (mean, x - mean, squares, mean, + eps, Sqrt, Div) squares in fp16: "
            "(x - mean)^2 overflows fp16's 65504 once |x - mean| > 256, the variance becomes inf and the "
            "output 0 or NaN"
        )
        eps = view.const_value(eps_name)
        if eps is not None and eps.size == 1 and eps.dtype.kind == "f" and context.computes_fp16(view, add):
            value = abs(float(eps.reshape(-1)[0]))
            if float(np.float16(value)) == 0:
                detail += f"; its eps {value:g} is 0 in fp16 (a constant input divides by 0)"
            elif value < FP16_MIN_NORMAL:
                detail += f"; its eps {value:g} is an fp16 subnormal (below {FP16_MIN_NORMAL:.2g})"
        finding = _finding(
            view,
            square,
            ERROR,
            "layernorm-fp16",
            detail,
            _keep_fp32_fix(context, square) + " for all of the norm's nodes (efficientvit #142: keep LayerNorm in "
            "fp32; msla-deploy's SAM export does)",
        )
        finding.nodes = [view.label(n) for n in nodes]
        findings.append(finding)
    return findings
