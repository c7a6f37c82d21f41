"""The embedded-default pipeline (`make demo` without set-up), timed stage by stage.

Runs `micronas train` and `micronas export` as fresh processes in a temporary run directory,
like `make demo`, and prints wall time per stage against the issue-2 target (the whole demo
under 5 minutes on 2 cores), plus the figures the export measured.

    .venv/bin/python benchmarks/demo_pipeline.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 300.0


def timed(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "micronas", *args], check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    with tempfile.TemporaryDirectory() as td:
        run = str(Path(td) / "demo")
        t_train = timed(["train", "--out", run])
        t_export = timed(["export", run, "--ram", "256k", "--flash", "512k"])
        m = json.loads((Path(run) / "metrics.json").read_text())
        t_resume = timed(["export", run])  # unchanged inputs: conversion stages are skipped
    total = t_train + t_export
    print("embedded default (BasicMotions, default arch), wall clock on this machine")
    print(f"  train                 {t_train:7.1f} s")
    print(f"  export (first)        {t_export:7.1f} s   (metrics.json export_seconds {m['export_seconds']})")
    print(f"  export (re-run)       {t_resume:7.1f} s   {t_resume / t_export:.2f} x first (stages skipped)")
    print(f"  train + export        {total:7.1f} s   {total / TARGET_S:.2f} x the 300 s target")
    print(f"  accuracy fp32/int8    {m['accuracy_fp32']:.3f} / {m['accuracy_int8']:.3f} on {m['test_windows']} windows")
    a = m["litert_vs_tflm"]
    print(f"  LiteRT vs TFLM        {a['exact_match_rate']:.3f} bit-exact, max {a['max_lsb_diff']} LSB")
    print(f"  tflite bytes          {m['tflite_bytes']:,}")
    print(f"  TFLM arena bytes      {m['tflm_arena_bytes']:,} (measured minimum; allocator recorded "
          f"{m['tflm_arena_recorded_bytes']:,})")


if __name__ == "__main__":
    main()
