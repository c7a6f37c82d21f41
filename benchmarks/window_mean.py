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
        [--seeds 0,1] [--epochs 40] [--decision-seeds 0,1,2] [--decisions-only] [--work DIR]

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
    ap.add_argument("--decision-seeds", default=None,
                    help="seeds of the proxy decision (default: the first of --seeds)")
    ap.add_argument("--decisions-only", action="store_true",
                    help="only the proxy decisions, not the 40-epoch trainings")
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench-window-mean"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    decision_seeds = [int(s) for s in (args.decision_seeds or args.seeds.split(",")[0]).split(",")]
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
        for fold in d["folds"] if not args.decisions_only else []:
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
        ds = load_dataset(d["data"])
        fold = d["folds"][0]
        for seed in decision_seeds:
            decision_key = f"{name}/decision/seed{seed}"
            if decision_key in results:
                continue
            split = make_split(ds, seed=seed, val_subjects=fold)
            t0 = time.monotonic()
            dec = choose_window_mean(RunDir.create(work / name / f"decision-seed{seed}"), ds, split,
                                     arrays_for(ds, split), "auto", seed, 32, lambda _: None)
            results[decision_key] = {**dec, "seconds": round(time.monotonic() - t0, 1),
                                     "validation": "-".join(fold) or "seeded"}
            save(results_path, results)

    if not args.decisions_only:
        print_training(names, known, results, seeds, args.epochs)
    print_decisions(names, results, decision_seeds)
    return 0


def print_training(names: list[str], known: dict[str, dict], results: dict, seeds: list[int], epochs: int) -> None:
    """The kept / removed table of the fixed networks' trainings."""
    print(f"\nvalidation accuracy (%), {epochs} epochs, seeds {', '.join(map(str, seeds))}; test never read\n\n"
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


def print_decisions(names: list[str], results: dict, seeds: list[int]) -> None:
    """`choose_window_mean`'s decisions, with both validation scores of its proxy runs."""
    print("\n`micronas search`'s decision (--window-mean auto) on each dataset's first split, per seed:\n\n"
          "| dataset | validation | seed | proxy epochs | accuracy kept / removed | loss kept / removed | decision "
          "| seconds |\n|---|---|---|---|---|---|---|---|")
    for name in names:
        for seed in seeds:
            r = results[f"{name}/decision/seed{seed}"]
            print(f"| {name} | {r['validation']} | {seed} | {r['proxy_epochs']} | {100 * r['kept']['val_acc']:.1f} / "
                  f"{100 * r['removed']['val_acc']:.1f} | {r['kept']['val_loss']:.3f} / {r['removed']['val_loss']:.3f} "
                  f"| {'remove' if r['remove'] else 'keep'} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
