"""Instructions per MAC (conv / depthwise / FC) and per output element (ADD, MUL, pools) on the emulated cores.

For each emulated board (Cortex-M4 nucleo-f446re -> mps2-an386, M7 nucleo-h743zi -> mps2-an500,
M33 nucleo-l552ze-q -> mps2-an505) two profiling firmwares are built around the same model, the
runtime's SIMD (DSP extension) kernels and the portable C ones (-DMICRONAS_NO_SIMD). Each kernel
shape below is timed with BENCH_OP (docs/protocol.md) under QEMU -icount shift=7, where timer ticks
convert exactly to guest instructions; the figure is instructions / MACs, MACs counted as
L_out x cout x cin x k with the padded taps included (1-D NHWC, H = 1, 'same' padding, stride 1).
The reference columns are CMSIS-NN's and a plain C kernel's figures on the M4 (the issue's table).
ADD, MUL, AVERAGE_POOL_2D and MAX_POOL_2D are timed through their own BENCH_OP requests (the
registry's representative quantisation) and reported per output element against a CMSIS-NN
reference derived from issue 14's ratios (CMSIS_NOTE).

The model is the BasicMotions default (`runs/demo/c`, from `make demo`; the tests' tiny reference
model stands in when absent): it is also INVOKEd once per firmware (whole-model instructions).
Its C model is copied with the current runtime sources (or `--runtime DIR`'s) laid over it, so the
figures are for the runtime in this tree, not for the copy in runs/demo/c. Then a split-form
DY-Conv layer (K = 2, 4) and a KernelDNA layer, unfused and fused (FUSED_CONV_MUL_ADD), against a
static conv of the same shape: BENCH_OP on every kernel call's latency-table key, with the
planner's arena bytes. Last, the flash cost of the kernels: arm-none-eabi-size of the compiled
kernel objects of each build.

    .venv/bin/python benchmarks/kernels.py [--boards nucleo-f446re ...] [--runtime DIR] [--demo DIR]
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BOARDS = ("nucleo-f446re", "nucleo-h743zi", "nucleo-l552ze-q")
K_CONV, K_DWCONV, K_FC = 1, 2, 3
INPUT_OFFSET, OUTPUT_OFFSET = 128, -5  # input zero point -128 (after a ReLU), a small output zero point


@dataclass(frozen=True)
class Shape:
    name: str
    kernel: int
    params: tuple[int, ...]
    macs: int
    cmsis_nn: float  # instructions per MAC on the M4 (reference)
    plain_c: float


def conv(cin: int, cout: int, k: int, length: int, cmsis: float, plain: float) -> Shape:
    p = (length, cin, length, cout, k, 1, 1, k // 2, 1, INPUT_OFFSET, OUTPUT_OFFSET, -128, 127)
    return Shape(f"conv cin{cin} cout{cout} k{k} L{length}", K_CONV, p, length * cout * cin * k, cmsis, plain)


def dwconv(ch: int, k: int, length: int, cmsis: float, plain: float) -> Shape:
    p = (length, ch, length, 1, k, 1, 1, k // 2, INPUT_OFFSET, OUTPUT_OFFSET, -128, 127)
    return Shape(f"depthwise ch{ch} k{k} L{length}", K_DWCONV, p, length * ch * k, cmsis, plain)


def fc(n_in: int, n_out: int, cmsis: float, plain: float) -> Shape:
    p = (1, n_in, n_out, INPUT_OFFSET, 0, OUTPUT_OFFSET, -128, 127, 0, 1)  # per_channel 0, has_bias 1
    return Shape(f"fully connected {n_in}->{n_out}", K_FC, p, n_in * n_out, cmsis, plain)


SHAPES = (
    conv(16, 32, 5, 64, 2.41, 7.59),
    conv(32, 32, 3, 32, 2.27, 7.00),
    conv(6, 16, 5, 128, 4.12, 10.52),
    conv(64, 64, 3, 16, 1.93, 6.31),
    dwconv(32, 5, 64, 17.42, 24.83),
    fc(64, 6, 3.03, 6.93),
)
KERNEL_OBJECTS = ("mn_conv.o", "mn_fc.o", "mn_elementwise.o", "mn_pool.o")


@dataclass(frozen=True)
class ElemShape:
    """An ADD / MUL / pool row: timed through the op's own BENCH_OP request (its representative
    quantisation, firmware_export.codegen), reported per output element."""

    name: str
    op: str
    cost: dict
    elements: int  # output elements
    cmsis_nn: float  # instructions per output element on the M4 (reference, derived: see CMSIS_NOTE)


def _row(n: int, stride2: int) -> dict:
    """One contiguous row of n elements; the second operand walks it (1) or is one scalar (0)."""
    return {"out_dims": (1, 1, 1, n), "in1_strides": (0, 0, 0, 1), "in2_strides": (0, 0, 0, stride2), "relu": 0}


def _pool(in_len: int, ch: int, filt: int, stride: int, pad: int, out_len: int) -> dict:
    return {"in_len": in_len, "ch": ch, "out_len": out_len, "filter": filt, "stride": stride, "pad_before": pad}


# CMSIS-NN references per output element, derived from the third-party DY-Conv model
# (TFLM + CMSIS-NN vs this runtime on the emulated M4, before this change): ADD 102 instructions
# per element = 1.19x CMSIS-NN -> 86; MUL 52 = 1.00x -> 52. The pools are given only as ratios
# (AVERAGE_POOL_2D 1.27x, MAX_POOL_2D 1.53-1.83x), so each pool row's reference is this runtime's
# figure before the change on that shape (SIMD build, M4, measured with this script on
# 2026-12-05) divided by the ratio, 1.83 for MAX_POOL_2D (the stricter end).
CMSIS_NOTE = ("CMSIS-NN reference per output element on the M4, derived: ADD 102/1.19 = 86, MUL 52/1.00 = 52 "
              "(issue 14); pools: this runtime's M4 SIMD figure before the change / 1.27 (average) or / 1.83 (max)")
ELEM_SHAPES = (
    ElemShape("ADD 2048 same shape", "ADD", _row(2048, 1), 2048, 86.0),
    ElemShape("ADD 2048 same shape, fused ReLU", "ADD", {**_row(2048, 1), "relu": 1}, 2048, 86.0),
    ElemShape("MUL 2048 same shape", "MUL", _row(2048, 1), 2048, 52.0),
    ElemShape("MUL 2048 by a scalar (attention weight)", "MUL", _row(2048, 0), 2048, 52.0),
    ElemShape("MUL 2048 by a scalar, fused ReLU", "MUL", {**_row(2048, 0), "relu": 1}, 2048, 52.0),
    ElemShape("AVERAGE_POOL_2D global L64 ch32", "AVERAGE_POOL_2D", _pool(64, 32, 64, 1, 0, 1), 32, 410.28 / 1.27),
    ElemShape("AVERAGE_POOL_2D k2 s2 L64 ch32", "AVERAGE_POOL_2D", _pool(64, 32, 2, 2, 0, 32), 1024, 37.48 / 1.27),
    ElemShape("AVERAGE_POOL_2D k3 s1 same L63 ch6", "AVERAGE_POOL_2D", _pool(63, 6, 3, 1, 1, 63), 378, 47.57 / 1.27),
    ElemShape("MAX_POOL_2D k2 s2 L64 ch32", "MAX_POOL_2D", _pool(64, 32, 2, 2, 0, 32), 1024, 36.77 / 1.83),
    ElemShape("MAX_POOL_2D k3 s1 same L64 ch16", "MAX_POOL_2D", _pool(64, 16, 3, 1, 1, 64), 1024, 45.27 / 1.83),
    ElemShape("MAX_POOL_2D k3 s2 same L63 ch6", "MAX_POOL_2D", _pool(63, 6, 3, 2, 1, 32), 192, 47.62 / 1.83),
)

# A split-form DY-Conv layer (K experts) against a static conv of the same shape: 32 -> 32
# channels, kernel 5, 64 steps, as the search space lowers it (latency_tables.lowering); each
# variant's kernel calls are timed with BENCH_OP for their latency-table keys, as the predictor
# sums them. "unfused": K CONV_2D, K STRIDED_SLICE, K MUL, K-1 ADD; "fused": one
# FUSED_CONV_MUL_ADD. Both also run the attention (AVERAGE_POOL_2D, 2 FULLY_CONNECTED, SOFTMAX).
DYCONV_LAYERS = (("static conv", "conv", None), ("dyconv K=2", "dyconv", 2), ("dyconv K=4", "dyconv", 4),
                 ("kdna", "kdna", None))
DYCONV_SHAPE = dict(out=32, kernel=5, in_ch=32, length=64)


def dyconv_plans() -> dict[tuple[str, bool], object]:
    """(row name, fused) -> the code generator's plan of that one layer."""
    from firmware_export.codegen.plan import plan_model
    from latency_tables.lowering import lower_layer
    from search_space.arch import LayerSpec

    plans = {}
    for name, op, k in DYCONV_LAYERS:
        g = lower_layer(LayerSpec(op, DYCONV_SHAPE["out"], DYCONV_SHAPE["kernel"], 1, k), DYCONV_SHAPE["in_ch"],
                        DYCONV_SHAPE["length"])
        for fused in (False, True):
            plans[(name, fused)] = plan_model(g, fuse=fused)
    return plans


def bench_plan_layers(dev, plan, count: int, to_instr, cache: dict) -> list[tuple[str, float]]:
    """(op, instructions) of every kernel call of `plan`, by BENCH_OP on its latency-table key."""
    from firmware_export.codegen.bench import bench_request
    from latency_tables.keys import cost_params, op_key

    out = []
    for la in plan.layers:
        key = op_key(la.op, la.key_fields)
        if key not in cache:
            kernel, params = bench_request(la.op, cost_params(la.op, la.key_fields))
            cache[key] = to_instr(dev.bench_op(kernel, params, count).min_ticks)
        out.append((la.op, cache[key]))
    return out


def model_dir(demo: Path, runtime: Path, dest: Path) -> tuple[Path, str]:
    """A C model directory: the demo's model (or the reference model) with `runtime` laid over it."""
    from firmware_export import codegen

    dest.mkdir(parents=True)
    if (demo / "micronas_model.c").is_file():
        for f in ("micronas_model.c", "micronas_model.h"):
            shutil.copy2(demo / f, dest / f)
        what = f"{demo} (default model)"
    else:
        from tests.test_codegen import reference_model

        gen = codegen.generate(reference_model(), labels=("a", "b", "c"), input_mean=(0.0,) * 3,
                               input_std=(1.0,) * 3)
        codegen.write(gen, dest)
        what = "tests' reference model (no demo run: `make demo` makes one)"
    for src in codegen.runtime_sources():
        shutil.copy2(src, dest / src.name)
    for src in sorted(runtime.glob("*")):  # an override: mn_*.c / *.h
        if src.suffix in (".c", ".h") and src.name != "micronas_model.h":
            shutil.copy2(src, dest / src.name)
    return dest, what


def object_sizes(obj_dir: Path) -> dict[str, int]:
    """text + data of each kernel object (arm-none-eabi-size, Berkeley)."""
    out = {}
    for name in KERNEL_OBJECTS:
        lines = subprocess.run(["arm-none-eabi-size", "-B", str(obj_dir / name)], capture_output=True, text=True,
                               check=True).stdout.strip().splitlines()
        text, data, _ = (int(v) for v in lines[-1].split()[:3])
        out[name] = text + data
    return out


def measure(board_name: str, simd: bool, c_dir: Path, work: Path, count: int) -> dict:
    from targets import boards
    from micronas.device import build_image
    from targets.protocol import DeviceClient
    from targets.qemu import EmulatedBoard, instructions_from_ticks

    board = boards.get(board_name)
    tag = f"{board_name}-{'simd' if simd else 'portable'}"
    from micronas.tables import bench_scratch_bytes

    # BENCH_OP's scratch as the latency tables have it (a K = 4 layer's tensors)
    image = build_image(board, c_dir, work / tag, emulated=True, simd=simd,
                        bench_scratch_bytes=bench_scratch_bytes(board))
    res: dict = {"sizes": object_sizes(work / tag / "obj" / "model"), "instr": {}}
    with EmulatedBoard(board.qemu.machine, image.elf, work / tag / "qemu") as emu:
        with DeviceClient.open(emu.url, timeout_s=30.0, retries=1) as dev:
            hello = dev.hello()

            def to_instr(ticks: int) -> float:
                return instructions_from_ticks(ticks, hello.timer_hz, emu.icount_shift)

            for s in SHAPES:
                st = dev.bench_op(s.kernel, struct.pack(f"<{len(s.params)}i", *s.params), count)
                res["instr"][s.name] = to_instr(st.min_ticks)
            from firmware_export.codegen.bench import bench_request

            for e in ELEM_SHAPES:
                kernel, params = bench_request(e.op, e.cost)
                res["instr"][e.name] = to_instr(dev.bench_op(kernel, params, count).min_ticks)
            if simd:
                cache: dict = {}
                res["dyconv"] = {k: bench_plan_layers(dev, p, count, to_instr, cache) for k, p in dyconv_plans().items()}
            dev.set_input(bytes(hello.input_bytes))
            res["model"] = to_instr(dev.invoke(1).min_ticks)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--boards", nargs="+", default=list(BOARDS))
    ap.add_argument("--runtime", type=Path, default=ROOT / "firmware_export" / "runtime",
                    help="runtime sources to lay over the model (default: this tree's)")
    ap.add_argument("--demo", type=Path, default=ROOT / "runs" / "demo" / "c")
    ap.add_argument("--count", type=int, default=3, help="BENCH_OP repetitions (the minimum is kept)")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm")
            return 2

    with tempfile.TemporaryDirectory(prefix="mn-kernels-") as td:
        c_dir, what = model_dir(args.demo, args.runtime.resolve(), Path(td) / "c")
        keys = [(b, simd) for b in args.boards for simd in (False, True)]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = dict(zip(keys, pool.map(lambda k: measure(k[0], k[1], c_dir, Path(td), args.count), keys)))

    from targets import boards

    print(f"runtime: {args.runtime}\nmodel: {what}\n")
    for b in args.boards:
        core = boards.get(b).core
        port, simd = results[(b, False)], results[(b, True)]
        print(f"## {core} ({b}, QEMU {boards.get(b).qemu.machine}): instructions per MAC\n")
        print("| shape | MACs | portable | SIMD | SIMD x CMSIS-NN (M4 ref) | portable x plain C (M4 ref) |")
        print("|---|---:|---:|---:|---:|---:|")
        for s in SHAPES:
            p, v = port["instr"][s.name] / s.macs, simd["instr"][s.name] / s.macs
            print(f"| {s.name} | {s.macs:,} | {p:.2f} | {v:.2f} | {v / s.cmsis_nn:.2f} (ref {s.cmsis_nn:.2f}) "
                  f"| {p / s.plain_c:.2f} (ref {s.plain_c:.2f}) |")
        print()
        print(f"## {core} ({b}): ADD, MUL and pools, instructions per output element\n")
        print("| shape | elements | portable | SIMD | SIMD x CMSIS-NN (M4 ref) |")
        print("|---|---:|---:|---:|---:|")
        for e in ELEM_SHAPES:
            p, v = port["instr"][e.name] / e.elements, simd["instr"][e.name] / e.elements
            ref = f"{v / e.cmsis_nn:.2f} (ref {e.cmsis_nn:.2f})"
            print(f"| {e.name} | {e.elements:,} | {p:.2f} | {v:.2f} | {ref} |")
        print()
    print(CMSIS_NOTE + "\n")
    print("## whole model, one INVOKE (instructions)\n")
    print("| core | portable | SIMD | SIMD x portable |")
    print("|---|---:|---:|---:|")
    for b in args.boards:
        p, v = results[(b, False)]["model"], results[(b, True)]["model"]
        print(f"| {boards.get(b).core} | {p:,.0f} | {v:,.0f} | {v / p:.3f} |")
    print(f"\n## split DY-Conv layer, fused and unfused, vs a static conv ({DYCONV_SHAPE['in_ch']} -> "
          f"{DYCONV_SHAPE['out']} channels, kernel {DYCONV_SHAPE['kernel']}, L{DYCONV_SHAPE['length']}; SIMD build, "
          "BENCH_OP instructions of each kernel call summed; arena: the planner's bytes for the layer alone)\n")
    print("| core | layer | calls unfused | instructions unfused | calls fused | instructions fused | fused x unfused "
          "| fused x static conv | conv+MUL+ADD part unfused | fused call | arena unfused | arena fused |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    plans = dyconv_plans()
    chain_ops = ("CONV_2D", "STRIDED_SLICE", "MUL", "ADD", "FUSED_CONV_MUL_ADD")
    for b in args.boards:
        dy = results[(b, True)]["dyconv"]
        static = sum(v for _, v in dy[("static conv", True)])
        for name, _, _ in DYCONV_LAYERS:
            u, f = dy[(name, False)], dy[(name, True)]
            tu, tf = sum(v for _, v in u), sum(v for _, v in f)
            cu = sum(v for o, v in u if o in chain_ops)
            cf = sum(v for o, v in f if o in chain_ops)
            print(f"| {boards.get(b).core} | {name} | {len(u)} | {tu:,.0f} | {len(f)} | {tf:,.0f} | {tf / tu:.3f} "
                  f"| {tf / static:.2f} | {cu:,.0f} | {cf:,.0f} | {plans[(name, False)].arena_bytes:,} "
                  f"| {plans[(name, True)].arena_bytes:,} |")
    print("\n## flash of the kernel objects (text + data bytes, arm-none-eabi-size)\n")
    print("| core | build | " + " | ".join(KERNEL_OBJECTS) + " |")
    print("|---|---|" + "---:|" * len(KERNEL_OBJECTS))
    for b in args.boards:
        for simd in (False, True):
            sz = results[(b, simd)]["sizes"]
            print(f"| {boards.get(b).core} | {'SIMD' if simd else 'portable'} | "
                  + " | ".join(f"{sz[o]:,}" for o in KERNEL_OBJECTS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
