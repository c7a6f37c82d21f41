"""Temporary folders that name their owner, and a sweep for those whose owner died.

A `kill -9` (or a power cut) skips every `finally` and `atexit`: the folders a process had under
the system temp dir stay behind. So each one is named `micronas-<kind>-<pid>-<random>`, with the
PID of the process that made it, and `sweep_stale()` (run by the CLI at start-up) removes those
whose process no longer exists. A PID reused by an unrelated process only keeps a folder longer;
a folder of a live micronas process is never removed.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

PREFIX = "micronas-"
_OWNED = re.compile(r"^micronas-[a-z]+-(\d+)-")


def _prefix(kind: str) -> str:
    if not re.fullmatch(r"[a-z]+", kind):
        raise ValueError(f"temp dir kind {kind!r}: lower-case letters only")  # a programming error
    return f"{PREFIX}{kind}-{os.getpid()}-"


def mkdtemp(kind: str, dir: str | os.PathLike[str] | None = None) -> str:
    """`tempfile.mkdtemp` named `micronas-<kind>-<pid>-...` (in `dir`, default the system temp
    dir; `sweep_stale(dir)` finds it there); the caller removes it."""
    return tempfile.mkdtemp(prefix=_prefix(kind), dir=dir)


def temp_dir(kind: str) -> tempfile.TemporaryDirectory[str]:
    """`tempfile.TemporaryDirectory` named `micronas-<kind>-<pid>-...` (removed on exit)."""
    return tempfile.TemporaryDirectory(prefix=_prefix(kind))


def pid_alive(pid: int) -> bool:
    """True when a process with this PID exists (a zombie counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def sweep_stale(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove `micronas-<kind>-<pid>-*` folders under `root` whose process is gone.

    Only folders this user owns are touched; errors (a folder removed meanwhile, one we may
    not delete) are ignored: the sweep is housekeeping and never fails a command.

    Args:
        root: Where to look; default: the system temp dir.

    Returns:
        The folders removed.
    """
    base = Path(root) if root is not None else Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    uid = os.getuid() if hasattr(os, "getuid") else None
    for entry in entries:
        m = _OWNED.match(entry.name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            if uid is not None and entry.stat(follow_symlinks=False).st_uid != uid:
                continue
        except OSError:
            continue
        if not pid_alive(int(m.group(1))):
            shutil.rmtree(entry.path, ignore_errors=True)
            if not os.path.exists(entry.path):
                removed.append(Path(entry.path))
    return removed
