"""The EfficientViT-SAM zoo against upstream (efficientvit + segment-anything): state-dict layout,
norm eps, checkpoints, sizes, and golden outputs of upstream's own modules.

Structure tests build on the `meta` device. The golden data (tests/data/upstream/sam/, made by
make_sam_data.py there) comes from upstream's modules with weights filled by tests/zoo/sam_golden.py's
recipe; our modules filled by the same recipe must reproduce it: image embeddings to 1e-4 of their
peak, and the same binarised masks (logits > 0) up to a handful of pixels.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest
import torch
from torch import nn

from msla_deploy import zoo
from msla_deploy.errors import BadInput
from msla_deploy.nn.litemla import LiteMLA
from msla_deploy.zoo.complexity import count_model_macs
from msla_deploy.zoo.sam import LayerNorm2d, build_sam, get_sam_spec
from msla_deploy.zoo.sam.prompt_encoder import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT, PAD, POSITIVE
from msla_deploy.zoo.variants import SAM_SIZES, SAM_SPECS
from tests.fixtures import read_gzip_text
from tests.zoo import sam_golden
from tests.zoo.test_cls_zoo import _within_rounding
from tests.zoo.test_zoo import describe

NAMES = tuple(SAM_SPECS)
L0, XL0 = "efficientvit-sam-l0", "efficientvit-sam-xl0"
#: binarised-mask pixels allowed to differ per prompt case (a logit within rounding of 0 may flip)
HANDFUL = 8

#: upstream's applications/efficientvit_sam/README.md table: params and MACs as printed
PUBLISHED = {
    "efficientvit-sam-l0": ("34.8M", "35G"),
    "efficientvit-sam-l1": ("47.7M", "49G"),
    "efficientvit-sam-l2": ("61.3M", "69G"),
    "efficientvit-sam-xl0": ("117.0M", "185G"),
    "efficientvit-sam-xl1": ("203.3M", "322G"),
}

#: measured on upstream's modules: params of the image encoder, the prompt encoder and the mask
#: decoder; BatchNorm layers; LiteMLA blocks
UPSTREAM_PARTS = {
    "efficientvit-sam-l0": (30_728_224, 6_220, 4_058_340, 36, 4),
    "efficientvit-sam-l1": (43_585_568, 6_220, 4_058_340, 50, 6),
    "efficientvit-sam-l2": (57_264_032, 6_220, 4_058_340, 68, 8),
    "efficientvit-sam-xl0": (112_893_344, 6_220, 4_058_340, 44, 6),
    "efficientvit-sam-xl1": (199_281_568, 6_220, 4_058_340, 78, 12),
}


def meta_sam(name: str) -> nn.Module:
    with torch.device("meta"):
        return build_sam(name)


def upstream_manifest(name: str) -> list:
    lines = read_gzip_text(sam_golden.SAM_DIR / "state_dict_keys" / f"{name}.tsv.gz").splitlines()
    assert lines[0].split("\t") == ["key", "shape", "dtype"]
    return [tuple(line.split("\t")) for line in lines[1:] if line]


def upstream_layout_state(name: str) -> dict:
    """A state dict as upstream's checkpoint file holds it (upstream's keys, order, shapes, dtypes; zeros)."""
    dtypes = {"float32": torch.float32, "int64": torch.int64}
    return {
        key: torch.zeros([int(s) for s in shape.split("x")] if shape != "scalar" else [], dtype=dtypes[dtype])
        for key, shape, dtype in upstream_manifest(name)
    }


@functools.lru_cache(maxsize=None)
def decoder_parts(name: str = L0):
    """The prompt encoder and mask decoder of `name`, filled by the recipe (the same in every
    variant), without drawing the image encoder's weights. Cached: the tests do not modify them."""
    model = meta_sam(name)
    parts = [model.prompt_encoder.to_empty(device="cpu"), model.mask_decoder.to_empty(device="cpu")]
    return [sam_golden.fill_model(part, prefix) for part, prefix in zip(parts, ("prompt_encoder.", "mask_decoder."))]


def assert_cases_match(ours: dict, arrays: dict, stride: int, logit_bound: float) -> None:
    """Our decoder outputs against upstream's stored ones, case by case."""
    for case in sam_golden.CASES:
        name = case["name"]
        low_res, iou = ours[name]
        golden_bits = sam_golden.unpack_bits(arrays[f"{name}__bits"])
        golden_logits, golden_iou = arrays[f"{name}__logits"], arrays[f"{name}__iou"]
        assert low_res.shape == golden_bits.shape and iou.shape == golden_iou.shape, name
        flipped = int(((low_res > 0) != golden_bits).sum())
        assert flipped <= HANDFUL, f"{name}: {flipped} mask pixels differ"
        peak = float(np.abs(golden_logits).max())
        error = float(np.abs(low_res[..., ::stride, ::stride] - golden_logits).max())
        assert error <= logit_bound * peak, f"{name}: logits off by {error:.3g} (peak {peak:.3g})"
        assert float(np.abs(iou - golden_iou).max()) <= 1e-4, name
        # the masks are masks, not all-in or all-out
        assert 0.05 < golden_bits.mean() < 0.95, name


# --- registry --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_spec_is_upstreams(name):
    spec = get_sam_spec(name)
    variant = name.rsplit("-", 1)[1]
    assert spec.checkpoint_file == f"efficientvit_sam_{variant}.pt"
    assert spec.norm_eps == 1e-6
    assert spec.default_resolution == ((512, 512) if variant.startswith("l") else (1024, 1024))
    assert spec.task == "sam"


def test_unknown_sam_name_is_one_line():
    with pytest.raises(BadInput) as err:
        build_sam("efficientvit-sam-l3")
    assert "\n" not in str(err.value) and "efficientvit-sam-xl1" in str(err.value)


# --- structure against upstream (meta device) ----------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_matches_upstream_manifest(name):
    ours = [(key, *describe(t)) for key, t in meta_sam(name).state_dict().items()]
    theirs = upstream_manifest(name)
    assert len(ours) == len(theirs)
    for mine, upstream in zip(ours, theirs):  # same order, then same shape and dtype
        assert mine == upstream


@pytest.mark.parametrize("name", NAMES)
def test_norm_eps_is_upstreams(name):
    """Upstream's zoo sets 1e-6 on every BatchNorm and nn.LayerNorm (the transformer's too, where
    segment-anything's default is 1e-5); the LayerNorm2d layers are built with it."""
    model = meta_sam(name)
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm, LayerNorm2d))]
    assert sum(isinstance(m, nn.LayerNorm) for m in norms) == 9  # 4 per transformer block + the final one
    assert sum(isinstance(m, LayerNorm2d) for m in norms) == 4  # neck end, 2 in the mask downscaler, 1 upscaler
    assert all(m.eps == 1e-6 for m in norms)


@pytest.mark.parametrize("name", NAMES)
def test_parts_match_upstream(name):
    model = meta_sam(name)
    encoder, prompt, decoder, bn_layers, attention_blocks = UPSTREAM_PARTS[name]
    assert zoo.count_params(model.image_encoder) == encoder
    assert zoo.count_params(model.prompt_encoder) == prompt
    assert zoo.count_params(model.mask_decoder) == decoder
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == bn_layers
    assert sum(isinstance(m, LiteMLA) for m in model.modules()) == attention_blocks


def test_xl_attention_aggregates_3x3():
    """EfficientViT-SAM-XL's LiteMLA stages ("att@3") aggregate with 3x3 convs, L's with 5x5."""
    for name, scale in ((L0, 5), (XL0, 3)):
        blocks = [m for m in meta_sam(name).modules() if isinstance(m, LiteMLA)]
        assert blocks and all(m.aggreg[0][0].kernel_size == (scale, scale) for m in blocks)


# --- sizes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_listed_sizes_are_the_built_models(name):
    """variants.SAM_SIZES (listed without building anything) recounted: all parameters, and the
    image encoder's MACs at the model's size."""
    spec = get_sam_spec(name)
    model = meta_sam(name)
    side, params, macs = SAM_SIZES[name]
    assert (spec.params, spec.macs, spec.default_resolution) == (params, macs, (side, side))
    assert zoo.count_params(model) == params
    assert count_model_macs(model.image_encoder, spec.default_resolution) == macs


@pytest.mark.parametrize("name", NAMES)
def test_sizes_match_upstreams_published_table(name):
    params, gmacs = PUBLISHED[name]
    spec = get_sam_spec(name)
    assert _within_rounding(spec.params / 1e6, params), f"{spec.params / 1e6:.3f}M vs published {params}"
    assert _within_rounding(spec.macs / 1e9, gmacs), f"{spec.macs / 1e9:.3f}G vs published {gmacs}"


def test_l0_has_34_8m_parameters():
    assert f"{zoo.count_params(meta_sam(L0)) / 1e6:.1f}M" == "34.8M"


# --- checkpoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [L0, XL0])
def test_upstream_layout_state_dict_loads_strictly(name):
    with torch.device("meta"):
        model = build_sam(name)
    result = model.load_state_dict(upstream_layout_state(name), strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.slow  # writes and reads upstream's 140 MB l0 layout
def test_upstream_checkpoint_file_loads_and_another_variants_is_refused(tmp_path):
    path = tmp_path / get_sam_spec(L0).checkpoint_file
    torch.save(upstream_layout_state(L0), path)
    assert len(zoo.load_checkpoint(build_sam(L0), path)) == 64  # sha256, strict load passed
    with pytest.raises(BadInput) as err:
        zoo.load_checkpoint(build_sam("efficientvit-sam-l1"), path)
    assert "\n" not in str(err.value) and "does not fit EfficientViTSam" in str(err.value)


# --- golden outputs of upstream's own modules ------------------------------------------------------


def test_recipe_gives_the_decoder_the_same_weights_in_every_variant():
    l0, xl1 = (meta_sam(n).state_dict() for n in (L0, "efficientvit-sam-xl1"))
    keys = [k for k in l0 if not k.startswith("image_encoder.")]
    assert keys == [k for k in xl1 if not k.startswith("image_encoder.")]
    shapes = {k: torch.zeros(l0[k].shape) for k in keys[:5]}
    first, second = sam_golden.fill_state_dict(shapes), sam_golden.fill_state_dict(dict(reversed(shapes.items())))
    assert all(torch.equal(first[k], second[k]) for k in shapes)  # a key's value depends on its name only


def test_decoder_reproduces_upstream():
    """Upstream's prompt encoder + mask decoder on synthetic embeddings: boxes, points, a multi-box
    batch and a refinement round with a mask input, multimask and single. Identical inputs, so the
    logits agree to rounding (bit for bit on the machine that made the data)."""
    arrays = sam_golden.read_npz(sam_golden.decoder_path())
    prompt_encoder, mask_decoder = decoder_parts()
    ours = sam_golden.run_cases(
        prompt_encoder, mask_decoder, sam_golden.synthetic_embeddings(), sam_golden.stored_mask_inputs(arrays)
    )
    assert_cases_match(ours, arrays, sam_golden.LOGIT_STRIDE, logit_bound=1e-5)


@functools.lru_cache(maxsize=None)
def ours_on_the_picture(name: str):
    """(image embeddings [1, 256, 64, 64], prompt encoder, mask decoder) of our model filled by the
    recipe, on the golden picture; cached: the encoder is the slow part (l0 ~10 s, xl0 ~30 s)."""
    arrays = sam_golden.read_npz(sam_golden.golden_path(name))
    side = get_sam_spec(name).default_resolution[0]
    x = sam_golden.input_from_pixels(arrays["pixels"], side)
    assert x.shape == (1, 3, side, side) and not x[..., side * 3 // 4 :, :].any()  # bottom quarter: SAM's padding
    model = sam_golden.fill_model(build_sam(name))
    with torch.no_grad():
        embeddings = model.image_encoder(torch.from_numpy(x))
    return embeddings, model.prompt_encoder, model.mask_decoder


@pytest.mark.parametrize("name", [L0, pytest.param(XL0, marks=pytest.mark.slow)])
def test_image_encoder_reproduces_upstream(name):
    """The picture (a 4:3 landscape, padded bottom-right as SAM pads) through our image encoder."""
    started = time.perf_counter()
    arrays = sam_golden.read_npz(sam_golden.golden_path(name))
    embeddings, _, _ = ours_on_the_picture(name)
    assert embeddings.shape == (1, 256, 64, 64)
    summary = sam_golden.embedding_summary(embeddings.numpy())
    peak = float(np.abs(arrays["embeddings_grid"]).max())
    for key, value in summary.items():
        error = float(np.abs(value - arrays[key]).max())
        assert error <= 1e-4 * peak, f"{key}: off by {error:.3g} (peak {peak:.3g})"  # the bound
        assert error <= 1e-5 * peak  # measured: under 2e-6 of the peak
    print(f"{name}: {time.perf_counter() - started:.1f} s")


@pytest.mark.slow  # the encoder (cached when the test above ran first) and seven prompt cases: 15-20 s for l0
@pytest.mark.parametrize("name", [L0, XL0])
def test_reproduces_upstream_end_to_end(name):
    """Every prompt case through our decoder on our embeddings, against upstream's whole model."""
    arrays = sam_golden.read_npz(sam_golden.golden_path(name))
    embeddings, prompt_encoder, mask_decoder = ours_on_the_picture(name)
    ours = sam_golden.run_cases(prompt_encoder, mask_decoder, embeddings, sam_golden.stored_mask_inputs(arrays))
    assert_cases_match(ours, arrays, sam_golden.E2E_LOGIT_STRIDE, logit_bound=1e-4)


# --- the export-friendly forms agree with segment-anything's calls ------------------------------


def test_points_with_box_labels_are_boxes():
    """A box is two points labelled 2 and 3 (SAM's ONNX convention), and a padding point (-1) is
    what segment-anything appends without a box: embed_points gives the forward's tokens."""
    prompt_encoder, _ = decoder_parts()
    box = torch.tensor([[200.0, 150.5, 700.25, 600.0]])
    point = torch.tensor([[[420.5, 380.0]]])
    with torch.no_grad():
        by_box, _ = prompt_encoder(points=None, boxes=box, masks=None)
        by_corners = prompt_encoder.embed_points(box.reshape(1, 2, 2), torch.tensor([[BOX_TOP_LEFT, BOX_BOTTOM_RIGHT]]))
        by_point, _ = prompt_encoder(points=(point, torch.tensor([[POSITIVE]])), boxes=None, masks=None)
        padded = prompt_encoder.embed_points(
            torch.cat([point, torch.zeros(1, 1, 2)], 1), torch.tensor([[POSITIVE, PAD]])
        )
    assert torch.equal(by_box, by_corners)
    assert torch.equal(by_point, padded)
    assert torch.equal(padded[0, 1], prompt_encoder.not_a_point_embed.weight[0])


def test_one_call_with_many_boxes_is_many_calls():
    """One image's embeddings [1, ...] broadcast over B prompts: each box's masks are those of a
    call with that box alone."""
    prompt_encoder, mask_decoder = decoder_parts()
    embeddings = sam_golden.synthetic_embeddings()
    boxes = torch.tensor([[100.0, 100.0, 400.0, 500.0], [550.0, 300.0, 900.0, 700.0], [0.0, 0.0, 1023.0, 767.0]])

    def decode(b):
        sparse, dense = prompt_encoder(points=None, boxes=b, masks=None)
        return mask_decoder(embeddings, prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=True)

    with torch.no_grad():
        masks, iou = decode(boxes)
        alone = [decode(boxes[i : i + 1]) for i in range(len(boxes))]
    assert masks.shape == (3, 3, 256, 256) and iou.shape == (3, 3)
    for i, (m, q) in enumerate(alone):
        torch.testing.assert_close(masks[i : i + 1], m, rtol=0, atol=1e-4)
        torch.testing.assert_close(iou[i : i + 1], q, rtol=0, atol=1e-5)


def test_layer_norm_2d_fp32_island_keeps_fp16_right():
    """Centred values above 256 square past fp16's 65504: in fp16 the variance is inf and every
    normalised value collapses to 0; with the fp32 island the result is the fp32 one to fp16 rounding."""
    norm = LayerNorm2d(8)
    x = torch.linspace(-600, 600, 8 * 16).reshape(1, 8, 4, 4)  # along the channels: steps of ~150
    expected = norm(x).detach()
    assert float(expected.abs().max()) > 1.5
    with torch.no_grad():
        naive = norm.half()(x.half())
        assert float((naive.float() - expected).abs().max()) > 1.5
        norm.island_dtype = torch.float32
        guarded = norm(x.half())
    assert guarded.dtype == torch.float16
    torch.testing.assert_close(guarded.float(), expected, rtol=0, atol=4e-3)
