"""Predict a network's latency, arena and flash before training or exporting it.

* latency = sum of the table entries of its lowered kernel calls + the table's fixed
  per-inference overhead (no MAC-count fallback: a missing entry is measured on demand or
  is an error naming the keys and the command that measures them);
* arena = the code generator's static plan of the lowered graph: the exact arena the
  exported model will get;
* flash = constant bytes (weights, biases, per-channel requantisation, params structs; a
  buffer shared by several layers counted once) + code. Two ways to get the code: the table's
  flash model (runtime and firmware code plus bytes per kernel call, fitted on probe firmware
  ELFs; free, for the search loop), or `elf_flash`: a callable of the caller's that builds the
  profiling firmware around the lowered network's generated C (`micronas.tables.elf_flash`,
  ~3 s) and reads the ELF, whose code is byte for byte the exported model's. The constants are
  an upper bound either way (a trained model may happen to repeat a small table).

Nothing here touches a device or a compiler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from micronas_base.errors import ConfigError
from search_space.arch import Arch

from . import table as table_mod
from .generate import generate, plan
from .keys import op_key
from .lowering import lower
from .table import TABLES_ENV, USER_TABLES_DIR, Table, default_table_name, table_dirs

__all__ = ["TABLES_ENV", "USER_TABLES_DIR", "MissingEntriesError", "NoTableError", "Prediction", "find_table",
           "predict", "table_dirs"]


class MissingEntriesError(ConfigError):
    """The table lacks entries a network needs (and nothing is available to measure them)."""


class NoTableError(ConfigError):
    """No table exists for the board and shape (a file that exists but is unusable is a ConfigError)."""


@dataclass
class Prediction:
    """Predicted figures of one network on one table's board."""

    latency_count: float  # in `unit`
    unit: str  # "instructions" (emulated core) or "cycles" (real board)
    latency_ms: float
    overhead: float
    per_layer: list[tuple[str, float]]
    arena_bytes: int
    const_bytes: int
    flash_bytes: int
    flash_source: str
    table: str
    count_source: str
    missing: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "predicted_latency_ms": round(self.latency_ms, 4),
            "predicted_latency_count": round(self.latency_count, 1),
            "predicted_latency_unit": self.unit,
            "predicted_latency_source": (f"sum of {len(self.per_layer)} layer entries + overhead "
                                         f"{self.overhead:.0f} from {self.table} ({self.count_source}"
                                         + ("; latency assumes one instruction per cycle" if self.unit == "instructions" else "")
                                         + ")"),
            "predicted_per_layer_count": [round(c, 1) for _, c in self.per_layer],
            "predicted_arena_bytes": self.arena_bytes,
            "predicted_const_bytes": self.const_bytes,
            "predicted_flash_bytes": self.flash_bytes,
            "predicted_flash_source": self.flash_source,
            "latency_table": self.table,
        }


def find_table(board: str, channels: int, length: int, classes: int, space: str = "default",
               allow_stale: bool = False) -> Table:
    """The table for a board and data shape.

    Raises:
        ConfigError: none exists (the message gives the command that builds it), or it is stale.
    """
    name = default_table_name(board, channels, length, classes, space)
    for d in table_dirs():
        if (d / name).is_file():
            table = table_mod.load(d / name, allow_stale=allow_stale)
            m = table.metadata
            got = (m["board"], m["input_channels"], m["input_length"], m["num_classes"])
            if got != (board, channels, length, classes):  # a file renamed or copied over another
                raise ConfigError(f"{d / name} holds a table for {got[0]}, {got[1]}ch x {got[2]}, {got[3]} classes, "
                                  f"not for {board}, {channels}ch x {length}, {classes} classes as its name says",
                                  f"remove or rename it (rm {d / name}), or rebuild it: micronas tables build "
                                  f"--target {board} --channels {channels} --length {length} --classes {classes}")
            return table
    raise NoTableError(f"no latency table for {board} with {channels}-channel x {length} input and {classes} classes "
                      f"(looked for {name} in {', '.join(str(d) for d in table_dirs())})",
                      f"build it: micronas tables build --target {board} --channels {channels} --length {length} "
                      f"--classes {classes}")


def predict(arch: Arch, table: Table, measure_missing: Callable[[list[str]], None] | None = None,
            elf_flash: Callable[[Any], int] | None = None) -> Prediction:
    """Latency, arena and flash of `arch` on the table's board.

    Args:
        arch: The network.
        table: Measured on the target board (or its emulated core).
        measure_missing: Called with the list of keys the table lacks; it must measure them
            into `table.entries` (see `micronas.tables.measure_into`). None: a missing key is an
            error.
        elf_flash: Called with the generated model of the lowered network; returns the flash
            bytes of a firmware ELF built around it (`micronas.tables.elf_flash`), taken instead
            of the table's flash model.

    Raises:
        MissingEntriesError: keys missing and no measurement available; names them and the
            command that builds the table.
    """
    m = table.metadata
    if (arch.input_channels, arch.input_length, arch.num_classes) != (m["input_channels"], m["input_length"],
                                                                       m["num_classes"]):
        raise ConfigError(f"{table.describe()} is for {m['input_channels']}ch x {m['input_length']}, "
                          f"{m['num_classes']} classes; the network takes {arch.input_channels}ch x "
                          f"{arch.input_length}, {arch.num_classes} classes",
                          f"build a table for it: micronas tables build --target {m['board']} --channels "
                          f"{arch.input_channels} --length {arch.input_length} --classes {arch.num_classes}")
    graph = lower(arch)
    p = plan(graph)
    keys = [op_key(layer.op, layer.key_fields) for layer in p.layers]
    missing = sorted({k for k in keys if k not in table.entries})
    if missing and measure_missing is not None:
        measure_missing(missing)
        missing = sorted({k for k in keys if k not in table.entries})
    if missing:
        shown = "\n  ".join(missing[:5]) + (f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise MissingEntriesError(f"{table.describe()} lacks {len(missing)} entries this network needs:\n  {shown}",
                                  f"measure them: {m['command']}  (it resumes and adds what is missing), or pass "
                                  "a board or emulator so they are measured on demand")
    if table.overhead is None:
        raise MissingEntriesError(f"{table.describe()} has no per-inference overhead", f"rebuild it: {m['command']}")
    per_layer = [(k, table.entries[k]) for k in keys]
    total = sum(c for _, c in per_layer) + table.overhead
    if elf_flash is not None:
        gen = generate(graph, arch.input_channels, arch.num_classes)
        flash, flash_source = elf_flash(gen), (f"ELF of the {m['board']} profiling firmware built around the "
                                               "lowered network (constants an upper bound)")
    else:
        flash = round(table.flash_bytes(p.flash_bytes_weights, len(keys)))
        flash_source = "constants + the latency table's flash model (code fitted on probe firmware ELFs)"
    return Prediction(total, table.unit, table.count_to_ms(total), table.overhead, per_layer, p.arena_bytes,
                      p.flash_bytes_weights, flash, flash_source, table.path.name if table.path else "table",
                      m["count_source"])

