"""A SAM export served by a real Triton server (PyTriton) on 127.0.0.1: both models from one
process, SamPredictor("triton://...") against ort-cpu on the same export, and the decoder's
dynamic batching joining prompts of different pictures. Skips without the serve extra."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tests.serve.test_serve import LOOPBACK, NO_PYTRITON, free_port

PICTURE = (np.random.default_rng(4).random((48, 64, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def served_sam(sam_artifact):
    pytest.importorskip("pytriton", reason=NO_PYTRITON)
    from msla_deploy.serve.server import start_server

    server = start_server(sam_artifact, host=LOOPBACK, port=free_port(), name="sam", backend="ort-cpu")
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.serve
def test_sam_predictor_through_triton_matches_ort_cpu(served_sam, sam_artifact):
    from msla_deploy import SamPredictor

    assert served_sam.url == f"{served_sam.url.rsplit('/', 1)[0]}/sam"
    assert sorted(served_sam.models) == ["sam_decoder", "sam_encoder"]
    assert served_sam.models["sam_decoder"]["batching"] == {
        "dynamic": True,
        "max_batch_size": 64,
        "why": served_sam.models["sam_decoder"]["batching"]["why"],
    }
    prompts = {"boxes": [[5, 5, 40, 30], [10, 20, 60, 45]], "points": [[[20, 15]], [[30, 30]]], "labels": [[1], [0]]}
    with SamPredictor(served_sam.url) as remote, SamPredictor(sam_artifact, "ort-cpu") as local:
        # the server alone says the rest: the decoder's rows (max prompts), three masks per prompt
        assert remote.max_prompts == 64 and remote.multimask and remote.image_size == 512
        assert "sam_encoder" in remote.describe()["ran_on"] and "sam_decoder" in remote.describe()["decoder"]["ran_on"]
        remote.set_image(PICTURE)
        local.set_image(PICTURE)
        np.testing.assert_allclose(remote.embeddings, local.embeddings, rtol=0, atol=1e-5)
        got = remote.predict(**prompts, return_logits=True)
        want = local.predict(**prompts, return_logits=True)
        for a, b in zip(got, want):  # masks logits at the picture's size, scores, low-res logits
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
        refine = {"points": [[20, 15]], "labels": [1], "mask_input": want[2][0, 0][None], "multimask": False}
        masks, scores, _ = local.predict(**refine)
    # with the artifact: its profile (max points) and a check that the served models are its graphs
    with SamPredictor(sam_artifact, served_sam.url) as paired:
        assert paired.max_prompts == 64 and paired.max_points == 16
        paired.set_image(PICTURE)
        served_masks, served_scores, _ = paired.predict(**refine)
    assert (served_masks == masks).all()
    np.testing.assert_allclose(served_scores, scores, rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.serve
def test_decoder_rows_of_different_pictures_batch_together(served_sam, sam_artifact):
    """Concurrent requests, each its own picture's embeddings: every answer is that picture's."""
    import onnxruntime as ort

    from msla_deploy.runtime.triton import TritonSession

    rng = np.random.default_rng(9)
    local = ort.InferenceSession(str(sam_artifact / "decoder.onnx"), providers=["CPUExecutionProvider"])
    jobs = []
    for k in range(4):
        feed = {
            "image_embeddings": rng.standard_normal((1, 256, 64, 64)).astype(np.float32),
            "point_coords": (rng.random((1 + k % 2, 2, 2)) * 1024).astype(np.float32),
            "point_labels": np.tile(np.array([[1, -1]], np.float32), (1 + k % 2, 1)),
            "mask_input": np.zeros((1 + k % 2, 1, 256, 256), np.float32),
            "has_mask_input": np.zeros((1 + k % 2,), np.float32),
        }
        jobs.append((feed, local.run(["masks"], feed)[0]))
    errors, lock = [], threading.Lock()

    def client(feed, expected) -> None:
        rows = len(feed["point_coords"])
        wire = dict(feed, has_mask_input=feed["has_mask_input"].reshape(rows, 1))
        wire["image_embeddings"] = np.repeat(feed["image_embeddings"], rows, axis=0)
        with TritonSession(served_sam.models["sam_decoder"]["url"], timeout_s=60) as session:
            for _ in range(3):
                got = session.run(wire)["masks"]
                with lock:
                    errors.append(float(np.abs(got - expected).max()) if got.shape == expected.shape else np.inf)

    threads = [threading.Thread(target=client, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(errors) == 12 and max(errors) <= 1e-4, errors
