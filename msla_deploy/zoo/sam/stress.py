"""Stress weights for EfficientViT-SAM's image encoder: trained-model magnitudes where fp16 breaks.

Random weights give small activations, so a naive fp16 encoder passes on them and fails on the
real checkpoints (efficientvit #113, TensorRT #3893: NaN embeddings, mAP 0). Two hazards, both made
real here:

* every LiteMLA: the segmentation export's stress (nn/stress.py): large keys and values, and the
  queries of head 0 all zero, as in trained ReLU-sparse models, so 0/0 appears where eps (1e-15)
  underflows to 0 in fp16;
* the neck's last conv (the final LayerNorm2d's input): scaled by NECK_SCALE, as trained necks
  give pre-norm features in the hundreds to thousands. LayerNorm2d is scale-invariant, so the fp32
  embeddings do not change, but in fp16 the squares of the centred features overflow 65504 and
  the normalised output collapses (efficientvit #142: "keep LayerNorm in fp32").
"""

from __future__ import annotations

from typing import List

import torch
from torch import nn

from ...nn.stress import apply_stress_weights
from .image_encoder import EfficientViTSamImageEncoder

#: chosen on l0 at 512 with tests/zoo/sam_golden.py's weights: the centred pre-norm features reach
#: ~|2e3| (squares ~4e6, fp16's max 65504) and most positions have at least one above 256
NECK_SCALE = 4.0


@torch.no_grad()
def apply_sam_stress_weights(encoder: EfficientViTSamImageEncoder) -> List[str]:
    """Rescale the encoder in place; returns the names of the modules changed."""
    changed = apply_stress_weights(encoder)
    project = encoder.neck.output_ops[0].op_list[0].conv
    if not isinstance(project, nn.Conv2d):
        raise ValueError("expected the neck's output conv")
    project.weight *= NECK_SCALE
    if project.bias is not None:
        project.bias *= NECK_SCALE
    return [*changed, "neck.output_ops.0.op_list.0.conv"]
