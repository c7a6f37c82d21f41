"""Generate a lowered graph through the code generator, as export would: the one way a table
key, an arena or a constant count is derived from a network (no device, no torch)."""

from __future__ import annotations

from typing import Any

from .keys import op_key


def generate(graph: Any, channels: int, classes: int) -> Any:
    """The code generator's model for a lowered graph, with neutral labels and normalisation.

    Args:
        graph: A lowered graph (`latency_tables.lowering`).
        channels: Input channels.
        classes: Output classes (labels `c0`, `c1`, ...).

    Returns:
        `firmware_export.codegen.generate`'s result: layers, arena, constant bytes.
    """
    from firmware_export.codegen import generate as codegen_generate

    return codegen_generate(graph, tuple(f"c{i}" for i in range(classes)), (0.0,) * channels, (1.0,) * channels)


def graph_keys(graph: Any, channels: int, classes: int = 2) -> list[str]:
    """Table keys of a lowered graph's kernel calls, in execution order (views emit none).

    Args:
        graph: A lowered graph.
        channels: Input channels.
        classes: Output classes.

    Returns:
        One key per kernel call.
    """
    return [op_key(layer.op, layer.fields) for layer in generate(graph, channels, classes).layers]
