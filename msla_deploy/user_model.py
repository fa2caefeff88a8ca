"""Load a user's model from `path/to/file.py:factory` or `package.module:factory`.

Every way this can fail (no such file, an import error inside it, a missing or argument-taking
factory, a factory that raises or returns something else than an nn.Module) becomes a one-line
BadInput naming the file and line, never a traceback. What the user's code prints while it is
imported or called goes to stderr: stdout belongs to the command's result (--json).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple, Union

from torch import nn

from .artifact.trust import is_file_target
from .errors import BadInput, one_line_text

_USAGE = "use path/to/file.py:factory or package.module:factory"


def _where(exc: BaseException, prefer_file: Optional[str] = None) -> str:
    """'f.py line N': the deepest frame in the user's file, else the deepest non-import frame."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"{Path(exc.filename or prefer_file or '?').name} line {exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
    if prefer_file is not None:
        mine = [f for f in frames if _same_file(f.filename, prefer_file)]
        frames = mine or frames
    if not frames:
        return "unknown line"
    return f"{Path(frames[-1].filename).name} line {frames[-1].lineno}"


def _describe(exc: BaseException, prefer_file: Optional[str] = None) -> str:
    """'ValueError at f.py line 12: the message' (one line, no traceback)."""
    message = exc.msg if isinstance(exc, SyntaxError) and exc.msg else one_line_text(exc)
    return f"{type(exc).__name__} at {_where(exc, prefer_file)}: {message}"


def describe_error(exc: BaseException, prefer_file: Optional[str] = None) -> str:
    """Public form of _describe: for errors raised by a user's model outside the factory (its forward)."""
    return _describe(exc, prefer_file)


@contextmanager
def _prints_to_stderr() -> Iterator[None]:
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@contextmanager
def _importable_from(directory: Optional[Path]) -> Iterator[None]:
    """The file's own folder on sys.path, as `python file.py` would have it: sibling imports work."""
    entry = str(directory) if directory is not None else None
    added = entry is not None and entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


@dataclass(frozen=True)
class _Factory:
    function: Callable
    name: str
    where: str  # the file or module, for messages
    file: Optional[Path]  # set for file specs


def _split_spec(spec: str) -> Tuple[str, str]:
    if not isinstance(spec, str) or ":" not in spec:
        raise BadInput(f"model spec {spec!r} has no ':factory' part", _USAGE)
    # the last colon: a Windows drive letter may come before it
    target, attr = spec.rsplit(":", 1)
    if not target or not attr:
        raise BadInput(f"model spec {spec!r} needs both a file or module and a factory name", _USAGE)
    if not all(part.isidentifier() for part in attr.split(".")):
        raise BadInput(f"factory name {attr!r} in {spec!r} is not a Python name", _USAGE)
    return target, attr


def _is_file_target(target: str) -> bool:
    return is_file_target(target)  # one rule for export and for the trust check (artifact/trust.py)


def _import_file(path_text: str):
    path = Path(path_text).expanduser()
    if not path.exists():
        raise BadInput(
            f"model file {path_text} not found", "check the path (relative paths start at the current directory)"
        )
    if not path.is_file():
        raise BadInput(f"model file {path_text} is not a file", _USAGE)
    path = path.resolve()
    # a fresh module under a unique name: two files called model.py, or one file loaded twice,
    # never clash; the first load keeps the plain name, which is what records and manifests show
    base = "msla_user_" + re.sub(r"\W", "_", path.stem)
    name, copy = base, 1
    while name in sys.modules:
        copy += 1
        name = f"{base}_{copy}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BadInput(f"cannot import {path_text} as Python", "give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and typing look classes up here during import
    try:
        with _importable_from(path.parent), _prints_to_stderr():
            spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # SystemExit: a file that calls sys.exit() on import
        sys.modules.pop(name, None)
        fix = "install the missing package" if isinstance(exc, ImportError) else "fix the file"
        raise BadInput(
            f"importing {path_text} failed: {_describe(exc, str(path))}",
            f"{fix}; `python {path_text}` shows the full traceback",
        ) from None
    return module, path


def _import_module(name: str):
    if not all(part.isidentifier() for part in name.split(".")):
        raise BadInput(f"{name!r} is neither a .py file nor a module name", _USAGE)
    try:
        with _prints_to_stderr():
            return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise BadInput(f"no module named {name!r}", "check the name, or give a path to a .py file") from None
        raise BadInput(f"importing {name} failed: {_describe(exc)}", "install the missing package") from None
    except Exception as exc:
        raise BadInput(
            f"importing {name} failed: {_describe(exc)}",
            f"fix the module; `python -c 'import {name}'` shows the full traceback",
        ) from None


def _defined_callables(module) -> List[str]:
    names = [
        n
        for n, obj in vars(module).items()
        if not n.startswith("_") and callable(obj) and getattr(obj, "__module__", None) == module.__name__
    ]
    return sorted(names)


def _resolve(spec: str) -> _Factory:
    target, attr = _split_spec(spec)
    if _is_file_target(target):
        module, file = _import_file(target)
        where = target
    else:
        module, file, where = _import_module(target), None, target
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            hint = "check the factory name"
            if file is not None:  # a user's own file: list what it defines (a package's list would mislead)
                defined = _defined_callables(module)
                hint = f"callables defined there: {', '.join(defined)}" if defined else "it defines no public callables"
            raise BadInput(f"{where} has no attribute {attr!r}", hint)
        obj = getattr(obj, part)
    if not callable(obj):
        raise BadInput(
            f"{attr!r} in {where} is a {type(obj).__name__}, not callable",
            "name a function or class that builds the model",
        )
    return _Factory(obj, attr.split(".")[-1], where, file)


def load_factory(spec: str) -> Callable[[], nn.Module]:
    """The callable named by "path/to/file.py:factory" or "package.module:factory" (not yet called)."""
    return _resolve(spec).function


def _check_no_arguments(factory: _Factory) -> None:
    try:
        signature = inspect.signature(factory.function)
    except (TypeError, ValueError):
        return  # builtins and some C types: just call it
    required = [
        p.name
        for p in signature.parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    if required:
        raise BadInput(
            f"factory {factory.name}({', '.join(required)}) in {factory.where} needs arguments, and it is called "
            "with none",
            "give its parameters defaults, or add a factory that takes none",
        )


def _call_factory(factory: Union[Callable, _Factory]) -> nn.Module:
    """Call a factory with no arguments; its exceptions and wrong return types become BadInput."""
    if not isinstance(factory, _Factory):
        name = getattr(factory, "__name__", type(factory).__name__)
        factory = _Factory(factory, name, getattr(factory, "__module__", None) or "?", None)
    _check_no_arguments(factory)
    code_file = getattr(getattr(factory.function, "__code__", None), "co_filename", None)
    prefer = str(factory.file) if factory.file is not None else code_file
    try:
        with _importable_from(factory.file.parent if factory.file is not None else None), _prints_to_stderr():
            model = factory.function()
    except (Exception, SystemExit) as exc:
        raise BadInput(
            f"factory {factory.name}() in {factory.where} raised {_describe(exc, prefer)}",
            "fix the factory; call it in Python to see the full traceback",
        ) from None
    if not isinstance(model, nn.Module):
        raise BadInput(
            f"factory {factory.name}() in {factory.where} returned {type(model).__name__}, not a torch.nn.Module",
            "return the network itself, e.g. `return MyNet()`",
        )
    return model


def build_user_model(spec: Union[str, Callable]) -> Tuple[nn.Module, str]:
    """(model, factory name) from a "file.py:factory" / "module:factory" spec or a Python callable."""
    factory = _resolve(spec) if isinstance(spec, str) else spec
    model = _call_factory(factory)
    name = factory.name if isinstance(factory, _Factory) else getattr(factory, "__name__", type(factory).__name__)
    return model, name
