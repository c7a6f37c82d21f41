"""The latency-table file: measured counts per runtime-op key, and where they came from.

Format (`micronas.latency_table/1`, JSON)::

    {
      "format": "micronas.latency_table/1",
      "metadata": {
        "board": "nucleo-f446re", "core": "cortex-m4", "clock_hz": 180000000,
        "where": "emulated: QEMU mps2-an386",
        "timer_kind": "instructions",            # or "cycles" (DWT, real board)
        "count_source": "...",                   # one sentence: what a count is
        "compiler": "arm-none-eabi-gcc 12.2.1", "cflags": ["-O2", ...], "simd": true,
        "runtime_version": "1", "runtime_hash": "<sha256 of the C runtime and model template>",
        "bench_hash": "<sha256 of the BENCH_OP dispatcher, its firmware glue and representative values>",
        "micronas_version": "0.1.0", "date": "2026-11-22T04:30:00Z",
        "command": "micronas tables build --target nucleo-f446re --channels 6 --length 100 --classes 4",
        "space": "default", "input_channels": 6, "input_length": 100, "num_classes": 4,
        "bench_calls_per_entry": 2
      },
      "overhead": 1234.0,                        # fixed per-inference count (copies, calls)
      "entries": {"CONV_2D(in_len=...)": 96694.0, ...}
    }

A count is per call, in `timer_kind` units. A table made for another runtime is refused by
`load` (its counts describe other kernels) unless `allow_stale`, which warns instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from micronas_base.errors import ConfigError
from micronas_base.files import atomic_write_text

from .keys import parse_key

log = logging.getLogger(__name__)

TABLE_FORMAT = "micronas.latency_table/1"
REQUIRED_METADATA = ("board", "core", "clock_hz", "where", "timer_kind", "count_source", "compiler", "cflags",
                     "runtime_version", "runtime_hash", "micronas_version", "date", "command", "space",
                     "input_channels", "input_length", "num_classes")


def runtime_hash() -> str:
    """sha256 over the C runtime's sources and the generated-model template (what a count measures)."""
    h = hashlib.sha256()
    root = resources.files("firmware_export")
    files = sorted((p for p in (root / "runtime").iterdir() if p.name.endswith((".c", ".h"))), key=lambda p: p.name)
    files.append(root / "templates" / "micronas_model.c.tmpl")
    for p in files:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def bench_hash(keys: Iterable[str]) -> str:
    """sha256 over how these entries are measured: the generated BENCH_OP dispatcher, the firmware
    glue that feeds and times it, and every key's BENCH_OP request (its cost fields and the op's
    representative values, as bytes). An edit to an emitter that changes neither leaves it as is.

    Args:
        keys: The table's keys.
    """
    from firmware_export.codegen import bench

    h = hashlib.sha256()
    h.update(b"micronas_bench.c\0" + bench.render_dispatcher().encode() + b"\0")
    fw = resources.files("targets") / "firmware"
    for p in (fw / "bench.c", fw / "bench.h", fw / "main.c"):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    for key in sorted(keys):
        kernel, params = bench.bench_request(*parse_key(key))
        h.update(key.encode() + b"\0" + kernel.to_bytes(4, "little") + params + b"\0")
    return h.hexdigest()


def count_to_ms(count: Any, clock_hz: float) -> Any:
    """Milliseconds of a count at one count per cycle of `clock_hz` (works on arrays too).

    Args:
        count: Cycles, or emulated instructions (one per cycle at the board clock).
        clock_hz: The board clock.

    Returns:
        count / clock_hz * 1e3.
    """
    return count / clock_hz * 1e3


def count_from_seconds(seconds: float, clock_hz: float) -> float:
    """The count a duration allows at one count per cycle of `clock_hz` (the inverse of `count_to_ms`)."""
    return seconds * clock_hz


def flash_model_bytes(const_bytes: Any, kernels: Any, per_layer_bytes: float, base_bytes: float = 0) -> Any:
    """The flash model: firmware base + constant bytes + code bytes per kernel call (arrays too).

    Args:
        const_bytes: Constant bytes (weights, biases, requantisation, params).
        kernels: Kernel calls.
        per_layer_bytes: The model's code bytes per kernel call.
        base_bytes: The model's base (runtime and firmware code); 0 for one layer's share.

    Returns:
        base_bytes + const_bytes + per_layer_bytes * kernels.
    """
    return base_bytes + const_bytes + per_layer_bytes * kernels


TABLES_ENV = "MICRONAS_TABLES"
USER_TABLES_DIR = "micronas-tables"


def default_table_name(board: str, channels: int, length: int, classes: int, space: str = "default") -> str:
    """The file name of the table for a board, a data shape and a search space."""
    suffix = "" if space == "default" else f"-{space}"
    return f"{board}-{channels}ch-{length}-{classes}cls{suffix}.json"


def table_dirs() -> list[Path]:
    """Where tables are looked up: $MICRONAS_TABLES (os.pathsep-separated), ./micronas-tables,
    then the tables shipped with micronas."""
    dirs = [Path(p) for p in os.environ.get(TABLES_ENV, "").split(os.pathsep) if p]
    dirs.append(Path.cwd() / USER_TABLES_DIR)
    dirs.append(shipped_dir())
    return dirs


def shipped_dir() -> Path:
    """The folder of the tables shipped with micronas."""
    return Path(str(resources.files("latency_tables") / "tables"))


@dataclass
class Table:
    """A loaded latency table."""

    metadata: dict[str, Any]
    entries: dict[str, float] = field(default_factory=dict)
    overhead: float | None = None
    path: Path | None = None

    @property
    def unit(self) -> str:
        return self.metadata["timer_kind"]

    @property
    def clock_hz(self) -> int:
        return self.metadata["clock_hz"]

    def count_to_ms(self, count: Any) -> Any:
        """Milliseconds of a count in this table's unit, at one count per cycle of the board clock."""
        return count_to_ms(count, self.clock_hz)

    def flash_bytes(self, const_bytes: Any, kernels: Any) -> Any:
        """Firmware flash of a network with `const_bytes` constants and `kernels` kernel calls, by
        the flash model fitted on the probe firmware ELFs (0 base and per-layer bytes without one)."""
        fm = self.metadata.get("flash_model") or {}
        return flash_model_bytes(const_bytes, kernels, fm.get("per_layer_bytes", 0), fm.get("base_bytes", 0))

    def describe(self) -> str:
        m = self.metadata
        return (f"{self.path.name if self.path else 'table'} ({m['board']}, {m['where']}, "
                f"{m['input_channels']}ch x {m['input_length']}, {m['num_classes']} classes, {len(self.entries)} entries)")

    def to_json(self) -> dict[str, Any]:
        return {"format": TABLE_FORMAT, "metadata": self.metadata, "overhead": self.overhead,
                "entries": dict(sorted(self.entries.items()))}

    def save(self, path: Path) -> None:
        """Write atomically (temp file + rename)."""
        atomic_write_text(Path(path), json.dumps(self.to_json(), indent=1) + "\n")
        self.path = Path(path)


def _count(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


FLASH_MODEL_KEYS = ("base_bytes", "per_layer_bytes")


def _check_flash_model(fm: Any, src: str, hint: str) -> None:
    """The fitted flash model (optional: a table built without one predicts constants only)."""
    if fm is None:
        return
    if not isinstance(fm, dict):
        raise ConfigError(f"{src}: metadata flash_model = {fm!r}; expected an object with "
                          f"{', '.join(FLASH_MODEL_KEYS)}", hint)
    missing = [k for k in FLASH_MODEL_KEYS if k not in fm]
    if missing:
        raise ConfigError(f"{src}: metadata flash_model lacks {', '.join(missing)}", hint)
    for k in FLASH_MODEL_KEYS:
        if not _count(fm[k]):
            raise ConfigError(f"{src}: metadata flash_model.{k} = {fm[k]!r}; expected a number of bytes >= 0", hint)


def from_json(d: Any, src: str) -> Table:
    """Validate a decoded table.

    Raises:
        ConfigError: naming the file, the field and what was expected.
    """
    hint = "rebuild it with `micronas tables build` (the command is in its metadata)"
    if not isinstance(d, dict) or d.get("format") != TABLE_FORMAT:
        got = d.get("format") if isinstance(d, dict) else type(d).__name__
        raise ConfigError(f"{src}: format = {got!r}; expected {TABLE_FORMAT!r}", hint)
    meta = d.get("metadata")
    if not isinstance(meta, dict):
        raise ConfigError(f"{src}: 'metadata' is missing or not an object", hint)
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise ConfigError(f"{src}: metadata lacks {', '.join(missing)}", hint)
    entries = d.get("entries")
    if not isinstance(entries, dict):
        raise ConfigError(f"{src}: 'entries' is missing or not an object of key -> count", hint)
    for key, v in entries.items():
        try:
            parse_key(key)
        except ConfigError as e:
            raise ConfigError(f"{src}: {e.message}", hint) from None
        if not _count(v):
            raise ConfigError(f"{src}: entry {key} = {v!r}; expected a count >= 0", hint)
    if entries and not any(entries.values()):
        raise ConfigError(f"{src}: all {len(entries)} entries are 0; no kernel runs in 0 {meta['timer_kind']} "
                          "(a build that never measured)", hint)
    overhead = d.get("overhead")
    if overhead is not None and not (isinstance(overhead, (int, float)) and not isinstance(overhead, bool)
                                     and math.isfinite(overhead)):
        raise ConfigError(f"{src}: overhead = {overhead!r}; expected a number", hint)
    if overhead is not None and overhead < 0:
        raise ConfigError(f"{src}: overhead = {overhead!r}; expected a count >= 0 (the fixed per-inference cost: "
                          "input and output copies, calls)", hint)
    if overhead is not None and entries and overhead > max(entries.values()):
        # The overhead is what a whole inference costs beyond its kernels: on every shipped table
        # it is below 2 % of the costliest single kernel, so one above it is a corrupt or mis-unit
        # figure that would dominate every prediction, not a measurement.
        worst = max(entries, key=entries.__getitem__)
        raise ConfigError(f"{src}: overhead = {overhead!r} {meta['timer_kind']} exceeds the costliest kernel "
                          f"({worst} = {entries[worst]!r}), so it would exceed the kernels of the smallest "
                          "network it describes; a fixed per-inference cost cannot", hint)
    clock = meta["clock_hz"]
    if not isinstance(clock, int) or isinstance(clock, bool) or clock <= 0:
        raise ConfigError(f"{src}: metadata clock_hz = {clock!r}; expected a whole number of Hz > 0 (counts become "
                          "milliseconds at one count per cycle of it)", hint)
    _check_flash_model(meta.get("flash_model"), src, hint)
    return Table(meta, {k: float(v) for k, v in entries.items()}, None if overhead is None else float(overhead))


def load(path: str | os.PathLike[str], allow_stale: bool = False) -> Table:
    """Load and validate a table file; refuse one measured with another C runtime.

    Raises:
        ConfigError: missing, truncated, corrupt or stale (runtime hash differs) file.
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p} is a folder, not a latency table", f"pass one of its .json files, e.g. {p}/*.json, "
                          "or list the tables with `micronas tables show`")
    if not p.is_file():
        raise ConfigError(f"latency table {p} does not exist", "list the tables with `micronas tables show`")
    try:
        d = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not a valid JSON latency table ({getattr(e, 'msg', e)}); the file is truncated "
                          "or corrupt", "rebuild it with `micronas tables build`") from None
    table = from_json(d, str(p))
    table.path = p
    current = runtime_hash()
    if table.metadata["runtime_hash"] != current:
        msg = (f"{p} was measured with another version of the C runtime (hash "
               f"{table.metadata['runtime_hash'][:12]}, runtime {table.metadata['runtime_version']}; this micronas: "
               f"{current[:12]}); its counts describe other kernels")
        if not allow_stale:
            raise ConfigError(msg, f"rebuild it: {table.metadata['command']}")
        log.warning("%s", msg)
    elif table.metadata.get("bench_hash") not in (None, bench_hash(table.entries)):
        log.warning("%s was measured with another BENCH_OP firmware or representative values; its counts may "
                    "differ slightly from a rebuild (%s)", p, table.metadata["command"])
    return table
