"""Packages whose public names load on first use (PEP 562).

A command module lives in its stage's package (msla_deploy/bench/command.py), so importing it runs
the package's __init__. `msla-deploy --help` imports every command module to read its options, so
an __init__ that imported numpy, onnx or TensorRT's planning there would be paid by every start;
with lazy_exports the names stay importable as before and load when first used.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List, Tuple


def lazy_exports(package: str, exports: Dict[str, str]) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """(__getattr__, __dir__) for `package`, whose name `n` is `exports[n]`'s attribute of that name.

    __getattr__, __dir__ = lazy_exports(__name__, {"summarize": "stats"})
    """

    def __getattr__(name: str) -> Any:
        submodule = exports.get(name)
        if submodule is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{submodule}"), name)
        setattr(importlib.import_module(package), name, value)  # later lookups skip this hook
        return value

    def __dir__() -> List[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(exports))

    return __getattr__, __dir__
