"""`validate` of a SAM artifact: both graphs against the export's PyTorch reference, one report.

    reference pictures -> encoder                      vs image_embeddings   (encoder)
    PyTorch's embeddings + reference prompts -> decoder vs masks, iou         (decoder; and 1 prompt)
    the encoder's embeddings + prompts -> decoder      vs masks, iou         (pair: what a user gets)

Each comparison is judged by the default budget of the precision of what ran (the pair by the
lower of its two graphs'), with pyproject settings and flags on top as for any artifact; masks by
the IoU of the binarised masks, predicted IoUs by their error, embeddings by error and cosine
(parity/budgets.py SAM_*). The report is validate's (records.ValidateReport) with the graphs that
ran and the comparisons added; its `budget` is the pair's. The decoder also runs at one prompt:
the other end of its dynamic range (an engine may pick other kernels there).

ONNX Runtime runs each graph's ONNX; `--backend trt` runs the engines `msla-deploy build` wrote
beside them (one per graph, found by its build record's graph or by its name).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import __version__, runtime
from ..artifact.files import environment
from ..artifact.graphs import DECODER, ENCODER, GraphRecord
from ..artifact.names import MANIFEST_NAME, ONNX_SUFFIX
from ..artifact.outputs import guard_for
from ..artifact.reference import ReferenceBundle, read_reference
from ..artifact.resolve import Artifact
from ..artifact.sam_io import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    IMAGE,
    IMAGE_EMBEDDINGS,
    POINT_COORDS,
    POINT_LABELS,
)
from ..errors import BadInput, CheckFailed
from ..progress import Steps
from ..runtime.session import Backend, Session
from ..tasks import OutputKind
from .config import resolve_budget
from .metrics import compare_outputs
from .records import ArtifactInfo, Comparison, GraphRun, ReferenceInfo, ValidatedOutput, ValidateReport
from .reports import write_reports

#: flags of other tasks' budgets: refused on a SAM artifact (no classes to argmax, no label maps)
REFUSED_FLAGS = {
    "max-miou-drop": "a SAM artifact is judged by --min-mask-iou (the IoU of its binarised masks)",
    "min-argmax-agreement": "SAM's masks have no classes: a SAM artifact is judged by --min-mask-iou",
}
#: the precisions from the most to the least exact: a pair is judged by its less exact graph's
PRECISION_ORDER = ("fp32", "fp16", "int8")
ENCODER_CHECK, DECODER_CHECK, ONE_PROMPT_CHECK, PAIR_CHECK = "encoder", "decoder", "decoder, 1 prompt", "pair"
FIX = "pass --reference with the reference/ folder of the SAM export this artifact came from"


@dataclass
class GraphFile:
    """The file that runs one graph, and its precision."""

    graph: GraphRecord
    path: Path
    precision: str
    precision_source: str

    @property
    def is_engine(self) -> bool:
        return self.path.suffix != ONNX_SUFFIX


def run_validate_sam(options, artifact: Artifact, steps: Steps, started: float, polygraphy_version: str):
    """validate.run_validate for a SAM artifact (`options`: its ValidateOptions)."""
    _refuse(options, artifact)
    reference_dir = artifact.reference_dir(options.reference)
    backend = _backend(options.backend, artifact)
    files = dict(zip((ENCODER, DECODER), graph_files(artifact, backend)))
    runtime.preflight(backend)
    cwd = Path(options.cwd or Path.cwd())
    encoder_precision, decoder_precision = files[ENCODER].precision, files[DECODER].precision
    pair_precision = max((encoder_precision, decoder_precision), key=_rank)
    choices = {
        p: resolve_budget(p, options.budget_flags, cwd, artifact.task.name)
        for p in dict.fromkeys((encoder_precision, decoder_precision, pair_precision))
    }
    from .validate import modified_files

    modified = modified_files(artifact, [f.path for f in files.values()], reference_dir)
    if modified and not options.allow_modified:
        raise CheckFailed(
            f"artifact modified after export: {', '.join(modified[:4])}{' ...' if len(modified) > 4 else ''} "
            f"(checked against the sha256 in {artifact.directory / MANIFEST_NAME})",
            "re-export; or pass --allow-modified if the change is intended (the files are then judged as they are now)",
        )
    for rel in modified:
        steps.warn(f"artifact modified after export: {rel} does not match its sha256 in the manifest")
    report_dir = Path(options.report_dir) if options.report_dir else artifact.default_report_dir()
    guard = guard_for(artifact, inputs=[*(f.path for f in files.values()), reference_dir])
    guard.check(report_dir, "--report-dir" if options.report_dir else "the report folder")
    if options.junit:
        guard.check(Path(options.junit), "--junit")
    if report_dir.exists() and not report_dir.is_dir():
        raise BadInput(f"--report-dir {report_dir} is a file", "pass a directory (it is created if missing)")

    with steps.step("read", "Reading the reference bundle (pictures, prompts, PyTorch's outputs)"):
        bundle = read_reference(reference_dir)
        check_sam_reference(bundle, files[ENCODER].graph, files[DECODER].graph, reference_dir)

    with steps.step("run", f"Running the encoder and the decoder ({backend.name})"):
        ran = _run_graphs(files, backend, bundle)

    kinds = {**artifact.task.output_kinds, IMAGE_EMBEDDINGS: OutputKind.EMBEDDINGS}
    expected = {name: bundle.outputs[name] for name in DECODER_OUTPUTS}
    one = {name: value[:, :1] for name, value in expected.items()}
    plan = [
        (ENCODER_CHECK, [ENCODER], "the reference pictures", encoder_precision, ran.encoder, _embeddings(bundle)),
        (
            DECODER_CHECK,
            [DECODER],
            "PyTorch's embeddings and the reference prompts",
            decoder_precision,
            ran.decoder,
            expected,
        ),
        (ONE_PROMPT_CHECK, [DECODER], "PyTorch's embeddings and each picture's first prompt alone", decoder_precision,
         ran.one_prompt, one),
        (PAIR_CHECK, [ENCODER, DECODER], f"the encoder's embeddings ({backend.name}) and the reference prompts",
         pair_precision, ran.pair, expected),
    ]  # fmt: skip
    outputs: List[ValidatedOutput] = []
    comparisons: List[Comparison] = []
    with steps.step("compare", "Comparing with the PyTorch reference (Polygraphy + mask IoU)"):
        from .polygraphy_compare import polygraphy_statistics

        for label, roles, fed, precision, produced, reference in plan:
            choice = choices[precision]
            stats = polygraphy_statistics(produced, reference, backend.name)
            rows = []
            for name, ref in reference.items():
                result = compare_outputs(
                    f"{label}: {name}",
                    ref,
                    produced[name],
                    choice.budget,
                    measured=stats[name],
                    measured_by=f"polygraphy {polygraphy_version}",
                    kind=kinds.get(name),
                )
                rows.append(ValidatedOutput.of(result, checks=choice.budget.checks(result), comparison=label))
            outputs += rows
            comparisons.append(Comparison(label, roles, fed, choice, all(r.passed for r in rows)))

    encoder_file = files[ENCODER]
    report = ValidateReport(
        tool={"name": "msla-deploy", "version": __version__},
        passed=all(c.passed for c in comparisons),
        artifact=ArtifactInfo.of(
            {
                **artifact.describe(encoder_file.path),
                "precision": pair_precision,
                "precision_source": f"the encoder's ({encoder_precision}) and the decoder's ({decoder_precision})",
            },
            modified,
            weights_source=artifact.weights_source,
            weights_warning=artifact.weights_warning,
        ),
        reference=_reference_info(bundle, reference_dir),
        backend={"requested": backend.requested, "used": backend.name, **ran.info[ENCODER]},
        budget=choices[pair_precision],
        outputs=outputs,
        environment=environment(),
        graphs=[
            GraphRun(role, str(f.path), f.precision, f.precision_source, ran.info[role]) for role, f in files.items()
        ],
        comparisons=comparisons,
    )
    report.warnings = list(steps.warnings)
    with steps.step("report", "Writing the reports"):
        report.timings_s = {**steps.timings, "total": round(time.perf_counter() - started, 3)}
        write_reports(report, report_dir, str(options.junit) if options.junit else None)
    return report


def _rank(precision: str) -> int:
    return PRECISION_ORDER.index(precision) if precision in PRECISION_ORDER else len(PRECISION_ORDER)


def _refuse(options, artifact: Artifact) -> None:
    for key, fix in REFUSED_FLAGS.items():
        if options.budget_flags.get(key) is not None:
            raise BadInput(f"--{key} does not apply to SAM artifacts ({artifact.path})", fix)
    if options.localize:
        raise BadInput(
            "--localize does not support SAM artifacts yet",
            "validate without --localize (the report names the graph that drifts: encoder, decoder or pair)",
        )
    if artifact.kind != "directory" or artifact.manifest is None:
        raise BadInput(
            f"{artifact.path} is one graph of a SAM artifact; validate checks both graphs",
            f"pass the artifact directory {artifact.path.parent}",
        )


def _backend(requested: str, artifact: Artifact) -> Backend:
    if requested == "trt":  # an engine per graph (runtime.choose would ask for the one engine)
        return Backend(requested, "trt", strict=True)
    if runtime.is_triton_target(requested):
        raise BadInput(
            "validate does not run SAM artifacts through Triton yet", "validate the directory with --backend ort-cpu"
        )
    from .validate import BACKENDS

    return runtime.choose(requested, artifact, allowed=BACKENDS, command="validate")


def graph_engine(artifact: Artifact, role: str) -> Optional[Path]:
    """The engine `build` wrote for this graph: by its build record's graph, else by its name
    (encoder_fp16_trt10.3.engine); None if there is none; BadInput if there are several."""
    found = []
    for engine in artifact.engines:
        record = artifact.build_record(engine)
        recorded = record.graph if record is not None else None
        if recorded == role or (recorded is None and engine.name.startswith(f"{role}_")):
            found.append(engine)
    if len(found) > 1:
        raise BadInput(
            f"{artifact.path} holds {len(found)} engines of the {role} ({', '.join(e.name for e in found)})",
            "keep one engine per graph in the directory (the one built for this GPU and TensorRT)",
        )
    return found[0] if found else None


def _graph_file(artifact: Artifact, graph: GraphRecord, backend: Backend) -> GraphFile:
    directory = artifact.directory
    if not backend.is_tensorrt:
        path = directory / graph.file
        if not path.is_file():
            raise BadInput(
                f"{artifact.path}: the {graph.role} graph {graph.file} is missing", "re-export the directory"
            )
        return GraphFile(graph, path, graph.precision, f"manifest graphs ({graph.role})")
    engine = graph_engine(artifact, graph.role)
    if engine is None:
        raise BadInput(
            f"--backend trt: {artifact.path} holds no TensorRT engine of the {graph.role}",
            f"run `msla-deploy build {artifact.path}` on this device first",
        )
    record = artifact.build_record(engine)
    if record is not None and record.precision:
        return GraphFile(graph, engine, record.precision, f"build record of {engine.name}")
    return GraphFile(graph, engine, graph.precision, f"manifest graphs ({graph.role})")


# --- the reference bundle -------------------------------------------------------------------------


def _shape_fits(shape: Sequence[int], dims: Sequence, sizes: Dict[str, int]) -> bool:
    """`shape` (without the bundle's picture axis) against a graph tensor's dims: a named dimension
    takes any size within its profile's max (`sizes`), a number that size."""
    if len(shape) != len(dims):
        return False
    for size, dim in zip(shape, dims):
        if isinstance(dim, str):
            if dim in sizes and not 1 <= size <= sizes[dim]:
                return False
        elif dim > 0 and size != dim:
            return False
    return True


def check_sam_reference(bundle: ReferenceBundle, encoder: GraphRecord, decoder: GraphRecord, folder: Path) -> None:
    """The bundle holds a SAM export's arrays, one row per picture, of the two graphs' shapes."""
    wanted_inputs = (IMAGE, *DECODER_INPUTS[1:])
    wanted_outputs = (IMAGE_EMBEDDINGS, *DECODER_OUTPUTS)
    for names, arrays, file in ((wanted_inputs, bundle.inputs, "inputs"), (wanted_outputs, bundle.outputs, "outputs")):
        missing = [n for n in names if n not in arrays]
        if missing:
            raise BadInput(f"the reference {file} in {folder} have no {missing[0]!r}: not a SAM export's bundle", FIX)
    arrays = {**{n: bundle.inputs[n] for n in wanted_inputs}, **{n: bundle.outputs[n] for n in wanted_outputs}}
    counts = {name: a.shape[0] for name, a in arrays.items()}
    if len(set(counts.values())) != 1:
        raise BadInput(f"the reference arrays disagree on the number of pictures ({counts})", FIX)
    limits = {dim: p.max for dim, p in decoder.profile.items()}
    tensors = {t.name: t for t in (*encoder.inputs, *encoder.outputs)}
    # the decoder's tensors have their prompts axis inside each picture's rows: [N, B, ...]
    tensors.update({t.name: t for t in (*decoder.inputs[1:], *decoder.outputs)})
    ranges = "".join(f", {dim} <= {size}" for dim, size in limits.items())
    for name, array in arrays.items():
        dims = tensors[name].shape
        graph = ENCODER if name in (IMAGE, IMAGE_EMBEDDINGS) else DECODER
        if graph == ENCODER:
            dims = dims[1:]  # the graph's own batch of one picture
        if not _shape_fits(array.shape[1:], dims, limits):
            raise BadInput(
                f"reference {name!r} has shape {list(array.shape)}, the {graph} takes "
                f"[pictures, {', '.join(str(d) for d in dims)}]{ranges if graph == DECODER else ''}",
                FIX,
            )
    prompts = {arrays[n].shape[1] for n in (*DECODER_INPUTS[1:], *DECODER_OUTPUTS)}
    points = {arrays[n].shape[2] for n in (POINT_COORDS, POINT_LABELS)}
    if len(prompts) != 1 or len(points) != 1:
        raise BadInput(
            f"the reference prompts disagree on the prompts per picture ({sorted(prompts)}) or the points per prompt "
            f"({sorted(points)})",
            FIX,
        )


def _embeddings(bundle: ReferenceBundle) -> Dict[str, np.ndarray]:
    return {IMAGE_EMBEDDINGS: bundle.outputs[IMAGE_EMBEDDINGS]}


def _reference_info(bundle: ReferenceBundle, folder: Path) -> ReferenceInfo:
    info = bundle.info or {}
    pictures, prompts = bundle.inputs[POINT_COORDS].shape[:2]
    source = f"{info.get('source', 'unknown')} {info.get('precision', '')}".strip()
    source += f"; {prompts} prompt(s) per picture"
    return ReferenceInfo(str(folder), int(pictures), source, info)


# --- running the graphs ---------------------------------------------------------------------------


@dataclass
class GraphOutputs:
    encoder: Dict[str, np.ndarray]  # image_embeddings [N, 256, 64, 64]
    decoder: Dict[str, np.ndarray]  # masks [N, B, M, 256, 256], iou_predictions [N, B, M]
    one_prompt: Dict[str, np.ndarray]  # the same of each picture's first prompt alone: [N, 1, ...]
    pair: Dict[str, np.ndarray]  # the decoder on the encoder's embeddings
    info: Dict[str, Dict]  # role -> the session's description


def open_graph(file: GraphFile, backend: Backend, threads: Optional[int] = None) -> Session:
    """A session for one graph: its ONNX on ONNX Runtime, or its engine on TensorRT."""
    if file.is_engine:
        from ..runtime.tensorrt import TensorRTSession

        return TensorRTSession(file.path, is_engine=True)
    return runtime.open_onnx(file.path, backend, threads=threads, label=str(file.path), precision=file.precision)


def decode(session: Session, embeddings: np.ndarray, prompts: Dict[str, np.ndarray], prompt=slice(None)):
    """The decoder on each picture's embeddings [N, 256, 64, 64] with its prompts [N, B, ...]: one
    call per picture (B prompts), outputs stacked by picture."""
    runs = []
    for i in range(len(embeddings)):
        feed = {IMAGE_EMBEDDINGS: np.ascontiguousarray(embeddings[i : i + 1])}
        feed.update({name: np.ascontiguousarray(prompts[name][i, prompt]) for name in DECODER_INPUTS[1:]})
        runs.append(session.run(feed))
    return {name: np.stack([np.asarray(run[name]) for run in runs]) for name in DECODER_OUTPUTS}


def _run_graphs(files: Dict[str, GraphFile], backend: Backend, bundle: ReferenceBundle) -> GraphOutputs:
    images = bundle.inputs[IMAGE].astype(np.float32, copy=False)
    prompts = {name: bundle.inputs[name].astype(np.float32, copy=False) for name in DECODER_INPUTS[1:]}
    info: Dict[str, Dict] = {}
    with open_graph(files[ENCODER], backend) as encoder:
        embeddings = np.concatenate(
            [np.asarray(encoder.run({IMAGE: images[i : i + 1]})[IMAGE_EMBEDDINGS]) for i in range(len(images))]
        )
        info[ENCODER] = encoder.describe()
    reference = bundle.outputs[IMAGE_EMBEDDINGS].astype(np.float32, copy=False)
    with open_graph(files[DECODER], backend) as decoder:
        on_reference = decode(decoder, reference, prompts)
        one_prompt = decode(decoder, reference, prompts, slice(0, 1))
        pair = decode(decoder, embeddings, prompts)
        info[DECODER] = decoder.describe()
    return GraphOutputs({IMAGE_EMBEDDINGS: embeddings}, on_reference, one_prompt, pair, info)


def graph_files(artifact: Artifact, backend: Backend) -> Tuple[GraphFile, GraphFile]:
    """The encoder's and the decoder's files for `backend` (bench uses them too)."""
    return tuple(_graph_file(artifact, artifact.manifest.graph(role), backend) for role in (ENCODER, DECODER))
