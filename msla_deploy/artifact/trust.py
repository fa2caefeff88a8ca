"""What a manifest may make this tool do: nothing but describe data.

- Model code: a manifest's `options.model` may be `FILE.py:FACTORY` (or `module:FACTORY`).
  Rebuilding that model (reference --inputs, validate --localize, bench --backend torch) imports
  and runs it, so it is never imported on the manifest's word: the user names it again
  (`msla-deploy --trust-model-file FILE.py:FACTORY ...`, or MSLA_DEPLOY_TRUST_MODEL_FILE), and a
  file's sha256 must still be the one export recorded (`model.file_sha256`).
- Paths: every path a manifest names for the artifact's own files is relative and stays inside
  the artifact directory; the typed reader (manifest.py, `relative_inside`) refuses anything
  else with exit 2. `is_inside_relative` below is the same rule as a yes/no, for code that must
  not raise (telling an export of ours from a foreign directory, staging.py).

torch-free: checked before torch or the user's code is touched.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

from ..errors import BadInput
from .files import sha256_file
from .options import is_factory_spec, is_timm_spec

TRUST_FLAG = "--trust-model-file"
TRUST_ENV = "MSLA_DEPLOY_TRUST_MODEL_FILE"  # os.pathsep-separated specs, for CI jobs

_trusted: List[str] = []  # specs named on the command line of this run


def set_trusted(specs) -> None:
    """The model specs the user named (the CLI calls this once per run)."""
    _trusted[:] = [s for s in (specs or []) if s]


@contextmanager
def trusting(*specs: str) -> Iterator[None]:
    """For library callers: trust these specs for the block."""
    saved = list(_trusted)
    _trusted.extend(specs)
    try:
        yield
    finally:
        _trusted[:] = saved


def specs_from_env(text: str) -> List[str]:
    """The specs in MSLA_DEPLOY_TRUST_MODEL_FILE, os.pathsep-separated. Where that separator is
    ':' (POSIX) it is also the one inside every FILE.py:FACTORY, so the pieces pair up:
    'a.py:build:b.py:make' is a.py:build and b.py:make. An odd count cannot be read that way."""
    pieces = [p for p in text.split(os.pathsep) if p.strip()]
    if os.pathsep != ":":
        return pieces
    if len(pieces) % 2:
        from ..errors import BadInput

        raise BadInput(
            f"{TRUST_ENV}={text!r} is not a list of FILE.py:FACTORY specs",
            "write FILE.py:FACTORY, several joined by ':' (a.py:build:b.py:make)",
        )
    return [f"{pieces[i]}:{pieces[i + 1]}" for i in range(0, len(pieces), 2)]


def trusted_specs() -> List[str]:
    return [*_trusted, *specs_from_env(os.environ.get(TRUST_ENV, ""))]


# --- model specs ----------------------------------------------------------------------------------


def is_file_target(target: str) -> bool:
    """'dir/x.py' or 'x.py' is a file; 'package.module' is a module (the same rule export uses)."""
    return target.endswith(".py") or "/" in target or os.sep in target or Path(target).is_file()


def _split(spec: str) -> Tuple[str, str]:
    target, _, factory = spec.rpartition(":")  # the last colon: a Windows drive may come before it
    return target, factory


def same_spec(a: str, b: str) -> bool:
    (ta, fa), (tb, fb) = _split(a), _split(b)
    if fa != fb:
        return False
    if is_file_target(ta) and is_file_target(tb):
        return Path(ta).expanduser().resolve() == Path(tb).expanduser().resolve()
    return ta == tb


def model_file_sha256(spec) -> Optional[str]:
    """sha256 of the file a FILE.py:FACTORY spec names (None for zoo names and module specs)."""
    if not is_factory_spec(spec):
        return None
    target, _ = _split(spec)
    path = Path(target).expanduser()
    return sha256_file(path) if is_file_target(target) and path.is_file() else None


def _field(record: Any, key: str):
    """A manifest field from the typed Manifest (artifact/manifest.py) or its JSON dict."""
    if record is None:
        return None
    return record.get(key) if isinstance(record, dict) else getattr(record, key, None)


def check_model_code(manifest: Any, purpose: str) -> None:
    """BadInput unless the model code a manifest names may be imported (see the module doc)."""
    spec = _field(_field(manifest, "options"), "model")
    if not is_factory_spec(spec) or is_timm_spec(spec):
        return  # a zoo name or a timm model: code of installed packages, not of the artifact
    named = trusted_specs()
    if not any(same_spec(n, spec) for n in named):
        also = f" (you trusted {', '.join(named)}: not that)" if named else ""
        raise BadInput(
            f"{purpose} would import and run {spec}, named only by the manifest; a manifest is data, its code is not "
            f"run{also}",
            f"if you trust that file, name it again: msla-deploy {TRUST_FLAG} {spec} ...",
        )
    target, _ = _split(spec)
    if not is_file_target(target):
        return  # an installed module the user named: nothing on disk of ours to hash
    path = Path(target).expanduser()
    if not path.is_file():
        raise BadInput(
            f"{purpose}: the model file {target} is not there",
            "run from the directory the export ran in, or put the file back",
        )
    recorded = _field(_field(manifest, "model"), "file_sha256")
    if not isinstance(recorded, str) or not recorded:
        raise BadInput(
            f"{purpose}: the manifest records no sha256 of {target}, so the file cannot be checked against the export",
            "re-export (export records it), then run this again",
        )
    actual = sha256_file(path)
    if actual != recorded:
        raise BadInput(
            f"{purpose}: {target} changed since the export (sha256 {actual[:12]}, the export recorded {recorded[:12]})",
            "restore the file the export used, or re-export",
        )


# --- paths ------------------------------------------------------------------------------------------


def is_inside_relative(rel) -> bool:
    """Relative, no '..', no drive or root, no backslashes: stays inside the directory."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        return False
    path = Path(rel)
    return not path.is_absolute() and ".." not in path.parts and not (len(rel) > 1 and rel[1] == ":")
