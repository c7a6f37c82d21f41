"""How fast `micronas --help` answers, side by side with two baselines, median of N runs.

Baselines: a bare interpreter start (`python -c pass`: the floor) and importing what the
pipeline needs (`import torch, tensorflow`: what --help would cost without lazy imports).
Target (issue 2): every --help under 1 s.

    .venv/bin/python benchmarks/cli_startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "python -c pass (floor)": [sys.executable, "-c", "pass"],
    "micronas --help": [sys.executable, "-m", "micronas", "--help"],
    "micronas export --help": [sys.executable, "-m", "micronas", "export", "--help"],
    "import torch, tensorflow (eager baseline)": [sys.executable, "-c", "import torch, tensorflow"],
}


def median_seconds(cmd: list[str], runs: int) -> float:
    subprocess.run(cmd, capture_output=True, check=True)  # warm the file cache
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    runs = ap.parse_args().runs
    res = {name: median_seconds(cmd, runs) for name, cmd in CASES.items()}
    eager = res["import torch, tensorflow (eager baseline)"]
    print(f"median of {runs} runs (wall clock, this machine)")
    for name, s in res.items():
        print(f"  {name:<44} {s * 1000:8.0f} ms   {s / eager:6.3f} x eager baseline")
    worst = max(res["micronas --help"], res["micronas export --help"])
    print(f"target: every --help under 1 s -> {'met' if worst < 1.0 else 'MISSED'} ({worst:.2f} s)")


if __name__ == "__main__":
    main()
