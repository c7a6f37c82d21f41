"""How many weight steps does a training on small data need? Judged on validation data only.

Until 2026-12-06 `micronas train` and a search's final training ran 120 epochs whatever the data:
on 40 training windows (batches of 10, 4 steps per epoch) that is 480 weight steps, where the
search's supernet takes at least 1,500 (`micronas.search.MIN_WEIGHT_STEPS`). Per dataset, a fixed
network is trained with the micronas recipe (`api.train`: the default TrainConfig, last epoch,
not distilled) for 120 epochs and for the epochs that give `--steps` weight steps, each with
the seeds' own seeded validation split (the test split is never read):

- PickupGestureWiimoteZ (aeon, equal-length version; 1 channel x 361, 10 gestures, 50 train
  windows: 40 train / 10 validation): micronas train's default network, and the network
  `micronas search --latency 20ms --ram 64k` found on it (archs/pickup_search_seed0.json), each
  window's mean removed as that search decided;
- JapaneseVowels (aeon; 216 train / 54 validation windows): archs/vowels_search_seed0.json, the
  mean kept as the search decides there.

    .venv/bin/python benchmarks/final_steps.py [--steps 1000,1500,3000] [--seeds 0,1,2] [--work DIR]

Prints validation accuracy and loss, mean over seeds, per step count. Resumable (WORK/results.json).
Skips cleanly (exit 0) when aeon is not installed: pip install --no-deps aeon
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from search import save, vowels_file  # noqa: E402

ARCHS = ROOT / "benchmarks" / "archs"


def cases() -> dict[str, dict]:
    """name -> {data, arch (None: micronas train's default network), remove_window_mean}."""
    vf = vowels_file()
    if vf is None:
        return {}
    pickup = vf.parents[1] / "PickupGestureWiimoteZ" / "PickupGestureWiimoteZ_eq_TRAIN.ts"
    return {"pickup, default network": {"data": pickup, "arch": None, "remove_window_mean": True},
            "pickup, searched network": {"data": pickup, "arch": ARCHS / "pickup_search_seed0.json",
                                         "remove_window_mean": True},
            "vowels, searched network": {"data": vf, "arch": ARCHS / "vowels_search_seed0.json",
                                         "remove_window_mean": False}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="1000,1500,3000", help="weight-step counts besides 120 epochs")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench-final-steps"))
    args = ap.parse_args()
    known = cases()
    if not known:
        print("skipped: aeon is not installed (pip install --no-deps aeon)")
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    steps = [int(s) for s in args.steps.split(",")]
    os.chdir(ROOT)

    from micronas import api
    from micronas.data import load_dataset, make_split
    from micronas.train import TrainConfig, steps_per_epoch

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results_path = work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    rows = []
    for name, case in known.items():
        ds = load_dataset(str(case["data"]))
        per_epoch = {s: steps_per_epoch(len(make_split(ds, seed=s).train), TrainConfig.batch_size) for s in seeds}
        for label, epochs_of in [("120 epochs", lambda s: 120)] + [
                (f"{n:,} steps", lambda s, n=n: math.ceil(n / per_epoch[s])) for n in steps]:
            runs = []
            for seed in seeds:
                epochs = epochs_of(seed)
                key = f"{name}/e{epochs}/seed{seed}"
                if key not in results:
                    cfg = TrainConfig(epochs=epochs, seed=seed, checkpoint_rule="last",
                                      remove_window_mean=case["remove_window_mean"])
                    t0 = time.monotonic()
                    r = api.train(str(case["data"]), work / name.replace(", ", "-").replace(" ", "_") / f"e{epochs}-s{seed}",
                                  arch=case["arch"], cfg=cfg, threads=2)
                    results[key] = {"val_acc": r.best["val_acc"], "val_loss": r.best["val_loss"],
                                    "steps": epochs * per_epoch[seed], "seconds": round(time.monotonic() - t0, 1)}
                    save(results_path, results)
                    print(f"[{time.strftime('%H:%M:%S')}] {key}: val acc {r.best['val_acc']:.3f}, "
                          f"loss {r.best['val_loss']:.3f}", flush=True)
                runs.append(results[key])
            rows.append((name, label, runs))
    print(f"\nvalidation, seeds {args.seeds} (test never read)\n\n| network | training | weight steps | "
          "val acc, mean (per seed) | val loss, mean (per seed) |\n|---|---|---|---|---|")
    for name, label, runs in rows:
        acc = ", ".join(f"{100 * r['val_acc']:.0f}" for r in runs)
        loss = ", ".join(f"{r['val_loss']:.3f}" for r in runs)
        print(f"| {name} | {label} | {runs[0]['steps']:,} | {100 * np.mean([r['val_acc'] for r in runs]):.1f} ({acc}) | "
              f"{np.mean([r['val_loss'] for r in runs]):.3f} ({loss}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
