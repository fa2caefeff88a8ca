"""One writer per artifact directory: a lock file beside it naming its holder.

`export`, `reference --inputs` (and any stage that rewrites a directory) hold
`<parent>/.<name>.lock` while they work. The file is created whole (written to a temporary name,
then hard-linked into place, which fails if a lock is already there), so a reader never sees a
half-written lock. It records pid, host and command: a second writer exits 2 naming the first.
A lock whose pid no longer runs on this host is stale (a SIGKILLed run) and is taken over.

The lock lives beside the directory, not inside it, because the directory itself is swapped
whole (see staging.py) while the lock is held.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Optional

from ..errors import BadInput

LOCK_SUFFIX = ".lock"


def lock_path(directory: Path) -> Path:
    directory = Path(directory)
    return directory.parent / f".{directory.name}{LOCK_SUFFIX}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OSError:
        return False
    try:  # Linux: a killed child its parent has not reaped yet is a zombie, not a writer
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _holder_text(holder: Dict) -> str:
    since = holder.get("started_unix")
    when = time.strftime(" since %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else ""
    return f"pid {holder.get('pid')} on {holder.get('host')} ({holder.get('command') or 'unknown command'}){when}"


def read_holder(path: Path) -> Optional[Dict]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError):
        return {}  # unreadable: treated as held by an unknown writer
    return data if isinstance(data, dict) else {}


def is_stale(holder: Dict) -> bool:
    """A lock of this host whose process is gone. A lock of another host (a shared file system)
    is never judged stale here: we cannot see its processes."""
    pid = holder.get("pid")
    return holder.get("host") == socket.gethostname() and isinstance(pid, int) and not pid_alive(pid)


def _try_create(path: Path, text: str) -> bool:
    tmp = path.with_name(f"{path.name}.new-{os.getpid()}")
    tmp.write_text(text)
    try:
        os.link(tmp, path)  # atomic, with the content already complete; fails if a lock exists
        return True
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: exclusive create (content follows)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _take_over_stale(path: Path, stale: Dict) -> None:
    """Move a stale lock aside, unless another run replaced it meanwhile (then put that back)."""
    aside = path.with_name(f"{path.name}.stale-{os.getpid()}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return
    if read_holder(aside) != stale:  # we moved a fresh lock of a racing run: give it back
        try:
            os.link(aside, path)
        except OSError:
            pass
    aside.unlink(missing_ok=True)


@contextmanager
def directory_lock(directory: Path, command: str = "") -> Iterator[Path]:
    """Hold the write lock of `directory` (which need not exist yet) for the block's duration."""
    directory = Path(directory)
    path = lock_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command or " ".join(["msla-deploy", *sys.argv[1:]]),
        "started_unix": round(time.time(), 3),
        "directory": str(directory),
    }
    text = json.dumps(me, indent=2) + "\n"
    for _ in range(5):
        if _try_create(path, text):
            break
        holder = read_holder(path)
        if holder is None:  # released between our two looks
            continue
        if holder and is_stale(holder):
            _take_over_stale(path, holder)
            continue
        who = _holder_text(holder) if holder else "an unknown writer (unreadable lock file)"
        raise BadInput(
            f"{directory} is being written by {who}",
            f"wait for it to finish; if that process is gone, delete {path}",
        )
    else:
        raise BadInput(
            f"could not take the lock {path} (other runs keep replacing it)",
            "run one msla-deploy writer per directory at a time",
        )
    try:
        yield path
    finally:
        if read_holder(path) == me:
            path.unlink(missing_ok=True)
