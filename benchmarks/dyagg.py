"""DY-Conv in aggregation form (`dyagg`) against a static conv and against the split form (`dyconv`).

Every model is the lowering of an architecture (latency_tables.lowering: the exporter's exact
ops, shapes and kernel parameters, synthetic constants), generated as C, built into the
profiling firmware of the emulated Cortex-M4 (nucleo-f446re -> QEMU mps2-an386, SIMD kernels)
and INVOKEd; the figures are QEMU instructions per inference (-icount, not cycles), the minimum
of 3 runs, with the per-op split from the firmware's per-layer timer.

1. One layer, 32 -> 32 channels, kernel 5, 64 steps (the issue's shape): a static conv, dyagg
   K = 2 and K = 4 (attention + aggregation FC + one conv), and the split form K = 4.
2. A whole network: input 128 x 6, stem conv 6 -> 32 k5 stride 2, four DY-Conv cells 32 -> 32 k5
   K = 4, head; split form against aggregation form.

    .venv/bin/python benchmarks/dyagg.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BOARD = "nucleo-f446re"


def _arch(cells: list[dict], channels: int, length: int, stem: dict | None):
    from search_space import arch as arch_mod

    d = {"format": "micronas.arch/1", "input_channels": channels, "input_length": length, "num_classes": 4,
         "cells": cells}
    if stem is not None:
        d["stem"] = stem
    return arch_mod.from_json(d)


def measure(graph, work: Path) -> tuple[float, dict[str, float]]:
    """(instructions per INVOKE, instructions per runtime op name) on the emulated M4."""
    from firmware_export import codegen
    from micronas.device import build_image
    from targets import boards
    from targets.protocol import DeviceClient
    from targets.qemu import EmulatedBoard, instructions_from_ticks

    board = boards.get(BOARD)
    gen = codegen.generate(graph, labels=None, input_mean=None, input_std=None)
    codegen.write(gen, work / "c")
    image = build_image(board, work / "c", work / "fw", emulated=True, simd=True)
    with EmulatedBoard(board.qemu.machine, image.elf, work / "qemu") as emu:
        with DeviceClient.open(emu.url, timeout_s=30.0) as dev:
            hello = dev.hello()
            to_instr = lambda t: instructions_from_ticks(t, hello.timer_hz, emu.icount_shift)  # noqa: E731
            dev.set_input(bytes(hello.input_bytes))
            total = to_instr(dev.invoke(3).min_ticks)
            dev.invoke(1, per_layer=True)
            per_op: dict[str, float] = defaultdict(float)
            for layer, ticks in zip(gen.layers, dev.get_layers()):
                per_op[layer.op] += to_instr(ticks)
    return total, dict(per_op)


def main() -> int:
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm")
            return 2
    from latency_tables.lowering import lower, lower_layer
    from search_space.arch import LayerSpec

    layers = {
        "static conv": LayerSpec(op="conv", out=32, kernel=5, stride=1),
        "dyagg K=2": LayerSpec(op="dyagg", out=32, kernel=5, stride=1, experts=2),
        "dyagg K=4": LayerSpec(op="dyagg", out=32, kernel=5, stride=1, experts=4),
        "dyconv (split) K=4": LayerSpec(op="dyconv", out=32, kernel=5, stride=1, experts=4),
    }
    stem = {"op": "conv", "out": 32, "kernel": 5, "stride": 2}
    nets = {form: _arch([{"op": form, "out": 32, "kernel": 5, "stride": 1, "experts": 4}] * 4, 6, 128, stem)
            for form in ("dyconv", "dyagg")}
    with tempfile.TemporaryDirectory(prefix="mn-dyagg-") as td:
        res = {name: measure(lower_layer(spec, 32, 64), Path(td) / f"l{i}") for i, (name, spec) in
               enumerate(layers.items())}
        net = {form: measure(lower(a), Path(td) / f"n{form}") for form, a in nets.items()}

    print(f"## one layer 32 -> 32, k5, L64 on the emulated Cortex-M4 ({BOARD}, QEMU mps2-an386, SIMD): "
          "instructions per inference\n")
    print("| layer | instructions | x static conv | of which CONV_2D | FULLY_CONNECTED | other ops |")
    print("|---|---:|---:|---:|---:|---:|")
    base = res["static conv"][0]
    for name, (total, per_op) in res.items():
        conv = per_op.get("CONV_2D", 0.0)
        fc = per_op.get("FULLY_CONNECTED", 0.0)
        print(f"| {name} | {total:,.0f} | {total / base:.3f} | {conv:,.0f} | {fc:,.0f} | {total - conv - fc:,.0f} |")
    print("\n## whole network: input 128 x 6, stem conv 32 k5 s2, 4 cells DY-Conv 32 -> 32 k5 K=4, head\n")
    print("| form | instructions per inference | x split form |")
    print("|---|---:|---:|")
    for form, (total, _) in net.items():
        print(f"| {form} | {total:,.0f} | {total / net['dyconv'][0]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
