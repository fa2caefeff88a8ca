"""Every name on disk: file names, suffixes, metadata keys, tensor names, format versions.

The artifact directory is the interface between the stages (export writes it; inspect, build,
validate, evaluate, bench, predict and serve read it), so its vocabulary has one owner: this
module. Nothing else spells these strings.
"""

from __future__ import annotations

from typing import Optional

from ..choices import TRITON_PLATFORMS  # noqa: F401 (a closed choice of `package --platform`, spelled there)
from ..tasks import LABELS_NAME, LOGITS_NAME, PROBS_NAME, TOPK_INDICES_NAME, TOPK_SCORES_NAME  # noqa: F401

# --- files of an export directory ------------------------------------------------------------
MANIFEST_NAME = "manifest.json"
ONNX_NAME = "model.onnx"  # fp32, the mixed-precision fp16 graph, or the int8 Q/DQ graph
FP32_ONNX_NAME = "model_fp32.onnx"  # beside an fp16/int8 model.onnx, for weakly typed TensorRT builds
PARITY_NAME = "parity.json"
REFERENCE_DIR = "reference"
REFERENCE_INPUTS = "inputs.npz"
REFERENCE_OUTPUTS = "outputs.npz"
REFERENCE_INFO = "reference.json"
VALIDATION_DIR = "validation"  # validate's default report folder inside an export directory
EVALUATION_DIR = "evaluation"  # evaluate's default report folder inside an export directory
INT8_SENSITIVITY_NAME = "int8_sensitivity.json"  # export --precision int8 --sensitivity
INT8_SENSITIVITY_PLOT = "int8_sensitivity.png"
BUILD_RECORD_NAME = "build.json"  # beside an engine built from a bare ONNX (no manifest to hold it)
# a SAM export's two graphs (the manifest's `graphs` lists them with their roles)
ENCODER_ONNX_NAME = "encoder.onnx"  # fp32 or the mixed-precision fp16 image encoder
ENCODER_FP32_ONNX_NAME = "encoder_fp32.onnx"  # beside an fp16 encoder.onnx, for weakly typed builds
DECODER_ONNX_NAME = (
    "decoder.onnx"  # the prompt decoder (fp32)  # beside an engine built from a bare ONNX (no manifest to hold it)
)

ONNX_SUFFIX = ".onnx"
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")  # what TensorRT users call serialized engines
LAYER_INFO_SUFFIX = ".layers.json"

# --- manifest ---------------------------------------------------------------------------------
MANIFEST_FORMAT = "msla-deploy/1"  # the "format" field; a manifest without it is read as this
TOOL_NAME = "msla-deploy"  # the manifest's tool.name: with "format", what tells an export of ours

# --- graph I/O and probes -----------------------------------------------------------------------
INPUT_NAME = "input"
# the outputs each task's heads give, named in tasks.py (which owns what each output means)
OUTPUT_NAME = LOGITS_NAME
# LABELS_NAME: [N, H, W] int32 train ids at the input resolution (export --head labels|both)
BATCH_DIM = "batch"  # the symbolic first dimension of a dynamic-batch export (export --batch dynamic)
PROBE_PREFIX = "probe/"  # module outputs kept as named tensors: PROBE_PREFIX + module path

# --- ONNX metadata_props keys --------------------------------------------------------------------
META_PREFIX = "msla_deploy."
META_VERSION = "msla_deploy.version"
META_MODEL = "msla_deploy.model"
META_RESOLUTION = "msla_deploy.resolution"
META_BATCH = "msla_deploy.batch"  # the static batch, or DYNAMIC_BATCH
META_MAX_BATCH = "msla_deploy.max_batch"  # dynamic-batch exports: the largest batch (TensorRT's profile max)
DYNAMIC_BATCH = "dynamic"
META_INPUT_NAMES = "msla_deploy.input_names"
META_OUTPUT_NAMES = "msla_deploy.output_names"
META_NUM_CLASSES = "msla_deploy.num_classes"
META_NORMALIZATION = "msla_deploy.normalization"
META_RECIPE = "msla_deploy.recipe_sha256"
META_PRECISION = "msla_deploy.precision"
META_EXPORTER = "msla_deploy.exporter"
META_FP32_NODES = "msla_deploy.fp32_nodes"
META_HEAD = "msla_deploy.head"  # the task's head: logits | labels | both (segmentation), logits | probs | topk
META_TASK = "msla_deploy.task"  # tasks.py's name; absent (exports before tasks): segmentation
META_GRAPH = "msla_deploy.graph"  # a multi-graph export's graph role (SAM: encoder | decoder)
# int8 Q/DQ graphs: JSON {PyTorch module: "int8" | "fp32"} and {"method": ..., "pictures": N}
META_INT8_MODULES = "msla_deploy.int8_modules"
META_INT8_CALIBRATION = "msla_deploy.int8_calibration"
META_INT8_POLICY = "msla_deploy.int8_policy"  # SAM's encoder: {"name": policy, "kept_float": [units]}


ENGINE_STEM = "model"  # an export directory's engines: model_<precision>_trt<X.Y>.engine


def engine_name(stem: str, precision: str, trt_version: str, dla_core: Optional[int] = None) -> str:
    """`build`'s default engine file name: <stem>_fp16_trt10.3[_dla0].engine. Engines are specific to
    the TensorRT version and the GPU, so the version is in the name and builds for two versions can
    share one directory. The stem is ENGINE_STEM in an export directory, the graph's role in a
    multi-graph one (SAM: encoder_fp16_trt10.3.engine, decoder_fp32_trt10.3.engine), the ONNX's
    stem beside a bare ONNX."""
    dla = f"_dla{dla_core}" if dla_core is not None else ""
    return f"{stem}_{precision}_trt{trt_version}{dla}.engine"


def is_engine_file(name: str) -> bool:
    return any(str(name).lower().endswith(s) for s in ENGINE_SUFFIXES)


# --- Triton Inference Server model repository (msla-deploy package --triton) -----------------------
# the manifest's weights.source: where the exported weights came from
WEIGHTS_CHECKPOINT, WEIGHTS_RANDOM, WEIGHTS_FACTORY = "checkpoint", "random", "factory"
RANDOM_WEIGHTS_WARNING = "RANDOM WEIGHTS: exported without a checkpoint; its predictions and scores mean nothing"
META_WEIGHTS = "msla_deploy.weights"  # a packaged model's parameters: the weights' source

TRITON_CONFIG_NAME = "config.pbtxt"
TRITON_MODEL_VERSION = "1"  # the one version folder a package writes
TRITON_MODEL_FILES = {"tensorrt_plan": "model.plan", "onnxruntime_onnx": "model.onnx"}  # Triton's default file names
TRITON_CONFIG_MARKER = "# written by msla-deploy"  # first line of our config.pbtxt: what --overwrite may replace
TRITON_SCHEME = "triton://"
