"""DY-Conv in aggregation form (`dyagg`) against a static conv and against the split form (`dyconv`).

Every model is the lowering of an architecture (latency_tables.lowering: the exporter's exact
ops, shapes and kernel parameters, synthetic constants), generated as C, built into the
profiling firmware of the emulated Cortex-M4 (nucleo-f446re -> QEMU mps2-an386, SIMD kernels)
and INVOKEd; the figures are QEMU instructions per inference (-icount, not cycles), the minimum
of 3 runs, with the per-op split from the firmware's per-layer timer.

1. One layer, 32 -> 32 channels, kernel 5, 64 steps (the issue's shape): a static conv, dyagg
   K = 2 and K = 4 (attention + aggregation FC + one conv), and the split form K = 4 as its
   chain is generated today (fused) and unfused (both with the issue-14 ADD/MUL kernels).
2. A whole network: input 128 x 6, stem conv 6 -> 32 k5 stride 2, four DY-Conv cells 32 -> 32 k5
   K = 4, head; the split form (unfused and fused) against the aggregation
   form.

    .venv/bin/python benchmarks/dyagg.py [--boards nucleo-f446re nucleo-l552ze-q nucleo-h743zi]
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


def measure(graph, work: Path, board_name: str = BOARD, fuse: bool = True) -> tuple[float, dict[str, float]]:
    """(instructions per INVOKE, instructions per runtime op name) on the board's emulated core."""
    from firmware_export import codegen
    from micronas.device import build_image
    from targets import boards
    from targets.protocol import DeviceClient
    from targets.qemu import EmulatedBoard, instructions_from_ticks

    board = boards.get(board_name)
    gen = codegen.generate(graph, labels=None, input_mean=None, input_std=None, fuse=fuse)
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
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--boards", nargs="+", default=[BOARD])
    args = ap.parse_args()
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm")
            return 2
    for board in args.boards:
        report(board)
    return 0


def report(board: str) -> None:
    from latency_tables.lowering import lower, lower_layer
    from search_space.arch import LayerSpec
    from targets import boards

    layers = {
        "static conv": (LayerSpec(op="conv", out=32, kernel=5, stride=1), True),
        "dyagg K=2": (LayerSpec(op="dyagg", out=32, kernel=5, stride=1, experts=2), True),
        "dyagg K=4": (LayerSpec(op="dyagg", out=32, kernel=5, stride=1, experts=4), True),
        "dyconv (split) K=4, fused": (LayerSpec(op="dyconv", out=32, kernel=5, stride=1, experts=4), True),
        "dyconv (split) K=4, unfused": (LayerSpec(op="dyconv", out=32, kernel=5, stride=1,
                                                                     experts=4), False),
    }
    stem = {"op": "conv", "out": 32, "kernel": 5, "stride": 2}
    nets = {form: _arch([{"op": form, "out": 32, "kernel": 5, "stride": 1, "experts": 4}] * 4, 6, 128, stem)
            for form in ("dyconv", "dyagg")}
    forms = {"split (dyconv), unfused": ("dyconv", False), "split (dyconv), fused": ("dyconv", True),
             "aggregation (dyagg)": ("dyagg", True)}
    with tempfile.TemporaryDirectory(prefix="mn-dyagg-") as td:
        res = {name: measure(lower_layer(spec, 32, 64), Path(td) / f"l{i}", board, fuse) for i, (name, (spec, fuse))
               in enumerate(layers.items())}
        net = {label: measure(lower(nets[form]), Path(td) / f"n{i}", board, fuse)
               for i, (label, (form, fuse)) in enumerate(forms.items())}

    machine = boards.get(board).qemu.machine
    print(f"## one layer 32 -> 32, k5, L64 on the emulated core of {board} (QEMU {machine}, SIMD): "
          "instructions per inference\n")
    print("| layer | instructions | x static conv | of which CONV_2D | FULLY_CONNECTED | other ops |")
    print("|---|---:|---:|---:|---:|---:|")
    base = res["static conv"][0]
    for name, (total, per_op) in res.items():
        conv = per_op.get("CONV_2D", 0.0)
        fc = per_op.get("FULLY_CONNECTED", 0.0)
        print(f"| {name} | {total:,.0f} | {total / base:.3f} | {conv:,.0f} | {fc:,.0f} | {total - conv - fc:,.0f} |")
    print(f"\n## whole network on {board}: input 128 x 6, stem conv 32 k5 s2, 4 cells DY-Conv 32 -> 32 k5 K=4, "
          "head\n")
    print("| form | instructions per inference | x split form, unfused |")
    print("|---|---:|---:|")
    first = net["split (dyconv), unfused"][0]
    for label, (total, _) in net.items():
        print(f"| {label} | {total:,.0f} | {total / first:.3f} |")
    print()


if __name__ == "__main__":
    sys.exit(main())
