"""What one more training subject buys: the case for refitting on training + validation data.

A common last step of a model search is to train the chosen network once more on the training
and validation windows together (a "refit") and ship that. On data split by subject the
validation subject is one more person to learn from. This measures what that is worth before the
product spends a second final training on it, on validation data only (the test subjects are
never read): for a fixed network on seglearn's watch data (benchmarks/watch_data.py), each fold
holds one pool subject out for validation and trains with the micronas recipe (`api.train`,
the default TrainConfig, 40 epochs, last epoch, not distilled) once on every other pool subject
and once without one of them. The difference is what the extra subject is worth on the held-out
one.

    .venv/bin/python benchmarks/subjects.py [--arch benchmarks/archs/watch_search_seed0.json]
        [--seeds 0,1] [--work DIR]

Resumable (finished runs are kept in WORK/results.json). Skips cleanly (exit 0) when seglearn
is not installed: pip install --no-deps seglearn
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import watch_data  # noqa: E402
from search import save  # noqa: E402

# validation subject -> the pool subjects left out one at a time (two per fold, none twice in a fold)
PLAN = {"3": ("1", "5"), "4": ("2", "7"), "6": ("1", "7")}


def without(full: Path, subject: str, out: Path) -> Path:
    """A copy of the watch .npz whose pool lacks `subject` (the test part is unchanged)."""
    if not out.exists():
        with np.load(full) as z:
            arrays = {k: z[k] for k in z.files}
        keep = arrays["subjects"] != subject
        for k in ("X", "y", "subjects"):
            arrays[k] = arrays[k][keep]
        tmp = out.with_name(out.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default=str(ROOT / "benchmarks" / "archs" / "watch_search_seed0.json"))
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench-subjects"))
    args = ap.parse_args()
    if watch_data.watch_file() is None:
        print("skipped: seglearn is not installed (pip install --no-deps seglearn)")
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    os.chdir(ROOT)

    from micronas import api
    from micronas.train import TrainConfig

    work = Path(args.work)
    full = watch_data.in_work(work)
    arch = Path(args.arch)
    results_path = work / f"results-{arch.stem}.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for fold, drops in PLAN.items():
        for drop in (None, *drops):
            for seed in seeds:
                key = f"val{fold}/without{drop or '-'}/seed{seed}"
                if key in results:
                    continue
                data = full if drop is None else without(full, drop, work / f"watch-without{drop}.npz")
                cfg = TrainConfig(epochs=args.epochs, seed=seed, val_subjects=(fold,), checkpoint_rule="last")
                t0 = time.monotonic()
                r = api.train(data, work / arch.stem / key.replace("/", "-"), arch=arch, cfg=cfg, threads=2)
                results[key] = {"val_acc": r.best["val_acc"], "seconds": round(time.monotonic() - t0, 1)}
                save(results_path, results)
                print(f"[{time.strftime('%H:%M:%S')}] {key}: val acc {r.best['val_acc']:.3f}", flush=True)

    print(f"\n{arch.stem}, {args.epochs} epochs, validation accuracy (%) on the held-out subject, seeds {args.seeds}"
          "\n\n| validation subject | every other pool subject | without | gain of the extra subject (points) |"
          "\n|---|---|---|---|")
    gains = []
    for fold, drops in PLAN.items():
        def acc(drop):
            return [100 * results[f"val{fold}/without{drop}/seed{s}"]["val_acc"] for s in seeds]
        full_acc = acc("-")
        for drop in drops:
            g = [f - d for f, d in zip(full_acc, acc(drop))]
            gains += g
            print(f"| {fold} | {', '.join(f'{a:.1f}' for a in full_acc)} | subject {drop}: "
                  f"{', '.join(f'{a:.1f}' for a in acc(drop))} | {', '.join(f'{x:+.1f}' for x in g)} |")
    se = np.std(gains, ddof=1) / np.sqrt(len(gains))
    print(f"\none more training subject: {np.mean(gains):+.1f} points on the held-out subject "
          f"(mean of {len(gains)} pairs, standard error {se:.1f}, std {np.std(gains, ddof=1):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
