"""A fake `tensorrt` module generated from the real Python API of one TensorRT version.

How to use it in a test:

    # fake_trt: a fixture (conftest.py)
    from tests.trt_fake import FAKE_GPU, FAKE_VERSIONS, install_fake_tensorrt, make_fake_tensorrt

    def test_something(fake_trt):            # parametrised over FAKE_VERSIONS: test_something[trt10.3.0] ...
        trt = fake_trt                       # also sys.modules["tensorrt"]; runtime.probe_gpu() returns FAKE_GPU
        ...                                  # run the code under test, then look at what it did:
        trt.fake.calls_to("IBuilderConfig.set_flag")     # [{"flag": <BuilderFlag.FP16: 0>}, ...]
        trt.fake.values_set("Runtime.DLA_core")          # [1]
        "BuilderFlag.FP16" in trt.fake.lookups           # was the member ever read?

    def test_other(monkeypatch):
        trt = install_fake_tensorrt(monkeypatch, "10.7.0", dla_cores=2)   # behaviour knobs: see World
        trt = make_fake_tensorrt("11.4.0.106")                             # not installed: pass it as trt=...

    @pytest.mark.parametrize("fake_trt", ["10.3.0"], indirect=True)       # one version, still via the fixture
    @pytest.mark.parametrize("fake_trt", versions_where(lambda v: v < (11, 0)), indirect=True)   # weak typing only

    data = engine_bytes("10.3.0", {"input": ((1, 3, 64, 128), "FLOAT")}, {"logits": ((1, 19, 8, 16), "FLOAT")})
    # an .engine file's bytes without a build: the fake Runtime of 10.3 loads it (named I/O tensors,
    # create_execution_context, set_tensor_address, execute_async_v3); make_engine(trt, ...) loads it directly.
    # World(execute=fn) is called as fn(context, stream_handle) by execute_async_v3, e.g. to fill outputs.

What it is. The module's surface (classes, their bases, methods with their pybind11 signatures,
properties and whether they are writable, enums with their values, module functions and
constants) is read from tests/data/tensorrt_api/<version>.json.gz (read off NVIDIA's own
binding wheels; tests/data/README.md says how). So, as on a device with that
version:
- a name the version lacks raises AttributeError (`trt.BuilderFlag.FP16` on 11.4,
  `trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED` on 8.6, `layer.precision = ...` on 11.4);
- enum members carry the version's values (`int(trt.BuilderFlag.TF32)` is 7 on 8.6, 6 on 10.x),
  compare equal only to members of the same enum, and enum-typed arguments refuse plain ints;
- assigning a read-only property raises AttributeError; calling a method with arguments that
  match none of its signatures (count, names, enum/str/int/buffer types) raises TypeError;
- a class without a constructor raises TypeError when called.

Behaviour. On top of that surface, and only for names the surface has, a small world behaves
like TensorRT for what the tests need: OnnxParser.parse_from_file reads the ONNX and makes one
layer per node, named after it (with optional '<node>_<n>' extra layers); Builder.build_serialized_network
returns bytes describing the engine (I/O tensors, flags, layers); Runtime.deserialize_cuda_engine
turns them into an ICudaEngine with named I/O tensors, an execution context (set_tensor_address,
execute_async_v3) and an engine inspector. Rules the real TensorRT enforces and the fake models:
an explicit-batch network is needed to parse ONNX before 10.0; STRONGLY_TYPED with the FP16/INT8/
BF16/FP8 flag fails the build (an API usage error on 10.x); a DLA build without GPU_FALLBACK fails
when a layer cannot run on DLA; engines load only on the TensorRT that built them unless built
VERSION_COMPATIBLE, which in turn needs Runtime.engine_host_code_allowed = True; a DLA engine is
refused unless Runtime.DLA_core names an existing core (trtexec always sets it; the fake is
strict so a test proves we do too); a timing cache from another version does not match.
A member with no behaviour here records its call and raises NotImplementedError: add the
behaviour below (never a name the surface lacks).

The one extra attribute the real module lacks is `trt.fake` (the World: knobs and records);
code under test must never read it (tests/trt/test_trt_api_usage.py checks).
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import types
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
FAKE_VERSIONS: Tuple[str, ...] = ("8.6.1", "10.0.1", "10.3.0", "10.7.0", "10.13.3.9", "11.4.0.106")
ENGINE_MAGIC = b"FAKE-TRT-ENGINE\n"
CACHE_MAGIC = b"FAKE-TRT-CACHE "


def api_dir() -> Path:
    """tests/data/tensorrt_api: one <version>.json.gz per version in FAKE_VERSIONS."""
    return REPO / "tests" / "data" / "tensorrt_api"


@lru_cache(maxsize=None)
def load_api(version: str) -> Dict[str, Any]:
    path = api_dir() / f"{version}.json.gz"
    if not path.is_file():
        raise FileNotFoundError(
            f"the TensorRT {version} API surface {path} is missing (tests/data is part of the repository)"
        )
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)


def version_key(version: str) -> Tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def surface_has(version: str, dotted: str) -> bool:
    """'BuilderFlag.FP16', 'Runtime.engine_host_code_allowed', 'Runtime' -> present in this version
    (members of bases count)."""
    api = load_api(version)
    classes = api["classes"]
    head, _, rest = dotted.partition(".")
    if not rest:
        return head in classes or head in api["functions"] or head in api["attributes"]
    if head not in classes:
        return False
    seen, todo = set(), [head]
    while todo:
        name = todo.pop()
        cls = classes.get(name)
        if cls is None or name in seen:
            continue
        seen.add(name)
        if cls["kind"] == "enum":
            if rest in cls["members"] or rest in cls.get("extra", {}):
                return True
        elif rest in cls["members"]:
            return True
        todo.extend(cls.get("bases", []))
    return False


# --- pybind11 signatures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    has_default: bool
    star: str = ""  # "", "*" or "**"


@dataclass(frozen=True)
class Signature:
    text: str
    params: Tuple[Param, ...]


def _split_top(text: str, sep: str) -> List[str]:
    parts, depth, current, quote = [], 0, [], ""
    for ch in text:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_signature(text: str) -> Signature:
    """'(self: IBuilderConfig, pool: MemoryPoolType, pool_size: int) -> None' -> Signature."""
    start = text.index("(")
    depth = 0
    for end in range(start, len(text)):
        if text[end] in "([":
            depth += 1
        elif text[end] in ")]":
            depth -= 1
            if depth == 0:
                break
    params = []
    for part in _split_top(text[start + 1 : end], ","):
        if part in ("*", "/"):
            continue
        star = "**" if part.startswith("**") else "*" if part.startswith("*") else ""
        part = part[len(star) :]
        name_type, _, default = part.partition("=")
        name, _, typ = name_type.partition(":")
        params.append(Param(name.strip(), typ.strip(), bool(default.strip()), star))
    return Signature(text, tuple(params))


_INT_TYPES = {"int", "SupportsInt", "SupportsIndex"}
# pybind11 converts tuples/arrays
_NO_CHECK_CLASSES = {"Dims", "Dims2", "Dims3", "Dims4", "DimsHW", "DimsExprs", "Weights", "Permutation"}


def _normal_type(text: str) -> str:
    text = re.sub(
        r"\b(typing_extensions|typing|collections\.abc|tensorrt_bindings\.tensorrt|tensorrt\.tensorrt|tensorrt)\.",
        "",
        text.strip(),
    )
    if "::" in text and "[" not in text:
        text = text.split("::")[-1]
    return text


class _Mismatch(Exception):
    pass


def _check_type(world: "World", typ: str, value: Any) -> None:
    typ = _normal_type(typ)
    if not typ or typ in ("object", "capsule", "bool"):
        return  # pybind11 converts anything truthy to bool
    if typ in ("buffer", "Buffer"):
        try:
            memoryview(value)
        except TypeError:
            raise _Mismatch(f"{type(value).__name__} is not a buffer") from None
        return
    if typ in _INT_TYPES:
        if isinstance(value, float) or not hasattr(value, "__index__"):
            raise _Mismatch(f"{value!r} is not an int")
        return
    if typ in ("float", "SupportsFloat"):
        if not isinstance(value, (int, float, np.floating, np.integer)):
            raise _Mismatch(f"{value!r} is not a float")
        return
    if typ == "str":
        if not isinstance(value, str):
            raise _Mismatch(f"{value!r} is not a str")
        return
    cls = world.types.get(typ)
    if cls is None or typ in _NO_CHECK_CLASSES:
        return
    if isinstance(cls, _EnumMeta):
        if not isinstance(value, cls):
            raise _Mismatch(f"{value!r} is not a {typ}")
    elif value is not None and not isinstance(value, cls):
        raise _Mismatch(f"{type(value).__name__} is not a {typ}")


def _bind(world: "World", sig: Signature, args: tuple, kwargs: dict, has_self: bool) -> Dict[str, Any]:
    params = list(sig.params[1:] if has_self and sig.params else sig.params)
    bound: Dict[str, Any] = {}
    positional = [p for p in params if not p.star]
    var_pos = any(p.star == "*" for p in params)
    var_kw = any(p.star == "**" for p in params)
    if len(args) > len(positional) and not var_pos:
        raise _Mismatch(f"{len(args)} positional arguments, at most {len(positional)}")
    for p, value in zip(positional, args):
        bound[p.name] = value
    for key, value in kwargs.items():
        match = next((p for p in positional if p.name == key), None)
        if match is None or re.fullmatch(r"arg\d+", key):  # pybind11 takes no keywords for unnamed arguments
            if var_kw:
                bound[key] = value
                continue
            raise _Mismatch(f"unexpected keyword argument {key!r}")
        if key in bound:
            raise _Mismatch(f"{key!r} given twice")
        bound[key] = value
    for p in positional:
        if p.name not in bound and not p.has_default:
            raise _Mismatch(f"missing argument {p.name!r}")
    for p in positional:
        if p.name in bound:
            _check_type(world, p.type, bound[p.name])
    return bound


def _call_surface(
    world: "World",
    owner: str,
    name: str,
    sigs: List[Signature],
    impl: Optional[Callable],
    has_self: bool,
    self_obj: Any,
    args: tuple,
    kwargs: dict,
) -> Any:
    problems = []
    for sig in sigs:
        try:
            bound = _bind(world, sig, args, kwargs, has_self)
        except _Mismatch as exc:
            problems.append(str(exc))
            continue
        world.calls.append(Call(f"{owner}.{name}" if owner else name, self_obj, bound))
        if impl is None:
            where = f"{owner}.{name}" if owner else name
            raise NotImplementedError(
                f"fake tensorrt {world.version}: {where} exists in the real API but has no behaviour in "
                "tests/trt_fake.py"
            )
        return impl(self_obj, **bound) if has_self else impl(**bound)
    listed = "\n".join(f"    {i}. {s.text}" for i, s in enumerate(sigs, 1))
    what = "constructor" if name == "__init__" else "function"
    raise TypeError(
        f"{name}(): incompatible {what} arguments. The following argument types are supported:\n{listed}\n\n"
        f"Invoked with: {args!r} {kwargs!r} ({'; '.join(problems)})"
    )


# --- records ---------------------------------------------------------------------------------------


@dataclass
class Call:
    name: str  # "IBuilderConfig.set_flag" (the class that defines the member), "Runtime.DLA_core" for a property set
    target: Any  # the object (None for module functions)
    args: Dict[str, Any]  # bound by parameter name; {"value": v} for a property set
    kind: str = "call"  # "call" | "set"


@dataclass
class World:
    """Knobs (constructor arguments) and records of one fake TensorRT."""

    version: str
    dla_cores: int = 0
    not_on_dla_ops: Tuple[str, ...] = ("HardSwish", "HardSigmoid", "Gelu", "Erf")  # stand-in for DLA's refusals
    unsupported_ops: Tuple[str, ...] = ()  # the parser fails on nodes of these op types
    extra_layers: Dict[str, int] = field(default_factory=dict)  # node name -> extra layers '<node>_<n>' it makes
    build_ok: bool = True
    execute: Optional[Callable[[Any, int], None]] = None  # called by execute_async_v3(context, stream)
    calls: List[Call] = field(default_factory=list)
    lookups: List[str] = field(default_factory=list)  # enum members read: "BuilderFlag.FP16"
    log: List[Tuple[str, str]] = field(default_factory=list)  # (severity, message) the fake TensorRT logged
    types: Dict[str, Any] = field(default_factory=dict)  # qualname -> generated class
    generated: set = field(default_factory=set)
    module: Any = None
    layer_counter: int = 0

    @property
    def key(self) -> Tuple[int, int]:
        return version_key(self.version)

    def calls_to(self, name: str) -> List[Dict[str, Any]]:
        return [c.args for c in self.calls if c.name == name and c.kind == "call"]

    def values_set(self, name: str) -> List[Any]:
        return [c.args["value"] for c in self.calls if c.name == name and c.kind == "set"]

    def flag_names(self, method: str = "IBuilderConfig.set_flag") -> List[str]:
        return [args["flag"].name for args in self.calls_to(method)]

    def builder_flags(self) -> set:
        """The builder flags a config ends with: TF32 (on by default), then every set/clear in order."""
        flags = {"TF32"}
        for call in self.calls:
            if call.name == "IBuilderConfig.set_flag":
                flags.add(call.args["flag"].name)
            elif call.name == "IBuilderConfig.clear_flag":
                flags.discard(call.args["flag"].name)
        return flags

    def error(self, message: str) -> None:
        self.log.append(("ERROR", message))

    def enum(self, qualname: str):
        return self.types[qualname]

    def member(self, enum: str, name: str):
        """An enum member, read without recording a lookup (the fake's own reads are not the code's)."""
        return type.__getattribute__(self.types[enum], "_members_")[name]

    def new(self, qualname: str, **state):
        """An instance of a generated class, made the way TensorRT makes it (no Python constructor)."""
        return _new(self, self.types[qualname], state)


# --- generated enums ------------------------------------------------------------------------------


class _EnumMeta(type):
    """pybind11 enums: members are class attributes; reading one is recorded; EnumType(int) finds the member."""

    def __getattribute__(cls, name):
        members = type.__getattribute__(cls, "_members_")
        if name in members:
            type.__getattribute__(cls, "_world_").lookups.append(f"{type.__getattribute__(cls, '__qualname__')}.{name}")
        return type.__getattribute__(cls, name)

    def __call__(cls, value):
        for member in type.__getattribute__(cls, "_members_").values():
            if member._value == int(value):
                return member
        return cls._make("???", int(value))

    @property
    def __members__(cls):
        return dict(type.__getattribute__(cls, "_members_"))


class _EnumBase:
    __slots__ = ("_name", "_value")

    @classmethod
    def _make(cls, name: str, value: int):
        member = object.__new__(cls)
        object.__setattr__(member, "_name", name)
        object.__setattr__(member, "_value", value)
        return member

    def __setattr__(self, key, value):
        raise AttributeError(f"'{type(self).__qualname__}' object attribute '{key}' is read-only")

    @property
    def name(self) -> str:
        return self._name

    @property
    def value(self) -> int:
        return self._value

    def __int__(self) -> int:
        return self._value

    def __index__(self) -> int:
        return self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __eq__(self, other) -> bool:  # strict: C++ enum classes are not convertible
        return type(other) is type(self) and other._value == self._value

    def __ne__(self, other) -> bool:
        return not self == other

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__.split('.')[-1]}.{self._name}: {self._value}>"

    def __str__(self) -> str:
        return f"{type(self).__qualname__.split('.')[-1]}.{self._name}"


def _make_enum(world: World, qualname: str, spec: Dict[str, Any]):
    short = qualname.split(".")[-1]
    namespace: Dict[str, Any] = {
        "__slots__": (),
        "__qualname__": qualname,
        "__module__": "tensorrt",
        "_world_": world,
        "_members_": {},
    }
    behaviour = ENUM_BEHAVIOUR.get(qualname, {})
    for extra in spec.get("extra", {}):
        if extra in behaviour:
            namespace[extra] = behaviour[extra]
    cls = _EnumMeta(short, (_EnumBase,), namespace)
    members = type.__getattribute__(cls, "_members_")
    for name, value in spec["members"].items():
        member = cls._make(name, value)
        members[name] = member
        type.__setattr__(cls, name, member)
    return cls


# --- generated classes ----------------------------------------------------------------------------


class _Object:
    """Root of every generated class: no attributes but the surface's (pybind11 objects have no __dict__)."""

    def __setattr__(self, name, value):
        if type(self) not in type(self)._world_.generated:  # a Python subclass (a user's ILogger) may set anything
            object.__setattr__(self, name, value)
            return
        for klass in type(self).__mro__:
            if name in klass.__dict__:
                if isinstance(klass.__dict__[name], property):
                    object.__setattr__(self, name, value)
                    return
                break
        raise AttributeError(f"'tensorrt.{type(self).__qualname__}' object has no attribute '{name}'")


def _new(world: World, cls, state: Dict[str, Any]):
    obj = bytes.__new__(cls, state.pop("_bytes", b"")) if issubclass(cls, bytes) else object.__new__(cls)
    object.__setattr__(obj, "_fake", world)
    object.__setattr__(obj, "_state", dict(state))
    return obj


def _no_constructor(qualname: str):
    def __init__(self, *args, **kwargs):
        raise TypeError(f"tensorrt.{qualname}: No constructor defined!")

    return __init__


def _method(world: World, owner: str, name: str, spec: Dict[str, Any], impl: Optional[Callable], static: bool = False):
    sigs = [parse_signature(s) for s in spec.get("signatures", ["(*args, **kwargs)"])]

    if static:

        def function(*args, **kwargs):
            return _call_surface(world, owner, name, sigs, impl, False, None, args, kwargs)

        return staticmethod(function)

    def method(self, *args, **kwargs):
        return _call_surface(world, owner, name, sigs, impl, True, self, args, kwargs)

    method.__name__ = name
    method.__qualname__ = f"{owner}.{name}"
    return method


def _property(world: World, owner: str, name: str, spec: Dict[str, Any], impl: Optional[property]):
    readable = spec.get("readable", True)
    typ = spec.get("type", "")

    def fget(self):
        if not readable:
            raise AttributeError(f"unreadable attribute '{name}'")
        if impl is not None and impl.fget is not None:
            return impl.fget(self)
        if name in self._state:
            return self._state[name]
        raise NotImplementedError(f"fake tensorrt {world.version}: {owner}.{name} has no value in tests/trt_fake.py")

    def fset(self, value):
        try:
            _check_type(world, typ, value)
        except _Mismatch as exc:
            raise TypeError(f"{owner}.{name}: incompatible value ({exc})") from None
        world.calls.append(Call(f"{owner}.{name}", self, {"value": value}, kind="set"))
        if impl is not None and impl.fset is not None:
            impl.fset(self, value)
        else:
            self._state[name] = value

    return property(fget, fset if spec.get("writable") else None)


def _make_class(world: World, qualname: str, spec: Dict[str, Any], bases: tuple):
    behaviour = CLASS_BEHAVIOUR.get(qualname)
    own = dict(behaviour.__dict__) if behaviour is not None else {}
    if qualname == "IHostMemory":
        bases = bases + (bytes,)  # the real one exposes the buffer protocol
    namespace: Dict[str, Any] = {"__qualname__": qualname, "__module__": "tensorrt"}
    if not spec.get("constructible"):
        namespace["__init__"] = _no_constructor(qualname)
    for name, member in spec["members"].items():
        kind = member["kind"]
        impl = own.get(name)
        if kind in ("method", "staticmethod"):
            if name == "__del__":
                continue
            if (
                name.startswith("__")
                and name not in ("__init__", "__enter__", "__exit__", "__len__", "__getitem__")
                and impl is None
            ):
                continue  # keep Python's repr/eq/hash rather than a stub that raises
            if name in ("__enter__", "__exit__") and impl is None:
                impl = _enter if name == "__enter__" else _exit
            if name == "__init__" and impl is None:
                impl = _init_state
            if kind == "staticmethod":
                namespace[name] = _method(world, qualname, name, member, getattr(impl, "__func__", impl), static=True)
            else:
                namespace[name] = _method(world, qualname, name, member, impl)
        elif kind == "property":
            namespace[name] = _property(world, qualname, name, member, impl if isinstance(impl, property) else None)
        elif kind == "static_property":
            namespace[name] = member.get("value")
        elif kind == "attribute":
            namespace[name] = member.get("value")
        elif kind in ("enum_value", "type"):
            pass  # filled in once every type exists
    cls = type(qualname.split(".")[-1], bases, namespace)
    world.generated.add(cls)
    return cls


def _enter(self, **_):
    return self


def _exit(self, **_):
    return None


def _init_state(self, **kwargs):
    object.__setattr__(self, "_fake", type(self)._world_)
    object.__setattr__(self, "_state", dict(kwargs))


def _ordered_classes(classes: Dict[str, Any]) -> List[str]:
    order, done = [], set()

    def visit(name):
        if name in done or name not in classes:
            return
        done.add(name)
        for base in classes[name].get("bases", []):
            visit(base)
        order.append(name)

    for name in sorted(classes):
        visit(name)
    return order


def make_fake_tensorrt(version: str = "10.3.0", **knobs) -> types.ModuleType:
    """A fresh fake `tensorrt` for `version` (one of FAKE_VERSIONS). Knobs: see World."""
    api = load_api(version)
    world = World(version=api["version"], **knobs)
    module = types.ModuleType("tensorrt")
    world.module = module
    classes = api["classes"]
    for qualname, spec in classes.items():
        if spec["kind"] == "enum":
            world.types[qualname] = _make_enum(world, qualname, spec)
    for qualname in _ordered_classes({k: v for k, v in classes.items() if v["kind"] != "enum"}):
        spec = classes[qualname]
        bases = tuple(world.types[b] for b in spec.get("bases", []) if b in world.types) or (_Object,)
        cls = _make_class(world, qualname, spec, bases)
        cls._world_ = world
        world.types[qualname] = cls
    for qualname, spec in classes.items():  # nested types and enum values exported into classes
        if spec["kind"] == "enum":
            continue
        for name, member in spec["members"].items():
            if member["kind"] == "type":
                setattr(world.types[qualname], name, world.types[member["ref"]])
            elif member["kind"] == "enum_value":
                setattr(world.types[qualname], name, getattr(world.types[member["enum"]], member["name"]))
    del world.lookups[:]
    for qualname, cls in world.types.items():
        if "." not in qualname:
            setattr(module, qualname, cls)
    for name, spec in api["functions"].items():
        impl = FUNCTION_BEHAVIOUR.get(name)
        setattr(
            module,
            name,
            _method(
                world, "", name, spec, (lambda f: lambda **kw: f(world, **kw))(impl) if impl else None, static=True
            ).__func__,
        )
    _set_module_attributes(world, module, api["attributes"])
    module.__version__ = api["version"]
    module.fake = world
    return module


def _set_module_attributes(world: World, module: types.ModuleType, attributes: Dict[str, Any]) -> None:
    """The module's own attributes: constants, enum values, types and submodules."""
    for name, spec in attributes.items():
        kind = spec["kind"]
        if kind == "constant":
            setattr(module, name, spec["value"])
        elif kind == "enum_value":
            setattr(module, name, type.__getattribute__(world.types[spec["enum"]], spec["name"]))
        elif kind == "type":
            setattr(module, name, world.types[spec["ref"]])
        elif kind == "module":
            setattr(module, name, module if spec["name"].startswith("tensorrt") else __import__(spec["name"]))


# --- behaviour (only applied to names the version's surface has) --------------------------------------


def _dt(world: World, name: str):
    return type.__getattribute__(world.types["DataType"], name)


def _onnx_dtype(world: World, elem_type: int):
    import onnx

    names = {
        onnx.TensorProto.FLOAT: "FLOAT",
        onnx.TensorProto.FLOAT16: "HALF",
        onnx.TensorProto.INT8: "INT8",
        onnx.TensorProto.INT32: "INT32",
        onnx.TensorProto.BOOL: "BOOL",
        onnx.TensorProto.UINT8: "UINT8",
        onnx.TensorProto.INT64: "INT64",
        onnx.TensorProto.BFLOAT16: "BF16",
    }
    name = names.get(elem_type, "FLOAT")
    members = type.__getattribute__(world.types["DataType"], "_members_")
    return members.get(name) or members["INT32"]  # 8.6 has no INT64: the parser narrows to INT32


def _dims(world: World, shape) -> Any:
    return world.new("Dims", shape=[int(d) for d in shape])


class _DimsB:
    def __init__(self, shape=()):
        _init_state(self, shape=[int(d) for d in shape])

    def __len__(self):
        return len(self._state["shape"])

    def __getitem__(self, arg0):
        if isinstance(arg0, slice):
            return tuple(self._state["shape"][arg0])
        return self._state["shape"][arg0]

    def __eq__(self, arg0):
        return list(self._state["shape"]) == list(arg0)

    def __repr__(self):
        return f"({', '.join(map(str, self._state['shape']))})"

    __str__ = __repr__


class _LoggerB:
    def __init__(self, min_severity=None):
        _init_state(self)
        self._state["min_severity"] = (
            min_severity if min_severity is not None else self._fake.member("ILogger.Severity", "WARNING")
        )

    def log(self, severity, msg):
        self._fake.log.append((severity.name, msg))


class _ILoggerB:
    def __init__(self):
        _init_state(self)


class _TensorB:
    name = property(lambda self: self._state["name"])
    dtype = property(lambda self: self._state["dtype"])
    shape = property(lambda self: _dims(self._fake, self._state["shape"]))
    is_network_input = property(lambda self: self._state.get("is_input", False))
    is_network_output = property(lambda self: self._state.get("is_output", False))


class _LayerB:
    name = property(lambda self: self._state["name"])
    num_inputs = property(lambda self: len(self._state["inputs"]))
    num_outputs = property(lambda self: len(self._state["outputs"]))
    precision = property(lambda self: self._state.get("precision", _dt(self._fake, "FLOAT")))
    precision_is_set = property(lambda self: "precision" in self._state)

    def get_input(self, index):
        return self._state["inputs"][index]

    def get_output(self, index):
        return self._state["outputs"][index]

    def set_output_type(self, index, dtype):
        self._state.setdefault("output_types", {})[index] = dtype

    def get_output_type(self, index):
        return self._state.get("output_types", {}).get(index, self._state["outputs"][index].dtype)

    def output_type_is_set(self, index):
        return index in self._state.get("output_types", {})

    def reset_precision(self):
        self._state.pop("precision", None)

    def reset_output_type(self, index):
        self._state.get("output_types", {}).pop(index, None)


class _NetworkB:
    num_layers = property(lambda self: len(self._state["layers"]))
    num_inputs = property(lambda self: len(self._state["inputs"]))
    num_outputs = property(lambda self: len(self._state["outputs"]))
    flags = property(lambda self: self._state["flags"])
    has_implicit_batch_dimension = property(lambda self: not _explicit_batch(self._fake, self._state["flags"]))
    name = property(lambda self: self._state.get("name", "Unnamed Network 0"))

    def get_layer(self, index):
        return self._state["layers"][index]

    def get_input(self, index):
        return self._state["inputs"][index]

    def get_output(self, index):
        return self._state["outputs"][index]

    def get_flag(self, flag):
        return bool(self._state["flags"] & (1 << int(flag)))

    def __len__(self):
        return len(self._state["layers"])

    def __getitem__(self, arg0):
        return self._state["layers"][arg0]


def _explicit_batch(world: World, flags: int) -> bool:
    if world.key >= (10, 0):
        return True  # 10.0: "networks are always explicit batch"
    return bool(
        flags & (1 << int(type.__getattribute__(world.types["NetworkDefinitionCreationFlag"], "EXPLICIT_BATCH")))
    )


def _strongly_typed(world: World, flags: int) -> bool:
    members = type.__getattribute__(world.types["NetworkDefinitionCreationFlag"], "_members_")
    if world.key >= (11, 0):
        return True  # 11.0: every network is strongly typed
    return "STRONGLY_TYPED" in members and bool(flags & (1 << members["STRONGLY_TYPED"].value))


class _BuilderB:
    num_DLA_cores = property(lambda self: self._fake.dla_cores)
    max_DLA_batch_size = property(lambda self: 32 if self._fake.dla_cores else 1)
    platform_has_fast_fp16 = property(lambda self: True)
    platform_has_fast_int8 = property(lambda self: True)
    platform_has_tf32 = property(lambda self: True)
    logger = property(lambda self: self._state["logger"])

    def __init__(self, logger):
        _init_state(self, logger=logger)

    def create_network(self, flags=0):
        return self._fake.new("INetworkDefinition", flags=int(flags), layers=[], inputs=[], outputs=[])

    def create_builder_config(self):
        w = self._fake
        return w.new(
            "IBuilderConfig",
            flags=_default_flags(w),
            pools={},
            devices={},
            cache=None,
            DLA_core=-1,
            default_device_type=w.member("DeviceType", "GPU"),
            builder_optimization_level=3,
            profiling_verbosity=w.member("ProfilingVerbosity", "LAYER_NAMES_ONLY"),
            hardware_compatibility_level=w.member("HardwareCompatibilityLevel", "NONE"),
            avg_timing_iterations=1,
            max_aux_streams=-1,
            profiles=[],
        )

    def create_optimization_profile(self):
        return self._fake.new("IOptimizationProfile", shapes={})

    def build_serialized_network(self, network, config):
        return _build(self._fake, network, config)

    def is_network_supported(self, network, config):
        return True


def _default_flags(world: World) -> int:
    members = type.__getattribute__(world.types["BuilderFlag"], "_members_")
    return 1 << members["TF32"].value  # TF32 is on by default ("Enabled by default")


def _flag_set(world: World, flags: int, name: str) -> bool:
    member = type.__getattribute__(world.types["BuilderFlag"], "_members_").get(name)
    return member is not None and bool(flags & (1 << member.value))


class _ConfigB:
    flags = property(lambda self: self._state["flags"], lambda self, v: self._state.__setitem__("flags", int(v)))
    num_optimization_profiles = property(lambda self: len(self._state["profiles"]))

    def add_optimization_profile(self, profile):
        if not profile._state["shapes"]:
            self._fake.error("IBuilderConfig::addOptimizationProfile: the profile is not valid (no shapes set)")
            return -1
        self._state["profiles"].append(profile)
        return len(self._state["profiles"]) - 1

    def set_flag(self, flag):
        self._state["flags"] |= 1 << int(flag)

    def clear_flag(self, flag):
        self._state["flags"] &= ~(1 << int(flag))

    def get_flag(self, flag):
        return bool(self._state["flags"] & (1 << int(flag)))

    def set_memory_pool_limit(self, pool, pool_size):
        if int(pool_size) < 0:
            raise ValueError("negative pool size")
        self._state["pools"][pool.name] = int(pool_size)

    def get_memory_pool_limit(self, pool):
        return self._state["pools"].get(pool.name, 0)

    def set_device_type(self, layer, device_type):
        self._state["devices"][layer.name] = device_type

    def get_device_type(self, layer):
        return self._state["devices"].get(layer.name, self._state["default_device_type"])

    def is_device_type_set(self, layer):
        return layer.name in self._state["devices"]

    def reset_device_type(self, layer):
        self._state["devices"].pop(layer.name, None)

    def can_run_on_DLA(self, layer):
        return layer._state.get("op_type") not in self._fake.not_on_dla_ops

    def create_timing_cache(self, serialized_timing_cache):
        data = bytes(memoryview(serialized_timing_cache))
        header = CACHE_MAGIC + _short(self._fake.version).encode() + b"\n"
        if not data:
            return self._fake.new("ITimingCache", entries=[], foreign=False)
        if not data.startswith(header):
            self._fake.log.append(("WARNING", "the timing cache was made by another TensorRT version or device"))
            return self._fake.new("ITimingCache", entries=[], foreign=True)
        entries = [e for e in data[len(header) :].decode().split("\n") if e]
        return self._fake.new("ITimingCache", entries=entries, foreign=False)

    def set_timing_cache(self, cache, ignore_mismatch):
        if cache._state["foreign"] and not ignore_mismatch:
            return False
        self._state["cache"] = cache
        return True

    def get_timing_cache(self):
        return self._state["cache"]


def _short(version: str) -> str:
    return ".".join(version.split(".")[:2])


class _ProfileB:
    """min <= opt <= max per dimension, as IOptimizationProfile::setDimensions checks."""

    def set_shape(self, input, min, opt, max):
        low, mid, high = (tuple(int(d) for d in s) for s in (min, opt, max))
        if not len(low) == len(mid) == len(high) or any(not 0 <= a <= b <= c for a, b, c in zip(low, mid, high)):
            self._fake.error(
                f"IOptimizationProfile::setDimensions: {input}: need 0 <= min <= opt <= max, got {low} {mid} {high}"
            )
            return
        self._state["shapes"][input] = [list(low), list(mid), list(high)]

    def get_shape(self, input):
        return [_dims(self._fake, s) for s in self._state["shapes"].get(input, [])]

    def __bool__(self):
        return True


class _TimingCacheB:
    def serialize(self):
        w = self._fake
        body = (
            CACHE_MAGIC
            + _short(w.version).encode()
            + b"\n"
            + "".join(e + "\n" for e in self._state["entries"]).encode()
        )
        return w.new("IHostMemory", _bytes=body)

    def combine(self, input_cache, ignore_mismatch):
        if input_cache._state["foreign"] and not ignore_mismatch:
            return False
        for entry in input_cache._state["entries"]:
            if entry not in self._state["entries"]:
                self._state["entries"].append(entry)
        return True

    def reset(self):
        del self._state["entries"][:]
        return True


class _HostMemoryB:
    nbytes = property(lambda self: len(self))
    dtype = property(lambda self: _dt(self._fake, "UINT8"))


class _ParserB:
    num_errors = property(lambda self: len(self._state["errors"]))

    def __init__(self, network, logger):
        _init_state(self, network=network, logger=logger, errors=[])

    def parse_from_file(self, model):
        return _parse(self, Path(model))

    def get_error(self, index):
        return self._state["errors"][index]

    def clear_errors(self):
        del self._state["errors"][:]


class _ParserErrorB:
    def code(self):
        return self._state["code"]

    def desc(self):
        return self._state["desc"]

    def node(self):
        return self._state["node"]

    def node_name(self):
        return self._state["node_name"]

    def node_operator(self):
        return self._state["node_operator"]

    def file(self):
        return "ModelImporter.cpp"

    def func(self):
        return "parseGraph"

    def line(self):
        return 0

    def __str__(self):
        return (
            f"In node {self._state['node']} with name: {self._state['node_name']} and operator: "
            f"{self._state['node_operator']} ({self._state['desc']})"
        )

    __repr__ = __str__


def _parse(parser, path: Path) -> bool:
    import onnx

    w, network = parser._fake, parser._state["network"]

    def fail(desc, node=-1, node_name="", op=""):
        code = w.member("ErrorCode", "UNSUPPORTED_NODE" if node >= 0 else "MODEL_DESERIALIZE_FAILED")
        parser._state["errors"].append(
            w.new("ParserError", code=code, desc=desc, node=node, node_name=node_name, node_operator=op)
        )
        return False

    if not _explicit_batch(w, network._state["flags"]):
        return fail("The ONNX parser only supports networks with an explicit batch dimension")
    try:
        model = onnx.shape_inference.infer_shapes(onnx.load(str(path), load_external_data=False))
    except Exception as exc:  # missing or not ONNX
        return fail(f"Failed to parse ONNX model from file: {path} ({exc})")
    graph = model.graph
    info = {vi.name: vi for vi in list(graph.value_info) + list(graph.input) + list(graph.output)}
    initializers = {t.name for t in graph.initializer}
    tensors: Dict[str, Any] = {}

    def tensor(name):
        if name not in tensors:
            vi = info.get(name)
            shape = (
                [d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim]
                if vi is not None
                else []
            )
            dtype = _onnx_dtype(w, vi.type.tensor_type.elem_type) if vi is not None else _dt(w, "FLOAT")
            tensors[name] = w.new("ITensor", name=name, shape=shape, dtype=dtype)
        return tensors[name]

    for vi in graph.input:
        if vi.name not in initializers:
            t = tensor(vi.name)
            t._state["is_input"] = True
            network._state["inputs"].append(t)
    for i, node in enumerate(graph.node):
        name = node.name or f"node_of_{node.output[0]}"
        if node.op_type in w.unsupported_ops:
            return fail(f"No importer registered for op: {node.op_type}", i, name, node.op_type)
        count = 1 + w.extra_layers.get(name, 0)
        for k in range(count):
            w.layer_counter += 1
            layer_name = name if k == 0 else f"{name}_{w.layer_counter}"
            inputs = [tensor(x) for x in node.input if x] if k == 0 else []
            outputs = (
                [tensor(x) for x in node.output]
                if k == count - 1
                else [w.new("ITensor", name=f"{layer_name}_out", shape=[], dtype=_dt(w, "FLOAT"))]
            )
            network._state["layers"].append(
                w.new("ILayer", name=layer_name, op_type=node.op_type, inputs=inputs, outputs=outputs)
            )
    for vi in graph.output:
        t = tensor(vi.name)
        t._state["is_output"] = True
        network._state["outputs"].append(t)
    return True


def _build(w: World, network, config):
    """What build_serialized_network checks, then the engine as bytes (JSON after a magic line)."""
    flags = config._state["flags"]
    strong = _strongly_typed(w, network._state["flags"])
    weak_flags = [f for f in ("FP16", "INT8", "BF16", "FP8") if _flag_set(w, flags, f)]
    if strong and weak_flags:
        w.error(f"API Usage Error (BuilderFlag::k{weak_flags[0]} is not allowed with a strongly typed network)")
        return None
    dla = config._state["default_device_type"] == w.member("DeviceType", "DLA")
    if dla:
        core = config._state["DLA_core"]
        if not 0 <= core < w.dla_cores:
            w.error(f"DLA core {core} is not available ({w.dla_cores} cores)")
            return None
        devices, default = config._state["devices"], config._state["default_device_type"]
        refused = [
            layer.name
            for layer in network._state["layers"]
            if devices.get(layer.name, default) == w.member("DeviceType", "DLA")
            and not _ConfigB.can_run_on_DLA(config, layer)
        ]
        if refused and not _flag_set(w, flags, "GPU_FALLBACK"):
            w.error(f"{refused[0]} cannot run on DLA and GPU fallback is not enabled")
            return None
    profiles = [p._state["shapes"] for p in config._state["profiles"]]
    for t in network._state["inputs"]:
        if any(d < 0 for d in t._state["shape"]):
            if not profiles:
                w.error("Network has dynamic or shape inputs, but no optimization profile has been defined.")
                return None
            for shapes in profiles:
                fits = t.name in shapes and all(
                    len(s) == len(t._state["shape"]) and all(d < 0 or d == v for d, v in zip(t._state["shape"], s))
                    for s in shapes[t.name]
                )
                if not fits:
                    w.error(f"optimization profile is missing values for or does not match input tensor {t.name}")
                    return None
    if not w.build_ok or not network._state["layers"]:
        w.error("Network build failed" if w.build_ok else "the fake was told to fail the build")
        return None
    cache = config._state["cache"]
    if cache is not None:
        for layer in network._state["layers"]:
            entry = f"{layer.name}:tactic"
            if entry not in cache._state["entries"]:
                cache._state["entries"].append(entry)
    members = type.__getattribute__(w.types["BuilderFlag"], "_members_")
    desc = {
        "tensorrt": w.version,
        "flags": sorted(name for name, m in members.items() if flags & (1 << m.value)),
        "network_flags": network._state["flags"],
        "strongly_typed": strong,
        "version_compatible": _flag_set(w, flags, "VERSION_COMPATIBLE"),
        "dla_core": config._state["DLA_core"] if dla else None,
        "profiling_verbosity": config._state["profiling_verbosity"].name,
        "hardware_compatibility_level": config._state["hardware_compatibility_level"].name,
        "memory_pools": dict(config._state["pools"]),
        "profiles": profiles,
        "io": [
            {"name": t.name, "mode": "INPUT", "shape": list(t._state["shape"]), "dtype": t.dtype.name}
            for t in network._state["inputs"]
        ]
        + [
            {"name": t.name, "mode": "OUTPUT", "shape": list(t._state["shape"]), "dtype": t.dtype.name}
            for t in network._state["outputs"]
        ],
        "layers": [
            {
                "name": layer.name,
                "precision": layer._state["precision"].name if "precision" in layer._state else None,
                "device": config._state["devices"].get(layer.name, config._state["default_device_type"]).name,
            }
            for layer in network._state["layers"]
        ],
    }
    return w.new("IHostMemory", _bytes=ENGINE_MAGIC + json.dumps(desc, sort_keys=True).encode())


def read_fake_engine(data: bytes) -> Dict[str, Any]:
    """The description inside an engine the fake built (for tests' assertions)."""
    data = bytes(data)
    assert data.startswith(ENGINE_MAGIC), "not an engine built by the fake TensorRT"
    return json.loads(data[len(ENGINE_MAGIC) :].decode())


class _RuntimeB:
    num_DLA_cores = property(lambda self: self._fake.dla_cores)
    logger = property(lambda self: self._state["logger"])

    def __init__(self, logger):
        _init_state(self, logger=logger, DLA_core=-1, engine_host_code_allowed=False, max_threads=1)

    def deserialize_cuda_engine(self, serialized_engine=None, stream_reader=None, stream_reader_v2=None):
        w = self._fake
        if serialized_engine is None:
            raise NotImplementedError("fake tensorrt: deserialising from a stream reader has no behaviour")
        data = bytes(memoryview(serialized_engine))
        if not data.startswith(ENGINE_MAGIC):
            w.error("Serialization assertion failed: the data is not a TensorRT engine (magic tag mismatch)")
            return None
        desc = json.loads(data[len(ENGINE_MAGIC) :].decode())
        built, here = version_key(desc["tensorrt"]), w.key
        if built != here and not (desc["version_compatible"] and built <= here):
            w.error(
                f"The engine plan file is not compatible with this version of TensorRT (built by {desc['tensorrt']}, "
                f"running {w.version})"
            )
            return None
        if desc["version_compatible"] and not self._state["engine_host_code_allowed"]:
            w.error(
                "Cannot deserialize a version-compatible engine: engine host code is not allowed (set "
                "Runtime.engine_host_code_allowed)"
            )
            return None
        if desc["dla_core"] is not None:
            core = self._state["DLA_core"]
            if not 0 <= core < w.dla_cores:
                w.error(f"the engine runs on DLA but Runtime.DLA_core is {core} ({w.dla_cores} DLA cores)")
                return None
        return w.new(
            "ICudaEngine", desc=desc, dla_core=self._state["DLA_core"] if desc["dla_core"] is not None else None
        )


class _EngineB:
    num_io_tensors = property(lambda self: len(self._state["desc"]["io"]))
    num_layers = property(lambda self: len(self._state["desc"]["layers"]))
    num_optimization_profiles = property(lambda self: 1)
    name = property(lambda self: "fake engine")
    has_implicit_batch_dimension = property(lambda self: False)
    device_memory_size = property(lambda self: 1 << 20)
    device_memory_size_v2 = property(lambda self: 1 << 20)
    hardware_compatibility_level = property(
        lambda self: self._fake.member(
            "HardwareCompatibilityLevel", self._state["desc"]["hardware_compatibility_level"]
        )
    )
    profiling_verbosity = property(
        lambda self: self._fake.member("ProfilingVerbosity", self._state["desc"]["profiling_verbosity"])
    )

    def _io(self, name):
        for io in self._state["desc"]["io"]:
            if io["name"] == name:
                return io
        return None

    def get_tensor_name(self, index):
        return self._state["desc"]["io"][index]["name"]

    def __len__(self):  # 8.6: the number of bindings (so `if engine:` is true)
        return len(self._state["desc"]["io"])

    def get_tensor_mode(self, name):
        io = _EngineB._io(self, name)
        return self._fake.member("TensorIOMode", io["mode"] if io else "NONE")

    def get_tensor_shape(self, name):
        io = _EngineB._io(self, name)
        return _dims(self._fake, io["shape"] if io else [])

    def get_tensor_dtype(self, name):
        io = _EngineB._io(self, name)
        return _dt(self._fake, io["dtype"] if io else "FLOAT")

    def get_tensor_profile_shape(self, name, profile_index):
        profiles = self._state["desc"].get("profiles") or []
        if profile_index < len(profiles) and name in profiles[profile_index]:
            return [_dims(self._fake, s) for s in profiles[profile_index][name]]
        shape = _EngineB._io(self, name)["shape"]
        return [_dims(self._fake, shape)] * 3

    def create_execution_context(self, strategy=None):
        return self._fake.new("IExecutionContext", engine=self, addresses={}, shapes={})

    def create_engine_inspector(self):
        return self._fake.new("EngineInspector", engine=self)

    def serialize(self):
        return self._fake.new(
            "IHostMemory", _bytes=ENGINE_MAGIC + json.dumps(self._state["desc"], sort_keys=True).encode()
        )


class _ContextB:
    engine = property(lambda self: self._state["engine"])
    name = property(lambda self: self._state.get("name", ""))
    all_binding_shapes_specified = property(lambda self: True)
    all_shape_inputs_specified = property(lambda self: True)

    def get_tensor_shape(self, name):
        if name in self._state["shapes"]:
            return _dims(self._fake, self._state["shapes"][name])
        shape = list(_EngineB._io(self._state["engine"], name)["shape"])
        if shape and shape[0] < 0 and self._state["shapes"]:  # outputs follow the batch of the inputs set
            shape[0] = next(iter(self._state["shapes"].values()))[0]
        return _dims(self._fake, shape)

    def set_input_shape(self, name, shape):
        low, _, high = (list(s) for s in _EngineB.get_tensor_profile_shape(self._state["engine"], name, 0))
        shape = [int(d) for d in shape]
        if len(shape) != len(low) or any(not a <= d <= b for a, d, b in zip(low, shape, high)):
            self._fake.error(
                f"IExecutionContext::setInputShape: {name} {shape} is outside the optimization profile {low}..{high}"
            )
            return False
        self._state["shapes"][name] = shape
        return True

    def set_tensor_address(self, name, memory):
        if _EngineB._io(self._state["engine"], name) is None:
            self._fake.error(f"{name} is not an I/O tensor of the engine")
            return False
        self._state["addresses"][name] = int(memory)
        return True

    def get_tensor_address(self, name):
        return self._state["addresses"].get(name, 0)

    def infer_shapes(self):
        return []

    def execute_async_v3(self, stream_handle):
        missing = [
            io["name"]
            for io in self._state["engine"]._state["desc"]["io"]
            if not self._state["addresses"].get(io["name"])
        ]
        if missing:
            self._fake.error(f"execute_async_v3: no address set for {missing[0]}")
            return False
        if self._fake.execute is not None:
            self._fake.execute(self, stream_handle)
        return True


class _InspectorB:
    def get_engine_information(self, format):
        desc = self._state["engine"]._state["desc"]
        detailed = desc["profiling_verbosity"] == "DETAILED"
        layers = [
            {"Name": x["name"], "Precision": x["precision"], "Device": x["device"]} if detailed else x["name"]
            for x in desc["layers"]
        ]
        info = {"Layers": layers, "Bindings": [io["name"] for io in desc["io"]]}
        return json.dumps(info) if format.name == "JSON" else "\n".join(str(x) for x in layers)

    def get_layer_information(self, layer_index, format):
        desc = self._state["engine"]._state["desc"]
        return json.dumps(desc["layers"][layer_index])


def _nptype(world: World, trt_type):
    table = {
        "FLOAT": np.float32,
        "HALF": np.float16,
        "INT8": np.int8,
        "INT32": np.int32,
        "BOOL": np.bool_,
        "UINT8": np.uint8,
        "INT64": np.int64,
    }
    if trt_type.name not in table:
        raise TypeError(f"Could not resolve TensorRT datatype to an equivalent numpy datatype. {trt_type}")
    return table[trt_type.name]


def _volume(world: World, iterable):
    result = 1
    for d in iterable:
        result *= d
    return result


CLASS_BEHAVIOUR: Dict[str, type] = {
    "Dims": _DimsB,
    "Logger": _LoggerB,
    "ILogger": _ILoggerB,
    "ITensor": _TensorB,
    "ILayer": _LayerB,
    "INetworkDefinition": _NetworkB,
    "Builder": _BuilderB,
    "IBuilderConfig": _ConfigB,
    "ITimingCache": _TimingCacheB,
    "IHostMemory": _HostMemoryB,
    "OnnxParser": _ParserB,
    "ParserError": _ParserErrorB,
    "Runtime": _RuntimeB,
    "ICudaEngine": _EngineB,
    "IExecutionContext": _ContextB,
    "IOptimizationProfile": _ProfileB,
    "EngineInspector": _InspectorB,
}
_ITEMSIZE = {
    "FLOAT": 4,
    "HALF": 2,
    "BF16": 2,
    "INT8": 1,
    "UINT8": 1,
    "BOOL": 1,
    "FP8": 1,
    "INT32": 4,
    "INT64": 8,
    "INT4": 0.5,
    "FP4": 0.5,
    "E8M0": 1,
}
ENUM_BEHAVIOUR: Dict[str, Dict[str, Any]] = {"DataType": {"itemsize": property(lambda self: _ITEMSIZE[self.name])}}
FUNCTION_BEHAVIOUR: Dict[str, Callable] = {
    "nptype": _nptype,
    "volume": _volume,
    "init_libnvinfer_plugins": lambda world, logger, namespace: True,
}


# --- installing it --------------------------------------------------------------------------------


def _fake_gpu():
    from msla_deploy.trt.runtime import GpuInfo

    return GpuInfo(name="NVIDIA Jetson AGX Orin (fake)", compute_capability="8.7", driver_cuda_version="12.6")


FAKE_GPU = _fake_gpu()


def install_fake_tensorrt(monkeypatch, version: str = "10.3.0", **knobs) -> types.ModuleType:
    """sys.modules["tensorrt"] = a fake of `version`; msla_deploy.trt.runtime.probe_gpu() returns FAKE_GPU.
    Undone after the test."""
    from msla_deploy.trt import runtime

    module = make_fake_tensorrt(version, **knobs)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setattr(runtime, "probe_gpu", lambda index=0: FAKE_GPU)
    return module


@pytest.fixture(params=FAKE_VERSIONS, ids=lambda v: f"trt{v}")
def fake_trt(request, monkeypatch):
    """The fake TensorRT of each version, installed as `tensorrt` with a fake GPU (indirect parametrisation
    picks versions)."""
    return install_fake_tensorrt(monkeypatch, request.param)


def versions_where(predicate: Callable[[Tuple[int, int]], bool]) -> List[str]:
    """The fake versions whose (major, minor) satisfy `predicate`, for parametrize(..., indirect=True)."""
    return [v for v in FAKE_VERSIONS if predicate(version_key(v))]


def uncovered(names: Iterable[str]) -> List[str]:
    """Behaviour keys no version's surface has (a typo would be behaviour beyond the real API)."""
    missing = []
    for qualname, behaviour in CLASS_BEHAVIOUR.items():
        for name in (
            n
            for n in vars(behaviour)
            if not n.startswith("_") or n in ("__init__", "__len__", "__getitem__", "__eq__", "__repr__", "__str__")
        ):
            if not any(surface_has(v, f"{qualname}.{name}") for v in FAKE_VERSIONS):
                missing.append(f"{qualname}.{name}")
    return missing + [n for n in names if not any(surface_has(v, n) for v in FAKE_VERSIONS)]


# --- engines without a build (for runtime and bench tests) -------------------------------------------


def engine_bytes(
    version: str,
    inputs: Dict[str, Tuple[tuple, str]],
    outputs: Dict[str, Tuple[tuple, str]],
    *,
    version_compatible: bool = False,
    dla_core: Optional[int] = None,
    profile: Optional[Dict[str, Tuple[tuple, tuple, tuple]]] = None,
) -> bytes:
    """What the fake Builder of `version` would serialise for an engine with these I/O tensors.

    inputs/outputs: name -> (shape, DataType member name: "FLOAT", "HALF", "INT32", ...). The
    fake Runtime of the same version (or a later one, when version_compatible) deserialises it.
    profile: name -> (min, opt, max) shapes of a dynamic input (a -1 in its shape).
    """
    io = [{"name": n, "mode": "INPUT", "shape": list(s), "dtype": d} for n, (s, d) in inputs.items()]
    io += [{"name": n, "mode": "OUTPUT", "shape": list(s), "dtype": d} for n, (s, d) in outputs.items()]
    desc = {
        "tensorrt": load_api(version)["version"],
        "flags": [],
        "network_flags": 0,
        "strongly_typed": version_key(version) >= (11, 0),
        "version_compatible": version_compatible,
        "dla_core": dla_core,
        "profiling_verbosity": "DETAILED",
        "hardware_compatibility_level": "NONE",
        "memory_pools": {},
        "io": io,
        "profiles": [{n: [list(s) for s in shapes] for n, shapes in profile.items()}] if profile else [],
        "layers": [{"name": "fake_layer", "precision": None, "device": "DLA" if dla_core is not None else "GPU"}],
    }
    return ENGINE_MAGIC + json.dumps(desc, sort_keys=True).encode()


def make_engine(trt, inputs: Dict[str, Tuple[tuple, str]], outputs: Dict[str, Tuple[tuple, str]]):
    """An ICudaEngine of the fake `trt` with these I/O tensors, deserialised the way TensorRT does it."""
    return trt.Runtime(trt.Logger()).deserialize_cuda_engine(engine_bytes(trt.__version__, inputs, outputs))
