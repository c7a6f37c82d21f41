"""Boards: data files in `targets/boards/*.json`, loaded into a registry.

A board file gives the core, clock, usable SRAM and flash (units in the key names), its memory
map, the serial port of its debug probe, its timer, how to flash it, the QEMU machine that
emulates its core, and a source line for every figure. See docs/boards.md to add one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from micronas_base.errors import ConfigError, unknown_name_error

CORES = ("cortex-m4", "cortex-m7", "cortex-m33")
_REQUIRED = ("name", "core", "clock_hz", "sram_bytes", "flash_bytes", "memory", "serial", "timer", "qemu", "sources")
_QEMU_KEYS = ("machine", "cpu", "code_origin", "code_bytes", "ram_origin", "ram_bytes", "uart_base", "systick_hz")


@dataclass(frozen=True)
class QemuMachine:
    """The QEMU machine that emulates the board's core, and its memory map."""

    machine: str
    cpu: str
    code_origin: int
    code_bytes: int
    ram_origin: int
    ram_bytes: int
    uart_base: int
    systick_hz: int


@dataclass(frozen=True)
class Board:
    name: str
    core: str
    clock_hz: int
    sram_bytes: int
    flash_bytes: int
    flash_origin: int
    ram_origin: int
    serial: dict[str, Any]
    timer: str
    flashing: dict[str, Any]
    qemu: QemuMachine
    sources: dict[str, str]
    default: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "core": self.core, "clock_hz": self.clock_hz, "sram_bytes": self.sram_bytes,
                "flash_bytes": self.flash_bytes, "qemu_machine": self.qemu.machine}


def _int(v: Any) -> int:
    return int(v, 0) if isinstance(v, str) else int(v)


def parse(d: dict[str, Any], src: str) -> Board:
    """Validate and decode one board file.

    Raises:
        ConfigError: a missing key, an unknown core, a figure without a source.
    """
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise ConfigError(f"{src}: board file lacks {', '.join(missing)}", "see docs/boards.md")
    if d["core"] not in CORES:
        raise ConfigError(f"{src}: core {d['core']!r}; expected one of {', '.join(CORES)}")
    for figure in ("core", "clock_hz", "sram_bytes", "flash_bytes", "serial", "qemu"):
        if figure not in d["sources"]:
            raise ConfigError(f"{src}: no source line for {figure!r}", "every figure needs its source in 'sources'")
    q = d["qemu"]
    missing = [k for k in _QEMU_KEYS if k not in q]
    if missing:
        raise ConfigError(f"{src}: qemu section lacks {', '.join(missing)}")
    for k in ("clock_hz", "sram_bytes", "flash_bytes"):
        if _int(d[k]) <= 0:
            raise ConfigError(f"{src}: {k} = {d[k]}; expected a positive integer")
    return Board(
        name=d["name"], core=d["core"], clock_hz=_int(d["clock_hz"]), sram_bytes=_int(d["sram_bytes"]),
        flash_bytes=_int(d["flash_bytes"]), flash_origin=_int(d["memory"]["flash_origin"]),
        ram_origin=_int(d["memory"]["ram_origin"]), serial=dict(d["serial"]), timer=d["timer"],
        flashing=dict(d.get("flashing", {})),
        qemu=QemuMachine(q["machine"], q["cpu"], *(_int(q[k]) for k in _QEMU_KEYS[2:])),
        sources=dict(d["sources"]), default=bool(d.get("default", False)),
    )


def _load_all() -> dict[str, Board]:
    boards = {}
    for f in sorted((resources.files("targets") / "boards").iterdir(), key=lambda p: p.name):
        if f.name.endswith(".json"):
            b = parse(json.loads(f.read_text()), f"targets/boards/{f.name}")
            boards[b.name] = b
    return boards


_BOARDS: dict[str, Board] | None = None


def all_boards() -> dict[str, Board]:
    global _BOARDS
    if _BOARDS is None:
        _BOARDS = _load_all()
    return _BOARDS


def get(name: str) -> Board:
    """The board called `name`.

    Raises:
        ConfigError: unknown board; lists the known ones and the closest match.
    """
    boards = all_boards()
    if name not in boards:
        raise unknown_name_error("board", name, boards)
    return boards[name]


def default_board() -> Board:
    return next(b for b in all_boards().values() if b.default)
