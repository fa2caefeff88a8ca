"""Upstream's pre- and postprocessing around the model, torch-free, run by ONNX Runtime.

Upstream's evaluation (applications/efficientvit_seg/eval_efficientvit_seg_model.py):

- picture: RGB uint8 -> cv2.resize INTER_CUBIC to the crop size when the sizes differ (a = -0.75,
  pixel centres at +0.5, edge pixels repeated, no antialiasing; the result is uint8 again) ->
  /255 -> ImageNet mean/std -> N x 3 x H x W float32.
- logits [N, C, h, w] -> F.interpolate(mode="bicubic", align_corners=False) to the label size ->
  argmax over the classes.

Both interpolations are ONNX `Resize` (mode cubic, coordinate_transformation_mode half_pixel,
cubic_coeff_a -0.75, exclude_outside 0), which is the operator PyTorch exports its bicubic
interpolation to, run by ONNX Runtime on the CPU: no hand-written interpolation. ONNX Runtime's
cubic Resize is slow on large maps (6 s for 19 x 1024 x 2048 on one core), so it is applied the
way it is defined, separably: Resize turns an identity matrix into each axis' interpolation
matrix (a resize is linear, so resizing e_i gives the weights of source pixel i), and the graph
multiplies by the two matrices (MatMul, fast and threaded; 0.26 s). For labels the matrices are
applied in bands (each block of output rows or columns multiplies only the source lines its four
cubic taps touch) and each block is argmax'ed while it is in the cache: 0.05 s on one thread for
the same upsample + argmax, the same floats bit for bit (see _exact_banding). The tiny graphs are
built with onnx.helper and cached per shape, so a dataset of one size builds each once.

This is the project's one preprocessing: evaluate, the Segmenter (predict, serve), `reference
--inputs` and int8 calibration (through runtime/picture_files.py, which only decodes the files) all feed
the model what `preprocess` gives. The resize is upstream's evaluation protocol, cv2's cubic, for
all of them: reference pictures and calibration pictures are then exactly the input the deployed
model is scored and used on. (Those two once had a bilinear numpy path of their own, which gave
the same picture an input a few grey levels away from evaluate's wherever it was resized.)
Pictures already at the model's size are only normalised, which no resize choice changes.

The one known difference: cv2 interpolates uint8 in 11-bit fixed point, we in float32 and round to
the nearest grey level, so a resized pixel can differ from cv2's by one grey level (measured
against opencv-python-headless 5.0 on procedural scenes, up- and downscaling: at most 1, on at
most 0.03% of the values).
"""

from __future__ import annotations

import threading
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..artifact.reference import IMAGENET_MEAN, IMAGENET_STD
from .onnxruntime import import_onnxruntime

#: the preprocessing in words, as reports and the reference bundle's info record it
PREPROCESSING = (
    "RGB, cubic resize (cv2 INTER_CUBIC: a=-0.75, half-pixel) to the artifact's HxW when sizes differ, "
    "/255, ImageNet mean/std"
)
CUBIC_COEFF_A = -0.75
OPSET = 13  # Resize-13 has every attribute needed; old enough for JetPack 5's ONNX Runtime
IR_VERSION = 7  # the IR that opset 13 shipped with (newer onnx packages default to a newer one)
# upsampled floats per row block of the labels graph (8 MiB; blocks of 1-20 MiB measured alike)
ROW_BLOCK_VALUES = 1 << 21
WIDTH_BLOCK = 256  # output columns per block of the labels graph's width resize (measured: 64-512 alike)

_sessions: Dict[Tuple, object] = {}
_lock = threading.RLock()  # re-entrant: building a graph opens the weights session


def _node(op: str, inputs, outputs, **attributes):
    from onnx import helper

    return helper.make_node(op, inputs, outputs, **attributes)


def _model(nodes, inputs, outputs, initializers) -> bytes:
    from onnx import helper

    graph = helper.make_graph(nodes, "msla_deploy_processing", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", OPSET)], producer_name="msla-deploy")
    model.ir_version = IR_VERSION
    return model.SerializeToString()


def _weights_graph(n_in: int, n_out: int) -> bytes:
    """identity [1, 1, n_in, n_in] -> Resize of its last axis to n_out: row i = the weights of source i."""
    from onnx import TensorProto, helper, numpy_helper

    init = [numpy_helper.from_array(np.array([1, 1, n_in, n_out], np.int64), "sizes")]
    node = _node(
        "Resize",
        ["eye", "", "", "sizes"],
        ["weights"],
        mode="cubic",
        coordinate_transformation_mode="half_pixel",
        cubic_coeff_a=CUBIC_COEFF_A,
        exclude_outside=0,
    )
    return _model(
        [node],
        [helper.make_tensor_value_info("eye", TensorProto.FLOAT, [1, 1, n_in, n_in])],
        [helper.make_tensor_value_info("weights", TensorProto.FLOAT, [1, 1, n_in, n_out])],
        init,
    )


def axis_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_in, n_out] float32: x @ W resizes the last axis of x as ONNX Resize (cubic, half_pixel, a=-0.75) does."""
    session = _session(("weights", n_in, n_out), lambda: _weights_graph(n_in, n_out), None)
    eye = np.eye(n_in, dtype=np.float32)[None, None]
    return session.run(None, {"eye": eye})[0][0, 0]


def _separable_resize(source: str, hw_in: Tuple[int, int], hw_out: Tuple[int, int], nodes: list, init: list) -> str:
    """Append MatMuls resizing the last two axes of `source` (an axis whose size stays is left alone)."""
    from onnx import numpy_helper

    current = source
    if hw_in[1] != hw_out[1]:  # along W: x [..., h, w] @ Ww [w, W]
        init.append(numpy_helper.from_array(axis_weights(hw_in[1], hw_out[1]), "weights_w"))
        nodes.append(_node("MatMul", [current, "weights_w"], ["resized_w"]))
        current = "resized_w"
    if hw_in[0] != hw_out[0]:  # along H: Wh^T [H, h] @ x [..., h, W]
        init.append(numpy_helper.from_array(np.ascontiguousarray(axis_weights(hw_in[0], hw_out[0]).T), "weights_h"))
        nodes.append(_node("MatMul", ["weights_h", current], ["resized_h"]))
        current = "resized_h"
    return current


def _picture_graph(hw_in: Tuple[int, int], hw_out: Tuple[int, int], normalise: bool, grey_levels: bool = True) -> bytes:
    """uint8 [H, W, 3] -> uint8 [H', W', 3] (resize only), or float32 [1, 3, H', W'] normalised.
    With grey_levels False the picture is float32 in [0, 1] (more than 8 bits): resized in
    floats and clipped to [0, 1], not rounded (cv2 resizes a float picture in floats)."""
    from onnx import TensorProto, helper, numpy_helper

    oh, ow = hw_out
    init = [numpy_helper.from_array(np.array([1, hw_in[0], hw_in[1], 3], np.int64), "nhwc")]
    if grey_levels or hw_in != tuple(hw_out):  # white: what Div and Clip need
        init.append(numpy_helper.from_array(np.array(255.0 if grey_levels else 1.0, np.float32), "full"))
    # the batch axis and the channel transpose on the uint8 picture (a quarter of the bytes of a
    # float one), so the normalised result is the graph output without a reshaping copy
    nodes = [
        _node("Reshape", ["pixels", "nhwc"], ["pixels_n"]),
        _node("Transpose", ["pixels_n"], ["nchw_in"], perm=[0, 3, 1, 2]),
        _node("Cast", ["nchw_in"], ["nchw"], to=TensorProto.FLOAT),
    ]
    current = _separable_resize("nchw", hw_in, hw_out, nodes, init)
    if current != "nchw":
        # cv2 returns uint8: round to the nearest grey level and saturate (a float picture: saturate)
        init.append(numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
        if grey_levels:
            nodes.append(_node("Round", [current], ["rounded"]))
            current = "rounded"
        nodes.append(_node("Clip", [current, "zero", "full"], ["clipped"]))
        current = "clipped"
    if normalise:
        # torchvision's ToTensor then Normalize: x / 255, then (x - mean) / std, in float32
        init += [
            numpy_helper.from_array(np.asarray(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1), "mean"),
            numpy_helper.from_array(np.asarray(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1), "std"),
        ]
        if grey_levels:
            nodes.append(_node("Div", [current, "full"], ["unit"]))
            current = "unit"
        nodes += [
            _node("Sub", [current, "mean"], ["centred"]),
            _node("Div", ["centred", "std"], ["out"]),
        ]
        out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, oh, ow])
    else:
        init.append(numpy_helper.from_array(np.array([oh, ow, 3], np.int64), "hwc"))
        nodes += [
            _node("Cast", [current], ["resized_u8"], to=TensorProto.UINT8),  # whole grey levels: exact
            _node("Transpose", ["resized_u8"], ["nhwc_u8"], perm=[0, 2, 3, 1]),
            _node("Reshape", ["nhwc_u8", "hwc"], ["out"]),
        ]
        out = helper.make_tensor_value_info("out", TensorProto.UINT8, [oh, ow, 3])
    source = TensorProto.UINT8 if grey_levels else TensorProto.FLOAT
    pixels = helper.make_tensor_value_info("pixels", source, [hw_in[0], hw_in[1], 3])
    return _model(nodes, [pixels], [out], init)


def _logits_graph(shape: Tuple[int, ...], dtype: np.dtype, hw_out: Tuple[int, int], argmax: bool) -> bytes:
    """[N, C, h, w] logits -> float32 [N, C, H, W] upsampled, or int64 [N, H, W] labels."""
    from onnx import TensorProto, helper

    n, c, h, w = shape
    init: list = []
    nodes = [_node("Cast", ["logits"], ["logits_f"], to=TensorProto.FLOAT)]
    current = _separable_resize("logits_f", (h, w), hw_out, nodes, init)
    if argmax:
        # ties go to the first class, as torch.argmax and numpy's argmax do
        nodes.append(_node("ArgMax", [current], ["out"], axis=1, keepdims=0, select_last_index=0))
        out = helper.make_tensor_value_info("out", TensorProto.INT64, [n, hw_out[0], hw_out[1]])
    else:
        nodes.append(_node("Identity", [current], ["out"]))
        out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [n, c, hw_out[0], hw_out[1]])
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    return _model(nodes, [helper.make_tensor_value_info("logits", elem, list(shape))], [out], init)


def _row_blocks(weights_t: np.ndarray, rows: int) -> List[Tuple[int, int, int, int]]:
    """(r0, r1, k0, k1) for each block of `rows` output rows: the source rows k0:k1 its weights touch."""
    blocks = []
    for r0 in range(0, weights_t.shape[0], rows):
        r1 = min(r0 + rows, weights_t.shape[0])
        touched = np.flatnonzero(weights_t[r0:r1].any(axis=0))
        blocks.append((r0, r1, int(touched[0]), int(touched[-1]) + 1))
    return blocks


def _banded_logits_graph(
    shape: Tuple[int, ...], dtype: np.dtype, hw_out: Tuple[int, int], argmax: bool, band_width: bool
) -> bytes:
    """_logits_graph's arithmetic for a change of height, in blocks of output rows: each block
    multiplies only the few source rows its cubic weights touch (the dense height MatMul spends
    31 of 32 products on zeros at the model's x8), and with `argmax` is reduced to labels while
    it is still in the cache, so the N x C x H x W floats never exist at once. With `band_width`
    the width is resized in blocks of output columns the same way."""
    from onnx import TensorProto, helper, numpy_helper

    n, c, h, w = shape
    oh, ow = hw_out
    init: list = [numpy_helper.from_array(np.array([2], np.int64), "rows_axis")]
    nodes = [_node("Cast", ["logits"], ["logits_f"], to=TensorProto.FLOAT)]
    if band_width and w != ow:
        weights_w = axis_weights(w, ow)  # [w, W], the dense graph's weights_w
        init.append(numpy_helper.from_array(np.array([3], np.int64), "cols_axis"))
        columns = []
        for b, (c0, c1, k0, k1) in enumerate(_row_blocks(np.ascontiguousarray(weights_w.T), WIDTH_BLOCK)):
            init += [
                numpy_helper.from_array(np.ascontiguousarray(weights_w[k0:k1, c0:c1]), f"weights_w{b}"),
                numpy_helper.from_array(np.array([k0], np.int64), f"first_w{b}"),
                numpy_helper.from_array(np.array([k1], np.int64), f"end_w{b}"),
            ]
            nodes += [
                _node("Slice", ["logits_f", f"first_w{b}", f"end_w{b}", "cols_axis"], [f"source_w{b}"]),
                _node("MatMul", [f"source_w{b}", f"weights_w{b}"], [f"resized_w{b}"]),
            ]
            columns.append(f"resized_w{b}")
        nodes.append(_node("Concat", columns, ["resized_w"], axis=3))
        current = "resized_w"
    else:
        current = _separable_resize("logits_f", (h, w), (h, ow), nodes, init)  # the width, dense
    weights_t = np.ascontiguousarray(axis_weights(h, oh).T)  # [H, h], the dense graph's weights_h
    pieces = []
    for b, (r0, r1, k0, k1) in enumerate(_row_blocks(weights_t, max(1, min(oh, ROW_BLOCK_VALUES // (c * ow))))):
        init += [
            numpy_helper.from_array(np.ascontiguousarray(weights_t[r0:r1, k0:k1]), f"weights_h{b}"),
            numpy_helper.from_array(np.array([k0], np.int64), f"first{b}"),
            numpy_helper.from_array(np.array([k1], np.int64), f"end{b}"),
        ]
        nodes += [
            _node("Slice", [current, f"first{b}", f"end{b}", "rows_axis"], [f"source{b}"]),
            _node("MatMul", [f"weights_h{b}", f"source{b}"], [f"resized{b}"]),
        ]
        if argmax:
            nodes.append(_node("ArgMax", [f"resized{b}"], [f"labels{b}"], axis=1, keepdims=0, select_last_index=0))
        pieces.append(f"labels{b}" if argmax else f"resized{b}")
    nodes.append(_node("Concat", pieces, ["out"], axis=1 if argmax else 2))
    if argmax:
        out = helper.make_tensor_value_info("out", TensorProto.INT64, [n, oh, ow])
    else:
        out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [n, c, oh, ow])
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    return _model(nodes, [helper.make_tensor_value_info("logits", elem, list(shape))], [out], init)


def _exact_banding(
    shape: Tuple[int, ...], dtype: np.dtype, hw_out: Tuple[int, int], threads: Optional[int]
) -> Optional[bool]:
    """Which banded form this ONNX Runtime computes bit for bit as the dense one: band_width True
    (both axes) or False (the height only), or None for neither.

    A product with a zero weight adds exactly nothing to a sum of finite values, so the forms
    agree when the MatMul kernel accumulates each output along K in order from zero (MLAS does
    for K up to its block depth; a longer K is summed in partial blocks, which the banded form
    would not reproduce). Checked once per shape on random logits rather than assumed."""
    ort = import_onnxruntime()
    logits = (np.random.default_rng(0).standard_normal(shape) * 4).astype(dtype)
    dense = _session(
        ("up", shape, np.dtype(dtype).str, hw_out), lambda: _logits_graph(shape, dtype, hw_out, argmax=False), threads
    )
    expected = dense.run(None, {"logits": logits})[0]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for band_width in (True, False) if shape[3] != hw_out[1] else (False,):
        banded = ort.InferenceSession(
            _banded_logits_graph(shape, dtype, hw_out, False, band_width), options, providers=["CPUExecutionProvider"]
        )
        if np.array_equal(expected, banded.run(None, {"logits": logits})[0]):
            return band_width
    return None


def _labels_graph(shape: Tuple[int, ...], dtype: np.dtype, hw_out: Tuple[int, int], threads: Optional[int]) -> bytes:
    band_width = _exact_banding(shape, dtype, hw_out, threads) if shape[2] != hw_out[0] else None
    if band_width is None:
        return _logits_graph(shape, dtype, hw_out, argmax=True)
    return _banded_logits_graph(shape, dtype, hw_out, True, band_width)


def _session(key: Tuple, build, threads: Optional[int]):
    key = key + (threads,)
    with _lock:
        session = _sessions.get(key)
        if session is None:
            ort = import_onnxruntime()
            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            # no busy-waiting threads: these graphs share the CPU with the model being evaluated
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(build(), options, providers=["CPUExecutionProvider"])
            _sessions[key] = session
    return session


def _check_picture(pixels: np.ndarray, floats: bool = False) -> np.ndarray:
    """The picture as the graphs take it: H x W x 3 uint8, or (with `floats`) float32 in [0, 1]."""
    shape_ok = pixels.ndim == 3 and pixels.shape[2] == 3 and min(pixels.shape[:2]) >= 1
    if shape_ok and pixels.dtype == np.uint8:
        return np.ascontiguousarray(pixels)
    if shape_ok and floats and pixels.dtype in (np.float32, np.float64):
        if not np.isfinite(pixels).all() or pixels.min() < 0.0 or pixels.max() > 1.0:
            raise ValueError("a float picture's values must lie in [0, 1]")
        return np.ascontiguousarray(pixels, np.float32)
    kinds = "uint8 RGB (or float32 in [0, 1])" if floats else "uint8 RGB"
    raise ValueError(f"expected an H x W x 3 {kinds} picture, got {pixels.shape} {pixels.dtype}")


def _hw(size) -> Tuple[int, int]:
    return (int(size[0]), int(size[1]))


def resize_rgb(pixels: np.ndarray, size: Tuple[int, int], *, threads: Optional[int] = None) -> np.ndarray:
    """H x W x 3 uint8 -> size[0] x size[1] x 3 uint8, as cv2.resize INTER_CUBIC (the same array when sizes match)."""
    pixels = _check_picture(pixels)
    hw_in, hw_out = pixels.shape[:2], _hw(size)
    if hw_in == hw_out:
        return pixels
    session = _session(("rgb", hw_in, hw_out), lambda: _picture_graph(hw_in, hw_out, normalise=False), threads)
    return session.run(None, {"pixels": pixels})[0]


def preprocess(
    pixels: np.ndarray, size: Tuple[int, int], *, threads: Optional[int] = None, floats: bool = False
) -> np.ndarray:
    """H x W x 3 uint8 RGB -> 1 x 3 x size[0] x size[1] float32, upstream's evaluation input (PREPROCESSING).

    With `floats`, a float picture in [0, 1] is taken too (one with more than 8 bits, such as a
    16-bit grey PNG decoded by runtime/picture_files.py): resized the same way in floats, clipped to
    [0, 1], not rounded to grey levels (it has none). Without it a float picture is refused: one
    in 0..255 passed by mistake would otherwise be read as nearly white."""
    pixels = _check_picture(pixels, floats=floats)
    hw_in, hw_out = pixels.shape[:2], _hw(size)
    grey_levels = pixels.dtype == np.uint8
    key = ("input", hw_in, hw_out, grey_levels)
    session = _session(key, lambda: _picture_graph(hw_in, hw_out, normalise=True, grey_levels=grey_levels), threads)
    return session.run(None, {"pixels": pixels})[0]


def _check_logits(logits: np.ndarray) -> np.ndarray:
    if logits.ndim != 4 or logits.dtype not in (np.float32, np.float16, np.float64):
        raise ValueError(f"expected [N, C, h, w] float logits, got {logits.shape} {logits.dtype}")
    return np.ascontiguousarray(logits)


def upsample(logits: np.ndarray, size: Tuple[int, int], *, threads: Optional[int] = None) -> np.ndarray:
    """[N, C, h, w] -> float32 [N, C, size[0], size[1]], as F.interpolate(bicubic, align_corners=False)."""
    logits = _check_logits(logits)
    shape, hw_out = tuple(logits.shape), _hw(size)
    session = _session(
        ("up", shape, logits.dtype.str, hw_out),
        lambda: _logits_graph(shape, logits.dtype, hw_out, argmax=False),
        threads,
    )
    return session.run(None, {"logits": logits})[0]


def labels(
    logits: np.ndarray, size: Tuple[int, int], *, threads: Optional[int] = None, no_label: Optional[int] = None
) -> np.ndarray:
    """[N, C, h, w] logits -> int64 [N, size[0], size[1]] labels: bicubic upsample, then argmax.

    With `no_label` (evaluate: metrics.NO_LABEL), the pixels whose upsample draws on a non-finite
    logit get that value instead of an argmax over NaN, and the others the labels they have (the
    non-finite logits enter them with weight 0, so they are replaced by 0 for the graph: a NaN
    times 0 would spread over whole rows of the separable MatMuls)."""
    logits = _check_logits(logits)
    shape, hw_out = tuple(logits.shape), _hw(size)
    unknown = unlabelled(logits, hw_out) if no_label is not None else None
    if unknown is not None:
        logits = np.where(np.isfinite(logits), logits, 0).astype(logits.dtype)
    session = _session(
        ("labels", shape, logits.dtype.str, hw_out),
        lambda: _labels_graph(shape, logits.dtype, hw_out, threads),
        threads,
    )
    result = session.run(None, {"logits": logits})[0]
    if unknown is not None:
        result[unknown] = no_label
    return result


def _taps(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] bool: the source positions each output position's cubic resize reads (the 4
    around x = (o + 0.5) * n_in / n_out - 0.5, clamped at the edges). The identity for no resize:
    the graphs leave an axis of the same size alone (torch would multiply a NaN by the zero weights
    of its neighbours and spread it, for labels that are the plain argmax everywhere else)."""
    if n_in == n_out:
        return np.eye(n_in, dtype=bool)
    centre = np.floor((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5).astype(np.int64)
    taps = np.zeros((n_out, n_in), bool)
    for offset in (-1, 0, 1, 2):
        taps[np.arange(n_out), np.clip(centre + offset, 0, n_in - 1)] = True
    return taps


def unlabelled(logits: np.ndarray, size: Tuple[int, int]) -> Optional[np.ndarray]:
    """bool [N, size[0], size[1]]: the pixels whose bicubic upsample of `logits` draws on a
    non-finite logit, which therefore have no label; None when every logit is finite (one pass
    over the small logits, the common case)."""
    bad = ~np.isfinite(logits).all(axis=1)  # [N, h, w]
    if not bad.any():
        return None
    rows, cols = _taps(logits.shape[2], int(size[0])), _taps(logits.shape[3], int(size[1]))
    return (rows.astype(np.float32) @ bad.astype(np.float32)) @ cols.T.astype(np.float32) > 0
