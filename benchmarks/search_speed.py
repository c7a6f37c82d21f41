"""Wall time of the whole `micronas search` command on a 7k-window dataset (issue 13's speed
target: under 15 minutes on 2 cores), stage by stage.

The data are synthetic, shaped like the UCI-HAR-like set of the issue (which is kept for an
independent check, not shipped): 6 channels x 128 samples at 50 Hz, 6 classes, 7,100 training
windows from 21 subjects (3 of them the validation subjects) and 2,900 test windows from 9
others. Each class is a sum of two sinusoids per channel with class-specific frequencies, plus a
subject-specific gain and noise, so the network has something to learn and the accuracy is not
the point: only the timing is. The command runs with the defaults (50 ms, the default board,
40 search epochs, 8 candidates, 120 final epochs) in a subprocess, alone, and its stage lines are
timed as they arrive.

    .venv/bin/python benchmarks/search_speed.py [--work DIR] [--epochs N --final-epochs N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLASSES, CHANNELS, LENGTH, HZ = 6, 6, 128, 50.0


def synthetic(n_train: int = 7100, n_test: int = 2900, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(LENGTH) / HZ
    freqs = rng.uniform(0.5, 6.0, size=(CLASSES, CHANNELS, 2))

    def part(n: int, subjects: list[str]):
        y = rng.integers(0, CLASSES, n)
        s = rng.choice(subjects, n)
        gain = {k: rng.uniform(0.7, 1.3, CHANNELS) for k in subjects}
        phase = rng.uniform(0, 2 * np.pi, (n, CHANNELS, 2))
        X = (np.sin(2 * np.pi * freqs[y][:, :, 0, None] * t + phase[:, :, 0, None])
             + 0.5 * np.sin(2 * np.pi * freqs[y][:, :, 1, None] * t + phase[:, :, 1, None]))
        X = X * np.stack([gain[k] for k in s])[:, :, None] + rng.normal(0, 0.8, X.shape)
        return X.astype(np.float32), y, s

    X, y, s = part(n_train, [f"s{i}" for i in range(1, 22)])
    Xt, yt, st = part(n_test, [f"s{i}" for i in range(22, 31)])
    return {"X": X, "y": y, "subjects": s, "X_test": Xt, "y_test": yt, "subjects_test": st}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--final-epochs", type=int, default=120)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="micronas-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "har7k.npz"
    np.savez(data, **synthetic())
    cmd = [str(ROOT / ".venv" / "bin" / "micronas"), "search", "--data", str(data), "--latency", "50ms", "--ram", "256k",
           "--val-subjects", "s1,s2,s3", "--epochs", str(args.epochs), "--final-epochs", str(args.final_epochs),
           "--out", str(work / "run")]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.monotonic()
    marks: list[tuple[float, str]] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=work,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}) as p:
        assert p.stdout is not None
        for line in p.stdout:
            if line.startswith("- ["):
                marks.append((time.monotonic() - t0, line.strip()))
                print(f"{marks[-1][0]:7.1f} s  {line.strip()}", flush=True)
            elif line.startswith(("found:", "accuracy", "latency:", "arena:")):
                print(" " * 11 + line.rstrip(), flush=True)
    total = time.monotonic() - t0
    print(f"whole command: {total:.0f} s ({total / 60:.1f} min), exit {p.returncode}; target 15 min "
          f"({total / 900:.2f} x)")
    return p.returncode


if __name__ == "__main__":
    sys.exit(main())
