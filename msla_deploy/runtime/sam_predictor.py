"""`SamPredictor`: a deployed EfficientViT-SAM artifact (image encoder + prompt decoder), torch-free.

    sam = SamPredictor("artifacts/efficientvit-sam-l0-512/")
    sam.set_image("street.png")                   # path, PIL image or H x W x 3 uint8 array, any size
    masks, scores, low_res = sam.predict(boxes=[[x0, y0, x1, y1], ...])    # B boxes, one decoder call
    masks, scores, low_res = sam.predict(points=[[x, y]], labels=[1])      # one prompt, three masks
    best = int(scores[0].argmax())
    masks, scores, low_res = sam.predict(points=[[x, y]], labels=[1], mask_input=low_res[0, best][None],
                                         multimask=False)                  # a refinement round
    records = sam.everything("street.png", points_per_side=32)     # segment-everything (sam_everything.py)

segment-anything's SamPredictor semantics (runtime/sam_transforms.py does its transforms):
coordinates in the picture's pixels, masks at the picture's size, `mask_input` a previous round's
low-res logits. Unlike segment-anything's `predict`, every result keeps its prompt axis:
masks [B, M, H, W] (bool, or float32 logits with return_logits), scores [B, M] float32 (the
predicted IoU), low_res [B, M, 256, 256] float32; M = 3 with multimask, else 1.

Prompts: boxes [B, 4] (or one [4]); points [N, 2] with labels [N] for one prompt, [B, N, 2] with
[B, N] for B; both together pair box i with points i. Labels: 1 foreground, 0 background, -1 a
point the decoder ignores (SAM's padding). More prompts than the decoder's profile takes (its
`prompts` max) run as several calls; more points per prompt than its `points` max is refused.

The two graphs run on ONNX Runtime (ort-cpu, ort-cuda, ort-trt; auto: CUDA where the provider is
listed) or on TensorRT (trt: each graph's engine that `msla-deploy build` recorded for it; an
encoder without one is built in memory from its ONNX, a decoder without one is refused: it needs
its profile of prompts and points), or as the PyTorch rebuild of the export (torch: the reference,
runtime/torch_sam.py; needs PyTorch). Bad input is one line (errors.BadInput, exit 2 from the CLI).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple, Union

import numpy as np

from ..artifact import sam_io
from ..errors import BadInput
from ..tasks import SAM
from . import sam_transforms as T
from .segmenter import PictureLike, SessionOwner, _resolve, decode, require_task
from .triton import is_triton_target

if TYPE_CHECKING:  # resolve imports onnx: only where an Artifact is given
    from ..artifact.graphs import GraphRecord
    from ..artifact.resolve import Artifact

__all__ = ["SamPredictor", "Prompts", "check_prompts"]

#: the point labels a user may give (2 and 3 are a box's corners: give `boxes`)
USER_LABELS = (-1, 0, 1)
#: backends that run an ONNX graph or an engine here, and torch: the PyTorch rebuild (runtime/torch_sam.py)
SAM_BACKENDS = ("auto", "ort-cpu", "ort-cuda", "ort-trt", "trt", "torch")


class Prompts:
    """One predict call's prompts, checked and shaped: points [B, N, 2] + labels [B, N] and/or
    boxes [B, 4] in picture pixels, and mask_input [B or 1, 1, 256, 256] (or None)."""

    def __init__(self, points, labels, boxes, mask_input) -> None:
        self.points = self.labels = self.boxes = self.mask_input = None
        if points is None and boxes is None:
            raise BadInput("no prompt: predict needs points (with labels) or boxes", "pass boxes=[[x0, y0, x1, y1]]")
        if points is not None:
            self.points, self.labels = _points(points, labels)
        elif labels is not None:
            raise BadInput("labels were given without points", "pass points=[[x, y], ...] with labels=[1, ...]")
        if boxes is not None:
            self.boxes = _boxes(boxes)
        if self.points is not None and self.boxes is not None and len(self.points) != len(self.boxes):
            raise BadInput(
                f"{len(self.boxes)} box(es) and {len(self.points)} prompt(s) of points: prompt i pairs box i with "
                "points i",
                "give as many boxes as prompts of points",
            )
        if mask_input is not None:
            self.mask_input = _mask_input(mask_input, self.count)

    @property
    def count(self) -> int:
        return len(self.points if self.points is not None else self.boxes)

    @property
    def decoder_points(self) -> int:
        """Points per prompt the decoder sees: the user's, then the box's two corners or one padding point."""
        given = 0 if self.points is None else self.points.shape[1]
        return given + (2 if self.boxes is not None else 1)


def _array(value, what: str, fix: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadInput(f"{what} is not an array of numbers", fix) from None
    if array.size and not np.isfinite(array).all():
        raise BadInput(f"{what} holds NaN or Inf", fix)
    return array


def _points(points, labels) -> Tuple[np.ndarray, np.ndarray]:
    fix = "points [[x, y], ...] with labels [1, ...] (one prompt), or [B, N, 2] with [B, N]"
    coords = _array(points, "points", fix)
    if labels is None:
        raise BadInput("points need labels (1 foreground, 0 background)", "pass labels=[1, ...], one per point")
    tags = _array(labels, "labels", fix)
    if coords.ndim == 2:
        coords, tags = coords[None], tags[None] if tags.ndim == 1 else tags
    if coords.ndim != 3 or coords.shape[-1] != 2 or coords.shape[0] < 1 or coords.shape[1] < 1:
        raise BadInput(f"points of shape {list(np.shape(points))} are not [N, 2] or [B, N, 2]", fix)
    if tags.shape != coords.shape[:2]:
        raise BadInput(f"labels of shape {list(np.shape(labels))} do not match points {list(coords.shape)}", fix)
    bad = sorted(set(tags.ravel().tolist()) - set(USER_LABELS))
    if bad:
        raise BadInput(
            f"point label {bad[0]:g} is not 1 (foreground), 0 (background) or -1 (ignored)",
            "give a box as boxes=[[x0, y0, x1, y1]], not as labels 2 and 3",
        )
    return coords, tags


def _boxes(boxes) -> np.ndarray:
    fix = "boxes [[x0, y0, x1, y1], ...] in the picture's pixels"
    array = _array(boxes, "boxes", fix)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4 or len(array) < 1:
        raise BadInput(f"boxes of shape {list(np.shape(boxes))} are not [4] or [B, 4]", fix)
    for i, (x0, y0, x1, y1) in enumerate(array):
        if x1 < x0 or y1 < y0:
            raise BadInput(f"box {i} {[float(v) for v in array[i]]} has x1 < x0 or y1 < y0", fix)
    return array


def _mask_input(mask_input, count: int) -> np.ndarray:
    side = sam_io.LOW_RES_SIDE
    fix = f"pass a previous round's low_res[b, m][None] ([1, {side}, {side}]) or [B, 1, {side}, {side}]"
    array = np.asarray(mask_input, dtype=np.float32)
    if array.shape[-2:] != (side, side) or array.ndim not in (2, 3, 4) or array.size // (side * side) not in (1, count):
        raise BadInput(
            f"mask_input of shape {list(array.shape)} is not [1, {side}, {side}] or [B, 1, {side}, {side}]", fix
        )
    if array.ndim == 4 and array.shape[1] != 1:
        raise BadInput(f"mask_input of shape {list(array.shape)} has {array.shape[1]} masks per prompt, not 1", fix)
    if not np.isfinite(array).all():
        raise BadInput("mask_input holds NaN or Inf", fix)
    return array.reshape(-1, 1, side, side)


def check_prompts(prompts: Prompts, size: Tuple[int, int], max_points: Optional[int]) -> None:
    """Every point and box inside the picture (H x W: x in 0..W, y in 0..H, edges included), and
    no more points per prompt than the decoder's profile takes; BadInput names the first that is not."""
    height, width = size
    for name, array in (("point", prompts.points), ("box", prompts.boxes)):
        if array is None:
            continue
        xy = array.reshape(len(array), -1, 2)
        outside = (xy[..., 0] < 0) | (xy[..., 0] > width) | (xy[..., 1] < 0) | (xy[..., 1] > height)
        if outside.any():
            b = int(np.argwhere(outside)[0][0])
            value = array[b].tolist() if name == "box" else xy[b][outside[b]][0].tolist()
            raise BadInput(
                f"{name} {value} of prompt {b} is outside the {width}x{height} picture",
                "give coordinates in the picture's pixels: x in 0..width, y in 0..height",
            )
    if max_points is not None and prompts.decoder_points > max_points:
        given = 0 if prompts.points is None else prompts.points.shape[1]
        raise BadInput(
            f"{given} point(s) per prompt: with its {'box corners' if prompts.boxes is not None else 'padding point'} "
            f"that is {prompts.decoder_points} decoder points, above its profile's maximum of {max_points}",
            f"use at most {max_points - (2 if prompts.boxes is not None else 1)} points per prompt, or re-export "
            "with a larger --max-points",
        )


class SamPredictor(SessionOwner):
    """Runs a SAM export directory (manifest with an encoder and a decoder graph) on pictures and
    prompts. `backend`: auto, ort-cpu, ort-cuda, ort-trt, trt or torch; `threads`: ONNX Runtime's CPU threads."""

    def __init__(
        self, artifact: Union[str, Path, Artifact], backend: str = "auto", *, threads: Optional[int] = None
    ) -> None:
        if is_triton_target(artifact) or is_triton_target(backend):  # both graphs served: runtime/triton_sam.py
            self._open_served(artifact, backend, threads)
            return
        resolved = _resolve(artifact)
        require_task(
            resolved,
            SAM,
            "a SamPredictor",
            "use msla_deploy.Segmenter or Classifier (msla-deploy predict runs any kind)",
        )
        if resolved.manifest is None or resolved.directory is None:
            raise BadInput(
                f"{resolved.name}: a SAM model is two graphs; a SamPredictor needs its export directory",
                "pass the directory written by msla-deploy export (with manifest.json)",
            )
        self.artifact = resolved
        manifest = resolved.manifest
        self.encoder_graph: GraphRecord = manifest.graph("encoder")
        self.decoder_graph: GraphRecord = manifest.graph("decoder")
        self.weights_source: Optional[str] = resolved.weights_source
        self.weights_warning: Optional[str] = resolved.weights_warning
        self.threads = threads
        chosen = _choose(backend, resolved)
        if chosen.is_tensorrt:
            _require_engine(resolved, self.decoder_graph)  # before the encoder is loaded or built
        self.encoder = _open_graph(resolved, self.encoder_graph, chosen, threads)
        try:
            self.decoder = _open_graph(resolved, self.decoder_graph, chosen, threads)
        except BaseException:
            self.encoder.close()
            raise
        try:
            self.image_size = _encoder_side(self.encoder)
            self.num_masks = _mask_count(self.decoder)
        except BaseException:
            self.close()
            raise
        self.session = self.encoder  # SessionOwner's; close() closes both
        profile = self.decoder_graph.profile
        #: prompts per decoder call and points per prompt, at most (the TensorRT profile's max)
        self.max_prompts: Optional[int] = profile[sam_io.PROMPTS_DIM].max if sam_io.PROMPTS_DIM in profile else None
        self.max_points: Optional[int] = profile[sam_io.POINTS_DIM].max if sam_io.POINTS_DIM in profile else None
        self.reset_image()

    def _open_served(self, artifact, url: str, threads: Optional[int]) -> None:
        """SamPredictor("triton://HOST:PORT/NAME"), or (artifact, "triton://..."): the encoder and
        decoder models that `serve` or a packaged repository holds (runtime/triton_sam.py)."""
        from .triton_sam import open_served

        if is_triton_target(artifact):
            artifact, url = None, artifact
        elif artifact is not None:
            artifact = _resolve(artifact)
            require_task(artifact, SAM, "a SamPredictor", "pass the SAM export the served models came from")
        served = open_served(artifact, url)
        self.artifact, self.encoder, self.decoder = served.artifact, served.encoder, served.decoder
        self.encoder_graph, self.decoder_graph = served.encoder_graph, served.decoder_graph
        self.weights_source, self.weights_warning, self.threads = served.weights_source, served.weights_warning, threads
        try:
            self.image_size, self.num_masks = _encoder_side(self.encoder), _mask_count(self.decoder)
        except BaseException:
            self.close()
            raise
        self.session = self.encoder
        self.max_prompts, self.max_points = served.max_prompts, served.max_points
        self.reset_image()

    # --- state ------------------------------------------------------------------------------------
    def reset_image(self) -> None:
        self.image: Optional[np.ndarray] = None  # H x W x 3 uint8 of the picture set
        self.embeddings: Optional[np.ndarray] = None  # [1, 256, 64, 64]
        self._matrices: Optional[Tuple[np.ndarray, np.ndarray]] = None

    @property
    def original_size(self) -> Optional[Tuple[int, int]]:
        return None if self.image is None else (int(self.image.shape[0]), int(self.image.shape[1]))

    @property
    def multimask(self) -> bool:
        """Whether the decoder can give three masks per prompt (exported with the multimask head)."""
        return self.num_masks == sam_io.ALL_MASKS

    def close(self) -> None:
        self.encoder.close()
        self.decoder.close()

    def describe(self) -> Dict:
        return {
            **self.encoder.describe(),
            "decoder": self.decoder.describe(),
            "image_size": self.image_size,
            "head": "multimask" if self.multimask else "single",
            "max_prompts": self.max_prompts,
            "max_points": self.max_points,
        }

    # --- running ------------------------------------------------------------------------------------
    def set_image(self, picture: PictureLike) -> None:
        """Encode one picture (a path, PIL image or H x W x 3 uint8 array; 16-bit pictures by their
        top 8 bits, as drawn): the prompts of every later predict call are on it."""
        image = decode(picture).image
        self.reset_image()
        spec = next(iter(self.encoder.inputs.values()))
        feed = T.encoder_input(image, self.image_size).astype(spec.numpy_dtype, copy=False)
        out = self.encoder.run({spec.name: feed})
        embeddings = out[sam_io.IMAGE_EMBEDDINGS] if sam_io.IMAGE_EMBEDDINGS in out else next(iter(out.values()))
        self.embeddings = np.asarray(embeddings)
        self.image = image

    def predict(
        self,
        points=None,
        labels=None,
        boxes=None,
        mask_input=None,
        multimask: bool = True,
        return_logits: bool = False,
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for B prompts on the picture set: (masks [B, M, H, W], scores [B, M], low_res
        [B, M, 256, 256]); see the module doc."""
        if self.image is None:
            raise BadInput("predict before set_image: no picture is encoded", "call set_image(picture) first")
        if multimask and not self.multimask:
            raise BadInput(
                f"{self.artifact.name}'s decoder gives one mask per prompt (single head): it cannot answer multimask",
                "pass multimask=False, or export with --head multimask",
            )
        prompts = Prompts(points, labels, boxes, mask_input)
        check_prompts(prompts, self.original_size, self.max_points)
        low_res, scores = self._decode(prompts, multimask)
        if self._matrices is None:
            self._matrices = T.mask_matrices(self.original_size)
        masks = T.postprocess_masks(low_res, self.original_size, return_logits, self._matrices)
        return masks, scores, low_res

    def everything(self, picture: PictureLike, *, progress=None, **parameters) -> List[Dict]:
        """Segment-everything on one picture: SAM's automatic mask generator through these graphs
        (runtime/sam_everything.py), with its parameter names and defaults (points_per_side=32, ...,
        output_mode coco_rle | binary_mask); its list of mask records, best first."""
        from . import sam_everything

        params = sam_everything.EverythingParams.from_kwargs(**parameters)
        return sam_everything.generate(self, picture, params, progress).records

    def _decode(self, prompts: Prompts, multimask: bool) -> Tuple[np.ndarray, np.ndarray]:
        size = self.original_size
        feed = sam_io.decoder_feed(
            None if prompts.points is None else T.to_prompt_frame(prompts.points, size),
            prompts.labels,
            None if prompts.boxes is None else T.boxes_to_prompt_frame(prompts.boxes, size),
            prompts.mask_input,
        )
        inputs = self.decoder.inputs
        embeddings = self.embeddings.astype(inputs[sam_io.IMAGE_EMBEDDINGS].numpy_dtype, copy=False)
        step = self.max_prompts or prompts.count
        masks, ious = [], []
        for start in range(0, prompts.count, step):  # more prompts than the profile takes: several calls
            chunk = {name: value[start : start + step] for name, value in feed.items()}
            chunk = {name: chunk[name].astype(inputs[name].numpy_dtype, copy=False) for name in chunk}
            out = self.decoder.run({sam_io.IMAGE_EMBEDDINGS: embeddings, **chunk})
            chosen, iou = sam_io.select_masks(
                np.asarray(out[sam_io.MASKS]), np.asarray(out[sam_io.IOU_PREDICTIONS]), multimask
            )
            masks.append(chosen.astype(np.float32, copy=False))
            ious.append(iou.astype(np.float32, copy=False))
        return np.concatenate(masks), np.concatenate(ious)


# --- opening the two graphs ----------------------------------------------------------------------
def _choose(backend: str, artifact):
    from . import choose

    if backend not in SAM_BACKENDS:
        raise BadInput(
            f"--backend {backend!r}: a SAM model runs on {', '.join(SAM_BACKENDS)}",
            "use --backend auto (or ort-cpu, ort-cuda, ort-trt, trt, torch)",
        )
    return choose(backend, artifact, allowed=SAM_BACKENDS, command="predict")


def _open_graph(artifact, graph: GraphRecord, backend, threads: Optional[int]):
    """One graph's session: on TensorRT the engine `build` recorded for this graph if the directory
    has one, else its ONNX (built in memory by TensorRT, or run by ONNX Runtime)."""
    from . import open_onnx, preflight

    preflight(backend)
    if backend.name == "torch":
        from .torch_sam import open_torch_graph

        return open_torch_graph(artifact, graph, threads)
    directory = artifact.directory
    if backend.is_tensorrt:
        engine = _engine_for(artifact, graph.role)
        if engine is not None:
            from .tensorrt import TensorRTSession

            record = artifact.build_record(engine)
            return TensorRTSession(
                engine,
                is_engine=True,
                version_compatible=bool(record and record.version_compatible),
                dla_core=record.dla_core if record else None,
            )
    path = directory / graph.file
    if not path.is_file():
        raise BadInput(f"{artifact.name}: the {graph.role} graph {graph.file} is missing", "re-export the directory")
    return open_onnx(path, backend, threads=threads, label=str(path), precision=graph.precision)


def _require_engine(artifact, graph: GraphRecord) -> None:
    """A dynamic graph runs on TensorRT from its built engine: one built in memory from the ONNX would
    have no optimisation profile for its prompts and points."""
    if graph.dynamic and _engine_for(artifact, graph.role) is None:
        raise BadInput(
            f"{artifact.name} has no TensorRT engine of its {graph.role} graph",
            f"run `msla-deploy build {artifact.path}` first (it builds the {graph.role} with its profile)",
        )


def _engine_for(artifact, role: str) -> Optional[Path]:
    """The newest engine in the directory that the manifest's build records give to this graph."""
    found = None
    for record in artifact.manifest.builds:
        # BuildRecord.graph: the graph an engine of a multi-graph artifact runs (absent before SAM builds)
        if record.graph == role and (artifact.directory / Path(record.engine_file).name).is_file():
            found = artifact.directory / Path(record.engine_file).name
    return found


def _encoder_side(session) -> int:
    spec = session.inputs.get(sam_io.IMAGE) or next(iter(session.inputs.values()))
    shape = tuple(spec.shape)
    if len(shape) != 4 or shape[1] != 3 or not isinstance(shape[2], int) or shape[2] != shape[3]:
        raise BadInput(
            f"the encoder's input {spec.name!r} has shape {list(shape)}, not [1, 3, S, S]",
            "re-export the directory with msla-deploy export",
        )
    return int(shape[2])


def _mask_count(session) -> int:
    missing = [n for n in sam_io.DECODER_INPUTS if n not in session.inputs] + [
        n for n in sam_io.DECODER_OUTPUTS if n not in session.outputs
    ]
    if missing:
        raise BadInput(
            f"the decoder graph has no tensor {missing[0]!r}", "re-export the directory with msla-deploy export"
        )
    count = tuple(session.outputs[sam_io.MASKS].shape)[1]
    if count not in (1, sam_io.ALL_MASKS):
        raise BadInput(
            f"the decoder gives {count} masks per prompt, not 1 or {sam_io.ALL_MASKS}", "re-export with msla-deploy"
        )
    return int(count)
