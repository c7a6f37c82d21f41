"""`arch.json`: the architecture encoding the search emits and that alone rebuilds a network.

Format (version 1)::

    {
      "format": "micronas.arch/1",
      "input_channels": 6,            # C of the (C, T) input window
      "input_length": 100,            # T
      "num_classes": 4,
      "stem":  {"op": "conv", "out": 16, "kernel": 5, "stride": 1},
      "cells": [
        {"op": "dyconv", "out": 24, "kernel": 5, "stride": 2, "experts": 4},
        {"op": "dwsep",  "out": 32, "kernel": 3, "stride": 2},
        {"op": "skip"}
      ]
    }

The head is fixed: global average over time, then one fully connected layer to the classes.
At most MAX_CELLS (64) cells; widths at most MAX_WIDTH (512) channels.
Every layer is validated against its op in `search_space.registry.SEARCH_OPS`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from micronas_base.errors import ConfigError, unknown_name_error

from .registry import SEARCH_OPS

ARCH_FORMAT = "micronas.arch/1"
MAX_WIDTH = 512  # channels; far beyond what fits a 1 MB SRAM MCU at any useful length
MAX_CELLS = 64  # the search makes 4; a deeper hand-written net is refused before any work (10,000 cells hung)
DEFAULT_ARCH = "default"


def scaled_width(width: int, multiplier: float) -> int:
    """`width` x `multiplier`, rounded to a multiple of 4 and at least 4 (the SIMD kernels take
    channels four at a time): how a search space and a teacher are widened."""
    return max(4, 4 * round(width * multiplier / 4))


@dataclass(frozen=True)
class LayerSpec:
    """One layer: an op from the registry and its parameters."""

    op: str
    out: int | None = None  # output channels; None for ops that keep the width
    kernel: int | None = None
    stride: int = 1
    experts: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Arch:
    """A complete network: input shape, class count, stem and cells."""

    input_channels: int
    input_length: int
    num_classes: int
    stem: LayerSpec
    cells: tuple[LayerSpec, ...]

    @property
    def layers(self) -> tuple[LayerSpec, ...]:
        return (self.stem, *self.cells)

    def widths(self) -> list[int]:
        """Channels after each layer (stem first)."""
        widths, c = [], self.input_channels
        for layer in self.layers:
            c = layer.out if layer.out is not None else c
            widths.append(c)
        return widths

    def lengths(self) -> list[int]:
        """Time steps after each layer (stem first); every op pads by kernel // 2."""
        lengths, t = [], self.input_length
        for layer in self.layers:
            t = (t - 1) // layer.stride + 1
            lengths.append(t)
        return lengths

    def with_data_shape(self, channels: int, length: int, num_classes: int) -> Arch:
        """The same layers for another input shape and class count (and revalidated)."""
        return validate(replace(self, input_channels=channels, input_length=length, num_classes=num_classes))

    def widened(self, multiplier: float) -> Arch:
        """The same layers with every width times `multiplier` (a multiple of 4, 4 to MAX_WIDTH):
        the teacher a network is distilled from."""

        def widen(layer: LayerSpec) -> LayerSpec:
            if layer.out is None:
                return layer
            return replace(layer, out=min(MAX_WIDTH, scaled_width(layer.out, multiplier)))

        return validate(replace(self, stem=widen(self.stem), cells=tuple(widen(c) for c in self.cells)))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": ARCH_FORMAT,
            "input_channels": self.input_channels,
            "input_length": self.input_length,
            "num_classes": self.num_classes,
            "stem": self.stem.to_json(),
            "cells": [c.to_json() for c in self.cells],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"


def _int_field(d: dict[str, Any], key: str, where: str, src: str, minimum: int = 1,
               maximum: int | None = None, required: bool = True) -> int | None:
    if key not in d:
        if required:
            raise ConfigError(f"{src}: {where} has no {key!r}", "see docs/arch-format in search_space/arch.py")
        return None
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{src}: {where}.{key} = {v!r}; expected an integer")
    if v < minimum or (maximum is not None and v > maximum):
        rng = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ConfigError(f"{src}: {where}.{key} = {v}; expected an integer {rng}")
    return v


def _layer_from_json(d: Any, where: str, src: str) -> LayerSpec:
    if not isinstance(d, dict):
        raise ConfigError(f"{src}: {where} = {d!r}; expected an object like "
                          '{"op": "conv", "out": 16, "kernel": 5, "stride": 1}')
    unknown = set(d) - {"op", "out", "kernel", "stride", "experts"}
    if unknown:
        raise ConfigError(f"{src}: {where} has unknown keys {sorted(unknown)}; "
                          "expected op, out, kernel, stride, experts")
    if "op" not in d:
        raise ConfigError(f"{src}: {where} has no 'op'; known ops: {', '.join(sorted(SEARCH_OPS.names()))}")
    try:
        SEARCH_OPS.get(d["op"])
    except ConfigError as e:
        raise ConfigError(f"{src}: {where}: {e.message}", e.hint) from None
    return LayerSpec(
        op=d["op"],
        out=_int_field(d, "out", where, src, maximum=MAX_WIDTH, required=False),
        kernel=_int_field(d, "kernel", where, src, required=False),
        stride=_int_field(d, "stride", where, src, required=False) or 1,
        experts=_int_field(d, "experts", where, src, required=False),
    )


def _check_layer(layer: LayerSpec, where: str, src: str, in_channels: int) -> None:
    op = SEARCH_OPS.get(layer.op)

    def choice(key: str, value: int | None, valid: tuple[int, ...]) -> None:
        if valid and value not in valid:
            raise ConfigError(f"{src}: {where}.{key} = {value}; op {op.name!r} expects one of "
                              f"{', '.join(map(str, valid))}")
        if not valid and value is not None:
            raise ConfigError(f"{src}: {where}: op {op.name!r} takes no {key!r} (got {value})")

    choice("kernel", layer.kernel, op.kernels)
    choice("stride", layer.stride, op.strides)
    choice("experts", layer.experts, op.experts)
    if op.keeps_width:
        if layer.out is not None and layer.out != in_channels:
            raise ConfigError(f"{src}: {where}: op {op.name!r} keeps the width ({in_channels} "
                              f"channels) but out = {layer.out}", "drop 'out' or use another op")
    elif layer.out is None:
        raise ConfigError(f"{src}: {where}: op {op.name!r} needs 'out' (output channels)")


def validate(arch: Arch, src: str = "arch") -> Arch:
    """Check every layer against the registry and the shape against the ops.

    Raises:
        ConfigError: naming the layer, the field, the value and the valid choices.
    """
    c = arch.input_channels
    for i, layer in enumerate(arch.layers):
        where = "stem" if i == 0 else f"cells[{i - 1}]"
        _check_layer(layer, where, src, c)
        c = layer.out if layer.out is not None else c
    if SEARCH_OPS.get(arch.stem.op).keeps_width:
        raise ConfigError(f"{src}: stem op {arch.stem.op!r} is not allowed; the stem must compute something "
                          "(an op that can change the channel count)")
    return arch


def from_json(d: Any, src: str = "arch") -> Arch:
    """Decode and validate an arch dictionary (as read from arch.json).

    Raises:
        ConfigError: the dictionary is not a valid version-1 arch.
    """
    if not isinstance(d, dict):
        raise ConfigError(f"{src}: expected a JSON object, got {type(d).__name__}")
    if d.get("format") != ARCH_FORMAT:
        raise ConfigError(f"{src}: format = {d.get('format')!r}; expected {ARCH_FORMAT!r}",
                          "this arch.json was written by another micronas version; re-run the search")
    cells = d.get("cells")
    if not isinstance(cells, list):
        raise ConfigError(f"{src}: 'cells' = {cells!r}; expected a list of layers")
    if len(cells) > MAX_CELLS:
        raise ConfigError(f"{src}: {len(cells):,} cells; at most {MAX_CELLS} are supported (the search makes "
                          "networks of 4)", f"use a shallower network (at most {MAX_CELLS} cells after the stem)")
    arch = Arch(
        input_channels=_int_field(d, "input_channels", "arch", src, maximum=4096),
        input_length=_int_field(d, "input_length", "arch", src, maximum=1 << 20),
        num_classes=_int_field(d, "num_classes", "arch", src, minimum=2, maximum=1000),
        stem=_layer_from_json(d.get("stem"), "stem", src),
        cells=tuple(_layer_from_json(c, f"cells[{i}]", src) for i, c in enumerate(cells)),
    )
    return validate(arch, src)


def load(spec: str | os.PathLike[str]) -> Arch:
    """Load an arch from a path, or a shipped arch by name (`"default"`).

    Raises:
        ConfigError: missing file, invalid JSON or invalid arch.
    """
    name = str(spec)
    if not name.endswith(".json") and not Path(name).exists():
        shipped = resources.files("search_space") / "archs" / f"{name}.json"
        if not shipped.is_file():
            names = sorted(p.name[:-5] for p in (resources.files("search_space") / "archs").iterdir()
                           if p.name.endswith(".json"))
            err = unknown_name_error("arch", name, names)
            raise ConfigError(f"arch {name!r} is neither a file nor a shipped arch; shipped: {', '.join(names)}",
                              err.hint or "pass a path to an arch.json")
        text, src = shipped.read_text(), f"shipped arch {name!r}"
    else:
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"arch file {path} does not exist", "pass a path to an arch.json, or 'default'")
        text, src = path.read_text(), str(path)
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{src}: not valid JSON ({e.msg} at line {e.lineno})") from None
    return from_json(d, src)
