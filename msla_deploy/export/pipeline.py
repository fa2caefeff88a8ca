"""`export`: model -> planned -> ONNX -> checked -> reference bundle -> ONNX Runtime parity.

Writes into a staged directory (see artifact_dir): model.onnx, reference/, parity.json,
manifest.json. A parity failure still leaves a complete directory (exit 1, the numbers are the
evidence); any other failure leaves nothing.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch

from .. import __version__, convert, zoo
from ..errors import BadInput
from ..manifest import MANIFEST_FORMAT, MANIFEST_NAME, describe_files, environment, sha256_json, write_bytes_atomic, write_json_atomic
from ..nn import plan_static
from ..parity import compare_outputs, default_budget
from ..parity.onnxruntime_run import import_onnxruntime, run_onnx
from ..progress import Steps
from ..reference_bundle import IMAGENET_MEAN, IMAGENET_STD, ReferenceBundle, synthetic_images, write_reference
from .artifact_dir import check_replaceable, staged_directory
from .graph import finalize
from .options import ExportOptions, is_factory_spec
from .probes import PROBE_PREFIX, ProbedModel, capture, probe_candidates, probe_output_names, unmark_probe_outputs
from .torch_to_onnx import export_to_onnx

ONNX_NAME = "model.onnx"
PARITY_NAME = "parity.json"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@dataclass
class LoadedModel:
    module: torch.nn.Module
    name: str
    source: str  # "zoo" or "factory"
    num_classes: Optional[int]
    weights: Dict
    swapped: List[Dict] = field(default_factory=list)


@dataclass
class ExportResult:
    directory: Path
    manifest: Dict
    parity: Dict

    @property
    def passed(self) -> bool:
        return bool(self.parity["passed"])


def load_model(options: ExportOptions) -> LoadedModel:
    """Build the model, load weights (flag, then models/, else seeded random), swap LiteMLA."""
    torch.manual_seed(options.seed)  # random weights are reproducible
    if is_factory_spec(options.model):
        module, _ = convert.build_user_model(options.model)
        name = options.model_label
        source, num_classes = "factory", None
        weights = {"source": "factory", "note": "as returned by the factory"}
        checkpoint = options.weights
    else:
        spec = zoo.get_spec(options.model)
        module, name, source, num_classes = zoo.build(spec.name), spec.name, "zoo", spec.num_classes
        checkpoint = options.weights or zoo.find_checkpoint(spec.name, Path(options.models_dir))
        weights = {"source": "random", "seed": options.seed, "note": "RANDOM WEIGHTS: no checkpoint given or found"}
    if checkpoint is not None:
        digest = zoo.load_checkpoint(module, Path(checkpoint))
        weights = {"source": "checkpoint", "path": str(checkpoint), "sha256": digest}
    module, records = convert.swap_litemla(module)
    module.eval()
    weights["state_dict_sha256"] = state_dict_sha256(module)
    return LoadedModel(module, name, source, num_classes, weights, [r.to_dict() for r in records])


def state_dict_sha256(module: torch.nn.Module) -> str:
    """Hash of the weights as loaded (names, dtypes, shapes, bytes): identifies random weights too."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return digest.hexdigest()


def _single_output(output, model_name: str) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        raise BadInput(
            f"model {model_name!r} returns {type(output).__name__}, not one tensor",
            "wrap it so forward() returns the logits tensor",
        )
    return output


def run_export(options: ExportOptions, steps: Optional[Steps] = None) -> ExportResult:
    steps = steps or Steps()
    options.check()
    import_onnxruntime()  # fail before the expensive steps, not after them
    target = options.output_dir()
    check_replaceable(target)
    height, width = options.resolution
    started = time.time()

    with staged_directory(target) as staging:
        with steps.step("build", "Building model"):
            loaded = load_model(options)
        with steps.step("reference", "Planning attention and computing the PyTorch reference"):
            images = synthetic_images(options.batch, height, width, options.seed)
            example = torch.from_numpy(images)
            try:
                with capture(loaded.module, probe_candidates(loaded.module)) as captured:
                    output, plans = plan_static(loaded.module, example)
            except RuntimeError as exc:
                raise BadInput(
                    f"model {loaded.name!r} failed on a {options.batch}x3x{height}x{width} input: {str(exc).splitlines()[0]}",
                    "check --res and --batch against what the model accepts",
                ) from None
            reference = _single_output(output, loaded.name).detach().numpy()
            probe_names = [name for name, tensor in captured if tensor is not output]
            del captured

        recipe = {
            "tool": __version__,
            "torch": torch.__version__,
            "model": loaded.name,
            "weights": loaded.weights["state_dict_sha256"],
            "resolution": [height, width],
            "batch": options.batch,
            "opset": options.opset,
            "exporter": options.exporter,
            "precision": options.precision,
        }
        recipe_sha = sha256_json(recipe)

        with steps.step("export", "Exporting to ONNX"):
            proto, exporter_used = export_to_onnx(
                ProbedModel(loaded.module, probe_names),
                example,
                opset=options.opset,
                exporter=options.exporter,
                input_name=INPUT_NAME,
                output_names=[OUTPUT_NAME, *probe_output_names(probe_names)],
            )
            probe_tensors = unmark_probe_outputs(proto)
        with steps.step("check", "Checking the graph (static shapes, onnx.checker)"):
            metadata = {
                "msla_deploy.version": __version__,
                "msla_deploy.model": loaded.name,
                "msla_deploy.resolution": f"{height}x{width}",
                "msla_deploy.batch": str(options.batch),
                "msla_deploy.precision": options.precision,
                "msla_deploy.input_names": INPUT_NAME,
                "msla_deploy.output_names": OUTPUT_NAME,
                "msla_deploy.num_classes": str(reference.shape[1]) if reference.ndim == 4 else "",
                "msla_deploy.normalization": f"rgb/255, mean={list(IMAGENET_MEAN)}, std={list(IMAGENET_STD)}",
                "msla_deploy.exporter": exporter_used,
                "msla_deploy.recipe_sha256": recipe_sha,
            }
            graph = finalize(proto, producer_version=__version__, metadata=metadata)
            write_bytes_atomic(staging / ONNX_NAME, proto.SerializeToString())
            del proto

        with steps.step("parity", "Running ONNX Runtime (CPU) and comparing with PyTorch"):
            bundle = ReferenceBundle(
                inputs={INPUT_NAME: images},
                outputs={OUTPUT_NAME: reference},
                info={
                    "source": "pytorch",
                    "precision": "fp32",
                    "torch": torch.__version__,
                    "inputs": "synthetic uniform-noise RGB images, preprocessed like upstream",
                    "normalization": {"scale": 1 / 255, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
                    "seed": options.seed,
                    "input_names": [INPUT_NAME],
                    "output_names": [OUTPUT_NAME],
                },
            )
            reference_files = write_reference(staging, bundle)
            outputs, providers = run_onnx(staging / ONNX_NAME, {INPUT_NAME: images})
            budget = default_budget(options.precision)
            results = [compare_outputs(OUTPUT_NAME, reference, outputs[OUTPUT_NAME], budget)]
            parity = {
                "passed": all(r.passed for r in results),
                "reference": "pytorch fp32",
                "runtime": {"name": "onnxruntime", "version": import_onnxruntime().__version__, "providers": providers},
                "budget": budget.to_dict(),
                "outputs": [r.to_dict() for r in results],
            }
            write_json_atomic(staging / PARITY_NAME, parity)

        manifest = {
            "format": MANIFEST_FORMAT,
            "stage": "export",
            "created_unix": round(started, 3),
            "tool": {"name": "msla-deploy", "version": __version__},
            "recipe_sha256": recipe_sha,
            "model": {
                "name": loaded.name,
                "source": loaded.source,
                "spec": options.model,
                "num_classes": loaded.num_classes,
                "parameters": sum(p.numel() for p in loaded.module.parameters()),
            },
            "weights": loaded.weights,
            "options": options.to_dict(),
            "exporter": {"requested": options.exporter, "used": exporter_used, "opset": graph.opset},
            "swapped_modules": loaded.swapped,
            "attention_plans": [
                {"module": name, "batch": p.batch, "height": p.height, "width": p.width, "tokens": p.tokens, "branch": p.branch}
                for name, p in plans.items()
            ],
            "onnx": graph.to_dict(),
            # module path -> ONNX tensor holding its output, for drift localisation
            "probes": {name[len(PROBE_PREFIX):]: name for name in probe_tensors},
            "parity": {"passed": parity["passed"], "file": PARITY_NAME},
            "environment": environment(),
            "timings_s": steps.timings,
        }
        manifest["artifacts"] = describe_files(staging, [ONNX_NAME, PARITY_NAME, *reference_files])
        write_json_atomic(staging / MANIFEST_NAME, manifest)
    return ExportResult(directory=target, manifest=manifest, parity=parity)
