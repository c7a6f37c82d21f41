"""Keep or remove each window's per-channel mean? Judged on validation data only, three datasets.

An accelerometer's mean over a window is mostly gravity: how the sensor sits on this person's
wrist, which a network then learns per person. Removing it (`Standardizer(remove_window_mean)`,
`micronas train --window-mean remove`) is a preprocessing choice the board repeats
(`micronas_model_quantize_window`). Per dataset, a fixed network is trained with the micronas
recipe (`api.train`: default TrainConfig, `--epochs`, last epoch, not distilled) both ways on the
same split and seed, and scored on validation; the test split is never read. Then the decision
`micronas search` takes by default (`choose_window_mean`: micronas train's default network
trained both ways for about 1,500 steps) on each dataset's first split.

- watch (seglearn, benchmarks/watch_data.py): the searched network archs/watch_search_seed0.json,
  one pool subject held out at a time (3, 4, 6);
- JapaneseVowels (aeon): archs/vowels_search_seed0.json, a seeded 20 % validation split per seed;
- BasicMotions (embedded): micronas train's default network, a seeded 20 % validation split.

    .venv/bin/python benchmarks/window_mean.py [--datasets watch,vowels,basicmotions]
        [--seeds 0,1] [--epochs 40] [--work DIR]

Resumable (WORK/results.json). A dataset whose package is missing is skipped
(pip install --no-deps seglearn aeon).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import watch_data  # noqa: E402
from search import save, vowels_file  # noqa: E402

ARCHS = ROOT / "benchmarks" / "archs"


def datasets(work: Path) -> dict[str, dict]:
    """name -> {data, arch (None: the default network), folds: validation subjects per run ((): seeded)}."""
    out = {}
    if watch_data.watch_file() is not None:
        out["watch"] = {"data": str(watch_data.in_work(work)), "arch": ARCHS / "watch_search_seed0.json",
                        "folds": [("3",), ("4",), ("6",)]}
    vf = vowels_file()
    if vf is not None:
        out["vowels"] = {"data": str(vf), "arch": ARCHS / "vowels_search_seed0.json", "folds": [()]}
    out["basicmotions"] = {"data": "basicmotions", "arch": None, "folds": [()]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="watch,vowels,basicmotions")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench-window-mean"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    os.chdir(ROOT)

    from micronas import api
    from micronas.data import arrays_for, load_dataset, make_split
    from micronas.rundir import RunDir
    from micronas.stages.search import choose_window_mean
    from micronas.train import TrainConfig

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results_path = work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    known = datasets(work)
    names = [n.strip() for n in args.datasets.split(",") if n.strip() in known]
    for name in names:
        d = known[name]
        for fold in d["folds"]:
            for seed in seeds:
                for remove in (False, True):
                    key = f"{name}/val{'-'.join(fold) or 'seeded'}/seed{seed}/{'removed' if remove else 'kept'}"
                    if key in results:
                        continue
                    cfg = replace(TrainConfig(epochs=args.epochs, seed=seed, val_subjects=fold, checkpoint_rule="last"),
                                  remove_window_mean=remove)
                    t0 = time.monotonic()
                    r = api.train(d["data"], work / name / key.split("/", 1)[1].replace("/", "-"), arch=d["arch"],
                                  cfg=cfg, threads=2)
                    results[key] = {"val_acc": r.best["val_acc"], "seconds": round(time.monotonic() - t0, 1)}
                    save(results_path, results)
                    print(f"[{time.strftime('%H:%M:%S')}] {key}: val acc {r.best['val_acc']:.3f}", flush=True)
        decision_key = f"{name}/decision/seed{seeds[0]}"
        if decision_key not in results:
            ds = load_dataset(d["data"])
            fold = d["folds"][0]
            split = make_split(ds, seed=seeds[0], val_subjects=fold)
            t0 = time.monotonic()
            dec = choose_window_mean(RunDir.create(work / name / "decision"), ds, split, arrays_for(ds, split),
                                     "auto", seeds[0], 32, lambda _: None)
            results[decision_key] = {**dec, "seconds": round(time.monotonic() - t0, 1),
                                     "validation": "-".join(fold) or "seeded"}
            save(results_path, results)

    print(f"\nvalidation accuracy (%), {args.epochs} epochs, seeds {args.seeds}; test never read\n\n"
          "| dataset | validation | kept | removed | removed - kept (points) |\n|---|---|---|---|---|")
    for name in names:
        gains = []
        for fold in known[name]["folds"]:
            v = "-".join(fold) or "seeded"
            kept = [100 * results[f"{name}/val{v}/seed{s}/kept"]["val_acc"] for s in seeds]
            rem = [100 * results[f"{name}/val{v}/seed{s}/removed"]["val_acc"] for s in seeds]
            gains += [r - k for r, k in zip(rem, kept)]
            print(f"| {name} | {'subject ' + v if v != 'seeded' else 'seeded 20 %'} | "
                  f"{', '.join(f'{a:.1f}' for a in kept)} | {', '.join(f'{a:.1f}' for a in rem)} | "
                  f"{', '.join(f'{r - k:+.1f}' for r, k in zip(rem, kept))} |")
        print(f"| **{name}** | mean of {len(gains)} | | | **{np.mean(gains):+.1f}** |")
    print("\n`micronas search`'s decision (--window-mean auto) on the first split:\n\n"
          "| dataset | validation | proxy epochs | kept | removed | decision | seconds |\n|---|---|---|---|---|---|---|")
    for name in names:
        r = results[f"{name}/decision/seed{seeds[0]}"]
        print(f"| {name} | {r['validation']} | {r['proxy_epochs']} | {100 * r['kept']['val_acc']:.1f} | "
              f"{100 * r['removed']['val_acc']:.1f} | {'remove' if r['remove'] else 'keep'} | {r['seconds']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
