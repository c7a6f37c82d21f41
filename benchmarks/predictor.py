"""Predicted vs measured latency, arena and flash for random networks of the search space.

For each of N architectures sampled from the default search space (BasicMotions shape: 6
channels x 100 samples, 4 classes):

1. train it briefly on BasicMotions (Adam, 30 epochs: trained weights, so the constants and the
   activations are a trained model's), export it the product's way: torch -> ONNX -> onnx2tf
   -> int8 TFLite (calibrated on BasicMotions);
2. generate the C model, build the profiling firmware for each board's emulated core, run 5
   BasicMotions test windows in QEMU: whole-inference instruction count (mean over the
   windows), arena high-water mark, and the ELF's flash size;
3. predict the same three figures *before export* from the architecture alone
   (`latency_tables.predict`, the shipped tables of each board).

Printed per board: the latency error distribution (max, p95, median of |predicted - measured|
/ measured), the arena differences (bytes) and the flash error vs the ELF. The baseline printed
beside it is the MAC-count proxy the field uses (instructions = k * MACs, k least-squares fitted
on these very networks, so the proxy is given its best possible constant).

Figures are QEMU instruction counts (-icount shift=7), not cycles. The run resumes: every
finished architecture's measurements are appended to <work>/results-seed<S>.jsonl; the
predictions are recomputed from the current tables whenever the report is printed
(`--report-only` prints it from the cached measurements).

    .venv/bin/python benchmarks/predictor.py [--archs 50] [--work /tmp/micronas-predictor]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BOARDS = ("nucleo-l552ze-q", "nucleo-f446re", "nucleo-h743zi")  # emulated M33, M4, M7
WINDOWS = 5


def _data():
    from micronas.data import Standardizer, arrays_for, load_dataset, make_split

    ds = load_dataset("basicmotions")
    split = make_split(ds, seed=0)
    parts = arrays_for(ds, split)
    std = Standardizer.fit(parts["train"][0])
    return ds, std.apply(parts["train"][0]), std.apply(parts["test"][0]), parts["train"][1]


EPOCHS = 30


def _export(arch, seed: int, x_train: np.ndarray, y_train: np.ndarray, work: Path) -> bytes:
    import torch

    from firmware_export import convert
    from search_space import network

    torch.manual_seed(seed)
    net = network.build(arch)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, y = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    net.train()
    for _ in range(EPOCHS):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    model = network.for_export(net.eval())
    convert.export_onnx(model, (arch.input_channels, arch.input_length), work / "m.onnx", work / "export.log")
    convert.onnx_to_int8_tflite(work / "m.onnx", np.ascontiguousarray(x_train.transpose(0, 2, 1)),
                                work / "m.tflite", work / "export.log")
    return (work / "m.tflite").read_bytes()


def _measure(board_name: str, c_dir: Path, windows: np.ndarray, work: Path) -> dict:
    from micronas.device import build_image
    from targets import boards, protocol, qemu
    from targets.qemu import ICOUNT_SHIFT

    board = boards.get(board_name)
    image = build_image(board, c_dir, work / board_name)
    counts = []
    with qemu.EmulatedBoard(board.qemu.machine, image.elf, work / board_name, icount_shift=ICOUNT_SHIFT) as emu:
        with protocol.DeviceClient.open(emu.url) as dev:
            hello = dev.hello()
            for w in windows:
                dev.set_input(w.tobytes())
                counts.append(qemu.instructions_from_ticks(dev.invoke(1).min_ticks, hello.timer_hz, ICOUNT_SHIFT))
            arena = dev.get_memory().arena_high_water
    return {"instructions": float(np.mean(counts)), "min": min(counts), "max": max(counts), "arena": arena,
            "elf_flash": image.flash_bytes}


def predict_all(arch_json: dict, tables: dict, elf: bool = True) -> dict:
    """The three predictions from the architecture alone (no export, no device); `elf`: also the
    flash from a firmware ELF built around the lowered network (does not depend on the table)."""
    from latency_tables import predict as predictor
    from micronas.tables import elf_flash
    from search_space import arch as arch_mod

    arch = arch_mod.from_json(arch_json)
    out = {}
    for b, t in tables.items():
        p = predictor.predict(arch, t)
        out[b] = {"predicted": p.latency_count, "predicted_arena": p.arena_bytes, "predicted_flash": p.flash_bytes}
        if elf:
            out[b]["predicted_flash_elf"] = predictor.predict(arch, t, elf_flash=elf_flash(t)).flash_bytes
    return out


def run_one(i: int, seed: int, data, tables: dict, work: Path) -> dict:
    from firmware_export import codegen, verify
    from search_space.space import DEFAULT_SPACE

    ds, x_train, x_test, y_train = data
    arch = DEFAULT_SPACE.sample(random.Random(seed * 100003 + i), ds.n_channels, ds.length, len(ds.class_names))
    predicted = predict_all(arch.to_json(), tables)  # before anything is exported
    with tempfile.TemporaryDirectory(prefix="mn-pred-", dir=work) as td:
        td = Path(td)
        t0 = time.monotonic()
        tflite = _export(arch, i, x_train, y_train, td)
        qin, _ = verify.io_params(td / "m.tflite")
        windows = qin.quantize(x_test[:WINDOWS].transpose(0, 2, 1))  # (N, T, C) int8
        gen = codegen.generate(tflite, tuple(ds.class_names), (0.0,) * ds.n_channels, (1.0,) * ds.n_channels)
        codegen.write(gen, td / "c")
        export_s = time.monotonic() - t0
        boards = {}
        for b in tables:
            boards[b] = {**_measure(b, td / "c", windows, td), **predicted[b], "exported_arena": gen.arena_bytes}
    return {"i": i, "arch": arch.to_json(), "macs": sum(la.macs for la in gen.layers), "layers": len(gen.layers),
            "export_seconds": round(export_s, 1), "boards": boards}


def _dist(errors: list[float]) -> str:
    a = np.abs(np.asarray(errors)) * 100
    return f"max {a.max():.3f}%  p95 {np.percentile(a, 95):.3f}%  median {np.median(a):.3f}%"


def report(results: list[dict]) -> None:
    print(f"\n{len(results)} architectures of the default space (BasicMotions 6ch x 100, 4 classes), "
          f"{WINDOWS} test windows each; QEMU instruction counts (-icount shift=7), not cycles")
    for b in BOARDS:
        rows = [r["boards"][b] for r in results if b in r["boards"]]
        if not rows:
            continue
        meas = np.array([r["instructions"] for r in rows])
        pred = np.array([r["predicted"] for r in rows])
        macs = np.array([r["macs"] for r in results if b in r["boards"]], float)
        k = float(macs @ meas / (macs @ macs))  # the MAC proxy's best constant for these networks
        err = (pred - meas) / meas
        mac_err = (k * macs - meas) / meas
        arena_d = [r["predicted_arena"] - r["arena"] for r in rows]
        arena_e = [r["exported_arena"] - r["arena"] for r in rows]
        flash_e = [(r["predicted_flash"] - r["elf_flash"]) / r["elf_flash"] for r in rows]
        flash_elf_e = [(r["predicted_flash_elf"] - r["elf_flash"]) / r["elf_flash"] for r in rows]
        spread = [(r["max"] - r["min"]) / r["instructions"] for r in rows]
        print(f"\n{b}: {len(rows)} networks, {meas.min():,.0f} .. {meas.max():,.0f} instructions per inference")
        print(f"  latency, table prediction vs measured : {_dist(err.tolist())}  "
              f"(signed mean {err.mean() * 100:+.3f}%)")
        print(f"  latency, MAC-count proxy (baseline)   : {_dist(mac_err.tolist())}  (k = {k:.3f} instr/MAC; "
              f"within 10%: {np.mean(np.abs(mac_err) <= 0.10) * 100:.0f}% of networks)")
        print(f"  ratio of max errors, table / MAC proxy: {np.abs(err).max() / np.abs(mac_err).max():.4f}")
        print(f"  data-dependence of the measurement    : max (max-min)/mean over the windows "
              f"{max(spread) * 100:.3f}%")
        print(f"  arena predicted - measured (bytes)    : min {min(arena_d)}, max {max(arena_d)} "
              f"(export's plan - measured: min {min(arena_e)}, max {max(arena_e)})")
        print(f"  flash, table's flash model vs ELF     : {_dist(flash_e)}  (signed mean "
              f"{np.mean(flash_e) * 100:+.3f}%)")
        print(f"  flash, ELF of the lowered network     : {_dist(flash_elf_e)}  (signed mean "
              f"{np.mean(flash_elf_e) * 100:+.3f}%)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "micronas-predictor")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()

    from latency_tables import predict as predictor

    args.work.mkdir(parents=True, exist_ok=True)
    results_file = args.work / f"results-seed{args.seed}.jsonl"
    done = {}
    if results_file.exists():
        for line in results_file.read_text().splitlines():
            try:
                r = json.loads(line)
                done[r["i"]] = r
            except (json.JSONDecodeError, KeyError):
                break
    tables = {b: predictor.find_table(b, 6, 100, 4) for b in BOARDS}  # BasicMotions: 6ch x 100, 4 classes
    if not args.report_only:
        data = _data()
        for i in range(args.archs):
            if i in done:
                continue
            t0 = time.monotonic()
            r = run_one(i, args.seed, data, tables, args.work)
            with open(results_file, "a") as f:
                f.write(json.dumps(r) + "\n")
            done[i] = r
            errs = " ".join(f"{(v['predicted'] - v['instructions']) / v['instructions'] * 100:+.3f}%"
                            for v in r["boards"].values())
            print(f"[{i + 1}/{args.archs}] {len(r['boards'])} boards, {r['layers']} kernels, "
                  f"{time.monotonic() - t0:.0f} s; latency error {errs}", flush=True)
    results = [done[i] for i in sorted(done) if i < args.archs]
    for r in results:  # measurements are cached; predictions always come from the current tables
        for b, p in predict_all(r["arch"], tables, elf=False).items():
            r["boards"][b].update(p)
    report(results)


if __name__ == "__main__":
    main()
