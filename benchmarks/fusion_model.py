"""A trained split-form DY-Conv network, its C model with and without the conv -> MUL -> ADD fusion.

For a trained run (default: `runs/demo`, from `make demo`, whose searched network has three
DY-Conv K = 4 layers): the run's int8 TFLite model is turned into C twice, fused (what `micronas
export` writes) and unfused (`codegen.generate(fuse=False)`); both are built for the host and run
on every test window of the run's own split, and must give exactly TFLite Micro's outputs; then
both are built into the profiling firmware for the emulated Cortex-M4 (nucleo-f446re, QEMU
mps2-an386, SIMD) and INVOKEd once (QEMU instruction counts, not cycles). Prints the kernel
calls, arena bytes, constant bytes and instructions per inference of each.

    .venv/bin/python benchmarks/fusion_model.py [--run runs/demo] [--board nucleo-f446re]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "demo")
    ap.add_argument("--board", default="nucleo-f446re")
    args = ap.parse_args(argv)

    import numpy as np

    from firmware_export import codegen, hostbuild, verify
    from micronas.data.split import arrays_for
    from micronas.device import build_image
    from micronas.rundir import RunDir
    from micronas.stages.common import load_run
    from targets import boards
    from targets.protocol import DeviceClient
    from targets.qemu import EmulatedBoard, instructions_from_ticks

    run = RunDir(args.run)
    config, the_arch, ds, split, std = load_run(run)
    x_test, _ = arrays_for(ds, split)["test"]
    tflite = run.file("model_int8.tflite")
    qin, _ = verify.io_params(tflite)
    x_q = qin.quantize(std.apply(x_test).transpose(0, 2, 1))  # (N, T, C) int8
    flatbuffer = tflite.read_bytes()
    want = verify.run_tflm(flatbuffer, x_q)
    board = boards.get(args.board)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mn-fusion-") as td:
        for fused in (False, True):
            gen = codegen.generate(flatbuffer, tuple(config["classes"]), None, None, fuse=fused)
            c_dir = Path(td) / f"c-{fused}"
            codegen.write(gen, c_dir)
            got = hostbuild.build_and_run(c_dir, x_q, the_arch.num_classes)
            exact = int((got.reshape(len(x_q), -1) == want.reshape(len(x_q), -1)).all(axis=1).sum())
            image = build_image(board, c_dir, Path(td) / f"fw-{fused}", emulated=True, simd=True)
            with EmulatedBoard(board.qemu.machine, image.elf, Path(td) / f"qemu-{fused}") as emu:
                with DeviceClient.open(emu.url, timeout_s=30.0) as dev:
                    hello = dev.hello()
                    dev.set_input(x_q[0].tobytes())
                    ticks = dev.invoke(1).min_ticks
                    instr = instructions_from_ticks(ticks, hello.timer_hz, emu.icount_shift)
            ops = [la.op for la in gen.layers]
            rows.append(("fused" if fused else "unfused", len(ops), ops.count("FUSED_CONV_MUL_ADD"),
                         ops.count("MUL") + ops.count("ADD"), gen.arena_bytes, gen.flash_bytes_weights, instr,
                         exact))
    print(f"run: {args.run} ({', '.join(layer.op for layer in the_arch.layers)}); {len(x_q)} test windows; "
          f"{board.core} ({args.board}, QEMU {board.qemu.machine}, SIMD), one INVOKE\n")
    print("| C model | kernel calls | fused calls | MUL + ADD calls | arena bytes | constant bytes | instructions "
          "per inference | test windows equal to TFLM |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, calls, nf, nma, arena, flash, instr, exact in rows:
        print(f"| {name} | {calls} | {nf} | {nma} | {arena:,} | {flash:,} | {instr:,.0f} | {exact} of {len(x_q)} |")
    u, f = rows
    print(f"\nfused x unfused: instructions {f[6] / u[6]:.3f}, arena {f[4] / u[4]:.3f}")
    return 0 if all(r[7] == len(x_q) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
