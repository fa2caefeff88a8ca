""".npy and .npz files judged by what they declare, before anything is allocated.

numpy allocates the array a header declares and only then reads the data: a 198-byte .npz can
declare 229 GiB and take the machine down inside np.load. Every numpy file the tool reads (the
reference bundle, .npy pictures, calibration arrays) goes through here, which reads each header
alone and refuses, with one line naming the file and the array:
- a header that does not parse, a zip that is truncated or not a zip;
- a dtype that is not a real number or a bool (complex values would lose their imaginary part,
  objects would need pickle);
- a size the file cannot hold (the declared bytes differ from the bytes stored: a lying header);
- a total above the memory available now.
torch-free.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import IO, Dict, Tuple

import numpy as np

from ..errors import BadInput
from ..limits import check_memory

Declared = Tuple[Tuple[int, ...], np.dtype]


def read_header(stream: IO[bytes]) -> Tuple[Declared, int]:
    """(shape, dtype) of the .npy at the stream's position, and the header's length in bytes."""
    fmt = np.lib.format
    start = stream.tell()
    version = fmt.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(stream)
    elif version in ((2, 0), (3, 0)):
        shape, _, dtype = fmt.read_array_header_2_0(stream)
    else:
        raise ValueError(f"unknown .npy format version {version}")
    return (tuple(int(d) for d in shape), np.dtype(dtype)), stream.tell() - start


def declared_bytes(shape: Tuple[int, ...], dtype: np.dtype) -> int:
    count = 1
    for d in shape:
        count *= d
    return count * dtype.itemsize


def check_array_kind(dtype: np.dtype, where: str, fix: str) -> None:
    """Real numbers and bools only: what a model's tensors and a picture's pixels are."""
    if dtype.hasobject or dtype.fields is not None or not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
        raise BadInput(f"{where} holds {dtype} values, not numbers", fix)
    if np.issubdtype(dtype, np.complexfloating):
        raise BadInput(f"{where} holds complex values ({dtype}); a model's tensors are real", fix)


def _check(declared: Declared, stored: int, where: str, fix: str) -> int:
    shape, dtype = declared
    if any(d < 0 for d in shape):
        raise BadInput(f"{where} declares a negative dimension {list(shape)}", fix)
    check_array_kind(dtype, where, fix)
    nbytes = declared_bytes(shape, dtype)
    if nbytes != stored:
        raise BadInput(
            f"{where} declares {list(shape)} {dtype} ({nbytes} bytes) but stores {stored} bytes: truncated or forged",
            fix,
        )
    return nbytes


def npy_declared(path: Path, fix: str) -> Declared:
    """(shape, dtype) of a .npy file from its header, checked against the bytes it stores."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            declared, header = read_header(f)
    except (OSError, ValueError, EOFError) as exc:
        raise BadInput(f"{path}: not a readable .npy array ({exc})", fix) from None
    _check(declared, path.stat().st_size - header, str(path), fix)
    return declared


def load_npy(path: Path, fix: str) -> np.ndarray:
    """One .npy file, refused from its header if it cannot be what it says or cannot fit."""
    shape, dtype = npy_declared(path, fix)
    check_memory(declared_bytes(shape, dtype), f"{path} ({list(shape)} {dtype})", fix)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise BadInput(f"{path}: not a readable .npy array ({exc})", fix) from None


def npz_declared(path: Path, fix: str) -> Dict[str, Declared]:
    """name -> (shape, dtype) of every array in an .npz, from the headers alone (each member is
    decompressed only as far as its header). Checks kinds and stored sizes."""
    path = Path(path)
    arrays: Dict[str, Declared] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise BadInput(f"{path}: member {info.filename!r} is not a .npy array", fix)
                name = info.filename[: -len(".npy")]
                with archive.open(info) as member:  # decompresses as far as the header only
                    declared, header = read_header(member)
                arrays[name] = declared
                _check(declared, info.file_size - header, f"{path}: array {name!r}", fix)
    except BadInput:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise BadInput(f"{path}: not a readable .npz archive ({exc})", fix) from None
    return arrays


def load_npz(path: Path, fix: str) -> Dict[str, np.ndarray]:
    """Every array of an .npz, after the headers passed (kinds, stored sizes, memory)."""
    declared = npz_declared(path, fix)
    total = sum(declared_bytes(shape, dtype) for shape, dtype in declared.values())
    check_memory(total, f"{path} ({len(declared)} arrays, as declared)", fix)
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise BadInput(f"{path}: not a readable .npz archive ({exc})", fix) from None
