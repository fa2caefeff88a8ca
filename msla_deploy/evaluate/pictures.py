"""evaluate's pictures of the images where two backends disagree most (drawn with msla_deploy.drawing).

Per image, one PNG of four panels at the label's resolution (enlarged or shrunk by a whole factor
for reading): the picture, the disagreement map (the reference backend's labels darkened, white
where the candidate's label differs: parity.pictures.label_disagreement, as validate draws it),
and each backend's labels in the palette colours; a legend names the colours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .. import drawing
from ..errors import BadInput
from ..parity.pictures import DARKEN, DISAGREE, NONFINITE, label_disagreement
from .datasets import read_image

MAX_LEGEND_CLASSES = 12


def keep_labels(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """The two backends' labels of one image, kept compactly until the report is written: [2, H, W]
    (int16: metrics.NO_LABEL, a pixel whose logits were NaN or infinite, is negative)."""
    return np.stack([reference, candidate]).astype(np.int16)


def disagreement_figure(
    labels: np.ndarray,
    reference: str,
    candidate: str,
    image: str,
    colours: np.ndarray,
    names: Optional[Sequence[str]] = None,
    picture: Optional[np.ndarray] = None,
):
    """The picture (a PIL image) of one image's disagreement: `labels` from keep_labels, `picture`
    the H x W x 3 input (None: left out)."""
    # a pixel without a label (NaN/Inf logits) gets a colour of its own, after the classes'
    unlabelled = len(colours)
    colours = np.vstack([colours, NONFINITE[None].astype(colours.dtype)])
    ref, cand = (np.where(labels[i] < 0, unlabelled, labels[i]).astype(np.int64) for i in (0, 1))
    differs = ref != cand
    enlarge, shrink = drawing.display_factor(ref.shape[1])
    size = (max(1, ref.shape[1] * enlarge // shrink), max(1, ref.shape[0] * enlarge // shrink))
    top = [
        drawing.panel(
            label_disagreement(ref, cand, colours),
            f"{reference}'s labels, darkened; white: {candidate} differs",
            size,
        )
    ]
    if picture is not None:
        top.insert(0, drawing.panel(picture, "picture", size, smooth=True))
    bottom = [
        drawing.panel(colours[ref], f"{reference}'s labels", size),
        drawing.panel(colours[cand], f"{candidate}'s labels", size),
    ]
    grid = drawing.stack(
        [drawing.stack(top, horizontal=True, gap=10), drawing.stack(bottom, horizontal=True, gap=10)], gap=10
    )
    counts = np.bincount(np.concatenate([ref.ravel(), cand.ravel()]), minlength=len(colours))
    present = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]

    def label_of(c: int) -> str:
        return "no label (NaN/Inf logits)" if c == unlabelled else (names[c] if names else f"class {c}")

    shown = present[:MAX_LEGEND_CLASSES]
    which = f"the {len(shown)} most common of {len(present)}" if len(present) > len(shown) else "all"
    legends = [
        drawing.legend([(tuple(DISAGREE), "labels differ (in the darkened map)")], grid.width),
        drawing.legend(
            [(tuple(int(v) for v in colours[c]), label_of(c)) for c in shown],
            grid.width,
            f"classes in the labels, {which} (darkened x{DARKEN:g} in the disagreement map):",
        ),
    ]
    subtitle = (
        f"{image}: the labels differ on {100 * float(differs.mean()):.3g}% of pixels "
        f"({int(differs.sum())} of {differs.size}); "
        f"{ref.shape[1]}x{ref.shape[0]}, the label's resolution"
    )
    return drawing.figure(f"{candidate} against {reference}: where the labels differ", legends + [grid], subtitle)


def write_disagreement(
    path: Path,
    labels: np.ndarray,
    reference: str,
    candidate: str,
    image: str,
    colours: np.ndarray,
    names: Optional[Sequence[str]] = None,
    picture_file: Optional[Path] = None,
) -> Path:
    """Draw and write one worst image's picture; its input is read again from `picture_file`
    (decoded once more for the few drawn, rather than kept in memory for every image)."""
    picture = None
    if picture_file is not None:
        try:
            picture = read_image(Path(picture_file))
        except BadInput:  # it was read a moment ago; if it went bad since, the maps still tell
            picture = None
        if picture is not None and picture.shape[:2] != labels.shape[1:]:
            picture = None
    return drawing.save_picture(
        Path(path), disagreement_figure(labels, reference, candidate, image, colours, names, picture)
    )
