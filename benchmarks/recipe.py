"""Which training recipe? Each variant judged on validation subjects only (the test set is never read).

For a fixed architecture (default: the 64/64/64 CNN of benchmarks/search.py) on seglearn's
watch data (benchmarks/watch_data.py), every recipe variant is trained once per validation
fold (one pool subject held out at a time) and seed, by micronas's own training loop
(`api.train`, fixed cosine schedule, last-epoch rule — the search's final training), and
scored by its validation accuracy. Several held-out subjects give the signal one subject cannot.
Prints mean ± std over folds x seeds per variant; results (and finished runs, so a rerun resumes)
go to WORK/results.json.

    .venv/bin/python benchmarks/recipe.py [--folds 3,4,6] [--seeds 0] [--epochs 40]
        [--variants base,bs32,ls,aug,ema,all] [--arch ARCH.json] [--work DIR]

`--arch benchmarks/archs/watch_search_seed0.json` is a network the search found on the watch
data (seed 0, after issue 14), used to check distillation on a searched network.

Two kinds of variant are experiments of this benchmark only, not options of the product: `wmdrop`
(dropout before the classifier, patched into the network for that run) and `wmscale`/`wmgroup`
(each window also divided by its own spread, per channel or per 3-axis sensor, written to a
second .npz: the board would need the same division). `--ensemble` also prints, per variant
with two or more seeds, the accuracy of each fold's seeds averaged (softmax) as one predictor:
what the seed-to-seed spread would give if the budget paid for several networks.

Skips cleanly (exit 0) when seglearn is not installed: pip install --no-deps seglearn
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
from search import cnn_arch, save  # noqa: E402

OLD = {"batch_size": 16, "lr": 3e-3, "augment": (), "label_smoothing": 0.0, "ema_decay": 0.0}  # before issue 13
VARIANTS = {
    "base": dict(OLD),
    "bs32": {**OLD, "batch_size": 32, "lr": 1e-3},
    "ls": {**OLD, "label_smoothing": 0.1},
    "aug": {**OLD, "augment": ("jitter", "scale", "shift")},
    "rot": {**OLD, "augment": ("jitter", "scale", "rotate", "shift")},
    "mixup": {**OLD, "augment": ("mixup",)},
    "ema": {**OLD, "ema_decay": 0.998},
    "all": {"batch_size": 32, "lr": 1e-3, "label_smoothing": 0.1, "augment": ("jitter", "scale", "shift"),
            "ema_decay": 0.998},
    "default": {},  # TrainConfig's defaults: bs32, ls, jitter/scale/shift
    "allrot": {"batch_size": 32, "lr": 1e-3, "label_smoothing": 0.1,
               "augment": ("jitter", "scale", "rotate", "shift"), "ema_decay": 0.998},
    "distill2": {"distill": 0.5, "teacher_width": 2.0},
    "distill": {"distill": 0.5},  # the default + a x1.5-wide teacher (the search's final training)
    "wm": {"remove_window_mean": True},  # the default with each window's mean removed
    "wmrot": {"remove_window_mean": True, "augment": ("jitter", "scale", "rotate", "shift")},
    "wmmix": {"remove_window_mean": True, "augment": ("jitter", "scale", "shift", "mixup")},
    "wmwarp": {"remove_window_mean": True, "augment": ("jitter", "scale", "shift", "warp")},
    "wmwd": {"remove_window_mean": True, "weight_decay": 1e-3},  # 10x the default L2
    # experiments of this benchmark only (see the module text): not TrainConfig fields
    "wmdrop": {"remove_window_mean": True, "dropout": 0.3},
    "wmscale": {"remove_window_mean": True, "window_scale": "channel"},
    "wmgroup": {"remove_window_mean": True, "window_scale": "group"},
}
EXPERIMENTS = ("dropout", "window_scale")


def scaled_windows(src: Path, how: str) -> Path:
    """A copy of the .npz beside it with each window's mean removed and then divided by its own
    spread: per channel ("channel") or per 3-channel sensor group ("group": RMS over the group)."""
    out = src.with_name(f"{src.stem}-scale-{how}.npz")
    if out.exists():
        return out
    z = dict(np.load(src))

    def scale(X: np.ndarray) -> np.ndarray:
        X = X - X.mean(axis=2, keepdims=True)
        if how == "channel":
            return (X / (X.std(axis=2, keepdims=True) + 1e-3)).astype(np.float32)
        groups = [slice(g, g + 3) for g in range(0, X.shape[1] - 2, 3)]
        for g in groups:
            X[:, g] = X[:, g] / (np.sqrt((X[:, g] ** 2).mean(axis=(1, 2), keepdims=True)) + 1e-3)
        return X.astype(np.float32)

    z["X"], z["X_test"] = scale(z["X"]), scale(z["X_test"])
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, **z)
    tmp.replace(out)
    return out


class classifier_dropout:
    """Within the block, every network built applies dropout p to its pooled features in training."""

    def __init__(self, p: float):
        self.p = p

    def __enter__(self):
        import torch.nn.functional as F

        from search_space import network
        from search_space.layers import global_average

        self.saved, p = network.Network.forward, self.p
        if p:
            network.Network.forward = lambda net, x: net.classifier(
                F.dropout(global_average(net.blocks(x)), p, net.training))
        return self

    def __exit__(self, *exc):
        from search_space import network

        network.Network.forward = self.saved
        return False


def ensemble_accuracy(runs: list[Path]) -> float:
    """Validation accuracy of the runs' fp32 networks averaged (softmax) as one predictor; the
    runs share data and split (one fold, several seeds)."""
    import torch

    from micronas.rundir import RunDir
    from micronas.stages.common import folded_model, load_run
    from micronas.stages.export import arrays_for

    total, y = 0.0, None
    for path in runs:
        run = RunDir(path)
        _, arch, ds, split, std = load_run(run)
        X, y = arrays_for(ds, split)["val"]
        with torch.no_grad():
            total = total + torch.softmax(folded_model(run, arch)(torch.from_numpy(std.apply(X))), 1).numpy()
    return float(np.mean(total.argmax(1) == y))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folds", default="3,4,6", help="pool subjects held out for validation, one at a time")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--variants", default="base,bs32,ls,aug,ema,all")
    ap.add_argument("--arch", default=None, help="arch.json (default: the 64/64/64 CNN)")
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench-recipe"))
    ap.add_argument("--ensemble", action="store_true", help="also each fold's seeds averaged as one predictor")
    args = ap.parse_args()
    if watch_data.watch_file() is None:
        print("skipped: seglearn is not installed (pip install --no-deps seglearn)")
        return 0
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        print(f"error: unknown variant(s) {', '.join(unknown)}; choose among {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    folds = [f.strip() for f in args.folds.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    os.chdir(ROOT)

    from micronas import api
    from micronas.train import TrainConfig

    work = Path(args.work)
    data = watch_data.in_work(work)
    with np.load(data) as z:
        shape = (z["X"].shape[1], z["X"].shape[2], len(set(z["y"].tolist())))
    arch_path = Path(args.arch) if args.arch else work / "cnn64.json"
    if not args.arch:
        arch_path.write_text(json.dumps(cnn_arch((64, 64, 64), shape)))
    tag = arch_path.stem
    results_path = work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for v in variants:
        for fold in folds:
            for seed in seeds:
                key = f"{tag}/{v}/val{fold}/seed{seed}"
                if key in results:
                    continue
                settings = {k: x for k, x in VARIANTS[v].items() if k not in EXPERIMENTS}
                cfg = replace(TrainConfig(epochs=args.epochs, seed=seed, val_subjects=(fold,), checkpoint_rule="last"),
                              **settings)
                how = VARIANTS[v].get("window_scale")
                t0 = time.monotonic()
                with classifier_dropout(VARIANTS[v].get("dropout", 0.0)):
                    r = api.train(scaled_windows(data, how) if how else data, work / tag / v / f"val{fold}-seed{seed}",
                                  arch=arch_path, cfg=cfg, threads=1)
                results[key] = {"val_acc": r.best["val_acc"], "val_loss": r.best["val_loss"],
                                "seconds": round(time.monotonic() - t0, 1)}
                save(results_path, results)
                print(f"[{time.strftime('%H:%M:%S')}] {key}: val acc {r.best['val_acc']:.3f} "
                      f"({results[key]['seconds']:.0f} s)", flush=True)
    print(f"\n{tag}, {args.epochs} epochs, validation accuracy over folds {args.folds} x seeds {args.seeds} "
          "(test never read)\n\n| variant | settings | val acc mean ± std | per fold | s per run |\n|---|---|---|---|---|")
    for v in variants:
        rs = {f: [results[f"{tag}/{v}/val{f}/seed{s}"] for s in seeds] for f in folds}
        acc = [r["val_acc"] for f in folds for r in rs[f]]
        per = ", ".join(f"{f}: {100 * np.mean([r['val_acc'] for r in rs[f]]):.1f}" for f in folds)
        secs = np.mean([r["seconds"] for f in folds for r in rs[f]])
        print(f"| {v} | {VARIANTS[v]} | {100 * np.mean(acc):.1f} ± {100 * np.std(acc):.1f} | {per} | {secs:.0f} |")
    if args.ensemble and len(seeds) > 1:
        print(f"\nEach fold's {len(seeds)} seeds averaged (softmax) as one predictor, validation accuracy\n\n"
              "| variant | one network, mean | the seeds averaged, mean | per fold |\n|---|---|---|---|")
        for v in variants:
            ens = {f: ensemble_accuracy([work / tag / v / f"val{f}-seed{s}" for s in seeds]) for f in folds}
            single = np.mean([results[f"{tag}/{v}/val{f}/seed{s}"]["val_acc"] for f in folds for s in seeds])
            print(f"| {v} | {100 * single:.1f} | {100 * np.mean(list(ens.values())):.1f} | "
                  + ", ".join(f"{f}: {100 * a:.1f}" for f, a in ens.items()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
