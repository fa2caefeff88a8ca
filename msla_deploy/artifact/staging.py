"""Writing an artifact directory without losing anything: staged, swapped whole, locked, owned.

The rules (docs/export.md, "Overwrite, lock and trust rules"):
- A directory is ours only if its manifest.json says so (tool and format fields) and the files
  that manifest lists are there. Anything else that is not empty is never written into.
- Re-exporting over one of ours needs --overwrite. It replaces the files the earlier export wrote
  (the manifest's `artifacts` and the manifest) and keeps every other file: engines, validation
  reports, files the user put there. Keeping is chosen over refusing because an engine can be
  hours of device time; the kept files are named in a warning (they came from the earlier model).
- Every change of several files is staged in `.<name>.partial-<pid>` beside the directory and
  swapped in with two renames (the old one goes to `.<name>.old-<pid>` and is then deleted).
  Kept files travel into the staged copy as hard links, so until the swap the original is
  untouched and deleting a staging directory never loses a file.
- One writer at a time (lock.py). Under the lock, leftovers of killed runs (`.partial-`/`.old-`
  of dead pids, temp files of atomic writes) are removed; an `.old-` directory whose swap never
  finished (the target is missing) is put back instead.
- A symlinked --out is followed: the link stays, its target is written. A dangling link is
  refused before anything is created.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from ..errors import BadInput
from .lock import directory_lock, pid_alive
from .names import (
    BUILD_RECORD_NAME,
    ENGINE_SUFFIXES,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    ONNX_SUFFIX,
    PARITY_NAME,
    REFERENCE_DIR,
    TOOL_NAME,
)
from .trust import is_inside_relative as safe_relative

PARTIAL_TAG = "partial"
OLD_TAG = "old"
KEPT_SUFFIX = ".kept"  # a user file that an export's own file of the same name would replace
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<tag>partial|old|tmp|new|stale)-(?P<pid>\d+)$")


def staging_path(target: Path, tag: str) -> Path:
    """Beside the target, hidden, with this process's pid: found and removed by the next run if we die."""
    return target.parent / f".{target.name}.{tag}-{os.getpid()}"


def real_target(out: Path, flag: str = "--out") -> Path:
    """The directory to write for `out`: a symbolic link is followed (the link itself is never
    replaced); a dangling one is refused before anything is created. `.` and `a/b/..` are
    made absolute first: the lock and the staging directory go beside the target by its name,
    and those paths have none (they would land inside it)."""
    out = Path(out)
    if out.name in ("", ".", "..") or ".." in out.parts:
        out = Path(os.path.abspath(out))
    if out.is_symlink():
        if not out.exists():
            raise BadInput(
                f"{flag} {out} is a symbolic link to {os.readlink(out)}, which does not exist",
                "create the directory it points to, or pass another path",
            )
        resolved = out.resolve()
        if not resolved.is_dir():
            raise BadInput(f"{flag} {out} links to {resolved}, which is not a directory", "point it at a directory")
        return resolved
    return out


def export_manifest(directory: Path) -> Tuple[Optional[Dict], str]:
    """(manifest, "") for an export this tool wrote, else (None, why it is not one of ours)."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        return None, f"no {MANIFEST_NAME}"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None, f"its {MANIFEST_NAME} is not readable JSON"
    tool = data.get("tool") if isinstance(data, dict) else None
    fmt = data.get("format") if isinstance(data, dict) else None
    family = MANIFEST_FORMAT.split("/")[0]
    if (
        not isinstance(tool, dict)
        or tool.get("name") != TOOL_NAME
        or not isinstance(fmt, str)
        or fmt.split("/")[0] != family
    ):
        return None, f"its {MANIFEST_NAME} was not written by {TOOL_NAME} (no tool/format fields of ours)"
    listed = data.get("artifacts")
    if not isinstance(listed, dict) or not listed:
        return None, f"its {MANIFEST_NAME} lists no files"
    for rel in listed:
        if not safe_relative(rel):
            return None, f"its {MANIFEST_NAME} names a path outside the directory ({rel!r})"
        if not (Path(directory) / rel).is_file():
            return None, f"{rel}, listed in its {MANIFEST_NAME}, is missing"
    return data, ""


def _entries(root: Path) -> List[str]:
    """Every file, link and empty folder under root, as relative POSIX paths."""
    found = []
    for folder, dirs, files in os.walk(root):
        rel_folder = Path(folder).relative_to(root)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            found.append((rel_folder / name).as_posix())
        if not dirs and not files and Path(folder) != root:
            found.append(rel_folder.as_posix() + "/")
    return sorted(found)


def _names(items: List[str], shown: int = 6) -> str:
    text = ", ".join(items[:shown])
    return text + (f" and {len(items) - shown} more" if len(items) > shown else "")


@dataclass
class TargetPlan:
    target: Path  # the real directory (a symlinked --out resolved)
    replaced: List[str] = field(default_factory=list)  # files of an earlier export
    kept: List[str] = field(default_factory=list)  # everything else already there


def plan_target(out: Path, overwrite: bool = False) -> TargetPlan:
    """What writing an export to `out` would replace and keep; BadInput where it may not."""
    target = real_target(out)
    if target.exists() and not target.is_dir():
        raise BadInput(f"--out {out} is a file", "choose a directory path")
    if not target.is_dir() or not any(target.iterdir()):
        return TargetPlan(target)
    manifest, why = export_manifest(target)
    if manifest is None:
        raise BadInput(
            f"--out {out} is not empty and is not an msla-deploy export directory ({why}); nothing in it was touched",
            "choose a new or empty directory",
        )
    ours = set(manifest["artifacts"]) | {MANIFEST_NAME}
    entries = _entries(target)
    replaced = [e for e in entries if e in ours]
    kept = [e for e in entries if e not in ours]
    if not overwrite:
        keeps = f"; it keeps the other {len(kept)} ({_names(kept)})" if kept else ""
        raise BadInput(
            f"--out {out} already holds an export ({len(replaced)} files: {_names(replaced)})",
            f"pass --overwrite to replace those files{keeps}, or choose another --out",
        )
    return TargetPlan(target, replaced, kept)


def check_replaceable(target: Path, overwrite: bool = False) -> None:
    """Fail early (before any model is built) where the export could not be written."""
    plan_target(target, overwrite)


# --- staging, swapping, carrying --------------------------------------------------------------


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
        return
    try:
        os.link(src, dst)  # same file system (staging sits beside the target): free and instant
    except OSError:
        shutil.copy2(src, dst)


def link_tree(src: Path, dst: Path, entries: Optional[Iterable[str]] = None) -> List[str]:
    """Hard-link `entries` (default: all) of src into dst. An entry dst already has is carried
    as NAME.kept instead of replacing dst's own file; returns those renamed entries."""
    renamed = []
    for rel in _entries(src) if entries is None else entries:
        if rel.endswith("/"):
            (dst / rel).mkdir(parents=True, exist_ok=True)
            continue
        where = dst / rel
        if where.exists() or where.is_symlink():
            where = where.with_name(where.name + KEPT_SUFFIX)
            renamed.append(rel)
        _link_or_copy(src / rel, where)
    return renamed


def swap_in(target: Path, staging: Path) -> None:
    """Replace target by staging with two renames; the earlier target is deleted after."""
    old = staging_path(target, OLD_TAG)
    had_old = target.exists()
    if had_old:
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        if had_old and not target.exists():
            os.replace(old, target)  # an interrupt between the renames: put the original back
        raise
    if had_old:
        shutil.rmtree(old, ignore_errors=True)


def clean_leftovers(target: Path) -> List[str]:
    """Remove what killed runs left beside and inside `target` (the caller holds its lock).
    An `.old-` directory whose swap never finished is restored rather than deleted."""
    target = Path(target)
    removed: List[str] = []
    if not target.parent.is_dir():
        return removed

    def dead(pid: int) -> bool:
        return pid == os.getpid() or not pid_alive(pid)

    candidates = []
    for entry in target.parent.iterdir():
        m = _LEFTOVER.match(entry.name)
        if not m or not dead(int(m.group("pid"))):
            continue
        if m.group("name") == target.name or m.group("name").startswith(target.name + ".lock"):
            candidates.append((m.group("tag"), entry))
    olds = sorted((e for tag, e in candidates if tag == OLD_TAG), key=lambda e: e.stat().st_mtime)
    if olds and not target.exists():
        os.replace(olds.pop(), target)
        removed.append(f"restored {target.name} from an interrupted swap")
    for _tag, entry in candidates:
        if entry.exists() or entry.is_symlink():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry.name)
    if target.is_dir():  # temp files of atomic writes (write_bytes_atomic) inside the directory
        for folder, _dirs, files in os.walk(target):
            for name in files:
                m = _LEFTOVER.match(name)
                if m and m.group("tag") == "tmp" and dead(int(m.group("pid"))):
                    path = Path(folder) / name
                    path.unlink(missing_ok=True)
                    removed.append(path.relative_to(target).as_posix())
    return removed


def recover_interrupted_swap(
    directory: Path, command: str = "", on_warning: Optional[Callable[[str], None]] = None
) -> None:
    """Put back a directory that is missing only because a run was killed between the two renames
    of its swap (its `.old-` copy lies beside it): every command that takes an existing
    directory calls this before judging whether the directory is there."""
    if Path(directory).exists() or Path(directory).is_symlink():
        return
    target = real_target(directory, "directory")
    if not target.parent.is_dir():
        return
    prefix = f".{target.name}.{OLD_TAG}-"
    if not any(entry.name.startswith(prefix) for entry in target.parent.iterdir()):
        return
    warn = on_warning or (lambda message: None)
    with directory_lock(target, command):
        for item in clean_leftovers(target):
            warn(f"removed a leftover of an interrupted run beside {target}: {item}")


def _created_parents(target: Path) -> List[Path]:
    return [p for p in reversed(target.absolute().parents) if not p.exists()]


@contextmanager
def staged_directory(
    out: Path, overwrite: bool = False, on_warning: Optional[Callable[[str], None]] = None, command: str = ""
) -> Iterator[Path]:
    """A fresh staging directory for a whole export; swapped in at `out` if the block succeeds.

    Holds the lock of the directory throughout; an earlier export there is replaced only with
    `overwrite`, and the files it did not write are carried over (see the module docstring)."""
    warn = on_warning or (lambda message: None)
    target = real_target(out)
    created = _created_parents(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with directory_lock(target, command):
            for item in clean_leftovers(target):
                warn(f"removed a leftover of an interrupted run beside {target}: {item}")
            plan = plan_target(target, overwrite)  # again, under the lock: the directory may have changed
            staging = staging_path(target, PARTIAL_TAG)
            staging.mkdir()
            try:
                yield staging
                renamed = link_tree(target, staging, plan.kept) if plan.kept else []
                swap_in(target, staging)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            if plan.kept:
                warn(
                    f"--overwrite kept {len(plan.kept)} file(s) the earlier export did not write "
                    f"({_names(plan.kept)}); "
                    "engines and reports among them were made from the earlier model: rebuild and re-validate"
                )
            for rel in renamed:
                warn(f"your file {rel} has the name of one this export writes: it is kept as {rel}{KEPT_SUFFIX}")
    except BaseException:
        for folder in reversed(created):  # bad input leaves no empty folders behind
            try:
                folder.rmdir()
            except OSError:
                break
        raise


@contextmanager
def staged_update(
    directory: Path, command: str = "", on_warning: Optional[Callable[[str], None]] = None
) -> Iterator[Path]:
    """A staged copy of an existing directory (its files hard-linked) to change several files
    in; swapped in whole if the block succeeds. Writers must REPLACE files in the copy (write a
    new file and rename it, as write_bytes_atomic does), never write into one: a hard-linked
    file written in place would change the original too."""
    warn = on_warning or (lambda message: None)
    target = real_target(directory, flag="directory")
    with directory_lock(target, command):
        for item in clean_leftovers(target):
            warn(f"removed a leftover of an interrupted run beside {target}: {item}")
        staging = staging_path(target, PARTIAL_TAG)
        try:
            staging.mkdir()
            link_tree(target, staging)
            yield staging
            swap_in(target, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


# --- outputs that must not land on the artifact -----------------------------------------------


def protected_paths(root: Path) -> List[Path]:
    """What an artifact directory is made of: its manifest, the files it lists, the reference
    bundle, the model files and build records. Reports may go beside them, never onto them."""
    root = Path(root)
    names = {MANIFEST_NAME, PARITY_NAME, REFERENCE_DIR, BUILD_RECORD_NAME}
    manifest, _ = export_manifest(root)
    if manifest is None and (root / MANIFEST_NAME).is_file():
        try:
            listed = json.loads((root / MANIFEST_NAME).read_text()).get("artifacts")
        except (OSError, ValueError, AttributeError, RecursionError):
            listed = None
    else:
        listed = (manifest or {}).get("artifacts")
    if isinstance(listed, dict):
        names |= {rel for rel in listed if safe_relative(rel)}
    if root.is_dir():
        names |= {p.name for p in root.iterdir() if p.suffix in (ONNX_SUFFIX, *ENGINE_SUFFIXES)}
    return [root / n for n in sorted(names)]
