"""Advisory locks: one writer per run directory (or table file) at a time.

Two `micronas search --out R` at once used to interleave their writes and both crash on a torn
checkpoint. A command that writes into a run now holds `flock` on `R/.lock`, with its PID and
command written inside for the error the second one gets. The kernel drops an flock when its
holder dies, however it dies, so a lock is never stale. The file is removed on release (so a run
looks as it did), while still locked; a taker that opened the old file before that sees, after
locking, that the path now names another file (or none) and starts again.

Locks are re-entrant within a process: `search` holds the run's lock while its train, export
and profile stages take it again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shlex
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are then unguarded, as before
    fcntl = None  # type: ignore[assignment]

_HELD: dict[str, list[int]] = {}  # real path of the lock file -> [fd, depth]
_GUARD = threading.Lock()


def _holder(fd: int) -> dict:
    try:
        data = os.pread(fd, 4096, 0)
        obj = json.loads(data.decode("utf-8")) if data.strip() else {}
    except (OSError, ValueError):
        obj = {}
    return obj if isinstance(obj, dict) else {}


@contextlib.contextmanager
def exclusive(lock_file: str | os.PathLike[str], what: str, stage: str, hint: str) -> Iterator[None]:
    """Hold an exclusive advisory lock on `lock_file` (created if needed) for the block.

    Args:
        lock_file: The lock file, e.g. `RUN/.lock`.
        what: What the lock guards, for the message ("run directory runs/a").
        stage: What this process does there ("search", "profile"), recorded for a second taker.
        hint: The next thing to try when it is taken (after "wait for PID N to finish, or ").

    Raises:
        ConfigError: another process holds it (naming its PID and command), or the lock file
            cannot be created (a read-only or missing folder).
    """
    path = Path(lock_file)
    key = os.path.realpath(path)
    with _GUARD:
        if key in _HELD:
            _HELD[key][1] += 1
            held_here = True
        else:
            held_here = False
    if held_here:
        try:
            yield
        finally:
            with _GUARD:
                _HELD[key][1] -= 1
        return
    fd = _acquire(path, what, hint)
    try:
        record = {"pid": os.getpid(), "stage": stage, "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                  "since": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
    except OSError as e:
        _release(path, fd)
        raise ConfigError(f"cannot write into {path.parent} ({e.strerror or e}): {what} needs a writable folder",
                          "check the folder's permissions and free space, or choose another location") from None
    with _GUARD:
        _HELD[key] = [fd, 1]
    try:
        yield
    finally:
        with _GUARD:
            _HELD[key][1] -= 1
            done = _HELD[key][1] == 0
            if done:
                del _HELD[key]
        if done:
            _release(path, fd)


def _acquire(path: Path, what: str, hint: str) -> int:
    """An open, flock'ed descriptor of the file `path` names now (see the module doc)."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise ConfigError(f"cannot write into {path.parent} ({e.strerror or e}): {what} needs a writable folder",
                              "check the folder's permissions and free space, or choose another location") from None
        if fcntl is None:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            h = _holder(fd)
            os.close(fd)
            pid = h.get("pid", "unknown")
            since = f", since {h['since']}" if h.get("since") else ""
            raise ConfigError(f"{what} is in use by PID {pid} ({h.get('stage', '?')}: "
                              f"{h.get('command', 'unknown command')}{since})",
                              f"wait for PID {pid} to finish, or {hint}") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder released and removed it meanwhile: lock the file there now


def _release(path: Path, fd: int) -> None:
    try:
        path.unlink(missing_ok=True)  # while still locked: nobody can be holding the path's file
    except OSError:
        pass
    os.close(fd)  # closing the last descriptor releases the flock
