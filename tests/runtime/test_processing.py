"""runtime/processing.py: upstream's pre- and postprocessing, run by ONNX Runtime, against
PyTorch's bicubic interpolation and an independent numpy cubic-convolution reference."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from msla_deploy.artifact.reference import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from msla_deploy.runtime import processing  # noqa: E402


def _cubic(d: np.ndarray, a: float = -0.75) -> np.ndarray:
    d = np.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _reference_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] float64: cv2 INTER_CUBIC / torch bicubic (half-pixel centres, a=-0.75, edges repeated)."""
    m = np.zeros((n_out, n_in))
    for x in range(n_out):
        src = (x + 0.5) * n_in / n_out - 0.5
        x0 = int(np.floor(src))
        for k in range(-1, 3):
            m[x, min(max(x0 + k, 0), n_in - 1)] += _cubic(np.array(src - (x0 + k)))
    return m


def _reference_resize(pixels: np.ndarray, size) -> np.ndarray:
    mh, mw = _reference_matrix(pixels.shape[0], size[0]), _reference_matrix(pixels.shape[1], size[1])
    return np.einsum("Hh,hwc,Ww->HWc", mh, pixels.astype(np.float64), mw)


SHAPES = [((1, 19, 16, 32), (128, 256)), ((2, 5, 9, 13), (40, 29)), ((1, 7, 32, 32), (20, 12))]


@pytest.mark.parametrize("shape,size", SHAPES)
def test_upsample_and_labels_equal_torch_bicubic_then_argmax(shape, size):
    torch = pytest.importorskip("torch")
    logits = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32) * 3
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(logits), size=size, mode="bicubic", align_corners=False
    ).numpy()
    upsampled = processing.upsample(logits, size)
    assert upsampled.shape == expected.shape and upsampled.dtype == np.float32
    # integer ratios (the model's stride 8 to the label size) agree to 1e-5; at other ratios both
    # compute the source coordinates in float32 (weights within 1.5e-6 of a float64 reference,
    # see test_axis_weights...), so the bound scales with the logits' magnitude
    integer_ratio = all(o % i == 0 for i, o in zip(shape[2:], size))
    np.testing.assert_allclose(upsampled, expected, rtol=0, atol=1e-5 if integer_ratio else 1e-5 * np.abs(logits).max())
    labels = processing.labels(logits, size)
    assert labels.shape == (shape[0],) + size
    top2 = np.sort(expected, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-4  # pixels whose winner is not a float tie
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(labels[clear], expected.argmax(axis=1)[clear])


def test_fp16_logits_are_upsampled_in_fp32():
    torch = pytest.importorskip("torch")
    logits = np.random.default_rng(3).standard_normal((1, 4, 8, 8)).astype(np.float16)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(logits.astype(np.float32)), size=(24, 40), mode="bicubic", align_corners=False
    ).numpy()
    np.testing.assert_allclose(processing.upsample(logits, (24, 40)), expected, rtol=0, atol=1e-5)


def test_same_size_labels_are_a_plain_argmax():
    logits = np.random.default_rng(4).standard_normal((2, 6, 10, 12)).astype(np.float32)
    np.testing.assert_array_equal(processing.labels(logits, (10, 12)), logits.argmax(axis=1))


@pytest.mark.parametrize("size", [(64, 128), (32, 32), (50, 128), (23, 70)])
def test_picture_resize_agrees_with_an_independent_cubic_reference(size):
    pixels = np.random.default_rng(5).integers(0, 256, size=(50, 70, 3), dtype=np.uint8)
    pixels[:10] = 255  # saturated areas: cubic overshoot must clip, as cv2's uint8 result does
    pixels[10:20] = 0
    resized = processing.resize_rgb(pixels, size)
    assert resized.shape == size + (3,) and resized.dtype == np.uint8
    expected = np.clip(np.round(_reference_resize(pixels, size)), 0, 255)
    diff = np.abs(resized.astype(np.int64) - expected)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # float32 vs float64 at exact .5 roundings only


def test_preprocess_is_resize_then_imagenet_normalisation():
    pixels = np.random.default_rng(6).integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    x = processing.preprocess(pixels, (64, 96))
    assert x.shape == (1, 3, 64, 96) and x.dtype == np.float32
    resized = processing.resize_rgb(pixels, (64, 96))
    expected = (resized.astype(np.float32) / np.float32(255) - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(
        IMAGENET_STD, np.float32
    )
    np.testing.assert_allclose(x[0].transpose(1, 2, 0), expected, rtol=0, atol=1e-6)


def test_same_size_is_identity_then_normalisation():
    pixels = np.random.default_rng(7).integers(0, 256, size=(32, 64, 3), dtype=np.uint8)
    assert processing.resize_rgb(pixels, (32, 64)) is pixels or np.array_equal(
        processing.resize_rgb(pixels, (32, 64)), pixels
    )
    expected = (pixels.astype(np.float32) / np.float32(255) - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(
        IMAGENET_STD, np.float32
    )
    np.testing.assert_allclose(
        processing.preprocess(pixels, (32, 64))[0].transpose(1, 2, 0), expected, rtol=0, atol=1e-6
    )


def test_axis_weights_are_a_partition_of_unity():
    w = processing.axis_weights(16, 128)
    assert w.shape == (16, 128)
    np.testing.assert_allclose(w.sum(axis=0), 1.0, atol=1e-6)  # each output is a weighted mean
    np.testing.assert_allclose(w.T, _reference_matrix(16, 128), atol=1e-6)
    np.testing.assert_allclose(processing.axis_weights(32, 20).T, _reference_matrix(32, 20), atol=1.5e-6)


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 4), np.uint8)]
)
def test_pictures_that_are_not_hxwx3_uint8_are_refused(bad):
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        processing.preprocess(bad, (4, 4))


# --- the one preprocessing: decoded picture files (reference --inputs, calibration) -------------


def _normalised(unit: np.ndarray) -> np.ndarray:
    return (unit - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)


def test_a_picture_file_gives_the_input_evaluate_gives(tmp_path):
    """runtime/picture_files.py decodes, processing.py preprocesses: an 8-bit PNG stays uint8, so
    reference --inputs and calibration feed the model what evaluate and the Segmenter feed it."""
    from PIL import Image

    from msla_deploy.runtime.picture_files import load_rgb, preprocess

    pixels = np.random.default_rng(8).integers(0, 256, size=(40, 70, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    decoded = load_rgb(tmp_path / "p.png")
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, pixels)
    np.testing.assert_array_equal(preprocess(decoded, 64, 128), processing.preprocess(pixels, (64, 128))[0])


def test_float_pictures_are_resized_in_floats_clipped_not_rounded():
    rng = np.random.default_rng(9)
    unit = rng.random((30, 50, 3), dtype=np.float32)
    same = processing.preprocess(unit, (30, 50), floats=True)[0].transpose(1, 2, 0)
    np.testing.assert_allclose(same, _normalised(unit), rtol=0, atol=1e-6)  # no resize: normalised only
    resized = processing.preprocess(unit, (64, 96), floats=True)[0].transpose(1, 2, 0)
    expected = np.clip(_reference_resize(unit, (64, 96)), 0.0, 1.0).astype(np.float32)  # cubic overshoots [0, 1]
    assert (_reference_resize(unit, (64, 96)) > 1.0).any()
    np.testing.assert_allclose(resized, _normalised(expected), rtol=0, atol=2e-5)
    grey = (unit * 255).round().astype(np.uint8)  # the same picture in 8 bits: within half a grey level
    as_bytes = processing.preprocess(grey, (64, 96))[0].transpose(1, 2, 0)
    from_floats = processing.preprocess(grey.astype(np.float32) / 255, (64, 96), floats=True)[0].transpose(1, 2, 0)
    assert np.abs(as_bytes - from_floats).max() <= 0.5 / 255 / min(IMAGENET_STD) + 1e-5
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        processing.preprocess(unit * 255, (64, 96), floats=True)


# --- logits that are not finite ------------------------------------------------------------------


@pytest.mark.parametrize("shape,size", [((1, 5, 8, 16), (64, 128)), ((2, 3, 9, 13), (40, 29))])
def test_unlabelled_pixels_are_where_torch_bicubic_spreads_a_nan(shape, size):
    torch = pytest.importorskip("torch")
    logits = np.random.default_rng(10).standard_normal(shape).astype(np.float32)
    assert processing.unlabelled(logits, size) is None  # finite: nothing to mask (the common case)
    broken = logits.copy()
    broken[0, 1, 2, 3] = np.nan
    broken[-1, 0, -1, -1] = np.inf
    upsampled = torch.nn.functional.interpolate(
        torch.from_numpy(broken), size=size, mode="bicubic", align_corners=False
    ).numpy()
    mask = processing.unlabelled(broken, size)
    np.testing.assert_array_equal(mask, ~np.isfinite(upsampled).all(axis=1))
    labels = processing.labels(broken, size, no_label=-1)
    assert (labels[mask] == -1).all()
    # everywhere else the labels of the finite logits, which the non-finite ones enter with weight 0
    np.testing.assert_array_equal(labels[~mask], processing.labels(logits, size)[~mask])
    np.testing.assert_array_equal(labels[~mask], upsampled.argmax(axis=1)[~mask])


def test_at_the_same_size_only_the_non_finite_pixels_are_unlabelled():
    """No resize is applied along an axis whose size stays (torch would multiply the NaN by its
    neighbours' zero weights): the labels are the argmax, and only the broken pixel has none."""
    logits = np.random.default_rng(11).standard_normal((1, 4, 6, 6)).astype(np.float32)
    logits[0, 2, 3, 4] = np.nan
    expected = ~np.isfinite(logits).all(axis=1)
    np.testing.assert_array_equal(processing.unlabelled(logits, (6, 6)), expected)
    labels = processing.labels(logits, (6, 6), no_label=-1)
    np.testing.assert_array_equal(labels, np.where(expected, -1, np.nan_to_num(logits).argmax(axis=1)))
