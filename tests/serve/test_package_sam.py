"""`package --triton` of a SAM export: one repository, two models (NAME_encoder, NAME_decoder),
their configs, the serving decoder graph and the usage note. No server and no tritonclient needed
(the configs are parsed with Triton's ModelConfig where tritonclient is installed)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from msla_deploy.artifact.files import sha256_file
from msla_deploy.cli import app
from msla_deploy.runtime.triton_sam import model_names
from tests.fixtures import one_error_line

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def block(text: str, tensor: str) -> str:
    """The config.pbtxt block of one tensor."""
    start = text.index(f'name: "{tensor}"')
    return text[start : text.index("}", start)]


def test_package_writes_the_encoder_and_the_batched_decoder(sam_artifact, tmp_path):
    repository = tmp_path / "repo"
    result = cli("package", sam_artifact, "--triton", repository, "--name", "sam", "--json")
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)
    names = model_names("sam")
    assert names == {"encoder": "sam_encoder", "decoder": "sam_decoder"}
    assert written["task"] == "sam" and sorted(written["models"]) == ["sam_decoder", "sam_encoder"]
    assert sorted(p.name for p in repository.iterdir()) == ["sam_decoder", "sam_encoder"]  # no staging left

    encoder = (repository / "sam_encoder" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in encoder and "max_batch_size: 0" in encoder
    assert "dims: [ 1, 3, 512, 512 ]" in block(encoder, "image") and "dynamic_batching" not in encoder
    assert "dims: [ 1, 256, 64, 64 ]" in block(encoder, "image_embeddings")
    assert 'key: "msla_deploy.graph" value: { string_value: "encoder" }' in encoder
    assert sha256_file(repository / "sam_encoder" / "1" / "model.onnx") == sha256_file(sam_artifact / "encoder.onnx")

    decoder = (repository / "sam_decoder" / "config.pbtxt").read_text()
    # Triton batches rows: the prompts dimension is its batch (the profile's max), the points open
    assert "max_batch_size: 64" in decoder and "dynamic_batching { max_queue_delay_microseconds:" in decoder
    assert "dims: [ 256, 64, 64 ]" in block(decoder, "image_embeddings")  # one per prompt
    assert "dims: [ -1, 2 ]" in block(decoder, "point_coords") and "dims: [ -1 ]" in block(decoder, "point_labels")
    assert "dims: [ 1, 256, 256 ]" in block(decoder, "mask_input")
    assert "dims: [ 1 ]\n    reshape: { shape: [ ]" in block(decoder, "has_mask_input")
    assert "dims: [ 4, 256, 256 ]" in block(decoder, "masks") and "dims: [ 4 ]" in block(decoder, "iou_predictions")
    recipe = json.loads((sam_artifact / "manifest.json").read_text())["recipe_sha256"]
    assert f'string_value: "{recipe}"' in decoder and "KIND_CPU" in decoder
    served = onnx.load(str(repository / "sam_decoder" / "1" / "model.onnx"), load_external_data=False)
    (embeddings,) = [i for i in served.graph.input if i.name == "image_embeddings"]
    assert [d.dim_param or d.dim_value for d in embeddings.type.tensor_type.shape.dim] == ["prompts", 256, 64, 64]

    usage = (repository / "sam_decoder" / "README.md").read_text()
    assert usage == (repository / "sam_encoder" / "README.md").read_text()
    assert "image_embeddings   float32  [B, 256, 64, 64]" in usage and "has_mask_input     float32  [B, 1]" in usage
    assert 'SamPredictor("triton://HOST:8001/sam")' in usage

    from msla_deploy.serve.deps import have_tritonclient
    from msla_deploy.serve.repository import parse_config

    if not have_tritonclient():  # Triton's own parser where tritonclient is installed (the serve venv)
        return
    config = parse_config(decoder)
    assert written["checked_with_model_config"] is True
    assert config.max_batch_size == 64 and list(config.input[4].reshape.shape) == []
    assert [list(t.dims) for t in config.input] == [[256, 64, 64], [-1, 2], [-1], [1, 256, 256], [1]]


def test_the_serving_decoder_takes_one_picture_per_prompt(sam_artifact):
    """Rows of two pictures in one call answer as each picture's own call of the export's decoder."""
    import onnxruntime as ort

    from msla_deploy.serve.sam_graphs import serving_decoder

    batched = ort.InferenceSession(serving_decoder(sam_artifact / "decoder.onnx").SerializeToString())
    single = ort.InferenceSession(str(sam_artifact / "decoder.onnx"))
    rng = np.random.default_rng(0)
    feeds = {
        "image_embeddings": rng.standard_normal((2, 256, 64, 64)).astype(np.float32),
        "point_coords": np.array([[[100, 200], [0, 0]], [[600, 300], [0, 0]]], np.float32),
        "point_labels": np.array([[1, -1], [1, -1]], np.float32),
        "mask_input": rng.standard_normal((2, 1, 256, 256)).astype(np.float32),
        "has_mask_input": np.array([0, 1], np.float32),
    }
    masks, ious = batched.run(None, feeds)
    for row in range(2):
        one = single.run(None, {n: v[row : row + 1] for n, v in feeds.items()})
        np.testing.assert_allclose(masks[row : row + 1], one[0], rtol=0, atol=1e-4)
        np.testing.assert_allclose(ious[row : row + 1], one[1], rtol=0, atol=1e-5)
    assert np.abs(masks[0] - masks[1]).max() > 1  # different pictures: different answers


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--platform", "tensorrt_plan"], "packaged as its ONNX graphs"),
        (["--labels", "labels.txt"], "--labels is for classification models"),
        (["--name", "bad/name"], "not usable by Triton"),
    ],
)
def test_package_sam_refusals_write_nothing(sam_artifact, tmp_path, args, expected):
    result = cli("package", sam_artifact, "--triton", tmp_path / "repo", *args)
    assert result.exit_code == 2, result.output
    assert expected in one_error_line(result)
    assert not (tmp_path / "repo").exists()


def test_package_sam_never_overwrites_without_asking(sam_artifact, tmp_path):
    repository = tmp_path / "repo"
    (repository / "sam_decoder").mkdir(parents=True)  # a folder of someone else's
    result = cli("package", sam_artifact, "--triton", repository, "--name", "sam")
    assert result.exit_code == 2 and "sam_decoder already exists" in one_error_line(result)
    assert not (repository / "sam_encoder").exists()  # refused before either model was written
