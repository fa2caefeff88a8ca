"""Segment-everything's parameters: segment-anything's SamAutomaticMaskGenerator names and
defaults (one crop layer), checked; and the `predict` option of each. Imports nothing heavy (the
CLI reads the defaults at start-up: not in runtime/, whose package imports numpy); the pipeline
is runtime/sam_everything.py."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .errors import BadInput

#: how a mask is returned: COCO RLE {"size": [h, w], "counts": str}, or an H x W bool array
OUTPUT_MODES = ("coco_rle", "binary_mask")
#: the `predict --everything` option of each parameter it takes (the rest keep their default)
PARAMETER_OPTIONS = {
    "points_per_side": "--points-per-side",
    "points_per_batch": "--points-per-batch",
    "pred_iou_thresh": "--pred-iou-thresh",
    "stability_score_thresh": "--stability-score-thresh",
    "box_nms_thresh": "--box-nms-thresh",
    "min_mask_region_area": "--min-mask-region-area",
}


@dataclass(frozen=True)
class EverythingParams:
    """SamAutomaticMaskGenerator's parameters (its names and defaults), one crop layer."""

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    min_mask_region_area: int = 0
    output_mode: str = "coco_rle"

    @classmethod
    def from_kwargs(cls, **given: Any) -> "EverythingParams":
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise BadInput(f"segment-everything has no parameter {unknown[0]!r}", f"use some of: {', '.join(names)}")
        params = cls(**given)
        params.check()
        return params

    def check(self) -> None:
        """BadInput naming the first parameter out of its range."""
        for name in ("points_per_side", "points_per_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BadInput(f"{name} {value!r} is not a whole number >= 1", f"e.g. {name}=32")
        value = self.min_mask_region_area
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise BadInput(f"min_mask_region_area {value!r} is not a whole number >= 0", "0 turns it off")
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh"):
            value = getattr(self, name)
            if not _number(value) or not 0.0 <= value <= 1.0:
                raise BadInput(f"{name} {value!r} is outside 0..1", f"e.g. {name}=0.7")
        if not _number(self.stability_score_offset) or self.stability_score_offset < 0:
            raise BadInput(
                f"stability_score_offset {self.stability_score_offset!r} is not a number >= 0",
                "e.g. 1.0 (the logit shift either side of the mask threshold)",
            )
        if self.output_mode not in OUTPUT_MODES:
            raise BadInput(f"output_mode {self.output_mode!r} is not one of {', '.join(OUTPUT_MODES)}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
