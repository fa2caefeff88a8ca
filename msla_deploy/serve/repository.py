"""A Triton Inference Server model repository for an artifact:

    REPO/<name>/config.pbtxt
    REPO/<name>/1/model.plan    (platform tensorrt_plan)   or   model.onnx (onnxruntime_onnx)

Names, dims and dtypes come from the artifact's graph. A static export's config says
`max_batch_size: 0` and the batch is the first of the dims (Triton's dynamic batcher needs a
dynamic batch dimension); an `export --batch dynamic --max-batch N` one says `max_batch_size: N`,
dims without the batch, and turns the dynamic batcher on (a TensorRT engine of it carries the
profile 1..N that `build` gives it). The manifest's recipe hash rides along in `parameters`, so a
server's model can be traced back to the export that made it, and so does the weights' source
(random weights stay visible on the server that runs them).

A classifier's config gives its outputs ([N, 1000] logits or probs; a topk head's indices and
scores) like any others, and where Triton's classification extension fits (logits or probs in
FP32, with a batch Triton can split: dynamic, or a static batch of 1) names the class names
(`label_filename: "labels.txt"` on the output, labels.txt beside config.pbtxt): a client may then
ask for `class_count` and gets "score:index:name" strings. The names are the Classifier's
(runtime/classifier.py `class_names_for`: --labels, or ImageNet-1k for the zoo's classifiers);
without known names no label file is written (Triton then answers "score:index").

The repository is written where the user names it and nowhere else: never onto the artifact's
files nor inside its export directory, and REPO/<name> never through a link out of REPO
(artifact/outputs.py); a refusal is exit 2 before anything is written.

The config is written as text by us (the base install stays free of tritonclient); where
tritonclient is installed it is parsed back with Triton's own ModelConfig message before anything
is written, and the tests always do.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from .. import __version__
from ..artifact.files import sha256_file, write_bytes_atomic
from ..artifact.names import (
    META_MODEL,
    META_PRECISION,
    META_RECIPE,
    META_WEIGHTS,
    TRITON_CONFIG_MARKER,
    TRITON_CONFIG_NAME,
    TRITON_MODEL_FILES,
    TRITON_MODEL_VERSION,
    TRITON_PLATFORMS,
)
from ..artifact.outputs import check_repository_entry, guard_for
from ..artifact.staging import PARTIAL_TAG, staging_path, swap_in
from ..errors import BadInput, one_line_text
from ..runtime.triton import KSERVE_DTYPES
from ..tasks import CLASSIFICATION, OutputKind
from . import deps
from .model_io import (
    MAX_QUEUE_DELAY_US,
    Artifact,
    BatchLayout,
    TensorSpec,
    batch_layout,
    check_model_name,
    default_name,
    engine_io,
    onnx_io,
    open_artifact,
)

PLATFORM_CHOICES = ("auto",) + TRITON_PLATFORMS  # = choices.PLATFORM_CHOICES
REPOSITORY_FLAG = "--triton"
#: the class names of a classifier's outputs, beside config.pbtxt (Triton's label_filename)
LABELS_NAME = "labels.txt"
#: output dtypes Triton's classification extension sorts (its TopkClassifications: no FP16/BF16)
CLASSIFIABLE_DTYPES = ("float32", "float64", "int32", "int64", "uint8", "int8", "uint16", "int16", "uint32", "uint64")


@dataclass
class PackageOptions:
    artifact: Path
    repository: Path
    name: Optional[str] = None
    platform: str = "auto"
    instances: int = 1
    gpus: Optional[List[int]] = None  # None: Triton's default (every visible GPU)
    overwrite: bool = False
    labels: Optional[Path] = None  # a classifier's class names, one a line (default: class_names_for's)


@dataclass
class Labels:
    """A classifier's label file: which outputs name it, the names, where they came from."""

    outputs: List[str]
    names: Tuple[str, ...]
    source: str  # imagenet-1k, "labels file PATH"

    def to_dict(self) -> Dict:
        return {"file": LABELS_NAME, "outputs": self.outputs, "class_names": self.source, "count": len(self.names)}


@dataclass
class InstanceGroup:
    kind: str  # "KIND_GPU" | "KIND_CPU"
    count: int
    gpus: Optional[List[int]] = None
    why: str = ""

    def to_dict(self) -> Dict:
        return {"kind": self.kind, "count": self.count, "gpus": self.gpus, "why": self.why}


@dataclass
class Package:
    name: str
    platform: str
    model_dir: Path
    config_path: Path
    model_path: Path
    source: Path
    inputs: List[TensorSpec]
    outputs: List[TensorSpec]
    io_source: str
    layout: BatchLayout
    instance_group: InstanceGroup
    parameters: Dict[str, str]
    config_text: str
    checked_with_model_config: bool
    replaced: bool = False
    notes: List[str] = field(default_factory=list)
    weights_source: Optional[str] = None  # the manifest's weights.source (None: no manifest says)
    weights_warning: Optional[str] = None  # said wherever the model runs: random weights
    task: str = ""  # the artifact's task (tasks.py)
    labels: Optional[Labels] = None  # a classifier's label file (Triton's classification extension)

    def to_dict(self) -> Dict:
        return {
            "name": self.name,
            "platform": self.platform,
            "model_dir": str(self.model_dir),
            "config": str(self.config_path),
            "model_file": str(self.model_path),
            "source": str(self.source),
            "sha256": sha256_file(self.model_path),
            "max_batch_size": self.layout.max_batch_size,
            "batch": self.layout.batch,
            "dynamic_batch": self.layout.dynamic,
            "io_source": self.io_source,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "instance_group": self.instance_group.to_dict(),
            "parameters": self.parameters,
            "checked_with_model_config": self.checked_with_model_config,
            "replaced": self.replaced,
            "notes": self.notes,
            "weights_source": self.weights_source,
            "weights_warning": self.weights_warning,
            "task": self.task,
            "labels": None if self.labels is None else self.labels.to_dict(),
        }


def parse_gpus(text: Optional[str]) -> Optional[List[int]]:
    if text is None or not text.strip():
        return None
    try:
        gpus = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BadInput(f"--gpus {text!r} is not a list of GPU indices", "write e.g. --gpus 0 or --gpus 0,1") from None
    if not gpus or any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
        raise BadInput(f"--gpus {text!r} is not a list of distinct GPU indices", "write e.g. --gpus 0 or --gpus 0,1")
    return gpus


def choose_platform(art: Artifact, requested: str) -> str:
    if requested not in PLATFORM_CHOICES:
        raise BadInput(f"--platform {requested!r} is unknown", f"choose one of {', '.join(PLATFORM_CHOICES)}")
    if requested == "onnxruntime_onnx" and art.onnx_path is None:
        raise BadInput(
            f"--platform onnxruntime_onnx: {art.path} is a TensorRT engine with no ONNX to package",
            "package the .onnx, or use --platform tensorrt_plan",
        )
    if requested == "tensorrt_plan" and not art.engines:
        raise BadInput(
            f"--platform tensorrt_plan: {art.path} holds no TensorRT engine",
            "build one first (msla-deploy build), or use --platform onnxruntime_onnx",
        )
    platform = requested
    if requested == "auto":  # an engine where one was built (it is what a GPU fleet runs), else the ONNX
        platform = "tensorrt_plan" if art.engines else "onnxruntime_onnx"
    if platform == "tensorrt_plan" and len(art.engines) > 1:
        raise BadInput(
            f"{art.path} holds {len(art.engines)} engines ({', '.join(e.name for e in art.engines)})",
            "pass the engine to package",
        )
    return platform


def instance_group(platform: str, instances: int, gpus: Optional[List[int]]) -> InstanceGroup:
    if instances < 1:
        raise BadInput(f"--instances {instances} must be at least 1", "use --instances 1 or more")
    if platform == "tensorrt_plan":
        return InstanceGroup("KIND_GPU", instances, gpus, "a TensorRT engine runs on the GPU type it was built for")
    if gpus is not None:
        return InstanceGroup("KIND_GPU", instances, gpus, "--gpus given: ONNX Runtime's CUDA provider in Triton")
    # The ONNX repository is the portable one (any machine, no engine to rebuild); without --gpus
    # it runs where it certainly can, on the CPU, rather than failing to load on a GPU-less host.
    return InstanceGroup("KIND_CPU", instances, None, "ONNX Runtime on the CPU (pass --gpus to run it on GPUs)")


def _quote(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dims_text(dims: Sequence) -> str:
    return f"[ {', '.join(str(d) for d in dims)} ]" if len(dims) else "[ ]"


def _tensor_blocks(
    tensors: Sequence[TensorSpec],
    layout: BatchLayout,
    where: str,
    labelled: Sequence[str] = (),
    dims_of: Optional[Callable[[TensorSpec], Tuple]] = None,
    reshape: Optional[Dict[str, Tuple]] = None,
) -> List[str]:
    blocks = []
    for t in tensors:
        dims = dims_of(t) if dims_of is not None else layout.dims(t)
        shaped = (reshape or {}).get(t.name)  # the graph's shape where the wire's differs (Triton reshapes)
        shaped_line = "" if shaped is None else f"    reshape: {{ shape: {_dims_text(shaped)} }}\n"
        if t.dtype not in KSERVE_DTYPES:
            raise BadInput(
                f"{where}: {t.name} has dtype {t.dtype}, which Triton has no type for", "export with fp32 or fp16 I/O"
            )
        label = f"    label_filename: {_quote(LABELS_NAME)}\n" if t.name in labelled else ""
        blocks.append(
            "  {\n"
            f"    name: {_quote(t.name)}\n"
            f"    data_type: TYPE_{KSERVE_DTYPES[t.dtype]}\n"
            f"    dims: {_dims_text(dims)}\n"
            f"{shaped_line}"
            f"{label}"
            "  }"
        )
    return blocks


def config_text(
    name: str,
    platform: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    layout: BatchLayout,
    group: InstanceGroup,
    parameters: Dict[str, str],
    source: str,
    labelled: Sequence[str] = (),
    dims_of: Optional[Callable[[TensorSpec], Tuple]] = None,
    reshape: Optional[Dict[str, Tuple]] = None,
) -> str:
    """config.pbtxt in protobuf text format (comments allowed; field names are ModelConfig's);
    `labelled`: the outputs whose classes labels.txt names (Triton's classification extension);
    `dims_of`: a tensor's dims where they are not the layout's; `reshape`: input -> the shape the
    model takes where the request's differs."""
    lines = [
        f"{TRITON_CONFIG_MARKER} {__version__} from {source}",
        f"# dynamic batch 1..{layout.batch}: dims without the batch, Triton's dynamic batcher forms the batches"
        if layout.dynamic
        else "# static batch: max_batch_size 0 and the batch is the first dim (no dynamic batching)",
        f"name: {_quote(name)}",
        f"platform: {_quote(platform)}",
        f"max_batch_size: {layout.max_batch_size}",
        "input [",
        ",\n".join(_tensor_blocks(inputs, layout, source, (), dims_of, reshape)),
        "]",
        "output [",
        ",\n".join(_tensor_blocks(outputs, layout, source, labelled, dims_of)),
        "]",
        "instance_group [",
        "  {",
        f"    kind: {group.kind}",
        f"    count: {group.count}",
    ]
    if group.gpus is not None:
        lines.append(f"    gpus: [ {', '.join(str(g) for g in group.gpus)} ]")
    lines += ["  }", "]"]
    if layout.dynamic:
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US} }}")
    for key, value in parameters.items():
        lines.append(f"parameters {{ key: {_quote(key)} value: {{ string_value: {_quote(value)} }} }}")
    return "\n".join(lines) + "\n"


def classification_labels(
    art: Artifact, outputs: Sequence[TensorSpec], layout: BatchLayout, labels: Optional[Path], notes: List[str]
) -> Optional[Labels]:
    """The label file of a classifier's score outputs (logits, probs), where Triton's
    classification extension can use it; None (with a note saying why) where it cannot."""
    from ..runtime.classifier import NAMES_FROM_INDEX, class_names_for

    kinds = {s.name: s.kind for specs in art.task.heads.values() for s in specs}
    scored = [t for t in outputs if kinds.get(t.name) in (OutputKind.LOGITS, OutputKind.PROBS) and len(t.shape) == 2]
    if not scored:  # a topk head: its indices are the classes already
        if labels is not None:
            raise BadInput(
                f"--labels: {art.path} gives top-k indices, not per-class scores Triton could label",
                "leave --labels out, or package an export with --head logits or probs",
            )
        return None
    num_classes = int(scored[0].shape[1])
    names, source = class_names_for(art, num_classes, labels)
    if source == NAMES_FROM_INDEX:
        notes.append(
            f"no class names known for {art.model_name or art.path}: no {LABELS_NAME} "
            "(Triton's classification answers score:index; pass --labels FILE for names)"
        )
        return None
    why_not = None
    if not layout.dynamic and layout.batch > 1:
        why_not = f"a static batch of {layout.batch} (max_batch_size 0) would be classified as one picture"
    elif any(t.dtype not in CLASSIFIABLE_DTYPES for t in scored):
        why_not = "Triton's classification does not sort fp16 outputs"
    if why_not:
        notes.append(f"no {LABELS_NAME}: {why_not}; clients rank the {scored[0].name} output themselves")
        return None
    return Labels([t.name for t in scored], names, source)


#: task name -> its extra files (the label file of a classifier)
LABEL_FILES = {CLASSIFICATION: classification_labels}


def parse_config(text: str):
    """The text as Triton's ModelConfig (raises on unknown fields or enum values)."""
    from google.protobuf import text_format

    return text_format.Parse(text, deps.model_config_message()())


def check_with_model_config(text: str) -> bool:
    if not deps.have_tritonclient():
        return False
    try:
        parse_config(text)
    except Exception as exc:  # a config we wrote that Triton would refuse is our bug: stop before writing
        raise RuntimeError(
            f"generated config.pbtxt does not parse as Triton's ModelConfig: {one_line_text(exc)}"
        ) from None
    return True


def _is_ours(model_dir: Path) -> bool:
    config = model_dir / TRITON_CONFIG_NAME
    try:
        with open(config) as f:
            return f.readline().startswith(TRITON_CONFIG_MARKER)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    path, folder = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return path == folder or folder in path.parents


def check_destination(art: Artifact, repository: Path, model_dir: Path) -> None:
    """Refuse (exit 2) a repository on the artifact's files or inside its export directory, and a
    model folder that is a link out of the repository: the copy of the model must land where the
    user said, and never become part of (or replace part of) what it was copied from."""
    guard = guard_for(art)
    guard.check(repository, REPOSITORY_FLAG)
    guard.check(model_dir, REPOSITORY_FLAG)
    # beside the artifact's files is fine for reports, not for a repository: a second model
    # (engine) inside the export would travel with it, and the export directory is no repository
    home = art.directory or (art.path if art.kind == "directory" else None)  # with a manifest or without
    if home is not None and _inside(repository, home):
        raise BadInput(
            f"{REPOSITORY_FLAG} {repository} is inside the export directory {home}",
            "put the model repository outside the artifact, e.g. --triton triton-repo",
        )
    check_repository_entry(repository, model_dir, REPOSITORY_FLAG)


def check_model_dir(repository: Path, model_dir: Path, overwrite: bool) -> None:
    """REPO/<name> may be written: new, or ours and --overwrite given."""
    if repository.exists() and not repository.is_dir():
        raise BadInput(f"--triton {repository} is a file", "pass a directory for the model repository")
    if model_dir.exists() or model_dir.is_symlink():
        if not overwrite:
            raise BadInput(f"{model_dir} already exists", "pass --overwrite to replace it, or choose another --name")
        if not model_dir.is_dir() or not _is_ours(model_dir):
            raise BadInput(
                f"{model_dir} exists and was not written by msla-deploy", "remove it yourself, or choose another --name"
            )


def write_model_dir(model_dir: Path, files: Dict[str, Union[Path, bytes]]) -> bool:
    """Build the whole model folder beside its place, then rename it in: a server polling the
    repository never sees a half-copied model, and a failure leaves nothing behind. `files`:
    relative path -> a file to copy or the bytes to write. Returns whether a folder was replaced."""
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(model_dir, PARTIAL_TAG)
    replaced = model_dir.exists()
    try:
        if staging.exists():
            shutil.rmtree(staging)
        (staging / TRITON_MODEL_VERSION).mkdir(parents=True)
        for relative, content in files.items():
            if isinstance(content, bytes):
                write_bytes_atomic(staging / relative, content)
            else:
                shutil.copyfile(content, staging / relative)
        swap_in(model_dir, staging)  # the previous model is put back if the swap is interrupted
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return replaced


def package_triton(options: PackageOptions, steps=None):
    """A Package; for a SAM export the SamPackage of its two models (serve/sam_repository.py)."""
    art = open_artifact(options.artifact)
    if art.graph_roles:
        from .sam_repository import package_sam

        return package_sam(options, art)
    platform = choose_platform(art, options.platform)
    name = check_model_name(options.name) if options.name is not None else default_name(art)
    group = instance_group(platform, options.instances, options.gpus)
    repository = Path(options.repository)
    model_dir = repository / name
    check_destination(art, repository, model_dir)
    check_model_dir(repository, model_dir, options.overwrite)

    notes: List[str] = []
    if platform == "tensorrt_plan":
        source = art.engines[0]
        inputs, outputs, io_source = engine_io(art, source)
        notes.append(
            "a TensorRT engine runs only on the GPU type and TensorRT version it was built with: "
            "the serving fleet needs the same (or rebuild there with msla-deploy build)"
        )
    else:
        source = art.onnx_path
        inputs, outputs = onnx_io(source)
        io_source = source.name
    layout = batch_layout(inputs, outputs, art.max_batch, str(source))
    parameters = {
        k: v
        for k, v in (
            (META_RECIPE, art.recipe_sha256),
            (META_MODEL, art.model_name),
            (META_PRECISION, art.precision),
            (META_WEIGHTS, art.weights_source),
        )
        if v
    }
    if META_RECIPE not in parameters:
        notes.append(f"{art.path} records no recipe hash (not written by msla-deploy export?): none in the config")
    task = art.task
    labeller = LABEL_FILES.get(task.name)
    if labeller is None and options.labels is not None:
        raise BadInput(
            f"--labels is for classification models; {art.path} is a model for {task.title}", "leave --labels out"
        )
    labels = labeller(art, outputs, layout, options.labels, notes) if labeller else None
    text = config_text(
        name, platform, inputs, outputs, layout, group, parameters, str(source), labels.outputs if labels else ()
    )
    checked = check_with_model_config(text)
    if not checked:
        notes.append("tritonclient is not installed: the config was not parsed back with Triton's ModelConfig here")

    files: Dict[str, Union[Path, bytes]] = {
        f"{TRITON_MODEL_VERSION}/{TRITON_MODEL_FILES[platform]}": source,
        TRITON_CONFIG_NAME: text.encode(),
    }
    if labels is not None:
        files[LABELS_NAME] = "".join(f"{n}\n" for n in labels.names).encode()
    replaced = write_model_dir(model_dir, files)
    return Package(
        name=name,
        platform=platform,
        model_dir=model_dir,
        config_path=model_dir / TRITON_CONFIG_NAME,
        model_path=model_dir / TRITON_MODEL_VERSION / TRITON_MODEL_FILES[platform],
        source=source,
        inputs=inputs,
        outputs=outputs,
        io_source=io_source,
        layout=layout,
        instance_group=group,
        parameters=parameters,
        config_text=text,
        checked_with_model_config=checked,
        replaced=replaced,
        notes=notes,
        weights_source=art.weights_source,
        weights_warning=art.weights_warning,
        task=task.name,
        labels=labels,
    )
