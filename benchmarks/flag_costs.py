"""What -ffreestanding and linking without --gc-sections cost a compiled model (figures for the
generated header and docs/runtime.md).

    python benchmarks/flag_costs.py DIR [DIR...] [--target nucleo-f446re]

DIR is a folder written by `micronas compile`. For each: instructions per inference on the
emulated core (QEMU -icount, mean over the folder's first 20 windows) with the firmware's usual
model flags and with -ffreestanding added; and the model's flash (.text of the minimal
application, `targets.build.model_footprint`) with and without -Wl,--gc-sections.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np


def main() -> None:
    from micronas import budgets as budget_mod
    from micronas.stages.compile import C_DIR, WINDOWS, read_record
    from micronas.stages.profile import Measured, measure
    from micronas.units import Budgets
    from targets import build

    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--target", default="nucleo-f446re")
    args = ap.parse_args()
    board = budget_mod.resolve_board(args.target)
    for d in args.dirs:
        rec = read_record(d)
        model = Measured(d / C_DIR, d / rec.source_name, tuple(rec.input["shape"]), int(np.prod(rec.output["shape"])),
                         rec.arena_bytes_planned, list(rec.runtime_layer_ops))
        x = np.load(d / WINDOWS)[:20]
        counts = {}
        with tempfile.TemporaryDirectory() as td:
            variants = (("default", build.COMMON_FLAGS), ("-ffreestanding", (*build.COMMON_FLAGS, "-ffreestanding")))
            for label, flags in variants:
                with mock.patch.object(build, "COMMON_FLAGS", flags):
                    p, _ = measure(model, x, board, Budgets(), Path(td) / label.strip("-"))
                counts[label] = p.total
            gc = build.model_footprint(board, d / C_DIR, Path(td) / "gc").text_bytes
            nogc = build.model_footprint(board, d / C_DIR, Path(td) / "nogc", gc_sections=False).text_bytes
        extra = counts["-ffreestanding"] / counts["default"] - 1
        print(f"{rec.source_name} on {board.name} (emulated {board.core}): {counts['default']:,.0f} instructions, "
              f"-ffreestanding {counts['-ffreestanding']:,.0f} ({100 * extra:+.1f} %); model flash .text "
              f"{gc:,} B with --gc-sections, {nogc:,} B without (+{nogc - gc:,} B)")


if __name__ == "__main__":
    main()
