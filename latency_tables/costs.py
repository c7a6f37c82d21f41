"""Per-choice cost tensors of a search space for one data shape and board: what the
differentiable search takes expectations over.

For every position of the space, every candidate (op, kernel, experts) and every (input width,
output width), the single layer is lowered and planned exactly as `predict` does for a whole
network, giving its latency (the sum of its kernels' table entries), its constant bytes, its
kernel count and the arena it needs alone. A network's latency and flash are sums of these
(plus the table's overhead and flash base) up to the sharing of KernelDNA parents; its arena is
at least the largest layer's. After derivation, `predict` gives the exact figures.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from search_space.registry import SEARCH_OPS
from search_space.space import Choice, SearchSpace, position_choices

from .generate import plan
from .keys import op_key
from .lowering import lower_head, lower_layer
from .predict import MissingEntriesError
from .table import Table, count_to_ms, flash_model_bytes


@dataclass
class PositionCosts:
    choices: list[Choice]
    widths_in: list[int]
    widths_out: list[int]
    stride: int
    length_in: int
    # [choice, width_in, width_out]; a skip's entries are 0 (it runs nothing, keeps the width)
    latency: np.ndarray = field(repr=False)
    const_bytes: np.ndarray = field(repr=False)
    kernels: np.ndarray = field(repr=False)
    arena: np.ndarray = field(repr=False)


@dataclass
class CostModel:
    """Cost tensors for every position of `space`, for one table (board and data shape)."""

    space: SearchSpace
    positions: list[PositionCosts]
    head_latency: np.ndarray  # [last width]
    head_const: np.ndarray
    head_kernels: np.ndarray
    head_arena: np.ndarray
    head_widths: list[int]
    overhead: float
    flash_base: float
    flash_per_kernel: float
    clock_hz: int
    unit: str

    def kernel_flash(self, const_bytes, kernels):
        """Flash of layers without the firmware base: constants + code per kernel call (the
        table's flash model; arrays too)."""
        return flash_model_bytes(const_bytes, kernels, self.flash_per_kernel)

    def count_to_ms(self, count):
        """Milliseconds of a count at the board clock (the table's conversion)."""
        return count_to_ms(count, self.clock_hz)


def _layer_costs(graph, table: Table, missing: set[str]) -> tuple[float, int, int, int]:
    p = plan(graph)
    keys = [op_key(la.op, la.key_fields) for la in p.layers]
    missing.update(k for k in keys if k not in table.entries)
    latency = sum(table.entries.get(k, 0.0) for k in keys)
    return latency, p.flash_bytes_weights, len(keys), p.arena_bytes


def build_costs(space: SearchSpace, table: Table, measure_missing=None) -> CostModel:
    """Cost tensors of `space` on `table` (its board and data shape).

    Raises:
        MissingEntriesError: the table lacks entries and `measure_missing` is None.
    """
    m = table.metadata
    channels, length, classes = m["input_channels"], m["input_length"], m["num_classes"]
    widths_in = [sorted(w) for w in space.input_widths(channels)]
    lengths = space.lengths(length)

    def compute(missing: set[str]):
        positions = []
        for i, p in enumerate(space.positions):
            choices = position_choices(space, i)
            w_in, w_out = widths_in[i], sorted(p.widths)
            shape = (len(choices), len(w_in), len(w_out))
            lat, const, kern, arena = (np.zeros(shape) for _ in range(4))
            for (ci, ch), (a, cin), (b, cout) in itertools.product(enumerate(choices), enumerate(w_in),
                                                                   enumerate(w_out)):
                if SEARCH_OPS.get(ch.op).keeps_width:
                    continue
                g = lower_layer(ch.layer(cout, p.stride), cin, lengths[i])
                lat[ci, a, b], const[ci, a, b], kern[ci, a, b], arena[ci, a, b] = _layer_costs(g, table, missing)
            positions.append(PositionCosts(choices, w_in, w_out, p.stride, lengths[i], lat, const, kern, arena))
        head = [_layer_costs(lower_head(c, lengths[-1], classes), table, missing) for c in widths_in[-1]]
        return positions, head

    missing: set[str] = set()
    positions, head = compute(missing)
    if missing and measure_missing is not None:
        measure_missing(sorted(missing))
        missing = set()
        positions, head = compute(missing)
    if missing:
        raise MissingEntriesError(f"{table.describe()} lacks {len(missing)} entries the search space needs, e.g. "
                                  f"{sorted(missing)[0]}", f"measure them: {m['command']}")
    fm = m.get("flash_model") or {}
    h = np.array(head, float)
    return CostModel(space, positions, h[:, 0], h[:, 1], h[:, 2], h[:, 3], widths_in[-1], float(table.overhead or 0.0),
                     float(fm.get("base_bytes", 0.0)), float(fm.get("per_layer_bytes", 0.0)), int(m["clock_hz"]),
                     table.unit)


def cheapest_network(cm: CostModel, metric: str, channels: int, length: int, classes: int):
    """The network of the space that minimises `metric` ("latency", "flash" or "ram") by the
    per-layer figures: a dynamic programme over the width flowing between positions (sums for
    latency and flash, the largest layer for the arena). Returns an Arch; `predict` gives its
    exact figures."""
    from search_space.arch import Arch, validate

    def layer_cost(pc: PositionCosts, c: int, a: int, b: int) -> float:
        if metric == "latency":
            return float(pc.latency[c, a, b])
        if metric == "flash":
            return float(cm.kernel_flash(pc.const_bytes[c, a, b], pc.kernels[c, a, b]))
        return float(pc.arena[c, a, b])

    combine = max if metric == "ram" else (lambda x, y: x + y)
    head = {"latency": cm.head_latency, "flash": cm.kernel_flash(cm.head_const, cm.head_kernels),
            "ram": cm.head_arena}[metric]
    # best[w] = (cost of the rest of the network when this position's input width is w, choices)
    best = {w: (float(head[cm.head_widths.index(w)]), []) for w in cm.head_widths}
    for pc in reversed(cm.positions):
        new = {}
        for a, w_in in enumerate(pc.widths_in):
            options = []
            for c, ch in enumerate(pc.choices):
                if SEARCH_OPS.get(ch.op).keeps_width:
                    if w_in in best:
                        options.append((best[w_in][0], [(ch, None)] + best[w_in][1]))
                    continue
                for b, w_out in enumerate(pc.widths_out):
                    if w_out in best:
                        options.append((combine(layer_cost(pc, c, a, b), best[w_out][0]),
                                        [(ch, w_out)] + best[w_out][1]))
            if options:
                new[w_in] = min(options, key=lambda o: o[0])
        best = new
    _, picks = best[channels]
    layers = [ch.layer(w, p.stride) for (ch, w), p in zip(picks, cm.space.positions)]
    return validate(Arch(channels, length, classes, layers[0], tuple(layers[1:])))
