"""`export` of an EfficientViT-SAM model: one artifact, two graphs.

The same steps as every export (export/pipeline.py: build, reference, export, check, parity,
manifest), for SAM's two graphs (export/sam_graphs.py makes them):

* encoder.onnx: image [1, 3, S, S] -> image_embeddings, in the export's precision (fp16: the
  guarded policy plus the final LayerNorm2d as an fp32 island), with encoder_fp32.onnx beside an
  fp16 one for weakly typed TensorRT builds (its fp32_nodes pinned);
* decoder.onnx: the prompt decoder, fp32, B prompts and P points per prompt dynamic (the TensorRT
  profile of each is in the manifest's `graphs`).

The reference bundle holds N pictures (SAM's input: resized, padded, normalised) and, per picture,
B = 4 prompts of P = 3 points each: a box, a foreground and a background point, a box with a point,
and a refinement round (the points again, with PyTorch's best mask of that prompt as mask_input).
parity.json judges the encoder's embeddings (error, cosine), the decoder on PyTorch's embeddings,
the pair (ONNX Runtime's embeddings into ONNX Runtime's decoder: what a user gets) by the IoU of the
binarised masks, and the decoder at one prompt (the other end of its range).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import onnx
import torch

from .. import __version__, runtime
from ..artifact.files import describe_files, environment, sha256_json, write_bytes_atomic
from ..artifact.graphs import DECODER, ENCODER, DimProfile, GraphRecord, TensorRecord
from ..artifact.manifest import Manifest, ModelRecord, PrecisionRecord, write_manifest
from ..artifact.names import (
    DECODER_ONNX_NAME,
    ENCODER_FP32_ONNX_NAME,
    ENCODER_ONNX_NAME,
    META_EXPORTER,
    META_FP32_NODES,
    META_GRAPH,
    META_HEAD,
    META_INPUT_NAMES,
    META_MODEL,
    META_NORMALIZATION,
    META_OUTPUT_NAMES,
    META_PRECISION,
    META_RECIPE,
    META_RESOLUTION,
    META_TASK,
    META_VERSION,
    PARITY_NAME,
)
from ..artifact.options import ExportOptions
from ..artifact.reference import IMAGENET_MEAN, IMAGENET_STD, ReferenceBundle, synthetic_images, write_reference
from ..artifact.sam_io import (
    BOX_LABELS,
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    HAS_MASK_INPUT,
    IMAGE,
    IMAGE_EMBEDDINGS,
    LOW_RES_SIDE,
    MASK_INPUT,
    PAD_LABEL,
    POINT_COORDS,
    POINT_LABELS,
    POINTS_DIM,
    PROMPT_FRAME,
    PROMPTS_DIM,
)
from ..artifact.staging import check_replaceable, staged_directory
from ..errors import BadInput
from ..loading import load_model
from ..parity import default_budget
from ..parity.records import ParityCheck, ParityRecord
from ..progress import Steps
from ..runtime.onnxruntime import CPU, import_onnxruntime
from ..tasks import SAM, OutputKind, get_task
from . import sam_graphs, sam_int8
from .graph import GraphReport, check_and_stamp, finalize
from .int8_stage import EncoderPolicy, load_int8_calibration, quantize_export
from .pipeline import ExportResult, parity_check, scan_hazards

#: reference pictures: each a 4:3 landscape picture, so the encoder's input is padded below it as
#: SAM pads (its bottom quarter is zero after normalisation)
REFERENCE_PICTURES = 2
CONTENT_HEIGHT = 3 / 4
#: the TensorRT profile's opt point: 16 prompts (bench's B = 16), 3 points (a box and a pad, or
#: two clicks and a pad)
OPT_PROMPTS, OPT_POINTS = 16, 3
KINDS = {o.name: o.kind for o in get_task(SAM).heads["multimask"]}
KINDS[IMAGE_EMBEDDINGS] = OutputKind.EMBEDDINGS


def run_sam_export(options: ExportOptions, steps: Steps) -> ExportResult:
    """`options` checked and with the model's defaults (task sam, its side, its head)."""
    _check_options(options)
    import_onnxruntime()  # fail before the expensive steps, not after them
    target = options.output_dir()
    check_replaceable(target, options.overwrite)
    started = time.time()
    int8 = options.precision == "int8"
    calib = load_int8_calibration(options, steps) if int8 else None  # bad pictures never cost a model build
    with staged_directory(target, options.overwrite, steps.warn) as staging:
        with steps.step("build", "Building model"):
            loaded = load_model(options)
        sam, parameters = loaded.module, sum(p.numel() for p in loaded.module.parameters())
        with steps.step("reference", "Planning attention and computing the PyTorch reference"):
            reference = _reference(sam, options)
        recipe_sha = _recipe_sha(options, loaded)
        with steps.step("export", f"Exporting the encoder ({options.precision}) and the decoder to ONNX"):
            graphs = _export(sam, reference, options)
        families = sam_int8.block_families(sam.image_encoder) if int8 else {}
        # the PyTorch side is done: an XL model and its planned copy hold gigabytes the checks need
        del sam
        loaded.module = reference.planned = None
        with steps.step("check", "Checking the graphs (onnx.checker; the decoder's shapes read prompts and points)"):
            records, reports = _write_graphs(staging, graphs, options, loaded.name, recipe_sha)
        quantized = _quantize(options, calib, staging, records[0], reports, families, steps) if int8 else None
        hazards = {file: scan_hazards(staging / file, read_as) for file, read_as in _hazard_scans(options)}
        with steps.step("parity", "Comparing ONNX Runtime with PyTorch fp32 (embeddings, masks, the pair)"):
            reference_files = write_reference(staging, _bundle(reference, options))
            parity = ParityRecord.of(_checks(staging, reference, options))
            parity.write(staging / PARITY_NAME)
        manifest = _manifest(
            options, started, recipe_sha, loaded, parameters, graphs, records, reports, hazards, parity, steps
        )
        if quantized is not None:
            manifest.precision.extra["int8"] = quantized.record
        files = [f for record in records for f in record.files] + [PARITY_NAME, *reference_files]
        files += quantized.files if quantized is not None else []  # --sensitivity's table and plot
        manifest.artifacts = describe_files(staging, files)
        write_manifest(staging, manifest)
    return ExportResult(directory=target, manifest=manifest, parity=parity)


def int8_policy(options: ExportOptions) -> str:
    """The encoder's int8 policy: --int8-policy, else SAM's default."""
    return options.int8_policy or sam_int8.DEFAULT_POLICY


def _check_options(options: ExportOptions) -> None:
    from ..zoo import get_spec

    side = get_spec(options.model).default_resolution
    name = options.model
    refusals = (
        (options.batch != 1 or options.dynamic_batch, f"{name} takes no --batch: its encoder takes one image",
         "drop --batch; the decoder's prompts are its dynamic dimension (--max-prompts)"),
        (tuple(options.resolution) != tuple(side), f"--res {options.resolution[0]}x{options.resolution[1]}: "
         f"{name}'s encoder runs at {side[0]}x{side[1]} (64x64 embeddings)", "drop --res"),
        (options.min_argmax_agreement is not None, f"--min-argmax-agreement counts labels, which {name} has none "
         "of", "choose the blocks kept float with --int8-policy (--sensitivity ranks them by the masks they cost)"),
        ((options.attention_precision, options.io_dtype) != ("fp32", "fp32"), "--attention-precision/--io-dtype do "
         f"not apply to {name}: its fp16 encoder keeps fp32 attention islands and fp32 I/O", "drop them"),
    )  # fmt: skip
    for refused, problem, fix in refusals:
        if refused:
            raise BadInput(problem, fix)


# --- the PyTorch reference ------------------------------------------------------------------------


@dataclass
class SamReference:
    images: np.ndarray  # [N, 3, S, S], SAM's input
    planned: Optional[sam_graphs.PlannedEncoder]  # the encoder planned on the first picture (until exported)
    embeddings: np.ndarray  # [N, 256, 64, 64]
    prompts: Dict[str, np.ndarray]  # the decoder's inputs but the embeddings, each [N, B, ...]
    masks: np.ndarray  # [N, B, M, 256, 256]
    iou: np.ndarray  # [N, B, M]


def reference_pictures(count: int, side: int, seed: int) -> np.ndarray:
    """Varied synthetic 4:3 pictures as SAM's transform leaves them: normalised with SAM's mean and
    std (ImageNet's, on 0-255), padded bottom-right with zeros to side x side."""
    images = synthetic_images(count, side, side, seed, varied=True)
    images[:, :, int(side * CONTENT_HEIGHT) :] = 0.0
    return images


def reference_prompts(count: int, seed: int) -> Dict[str, np.ndarray]:
    """Per picture 4 prompts of 3 points in the 1024 prompt frame (the picture spans x < 1024,
    y < 768): a box (and a pad point), two clicks (foreground, background; a pad), a click with a
    box, and the two clicks again for a refinement round (its mask_input is set later)."""
    rng = np.random.default_rng(seed + 23)
    height = PROMPT_FRAME * CONTENT_HEIGHT
    coords, labels = [], []
    for _ in range(count):
        x0, y0 = rng.uniform(40, 480), rng.uniform(40, 320)
        box = [[x0, y0], [x0 + rng.uniform(200, 500), min(y0 + rng.uniform(150, 400), height - 1)]]
        inside = [rng.uniform(box[0][0], box[1][0]), rng.uniform(box[0][1], box[1][1])]
        outside = [rng.uniform(box[1][0] + 1, PROMPT_FRAME - 1), rng.uniform(0, height - 1)]
        clicks = [inside, outside, [0.0, 0.0]]
        coords.append([[*box, [0.0, 0.0]], clicks, [inside, *box], clicks])
        box_labels = list(BOX_LABELS)
        labels.append([[*box_labels, PAD_LABEL], [1, 0, PAD_LABEL], [1, *box_labels], [1, 0, PAD_LABEL]])
    coords_array = np.asarray(coords, dtype=np.float32)
    batch = coords_array.shape[1]
    return {
        POINT_COORDS: coords_array,
        POINT_LABELS: np.asarray(labels, dtype=np.float32),
        MASK_INPUT: np.zeros((count, batch, 1, LOW_RES_SIDE, LOW_RES_SIDE), dtype=np.float32),
        HAS_MASK_INPUT: np.zeros((count, batch), dtype=np.float32),
    }


#: the refinement prompt and the prompt whose best mask it refines
REFINED, REFINES = 3, 1


def _reference(sam: torch.nn.Module, options: ExportOptions) -> SamReference:
    side = options.resolution[0]
    images = reference_pictures(REFERENCE_PICTURES, side, options.seed)
    planned = sam_graphs.plan_encoder(sam, torch.from_numpy(images[:1]))
    with torch.no_grad():
        embeddings = torch.cat([planned.embeddings] + [planned.module(torch.from_numpy(i[None])) for i in images[1:]])
    prompts = reference_prompts(REFERENCE_PICTURES, options.seed)
    decoder = sam_graphs.SamDecoderGraph(sam, multimask=options.head == "multimask").eval()
    masks, iou = _torch_decode(decoder, embeddings, prompts)
    best = iou[:, REFINES].argmax(axis=1)  # the refinement round: the best mask of the prompt it refines
    prompts[MASK_INPUT][:, REFINED, 0] = masks[np.arange(len(best)), REFINES, best]
    prompts[HAS_MASK_INPUT][:, REFINED] = 1.0
    masks, iou = _torch_decode(decoder, embeddings, prompts)
    return SamReference(images, planned, embeddings.numpy(), prompts, masks, iou)


def _torch_decode(decoder, embeddings: torch.Tensor, prompts: Dict[str, np.ndarray]) -> Tuple[np.ndarray, ...]:
    names = DECODER_INPUTS[1:]
    outputs = []
    with torch.no_grad():
        for i in range(len(embeddings)):
            args = [torch.from_numpy(prompts[name][i]) for name in names]
            outputs.append([t.numpy() for t in decoder(embeddings[i : i + 1], *args)])
    return tuple(np.stack(column) for column in zip(*outputs))


# --- the graphs -----------------------------------------------------------------------------------


@dataclass
class SamGraphs:
    encoder: sam_graphs.SamGraph  # in the export's precision
    encoder_fp32: sam_graphs.SamGraph  # the same graph as encoder where the precision is fp32
    decoder: sam_graphs.SamGraph


def _encoder_precision(options: ExportOptions) -> str:
    """What the PyTorch side exports: int8 quantizes the fp32 graph."""
    if options.precision in ("fp32", "int8"):
        return "fp32"
    return "fp16" if options.fp16_guards else "fp16-naive"


def _export(sam: torch.nn.Module, reference: SamReference, options: ExportOptions) -> SamGraphs:
    common = {"opset": options.opset, "exporter": options.exporter}
    fp32 = sam_graphs.export_encoder(reference.planned, "fp32", **common)
    precision = _encoder_precision(options)
    encoder = fp32 if precision == "fp32" else sam_graphs.export_encoder(reference.planned, precision, **common)
    decoder = sam_graphs.export_decoder(
        sam,
        multimask=options.head == "multimask",
        max_prompts=options.max_prompts,
        max_points=options.max_points,
        **common,
    )
    return SamGraphs(encoder, fp32, decoder)


def _write_graphs(
    staging: Path, graphs: SamGraphs, options: ExportOptions, model: str, recipe_sha: str
) -> Tuple[List[GraphRecord], Dict[str, GraphReport]]:
    """Each graph checked, stamped and written; their manifest records and check reports."""
    side = options.resolution[0]
    common = {
        META_VERSION: __version__,
        META_MODEL: model,
        META_TASK: SAM,
        META_RECIPE: recipe_sha,
        META_RESOLUTION: f"{side}x{side}",
    }
    encoder_meta = {
        **common,
        META_GRAPH: ENCODER,
        META_INPUT_NAMES: IMAGE,
        META_OUTPUT_NAMES: IMAGE_EMBEDDINGS,
        META_NORMALIZATION: f"rgb/255, mean={list(IMAGENET_MEAN)}, std={list(IMAGENET_STD)}; longest side resized to "
        f"{side}, padded bottom-right",
    }
    beside = options.precision != "fp32"  # an fp32 graph beside: weakly typed builds, or int8's source
    files = [] if options.precision == "int8" else [(graphs.encoder, ENCODER_ONNX_NAME, options.precision)]
    if beside:
        files.append((graphs.encoder_fp32, ENCODER_FP32_ONNX_NAME, "fp32"))
    reports = {}
    for graph, file, precision in files:
        meta = {**encoder_meta, META_PRECISION: precision, META_EXPORTER: graph.exporter}
        meta[META_FP32_NODES] = ",".join(graph.fp32_nodes)
        reports[file] = finalize(graph.proto, producer_version=__version__, metadata=meta)
        write_bytes_atomic(staging / file, graph.proto.SerializeToString())
    decoder = graphs.decoder
    reports[DECODER_ONNX_NAME] = _check_decoder(decoder.proto)
    check_and_stamp(
        decoder.proto,
        producer_version=__version__,
        metadata={
            **common,
            META_GRAPH: DECODER,
            META_PRECISION: "fp32",
            META_EXPORTER: decoder.exporter,
            META_HEAD: options.head,
            META_INPUT_NAMES: ",".join(DECODER_INPUTS),
            META_OUTPUT_NAMES: ",".join(DECODER_OUTPUTS),
        },
    )
    write_bytes_atomic(staging / DECODER_ONNX_NAME, decoder.proto.SerializeToString())
    encoder_record = GraphRecord(
        role=ENCODER,
        file=ENCODER_ONNX_NAME,
        precision=options.precision,
        inputs=_tensors(graphs.encoder.proto.graph.input),
        outputs=_tensors(graphs.encoder.proto.graph.output),
        fp32_file=ENCODER_FP32_ONNX_NAME if beside else None,
        fp32_nodes=list(graphs.encoder_fp32.fp32_nodes),
    )
    decoder_record = GraphRecord(
        role=DECODER,
        file=DECODER_ONNX_NAME,
        precision="fp32",
        inputs=_tensors(decoder.proto.graph.input),
        outputs=_tensors(decoder.proto.graph.output),
        profile={
            PROMPTS_DIM: DimProfile(1, min(OPT_PROMPTS, options.max_prompts), options.max_prompts),
            POINTS_DIM: DimProfile(1, min(OPT_POINTS, options.max_points), options.max_points),
        },
    )
    return [encoder_record, decoder_record], reports


def _quantize(
    options: ExportOptions, calib, staging: Path, encoder: GraphRecord, reports, families: Dict[str, str], steps: Steps
):
    """encoder.onnx as the Q/DQ graph of encoder_fp32.onnx: the blocks int8 but those --int8-policy
    keeps float (calibrated on --calib-images as SAM's transform sees them), the LiteMLA cores fp32
    islands; the final LayerNorm2d has no quantizable op and stays float. Its record is the encoder's."""
    policy = EncoderPolicy(int8_policy(options), families, staging / DECODER_ONNX_NAME)
    quantized = quantize_export(options, calib, staging, steps, fp32_name=ENCODER_FP32_ONNX_NAME, policy=policy)
    proto = quantized.graph.proto
    metadata = {p.key: p.value for p in proto.metadata_props}
    reports[ENCODER_ONNX_NAME] = finalize(proto, producer_version=__version__, metadata=metadata)
    write_bytes_atomic(staging / ENCODER_ONNX_NAME, proto.SerializeToString())
    names = {n.name for n in proto.graph.node}
    # a weakly typed build of the Q/DQ graph keeps the islands and the LayerNorm2d in fp32
    pinned = dict.fromkeys([*quantized.graph.fp32_nodes, *(n for n in encoder.fp32_nodes if n in names)])
    encoder.fp32_nodes = list(pinned)
    encoder.inputs, encoder.outputs = _tensors(proto.graph.input), _tensors(proto.graph.output)
    return quantized


def _check_decoder(proto: onnx.ModelProto) -> GraphReport:
    """The decoder's shapes may only be computed from its two dynamic dimensions."""
    from ..errors import CheckFailed

    shapes = sam_graphs.shape_ops(proto)
    unknown = set(shapes["reads"]) - {PROMPTS_DIM, POINTS_DIM}
    if unknown:
        raise CheckFailed(
            f"the decoder graph computes shapes from {sorted(unknown)}, not only {PROMPTS_DIM} and {POINTS_DIM}",
            "please report this model",
        )
    counts = sam_graphs.SamGraph(proto, "").op_counts()
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    describe = [t.to_dict() for t in _tensors(proto.graph.input)]
    return GraphReport(
        counts, len(proto.graph.node), describe, [t.to_dict() for t in _tensors(proto.graph.output)], opset
    )


_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.INT32: "int32"}


def _tensors(values) -> List[TensorRecord]:
    out = []
    for value in values:
        tensor = value.type.tensor_type
        shape = tuple(d.dim_param or d.dim_value for d in tensor.shape.dim)
        out.append(TensorRecord(value.name, shape, _DTYPES.get(tensor.elem_type, str(tensor.elem_type))))
    return out


def _hazard_scans(options: ExportOptions) -> List[Tuple[str, str]]:
    """Each graph as TensorRT will build it: fp16 exports' encoder_fp32.onnx weakly typed with --fp16."""
    # (the decoder is fp32 and dynamic by design: `msla-deploy inspect` reports it)
    scans = [(ENCODER_ONNX_NAME, "auto")]
    return scans + ([(ENCODER_FP32_ONNX_NAME, "fp16")] if options.precision != "fp32" else [])


# --- parity ---------------------------------------------------------------------------------------


def _run(path: Path, feeds: List[Dict[str, np.ndarray]]):
    """ONNX Runtime (CPU) on each feed: outputs stacked by name, and what ran in parity.json's words."""
    with runtime.open_onnx(path, CPU, label=str(path)) as session:
        runs = [session.run(feed) for feed in feeds]
        info = session.describe()
    outputs = {name: np.stack([run[name] for run in runs]) for name in runs[0]}
    return outputs, {"name": "onnxruntime", "version": info["version"], "providers": info["providers_active"]}


def _decoder_feeds(embeddings: np.ndarray, prompts: Dict[str, np.ndarray], prompt=slice(None)) -> List[Dict]:
    return [
        {IMAGE_EMBEDDINGS: embeddings[i : i + 1], **{name: array[i, prompt] for name, array in prompts.items()}}
        for i in range(len(embeddings))
    ]


def _checks(staging: Path, ref: SamReference, options: ExportOptions) -> List[ParityCheck]:
    budget = default_budget(options.precision, SAM)
    fp32 = default_budget("fp32", SAM)
    expected = {DECODER_OUTPUTS[0]: ref.masks, DECODER_OUTPUTS[1]: ref.iou}

    def check(label: str, file: str, reference: Dict, feeds: List[Dict], judged_by) -> Tuple[ParityCheck, Dict]:
        outputs, ran = _run(staging / file, feeds)
        outputs = {name: value[:, 0] if name == IMAGE_EMBEDDINGS else value for name, value in outputs.items()}
        return parity_check(label, file, ran, reference, outputs, judged_by, KINDS), outputs

    images = [{IMAGE: ref.images[i : i + 1]} for i in range(len(ref.images))]
    embeddings = {IMAGE_EMBEDDINGS: ref.embeddings}
    encoder, encoded = check(f"encoder {options.precision}", ENCODER_ONNX_NAME, embeddings, images, budget)
    pair, _ = check(
        f"pair: encoder {options.precision} -> decoder",
        DECODER_ONNX_NAME,
        expected,
        _decoder_feeds(encoded[IMAGE_EMBEDDINGS], ref.prompts),
        budget,
    )
    decoder, _ = check(
        "decoder (PyTorch's embeddings)",
        DECODER_ONNX_NAME,
        expected,
        _decoder_feeds(ref.embeddings, ref.prompts),
        fp32,
    )
    one = slice(0, 1)
    single, _ = check(
        f"decoder, 1 prompt of 1..{options.max_prompts}",
        DECODER_ONNX_NAME,
        {name: value[:, one] for name, value in expected.items()},
        _decoder_feeds(ref.embeddings, ref.prompts, one),
        fp32,
    )
    checks = [pair, encoder, decoder, single]
    if options.precision != "fp32":
        fp32_encoder, _ = check(
            f"encoder fp32 ({ENCODER_FP32_ONNX_NAME})", ENCODER_FP32_ONNX_NAME, embeddings, images, fp32
        )
        checks.append(fp32_encoder)
    return checks


def _bundle(ref: SamReference, options: ExportOptions) -> ReferenceBundle:
    inputs = {IMAGE: ref.images, **ref.prompts}
    outputs = {IMAGE_EMBEDDINGS: ref.embeddings, DECODER_OUTPUTS[0]: ref.masks, DECODER_OUTPUTS[1]: ref.iou}
    return ReferenceBundle(
        inputs=inputs,
        outputs=outputs,
        info={
            "source": "pytorch",
            "precision": "fp32",
            "torch": torch.__version__,
            "inputs": (
                f"{len(ref.images)} synthetic varied 4:3 pictures as SAM's transform leaves them (padded below), "
                f"and per picture {ref.masks.shape[1]} prompts in the {PROMPT_FRAME} prompt frame: a box, two "
                "clicks, a click with a box, and a refinement round (the clicks with PyTorch's best mask as mask_input)"
            ),
            "normalization": {"scale": 1 / 255, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "seed": options.seed,
            "input_names": list(inputs),
            "output_names": list(outputs),
        },
    )


# --- the manifest ---------------------------------------------------------------------------------


def _recipe_sha(options: ExportOptions, loaded) -> str:
    return sha256_json(
        {
            "tool": __version__,
            "torch": torch.__version__,
            "model": loaded.name,
            "weights": loaded.weights["state_dict_sha256"],
            "task": SAM,
            "resolution": list(options.resolution),
            "opset": options.opset,
            "exporter": options.exporter,
            "encoder": _encoder_precision(options),
            "head": options.head,
            "profile": [options.max_prompts, options.max_points],
        }
    )


def _manifest(
    options: ExportOptions,
    started: float,
    recipe_sha: str,
    loaded,
    parameters: int,
    graphs: SamGraphs,
    records: List[GraphRecord],
    reports: Dict[str, GraphReport],
    hazards: Dict,
    parity: ParityRecord,
    steps: Steps,
) -> Manifest:
    encoder = records[0]
    onnx_files = {"fp32": encoder.fp32_file or encoder.file}
    if options.precision != "fp32":
        onnx_files[options.precision] = encoder.file
    return Manifest(
        created_unix=round(started, 3),
        tool={"name": "msla-deploy", "version": __version__},
        recipe_sha256=recipe_sha,
        model=ModelRecord(
            loaded.name,
            loaded.source,
            options.model,
            None,
            parameters,
            task=SAM,
        ),
        weights=loaded.weights,
        options=dataclasses.replace(
            options, batch=1, int8_policy=int8_policy(options) if options.precision == "int8" else None
        ),
        precision=PrecisionRecord(
            precision=options.precision,
            fp16_guards=options.fp16_guards,
            onnx_files=onnx_files,
            fp32_nodes=encoder.fp32_nodes,
        ),
        exporter={
            "requested": options.exporter,
            "used": graphs.encoder.exporter,
            "decoder": graphs.decoder.exporter,
            "opset": options.opset,
        },
        swapped_modules=loaded.swapped,
        onnx={file: report.to_dict() for file, report in reports.items()},
        probes=graphs.encoder_fp32.probes,
        hazards=hazards,
        parity={"passed": parity.passed, "file": PARITY_NAME},
        environment=environment(),
        timings_s=steps.timings,
        warnings=steps.warnings,
        graphs=records,
    )
