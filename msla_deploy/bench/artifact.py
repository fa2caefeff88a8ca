"""What `bench ARTIFACT` points at. Like validate's resolver (whose helpers it uses) but with no
reference bundle: a benchmark needs only something to run, so a bare .onnx anywhere is fine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import BadInput
from ..parity.artifact import DEFAULT_ONNX, ENGINE_SUFFIXES, ONNX_SUFFIX, artifact_precision, load_onnx, read_manifest_if_any


@dataclass
class BenchArtifact:
    path: Path  # as given
    manifest: Optional[Dict]  # manifest.json of the export directory around it, if any
    onnx_path: Optional[Path]
    engines: List[Path]

    @property
    def name(self) -> str:
        return self.path.name or str(self.path)

    def precision(self) -> str:
        model_file = self.onnx_path or self.engines[0]
        metadata = {}
        if self.onnx_path is not None:
            metadata = {p.key: p.value for p in load_onnx(self.onnx_path).metadata_props}
        return artifact_precision(model_file, self.manifest, metadata)[0]


def resolve(path: Path) -> BenchArtifact:
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: no such file or directory", "pass an export directory, a .onnx or a .engine")
    if path.is_dir():
        onnx_path = path / DEFAULT_ONNX
        engines = sorted(p for p in path.iterdir() if p.suffix in ENGINE_SUFFIXES and p.is_file())
        if not onnx_path.is_file() and not engines:
            raise BadInput(f"{path} has neither {DEFAULT_ONNX} nor an .engine", "pass an export directory written by msla-deploy export, or the model file")
        return BenchArtifact(path, read_manifest_if_any(path), onnx_path if onnx_path.is_file() else None, engines)
    if path.suffix == ONNX_SUFFIX:
        load_onnx(path)  # a truncated file is bad input now, not an internal error mid-run
        return BenchArtifact(path, read_manifest_if_any(path.parent), path, [])
    if path.suffix in ENGINE_SUFFIXES:
        return BenchArtifact(path, read_manifest_if_any(path.parent), None, [path])
    raise BadInput(f"{path}: not an .onnx, an .engine or a directory", "pass an export directory, a .onnx or a .engine")


_ONNX_DTYPES = {1: np.float32, 10: np.float16, 11: np.float64, 6: np.int32, 7: np.int64, 9: np.bool_, 2: np.uint8, 3: np.int8}


def onnx_inputs(onnx_path: Path, batch: Optional[int]) -> Tuple[Dict[str, Tuple[Tuple[int, ...], type]], int]:
    """Input shapes and dtypes, and the batch they give. Exports are static: a --batch that
    differs from the graph's is bad input (re-export), not something to paper over; a symbolic
    first dimension (a hand-made ONNX) takes --batch, default 1."""
    graph = load_onnx(onnx_path).graph
    initializers = {i.name for i in graph.initializer}
    specs, model_batch = {}, None
    for value in graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if dims and dims[0] is not None:
            if batch is not None and dims[0] != batch:
                raise BadInput(f"--batch {batch}: {onnx_path.name} has a static batch of {dims[0]}", f"re-export with --batch {batch}, or drop --batch")
            model_batch = dims[0]
        elif dims:
            dims[0] = batch or 1
        if any(d is None for d in dims[1:]):
            raise BadInput(f"{onnx_path.name}: input {value.name} has a dynamic dimension {dims}", "export a static model (msla-deploy export does)")
        if tensor.elem_type not in _ONNX_DTYPES:
            raise BadInput(f"{onnx_path.name}: input {value.name} has ONNX type {tensor.elem_type}", "bench feeds float and integer inputs only")
        specs[value.name] = (tuple(dims), _ONNX_DTYPES[tensor.elem_type])
    _check_declared_memory(onnx_path, graph, specs)
    return specs, model_batch or batch or 1


def _check_declared_memory(onnx_path: Path, graph, specs) -> None:
    """The inputs bench allocates and the outputs the runtime returns, from their declared shapes,
    against the memory available: a graph declaring a huge tensor is refused with the number."""
    from ..limits import check_memory

    needed = sum(int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize for shape, dtype in specs.values())
    for value in graph.output:
        t = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in t.shape.dim]
        needed += int(np.prod(dims, dtype=object)) * np.dtype(_ONNX_DTYPES.get(t.elem_type, np.float32)).itemsize
    largest = max(specs.items(), key=lambda kv: int(np.prod(kv[1][0], dtype=object)), default=None)
    shown = f"input {largest[0]} {list(largest[1][0])}" if largest else "its tensors"
    check_memory(needed, f"{onnx_path.name} ({shown} and its outputs, as declared)",
                 "bench a graph exported at a smaller --res or --batch, or on a machine with more memory")


def random_feeds(specs: Dict[str, Tuple[Tuple[int, ...], type]], seed: int = 0) -> Dict[str, np.ndarray]:
    """Normal noise, like a normalised picture: latency does not depend on the values (no
    data-dependent control flow in these models), but NaN-free inputs keep every kernel honest."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, (shape, dtype) in specs.items():
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[name] = np.zeros(shape, dtype)
    return feeds
