"""Static arena planning: tensor lifetimes plus best-fit placement.

The same planner lays out the generated runtime's arena and (in the search) predicts the peak,
so the RAM figure is exact for the micronas runtime, not an estimate.

A buffer lives from the step that writes it to the last step that reads it. Step -1 is the copy
of the input into the arena and step n_ops the copy of the output out of it, so the graph input
and output are live then. Views (RESHAPE) do not get a buffer of their own: they alias their
source, whose lifetime grows to cover the view's readers.

Placement: buffers in decreasing size (ties: earlier first use, then lower id); each goes into
the smallest gap, among the buffers already placed whose lifetimes overlap its own, that holds
it (best fit), or above all of them. Offsets are aligned to `ALIGN` bytes. The arena ends at the
last byte of the highest buffer (no trailing padding): exactly the high-water mark of the
bytes the kernels write.
"""

from __future__ import annotations

from dataclasses import dataclass

ALIGN = 16  # bytes; word-aligned loads for the SIMD path and room for wider types


@dataclass(frozen=True)
class Buffer:
    """One arena buffer to place."""

    id: int
    size: int  # bytes
    first: int  # first step that writes it (-1: the input copy)
    last: int  # last step that reads it (n_ops: the output copy)


@dataclass(frozen=True)
class Plan:
    offsets: dict[int, int]  # buffer id -> byte offset
    arena_bytes: int  # peak: the highest end of any buffer (its unpadded size), so the last
    # arena byte is one a kernel writes and a canary high-water mark on the device equals it
    naive_bytes: int  # sum of all buffer sizes (aligned): what no reuse would need


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def plan(buffers: list[Buffer]) -> Plan:
    """Place `buffers` in one arena so that buffers alive at the same step never overlap.

    Args:
        buffers: Every activation buffer with its size and lifetime.

    Returns:
        The offsets and the arena size.
    """
    order = sorted(buffers, key=lambda b: (-_align(b.size), b.first, b.id))
    placed: list[tuple[int, int, Buffer]] = []  # (offset, aligned size, buffer)
    offsets: dict[int, int] = {}
    for b in order:
        size = _align(b.size)
        busy = sorted((off, off + sz) for off, sz, o in placed if o.first <= b.last and b.first <= o.last)
        best_off, best_gap = None, None
        cursor = 0
        for lo, hi in busy:
            gap = lo - cursor
            if gap >= size and (best_gap is None or gap < best_gap):
                best_off, best_gap = cursor, gap
            cursor = max(cursor, hi)
        if best_off is None:
            best_off = cursor
        offsets[b.id] = best_off
        placed.append((best_off, size, b))
    arena = max((off + b.size for off, _, b in placed), default=0)
    return Plan(offsets, arena, sum(_align(b.size) for b in buffers))


def check(buffers: list[Buffer], p: Plan) -> None:
    """Raise AssertionError if two buffers alive at the same step overlap (a planner bug)."""
    for i, a in enumerate(buffers):
        for b in buffers[i + 1 :]:
            if a.first <= b.last and b.first <= a.last:
                a0, b0 = p.offsets[a.id], p.offsets[b.id]
                if a0 < b0 + b.size and b0 < a0 + a.size:
                    raise AssertionError(f"buffers {a.id} and {b.id} overlap in time and space")
