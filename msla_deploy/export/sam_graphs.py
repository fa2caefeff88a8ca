"""EfficientViT-SAM's two deployable graphs: the image encoder and the prompt decoder.

A building block (issue 23, section 2): torch -> ONNX of each graph, checked; not yet the
`export` command, its artifact or its parity record.

* encoder: image [1, 3, S, S] -> image_embeddings [1, 256, 64, 64], static. Its LiteMLAs are
  planned (`plan_static`, as the segmentation export); fp16 is the guarded precision policy
  (BatchNorm folded in fp32, attention cores fp32 islands) plus the final LayerNorm2d as an fp32
  island: its squares overflow fp16 above |x - mean| = 256 and its eps 1e-6 is subnormal there.
  "fp16-naive" is everything half, for comparison only.
* decoder: image_embeddings [1, 256, 64, 64], point_coords [B, P, 2], point_labels [B, P],
  mask_input [B, 1, 256, 256], has_mask_input [B] -> masks [B, M, 256, 256] (low-res logits),
  iou_predictions [B, M]; B and P dynamic (or static), M = 4 (multimask: SAM's four mask tokens,
  0 the single-mask output and 1-3 the multimask ones, chosen per call) or 1 (single). One
  image's embeddings serve the B prompts by broadcasting (no repeat_interleave, so no Tile); no
  Pad at all. The Shape/Gather ops left read B and P only (`shape_ops`).
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import onnx
import torch
from torch import nn

from ..artifact.names import PROBE_PREFIX
from ..artifact.sam_io import (
    DECODER_DYNAMIC_AXES,
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    IMAGE,
    IMAGE_EMBEDDINGS,
    PAD_LABEL,
    POINTS_DIM,
    PROMPTS_DIM,
)
from ..nn import plan_static
from ..nn.capture import capture
from ..nn.layers import UpSampleLayer
from ..nn.precision import IOCast, PrecisionPolicy, apply_policy
from ..zoo.sam import EfficientViTSam, LayerNorm2d
from ..zoo.sam.architecture import EMBED_DIM, EMBEDDING_SIZE, LOW_RES_MASK_SIDE
from ..zoo.sam.graphs import SamDecoderGraph  # noqa: F401  (the decoder graph export traces)
from .graph import constants_to_initializers
from .islands import island_nodes, name_unnamed_nodes
from .probes import ProbedModel, probe_candidates, probe_output_names, unmark_probe_outputs
from .torch_to_onnx import export_inputs_to_onnx, export_to_onnx

#: the encoder's precisions: fp32, the guarded fp16 (ours), and naive fp16 (everything half)
ENCODER_PRECISIONS = ("fp32", "fp16", "fp16-naive")
#: the encoder module whose output is the final LayerNorm2d's input (probed to find its nodes)
NECK_OUTPUT = "neck.output_ops.0.op_list.0"
#: ops that read or compute shapes at run time (graph.FORBIDDEN_OPS' shape part)
SHAPE_OPS = ("Shape", "Gather", "ConstantOfShape", "Size")


@dataclass
class SamGraph:
    """One exported graph: the model, the exporter that ran, its probes (module path -> tensor)
    and the nodes a weakly typed fp16 build must pin to fp32 (attention islands, LayerNorm2d)."""

    proto: onnx.ModelProto
    exporter: str
    probes: Dict[str, str] = field(default_factory=dict)
    fp32_nodes: List[str] = field(default_factory=list)

    def op_counts(self) -> Dict[str, int]:
        return dict(Counter(node.op_type for node in self.proto.graph.node))


# --- the encoder ---------------------------------------------------------------------------------


@dataclass
class PlannedEncoder:
    """The image encoder planned for one input size: the fp32 eval-mode module, the example image,
    the probes that name a tensor of their own, and the PyTorch embeddings of that image."""

    module: nn.Module
    image: torch.Tensor
    probe_names: List[str]
    embeddings: torch.Tensor

    def deployable(self, precision: str = "fp32") -> nn.Module:
        """The module as it will be exported under `precision` (ENCODER_PRECISIONS); graph input
        and output stay float32. A copy: `module` is untouched."""
        if precision not in ENCODER_PRECISIONS:
            raise ValueError(f"precision must be one of {ENCODER_PRECISIONS}, got {precision!r}")
        if precision == "fp32":
            return apply_policy(self.module, PrecisionPolicy())
        deployable = apply_policy(self.module, PrecisionPolicy(precision="fp16", guards=precision == "fp16"))
        # the LayerNorm2d's own knob: fp32 statistics in the guarded policy; an explicit fp16 in the
        # naive one (the same graph as None, and the PyTorch fp16 proxy then computes it in fp16 too)
        for norm in (m for m in deployable.modules() if isinstance(m, LayerNorm2d)):
            norm.island_dtype = torch.float32 if precision == "fp16" else torch.float16
        return deployable


def plan_encoder(sam: EfficientViTSam, image: torch.Tensor) -> PlannedEncoder:
    """Plan every LiteMLA of `sam`'s image encoder for `image` [1, 3, S, S] (one forward, which also
    gives the reference embeddings and finds the probes). `sam` is untouched."""
    encoder = copy.deepcopy(sam.image_encoder).eval()
    candidates = probe_candidates(encoder)
    if NECK_OUTPUT not in candidates:
        candidates.append(NECK_OUTPUT)
    resizes = [m for m in encoder.modules() if isinstance(m, UpSampleLayer) and m.size is not None]
    seen: Dict[int, Tuple[int, ...]] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args: seen.__setitem__(id(mod), args[0].shape)) for m in resizes]
    try:
        with capture(encoder, candidates) as captured:
            embeddings, _ = plan_static(encoder, image)
    finally:
        for hook in hooks:
            hook.remove()
    _plan_resizes(resizes, seen)
    # a module that hands on its input unchanged (a resize to the size it has) names no tensor
    names = [name for name, tensor in captured if tensor is not embeddings]
    return PlannedEncoder(encoder, image, names, embeddings.detach())


def _plan_resizes(resizes: Sequence[UpSampleLayer], seen: Dict[int, Tuple[int, ...]]) -> None:
    """The neck's resizes to 64x64 as integer factors of the planned input: a resize to a size
    exports (torchscript) as Shape + Slice + Concat of the input's shape; a factor is a constant.
    The same arithmetic (scale = in/out either way); a resize by another ratio keeps its size."""
    for layer in resizes:
        height, width = seen[id(layer)][-2:]
        factor, rest = divmod(layer.size[0], height)
        if not rest and layer.size == (factor * height, factor * width) and factor > 1:
            layer.size, layer.factor = None, factor


def export_encoder(
    planned: PlannedEncoder,
    precision: str = "fp32",
    *,
    module: Optional[nn.Module] = None,
    opset: int = 17,
    exporter: str = "torchscript",
) -> SamGraph:
    """The static encoder graph (image -> image_embeddings) of `planned.deployable(precision)` (or
    of `module`, that deployable already made), with probes on the LiteMLAs and blocks, and its
    fp32 nodes: the attention islands and the final LayerNorm2d."""
    module = module if module is not None else planned.deployable(precision)
    prefix = "model." if isinstance(module, IOCast) else ""
    names = [prefix + name for name in planned.probe_names]
    proto, used = export_to_onnx(
        ProbedModel(module, names),
        planned.image,
        opset=opset,
        exporter=exporter,
        input_name=IMAGE,
        output_names=[IMAGE_EMBEDDINGS, *probe_output_names(names)],
    )
    tensors = unmark_probe_outputs(proto)
    constants_to_initializers(proto)  # node names are final once Constant nodes are initializers
    name_unnamed_nodes(proto)
    probes = {t[len(PROBE_PREFIX) + len(prefix) :]: t for t in tensors}
    cores = [t for name, t in probes.items() if name.endswith(".core")]
    norm = nodes_between(proto, [probes[NECK_OUTPUT]], [IMAGE_EMBEDDINGS]) if NECK_OUTPUT in probes else []
    return SamGraph(proto, used, probes, island_nodes(proto, cores) + norm)


def nodes_between(model: onnx.ModelProto, starts: Sequence[str], ends: Sequence[str]) -> List[str]:
    """Names of the nodes computing `ends` from `starts` (and constants), in graph order."""
    producer = {o: n for n in model.graph.node for o in n.output}
    selected, stack, stop = set(), list(ends), set(starts)
    while stack:
        tensor = stack.pop()
        node = producer.get(tensor)
        if tensor in stop or node is None or node.name in selected:
            continue
        selected.add(node.name)
        stack.extend(node.input)
    return [n.name for n in model.graph.node if n.name in selected]


# --- the decoder ---------------------------------------------------------------------------------


def decoder_examples(prompts: int = 2, points: int = 3, seed: int = 0) -> Tuple[torch.Tensor, ...]:
    """Example inputs of the decoder (exporters trace them; the dynamo exporter needs B, P >= 2 to
    keep them dynamic): random embeddings, points in the prompt frame, one padding point each."""
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(1, EMBED_DIM, *EMBEDDING_SIZE, generator=generator)
    coords = torch.rand(prompts, points, 2, generator=generator) * 1024
    labels = torch.ones(prompts, points)
    labels[:, -1] = PAD_LABEL
    mask_input = torch.zeros(prompts, 1, LOW_RES_MASK_SIDE, LOW_RES_MASK_SIDE)
    return embeddings, coords, labels, mask_input, torch.zeros(prompts)


def export_decoder(
    sam: EfficientViTSam,
    *,
    multimask: bool = True,
    dynamic: bool = True,
    max_prompts: int = 64,
    max_points: int = 16,
    examples: Optional[Tuple[torch.Tensor, ...]] = None,
    opset: int = 17,
    exporter: str = "torchscript",
) -> SamGraph:
    """The decoder graph. `dynamic`: B and P are dynamic (1..max_prompts, 1..max_points for the
    dynamo exporter's range); else static at the examples' sizes (`decoder_examples()` by default)."""
    # a copy of what the decoder graph holds (prompt encoder, mask decoder): not of the image encoder,
    # which is most of the weights (an XL model's encoder is 0.8 GB)
    module = copy.deepcopy(SamDecoderGraph(sam, multimask)).eval()
    examples = examples if examples is not None else decoder_examples()
    proto, used = export_inputs_to_onnx(
        module,
        examples,
        opset=opset,
        exporter=exporter,
        input_names=DECODER_INPUTS,
        output_names=DECODER_OUTPUTS,
        dynamic_axes=DECODER_DYNAMIC_AXES if dynamic else None,
        dim_max={PROMPTS_DIM: max_prompts, POINTS_DIM: max_points},
    )
    constants_to_initializers(proto)
    name_unnamed_nodes(proto)
    _name_dims(proto, module.count, DECODER_DYNAMIC_AXES if dynamic else {})
    return SamGraph(proto, used)


def _name_dims(model: onnx.ModelProto, count: int, axes: Dict[str, Dict[int, str]]) -> None:
    """The graph's I/O as TensorRT profiles and Triton configs read it: the dynamic dimensions
    named `prompts` and `points` (each exporter has its own names: s0, Slicemasks_dim_1, ...),
    every other one a number (the outputs' M, 256, 256, which the legacy exporter leaves symbolic)."""
    masks = model.graph.output[0].type.tensor_type.shape.dim
    iou = model.graph.output[1].type.tensor_type.shape.dim
    for dims, sizes in ((masks, (count, LOW_RES_MASK_SIDE, LOW_RES_MASK_SIDE)), (iou, (count,))):
        for dim, size in zip(list(dims)[1:], sizes):
            dim.Clear()
            dim.dim_value = size
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        for axis, name in axes.get(value.name, {}).items():
            dims[axis].Clear()
            dims[axis].dim_param = name


# --- what is left of run-time shapes -------------------------------------------------------------


def shape_ops(model: onnx.ModelProto) -> Dict[str, object]:
    """The run-time shape ops of a graph and what they read. A graph without data-dependent shapes
    (no NonZero, If, Loop: `inspect_static` finds those) computes every shape from its inputs' sizes,
    so its Shape ops can only read the dynamic dimensions; this says which, as shape inference
    names them (ONNX Runtime's symbolic inference where installed: `points + 5`; onnx's names what
    it cannot follow `unk__N`). {'counts': {Shape, shape Gather, data Gather, ConstantOfShape},
    'reads': {dim: times read}, 'static_reads': Shape nodes of fully static tensors (a missed
    constant fold; 0 in a clean graph)}."""
    inferred = _symbolic_shapes(model)
    shapes = {}
    for value in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_param if d.dim_param else (d.dim_value or "?") for d in dims]
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    consumers: Dict[str, List[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    reads: Counter = Counter()
    static = shape_gathers = 0
    for node in (n for n in model.graph.node if n.op_type == "Shape"):
        full = shapes.get(node.input[0], ["?"])
        attrs = {a.name: a.i for a in node.attribute}
        dims = full[attrs.get("start", 0) : attrs.get("end", len(full))]
        static += all(isinstance(d, int) for d in full)
        gathers = [c for c in consumers.get(node.output[0], []) if c.op_type == "Gather" and c.input[1] in constants]
        shape_gathers += len(gathers)
        picked = [dims[i] for g in gathers for i in constants[g.input[1]].reshape(-1).tolist()] if gathers else dims
        reads.update(str(d) for d in picked if not isinstance(d, int))
    ops = Counter(n.op_type for n in model.graph.node)
    counts = {
        "Shape": ops["Shape"],
        "Gather of a shape": shape_gathers,
        "Gather of data": ops["Gather"] - shape_gathers,
        "ConstantOfShape": ops["ConstantOfShape"],
    }
    return {"counts": counts, "reads": dict(reads), "static_reads": static}


def _symbolic_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    except ImportError:
        return onnx.shape_inference.infer_shapes(model, data_prop=True)
    return SymbolicShapeInference.infer_shapes(copy.deepcopy(model), auto_merge=True)
