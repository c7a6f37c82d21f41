"""Atomic file writes: a temporary sibling, then a rename. Nothing is ever half-written."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import ConfigError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def unwritable(path: Path, e: OSError) -> ConfigError:
    """The error for a file the machine will not let us write (read-only file system, permissions,
    a full disk): names the path and the reason, never a traceback."""
    return ConfigError(f"cannot write {path}: {e.strerror or e}",
                       "check that its folder is writable and the disk is not full, or choose another output "
                       "folder (--out)")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory and a rename.

    Raises:
        ConfigError: the folder cannot be created or written (named, with the OS's reason).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise unwritable(path, e) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; artefacts are ordinary files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise unwritable(path, e) from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")
