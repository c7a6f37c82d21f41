"""The search space: which choices each position of a network may take, and a sampler.

A network is a stem, cells that halve time (stride 2) and cells that keep it, then global
average pooling and a classifier (`arch.py`). The space fixes, per position, the stride and
the candidate widths, ops (from the registry), kernel sizes and expert counts; every
combination is a valid `Arch`. The supernet (the next stage) and the latency tables
(`latency_tables`, which measure every op configuration the space can produce) read it from
here, so the three agree by construction.

This module imports no torch.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

from .arch import Arch, LayerSpec, scaled_width, validate
from .registry import SEARCH_OPS

ALL_OPS = tuple(SEARCH_OPS.names())  # every registered op, in registration order
# What the default space offers: every op but the split form of DY-Conv (`dyconv`), which
# computes the same function as its aggregation form (`dyagg`: the convolution is linear in its
# kernel) at about 5x its cost on the emulated M4 (benchmarks/dyagg.py). It stays registered:
# arch.json files and models that use it still train, export and run.
DEFAULT_OPS = tuple(o for o in ALL_OPS if o != "dyconv")


@dataclass(frozen=True)
class Position:
    """The choices of one layer of the network.

    Attributes:
        stride: 1 keeps time, 2 halves it (fixed per position: the macro structure).
        widths: Candidate output channel counts.
        ops: Candidate search ops; an op whose registry entry does not allow `stride` is dropped.
        kernels: Candidate kernel sizes (for ops that have a kernel).
    """

    stride: int
    widths: tuple[int, ...]
    ops: tuple[str, ...] = ALL_OPS
    kernels: tuple[int, ...] = (3, 5, 7)

    def op_names(self) -> tuple[str, ...]:
        return tuple(o for o in self.ops if self.stride in SEARCH_OPS.get(o).strides)

    def choices(self, in_channels: int) -> Iterator[LayerSpec]:
        """Every layer this position can hold, given its input width."""
        for name in self.op_names():
            op = SEARCH_OPS.get(name)
            if op.keeps_width:
                yield LayerSpec(op=name, stride=self.stride)
                continue
            for out in self.widths:
                for k in [kk for kk in self.kernels if kk in op.kernels]:
                    for e in op.experts or (None,):
                        yield LayerSpec(op=name, out=out, kernel=k, stride=self.stride, experts=e)


@dataclass(frozen=True)
class SearchSpace:
    """Stem and cells; `name` is recorded in latency tables built for this space."""

    name: str
    stem: Position
    cells: tuple[Position, ...]

    @property
    def positions(self) -> tuple[Position, ...]:
        return (self.stem, *self.cells)

    def scaled(self, multiplier: float, extra_cells: int = 0) -> SearchSpace:
        """This space with every candidate width times `multiplier` (rounded to a multiple of 4,
        at least 4: the SIMD kernels take channels four at a time) and `extra_cells` more cells
        like the last one (stride 1; skip among their ops, so the search may leave them out).

        Its name, e.g. `default-w1.5+1`, is what `resolve_space` reads back.
        """
        if multiplier not in WIDTH_MULTIPLIERS:
            raise ValueError(f"width multiplier {multiplier!r}; expected one of {WIDTH_MULTIPLIERS}")
        if not 0 <= extra_cells <= MAX_EXTRA_CELLS:
            raise ValueError(f"extra cells {extra_cells!r}; expected 0..{MAX_EXTRA_CELLS}")
        if multiplier == 1 and extra_cells == 0:
            return self

        def scale(p: Position) -> Position:
            return replace(p, widths=tuple(sorted({scaled_width(w, multiplier) for w in p.widths})))

        last = replace(scale(self.cells[-1]), stride=1)
        name = f"{self.name}-w{multiplier:g}" + (f"+{extra_cells}" if extra_cells else "")
        return SearchSpace(name, scale(self.stem), tuple(scale(p) for p in self.cells) + (last,) * extra_cells)

    def lengths(self, input_length: int) -> list[int]:
        """Time steps at the input of each position, then after the last one."""
        out = [input_length]
        for p in self.positions:
            out.append((out[-1] - 1) // p.stride + 1)
        return out

    def input_widths(self, input_channels: int) -> list[set[int]]:
        """Possible input widths of each position, then of the head (skip keeps a width)."""
        sets = [{input_channels}]
        for p in self.positions:
            outs = set(p.widths) if any(not SEARCH_OPS.get(o).keeps_width for o in p.op_names()) else set()
            if any(SEARCH_OPS.get(o).keeps_width for o in p.op_names()):
                outs |= sets[-1]
            sets.append(outs)
        return sets

    def layer_configs(self, input_channels: int, input_length: int) -> Iterator[tuple[int, int, int, LayerSpec]]:
        """Every (position, input width, input length, layer) the space can produce."""
        widths, lengths = self.input_widths(input_channels), self.lengths(input_length)
        for i, p in enumerate(self.positions):
            for c in sorted(widths[i]):
                for layer in p.choices(c):
                    if i == 0 and SEARCH_OPS.get(layer.op).keeps_width:
                        continue
                    yield i, c, lengths[i], layer

    def sample(self, rng: random.Random, input_channels: int, input_length: int, num_classes: int) -> Arch:
        """A uniformly drawn op per position, then uniform width/kernel/experts for it."""
        layers, c = [], input_channels
        for i, p in enumerate(self.positions):
            names = [o for o in p.op_names() if not (i == 0 and SEARCH_OPS.get(o).keeps_width)]
            name = rng.choice(names)
            layer = rng.choice([lay for lay in p.choices(c) if lay.op == name])
            layers.append(layer)
            c = layer.out if layer.out is not None else c
        return validate(Arch(input_channels, input_length, num_classes, layers[0], tuple(layers[1:])))


@dataclass(frozen=True)
class Choice:
    """One candidate of a position (the width is chosen separately, by channel masks)."""

    op: str
    kernel: int | None = None
    experts: int | None = None

    def layer(self, out: int | None, stride: int) -> LayerSpec:
        if SEARCH_OPS.get(self.op).keeps_width:
            return LayerSpec(op=self.op, stride=stride)
        return LayerSpec(op=self.op, out=out, kernel=self.kernel, stride=stride, experts=self.experts)

    @property
    def label(self) -> str:
        return self.op + (f"k{self.kernel}" if self.kernel else "") + (f"x{self.experts}" if self.experts else "")


def position_choices(space: SearchSpace, index: int) -> list[Choice]:
    """The supernet's candidates at a position: each op with each kernel and expert count.

    An op whose registry entry names a `supernet_as` op that is also offered is left out: the
    supernet trains the other in its place (`conv` is `wconv` with one width; every candidate of
    the supernet is width-searched).
    """
    p = space.positions[index]
    names = [o for o in p.op_names() if not (index == 0 and SEARCH_OPS.get(o).keeps_width)]
    names = [o for o in names if SEARCH_OPS.get(o).supernet_as not in names]
    out = []
    for name in names:
        op = SEARCH_OPS.get(name)
        kernels = [k for k in p.kernels if k in op.kernels] or [None]
        for k, e in itertools.product(kernels, op.experts or (None,)):
            out.append(Choice(name, k, e))
    return out


DEFAULT_SPACE = SearchSpace(
    name="default",
    stem=Position(stride=1, widths=(8, 16, 24), ops=("conv",)),
    cells=(
        Position(stride=2, widths=(16, 24, 32), ops=DEFAULT_OPS),
        Position(stride=1, widths=(16, 24, 32), ops=DEFAULT_OPS),
        Position(stride=2, widths=(24, 32, 48), ops=DEFAULT_OPS),
        Position(stride=1, widths=(24, 32, 48), ops=DEFAULT_OPS),
    ),
)

SPACES = {DEFAULT_SPACE.name: DEFAULT_SPACE}

# The widths a search can scale a space by (see `micronas.space_scale`), and how many cells it may add.
WIDTH_MULTIPLIERS = (0.25, 0.375, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)
MAX_EXTRA_CELLS = 2
_SCALED = re.compile(r"^(?P<base>[A-Za-z0-9_]+)(?:-w(?P<m>[0-9.]+))?(?:\+(?P<extra>[0-9]+))?$")


def resolve_space(name: str) -> SearchSpace | None:
    """The space called `name`: a registered one, or one scaled from it (`default-w2+1`);
    None when no such space can be made."""
    match = _SCALED.match(name)
    if match is None or match["base"] not in SPACES:
        return None
    try:
        return SPACES[match["base"]].scaled(float(match["m"] or 1), int(match["extra"] or 0))
    except ValueError:
        return None
