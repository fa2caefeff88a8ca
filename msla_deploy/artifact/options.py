"""The export options: what `export` was asked for, as recorded in the manifest.

One dataclass, read back with `from_dict` wherever the exported model has to be rebuilt (the
torch backend, localize, reference pictures), so an option that changes the weights is never
forgotten on the way back. Checks that need no model are here (bad input never costs a model
build); the zoo name is checked by the export itself.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from ..choices import CALIB_METHODS, EXPORTERS, FLOAT_PRECISIONS, HEADS, INT8_POLICIES, PRECISIONS, UPSAMPLE_MODES
from ..errors import BadInput
from ..limits import MAX_PICTURE_PIXELS
from ..tasks import DEFAULT_TASK, SAM, TASK_NAMES, get_task

DEFAULT_MODEL = "efficientvit-seg-b1-cityscapes"
DEFAULT_RESOLUTION = (1024, 2048)  # of the default model; a zoo model's own is its name's, a factory's this
DEFAULT_OPSET = 17  # the highest opset TensorRT 8.5/8.6 (JetPack 5/6.0) parse
MIN_OPSET, MAX_OPSET = 14, 24  # HardSwish needs 14; TensorRT 10.13+/11 parse up to 24
STRIDE = 32  # five stride-2 stages


def parse_resolution(text: str) -> Tuple[int, int]:
    """'1024x2048' -> (1024, 2048); '512' -> (512, 512). Sides must be positive multiples of 32."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX*,]\s*(\d+))?\s*", text or "")
    if not match:
        raise BadInput(f"--res {text!r} is not HxW", "write it like 1024x2048 (height x width)")
    height = int(match.group(1))
    width = int(match.group(2) or height)
    for side, value in (("height", height), ("width", width)):
        if value <= 0 or value % STRIDE:
            lower = max(STRIDE, value // STRIDE * STRIDE)
            raise BadInput(
                f"--res {text}: {side} {value} is not a positive multiple of {STRIDE}",
                f"EfficientViT downsamples 5 times; use e.g. {lower} or {lower + STRIDE}",
            )
    if height * width > MAX_PICTURE_PIXELS:  # the pictures it would be fed are refused above this too
        raise BadInput(
            f"--res {text}: {height * width / 1e6:.0f} megapixels, above the limit of {MAX_PICTURE_PIXELS / 1e6:.0f}",
            "use a resolution like 1024x2048 (Cityscapes) or 2048x4096 at most",
        )
    return height, width


def parse_batch(text: str, max_batch: Optional[int]) -> Tuple[int, bool]:
    """--batch N (static) or --batch dynamic --max-batch N -> (batch, dynamic)."""
    text = (text or "").strip().lower()
    if text == "dynamic":
        if max_batch is None:
            raise BadInput(
                "--batch dynamic needs --max-batch N",
                "add --max-batch 8 (the largest batch TensorRT and Triton will be asked for)",
            )
        if max_batch < 2:
            raise BadInput(
                f"--max-batch {max_batch}: a dynamic batch needs a largest batch of at least 2",
                "use --max-batch 8 (or another N >= 2)",
            )
        return int(max_batch), True
    try:
        batch = int(text)
    except ValueError:
        raise BadInput(
            f"--batch {text!r} is neither a number nor 'dynamic'", "write --batch 4, or --batch dynamic --max-batch 8"
        ) from None
    if batch < 1:
        raise BadInput(f"--batch {batch} must be at least 1", "use --batch 1, or --batch dynamic --max-batch N")
    if max_batch is not None:
        raise BadInput(
            f"--max-batch applies to --batch dynamic, not to a static --batch {batch}",
            "add --batch dynamic, or drop --max-batch",
        )
    return batch, False


#: `--model timm:NAME`: a model timm builds (timm_models.py); its code is an installed package's
TIMM_PREFIX = "timm:"


def is_timm_spec(model) -> bool:
    return isinstance(model, str) and model.startswith(TIMM_PREFIX)


def is_factory_spec(model: str) -> bool:
    """'path/to/file.py:build' or 'package.module:build' name a user factory; zoo names have no ':'."""
    return ":" in model


_PATH_FIELDS = ("weights", "out", "models_dir", "artifacts_dir", "calib_images")
#: SAM's decoder: the largest number of prompts per call and of points per prompt (its TensorRT
#: profile's max; SAM's automatic mask generator sends 64 points per batch)
DEFAULT_MAX_PROMPTS, DEFAULT_MAX_POINTS = 64, 16
_SAM_FIELDS = ("max_prompts", "max_points", "int8_policy")
_INT8_FIELDS = ("calib_images", "calib_count", "calib_method", "int8_attention", "sensitivity", "min_argmax_agreement")
DEFAULT_CALIB_COUNT = 64  # pictures; RECOMMENDED_MINIMUM in export/calibration.py warns below 16-32
# ONNX Runtime's Percentile (99.999%): on the trained stand-in it kept 98.43-98.89% of the fp32
# labels where max kept 98.21-98.29% (4 calibration splits; benchmarks/README.md, int8 section),
# at about 1.8x max's calibration time (entropy: the same gain, 3x the time)
DEFAULT_CALIB_METHOD = "percentile"


@dataclass
class ExportOptions:
    model: str = DEFAULT_MODEL
    weights: Optional[Path] = None
    resolution: Optional[Tuple[int, int]] = None  # None: the model's own (with_model_defaults fills it in)
    task: Optional[str] = None  # a factory's task (--task); a zoo model's is its name's (filled in)
    batch: int = 1  # the static batch; with dynamic_batch, the largest (--max-batch)
    dynamic_batch: bool = False  # export --batch dynamic: the batch is the graph's one dynamic dimension, 1..batch
    opset: int = DEFAULT_OPSET
    exporter: str = "auto"
    out: Optional[Path] = None
    models_dir: Path = Path("models")
    artifacts_dir: Path = Path("artifacts")
    precision: str = "fp32"
    attention_precision: str = "fp32"  # LiteMLA attention core when precision is fp16
    io_dtype: str = "fp32"  # graph input/output dtype of the fp16 ONNX
    upsample: str = "cubic"  # head resize: cubic (upstream) or bilinear (TensorRT 8.5)
    fp16_guards: bool = True  # False: naive fp16, to see what the guards prevent
    stress_weights: bool = False  # LiteMLA activations at trained-model magnitudes
    seed: int = 0  # random weights and the synthetic reference images
    head: str = "logits"  # graph outputs: logits, labels (in-graph resize + argmax, int32) or both
    overwrite: bool = False  # replace an earlier export at --out (artifact/staging.py says what is kept)
    # int8 (precision "int8"): calibration pictures, and which modules stay fp32
    calib_images: Optional[Path] = None  # a folder of pictures or a dataset root
    calib_count: int = DEFAULT_CALIB_COUNT
    calib_method: str = DEFAULT_CALIB_METHOD
    int8_attention: bool = False  # also quantize the LiteMLA cores (to measure what the fp32 island saves)
    sensitivity: bool = False  # per-module sweep: int8_sensitivity.json/.png
    min_argmax_agreement: Optional[float] = None  # keep modules in fp32 until int8 meets this; also the budget
    # SAM's int8 encoder: the blocks kept out of Q/DQ (export/sam_int8.py); None: SAM's default policy
    int8_policy: Optional[str] = None
    # SAM (task "sam"): the decoder's dynamic dimensions' largest sizes
    max_prompts: int = DEFAULT_MAX_PROMPTS
    max_points: int = DEFAULT_MAX_POINTS

    def check(self) -> None:
        self.check_values()
        if self.precision == "fp32" and (self.attention_precision, self.io_dtype) != ("fp32", "fp32"):
            raise BadInput("--attention-precision/--io-dtype fp16 need --precision fp16", "add --precision fp16")
        self._check_int8()
        if self.weights is not None and not Path(self.weights).is_file():
            raise BadInput(f"--weights {self.weights}: no such file", "pass the path of a .pt state dict")

    def check_values(self) -> None:
        """Each value in its range or vocabulary: what a manifest's recorded options must pass
        too (a manifest is data; a batch of 0 or a 10^8-pixel side must not reach the runtime)."""
        if self.batch < 1:
            raise BadInput(f"--batch {self.batch} must be at least 1", "use --batch 1")
        if self.dynamic_batch and self.batch < 2:
            raise BadInput(
                f"--batch dynamic with --max-batch {self.batch}: a dynamic batch needs a largest batch of at least 2",
                "use --max-batch 8 (or another N >= 2), or a static --batch 1",
            )
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise BadInput(
                f"--opset {self.opset} is outside {MIN_OPSET}..{MAX_OPSET}",
                f"use {DEFAULT_OPSET} for TensorRT 8.x/JetPack 5-6, up to 20 for TensorRT 10.0-10.8",
            )
        for flag, value, allowed in (
            ("--exporter", self.exporter, EXPORTERS),
            ("--precision", self.precision, PRECISIONS),
            ("--attention-precision", self.attention_precision, FLOAT_PRECISIONS),
            ("--io-dtype", self.io_dtype, FLOAT_PRECISIONS),
            ("--calib-method", self.calib_method, CALIB_METHODS),
            ("--int8-policy", self.int8_policy or INT8_POLICIES[0], INT8_POLICIES),
            ("--upsample", self.upsample, UPSAMPLE_MODES),
            ("--head", self.head, HEADS),
            ("--task", self.task or DEFAULT_TASK, TASK_NAMES),
        ):
            if value not in allowed:
                raise BadInput(f"{flag} {value!r} is unknown", f"choose one of {', '.join(allowed)}")
        for flag, value, default in (
            ("--max-prompts", self.max_prompts, DEFAULT_MAX_PROMPTS),
            ("--max-points", self.max_points, DEFAULT_MAX_POINTS),
        ):
            if not 1 <= value <= 4096:
                raise BadInput(f"{flag} {value} is outside 1..4096", f"use e.g. {flag} {default}")
        if self.calib_count < 1:
            raise BadInput(
                f"--calib-count {self.calib_count} must be at least 1", f"use e.g. --calib-count {DEFAULT_CALIB_COUNT}"
            )
        m = self.min_argmax_agreement
        if m is not None and not 0.0 < m <= 1.0:
            raise BadInput(f"--min-argmax-agreement {m:g} is not a fraction in (0, 1]", "write e.g. 0.99")
        if self.resolution is not None:
            h, w = self.resolution
            parse_resolution(f"{h}x{w}")

    def _check_int8(self) -> None:
        int8 = self.precision == "int8"
        if int8 and (self.attention_precision, self.io_dtype) != ("fp32", "fp32"):
            raise BadInput(
                "--attention-precision/--io-dtype apply to fp16 exports",
                "drop them: int8 keeps fp32 I/O and an fp32 attention island",
            )
        if int8 and self.calib_images is None:
            raise BadInput(
                "--precision int8 needs calibration pictures",
                "add --calib-images DIR (photos like the deployment's, or a dataset root)",
            )
        used = [
            flag
            for flag, on in (
                ("--calib-images", self.calib_images is not None),
                ("--sensitivity", self.sensitivity),
                ("--int8-attention", self.int8_attention),
                ("--min-argmax-agreement", self.min_argmax_agreement is not None),
                ("--int8-policy", self.int8_policy is not None),
            )
            if on
        ]
        if used and not int8:
            raise BadInput(f"{used[0]} applies to int8 exports", "add --precision int8")

    @property
    def model_label(self) -> str:
        """The model's name as used in paths: zoo name, or the factory's name."""
        if is_factory_spec(self.model):
            where, factory = self.model.rsplit(":", 1)
            stem = Path(where).stem if where.endswith(".py") else where.rsplit(".", 1)[-1]
            return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{stem}-{factory}").strip("-") or "model"
        return self.model

    def output_dir(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        h, w = self.resolution or DEFAULT_RESOLUTION
        # a labels graph never lands in a logits export's folder (nor a single-mask SAM decoder in a multimask one's)
        head = "" if self.head in ("logits", get_task(self.task).default_head) else f"-{self.head}"
        batch = f"-dyn{self.batch}" if self.dynamic_batch else ""  # nor a dynamic-batch graph in a static one's
        return Path(self.artifacts_dir) / f"{self.model_label}-{h}x{w}-{self.precision}{head}{batch}"

    @property
    def batch_text(self) -> str:
        """The batch as people write it: 4, or 1..8 for a dynamic one."""
        return f"1..{self.batch}" if self.dynamic_batch else str(self.batch)

    def to_dict(self) -> Dict[str, Any]:
        data = dataclasses.asdict(self)
        data["resolution"] = None if self.resolution is None else list(self.resolution)
        for key in _PATH_FIELDS:
            data[key] = None if data[key] is None else str(data[key])
        data["out"] = str(self.output_dir())
        data.pop("overwrite")  # how this run writes, not what the artifact is: never recorded
        if not self.dynamic_batch:  # recorded for dynamic-batch exports only: static manifests stay as they were
            del data["dynamic_batch"]
        if data["task"] in (None, DEFAULT_TASK):  # likewise a segmentation export's (the manifest's model.task says it)
            del data["task"]
        if data.get("task") != SAM:  # recorded for SAM exports only
            for key in _SAM_FIELDS:
                del data[key]
        if self.precision != "int8":  # recorded for int8 exports only: other manifests stay as they were
            for key in (*_INT8_FIELDS, "int8_policy"):
                data.pop(key, None)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ExportOptions":
        """The options a manifest recorded. Unknown keys (a newer tool's) are ignored; a known key
        of the wrong type is BadInput. Defaults fill what an older manifest lacks."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: Dict[str, Any] = {}
        for key, value in data.items():
            if key not in fields or value is None:
                continue
            default = getattr(cls(), key)
            try:
                if key in _PATH_FIELDS:
                    values[key] = Path(str(value))
                elif key == "resolution":
                    h, w = value
                    values[key] = (int(h), int(w))
                elif key == "min_argmax_agreement":
                    if isinstance(value, bool) or not isinstance(value, (int, float)):
                        raise TypeError(key)
                    values[key] = float(value)
                elif isinstance(default, bool):
                    if not isinstance(value, bool):
                        raise TypeError(key)
                    values[key] = value
                elif isinstance(default, int):
                    if isinstance(value, bool) or not isinstance(value, int):
                        raise TypeError(key)
                    values[key] = value
                elif isinstance(default, str) or key in ("task", "int8_policy"):  # a str whose default is None
                    if not isinstance(value, str):
                        raise TypeError(key)
                    values[key] = value
            except (TypeError, ValueError):
                raise BadInput(
                    f"manifest options.{key} is {value!r}, not a valid value", "re-export the directory"
                ) from None
        options = cls(**values)
        try:
            options.check_values()
        except BadInput as exc:
            raise BadInput(f"manifest options: {exc.problem}", "re-export the directory") from None
        return options
