"""The project's stand-in SAM (`efficientvit-sam-standin`): built by the zoo's own builder, listed
sizes recounted, both graphs' interfaces every variant's, and its checkpoint loads like an official one.
benchmarks/train_sam.py trains it; upstream has no such model."""

from __future__ import annotations

import pytest
import torch

from msla_deploy import zoo
from msla_deploy.errors import BadInput
from msla_deploy.zoo.complexity import count_model_macs
from msla_deploy.zoo.sam import build_sam, get_sam_spec
from msla_deploy.zoo.sam.architecture import SAM_TRANSFORMER, transformer_dims
from msla_deploy.zoo.variants import SAM_SPECS, SAM_STANDIN, SAM_STANDIN_SIZES

L0 = "efficientvit-sam-l0"


def test_the_stand_in_is_a_zoo_sam_but_not_upstreams():
    spec = zoo.get_spec(SAM_STANDIN)
    assert spec is get_sam_spec(SAM_STANDIN) and spec.task == "sam"
    assert SAM_STANDIN in zoo.names() and SAM_STANDIN not in SAM_SPECS  # upstream's five stay upstream's
    assert (spec.checkpoint_file, spec.dataset, spec.default_resolution) == (
        "efficientvit_sam_standin.pt",
        "coco-scenes",
        (512, 512),
    )
    assert transformer_dims(L0) == SAM_TRANSFORMER and transformer_dims(SAM_STANDIN).depth == 1
    with pytest.raises(BadInput, match="efficientvit-sam-standin"):
        get_sam_spec("efficientvit-sam-l9")  # the valid names list it


def test_listed_sizes_are_the_built_model():
    with torch.device("meta"):
        model = build_sam(SAM_STANDIN)
    side, params, macs = SAM_STANDIN_SIZES[SAM_STANDIN]
    assert zoo.count_params(model) == params
    assert count_model_macs(model.image_encoder, (side, side)) == macs
    assert len(model.mask_decoder.transformer.layers) == 1


def test_graph_interfaces_are_every_variants_and_weights_load_strictly(tmp_path):
    torch.manual_seed(0)
    model = zoo.build(SAM_STANDIN).eval()
    path = tmp_path / "sam_standin.pt"
    torch.save(model.state_dict(), path)
    again = zoo.build(SAM_STANDIN)
    zoo.load_checkpoint(again, path)  # weights_only, strict: what `export --weights` does
    again.eval()
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        # the neck resizes to 64 x 64 whatever the input: a small picture keeps the test cheap
        embeddings = again.image_encoder(torch.randn(1, 3, 64, 64))
        assert embeddings.shape == (1, 256, 64, 64)
        masks, iou = again.decode(embeddings, boxes=torch.tensor([[100.0, 100.0, 400.0, 300.0]]))
        assert masks.shape == (1, 3, 256, 256) and iou.shape == (1, 3)
        masks, iou = again.decode(embeddings, points=(torch.tensor([[[10.0, 20.0]]]), torch.ones(1, 1)))
        assert masks.shape == (1, 3, 256, 256) and torch.isfinite(masks).all()
