"""Typed records: the one way a JSON document the tool writes or reads is shaped.

A record is a dataclass that names its document (`KIND`) and the version of its layout
(`VERSION`). `to_dict()` gives the JSON form with a `"format": "<KIND>/<VERSION>"` key first;
`from_dict()` reads it back, field by field, converting nested records, lists, tuples and
dictionaries by the field's annotation. `write()` stores it atomically, `read()` loads it with
one-line errors (BadInput, exit 2) naming the file and the field.

Rules every record keeps, so that a newcomer meets one idea, not one per stage:
- The owner of a document is the module that defines its record; nobody else builds its dict.
- A document without "format" (written before records existed) reads as VERSION 1 of its kind.
- A document of a newer VERSION than this tool knows is refused (its meaning may have changed);
  keys this version does not know are ignored on read (additive changes need no new version).
- Floats that are NaN or infinite are written as null (JSON has no such numbers, and strict
  parsers reject a document that has them); the counts beside such values say what happened. A
  null read into a field typed `float` (not Optional) comes back as NaN, so a report of a broken
  model round-trips; the strings "nan", "inf", "-inf" are read as well.

torch-free, Python 3.8 (runs on a Jetson).
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path
from typing import Any, ClassVar, Dict, Mapping, Tuple, Type, TypeVar

from .atomic import write_bytes_atomic
from .errors import BadInput

R = TypeVar("R", bound="Record")

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class RecordError(BadInput):
    """A record's file is missing, unreadable, of another kind or a newer version, or malformed."""


def _float_out(value: float):
    return value if math.isfinite(value) else None


def to_jsonable(value: Any) -> Any:
    """Records, dataclasses, paths, tuples and non-finite floats to plain JSON values."""
    if isinstance(value, Record):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, float):
        return _float_out(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # a numpy scalar
        return to_jsonable(value.item())
    return value


class _Invalid(Exception):
    """A value that does not fit its annotation (turned into a RecordError with the field path)."""


def _from_json(annotation: Any, value: Any, where: str) -> Any:
    if annotation is Any or annotation is object:
        return value
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union:
        return _union_from(args, value, where)
    if origin in (list, typing.List):
        _need(value, list, where)
        item = args[0] if args else Any
        return [_from_json(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (tuple, typing.Tuple):
        return _tuple_from(args, value, where)
    if origin in (dict, typing.Dict, Mapping):
        _need(value, dict, where)
        item = args[1] if len(args) == 2 else Any
        return {k: _from_json(item, v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        _need(value, dict, where)
        return _dataclass_from(annotation, value, where)
    if annotation is float:
        return _float_from(value, where)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"{where} is {type(value).__name__}, expected an integer")
        return value
    if annotation is bool:
        return _need(value, bool, where)
    if annotation is str:
        return _need(value, str, where)
    if annotation is Path:
        return Path(_need(value, str, where))
    return value  # an annotation this reader does not interpret: the JSON value as it is


def _union_from(args: Tuple[Any, ...], value: Any, where: str) -> Any:
    """Optional[X] / Union[...]: null where None is allowed, else the first member that reads it."""
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in (a for a in args if a is not type(None)):
        try:
            return _from_json(arg, value, where)
        except _Invalid as exc:
            errors.append(str(exc))
    raise _Invalid(errors[0] if errors else f"{where} is null")


def _tuple_from(args: Tuple[Any, ...], value: Any, where: str) -> Any:
    """Tuple[X, ...] or Tuple[X, Y]: written as a JSON list."""
    _need(value, list, where)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_from_json(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if args and len(args) != len(value):
        raise _Invalid(f"{where} has {len(value)} items, expected {len(args)}")
    return (
        tuple(_from_json(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value))) if args else tuple(value)
    )


def _float_from(value: Any, where: str) -> float:
    if value is None:  # how a NaN or an infinity was written
        return math.nan
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(f"{where} is {type(value).__name__}, expected a number")
    return float(value)


def _need(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind):
        raise _Invalid(f"{where} is {type(value).__name__}, expected {kind.__name__}")
    return value


def _hints(cls: type) -> Dict[str, Any]:
    return typing.get_type_hints(cls)  # each class of the MRO in its own module's names


def _dataclass_from(cls: Type[Any], data: Mapping[str, Any], where: str) -> Any:
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init or f.name not in data:
            if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise _Invalid(f"{where}.{f.name} is missing")
            continue
        kwargs[f.name] = _from_json(hints.get(f.name, Any), data[f.name], f"{where}.{f.name}" if where else f.name)
    return cls(**kwargs)


class Record:
    """Base of every typed JSON document. Subclasses are dataclasses with KIND and VERSION."""

    KIND: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    @classmethod
    def format_tag(cls) -> str:
        return f"{cls.KIND}/{cls.VERSION}"

    def to_dict(self) -> Dict[str, Any]:
        body = {f.name: to_jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        return {"format": self.format_tag(), **body}

    @classmethod
    def from_dict(cls: Type[R], data: Any, source: str = "") -> R:
        """Read a document of this kind; `source` (a file name) prefixes every error."""
        prefix = f"{source}: " if source else ""
        if not isinstance(data, dict):
            raise RecordError(f"{prefix}not a JSON object ({type(data).__name__})", cls._fix())
        tag = data.get("format", f"{cls.KIND}/1")
        kind, _, version = str(tag).rpartition("/")
        if kind != cls.KIND or not version.isdigit():
            raise RecordError(f"{prefix}is a {tag!r} document, expected {cls.format_tag()!r}", cls._fix())
        if int(version) > cls.VERSION:
            raise RecordError(
                f"{prefix}was written by a newer msla-deploy ({tag}; this one reads up to {cls.format_tag()})",
                "upgrade msla-deploy",
            )
        try:
            return _dataclass_from(cls, {k: v for k, v in data.items() if k != "format"}, "")
        except _Invalid as exc:
            raise RecordError(f"{prefix}{exc}", cls._fix()) from None

    @classmethod
    def _fix(cls) -> str:
        return "write it again with this msla-deploy"

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def write(self, path: Path) -> Path:
        write_bytes_atomic(Path(path), (self.to_json() + "\n").encode())
        return Path(path)

    @classmethod
    def read(cls: Type[R], path: Path) -> R:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RecordError(f"{path}: no such file", cls._fix()) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise RecordError(f"{path}: cannot be read ({exc})", cls._fix()) from None
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise RecordError(f"{path}: not valid JSON ({str(exc)[:80]})", cls._fix()) from None
        return cls.from_dict(data, str(path))
