"""`export`: model -> planned -> ONNX -> checked -> reference bundle -> parity.

Writes into a staged directory (see artifact/staging.py): model.onnx (fp32, the mixed-precision
fp16 graph or the int8 Q/DQ graph), model_fp32.onnx beside an fp16/int8 one, reference/,
parity.json, manifest.json. A parity failure still leaves a complete directory (exit 1, the
numbers are the evidence); any other failure leaves nothing.

run_export is the one sequence of steps every export runs (build, reference, export, check,
parity, manifest); what a precision adds to them is its recipe (PrecisionRecipe: fp16 adds the
mixed-precision graph and the PyTorch proxy's parity, int8 the calibration and the Q/DQ graph).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import onnx
import torch

from .. import __version__, runtime, zoo
from ..artifact.files import describe_files, environment, sha256_json, write_bytes_atomic
from ..artifact.manifest import Manifest, ModelRecord, PrecisionRecord, write_manifest
from ..artifact.names import (
    DYNAMIC_BATCH,
    FP32_ONNX_NAME,
    INPUT_NAME,
    META_BATCH,
    META_EXPORTER,
    META_FP32_NODES,
    META_HEAD,
    META_INPUT_NAMES,
    META_MAX_BATCH,
    META_MODEL,
    META_NORMALIZATION,
    META_NUM_CLASSES,
    META_OUTPUT_NAMES,
    META_PRECISION,
    META_RECIPE,
    META_RESOLUTION,
    META_TASK,
    META_VERSION,
    ONNX_NAME,
    OUTPUT_NAME,
    PARITY_NAME,
    PROBE_PREFIX,
    TOPK_SCORES_NAME,
)
from ..artifact.options import ExportOptions
from ..artifact.reference import IMAGENET_MEAN, IMAGENET_STD, ReferenceBundle, synthetic_images, write_reference
from ..artifact.staging import check_replaceable, staged_directory
from ..artifact.trust import model_file_sha256
from ..errors import BadInput, one_line_text
from ..inspect import inspect_onnx
from ..inspect.hazards import NORM_OPS
from ..limits import check_export_memory
from ..loading import load_model
from ..nn import plan_static
from ..nn.capture import capture
from ..nn.heads import head_output_names, head_outputs, with_head
from ..nn.precision import PrecisionPolicy, apply_policy, fp16_storage_proxy
from ..parity import compare_outputs, default_budget
from ..parity.records import ParityCheck, ParityRecord
from ..progress import Steps
from ..runtime.onnxruntime import CPU, import_onnxruntime
from ..tasks import DEFAULT_TASK, SAM, get_task
from . import int8 as int8_q
from .graph import GraphReport, constants_to_initializers, finalize
from .int8_stage import QuantizedExport, calibration_batch, int8_target_failure, load_int8_calibration, quantize_export
from .islands import island_nodes, name_unnamed_nodes
from .probes import ProbedModel, probe_candidates, probe_output_names, unmark_probe_outputs
from .torch_to_onnx import export_to_onnx


@dataclass
class ExportResult:
    directory: Path
    manifest: Manifest
    parity: ParityRecord

    @property
    def int8_target_failure(self) -> Optional[str]:
        return int8_target_failure(self.manifest.precision.extra.get("int8"))

    @property
    def passed(self) -> bool:
        """Parity within budget, no fp16 hazard error in the graphs, an int8 target met."""
        return (
            self.parity.passed
            and all(h["passed"] for h in self.manifest.hazards.values())
            and not self.int8_target_failure
        )

    def to_dict(self) -> Dict:
        return {
            "directory": str(self.directory),
            "passed": self.passed,
            "manifest": self.manifest.to_dict(),
            "parity": self.parity.to_dict(),
        }


def _single_output(output, model_name: str) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        raise BadInput(
            f"model {model_name!r} returns {type(output).__name__}, not one tensor",
            "wrap it so forward() returns the logits tensor",
        )
    return output


@dataclass
class ExportedGraph:
    proto: onnx.ModelProto
    exporter: str
    probes: Dict[str, str]  # module path -> tensor name
    fp32_nodes: List[str]


def _export_graph(
    module: torch.nn.Module, example: torch.Tensor, probe_names: Sequence[str], options: ExportOptions, prefix: str = ""
) -> ExportedGraph:
    """Export with probes (module outputs kept as named tensors) and find the fp32 island nodes."""
    wrapped_names = [prefix + name for name in probe_names]
    proto, used = export_to_onnx(
        with_head(ProbedModel(module, wrapped_names), options.head, options.resolution, options.upsample, options.task),
        example,
        opset=options.opset,
        exporter=options.exporter,
        input_name=INPUT_NAME,
        output_names=[*head_output_names(options.head, options.task), *probe_output_names(wrapped_names)],
        dynamic_batch=options.dynamic_batch,
    )
    tensors = unmark_probe_outputs(proto)
    # node names are final only once Constant nodes are initializers: record islands after that
    constants_to_initializers(proto)
    name_unnamed_nodes(proto)
    probes = {t[len(PROBE_PREFIX) + len(prefix) :]: t for t in tensors}
    cores = [t for name, t in probes.items() if name == "core" or name.endswith(".core")]
    # the attention islands, and the normalisations BatchNorm folding left (a classifier's LayerNorm):
    # what the guarded policy keeps in fp32, pinned for a weakly typed --fp16 build too
    norms = [n.name for n in proto.graph.node if n.op_type in NORM_OPS]
    return ExportedGraph(proto, used, probes, island_nodes(proto, cores) + norms)


def _write_graph(graph: ExportedGraph, path: Path, metadata: Dict[str, str], dynamic_batch: bool) -> GraphReport:
    metadata = {**metadata, META_EXPORTER: graph.exporter, META_FP32_NODES: ",".join(graph.fp32_nodes)}
    report = finalize(graph.proto, producer_version=__version__, metadata=metadata, dynamic_batch=dynamic_batch)
    write_bytes_atomic(path, graph.proto.SerializeToString())
    return report


def parity_check(
    label: str,
    artifact: str,
    runtime: Dict,
    reference: Dict[str, np.ndarray],
    candidate: Dict[str, np.ndarray],
    budget,
    kinds: Optional[Dict[str, str]] = None,
) -> ParityCheck:
    """Every reference output against the candidate's, judged by `budget`; `kinds` (output name ->
    tasks.OutputKind) where the shape does not say what an output is."""
    scores = reference.get(TOPK_SCORES_NAME)  # a topk head's: they tell its indices' near-ties
    kinds = kinds or {}
    results = [
        compare_outputs(name, ref, candidate[name], budget, reference_scores=scores, kind=kinds.get(name))
        for name, ref in reference.items()
    ]
    return ParityCheck.of(label, artifact, runtime, budget, results)


def _chunks(images, batch: int) -> list:
    """The reference samples in groups of the graph's batch (its largest, for a dynamic one)."""
    return [images[i : i + batch] for i in range(0, len(images), batch)]


def _run_onnx(path: Path, feed: np.ndarray, batch: int):
    """ONNX Runtime on the CPU (all outputs by name, over every group of `batch` samples), and
    what ran, in parity.json's words."""
    with runtime.open_onnx(path, CPU, label=str(path)) as session:
        runs = [session.run({INPUT_NAME: chunk}) for chunk in _chunks(feed, batch)]
        info = session.describe()
    outputs = {name: np.concatenate([run[name] for run in runs]) for name in runs[0]}
    return outputs, {"name": "onnxruntime", "version": info["version"], "providers": info["providers_active"]}


def _torch_logits(module: torch.nn.Module, images: torch.Tensor, batch: int) -> torch.Tensor:
    """The module's output over every group of `batch` samples (its attention is planned for that batch)."""
    with torch.no_grad():
        return torch.cat([module(chunk) for chunk in _chunks(images, batch)])


def _onnx_check(
    label: str, path: Path, images: np.ndarray, reference: Dict[str, np.ndarray], budget, batch: int
) -> ParityCheck:
    outputs, ran = _run_onnx(path, images, batch)
    return parity_check(label, path.name, ran, reference, outputs, budget)


def _head_outputs(logits: torch.Tensor, options: ExportOptions, upsample: str) -> Dict[str, np.ndarray]:
    """The head's outputs for these PyTorch logits, by output name: the reference (upsample
    "cubic": upstream's bicubic) or a PyTorch stand-in's (the export's own upsample mode)."""
    specs = get_task(options.task).outputs(options.head)
    computed = head_outputs(logits.detach().float(), specs, options.resolution, upsample)
    return {spec.name: tensor.numpy() for spec, tensor in zip(specs, computed)}


def scan_hazards(path: Path, precision: str) -> Dict:
    """The fp16 hazard scan `msla-deploy inspect` runs, as the manifest records it."""
    report = inspect_onnx(path, target=None, precision=precision)
    return {
        "precision": precision,
        "passed": report.passed,
        "errors": [f.to_dict() for f in report.errors],
        "warnings": [f.to_dict() for f in report.warnings],
    }


def _int8_checks(staging: Path, quantized, batches, images, reference, budget, batch: int) -> List[ParityCheck]:
    """int8 against PyTorch fp32 on the reference inputs, and against the fp32 graph on the
    calibration pictures (where the ranges came from: the labels that matter)."""
    outputs, ran = _run_onnx(staging / ONNX_NAME, images, batch)
    fp32_graph = onnx.load(str(staging / FP32_ONNX_NAME))
    # the logits (of a labels-only graph too: the tensor its head reads), and the head's other outputs
    names = [None] + [name for name in reference if name != OUTPUT_NAME]
    on_pictures = parity_check(
        "ONNX Runtime int8 on the calibration pictures (vs the fp32 graph)",
        ONNX_NAME,
        ran,
        {n or OUTPUT_NAME: int8_q.run_batches(fp32_graph, batches, n) for n in names},
        {n or OUTPUT_NAME: int8_q.run_batches(quantized.proto, batches, n) for n in names},
        budget,
    )
    return [parity_check("ONNX Runtime int8", ONNX_NAME, ran, reference, outputs, budget), on_pictures]


def _int8_budget(options: ExportOptions):
    budget = default_budget("int8", options.task)
    if options.min_argmax_agreement is not None:  # the sensitivity target is the budget too
        budget = dataclasses.replace(budget, min_argmax_agreement=options.min_argmax_agreement)
    return budget


@dataclass
class Reference:
    """The PyTorch fp32 side of the export: inputs, outputs, attention plans, probed modules."""

    images: np.ndarray  # the synthetic reference inputs: the task's reference samples, a multiple of the batch
    example: torch.Tensor  # the first batch of them, for PyTorch (what the graph is traced on)
    logits: np.ndarray
    outputs: Dict[str, np.ndarray]  # the head's outputs (upstream's post-processing), by output name
    plans: Dict
    probe_names: List[str]  # the modules whose outputs the graphs keep as named tensors


# --- one recipe per precision ----------------------------------------------------------------------
# (Not the hashed export recipe, recipe_sha256: a precision recipe adds its part to that one.)
@dataclass
class Graphs:
    """The graphs written into the staging directory, as the manifest describes them."""

    probes: Dict[str, str]  # module path -> tensor of model.onnx's export holding its output
    exporter: str  # the exporter that made model.onnx's export
    report: GraphReport  # model.onnx's checks
    onnx_files: Dict[str, str]  # precision -> file
    fp32_nodes: List[str]  # kept in fp32 by a weakly typed TensorRT build


class PrecisionRecipe:
    """What one precision adds to the steps every export runs (run_export): which graphs it
    exports and writes, which files it scans for hazards, which parity checks it adds before the
    fp32 graph's own, what the manifest records. The base is the fp32 export, which every
    precision contains: the fp32 graph (model.onnx here, model_fp32.onnx beside another
    precision's model.onnx) checked against PyTorch.

    One instance serves one export; what an earlier hook makes (the fp16 graph, the int8 one) it
    keeps for the later ones."""

    precision = "fp32"  # the manifest's precision
    fp32_file = ONNX_NAME  # where the fp32 graph is written
    hazard_scans = ((ONNX_NAME, "auto"),)  # (file, precision it is built in) for the fp16 hazard scan
    export_note = ""  # in the export step's title
    parity_note = ""  # in the parity step's title

    def __init__(self, options: ExportOptions, steps: Steps) -> None:
        self.options = options
        self.policy = self.torch_policy(options)

    @staticmethod
    def torch_policy(options: ExportOptions) -> PrecisionPolicy:
        """How the PyTorch side is exported (precision, attention, I/O dtype, upsampling)."""
        return PrecisionPolicy.from_options(options)

    def recipe(self) -> Dict:
        """Its part of the hashed export recipe (recipe_sha256)."""
        return {}

    def export(self, module: torch.nn.Module, reference: Reference) -> None:
        """Export the graphs beyond the fp32 one (in the export step)."""

    def write(self, staging: Path, fp32: ExportedGraph, fp32_report: GraphReport, metadata: Dict[str, str]) -> Graphs:
        """Write those graphs beside the fp32 one, just written (in the check step)."""
        return Graphs(fp32.probes, fp32.exporter, fp32_report, {"fp32": self.fp32_file}, fp32.fp32_nodes)

    def derive(self, staging: Path, graphs: Graphs, steps: Steps) -> Graphs:
        """Graphs made from the written ones, in steps of their own."""
        return graphs

    def feed(self, images: np.ndarray) -> np.ndarray:
        """model.onnx's input for these reference images."""
        return images

    def checks(self, staging: Path, reference: Reference) -> List[ParityCheck]:
        """Parity checks of its own graphs (the fp32 graph's check follows them): the first is
        the primary one, repeated at batch 1 for a dynamic batch."""
        return []

    @property
    def attention_precision(self) -> str:
        return "fp32"

    def extra(self) -> Dict:
        """The manifest's precision.extra."""
        return {}

    def extra_files(self) -> List[str]:
        """Files beyond the graphs, parity.json and the reference bundle."""
        return []


class Fp32Recipe(PrecisionRecipe):
    """model.onnx is the fp32 graph: nothing to add."""


class Fp16Recipe(PrecisionRecipe):
    """model.onnx is the mixed-precision fp16 graph (strongly typed builds), model_fp32.onnx the
    fp32 one (weakly typed --fp16 builds, with its fp32 node pins); parity of the fp16 graph and
    of the policy applied in PyTorch (the fp16 storage proxy)."""

    precision = "fp16"
    fp32_file = FP32_ONNX_NAME
    # the fp16 graph as it will be built (strongly typed), the fp32 graph as a weakly typed
    # --fp16 build with its recorded pins
    hazard_scans = ((ONNX_NAME, "auto"), (FP32_ONNX_NAME, "fp16"))
    export_note = " (fp32 and mixed-precision fp16)"
    parity_note = " and the fp16 PyTorch proxy"

    def __init__(self, options: ExportOptions, steps: Steps) -> None:
        super().__init__(options, steps)
        self.deployable: Optional[torch.nn.Module] = None  # the policy applied, until the proxy's check
        self.graph: Optional[ExportedGraph] = None

    def export(self, module: torch.nn.Module, reference: Reference) -> None:
        self.deployable = apply_policy(module, self.policy)  # kept for the PyTorch proxy's parity
        example = reference.example.to(self.policy.io_torch_dtype)
        self.graph = _export_graph(self.deployable, example, reference.probe_names, self.options, prefix="model.")

    def write(self, staging: Path, fp32: ExportedGraph, fp32_report: GraphReport, metadata: Dict[str, str]) -> Graphs:
        fp16_metadata = {**metadata, META_PRECISION: "fp16"}
        report = _write_graph(self.graph, staging / ONNX_NAME, fp16_metadata, self.options.dynamic_batch)
        graphs = super().write(staging, fp32, fp32_report, metadata)
        # the fp32 nodes stay the fp32 graph's: the pins of its weakly typed build
        return dataclasses.replace(
            graphs,
            probes=self.graph.probes,
            exporter=self.graph.exporter,
            report=report,
            onnx_files={**graphs.onnx_files, "fp16": ONNX_NAME},
        )

    def feed(self, images: np.ndarray) -> np.ndarray:
        return images.astype(np.float16) if self.policy.io_dtype == "fp16" else images

    def checks(self, staging: Path, reference: Reference) -> List[ParityCheck]:
        fp16_outputs, ran = _run_onnx(staging / ONNX_NAME, self.feed(reference.images), self.options.batch)
        with torch.no_grad(), fp16_storage_proxy(self.deployable) as proxy:
            logits = _torch_logits(proxy, torch.from_numpy(reference.images), self.options.batch)
            proxy_out = _head_outputs(logits, self.options, self.policy.upsample)
        self.deployable = None
        proxy_ran = {"name": "torch", "version": torch.__version__, "mode": "fp16 storage, fp32 accumulation"}
        budget = default_budget("fp16", self.options.task)
        return [
            parity_check("ONNX Runtime fp16", ONNX_NAME, ran, reference.outputs, fp16_outputs, budget),
            parity_check(
                "PyTorch fp16 proxy", "(policy applied in PyTorch)", proxy_ran, reference.outputs, proxy_out, budget
            ),
        ]

    @property
    def attention_precision(self) -> str:
        return self.policy.attention if self.policy.guards else "fp16-naive"


class Int8Recipe(PrecisionRecipe):
    """model.onnx is the int8 Q/DQ graph quantized from model_fp32.onnx on --calib-images;
    parity against PyTorch and against the fp32 graph on those pictures."""

    precision = "int8"
    fp32_file = FP32_ONNX_NAME
    hazard_scans = ((ONNX_NAME, "int8"), (FP32_ONNX_NAME, "fp32"))

    def __init__(self, options: ExportOptions, steps: Steps) -> None:
        super().__init__(options, steps)
        self.quantized: Optional[QuantizedExport] = None  # once derived
        self.calib = load_int8_calibration(options, steps)  # bad pictures never cost a model build

    @staticmethod
    def torch_policy(options: ExportOptions) -> PrecisionPolicy:
        # int8 quantizes the fp32 export: the PyTorch side exports fp32
        return PrecisionPolicy.from_options(dataclasses.replace(options, precision="fp32"))

    def recipe(self) -> Dict:
        options = self.options
        return {
            "int8": {
                "calibration": [str(f) for f in self.calib.files],
                "method": options.calib_method,
                "attention": options.int8_attention,
                "min_argmax_agreement": options.min_argmax_agreement,
            }
        }

    def derive(self, staging: Path, graphs: Graphs, steps: Steps) -> Graphs:
        """The Q/DQ graph, from the fp32 one just written, as model.onnx."""
        self.quantized = quantize_export(self.options, self.calib, staging, steps)
        proto = self.quantized.graph.proto
        metadata = {p.key: p.value for p in proto.metadata_props}
        report = finalize(
            proto, producer_version=__version__, metadata=metadata, dynamic_batch=self.options.dynamic_batch
        )
        write_bytes_atomic(staging / ONNX_NAME, proto.SerializeToString())
        # probes and exporter stay the fp32 graph's; fp32 nodes: the island and the labels head
        return dataclasses.replace(
            graphs,
            report=report,
            onnx_files={**graphs.onnx_files, "int8": ONNX_NAME},
            fp32_nodes=self.quantized.graph.fp32_nodes,
        )

    def checks(self, staging: Path, reference: Reference) -> List[ParityCheck]:
        batches = self.calib.batches(calibration_batch(self.options))
        budget = _int8_budget(self.options)
        return _int8_checks(
            staging, self.quantized.graph, batches, reference.images, reference.outputs, budget, self.options.batch
        )

    def extra(self) -> Dict:
        return {"int8": self.quantized.record}

    def extra_files(self) -> List[str]:
        return self.quantized.files


RECIPES = {"fp32": Fp32Recipe, "fp16": Fp16Recipe, "int8": Int8Recipe}


# --- the steps every export runs ---------------------------------------------------------------------
def run_export(options: ExportOptions, steps: Optional[Steps] = None) -> ExportResult:
    """Build the model, plan and compute the PyTorch reference, export and check the graphs (what
    the precision's recipe adds included), compare them with PyTorch, write the manifest."""
    steps = steps or Steps()
    options.check()
    options = zoo.with_model_defaults(options)  # the zoo model's task and resolution, the head checked
    if options.int8_policy is not None and options.task != SAM:
        raise BadInput("--int8-policy applies to SAM's encoder (efficientvit-sam-*)", "drop --int8-policy")
    if options.task == SAM:  # two graphs: its own sequence of the same steps
        from .sam_pipeline import run_sam_export

        return run_sam_export(options, steps)
    target = _preflight(options, steps)
    started = time.time()
    recipe = RECIPES[options.precision](options, steps)
    with staged_directory(target, options.overwrite, steps.warn) as staging:
        loaded = _build_model(options, steps)
        reference = _plan_and_reference(loaded, options, steps)
        recipe_sha, metadata = _recipe_and_metadata(options, loaded, reference, recipe)
        graphs = _export_graphs(options, loaded, reference, recipe, metadata, staging, steps)
        # the fp16 hazard scan `msla-deploy inspect` runs, of each graph as TensorRT will build it
        hazards = {file: scan_hazards(staging / file, read_as) for file, read_as in recipe.hazard_scans}
        with steps.step("parity", "Comparing ONNX Runtime" + recipe.parity_note + " with PyTorch fp32"):
            reference_files = write_reference(staging, _reference_bundle(reference, options))
            checks = _checks(options, reference, recipe, staging)
            parity = _write_parity(staging, checks)
        manifest = _manifest(options, started, recipe_sha, loaded, reference, recipe, graphs, hazards, parity, steps)
        graph_files = [ONNX_NAME, *(f for f in graphs.onnx_files.values() if f != ONNX_NAME)]
        files = [*graph_files, PARITY_NAME, *reference_files, *recipe.extra_files()]
        manifest.artifacts = describe_files(staging, files)
        write_manifest(staging, manifest)
    return ExportResult(directory=target, manifest=manifest, parity=parity)


def _preflight(options: ExportOptions, steps: Steps) -> Path:
    """What fails in a second fails before the minutes of work; returns the output directory."""
    import_onnxruntime()  # fail before the expensive steps, not after them
    target = options.output_dir()
    check_replaceable(target, options.overwrite)
    height, width = options.resolution
    flag = "--max-batch" if options.dynamic_batch else "--batch"
    check_export_memory(options.batch, height, width, steps.warn, flag=flag)
    return target


def _build_model(options: ExportOptions, steps: Steps):
    with steps.step("build", "Building model"):
        loaded = load_model(options)
    for record in loaded.swapped:
        if not record["swapped"]:
            steps.warn(
                f"LiteMLA look-alike {record['path'] or '<root>'} ({record['source']}) left as is: {record['problem']}"
            )
    if options.stress_weights and not loaded.weights.get("stress"):
        steps.warn("--stress-weights changed nothing: the model has no LiteMLA")
    return loaded


def _plan_and_reference(loaded, options: ExportOptions, steps: Steps) -> Reference:
    height, width = options.resolution
    task = get_task(options.task)
    samples = -(-max(task.reference_samples, options.batch) // options.batch) * options.batch
    with steps.step("reference", "Planning attention and computing the PyTorch reference"):
        images = synthetic_images(samples, height, width, options.seed, varied=task.varied_reference)
        example = torch.from_numpy(images[: options.batch])
        try:
            with capture(loaded.module, probe_candidates(loaded.module)) as captured:
                output, plans = plan_static(loaded.module, example, options.dynamic_batch)
        except Exception as exc:  # a user's forward may raise anything: its error, not ours (exit 2)
            if loaded.source != "factory" and not isinstance(exc, RuntimeError):
                raise
            from ..user_model import describe_error

            detail = describe_error(exc) if loaded.source == "factory" else one_line_text(exc)
            raise BadInput(
                f"model {loaded.name!r} failed on a {options.batch}x3x{height}x{width} input: {detail}",
                "check --res and --batch against what the model accepts"
                + ("; fix its forward()" if loaded.source == "factory" else ""),
            ) from None
        output = _single_output(output, loaded.name)
        probe_names = [name for name, tensor in captured if tensor is not output]
        del captured
        if samples > options.batch:  # the other groups of reference samples, with the attention planned
            rest = _torch_logits(loaded.module, torch.from_numpy(images[options.batch :]), options.batch)
            output = torch.cat([output.detach(), rest])
        logits = output.detach().numpy()
        # upstream's own post-processing of the fp32 logits: the labels head's reference
        outputs = _head_outputs(output, options, "cubic")
    return Reference(images, example, logits, outputs, plans, probe_names)


def _recipe_and_metadata(options: ExportOptions, loaded, reference: Reference, recipe: PrecisionRecipe):
    """The export recipe's hash (what made the graph) and the metadata every graph carries."""
    height, width = options.resolution
    hashed = {
        "tool": __version__,
        "torch": torch.__version__,
        "model": loaded.name,
        "weights": loaded.weights["state_dict_sha256"],
        "resolution": [height, width],
        "batch": options.batch,
        **({"dynamic_batch": True} if options.dynamic_batch else {}),  # static recipes hash as before
        "opset": options.opset,
        "exporter": options.exporter,
        "policy": recipe.policy.to_dict(),
        "head": options.head,
        **({"task": options.task} if options.task != DEFAULT_TASK else {}),  # segmentation recipes hash as before
        **recipe.recipe(),
    }
    recipe_sha = sha256_json(hashed)
    logits = reference.logits
    metadata = {
        META_VERSION: __version__,
        META_MODEL: loaded.name,
        META_RESOLUTION: f"{height}x{width}",
        META_BATCH: DYNAMIC_BATCH if options.dynamic_batch else str(options.batch),
        **({META_MAX_BATCH: str(options.batch)} if options.dynamic_batch else {}),
        META_INPUT_NAMES: INPUT_NAME,
        META_OUTPUT_NAMES: ",".join(head_output_names(options.head, options.task)),
        META_HEAD: options.head,
        META_NUM_CLASSES: str(get_task(options.task).num_classes(logits.shape) or ""),
        META_TASK: options.task,
        META_NORMALIZATION: f"rgb/255, mean={list(IMAGENET_MEAN)}, std={list(IMAGENET_STD)}",
        META_RECIPE: recipe_sha,
    }
    return recipe_sha, metadata


def _export_graphs(
    options: ExportOptions,
    loaded,
    reference: Reference,
    recipe: PrecisionRecipe,
    metadata: Dict[str, str],
    staging: Path,
    steps: Steps,
) -> Graphs:
    """torch -> ONNX (the fp32 graph and the recipe's), each checked and written; then what the
    recipe derives from them."""
    with steps.step("export", "Exporting to ONNX" + recipe.export_note):
        fp32_module = apply_policy(loaded.module, PrecisionPolicy(upsample=recipe.policy.upsample))
        fp32_graph = _export_graph(fp32_module, reference.example, reference.probe_names, options)
        recipe.export(loaded.module, reference)
    shapes = "static shapes" + (" but the batch" if options.dynamic_batch else "")
    with steps.step("check", f"Checking the graph ({shapes}, onnx.checker)"):
        fp32_metadata = {**metadata, META_PRECISION: "fp32"}
        fp32_report = _write_graph(fp32_graph, staging / recipe.fp32_file, fp32_metadata, options.dynamic_batch)
        graphs = recipe.write(staging, fp32_graph, fp32_report, metadata)
    return recipe.derive(staging, graphs, steps)


def _reference_bundle(reference: Reference, options: ExportOptions) -> ReferenceBundle:
    return ReferenceBundle(
        inputs={INPUT_NAME: reference.images},
        outputs=reference.outputs,
        info={
            "source": "pytorch",
            "precision": "fp32",
            "torch": torch.__version__,
            "inputs": (
                "synthetic varied RGB pictures (smooth random colour fields under noise), preprocessed like upstream"
                if get_task(options.task).varied_reference
                else "synthetic uniform-noise RGB images, preprocessed like upstream"
            ),
            "normalization": {"scale": 1 / 255, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "seed": options.seed,
            "input_names": [INPUT_NAME],
            "output_names": list(reference.outputs),
        },
    )


def _checks(options: ExportOptions, reference: Reference, recipe: PrecisionRecipe, staging: Path) -> List[ParityCheck]:
    """The recipe's parity checks, the fp32 graph's, and for a dynamic batch the primary check
    again at batch 1 (the other end of the graph's batch range)."""
    images, outputs = reference.images, reference.outputs
    checks = recipe.checks(staging, reference)
    # bilinear resize is an approximation of upstream's cubic one: judged like fp16
    fp32_budget = default_budget("fp32" if recipe.policy.upsample == "cubic" else "fp16", options.task)
    checks.append(
        _onnx_check("ONNX Runtime fp32", staging / recipe.fp32_file, images, outputs, fp32_budget, options.batch)
    )
    if options.dynamic_batch:
        checks.append(_batch_one_check(staging, checks[0], outputs, recipe.feed(images[:1]), options.batch))
    return checks


def _batch_one_check(
    staging: Path, primary: ParityCheck, reference: Dict[str, np.ndarray], feed: np.ndarray, max_batch: int
) -> ParityCheck:
    """The primary check of a dynamic-batch model.onnx repeated on one picture."""
    first = {name: value[:1] for name, value in reference.items()}
    outputs, ran = _run_onnx(staging / ONNX_NAME, feed, 1)
    label = f"{primary.label}, batch 1 of 1..{max_batch}"
    return parity_check(label, ONNX_NAME, ran, first, outputs, primary.budget)


def _manifest(
    options: ExportOptions,
    started: float,
    recipe_sha: str,
    loaded,
    reference: Reference,
    recipe: PrecisionRecipe,
    graphs: Graphs,
    hazards: Dict,
    parity: ParityRecord,
    steps: Steps,
) -> Manifest:
    """manifest.json but for its artifacts (described once every file is written)."""
    return Manifest(
        created_unix=round(started, 3),
        tool={"name": "msla-deploy", "version": __version__},
        recipe_sha256=recipe_sha,
        model=ModelRecord(
            loaded.name,
            loaded.source,
            options.model,
            loaded.num_classes,
            sum(p.numel() for p in loaded.module.parameters()),
            # checked before the file is imported again (trust.py)
            file_sha256=model_file_sha256(options.model),
            task=options.task,
        ),
        weights=loaded.weights,
        options=options,
        precision=PrecisionRecord(
            precision=recipe.precision,
            attention_precision=recipe.attention_precision,
            io_dtype=recipe.policy.io_dtype,
            upsample=recipe.policy.upsample,
            fp16_guards=recipe.policy.guards,
            onnx_files=graphs.onnx_files,
            # nodes of the fp32 graph to keep in fp32 when TensorRT builds it with the FP16 flag
            fp32_nodes=graphs.fp32_nodes,
            extra=recipe.extra(),
        ),
        exporter={"requested": options.exporter, "used": graphs.exporter, "opset": graphs.report.opset},
        swapped_modules=loaded.swapped,
        attention_plans=[
            {
                "module": name,
                "batch": p.batch,
                "height": p.height,
                "width": p.width,
                "tokens": p.tokens,
                "branch": p.branch,
            }
            for name, p in reference.plans.items()
        ],
        onnx=graphs.report.to_dict(),
        # module path -> tensor of model.onnx holding its output, for drift localisation
        probes=graphs.probes,
        hazards=hazards,
        parity={"passed": parity.passed, "file": PARITY_NAME},
        environment=environment(),
        timings_s=steps.timings,
        warnings=steps.warnings,
    )


def _write_parity(staging: Path, checks: List[ParityCheck]) -> ParityRecord:
    """parity.json: every check, and the primary one's results (the first of `checks`) on top."""
    parity = ParityRecord.of(checks)
    parity.write(staging / PARITY_NAME)
    return parity
