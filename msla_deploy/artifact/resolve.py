"""What a user points at, resolved once: an export directory, an .onnx or an engine, with the
manifest that describes it (if any), its reference bundle (if any), its precision and its I/O.

Every stage (validate, build, bench, reference, evaluate, predict, serve) starts here, so a
broken manifest, a truncated ONNX or a missing file is the same one-line error everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import onnx

from ..errors import BadInput
from ..tasks import Task, get_task
from . import graph as G
from .builds import BuildRecord, BuildsFile
from .manifest import Manifest, read_manifest_if_any
from .names import (
    META_MODEL,
    META_NUM_CLASSES,
    META_PRECISION,
    META_RECIPE,
    META_TASK,
    ONNX_NAME,
    ONNX_SUFFIX,
    RANDOM_WEIGHTS_WARNING,
    REFERENCE_DIR,
    TOPK_INDICES_NAME,
    TOPK_SCORES_NAME,
    VALIDATION_DIR,
    WEIGHTS_RANDOM,
    is_engine_file,
)
from .staging import recover_interrupted_swap

POINT_AT = "pass an export directory, a .onnx or a .engine"


@dataclass
class Artifact:
    path: Path  # as given
    kind: str  # "directory" | "onnx" | "engine"
    directory: Optional[Path]  # the export directory around it (the one with manifest.json), if any
    manifest: Optional[Manifest]
    onnx_path: Optional[Path]  # the ONNX that runs (beside an engine: the export's model.onnx, if any)
    engines: List[Path] = field(default_factory=list)  # a directory's engines, or the engine given
    _model: Optional[onnx.ModelProto] = field(default=None, repr=False)

    # --- the model ------------------------------------------------------------------------------
    @property
    def weights_source(self) -> Optional[str]:
        """Where the exported weights came from (the manifest's weights.source: checkpoint, random,
        factory); None where no manifest says (a bare .onnx or engine)."""
        if self.manifest is None:
            return None
        source = (self.manifest.weights or {}).get("source")
        return source if isinstance(source, str) else None

    @property
    def random_weights(self) -> bool:
        return self.weights_source == WEIGHTS_RANDOM

    @property
    def weights_warning(self) -> Optional[str]:
        """What every command that runs this artifact says in its header, report and --json."""
        return RANDOM_WEIGHTS_WARNING if self.random_weights else None

    @property
    def name(self) -> str:
        return self.path.name or str(self.path)

    @property
    def is_engine(self) -> bool:
        return self.kind == "engine"

    @property
    def onnx_model(self) -> Optional[onnx.ModelProto]:
        """The graph of onnx_path (loaded once), or None for an engine with no ONNX beside it."""
        if self._model is None and self.onnx_path is not None:
            self._model = G.load_onnx(self.onnx_path)
        return self._model

    @property
    def metadata(self) -> Dict[str, str]:
        return G.metadata(self.onnx_model) if self.onnx_model is not None else {}

    def single_engine(self) -> Optional[Path]:
        """The engine to run on TensorRT: the one given, or a directory's only engine."""
        if len(self.engines) > 1:
            raise BadInput(
                f"{self.path} holds {len(self.engines)} engines ({', '.join(e.name for e in self.engines)})",
                "pass the one to use",
            )
        return self.engines[0] if self.engines else None

    def model_file(self, tensorrt: bool) -> Path:
        """What runs: on TensorRT a directory's engine if it has one (a device that built it),
        else the ONNX; an engine given by itself is always the engine."""
        engine = self.single_engine() if tensorrt or self.onnx_path is None else None
        if self.is_engine or engine is not None:
            return engine or self.engines[0]
        if self.onnx_path is None:
            raise BadInput(
                f"{self.path} has no {ONNX_NAME}",
                "pass an export directory written by msla-deploy export, or the model file itself",
            )
        return self.onnx_path

    @property
    def onnx_files(self) -> Dict[str, Path]:
        """role ("fp32" | "fp16" | "int8") -> the export's ONNX for it; a bare ONNX fills the slot its
        dtypes say (any float16 tensor: the mixed-precision one)."""
        if self.manifest is not None and self.directory is not None:
            return {role: self.directory / rel for role, rel in self.manifest.precision.onnx_files.items()}
        if self.onnx_path is None:
            return {}
        return {("fp16" if G.has_fp16(self.onnx_model) else "fp32"): self.onnx_path}

    # --- facts about it -------------------------------------------------------------------------
    def build_record(self, engine: Path) -> Optional[BuildRecord]:
        """What `msla-deploy build` recorded about this engine: in the export's manifest, or in
        build.json beside an engine built from a bare ONNX. The latest record wins."""
        records = list(self.manifest.builds) if self.manifest is not None else []
        beside = BuildsFile.read_beside(engine) if not records else None
        if beside is not None:
            records = beside.builds
        mine = [r for r in records if Path(r.engine_file).name == engine.name]
        return mine[-1] if mine else None

    def precision_of(self, model_file: Path) -> Tuple[str, str]:
        """(precision, where it was read). An ONNX says it best itself (an fp16 export also holds
        an fp32 ONNX); an engine's build record speaks for it; then the export's options."""
        if model_file.suffix == ONNX_SUFFIX:
            meta = (
                G.metadata(self.onnx_model)
                if model_file == self.onnx_path
                else G.metadata(G.load_onnx(model_file, False))
            )
            if meta.get(META_PRECISION):
                return meta[META_PRECISION], f"ONNX metadata {META_PRECISION}"
        elif is_engine_file(model_file.name):
            record = self.build_record(model_file)
            if record is not None and record.precision:
                return record.precision, f"build record of {model_file.name}"
        options = self._recorded_options()
        if options is not None:
            return options.precision, "manifest options.precision"
        return "fp32", "default (the artifact records none)"

    def _recorded_options(self):
        """The export options the manifest recorded (None: no manifest, or none recorded)."""
        if self.manifest is None or "options" in self.manifest.absent:
            return None
        return self.manifest.options

    @property
    def precision(self) -> str:
        return self.precision_of(self.model_file(tensorrt=self.is_engine))[0]

    def budget_precision(self, precision: str) -> Tuple[str, Optional[str]]:
        """The precision whose default budget applies, and why if it is not the artifact's own.

        A head that resizes bilinearly approximates upstream's bicubic resize, so it cannot meet
        the fp32 budget against a bicubic PyTorch reference; export judges it like fp16, and so
        does every stage after it."""
        options = self._recorded_options()
        recorded = options.upsample if options is not None else None
        bilinear = recorded == "bilinear"
        if recorded is None and self.onnx_model is not None:
            modes = {
                a.s.decode()
                for n in self.onnx_model.graph.node
                if n.op_type == "Resize"
                for a in n.attribute
                if a.name == "mode"
            }
            bilinear = "linear" in modes and "cubic" not in modes
        if precision == "fp32" and bilinear:
            return "fp16", "the head resizes bilinearly (upstream: bicubic), judged like fp16 as export does"
        return precision, None

    @property
    def inputs(self) -> List[G.TensorSpec]:
        return G.graph_inputs(self.onnx_model) if self.onnx_model is not None else []

    @property
    def outputs(self) -> List[G.TensorSpec]:
        return G.graph_outputs(self.onnx_model) if self.onnx_model is not None else []

    @property
    def batch(self) -> Optional[int]:
        if (
            self.inputs
            and self.inputs[0].shape
            and isinstance(self.inputs[0].shape[0], int)
            and self.inputs[0].shape[0] > 0
        ):
            return int(self.inputs[0].shape[0])
        if self.manifest is not None and self.manifest.options is not None:
            return self.manifest.options.batch
        return None

    @property
    def resolution(self) -> Optional[Tuple[int, int]]:
        """(H, W) of the input pictures."""
        if self.inputs and len(self.inputs[0].shape) == 4 and all(isinstance(d, int) for d in self.inputs[0].shape[2:]):
            return int(self.inputs[0].shape[2]), int(self.inputs[0].shape[3])
        if self.manifest is not None and self.manifest.options is not None:
            return tuple(self.manifest.options.resolution)
        return None

    @property
    def model_name(self) -> Optional[str]:
        if self.manifest is not None and self.manifest.model.name:
            return self.manifest.model.name
        return self.metadata.get(META_MODEL)

    @property
    def task(self) -> Task:
        """What the model's outputs mean: the manifest's model.task, else the graph's META_TASK, else
        segmentation (every export before tasks existed). An unknown name is BadInput."""
        if self.manifest is not None and self.manifest.model.task:
            return get_task(self.manifest.model.task)
        return get_task(self.metadata.get(META_TASK))

    @property
    def graph_roles(self) -> Tuple[str, ...]:
        """The graphs of a multi-graph export directory (SAM: encoder, decoder); () for one graph."""
        if self.kind != "directory" or self.manifest is None:
            return ()
        return tuple(g.role for g in self.manifest.graphs)

    def require_single_graph(self, stage: str, fix: str) -> None:
        """A stage that runs one graph refuses a directory of several in one line (rather than
        running the first graph it finds as if it were the model)."""
        if self.graph_roles:
            raise BadInput(
                f"{stage} does not take {self.path}: a {self.task.name} export of {len(self.graph_roles)} graphs "
                f"({', '.join(self.graph_roles)})",
                fix,
            )

    @property
    def num_classes(self) -> Optional[int]:
        if self.manifest is not None and self.manifest.model.num_classes:
            return self.manifest.model.num_classes
        text = self.metadata.get(META_NUM_CLASSES, "")
        if text.isdigit():
            return int(text)
        # a topk head's [N, k] says k, not the classes
        outputs = [o for o in self.outputs if o.name not in (TOPK_INDICES_NAME, TOPK_SCORES_NAME)]
        return self.task.num_classes(tuple(outputs[0].shape)) if outputs else None

    @property
    def max_batch(self) -> Optional[int]:
        """The largest batch of a dynamic-batch export (export --batch dynamic --max-batch N); None: static."""
        recorded = G.max_batch_of(self.metadata)
        if recorded is not None:
            return recorded
        options = self.manifest.options if self.manifest is not None else None
        return options.batch if options is not None and options.dynamic_batch else None

    @property
    def recipe_sha256(self) -> Optional[str]:
        if self.manifest is not None and self.manifest.recipe_sha256:
            return self.manifest.recipe_sha256
        return self.metadata.get(META_RECIPE)

    # --- where things are -----------------------------------------------------------------------
    def reference_dir(self, given: Optional[Path] = None) -> Path:
        """The reference bundle folder: --reference, or reference/ of the export; BadInput if none."""
        if given is not None:
            if not Path(given).is_dir():
                raise BadInput(f"--reference {given}: not a directory", "pass the reference/ folder of an export")
            return Path(given)
        folder = (self.path if self.kind == "directory" else self.path.parent) / REFERENCE_DIR
        if not folder.is_dir():
            raise BadInput(
                f"no reference bundle at {folder}",
                "pass --reference DIR (the reference/ folder of the export this artifact came from)",
            )
        return folder

    def default_report_dir(self, stage: str = VALIDATION_DIR) -> Path:
        if self.kind == "directory":
            return self.path / stage
        return self.path.parent / f"{stage}-{self.path.name}"

    def describe(self, model_file: Optional[Path] = None) -> Dict:
        model_file = model_file or self.model_file(tensorrt=self.is_engine)
        precision, source = self.precision_of(model_file)
        return {
            "path": str(self.path),
            "name": self.path.name,
            "kind": self.kind,
            "model_file": str(model_file),
            "directory": None if self.directory is None else str(self.directory),
            "model": self.model_name,
            "precision": precision,
            "precision_source": source,
            "recipe_sha256": self.recipe_sha256,
        }


def _engines(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_engine_file(p.name))


def resolve(path: Path) -> Artifact:
    """An Artifact, or BadInput naming what is wrong (checked before anything runs)."""
    path = Path(path)
    if not path.exists():
        recover_interrupted_swap(path)  # a directory a killed swap left beside itself comes back
    if not path.exists():
        raise BadInput(f"{path}: no such file or directory", POINT_AT)
    if path.is_dir():
        manifest = read_manifest_if_any(path)
        onnx_path = path / ONNX_NAME
        if manifest is not None:
            roles = manifest.precision.onnx_files
            primary = roles.get("int8") or roles.get("fp16") or roles.get("fp32")
            onnx_path = path / primary if primary else onnx_path
        engines = _engines(path)
        if not onnx_path.is_file() and not engines:
            raise BadInput(
                f"{path} has neither {ONNX_NAME} nor an .engine",
                "pass an export directory written by msla-deploy export, or the model file",
            )
        artifact = Artifact(
            path,
            "directory",
            path if manifest is not None else None,
            manifest,
            onnx_path if onnx_path.is_file() else None,
            engines,
        )
    elif path.suffix == ONNX_SUFFIX:
        manifest = read_manifest_if_any(path.parent)
        artifact = Artifact(path, "onnx", path.parent if manifest is not None else None, manifest, path)
    elif is_engine_file(path.name):
        manifest = read_manifest_if_any(path.parent)
        beside = path.parent / ONNX_NAME
        artifact = Artifact(
            path,
            "engine",
            path.parent if manifest is not None else None,
            manifest,
            beside if beside.is_file() else None,
            [path],
        )
    else:
        raise BadInput(f"{path}: not an .onnx, an .engine or a directory", POINT_AT)
    if artifact.onnx_path is not None and not artifact.is_engine:
        _ = artifact.onnx_model  # a truncated file is bad input now, not an internal error mid-run
    return artifact
