"""The SAM stand-in's training recipe (benchmarks/train_sam.py): the pieces that differ from SAM's.

The script itself is run by hand (benchmarks/README.md); these check that its loss, its box targets
and its attention alignment do what the recipe says."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from tests.fixtures import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import train_sam  # noqa: E402


def test_box_fill_covers_the_boxs_pixels_with_exclusive_far_edges():
    mask = train_sam.box_fill(np.array([2.0, 1.0, 5.0, 3.0]), (6, 8))
    expected = np.zeros((6, 8), bool)
    expected[1:3, 2:5] = True
    assert np.array_equal(mask, expected)
    # fractional edges: the pixels the box touches
    assert train_sam.box_fill(np.array([1.5, 0.2, 2.5, 1.2]), (4, 4)).sum() == 2 * 2


def _dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p, t = torch.sigmoid(logits), target[:, None].expand_as(logits)
    return 1 - (2 * (p * t).flatten(2).sum(-1) + 1) / (p.flatten(2).sum(-1) + t.flatten(2).sum(-1) + 1)


def test_balanced_loss_prices_an_empty_mask_as_a_full_one_and_the_truth_lowest():
    target = torch.zeros(1, 32, 32)
    target[0, 4:10, 6:14] = 1.0  # 48 of 1024 pixels: a plain mean would favour "nothing"
    empty, full = torch.full((1, 1, 32, 32), -8.0), torch.full((1, 1, 32, 32), 8.0)
    truth = (target[:, None] * 16 - 8).clone()
    cases = {"empty": empty, "full": full, "truth": truth}
    losses = {name: train_sam.mask_losses(x, target) for name, x in cases.items()}
    # the cross-entropy halves weigh the mask and the rest alike: equal once dice is taken out
    ce_empty = losses["empty"][0] - train_sam.DICE_WEIGHT * _dice(empty, target)
    ce_full = losses["full"][0] - train_sam.DICE_WEIGHT * _dice(full, target)
    assert ce_empty.item() == pytest.approx(ce_full.item(), rel=1e-4)
    assert losses["truth"][0].item() < 0.01 < min(losses["empty"][0].item(), losses["full"][0].item())
    # the IoU each mask really has
    assert [losses[k][1].item() for k in ("empty", "full", "truth")] == pytest.approx([0.0, 48 / 1024, 1.0])


def test_aligned_attention_finds_the_prompt_where_random_projections_do_not():
    """After align_cross_attention, a box corner's encoding attends (tokens -> image) most to the
    cells around it; the random initialisation's attention is no better than chance there."""
    from msla_deploy import zoo

    torch.manual_seed(0)
    model = zoo.build(train_sam.MODEL).eval()
    encoder = model.prompt_encoder
    corner = torch.tensor([[[700.0, 300.0]]])  # prompt frame (1024): cell (x 43, y 18) of 64
    query = encoder.pe_layer.forward_with_coords(corner + 0.5, encoder.input_image_size)[0]  # [1, 256]
    keys = encoder.get_dense_pe().flatten(2)[0].T  # [4096, 256]
    attention = model.mask_decoder.transformer.final_attn_token_to_image

    def mass_near_corner() -> float:
        with torch.no_grad():
            q, k = attention.q_proj(query), attention.k_proj(keys)
            weights = torch.softmax((q @ k.T) / attention.head_dim**0.5, dim=-1).reshape(64, 64)
        return float(weights[18 - 3 : 18 + 4, 43 - 3 : 43 + 4].sum())  # 7 x 7 cells: 1.2 % of the grid

    before = mass_near_corner()
    train_sam.align_cross_attention(model)
    after = mass_near_corner()
    assert torch.equal(attention.q_proj.weight, attention.k_proj.weight)
    assert before < 0.03 < 0.1 < after, (before, after)
