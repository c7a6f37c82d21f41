"""The code generator as the tables see a lowered graph: its plan (keys, arena, constants; no C
text, no device, no torch) and, for the probe firmware and the ELF flash figure, its C."""

from __future__ import annotations

from typing import Any

from .keys import op_key


def plan(graph: Any) -> Any:
    """The code generator's plan of a lowered graph: every kernel call's params fields, the arena
    and the constant bytes, exactly as export plans the converted model; renders no C.

    Args:
        graph: A lowered graph (`latency_tables.lowering`).

    Returns:
        `firmware_export.codegen.plan`'s result.
    """
    from firmware_export.codegen import plan as codegen_plan

    return codegen_plan(graph)


def generate(graph: Any, channels: int, classes: int) -> Any:
    """The code generator's C model for a lowered graph, with neutral labels and normalisation.

    Args:
        graph: A lowered graph (`latency_tables.lowering`).
        channels: Input channels.
        classes: Output classes (labels `c0`, `c1`, ...).

    Returns:
        `firmware_export.codegen.generate`'s result: the C text, layers, arena, constant bytes.
    """
    from firmware_export.codegen import generate as codegen_generate

    return codegen_generate(graph, tuple(f"c{i}" for i in range(classes)), (0.0,) * channels, (1.0,) * channels)


def graph_keys(graph: Any) -> list[str]:
    """Table keys of a lowered graph's kernel calls, in execution order (views emit none).

    Args:
        graph: A lowered graph.

    Returns:
        One key per kernel call.
    """
    return [op_key(layer.op, layer.key_fields) for layer in plan(graph).layers]
