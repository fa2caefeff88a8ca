"""`validate`: run an artifact on its reference inputs, measure, judge against a budget, report.

    artifact + reference -> runner (ORT provider / TensorRT) -> Polygraphy statistics + ours
    -> budget verdict -> [localize] -> report.json, report.md, junit.xml, pictures

torch-free unless `localize` is asked for (it rebuilds the PyTorch model). Every input problem
is raised before the first file is written; the reports are written only once everything ran.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import onnx

from .. import __version__, runtime
from ..artifact.files import environment, sha256_file
from ..artifact.graph import TensorSpec, graph_inputs, graph_outputs, load_onnx
from ..artifact.names import MANIFEST_NAME, ONNX_NAME, ONNX_SUFFIX, REFERENCE_DIR, TOPK_SCORES_NAME
from ..artifact.outputs import guard_for
from ..artifact.reference import ReferenceBundle, read_reference
from ..artifact.resolve import Artifact, resolve
from ..errors import BadInput, CheckFailed
from ..progress import Steps
from ..runtime.polygraphy_env import import_polygraphy
from ..runtime.session import Backend
from ..runtime.tensorrt import engine_hint
from ..tasks import SAM
from .config import SAM_SETTINGS, BudgetChoice, resolve_budget
from .metrics import OutputParity, compare_outputs, is_segmentation_logits
from .pictures import class_names, write_pictures
from .records import ArtifactInfo, Localization, ReferenceInfo, ValidatedOutput, ValidateReport
from .reports import write_reports

BACKENDS = tuple(b for b in runtime.BACKENDS if b != "torch")  # the reference IS torch


@dataclass
class ValidateOptions:
    artifact: Path
    reference: Optional[Path] = None
    backend: str = "auto"
    budget_flags: Dict[str, Optional[str]] = field(default_factory=dict)  # setting -> text, None: not given
    report_dir: Optional[Path] = None
    junit: Optional[Path] = None
    localize: bool = False
    allow_modified: bool = False  # validate files that no longer match the export's sha256 (warned)
    cwd: Optional[Path] = None  # where pyproject.toml is looked for (default: the current directory)


def _graph_io(specs: List[TensorSpec]) -> Dict[str, Dict]:
    """name -> {dims (None where symbolic), dtype} of graph inputs or outputs."""
    return {
        s.name: {"dims": [d if isinstance(d, int) and d > 0 else None for d in s.shape], "dtype": s.numpy_dtype}
        for s in specs
    }


def _fits(shape, dims, skip_batch: bool) -> bool:
    if len(shape) != len(dims):
        return False
    pairs = list(zip(shape, dims))[1:] if skip_batch else zip(shape, dims)
    return all(d is None or s == d for s, d in pairs)


def _model_batch(artifact: Artifact, graph_inputs: Optional[Dict]) -> Optional[int]:
    if graph_inputs:
        first = next(iter(graph_inputs.values()))["dims"]
        if first and first[0]:
            return first[0]
    return (
        artifact.manifest.options.batch
        if artifact.manifest is not None and artifact.manifest.options is not None
        else None
    )


def check_reference(
    bundle: ReferenceBundle,
    artifact: Artifact,
    reference_dir: Path,
    graph_inputs: Optional[Dict],
    graph_outputs: Optional[Dict],
) -> List[Dict[str, np.ndarray]]:
    """The reference inputs as feed dicts of one model batch each; BadInput where they cannot fit."""
    fix = "pass --reference with the reference/ folder of the export this artifact came from"
    if not bundle.inputs or not bundle.outputs:
        raise BadInput(f"the reference bundle in {reference_dir} has no inputs or no outputs", fix)
    counts = {name: a.shape[0] if a.ndim else 0 for name, a in bundle.inputs.items()}
    if len(set(counts.values())) != 1:
        raise BadInput(f"the reference inputs disagree on the number of samples ({counts})", fix)
    samples = next(iter(counts.values()))
    if graph_inputs is not None:
        if set(graph_inputs) != set(bundle.inputs):
            raise BadInput(
                f"the reference has inputs {sorted(bundle.inputs)}, the model takes {sorted(graph_inputs)}", fix
            )
        for name, info in graph_inputs.items():
            shape = bundle.inputs[name].shape
            if not _fits(shape, info["dims"], skip_batch=True):
                raise BadInput(f"reference input {name!r} has shape {list(shape)}, the model takes {info['dims']}", fix)
    if graph_outputs is not None:
        for name, ref in bundle.outputs.items():
            if name not in graph_outputs:
                raise BadInput(
                    f"reference output {name!r} is not an output of the model (it has {sorted(graph_outputs)})", fix
                )
            if not _fits(ref.shape, graph_outputs[name]["dims"], skip_batch=True):
                raise BadInput(
                    f"reference output {name!r} has shape {list(ref.shape)}, the model gives "
                    f"{graph_outputs[name]['dims']}",
                    fix,
                )
    for name, ref in bundle.outputs.items():
        if ref.ndim == 0 or ref.shape[0] != samples:
            raise BadInput(
                f"reference output {name!r} has {ref.shape[0] if ref.ndim else 0} samples, the inputs have {samples}",
                fix,
            )
    batch = _model_batch(artifact, graph_inputs) or samples
    if samples % batch and artifact.max_batch is None:  # a dynamic batch runs a short last group
        raise BadInput(f"the reference has {samples} samples, not a multiple of the model's batch {batch}", fix)
    dtypes = {name: info["dtype"] for name, info in (graph_inputs or {}).items()}
    return [
        {
            name: np.ascontiguousarray(a[i : i + batch].astype(dtypes.get(name, a.dtype), copy=False))
            for name, a in bundle.inputs.items()
        }
        for i in range(0, samples, batch)
    ]


BATCH_ONE_SUFFIX = " (batch 1)"  # the name of an output's row when a dynamic batch is also run on one picture


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "output"


def _pictures(
    results: List[OutputParity],
    reference: Dict[str, np.ndarray],
    candidate: Dict[str, np.ndarray],
    inputs: Dict[str, np.ndarray],
    budget,
    folder: Path,
) -> Dict[str, Dict]:
    drawable = [r.name for r in results if is_segmentation_logits(reference[r.name].shape)]
    picture = next((a for a in inputs.values() if a.ndim == 4), None)
    return {
        name: write_pictures(
            folder,
            "" if len(drawable) == 1 else f"{_safe(name)}-",
            name,
            reference[name],
            candidate[name],
            picture,
            budget,
        )
        for name in drawable
    }


@dataclass
class Target:
    """What this validation runs: the artifact, the file that runs, on which backend, against which reference."""

    artifact: Artifact
    backend: Backend
    model_file: Path
    precision: str
    precision_source: str
    reference_dir: Path

    @property
    def is_engine(self) -> bool:
        return self.model_file.suffix != ONNX_SUFFIX


def run_validate(options: ValidateOptions, steps: Optional[Steps] = None) -> ValidateReport:
    """Validate, write report.json, report.md, junit.xml and the pictures; the report (its `files`: where)."""
    steps = steps or Steps()
    started = time.perf_counter()
    polygraphy = import_polygraphy()  # a missing runtime is reported before any work
    artifact = resolve(options.artifact)
    if artifact.task.name == SAM:  # two graphs, one report: validate_sam.py
        from .validate_sam import run_validate_sam

        return run_validate_sam(options, artifact, steps, started, polygraphy.__version__)
    sam_flags = [key for key in SAM_SETTINGS if options.budget_flags.get(key) is not None]
    if sam_flags:
        raise BadInput(
            f"--{sam_flags[0]} applies to SAM artifacts; {artifact.path} is a {artifact.task.name} model",
            f"drop --{sam_flags[0]}",
        )
    reference_dir = artifact.reference_dir(options.reference)
    backend = runtime.choose(options.backend, artifact, allowed=BACKENDS, command="validate")
    model_file = artifact.model_file(tensorrt=backend.is_tensorrt)
    target = Target(artifact, backend, model_file, *artifact.precision_of(model_file), reference_dir)
    # an .engine given by itself cannot fall back to --backend ort-cpu: say what works instead
    engine_alone = artifact.kind == "engine"
    with engine_hint(engine_alone, "validate", artifact.onnx_path):
        runtime.preflight(backend)
    if options.budget_flags.get("max-miou-drop") is not None and not artifact.task.label_maps:
        raise BadInput(
            f"--max-miou-drop applies to label maps; {artifact.path} is a {artifact.task.name} model",
            "drop it (a classifier is judged by --min-top1-agreement)",
        )
    precision, why = artifact.budget_precision(target.precision)
    choice = resolve_budget(precision, options.budget_flags, Path(options.cwd or Path.cwd()), artifact.task.name)
    if why:
        choice.notes.append(f"default budget of {precision}: {why}")
    localize_source = _localize_preflight(target) if options.localize else None
    modified = modified_after_export(target)
    if modified and not options.allow_modified:  # strict by default: a CI gate must not pass a tampered artifact
        raise CheckFailed(
            f"artifact modified after export: {', '.join(modified[:4])}{' ...' if len(modified) > 4 else ''} "
            f"(checked against the sha256 in {artifact.directory / MANIFEST_NAME})",
            "re-export; or pass --allow-modified if the change is intended (the files are then judged as they are now)",
        )
    for rel in modified:  # allowed: a warning, and the file is judged as it is now
        steps.warn(
            f"artifact modified after export: {rel} does not match its sha256 in {artifact.directory / MANIFEST_NAME}"
        )
    report_dir = Path(options.report_dir) if options.report_dir else artifact.default_report_dir()
    # reports never land on the artifact's files nor on what is read, nor through a link out of it
    # (a `validation` link shipped inside an artifact): the default folder is checked too
    guard = guard_for(artifact, inputs=[model_file, reference_dir])
    guard.check(report_dir, "--report-dir" if options.report_dir else "the report folder")
    if options.junit:
        guard.check(Path(options.junit), "--junit")
    if report_dir.exists() and not report_dir.is_dir():
        raise BadInput(f"--report-dir {report_dir} is a file", "pass a directory (it is created if missing)")

    with steps.step("read", "Reading the reference bundle"):
        bundle = read_reference(reference_dir)
        graph = artifact.onnx_model if not target.is_engine else None
        inputs = _graph_io(graph_inputs(graph)) if graph is not None else None
        outputs = _graph_io(graph_outputs(graph)) if graph is not None else None
        batches = check_reference(bundle, artifact, reference_dir, inputs, outputs)

    with steps.step("run", f"Running the artifact ({backend.name})"), engine_hint(
        engine_alone, "validate", artifact.onnx_path
    ):
        with runtime.open(artifact, backend, command="validate") as session:
            ran = [session.run(feed) for feed in batches]
            # a dynamic batch is judged at both ends of its range: the first picture alone too
            # (an engine may pick other kernels for batch 1 than for its profile's optimum)
            rows = len(next(iter(batches[0].values())))
            alone = (
                session.run({name: a[:1] for name, a in batches[0].items()})
                if session.max_batch is not None and rows > 1
                else None
            )
            ran_on = session.describe()
    produced = {name: np.concatenate([np.asarray(r[name]) for r in ran], axis=0) for name in ran[0]}
    missing = [n for n in bundle.outputs if n not in produced]
    if missing:
        raise BadInput(
            f"the artifact has no output {missing[0]!r} (it has {sorted(produced)})",
            "pass --reference of the matching export",
        )

    with steps.step("compare", "Comparing with the PyTorch reference (Polygraphy + segmentation metrics)"):
        from .polygraphy_compare import polygraphy_statistics

        stats = polygraphy_statistics(produced, bundle.outputs, backend.name)
        measured_by = f"polygraphy {polygraphy.__version__}"
        results = []
        scores = bundle.outputs.get(TOPK_SCORES_NAME)  # a topk head's: they tell its indices' near-ties
        for name, ref in bundle.outputs.items():
            if ref.shape != produced[name].shape:
                raise BadInput(
                    f"output {name!r}: the reference has shape {list(ref.shape)}, the artifact gave "
                    f"{list(produced[name].shape)}",
                    "pass --reference of the matching export",
                )
            results.append(
                compare_outputs(
                    name,
                    ref,
                    produced[name],
                    choice.budget,
                    measured=stats[name],
                    measured_by=measured_by,
                    reference_scores=scores,
                )
            )
        for name, ref in bundle.outputs.items() if alone is not None else ():
            results.append(
                compare_outputs(
                    f"{name}{BATCH_ONE_SUFFIX}",
                    ref[:1],
                    np.asarray(alone[name]),
                    choice.budget,
                    reference_scores=None if scores is None else scores[:1],
                )
            )

    localization = None
    if options.localize:
        with steps.step("localize", "Localizing drift (ONNX probe tensors vs PyTorch module hooks)"):
            from .localize import localize

            def run_marked(onnx_bytes: bytes, feed: Dict[str, np.ndarray]):
                with runtime.open_onnx(
                    onnx_bytes,
                    backend,
                    label="the probe-marked copy of the ONNX",
                    precision=localize_source.precision,
                    fp16_flag=localize_source.fp16_flag,
                ) as marked:
                    return marked.run(feed), marked.describe()

            localization = localize(
                artifact.manifest, localize_source.model, run_marked, batches[0], choice.budget, backend.is_tensorrt
            )
            localization.notes += localize_source.notes

    report = _report(target, ran_on, choice, bundle, results, localization, modified)
    report.warnings = list(steps.warnings)
    with steps.step("report", "Writing the reports"):
        report.pictures = _pictures(
            [r for r in results if r.name in bundle.outputs],
            bundle.outputs,
            produced,
            bundle.inputs,
            choice.budget,
            report_dir,
        )
        report.timings_s = {**steps.timings, "total": round(time.perf_counter() - started, 3)}
        write_reports(report, report_dir, str(options.junit) if options.junit else None)
    return report


def modified_after_export(target: Target) -> List[str]:
    """Files of the export that no longer match the sha256 its manifest recorded ("artifacts"):
    the file validated and, when it is the export's own, the reference bundle. Files the
    manifest does not list (an engine, a bare ONNX) are not checked."""
    return modified_files(target.artifact, [target.model_file], target.reference_dir)


def modified_files(artifact: Artifact, model_files: List[Path], reference_dir: Path) -> List[str]:
    """modified_after_export for the files that run (a multi-graph artifact's: each graph's);
    an engine among them is built after the export and never recorded, so not checked."""
    if artifact.directory is None or artifact.manifest is None:
        return []
    recorded = artifact.manifest.artifacts
    if not recorded:  # no hashes: nothing proves the files are the export's
        return [f"(every file: {MANIFEST_NAME} records no 'artifacts' hashes)"]
    # Paths are compared as named, not resolved: a model.onnx or reference/ that is a symbolic
    # link to a copy elsewhere is still the export's file by its name, and what it points to is
    # what gets read, so that is what is hashed (a link must not be a way around the check).
    root = Path(os.path.abspath(artifact.directory))
    files = list(model_files)
    if Path(os.path.abspath(reference_dir)) == root / REFERENCE_DIR:
        files += sorted(p for p in reference_dir.iterdir() if p.is_file())
    modified = []
    for path in files:
        rel = Path(os.path.relpath(os.path.abspath(path), root)).as_posix()
        if rel == ".." or rel.startswith("../"):  # outside the directory by name (--reference elsewhere)
            continue
        entry = recorded.get(rel)
        if not isinstance(entry, dict) or not entry.get("sha256"):
            if path not in model_files or path.suffix == ONNX_SUFFIX:  # engines are built later, never recorded
                modified.append(f"{rel} (not recorded)")
        elif sha256_file(path) != entry["sha256"]:
            modified.append(rel)
    return modified


@dataclass
class LocalizeSource:
    """The ONNX whose probe tensors get marked, and how to build it when the backend is TensorRT."""

    model: onnx.ModelProto
    precision: str  # the ONNX's own: fp16 is built strongly typed
    fp16_flag: bool  # weakly typed fp16 engine: the FP16 builder flag
    notes: List[str] = field(default_factory=list)


def _localize_preflight(target: Target) -> LocalizeSource:
    """Everything --localize needs, checked before the artifact runs: torch, probes, an ONNX."""
    from ..runtime.torch_backend import require_torch

    artifact = target.artifact
    require_torch("--localize", "validate without --localize")
    if artifact.manifest is not None:  # refused before the artifact runs, not after
        from ..artifact.trust import check_model_code

        check_model_code(artifact.manifest, "--localize")
    if artifact.manifest is None or not artifact.manifest.probes:
        raise BadInput(
            "--localize needs the export's manifest.json with its 'probes' (module -> ONNX tensor)",
            "validate the export directory (or a .onnx inside it); re-export if its manifest predates probes",
        )
    if not target.is_engine:
        return LocalizeSource(artifact.onnx_model, precision=target.precision, fp16_flag=False)
    # an engine: rebuild from the ONNX its build record names, typed the way that build was
    record = artifact.build_record(target.model_file)
    root = artifact.directory or target.model_file.parent
    recorded = record.onnx_file if record is not None else None
    source = root / recorded if recorded and (root / recorded).is_file() else artifact.onnx_path
    if source is None:
        raise BadInput(
            "--localize needs the ONNX the engine was built from",
            f"put it beside the engine as {target.model_file.parent / ONNX_NAME}",
        )
    typing = record.typing if record is not None else None
    weak_fp16 = typing == "weak" and record.precision == "fp16"
    notes = (
        [
            "the engine was built weakly typed with the FP16 flag and fp32-pinned layers; the probe engine gets the "
            "FP16 flag but not the pins"
        ]
        if weak_fp16
        else []
    )
    return LocalizeSource(
        load_onnx(source), precision="fp16" if typing == "strong" else "fp32", fp16_flag=weak_fp16, notes=notes
    )


def _report(
    target: Target,
    ran_on: Dict,
    choice: BudgetChoice,
    bundle: ReferenceBundle,
    results: List[OutputParity],
    localization: Optional[Localization],
    modified: List[str],
) -> ValidateReport:
    artifact, backend = target.artifact, target.backend
    outputs = []
    for r in results:
        row = ValidatedOutput.of(r, checks=choice.budget.checks(r))
        names = class_names(r.shape[1], artifact.model_name or "") if r.class_iou else None
        for c in row.class_iou if names else ():
            c["name"] = names[c["class"]]
        outputs.append(row)
    info = bundle.info or {}
    samples = next(iter(bundle.inputs.values())).shape[0]
    images = info.get("images") or []
    source = f"{info.get('source', 'unknown')} {info.get('precision', '')}".strip()
    source += f"; {len(images)} real image(s) among them" if images else "; synthetic inputs only"
    return ValidateReport(
        tool={"name": "msla-deploy", "version": __version__},
        passed=all(r.passed for r in results),
        artifact=ArtifactInfo.of(
            artifact.describe(target.model_file),
            modified,
            weights_source=artifact.weights_source,
            weights_warning=artifact.weights_warning,
        ),
        reference=ReferenceInfo(str(target.reference_dir), int(samples), source, info),
        backend={"requested": backend.requested, "used": backend.name, **ran_on},
        budget=choice,
        outputs=outputs,
        localization=localization,
        environment=environment(),
    )
