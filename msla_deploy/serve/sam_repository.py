"""`package --triton` for a SAM export: one repository, two models (runtime/triton_sam.py names
them and says what travels):

    REPO/NAME_encoder/config.pbtxt, 1/model.onnx, README.md    the encoder, no batching
    REPO/NAME_decoder/config.pbtxt, 1/model.onnx, README.md    the decoder, dynamic batching over prompts

Both on Triton's ONNX Runtime backend (onnxruntime_onnx), KIND_CPU unless --gpus, as a
segmentation ONNX is packaged. The decoder's model.onnx is the export's decoder.onnx with the
embeddings per prompt (serve/sam_graphs.py); its config declares the rows Triton batches
(max_batch_size = the decoder profile's prompts maximum, the points dimension -1) and reshapes
has_mask_input [1] to the graph's per-prompt scalar. README.md says how a client calls the pair.

Engines are not packaged for SAM: the decoder engine `build` writes takes one image's embeddings,
not one per prompt (refused in one line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..artifact import sam_io
from ..artifact.graphs import DECODER, ENCODER
from ..artifact.names import (
    META_MODEL,
    META_PRECISION,
    META_RECIPE,
    META_WEIGHTS,
    TRITON_CONFIG_NAME,
    TRITON_MODEL_FILES,
    TRITON_MODEL_VERSION,
)
from ..errors import BadInput
from .model_io import Artifact, check_model_name, default_name
from .repository import (
    Package,
    PackageOptions,
    check_destination,
    check_model_dir,
    check_with_model_config,
    config_text,
    instance_group,
    write_model_dir,
)
from .sam_graphs import ServedGraph, served_graphs, triton_dims

PLATFORM = "onnxruntime_onnx"
USAGE_NAME = "README.md"
#: config parameter: which graph of the SAM pair a model is
META_GRAPH = "msla_deploy.graph"


@dataclass
class SamPackage:
    """The two models of a SAM export in one repository."""

    name: str  # the pair's name: triton://HOST:PORT/NAME
    repository: Path
    models: List[Package]
    usage: str  # README.md of each model folder
    notes: List[str] = field(default_factory=list)
    weights_source: Optional[str] = None
    weights_warning: Optional[str] = None
    task: str = "sam"

    @property
    def checked_with_model_config(self) -> bool:
        return all(m.checked_with_model_config for m in self.models)

    def to_dict(self) -> Dict:
        return {
            "name": self.name,
            "task": self.task,
            "repository": str(self.repository),
            "platform": PLATFORM,
            "models": {m.name: m.to_dict() for m in self.models},
            "usage": self.usage,
            "checked_with_model_config": self.checked_with_model_config,
            "notes": self.notes,
            "weights_source": self.weights_source,
            "weights_warning": self.weights_warning,
        }


def _refuse(options: PackageOptions, art: Artifact) -> None:
    if options.platform == "tensorrt_plan":
        raise BadInput(
            f"--platform tensorrt_plan: {art.path} is a SAM export, packaged as its ONNX graphs",
            "leave --platform out (its decoder engine takes one image's embeddings; Triton batches one per prompt)",
        )
    if options.labels is not None:
        raise BadInput(f"--labels is for classification models; {art.path} is a SAM model", "leave --labels out")


def package_sam(options: PackageOptions, art: Artifact) -> SamPackage:
    _refuse(options, art)
    name = check_model_name(options.name) if options.name is not None else default_name(art)
    group = instance_group(PLATFORM, options.instances, options.gpus)
    repository = Path(options.repository)
    graphs = served_graphs(art, name)
    for graph in graphs:  # every refusal before anything is written
        model_dir = repository / graph.model
        check_destination(art, repository, model_dir)
        check_model_dir(repository, model_dir, options.overwrite)
    notes: List[str] = []
    if art.engines:
        notes.append("the engines in the export are not packaged: Triton runs SAM's ONNX graphs (ONNX Runtime)")
    base = {
        k: v
        for k, v in (
            (META_RECIPE, art.recipe_sha256),
            (META_MODEL, art.model_name),
            (META_PRECISION, art.precision),
            (META_WEIGHTS, art.weights_source),
        )
        if v
    }
    texts = {}
    for graph in graphs:
        parameters = {**base, META_GRAPH: graph.role}
        texts[graph.role] = (
            parameters,
            config_text(
                graph.model,
                PLATFORM,
                graph.inputs,
                graph.outputs,
                graph.layout,
                group,
                parameters,
                str(graph.source),
                dims_of=lambda t, g=graph: triton_dims(g, t),
                reshape=graph.reshape,
            ),
        )
    checked = all([check_with_model_config(text) for _, text in texts.values()])
    if not checked:
        notes.append("tritonclient is not installed: the configs were not parsed back with Triton's ModelConfig here")
    usage = usage_text(name, graphs)
    models = []
    for graph in graphs:
        parameters, text = texts[graph.role]
        model_dir = repository / graph.model
        model_file = f"{TRITON_MODEL_VERSION}/{TRITON_MODEL_FILES[PLATFORM]}"
        replaced = write_model_dir(
            model_dir,
            {
                model_file: graph.onnx if graph.onnx is not None else graph.source,
                TRITON_CONFIG_NAME: text.encode(),
                USAGE_NAME: usage.encode(),
            },
        )
        models.append(
            Package(
                name=graph.model,
                platform=PLATFORM,
                model_dir=model_dir,
                config_path=model_dir / TRITON_CONFIG_NAME,
                model_path=model_dir / model_file,
                source=graph.source,
                inputs=graph.inputs,
                outputs=graph.outputs,
                io_source=graph.source.name + (" (embeddings per prompt)" if graph.role == DECODER else ""),
                layout=graph.layout,
                instance_group=group,
                parameters=parameters,
                config_text=text,
                checked_with_model_config=checked,
                replaced=replaced,
                weights_source=art.weights_source,
                weights_warning=art.weights_warning,
                task=art.task.name,
            )
        )
    return SamPackage(name, repository, models, usage, notes, art.weights_source, art.weights_warning)


def _shape(graph: ServedGraph, t) -> str:
    dims = ["B" if graph.layout.dynamic else None] + [str(d) if d != -1 else "P" for d in triton_dims(graph, t)]
    return "[" + ", ".join(d for d in dims if d is not None) + "]"


def usage_text(name: str, graphs: List[ServedGraph]) -> str:
    """How a client calls the pair (README.md of both model folders)."""
    by_role = {g.role: g for g in graphs}
    encoder, decoder = by_role[ENCODER], by_role[DECODER]

    def tensors(graph: ServedGraph, specs) -> str:
        shape = (lambda t: _shape(graph, t)) if graph.layout.dynamic else (lambda t: str(list(t.shape)))
        return "\n".join(f"    {t.name:<18} {t.dtype:<8} {shape(t)}" for t in specs)

    return f"""# {name}: EfficientViT-SAM on Triton (written by msla-deploy package)

Two models: call the encoder once per picture, then the decoder for any number of prompts on it.

## {encoder.model}: one picture, no batching

  inputs
{tensors(encoder, encoder.inputs)}
  outputs
{tensors(encoder, encoder.outputs)}

`{sam_io.IMAGE}` is the picture as SAM's transform gives it: longest side resized to the encoder's
side, RGB normalised with mean {list(sam_io.PIXEL_MEAN)} and std {list(sam_io.PIXEL_STD)} (0-255
units), zero-padded bottom-right to a square.

## {decoder.model}: one row per prompt, dynamic batching up to {decoder.layout.batch} rows

  inputs (B prompts of P points)
{tensors(decoder, decoder.inputs)}
  outputs
{tensors(decoder, decoder.outputs)}

Every input is per prompt, the picture's `{sam_io.IMAGE_EMBEDDINGS}` too (repeat the encoder's
[1, 256, 64, 64] answer B times): Triton's dynamic batcher joins requests along the first
dimension of every input, so prompts of different pictures and clients run as one decoder call.
Prompts are in the {sam_io.PROMPT_FRAME}-pixel prompt frame; labels 1 foreground, 0 background,
2 and 3 a box's corners, -1 padding (a prompt without a box ends with one padding point).
`{sam_io.HAS_MASK_INPUT}` is [B, 1]: 1 where `{sam_io.MASK_INPUT}` holds a previous round's
low-res logits. Requests with the same P are batched together. `{sam_io.MASKS}` are low-res
logits (> {sam_io.MASK_THRESHOLD:g} inside); with 4 masks, mask 0 is the single-mask answer and
1-3 the multimask ones.

## From Python (msla-deploy installed, its `serve` extra)

    from msla_deploy import SamPredictor
    with SamPredictor("triton://HOST:8001/{name}") as sam:
        sam.set_image("picture.png")          # runs {encoder.model}
        masks, scores, low_res = sam.predict(boxes=[[x0, y0, x1, y1]])   # runs {decoder.model}
"""
