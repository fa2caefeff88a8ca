"""`export --sensitivity` for SAM: which encoder blocks cost masks when quantized.

Segmentation's sweep (int8_sensitivity.py) counts flipped labels; SAM's encoder has no labels, so
each variant of the encoder is judged on the pair a user runs: its embeddings through the fp32
decoder, on prompts laid over each calibration picture (four boxes and four clicks, at the
quarters of the picture's content), against the fp32 encoder's masks through the same decoder.
The cost is the mean IoU of the binarised masks (all the decoder's masks, as parity.json's mask
IoU), and the embeddings' cosine orders what no mask shows yet.

For every block unit (and the LiteMLA cores with --int8-attention): that unit alone in int8, and
every candidate but that one. One calibration and one quantization serve every variant: each is
the all-int8 graph with the other units' Q/DQ taken out (int8.without_qdq), so a variant costs an
ONNX Runtime session and the pictures' forward passes, not a quantization pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import onnx

from ..artifact.sam_io import DECODER_OUTPUTS, IMAGE, IMAGE_EMBEDDINGS, PROMPT_FRAME, decoder_feed
from ..parity.metrics import cosine_similarity, mask_ious
from ..records import Record
from . import int8 as int8_q
from .int8_sensitivity import CalibrationUsed, render_costs

METRIC = (
    "mean IoU of the binarised masks (logits > 0) of the pair int8 encoder -> fp32 decoder against fp32 encoder -> "
    "fp32 decoder, on 4 box and 4 click prompts per calibration picture (ONNX Runtime CPU)"
)
#: prompts per picture: boxes and clicks centred on the four quarters of its content
QUARTERS = ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75))
PROMPTS_PER_PICTURE = 2 * len(QUARTERS)


@dataclass
class SamUnitCost:
    """One row of the table: one quantization unit of the encoder."""

    module: str
    kind: str  # "block" | "attention"
    family: str  # what it is in PyTorch (export/sam_int8.py)
    quantizable: int
    alone_mask_iou: float  # only this unit int8
    all_but_mask_iou: float  # every other candidate int8, this one float
    alone_cosine: float  # the embeddings' cosine with only this unit int8
    cost: float = field(init=False)  # 1 - alone_mask_iou: written for readers, derived on read

    def __post_init__(self) -> None:
        self.cost = 1.0 - self.alone_mask_iou if math.isfinite(self.alone_mask_iou) else 1.0


@dataclass
class SamSensitivityTable(Record):
    """int8_sensitivity.json of a SAM export: the encoder's units ranked by mask cost."""

    KIND = "msla-deploy/sam-int8-sensitivity"
    VERSION = 1

    calibration: CalibrationUsed
    prompts_per_picture: int
    include_attention: bool
    policy: str  # the export's --int8-policy
    policy_float: List[str]  # the units it keeps float
    all_int8_mask_iou: float  # every candidate int8
    all_int8_cosine: float
    policy_mask_iou: float  # the policy's own graph, on the same pictures and prompts
    ranking: List[SamUnitCost]  # most costly first
    metric: str = METRIC


def content_side(image: np.ndarray) -> Tuple[int, int]:
    """(height, width) of the picture inside SAM's padded input [3, S, S]: the padding is exact zeros."""
    filled = np.any(image != 0, axis=0)
    rows, cols = np.flatnonzero(filled.any(axis=1)), np.flatnonzero(filled.any(axis=0))
    side = image.shape[-1]
    return (int(rows[-1]) + 1 if rows.size else side), (int(cols[-1]) + 1 if cols.size else side)


def picture_prompts(image: np.ndarray) -> Dict[str, np.ndarray]:
    """The decoder's feed (but the embeddings) for one picture [3, S, S]: a box of a third of the
    content around each quarter's centre, then a foreground click there; in the prompt frame."""
    height, width = content_side(image)
    scale = PROMPT_FRAME / image.shape[-1]
    h, w = height * scale, width * scale
    centres = np.asarray([[fx * w, fy * h] for fx, fy in QUARTERS], dtype=np.float32)
    half = np.asarray([w / 6, h / 6], dtype=np.float32)
    boxes = decoder_feed(boxes=np.concatenate([centres - half, centres + half], axis=1))
    clicks = decoder_feed(points=centres[:, None], labels=np.ones((len(centres), 1)))
    return {name: np.concatenate([boxes[name], clicks[name]]) for name in boxes}


class PairJudge:
    """The fp32 pair's masks on the calibration pictures, and how far an encoder variant moves them."""

    def __init__(self, fp32: onnx.ModelProto, decoder_path: Path, batches: Sequence[np.ndarray]) -> None:
        self.batches = list(batches)
        self.prompts = [picture_prompts(image) for batch in self.batches for image in batch]
        self.decoder = int8_q.session(onnx.load(str(decoder_path)))
        self.embeddings, self.masks = self.pair(fp32)

    def pair(self, encoder: onnx.ModelProto) -> Tuple[np.ndarray, np.ndarray]:
        session = int8_q.session(encoder)
        embeddings = np.concatenate([session.run([IMAGE_EMBEDDINGS], {IMAGE: b})[0] for b in self.batches])
        masks = [
            self.decoder.run([DECODER_OUTPUTS[0]], {IMAGE_EMBEDDINGS: embeddings[i : i + 1], **prompts})[0]
            for i, prompts in enumerate(self.prompts)
        ]
        return embeddings, np.stack(masks)

    def judge(self, encoder: onnx.ModelProto) -> Tuple[float, float]:
        """(mean mask IoU, embeddings cosine) of `encoder`'s pair against the fp32 pair."""
        embeddings, masks = self.pair(encoder)
        return float(mask_ious(self.masks, masks).mean()), cosine_similarity(self.embeddings, embeddings)


def sweep(
    fp32_path: Path,
    decoder_path: Path,
    calibration: int8_q.Calibration,
    candidates: Sequence[int8_q.Unit],
    families: Dict[str, str],
    policy: str,
    policy_float: Sequence[str],
    include_attention: bool = False,
    progress: Optional[Callable[[int, int], None]] = None,
) -> SamSensitivityTable:
    """Each candidate unit alone in int8 and all but it, judged on the pair; `progress(done, total)`."""
    fp32 = onnx.load(str(fp32_path))
    judge = PairJudge(fp32, decoder_path, calibration.batches)
    names = [u.module for u in candidates]
    full = int8_q.quantize(fp32_path, calibration, names)
    nodes = {u.module: u.quantizable for u in candidates}

    def floating(units: Sequence[str]) -> onnx.ModelProto:
        return int8_q.without_qdq(full.proto, fp32, full.quantized_nodes, [n for m in units for n in nodes[m]])

    all_iou, all_cosine = judge.judge(full.proto)
    policy_iou, _ = judge.judge(floating([m for m in policy_float if m in nodes]))
    rows = []
    if progress is not None:
        progress(0, len(candidates))
    for i, unit in enumerate(candidates):
        alone_iou, alone_cosine = judge.judge(floating([m for m in names if m != unit.module]))
        all_but_iou = judge.judge(floating([unit.module]))[0] if len(names) > 1 else 1.0
        family = families.get(unit.module, "")
        rows.append(
            SamUnitCost(unit.module, unit.kind, family, len(unit.quantizable), alone_iou, all_but_iou, alone_cosine)
        )
        if progress is not None:
            progress(i + 1, len(candidates))
    # most costly alone first; where no mask moves (ties), the unit that moves the embeddings most
    rows.sort(key=lambda r: (r.alone_mask_iou, r.alone_cosine if r.alone_cosine == r.alone_cosine else -1.0, r.module))
    pictures = CalibrationUsed(calibration.method, calibration.count)
    return SamSensitivityTable(
        pictures,
        PROMPTS_PER_PICTURE,
        include_attention,
        str(policy),
        list(policy_float),
        all_iou,
        all_cosine,
        policy_iou,
        rows,
    )


def render(table: SamSensitivityTable) -> np.ndarray:
    notes = [
        f"Calibration: {table.calibration.method}, {table.calibration.pictures} pictures, {table.prompts_per_picture} "
        f"prompts each. Every candidate int8: mask IoU {100 * table.all_int8_mask_iou:.2f}%; policy "
        f"{table.policy}: {100 * table.policy_mask_iou:.2f}% (its float blocks grey). Beside each bar: the "
        "embeddings' 1 - cosine with fp32 (it orders ties)."
    ]
    return render_costs(
        table.ranking,
        table.policy_float,
        "int8 mask cost per encoder module (pair vs the fp32 pair)",
        "mask IoU lost (%) with only this module in int8",
        notes,
        lambda row: f"{100 * row.cost:.3g}%, 1 - cosine {1 - row.alone_cosine:.2g}",
    )


def write_plot(table: SamSensitivityTable, path: Path) -> None:
    from .. import drawing

    drawing.save_picture(Path(path), render(table))


def table_rows(table: SamSensitivityTable) -> List[List[str]]:
    """The table printed after `export --sensitivity`: rank, module, family, mask IoU lost alone,
    1 - cosine alone, mask IoU all but it, float under the policy."""
    kept = set(table.policy_float)
    return [
        [
            str(i + 1),
            r.module,
            r.family or r.kind,
            f"{100 * r.cost:.2f}",
            f"{1 - r.alone_cosine:.2e}",
            f"{100 * r.all_but_mask_iou:.2f}%",
            "float" if r.module in kept else "",
        ]
        for i, r in enumerate(table.ranking)
    ]
