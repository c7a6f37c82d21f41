"""A search space sized to the budget: widths (and, for big budgets, depth) scaled so that the
space's large networks reach the latency budget on the board, whatever the board and budget.

The default space's widths (8-48 channels) suit about 50 ms on the default board. On a faster
core, or with a larger budget, its largest network stays far under the budget; at 1 ms most of it
is over. So before searching, the space is scaled (`SearchSpace.scaled`): every candidate width
times a multiplier from `WIDTH_MULTIPLIERS`, plus up to `MAX_EXTRA_CELLS` stride-1 cells when
the widest multiplier is not enough.

The rule (an estimate; the search then works with exact table costs): the reference latency is
the 25th percentile of `DRAWS` seeded random networks of the unscaled space, predicted exactly
from the table, and a bound on its largest network from the per-layer costs. A convolution's cost
grows with the product of its input and output widths, so a network's latency scales about as
the multiplier squared (each extra cell counted as a quarter more work); the multiplier closest
to 1 puts the budget between the two (at most `HEADROOM` of the largest, so the search still
chooses). RAM and flash budgets cap it the
same way (arena ~ multiplier, constants ~ multiplier^2). The search's feasibility check then
runs on the exact costs of the chosen space; an infeasible choice steps down (see `smaller`).

This module imports no torch.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from search_space.space import MAX_EXTRA_CELLS, WIDTH_MULTIPLIERS, SearchSpace

DRAWS = 64
QUANTILE = 95
EXTRA_CELL_WORK = 0.25  # each extra cell adds about a quarter of a network's work (estimate)
HEADROOM = 0.6  # the budget at most this fraction of the largest network: the search chooses, not maxes out


@dataclass(frozen=True)
class Scale:
    """How a space was sized: the multiplier, extra cells, and why."""

    multiplier: float
    extra_cells: int
    reason: str
    reference_ms: float | None = None  # p25 latency of random networks of the unscaled space

    @property
    def label(self) -> str:
        return f"{self.multiplier:g}" + (f"+{self.extra_cells}" if self.extra_cells else "")

    def to_json(self) -> dict[str, Any]:
        return {"multiplier": self.multiplier, "extra_cells": self.extra_cells, "reason": self.reason,
                "reference_ms": self.reference_ms}


def parse(text: str) -> tuple[float, int] | None:
    """`auto` -> None; `M` or `M+E` -> (multiplier, extra cells).

    Raises:
        ValueError: naming the value and what is expected.
    """
    if text == "auto":
        return None
    m_text, plus, e_text = text.partition("+")
    try:
        m, e = float(m_text), int(e_text if plus else "0")
    except ValueError:
        m, e = 0.0, -1
    if m not in WIDTH_MULTIPLIERS or not 0 <= e <= MAX_EXTRA_CELLS:
        raise ValueError(f"--scale {text!r}; expected auto, or a width multiplier from "
                         f"{', '.join(f'{x:g}' for x in WIDTH_MULTIPLIERS)} optionally followed by +N extra cells "
                         f"(N = 0..{MAX_EXTRA_CELLS}), e.g. 2 or 4+1")
    return m, e


def _reference(base: SearchSpace, table: Any, cm: Any) -> dict[str, float]:
    """Of `base` on `table`: the p25 latency (ms), p95 arena and constant bytes of seeded random
    networks, and (from the per-layer costs `cm`) a bound on its largest network's latency."""
    from latency_tables import predict as predictor

    m = table.metadata
    shape = (m["input_channels"], m["input_length"], m["num_classes"])
    preds = [predictor.predict(base.sample(random.Random(s), *shape), table) for s in range(DRAWS)]
    largest = (sum(float(pc.latency.max()) for pc in cm.positions) + float(cm.head_latency.max()) + cm.overhead)
    return {"p25_ms": float(np.percentile([p.latency_ms for p in preds], 25)),
            "largest_ms": float(cm.count_to_ms(largest)),
            "arena": float(np.percentile([p.arena_bytes for p in preds], 95)),
            "const": float(np.percentile([p.const_bytes for p in preds], 95))}


def largest_kernel_bytes(space: SearchSpace, channels: int, length: int) -> int:
    """Bytes of the largest single kernel of `space` as BENCH_OP lays it out (what a latency-table
    entry needs in the probe's scratch): a convolution's int8 weights, int32 bias, input and
    output, or DY-Conv's aggregation FC, whose weights are K times a convolution's."""
    from search_space.registry import SEARCH_OPS

    widths_in, lengths = space.input_widths(channels), space.lengths(length)
    sizes = []
    for i, p in enumerate(space.positions):
        cin, cout, k = max(widths_in[i]), max(p.widths), max(p.kernels)
        experts = max([e for o in p.op_names() for e in (SEARCH_OPS.get(o).experts or ())], default=1)
        conv = cin * cout * k + 4 * cout + lengths[i] * cin + lengths[i + 1] * cout
        sizes += [conv, experts * cin * cout * k + cin * cout * k + experts]  # FC weights, its output, input
    return max(sizes)


def choose(base: SearchSpace, table: Any, cm: Any, budgets: Any, given: tuple[float, int] | None = None,
           scratch_bytes: int | None = None) -> Scale:
    """The scale of `base` (`cm`: its costs on `table`) for `budgets`, or the user's `given`.

    The space as designed (x1) when the latency budget lies between the p25 latency of its random
    networks and `HEADROOM` x its largest network's; otherwise the multiplier closest to 1 that puts the budget
    there (estimated: latency ~ multiplier^2, each extra cell a quarter more), with extra cells
    only when x4 is not enough. RAM and flash budgets cap it (arena ~ multiplier, constants ~
    multiplier^2, against the p95 of random networks), and so does `scratch_bytes`: the probe
    firmware's BENCH_OP scratch, which must hold the widest layer to measure it.
    """
    if given is not None:
        return Scale(given[0], given[1], "given with --scale")
    if budgets.latency_s is None:
        return Scale(1.0, 0, "no latency budget: the space as defined")
    ref = _reference(base, table, cm)
    budget_ms = budgets.latency_s * 1e3
    extra = 0
    while (extra < MAX_EXTRA_CELLS
           and HEADROOM * ref["largest_ms"] * WIDTH_MULTIPLIERS[-1] ** 2 * (1 + EXTRA_CELL_WORK * extra) < budget_ms):
        extra += 1

    def work(mult: float) -> float:
        return mult * mult * (1 + EXTRA_CELL_WORK * extra)

    meta = table.metadata

    def memory_cap(mult: float) -> str | None:
        """Why `mult` does not fit, every reason (None: it fits)."""
        why = []
        if scratch_bytes is not None:
            widest = largest_kernel_bytes(base.scaled(mult, extra), meta["input_channels"], meta["input_length"])
            if widest > scratch_bytes:
                why.append(f"its widest layer ({widest:,} B of weights and activations) would not fit the "
                           f"{scratch_bytes:,} B the board's probe firmware has to measure it")
        if budgets.ram_bytes is not None and ref["arena"] * mult > budgets.ram_bytes:
            why.append(f"its networks' arenas (about {ref['arena'] * mult:,.0f} B) would exceed the RAM budget")
        if budgets.flash_bytes is not None and ref["const"] * work(mult) >= budgets.flash_bytes / 2:
            why.append(f"its networks' weights (about {ref['const'] * work(mult):,.0f} B, p95) would take half "
                       f"the {budgets.flash_bytes:,} B flash budget or more")
        return " and ".join(why) or None

    def within_memory(mult: float) -> bool:
        return memory_cap(mult) is None

    def spans_budget(mult: float) -> bool:
        return ref["p25_ms"] * work(mult) <= budget_ms <= HEADROOM * ref["largest_ms"] * work(mult)

    ladder = sorted(WIDTH_MULTIPLIERS, key=lambda x: abs(math.log(x)))  # closest to the space as designed first
    fitting = [x for x in ladder if within_memory(x)] or [WIDTH_MULTIPLIERS[0]]
    spanning = [x for x in fitting if spans_budget(x)]
    capped = ""
    if spanning:
        mult = spanning[0]
    elif budget_ms > HEADROOM * ref["largest_ms"] * work(max(fitting)):
        mult = max(fitting)  # even the widest falls short of the budget
        wider = [x for x in WIDTH_MULTIPLIERS if x > mult]
        if wider:
            capped = f"; x{wider[0]:g} would suit the budget better but does not fit: {memory_cap(wider[0])}"
        if budget_ms > ref["largest_ms"] * work(mult):
            capped += (f"; even the largest network (about {ref['largest_ms'] * work(mult):.3g} ms) stays under the "
                       f"budget, so the network found will not use all of it")
    else:
        mult = min(fitting)  # even the narrowest is mostly over it
    where = (f"random networks of the {base.name} space predict {ref['p25_ms']:.3g} ms (p25) to "
             f"{ref['largest_ms']:.3g} ms (largest) here")
    if mult == 1 and extra == 0 and spanning:
        return Scale(1.0, 0, where + f", which spans the {budget_ms:g} ms budget: widths as defined",
                     round(ref["p25_ms"], 4))
    return Scale(mult, extra, where + f"; widths x{mult:g}"
                 + (f" and {extra} more cell{'s' if extra > 1 else ''}" if extra else "")
                 + f" make that about {ref['p25_ms'] * work(mult):.3g}-{ref['largest_ms'] * work(mult):.3g} ms "
                 f"for the {budget_ms:g} ms budget (estimated){capped}", round(ref["p25_ms"], 4))


def smaller(scale: Scale) -> Scale | None:
    """The next smaller scale (fewer extra cells first, then the next multiplier down), or None."""
    if scale.extra_cells:
        return Scale(scale.multiplier, scale.extra_cells - 1, scale.reason + "; stepped down (infeasible)",
                     scale.reference_ms)
    lower = [x for x in WIDTH_MULTIPLIERS if x < scale.multiplier]
    if not lower:
        return None
    return Scale(lower[-1], 0, scale.reason + "; stepped down (infeasible)", scale.reference_ms)


def expected_ratio(scale: Scale) -> float:
    """The latency factor the rule assumed for `scale` (documentation and tests)."""
    return scale.multiplier ** 2 * (1 + EXTRA_CELL_WORK * scale.extra_cells)
