"""Option vocabularies: each closed set of choices once, as a str-Enum.

The command line declares its options with these types, so Typer shows the choices in --help,
completes them in the shell and refuses anything else with its usage error (exit 2). The options
layer and the torch-side policy check the same sets (the `*_VALUES` tuples below); the values are
the strings the manifests and records have always held, and a member is such a string (it compares,
hashes, formats and serialises as its value), so nothing written to disk changes.

Open sets are not here as enums: a backend may also be `triton://HOST:PORT/MODEL` (BACKEND_VALUES
are its closed part; cli_options.py validates the rest), and a TensorRT version is any X.Y.
"""

from __future__ import annotations

from enum import Enum
from typing import Tuple

from .tasks import TASK_NAMES


class Choice(str, Enum):
    """A closed choice that is also its string value: str(), repr() and f-strings give what the
    plain string gave ("fp32", not "Precision.FP32"), on every Python from 3.8, so messages,
    reports and files read as before."""

    def __str__(self) -> str:
        return str(self.value)

    def __repr__(self) -> str:
        return repr(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def values(cls) -> Tuple[str, ...]:
        return tuple(member.value for member in cls)


class Precision(Choice):
    """What the graph computes in; int8: Q/DQ quantization of the fp32 export."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class FloatPrecision(Choice):
    """What the PyTorch precision policy computes in (attention, graph I/O)."""

    FP32 = "fp32"
    FP16 = "fp16"


class InspectPrecision(Choice):
    """What `inspect` assumes the graph will be built with; auto reads it off the graph."""

    AUTO = "auto"
    FP16 = "fp16"
    FP32 = "fp32"
    INT8 = "int8"


class Upsample(Choice):
    CUBIC = "cubic"  # upstream's, parity with PyTorch
    BILINEAR = "bilinear"  # TensorRT 8.5 (JetPack 5) has no cubic resize


class Exporter(Choice):
    AUTO = "auto"  # dynamo, torchscript if it fails
    DYNAMO = "dynamo"
    TORCHSCRIPT = "torchscript"


class Head(Choice):
    """Graph outputs. Segmentation: logits, in-graph resize + argmax labels, or both.
    Classification: logits, softmax probs, or topk (the best classes and their probabilities).
    SAM's decoder: multimask (its four masks) or single (mask 0).
    Which heads a model takes is its task's (tasks.py)."""

    LOGITS = "logits"
    LABELS = "labels"
    BOTH = "both"
    PROBS = "probs"
    TOPK = "topk"
    MULTIMASK = "multimask"
    SINGLE = "single"


#: what a model's outputs mean (tasks.py owns the tasks): export --task for a FILE.py:FACTORY model
TaskName = Choice("TaskName", [(name.upper(), name) for name in TASK_NAMES], module=__name__, qualname="TaskName")


class CalibMethod(Choice):
    """ONNX Runtime's MinMax, Entropy, Percentile calibrators."""

    MAX = "max"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class Int8Policy(Choice):
    """What a SAM int8 encoder keeps out of Q/DQ besides the LiteMLA cores and the LayerNorm2d statistics
    (export/sam_int8.py says which blocks each names; benchmarks/README.md measures them)."""

    ALL = "all"  # every block's convolutions int8
    ENDS_FLOAT = "ends-float"  # the stem conv and the neck's output projection float
    MBCONV_FLOAT = "mbconv-float"  # the MBConv blocks (depthwise, stages 3-4 and the attention blocks' local ones)
    NECK_FLOAT = "neck-float"  # the SAM neck (input projections, FusedMBConvs, output projection) float


class BackendName(Choice):
    """What runs an artifact (runtime.choose): auto picks TensorRT for an engine, else ONNX
    Runtime with CUDA where it is listed."""

    AUTO = "auto"
    TORCH = "torch"
    ORT_CPU = "ort-cpu"
    ORT_CUDA = "ort-cuda"
    ORT_TRT = "ort-trt"
    TRT = "trt"


def _without(name: str, of: type, *left_out: Choice) -> type:
    """A Choice enum of `of`'s members but `left_out` (one list of names, several closed sets)."""
    return Choice(name, [(m.name, m.value) for m in of if m not in left_out], module=__name__, qualname=name)


#: every backend but PyTorch: what `serve` runs inside Triton, what `validate` checks (its reference IS PyTorch)
NonTorchBackend = _without("NonTorchBackend", BackendName, BackendName.TORCH)


class Typing(Choice):
    """TensorRT network typing: auto picks strong on 10.12+ for an fp16 export, else weak."""

    AUTO = "auto"
    STRONG = "strong"
    WEAK = "weak"


class HardwareCompat(Choice):
    NONE = "none"
    AMPERE_PLUS = "ampere+"  # TensorRT >= 8.6
    SAME_CC = "same-cc"  # TensorRT >= 10.9


class Dataset(Choice):
    """evaluate's dataset layouts; auto recognises the first three."""

    AUTO = "auto"
    CITYSCAPES = "cityscapes"
    ADE20K = "ade20k"
    FOLDER = "folder"  # images/ + labels/


class SamPrompt(Choice):
    """evaluate's prompt per SAM instance (upstream's eval_efficientvit_sam_model.py --prompt_type)."""

    BOX = "box"  # the ground-truth box
    POINT = "point"  # the first click of upstream's clicker


class Platform(Choice):
    """Triton's platform of a packaged model; auto: tensorrt_plan for an engine, else onnxruntime_onnx."""

    AUTO = "auto"
    TENSORRT_PLAN = "tensorrt_plan"
    ONNXRUNTIME_ONNX = "onnxruntime_onnx"


# The same sets as plain tuples, for membership checks and messages (options layer, torch side)
PRECISIONS = Precision.values()
FLOAT_PRECISIONS = FloatPrecision.values()
INSPECT_PRECISIONS = InspectPrecision.values()
UPSAMPLE_MODES = Upsample.values()
EXPORTERS = Exporter.values()
HEADS = Head.values()
CALIB_METHODS = CalibMethod.values()
INT8_POLICIES = Int8Policy.values()
BACKENDS = BackendName.values()
ORT_BACKENDS = (BackendName.ORT_CPU.value, BackendName.ORT_CUDA.value, BackendName.ORT_TRT.value)
NON_TORCH_BACKENDS = NonTorchBackend.values()
TYPINGS = Typing.values()
HARDWARE_COMPAT = HardwareCompat.values()
DATASETS = Dataset.values()
TRITON_PLATFORMS = tuple(p for p in Platform.values() if p != Platform.AUTO.value)
PLATFORM_CHOICES = Platform.values()

#: the train id of pixels that count for no class (label maps; evaluate --ignore-index's default). Here, not in
#: classes.py, because that module imports numpy and `msla-deploy --help` must not.
IGNORE_INDEX = 255

#: TensorRT versions offered for --target-trt: the JetPack releases' (docs: TensorRT version rules) and 11.x.
#: An open set (any 8.5 ... 11.x, a patch suffix is fine): these are examples and completions.
TRT_TARGET_EXAMPLES = ("8.5", "8.6", "10.3", "10.13", "11")
