"""SAM artifact directories for the inspect and build tests, made around graphs of our own, with the
layout the SAM export writes (manifest.json with model.task "sam" and the encoder and decoder graph
records; encoder.onnx, encoder_fp32.onnx beside an fp16 one, decoder.onnx).

* real graphs: l0's fp32 image encoder (msla_deploy/export/sam_graphs.py, tests/zoo/sam_golden.py's
  seeded weights; ~10 s) and its dynamic prompt decoder (~3 s), exported once per test process.
  (The guarded fp16 encoder is not among them: its export traces fp16 convolutions on the CPU,
  minutes; tests/export/test_sam_graphs.py covers it, marked slow.)
* a tiny encoder, fp32 and mixed-precision fp16 (hand-made, no torch): image [1, 3, 64, 64] ->
  conv -> a LayerNorm2d written out as SAM writes it (ReduceMean, Sub, Pow, ReduceMean, Add(1e-6),
  Sqrt, Div, affine) -> image_embeddings [1, 256, 64, 64]; the mixed graph computes the norm in an
  fp32 island, and the fp32 graph's norm nodes are the fp32 nodes a weakly typed build pins.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from msla_deploy.artifact.graphs import DECODER, ENCODER, DimProfile, GraphRecord, TensorRecord
from msla_deploy.artifact.manifest import Manifest, ModelRecord, write_manifest
from msla_deploy.artifact.sam_io import (
    HAS_MASK_INPUT,
    IMAGE,
    IMAGE_EMBEDDINGS,
    IOU_PREDICTIONS,
    MASK_INPUT,
    MASKS,
    POINT_COORDS,
    POINT_LABELS,
    POINTS_DIM,
    PROMPTS_DIM,
)
from msla_deploy.tasks import SAM

L0 = "efficientvit-sam-l0"
SIDE = 512  # l0's encoder input
TINY_SIDE = 64
#: the decoder's profile as the SAM export records it (prompts 1/16/64, points 1/3/16)
PROFILE = {PROMPTS_DIM: DimProfile(1, 16, 64), POINTS_DIM: DimProfile(1, 3, 16)}
LAYER_NORM_NODES = ["ln_mean", "ln_sub", "ln_pow", "ln_var", "ln_add", "ln_sqrt", "ln_div", "ln_scale", "ln_shift"]


@functools.lru_cache(maxsize=None)
def real_graphs() -> Tuple[onnx.ModelProto, List[str], onnx.ModelProto]:
    """(l0's fp32 encoder, its fp32 nodes, the multimask dynamic decoder), exported once per process."""
    import torch

    from msla_deploy.export import sam_graphs
    from msla_deploy.zoo.sam import build_sam
    from tests.zoo import sam_golden

    sam = sam_golden.fill_model(build_sam(L0))
    image = torch.from_numpy(sam_golden.input_from_pixels(sam_golden.make_pixels(SIDE), SIDE))
    encoder = sam_graphs.export_encoder(sam_graphs.plan_encoder(sam, image), "fp32", exporter="torchscript")
    decoder = sam_graphs.export_decoder(sam, multimask=True)
    return encoder.proto, list(encoder.fp32_nodes), decoder.proto


def tiny_encoder(mixed: bool, side: int = TINY_SIDE) -> onnx.ModelProto:
    """The tiny encoder; `mixed`: fp16 with the LayerNorm in an fp32 island (explicit Casts), fp32 I/O."""
    f16, f32 = TensorProto.FLOAT16, TensorProto.FLOAT
    dtype = np.float16 if mixed else np.float32
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((rng.standard_normal((256, 3, 1, 1)) * 0.1).astype(dtype), "conv_w"),
        numpy_helper.from_array(np.array([1], np.int64), "channel_axis"),
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        numpy_helper.from_array(np.array(1e-6, np.float32), "eps"),
        numpy_helper.from_array(np.ones((1, 256, 1, 1), np.float32), "gamma"),
        numpy_helper.from_array(np.zeros((1, 256, 1, 1), np.float32), "beta"),
    ]
    nodes = []
    x = IMAGE
    if mixed:
        nodes.append(helper.make_node("Cast", [IMAGE], ["image16"], name="cast_in", to=f16))
        x = "image16"
    nodes.append(helper.make_node("Conv", [x, "conv_w"], ["features"], name="neck_conv"))
    x = "features"
    if mixed:
        nodes.append(helper.make_node("Cast", [x], ["features32"], name="cast_island", to=f32))
        x = "features32"
    nodes += [
        helper.make_node("ReduceMean", [x], ["mean"], name="ln_mean", axes=[1], keepdims=1),
        helper.make_node("Sub", [x, "mean"], ["centred"], name="ln_sub"),
        helper.make_node("Pow", ["centred", "two"], ["squares"], name="ln_pow"),
        helper.make_node("ReduceMean", ["squares"], ["variance"], name="ln_var", axes=[1], keepdims=1),
        helper.make_node("Add", ["variance", "eps"], ["guarded"], name="ln_add"),
        helper.make_node("Sqrt", ["guarded"], ["std"], name="ln_sqrt"),
        helper.make_node("Div", ["centred", "std"], ["normed"], name="ln_div"),
        helper.make_node("Mul", ["normed", "gamma"], ["scaled"], name="ln_scale"),
        helper.make_node("Add", ["scaled", "beta"], [IMAGE_EMBEDDINGS], name="ln_shift"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_sam_encoder",
        [helper.make_tensor_value_info(IMAGE, f32, [1, 3, side, side])],
        [helper.make_tensor_value_info(IMAGE_EMBEDDINGS, f32, [1, 256, side, side])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="test")
    model.ir_version = 8
    return model


def _tensors(values) -> List[TensorRecord]:
    records = []
    for value in values:
        dims = value.type.tensor_type.shape.dim
        shape = tuple(d.dim_param if d.dim_param else d.dim_value for d in dims)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).name
        records.append(TensorRecord(value.name, shape, dtype))
    return records


def graph_record(
    role: str,
    model: onnx.ModelProto,
    file: str,
    precision: str,
    fp32_file: Optional[str] = None,
    fp32_nodes: Optional[List[str]] = None,
    profile: Optional[Dict[str, DimProfile]] = None,
) -> GraphRecord:
    return GraphRecord(
        role=role,
        file=file,
        precision=precision,
        inputs=_tensors(model.graph.input),
        outputs=_tensors(model.graph.output),
        fp32_file=fp32_file,
        fp32_nodes=list(fp32_nodes or []),
        profile=dict(profile or {}),
    )


def write_sam_artifact(
    directory: Path,
    encoder: onnx.ModelProto,
    decoder: onnx.ModelProto,
    *,
    precision: str = "fp32",
    fp32_encoder: Optional[onnx.ModelProto] = None,
    fp32_nodes: Optional[List[str]] = None,
) -> Path:
    """A SAM artifact directory: the encoder at `precision` (fp16: `encoder` is the mixed graph and
    `fp32_encoder` the fp32 one beside it), the fp32 decoder with the export's profile."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(encoder, str(directory / "encoder.onnx"))
    onnx.save(decoder, str(directory / "decoder.onnx"))
    fp32_file = None
    if fp32_encoder is not None:
        fp32_file = "encoder_fp32.onnx"
        onnx.save(fp32_encoder, str(directory / fp32_file))
    graphs = [
        graph_record(ENCODER, encoder, "encoder.onnx", precision, fp32_file, fp32_nodes),
        graph_record(DECODER, decoder, "decoder.onnx", "fp32", profile=PROFILE),
    ]
    manifest = Manifest(model=ModelRecord(name=L0, source="zoo", spec=L0, task=SAM), graphs=graphs)
    write_manifest(directory, manifest)
    return directory


def decoder_shapes(point: str) -> Dict[str, Tuple[int, ...]]:
    """The decoder's dynamic inputs at the profile's min/opt/max, as TensorRT gets them."""
    prompts, points = getattr(PROFILE[PROMPTS_DIM], point), getattr(PROFILE[POINTS_DIM], point)
    return {
        POINT_COORDS: (prompts, points, 2),
        POINT_LABELS: (prompts, points),
        MASK_INPUT: (prompts, 1, 256, 256),
        HAS_MASK_INPUT: (prompts,),
    }


DECODER_OUTPUTS = (MASKS, IOU_PREDICTIONS)
