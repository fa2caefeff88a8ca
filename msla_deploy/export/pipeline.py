"""`export`: model -> planned -> ONNX -> checked -> reference bundle -> parity.

Writes into a staged directory (see artifact/staging.py): model.onnx (fp32, the mixed-precision
fp16 graph or the int8 Q/DQ graph), model_fp32.onnx beside an fp16/int8 one, reference/,
parity.json, manifest.json. A parity failure still leaves a complete directory (exit 1, the
numbers are the evidence); any other failure leaves nothing.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import onnx
import torch

from .. import __version__, runtime, zoo
from ..artifact.files import describe_files, environment, sha256_json, write_bytes_atomic, write_json_atomic
from ..artifact.manifest import Manifest, ModelRecord, PrecisionRecord, write_manifest
from ..artifact.names import (
    DYNAMIC_BATCH,
    FP32_ONNX_NAME,
    INPUT_NAME,
    INT8_SENSITIVITY_NAME,
    INT8_SENSITIVITY_PLOT,
    LABELS_NAME,
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
    META_VERSION,
    ONNX_NAME,
    OUTPUT_NAME,
    PARITY_NAME,
    PROBE_PREFIX,
)
from ..artifact.options import ExportOptions, is_factory_spec
from ..artifact.reference import IMAGENET_MEAN, IMAGENET_STD, ReferenceBundle, synthetic_images, write_reference
from ..artifact.staging import check_replaceable, staged_directory
from ..artifact.trust import model_file_sha256
from ..errors import BadInput, CheckFailed, one_line_text
from ..inspect import inspect_onnx
from ..limits import check_export_memory
from ..loading import load_model
from ..nn import plan_static
from ..nn.capture import capture
from ..nn.heads import head_output_names, labels_from_logits, with_head
from ..nn.precision import PrecisionPolicy, apply_policy, fp16_storage_proxy
from ..parity import compare_outputs, default_budget
from ..parity.records import ParityCheck, ParityRecord
from ..progress import Steps
from ..runtime.onnxruntime import CPU, import_onnxruntime
from . import int8 as int8_q
from . import int8_sensitivity as int8_sweep
from .calibration import CalibrationSet, load_calibration
from .graph import GraphReport, constants_to_initializers, finalize
from .islands import island_nodes, name_unnamed_nodes
from .probes import ProbedModel, probe_candidates, probe_output_names, unmark_probe_outputs
from .torch_to_onnx import export_to_onnx


@dataclass
class ExportResult:
    directory: Path
    manifest: Manifest
    parity: ParityRecord

    @property
    def passed(self) -> bool:
        """Parity within budget and no fp16 hazard error in the graphs."""
        return self.parity.passed and all(h["passed"] for h in self.manifest.hazards.values())

    def to_dict(self) -> Dict:
        return {"directory": str(self.directory), "passed": self.passed, "manifest": self.manifest.to_dict(), "parity": self.parity.to_dict()}


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


def _export_graph(module: torch.nn.Module, example: torch.Tensor, probe_names: Sequence[str], options: ExportOptions, prefix: str = "") -> ExportedGraph:
    """Export with probes (module outputs kept as named tensors) and find the fp32 island nodes."""
    wrapped_names = [prefix + name for name in probe_names]
    proto, used = export_to_onnx(
        with_head(ProbedModel(module, wrapped_names), options.head, options.resolution, options.upsample),
        example,
        opset=options.opset,
        exporter=options.exporter,
        input_name=INPUT_NAME,
        output_names=[*head_output_names(options.head), *probe_output_names(wrapped_names)],
        dynamic_batch=options.dynamic_batch,
    )
    tensors = unmark_probe_outputs(proto)
    # node names are final only once Constant nodes are initializers: record islands after that
    constants_to_initializers(proto)
    name_unnamed_nodes(proto)
    probes = {t[len(PROBE_PREFIX) + len(prefix):]: t for t in tensors}
    cores = [t for name, t in probes.items() if name == "core" or name.endswith(".core")]
    return ExportedGraph(proto, used, probes, island_nodes(proto, cores))


def _write_graph(graph: ExportedGraph, path: Path, metadata: Dict[str, str], dynamic_batch: bool) -> GraphReport:
    metadata = {**metadata, META_EXPORTER: graph.exporter, META_FP32_NODES: ",".join(graph.fp32_nodes)}
    report = finalize(graph.proto, producer_version=__version__, metadata=metadata, dynamic_batch=dynamic_batch)
    write_bytes_atomic(path, graph.proto.SerializeToString())
    return report


def _parity_check(label: str, artifact: str, runtime: Dict, reference: Dict[str, np.ndarray], candidate: Dict[str, np.ndarray], budget) -> ParityCheck:
    results = [compare_outputs(name, ref, candidate[name], budget) for name, ref in reference.items()]
    return ParityCheck.of(label, artifact, runtime, budget, results)


def _run_onnx(path: Path, feed: np.ndarray):
    """ONNX Runtime on the CPU (all outputs by name), and what ran, in parity.json's words."""
    with runtime.open_onnx(path, CPU, label=str(path)) as session:
        outputs = session.run({INPUT_NAME: feed})
        info = session.describe()
    return outputs, {"name": "onnxruntime", "version": info["version"], "providers": info["providers_active"]}


def _onnx_check(label: str, path: Path, images: np.ndarray, reference: Dict[str, np.ndarray], budget) -> ParityCheck:
    outputs, ran = _run_onnx(path, images)
    return _parity_check(label, path.name, ran, reference, outputs, budget)


def _head_outputs(logits: torch.Tensor, options: ExportOptions, upsample: str) -> Dict[str, np.ndarray]:
    """The head's outputs for these PyTorch logits, by output name: the reference (upsample
    "cubic": upstream's bicubic) or a PyTorch stand-in's (the export's own upsample mode)."""
    names = head_output_names(options.head)
    outputs = {OUTPUT_NAME: logits.detach().numpy()} if OUTPUT_NAME in names else {}
    if LABELS_NAME in names:
        outputs[LABELS_NAME] = labels_from_logits(logits.detach().float(), options.resolution, upsample).numpy()
    return outputs


def _hazards(path: Path, precision: str) -> Dict:
    report = inspect_onnx(path, target=None, precision=precision)
    return {
        "precision": precision,
        "passed": report.passed,
        "errors": [f.to_dict() for f in report.errors],
        "warnings": [f.to_dict() for f in report.warnings],
    }


def _load_calibration(options: ExportOptions, steps: Steps) -> CalibrationSet:
    height, width = options.resolution
    calib = load_calibration(Path(options.calib_images), height, width, options.calib_count, options.calib_method)
    if len(calib.files) < options.batch and not options.dynamic_batch:
        raise BadInput(
            f"--calib-images {options.calib_images}: {len(calib.files)} picture(s) for a batch-{options.batch} model",
            f"give at least {options.batch} pictures (whole batches are fed)",
        )
    for warning in calib.warnings:
        steps.warn(warning)
    used = calib.used(_calibration_batch(options))
    if used < len(calib.files):
        steps.warn(f"{used} of the {len(calib.files)} calibration pictures are fed (whole batches of {options.batch}); "
                   f"give a multiple of {options.batch}, or export with --batch dynamic, to use them all")
    return calib


def _calibration_batch(options: ExportOptions) -> int:
    """Pictures per calibration feed: the static batch, or one for a dynamic batch (every picture used)."""
    return 1 if options.dynamic_batch else options.batch


def _int8_budget(options: ExportOptions):
    budget = default_budget("int8")
    if options.min_argmax_agreement is not None:  # the sensitivity target is the budget too
        budget = dataclasses.replace(budget, min_argmax_agreement=options.min_argmax_agreement)
    return budget


def _quantize_int8(options: ExportOptions, calib: CalibrationSet, staging: Path, steps: Steps):
    """Calibrate once on the pictures, optionally sweep the modules, quantize the fp32 graph."""
    fp32_path = staging / FP32_ONNX_NAME
    files: List[str] = []
    sensitivity = None
    with tempfile.TemporaryDirectory(prefix="msla-int8-") as work:
        feeds = calib.batches(_calibration_batch(options))
        with steps.step("calibrate", f"Calibrating int8 ranges on {sum(len(f) for f in feeds)} picture(s) ({options.calib_method})"):
            calibration = int8_q.calibrate(fp32_path, feeds, options.calib_method, Path(work))
        units = int8_q.graph_units(onnx.load(str(fp32_path)))
        candidates = [u.module for u in units if options.int8_attention or u.kind == "block"]
        quantized_modules = candidates
        if options.sensitivity or options.min_argmax_agreement is not None:
            with steps.step("sensitivity", f"Quantizing {len(candidates)} module(s) one at a time (and all but one)"):
                sensitivity = int8_sweep.sweep(fp32_path, calibration, options.int8_attention, options.min_argmax_agreement)
            quantized_modules = [m for m in candidates if m not in sensitivity.keep_fp32]
            if options.sensitivity:
                write_json_atomic(staging / INT8_SENSITIVITY_NAME, sensitivity.to_dict())
                int8_sweep.write_plot(sensitivity, staging / INT8_SENSITIVITY_PLOT)
                files = [INT8_SENSITIVITY_NAME, INT8_SENSITIVITY_PLOT]
            if sensitivity.met is False:
                steps.warn(f"--min-argmax-agreement {options.min_argmax_agreement:g} not met even with "
                           f"{len(sensitivity.keep_fp32)} module(s) in fp32 ({100 * sensitivity.achieved:.3f}%)")
        with steps.step("quantize", "Writing the int8 Q/DQ graph (LiteMLA cores " + ("int8" if options.int8_attention else "fp32") + ")"):
            quantized = int8_q.quantize(fp32_path, calibration, quantized_modules, Path(work))
    problems = int8_q.check_qdq(quantized.proto, quantized.fp32_nodes)
    used = calib.used(_calibration_batch(options))
    record = {**quantized.record(), "calibration": {**calib.to_dict(), "used": used, "method": options.calib_method},
              "qdq_check": {"passed": not problems, "problems": problems},
              "residual_adds": int8_q.residual_adds(quantized.proto)}
    if sensitivity is not None:
        record["sensitivity"] = {"file": INT8_SENSITIVITY_NAME if options.sensitivity else None, "keep_fp32": sensitivity.keep_fp32,
                                 "achieved_agreement": sensitivity.achieved, "all_int8_agreement": sensitivity.all_int8}
    if problems:
        raise CheckFailed(f"the int8 Q/DQ graph is not what TensorRT consumes: {problems[0]}", "please report this model")
    return quantized, record, files


def _int8_checks(staging: Path, quantized, batches, images, reference, budget) -> List[ParityCheck]:
    """int8 against PyTorch fp32 on the reference inputs, and against the fp32 graph on the
    calibration pictures (where the ranges came from: the labels that matter)."""
    outputs, ran = _run_onnx(staging / ONNX_NAME, images)
    fp32_graph = onnx.load(str(staging / FP32_ONNX_NAME))
    # the logits (of a labels-only graph too: the tensor its head reads), and the labels of a labels head
    names = [None] + ([LABELS_NAME] if LABELS_NAME in reference else [])
    on_pictures = _parity_check(
        "ONNX Runtime int8 on the calibration pictures (vs the fp32 graph)", ONNX_NAME, ran,
        {n or OUTPUT_NAME: int8_q.run_batches(fp32_graph, batches, n) for n in names},
        {n or OUTPUT_NAME: int8_q.run_batches(quantized.proto, batches, n) for n in names}, budget,
    )
    return [_parity_check("ONNX Runtime int8", ONNX_NAME, ran, reference, outputs, budget), on_pictures]


def run_export(options: ExportOptions, steps: Optional[Steps] = None) -> ExportResult:
    steps = steps or Steps()
    options.check()
    if not is_factory_spec(options.model):
        zoo.get_spec(options.model)  # unknown names fail here, before anything is built
    import_onnxruntime()  # fail before the expensive steps, not after them
    target = options.output_dir()
    check_replaceable(target, options.overwrite)
    height, width = options.resolution
    check_export_memory(options.batch, height, width, steps.warn, flag="--max-batch" if options.dynamic_batch else "--batch")  # before minutes of work
    started = time.time()
    int8 = options.precision == "int8"
    # int8 quantizes the fp32 export: the PyTorch side exports fp32
    policy = PrecisionPolicy.from_options(dataclasses.replace(options, precision="fp32") if int8 else options)
    fp16 = policy.precision == "fp16"
    calib = _load_calibration(options, steps) if int8 else None  # bad pictures never cost a model build

    with staged_directory(target, options.overwrite, steps.warn) as staging:
        with steps.step("build", "Building model"):
            loaded = load_model(options)
        for record in loaded.swapped:
            if not record["swapped"]:
                steps.warn(f"LiteMLA look-alike {record['path'] or '<root>'} ({record['source']}) left as is: {record['problem']}")
        if options.stress_weights and not loaded.weights.get("stress"):
            steps.warn("--stress-weights changed nothing: the model has no LiteMLA")
        with steps.step("reference", "Planning attention and computing the PyTorch reference"):
            images = synthetic_images(options.batch, height, width, options.seed)
            example = torch.from_numpy(images)
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
                    "check --res and --batch against what the model accepts" + ("; fix its forward()" if loaded.source == "factory" else ""),
                ) from None
            reference = _single_output(output, loaded.name).detach().numpy()
            # upstream's own post-processing of the fp32 logits: the labels head's reference
            reference_outputs = _head_outputs(output, options, "cubic")
            probe_names = [name for name, tensor in captured if tensor is not output]
            del captured

        recipe = {
            "tool": __version__,
            "torch": torch.__version__,
            "model": loaded.name,
            "weights": loaded.weights["state_dict_sha256"],
            "resolution": [height, width],
            "batch": options.batch,
            **({"dynamic_batch": True} if options.dynamic_batch else {}),  # static recipes hash as before
            "opset": options.opset,
            "exporter": options.exporter,
            "policy": policy.to_dict(),
            "head": options.head,
            **({"int8": {"calibration": [str(f) for f in calib.files], "method": options.calib_method,
                         "attention": options.int8_attention, "min_argmax_agreement": options.min_argmax_agreement}} if int8 else {}),
        }
        recipe_sha = sha256_json(recipe)
        metadata = {
            META_VERSION: __version__,
            META_MODEL: loaded.name,
            META_RESOLUTION: f"{height}x{width}",
            META_BATCH: DYNAMIC_BATCH if options.dynamic_batch else str(options.batch),
            **({META_MAX_BATCH: str(options.batch)} if options.dynamic_batch else {}),
            META_INPUT_NAMES: INPUT_NAME,
            META_OUTPUT_NAMES: ",".join(head_output_names(options.head)),
            META_HEAD: options.head,
            META_NUM_CLASSES: str(reference.shape[1]) if reference.ndim == 4 else "",
            META_NORMALIZATION: f"rgb/255, mean={list(IMAGENET_MEAN)}, std={list(IMAGENET_STD)}",
            META_RECIPE: recipe_sha,
        }

        with steps.step("export", "Exporting to ONNX" + (" (fp32 and mixed-precision fp16)" if fp16 else "")):
            fp32_module = apply_policy(loaded.module, PrecisionPolicy(upsample=policy.upsample))
            fp32_graph = _export_graph(fp32_module, example, probe_names, options)
            if fp16:
                deployable = apply_policy(loaded.module, policy)
                fp16_graph = _export_graph(deployable, example.to(policy.io_torch_dtype), probe_names, options, prefix="model.")
        with steps.step("check", "Checking the graph (static shapes" + (" but the batch" if options.dynamic_batch else "") + ", onnx.checker)"):
            fp32_file = FP32_ONNX_NAME if fp16 or int8 else ONNX_NAME
            fp32_report = _write_graph(fp32_graph, staging / fp32_file, {**metadata, META_PRECISION: "fp32"}, options.dynamic_batch)
            primary_graph, primary_report = fp32_graph, fp32_report
            if fp16:
                primary_report = _write_graph(fp16_graph, staging / ONNX_NAME, {**metadata, META_PRECISION: "fp16"}, options.dynamic_batch)
                primary_graph = fp16_graph
            onnx_files = {"fp32": fp32_file, **({"fp16": ONNX_NAME} if fp16 else {})}
            exporter_used = primary_graph.exporter
            # the same fp16 hazard scan `msla-deploy inspect` runs: the fp16 graph as it will be
            # built (strongly typed), the fp32 graph as fp32 and, beside an fp16 export, as a
            # weakly typed --fp16 build with its recorded pins
            hazards = {} if int8 else {ONNX_NAME: _hazards(staging / ONNX_NAME, "auto")}
            if fp16:
                hazards[FP32_ONNX_NAME] = _hazards(staging / FP32_ONNX_NAME, "fp16")
        if int8:  # the Q/DQ graph, from the fp32 one just written
            quantized, int8_record, int8_files = _quantize_int8(options, calib, staging, steps)
            primary_report = finalize(quantized.proto, producer_version=__version__,
                                      metadata={p.key: p.value for p in quantized.proto.metadata_props}, dynamic_batch=options.dynamic_batch)
            write_bytes_atomic(staging / ONNX_NAME, quantized.proto.SerializeToString())
            onnx_files = {"fp32": FP32_ONNX_NAME, "int8": ONNX_NAME}
            hazards = {ONNX_NAME: _hazards(staging / ONNX_NAME, "int8"), FP32_ONNX_NAME: _hazards(staging / FP32_ONNX_NAME, "fp32")}

        with steps.step("parity", "Comparing ONNX Runtime" + (" and the fp16 PyTorch proxy" if fp16 else "") + " with PyTorch fp32"):
            bundle = ReferenceBundle(
                inputs={INPUT_NAME: images},
                outputs=reference_outputs,
                info={
                    "source": "pytorch",
                    "precision": "fp32",
                    "torch": torch.__version__,
                    "inputs": "synthetic uniform-noise RGB images, preprocessed like upstream",
                    "normalization": {"scale": 1 / 255, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
                    "seed": options.seed,
                    "input_names": [INPUT_NAME],
                    "output_names": list(reference_outputs),
                },
            )
            reference_files = write_reference(staging, bundle)
            # bilinear resize is an approximation of upstream's cubic one: judged like fp16
            fp32_budget = default_budget("fp32" if policy.upsample == "cubic" else "fp16")
            if fp16:
                feed = images.astype(np.float16) if policy.io_dtype == "fp16" else images
                fp16_outputs, ran = _run_onnx(staging / ONNX_NAME, feed)
                with torch.no_grad(), fp16_storage_proxy(deployable) as proxy:
                    proxy_out = _head_outputs(proxy(example), options, policy.upsample)
                del deployable
                checks = [
                    _parity_check("ONNX Runtime fp16", ONNX_NAME, ran, reference_outputs, fp16_outputs, default_budget("fp16")),
                    _parity_check("PyTorch fp16 proxy", "(policy applied in PyTorch)",
                                  {"name": "torch", "version": torch.__version__, "mode": "fp16 storage, fp32 accumulation"},
                                  reference_outputs, proxy_out, default_budget("fp16")),
                    _onnx_check("ONNX Runtime fp32", staging / FP32_ONNX_NAME, images, reference_outputs, fp32_budget),
                ]
            elif int8:
                checks = _int8_checks(staging, quantized, calib.batches(_calibration_batch(options)), images, reference_outputs,
                                      _int8_budget(options))
                checks.append(_onnx_check("ONNX Runtime fp32", staging / FP32_ONNX_NAME, images, reference_outputs, fp32_budget))
            else:
                checks = [_onnx_check("ONNX Runtime fp32", staging / ONNX_NAME, images, reference_outputs, fp32_budget)]
            if options.dynamic_batch:  # the graph at the other end of its batch range: one picture
                first = {name: value[:1] for name, value in reference_outputs.items()}
                feed = images[:1].astype(np.float16) if fp16 and policy.io_dtype == "fp16" else images[:1]
                outputs, ran = _run_onnx(staging / ONNX_NAME, feed)
                checks.append(_parity_check(f"{checks[0].label}, batch 1 of 1..{options.batch}", ONNX_NAME, ran, first, outputs,
                                            checks[0].budget))
            parity = ParityRecord.of(checks)  # the primary artifact's check first
            parity.write(staging / PARITY_NAME)

        manifest = Manifest(
            created_unix=round(started, 3),
            tool={"name": "msla-deploy", "version": __version__},
            recipe_sha256=recipe_sha,
            model=ModelRecord(loaded.name, loaded.source, options.model, loaded.num_classes, sum(p.numel() for p in loaded.module.parameters()),
                              file_sha256=model_file_sha256(options.model)),  # checked before the file is imported again (trust.py)
            weights=loaded.weights,
            options=options,
            precision=PrecisionRecord(
                precision="int8" if int8 else policy.precision,
                attention_precision="fp32" if not fp16 else (policy.attention if policy.guards else "fp16-naive"),
                io_dtype=policy.io_dtype,
                upsample=policy.upsample,
                fp16_guards=policy.guards,
                onnx_files=onnx_files,
                # nodes of the fp32 graph to keep in fp32 when TensorRT builds it with the FP16 flag
                fp32_nodes=quantized.fp32_nodes if int8 else fp32_graph.fp32_nodes,  # int8: the island and the labels head
                extra={"int8": int8_record} if int8 else {},
            ),
            exporter={"requested": options.exporter, "used": exporter_used, "opset": primary_report.opset},
            swapped_modules=loaded.swapped,
            attention_plans=[
                {"module": name, "batch": p.batch, "height": p.height, "width": p.width, "tokens": p.tokens, "branch": p.branch}
                for name, p in plans.items()
            ],
            onnx=primary_report.to_dict(),
            # module path -> tensor of model.onnx holding its output, for drift localisation
            probes=primary_graph.probes,
            hazards=hazards,
            parity={"passed": parity.passed, "file": PARITY_NAME},
            environment=environment(),
            timings_s=steps.timings,
            warnings=steps.warnings,
        )
        files = [ONNX_NAME, *([FP32_ONNX_NAME] if fp16 or int8 else []), PARITY_NAME, *reference_files]
        files += int8_files if int8 else []
        manifest.artifacts = describe_files(staging, files)
        write_manifest(staging, manifest)
    return ExportResult(directory=target, manifest=manifest, parity=parity)
