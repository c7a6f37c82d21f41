"""What does a sweep cost, and what does it show? The watch data over 4 latency budgets x 3 seeds
on the default board, run twice: on a local Ray of 1 worker, then of 2; the wall times, their
ratio, whether the two runs found the same figures, and the Pareto table.

Every job is a real `micronas search` (DNAS, derivation, final training, int8 export, profile on
the emulated core); latency and arena are measured on the emulated core (QEMU instruction count
at the board's clock, not cycles). Full-length searches (40 + 120 epochs) take about an hour
per job on a laptop core; `--epochs/--final-epochs/--candidates` shrink them, and the figures
in benchmarks/README.md say which were used.

Needs the scale extra (`make scale`) and seglearn for the watch data (`pip install --no-deps
seglearn`, see benchmarks/watch_data.py).

    .venv/bin/python benchmarks/sweep.py --out DIR [--latency 5ms,10ms,20ms,50ms] [--seeds 0,1,2]
        [--epochs 40] [--final-epochs 120] [--candidates 8] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import watch_data  # noqa: E402  (benchmarks/ is not a package)


def run_sweep(data: Path, out: Path, args: argparse.Namespace, workers: int) -> tuple[float, int, dict]:
    cmd = [sys.executable, "-m", "micronas", "sweep", "--latency", args.latency, "--ram", args.ram,
           "--seeds", args.seeds, "--data", str(data), "--epochs", str(args.epochs),
           "--final-epochs", str(args.final_epochs), "--candidates", str(args.candidates),
           "--val-subjects", watch_data.VAL_SUBJECT, "--workers", str(workers), "--out", str(out), "-q"]
    t0 = time.monotonic()
    p = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.monotonic() - t0
    if p.returncode not in (0, 1):
        raise SystemExit(f"the sweep with {workers} worker(s) failed (exit {p.returncode}); see {out}/sweep.json")
    return wall, p.returncode, json.loads((out / "sweep.json").read_text())["jobs"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="A new folder for the data and the sweeps.")
    ap.add_argument("--latency", default="5ms,10ms,20ms,50ms")
    ap.add_argument("--ram", default="256k")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--final-epochs", type=int, default=120)
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--workers", default="1,2", help="Local Ray sizes to time, comma-separated.")
    args = ap.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"--out {args.out} is not empty: the wall times need fresh sweeps (a re-run would resume)")
    data = watch_data.write(args.out / "watch.npz")
    walls: dict[int, float] = {}
    runs: dict[int, dict] = {}
    for w in (int(v) for v in args.workers.split(",")):
        walls[w], code, runs[w] = run_sweep(data, args.out / f"workers{w}", args, w)
        print(f"{w} worker(s): {walls[w]:.0f} s wall (exit {code})", flush=True)
    ws = sorted(walls)
    if len(ws) > 1:
        print(f"wall time {ws[0]} -> {ws[-1]} workers: {walls[ws[0]] / walls[ws[-1]]:.2f}x faster "
              f"({os.cpu_count()} CPUs on this machine, shared)")
        key = ("accuracy_int8", "measured_latency_ms", "arena_bytes_measured", "network")
        same = all({k: runs[ws[0]][n]["figures"].get(k) for k in key} == {k: runs[w][n]["figures"].get(k) for k in key}
                   for w in ws[1:] for n in runs[ws[0]])
        print(f"the same figures for every job with {', '.join(map(str, ws))} workers: {same}")
    from micronas import sweep_report

    jobs = runs[ws[-1]]
    front = sweep_report.front_names(jobs)
    print("\n| latency budget | seed | int8 accuracy | measured latency | arena | status | Pareto front |")
    print("|---|---|---|---|---|---|---|")
    for name, rec in jobs.items():
        f = rec.get("figures") or {}
        print(f"| {rec['job']['latency']} | {rec['job']['seed']} | "
              + (f"{f['accuracy_int8']:.3f}" if "accuracy_int8" in f else "-") + " | "
              + (f"{f['measured_latency_ms']:.2f} ms" if "measured_latency_ms" in f else "-") + " | "
              + (f"{f['arena_bytes_measured']:,} B" if "arena_bytes_measured" in f else "-")
              + f" | {rec['status']} | {'yes' if name in front else ''} |")
    print(f"\nreport: {args.out / f'workers{ws[-1]}' / 'report' / 'sweep.html'}")


if __name__ == "__main__":
    main()
