"""Run directories: one explicit folder per run, one artefact per stage, nothing half-written.

Every file is written to a temporary sibling and renamed into place, so an interrupted stage
leaves either the old file or the new one, never a truncated one. `run.json` marks a folder as
a micronas run and records the format version that wrote it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from micronas_base.files import atomic_write_bytes, atomic_write_json, atomic_write_text, unwritable
from micronas_base import __version__, locks
from micronas_base.errors import ConfigError

RUN_FORMAT = "micronas.run/1"
LOCK = ".lock"  # held (flock) by the command writing into the run; see `RunDir.locked`
TEACHER_DIR = "teacher"  # a distilled training's teacher: a run of its own inside the run
__all__ = ["RunDir", "RUN_FORMAT", "TEACHER_DIR", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
           "sha256_file"]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class RunDir:
    """A run directory.

    Args:
        path: The folder (created by `create`, required to exist by `open`).
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> RunDir:
        """Create (or reuse) a run directory.

        Raises:
            ConfigError: the path exists and is a file, or a folder that is not a micronas run
                and not empty (so we never write into someone's project folder by mistake).
        """
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise ConfigError(f"--out {p} exists and is not a directory", "choose another --out")
        run = cls(p)
        if p.is_dir() and any(c.name != LOCK for c in p.iterdir()) and not run.file("run.json").exists():
            raise ConfigError(f"--out {p} is a non-empty folder that is not a micronas run",
                              "choose a new or empty folder for --out")
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise unwritable(p, e) from None
        if not run.file("run.json").exists():
            atomic_write_json(run.file("run.json"), {"format": RUN_FORMAT, "micronas_version": __version__})
        run.check_format()
        return run

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunDir:
        """Open an existing run directory.

        Raises:
            ConfigError: missing folder, not a run, or written by an incompatible version.
        """
        p = Path(path)
        if p.is_file():
            raise ConfigError(f"{p} is a file, not a run directory",
                              f"pass the run directory that holds it: {p.parent}")
        if not p.is_dir():
            raise ConfigError(f"run directory {p} does not exist",
                              "create one with `micronas search --out RUN` or `micronas train --out RUN`")
        run = cls(p)
        if not run.file("run.json").exists():
            models = sorted(p.glob("*.tflite"))
            if models:  # a model made elsewhere: compile it, not export it
                raise ConfigError(f"{p} is not a micronas run directory (no run.json); it holds {models[0].name}",
                                  f"for a model made elsewhere: micronas compile {models[0]} (then micronas profile "
                                  f"{models[0]})")
            raise ConfigError(f"{p} is not a micronas run directory (no run.json)",
                              "pass the folder given to `micronas search --out` or `micronas train --out`")
        run.check_format()
        return run

    @contextlib.contextmanager
    def locked(self, stage: str) -> Iterator[RunDir]:
        """Hold the run's lock (`RUN/.lock`) while `stage` writes into it; re-entrant in a process.

        Raises:
            ConfigError: another command holds it (its PID and command are named), or the
                folder is not writable.
        """
        with locks.exclusive(self.file(LOCK), f"run directory {self.path}", stage,
                             "choose another --out (or run directory) for this command"):
            yield self

    def check_format(self) -> None:
        meta = self.read_json("run.json")
        if not isinstance(meta, dict) or meta.get("format") != RUN_FORMAT:
            got = meta.get("format") if isinstance(meta, dict) else meta
            raise ConfigError(f"{self.path} was written in run format {got!r}; this micronas "
                              f"({__version__}) reads {RUN_FORMAT!r}",
                              "re-create the run with this version (`micronas train --out NEW`)")

    def file(self, name: str) -> Path:
        return self.path / name

    def has(self, name: str) -> bool:
        return self.file(name).exists()

    def read_json(self, name: str) -> Any:
        """Read a JSON artefact.

        Raises:
            ConfigError: the file is missing or not valid JSON (names the file and what to run).
        """
        p = self.file(name)
        if not p.exists():
            raise ConfigError(f"{p} is missing", "the stage that writes it has not run; see `micronas --help`")
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p} is corrupt ({e})", "delete the run directory and re-run") from None
        if not isinstance(obj, dict):  # every artefact of a run is a JSON object
            raise ConfigError(f"{p} is corrupt (a JSON {type(obj).__name__}, not an object)",
                              "delete the run directory and re-run")
        return obj

    def write_json(self, name: str, obj: Any) -> Path:
        p = self.file(name)
        atomic_write_json(p, obj)
        return p
