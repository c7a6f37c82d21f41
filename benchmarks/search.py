"""Does the search earn its cost? Search vs random search at equal compute vs a hand-designed CNN.

Per dataset and seed, side by side in one run, every network trained by the same code and
recipe (`api.train_export_profile`: the default TrainConfig, 40 epochs or `--epochs`, last-epoch
rule, distilled from a wider teacher as the search's final training is, QAT when int8 loses on
validation, each window's mean kept or removed as the search decided for that seed's split),
exported to int8 and profiled on the emulated core:

(a) `micronas search` (DNAS, derivation, final training), its wall time;
(b) random search at equal compute: architectures drawn uniformly from the default space,
    kept when their predicted latency lies within 80-99 % of the budget (and they fit RAM and
    flash), each trained stand-alone; k of them, k = 1 + round((DNAS + derivation seconds) /
    seconds of one training), so (b) costs what (a) costs; the best by validation accuracy is
    exported;
(c) a hand-designed 3-layer CNN (k5; stride 1, 2, 2) of fixed widths (64/64/64 watch, 32/32/32
    JapaneseVowels: well under the budget), and (d) the same CNN as wide as the budget allows
    (one width for the three layers, the widest multiple of 8 whose predicted latency is at most
    99 % of the budget and that fits RAM and flash).

With `--pool N` (default 20, seed 0 only) more random architectures are trained than k to
measure how well the supernet ranks: Kendall tau between each one's validation accuracy with
the supernet's inherited weights (batch norm recalibrated) and its stand-alone validation and
(fp32) test accuracy. Decisions use validation data only; the test split is read for the
reported figures.

Datasets: seglearn's watch data (benchmarks/watch_data.py, 6-axis IMU, subject 3 validation,
subjects 8-10 test; `pip install --no-deps seglearn`) at the default 50 ms / 256 KiB, and aeon's
JapaneseVowels (equal-length version shipped in the aeon package, BSD-3; 12 LPC channels x 25,
9 speakers, 270 train / 370 test; `pip install --no-deps aeon`) at 5 ms / 256 KiB (random
networks of the space predict 0.9-12 ms for this shape, median 3.5 ms). Every figure: QEMU
instruction counts on the emulated core (not cycles), latency in ms at the board clock.
Resumable: finished runs are kept in WORK.

    .venv/bin/python benchmarks/search.py [--datasets watch,vowels] [--seeds 0,1,2] [--pool 20]
        [--work DIR] [--arms search,random,cnn,cnnb,tau] [--search-only] [--epochs 40] [--search-epochs N]
        [--scale auto] [--space default|wide]

`--space wide` (an experiment, not a product option): the default space with wider early
positions (stem 8-48 and the first two cells 16-48 channels before scaling, instead of 8-24
and 16-32), so the search and random search can reach the shallow, wide shape of the CNN at
the budget (a 72-wide stem, a 72-wide stride-2 cell, skips). It replaces the default space
in this process only; table entries it needs are measured on demand into ./micronas-tables/.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import watch_data  # noqa: E402

RAM = "256k"
EPOCHS = 40


def vowels_file() -> Path | None:
    spec = importlib.util.find_spec("aeon")
    if spec is None or spec.origin is None:
        return None
    p = Path(spec.origin).parent / "datasets" / "data" / "JapaneseVowels" / "JapaneseVowels_eq_TRAIN.ts"
    return p if p.exists() else None


def datasets(work: Path) -> dict[str, dict]:
    """name -> {data, val (subjects), latency, cnn widths}; datasets whose package is missing left out."""
    out = {}
    if watch_data.watch_file() is not None:
        out["watch"] = {"data": str(watch_data.in_work(work)), "val": (watch_data.VAL_SUBJECT,), "latency": "50ms", "cnn": (64, 64, 64)}
    vf = vowels_file()
    if vf is not None:
        out["vowels"] = {"data": str(vf), "val": (), "latency": "5ms", "cnn": (32, 32, 32)}
    return out


def cnn_arch(widths: tuple[int, ...], shape: tuple[int, int, int]) -> dict:
    layers = [{"op": "conv", "out": w, "kernel": 5, "stride": s} for w, s in zip(widths, (1, 2, 2))]
    return {"format": "micronas.arch/1", "input_channels": shape[0], "input_length": shape[1],
            "num_classes": shape[2], "stem": layers[0], "cells": layers[1:]}


def cnn_at_budget(shape, table, budgets) -> tuple[int, int, int]:
    """The widest uniform CNN (multiples of 8) within 99 % of the latency budget and the RAM and
    flash budgets, by the latency table (entries it lacks measured on the emulated core)."""
    from latency_tables import predict as predictor
    from micronas import tables
    from search_space.arch import from_json as arch_from_json

    best = 0
    for w in range(8, 513, 8):
        p = predictor.predict(arch_from_json(cnn_arch((w, w, w), shape)), table,
                              measure_missing=lambda keys: tables.measure_into(table, keys))
        if p.latency_ms > 0.99 * budgets.latency_s * 1e3 or p.arena_bytes > budgets.ram_bytes or \
                (budgets.flash_bytes is not None and p.flash_bytes > budgets.flash_bytes):
            break  # wider only costs more
        best = w
    if not best:
        raise SystemExit("even an 8/8/8 CNN misses the budget")
    return best, best, best


def save(path: Path, results: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(path)


def figures(done) -> dict:
    m, p = done.metrics, done.profile
    return {"accuracy_int8": m.accuracy_int8, "accuracy_fp32": m.accuracy_fp32,
            "int8_loss": m.accuracy_fp32 - m.accuracy_int8, "qat": (m.qat or {}).get("kept", "ptq"),
            "predicted_latency_ms": m.prediction.latency_ms, "measured_latency_ms": p.measured_latency_ms,
            "arena_bytes": p.arena_bytes_measured, "elf_flash_bytes": p.flash_bytes, "fits": not p.over_budget}


def searched_space(search_json: dict):
    """The space the search ran over (search.json's `space`; older files: the default space)."""
    from search_space.space import DEFAULT_SPACE, resolve_space

    name = (search_json.get("space") or {}).get("name", DEFAULT_SPACE.name)
    return resolve_space(name)


def random_pool(n: int, seed: int, shape, table, budgets, space) -> list[dict]:
    """n architectures of `space` (the search's) at 80-99 % of the latency budget that fit RAM and
    flash (entries of a scaled space missing from the table are measured on the emulated core)."""
    from latency_tables import predict as predictor
    from micronas import tables

    rng, out, tries = random.Random(1000 + seed), [], 0
    lo, hi = 0.80 * budgets.latency_s * 1e3, 0.99 * budgets.latency_s * 1e3
    while len(out) < n and tries < 200_000:
        tries += 1
        a = space.sample(rng, *shape)
        p = predictor.predict(a, table, measure_missing=lambda keys: tables.measure_into(table, keys))
        if lo <= p.latency_ms <= hi and p.arena_bytes <= budgets.ram_bytes and \
                (budgets.flash_bytes is None or p.flash_bytes <= budgets.flash_bytes):
            out.append(a.to_json())
    if len(out) < n:
        raise SystemExit(f"only {len(out)} random architectures within 80-99 % of the budget in {tries} draws")
    return out


def wide_space():
    """The `--space wide` variant of the default space (same name, so scaled names resolve to it)."""
    from dataclasses import replace

    from search_space.space import DEFAULT_SPACE

    wider = (16, 24, 32, 48)
    return replace(DEFAULT_SPACE, stem=replace(DEFAULT_SPACE.stem, widths=(8, 16, 24, 32, 48)),
                   cells=tuple(replace(c, widths=wider) if i < 2 else c for i, c in enumerate(DEFAULT_SPACE.cells)))


def use_space(name: str) -> None:
    """Make `name` the default space of this process (every stage imports it at call time)."""
    import search_space.space as space_mod

    if name == "wide":
        space_mod.DEFAULT_SPACE = space_mod.SPACES["default"] = wide_space()


def splits(data: str, seed: int, val: tuple[str, ...], remove_window_mean: bool = False):
    """The standardised train/val/test arrays exactly as search and train make them."""
    from micronas.data import Standardizer, arrays_for, load_dataset, make_split

    ds = load_dataset(data)
    split = make_split(ds, seed=seed, val_subjects=val)
    std = Standardizer.fit(ds.X[split.train], remove_window_mean=remove_window_mean)
    return {k: (std.apply(X), y.astype(np.int64)) for k, (X, y) in arrays_for(ds, split).items()}


def train_random(data: str, folder: Path, archs: list[dict], tcfg, test: tuple, i: int) -> dict:
    """Train random architecture `i` stand-alone (one thread); its validation and fp32 test
    accuracy. A pure task of `map_tasks`: what it returns depends on its inputs only."""
    import torch

    from micronas import api
    from micronas.rundir import RunDir
    from micronas.stages.common import folded_model
    from search_space.arch import from_json as arch_from_json

    out = folder / f"arch{i:02d}"
    out.mkdir(parents=True, exist_ok=True)
    (folder / f"arch{i:02d}.json").write_text(json.dumps(archs[i]))
    t0 = time.monotonic()
    s = api.train(data, out, arch=folder / f"arch{i:02d}.json", cfg=tcfg, threads=1)
    model = folded_model(RunDir(out), arch_from_json(archs[i]))
    with torch.no_grad():
        acc = float((model(torch.from_numpy(test[0])).argmax(1).numpy() == test[1]).mean())
    return {"val_acc": s.best["val_acc"], "test_acc_fp32": acc, "seconds": round(time.monotonic() - t0, 1),
            "run": str(out)}


def random_and_ranking(name: str, spec: dict, args, work: Path, results: dict, seed: int, data: dict, tcfg,
                       search_s: float, table, shape: tuple[int, int, int], board, budgets, log) -> None:
    """(b) random search at equal compute (k networks, the best by validation exported) and, for the
    first seed with --pool, the supernet's ranking over the pool."""
    from micronas import api
    from micronas import search as dnas
    from micronas.parallel import map_tasks
    from micronas.report import arch_summary
    from micronas.rundir import RunDir
    from search_space.arch import from_json as arch_from_json
    from search_space.space import position_choices
    from search_space.supernet import SuperNet

    base = work / name
    pool_n = args.pool if seed == args.seeds[0] and "tau" in args.arms else 0
    pkey = f"{name}/pool/seed{seed}"
    space = searched_space(json.loads((base / f"search-seed{seed}" / "search.json").read_text()))
    if pkey not in results or len(results[pkey]["archs"]) < max(pool_n, 12):
        # the draws are seeded: a larger pool starts with the same architectures, whose runs stand
        runs_kept = results[pkey]["runs"] if pkey in results else {}
        results[pkey] = {"archs": random_pool(max(pool_n, 12), seed, shape, table, budgets, space),
                         "runs": runs_kept, "space": space.name}
    pool = results[pkey]

    def record(i: int, r: dict) -> dict:
        pool["runs"][str(i)] = r
        save(work / "results.json", results)
        log(f"random arch {i} ({arch_summary(pool['archs'][i])}): val {r['val_acc']:.3f}, "
            f"test fp32 {r['test_acc_fp32']:.3f}")
        return r

    task = functools.partial(train_random, spec["data"], base / f"random-seed{seed}", pool["archs"], tcfg,
                             data["test"])
    first = pool["runs"].get("0") or record(0, task(0))  # alone: its time sets k (equal compute)
    k = 1 + round(search_s / max(first["seconds"], 1e-3))
    todo = [i for i in range(1, max(k, pool_n)) if str(i) not in pool["runs"]]
    # independent trainings: Ray tasks with --ray (one thread each), else one after another
    for i, r in zip(todo, map_tasks(task, todo)):
        record(i, r)
    runs = [pool["runs"][str(i)] for i in range(max(k, pool_n))]
    rkey = f"{name}/random/seed{seed}"
    if rkey not in results or results[rkey]["k"] != k:
        best = max(range(k), key=lambda i: (runs[i]["val_acc"], -i))
        log(f"random search (k={k}): arch {best}, exported and profiled")
        t0 = time.monotonic()
        arch_path = base / f"random-seed{seed}" / f"arch{best:02d}.json"
        done = api.train_export_profile(spec["data"], runs[best]["run"], arch_path, tcfg, board.name, budgets,
                                        threads=1)
        results[rkey] = {**figures(done), "arch": arch_summary(pool["archs"][best]), "k": k, "chosen": best,
                         "wall_seconds": round(sum(r["seconds"] for r in runs[:k]) + time.monotonic() - t0, 1)}
        save(work / "results.json", results)

    # supernet ranking (the pool of the first seed)
    tkey = f"{name}/tau/seed{seed}"
    if pool_n and tkey not in results:
        choices = [position_choices(space, i) for i in range(len(space.positions))]
        net = dnas.load_supernet(RunDir(base / f"search-seed{seed}"), lambda: SuperNet(space, choices, *shape))
        inh = [dnas.inherited_accuracy(net, arch_from_json(a), data["train"][0], *data["val"], seed=seed)
               for a in pool["archs"][:pool_n]]
        raw = [dnas.inherited_accuracy(net, arch_from_json(a), data["train"][0], *data["val"], recalibrate=0)
               for a in pool["archs"][:pool_n]]
        sval = [runs[i]["val_acc"] for i in range(pool_n)]
        stest = [runs[i]["test_acc_fp32"] for i in range(pool_n)]
        results[tkey] = {"n": pool_n, "inherited_val": inh, "inherited_val_no_recal": raw,
                         "tau_inherited_vs_standalone_val": dnas.kendall_tau(inh, sval),
                         "tau_inherited_vs_standalone_test": dnas.kendall_tau(inh, stest),
                         "tau_no_recal_vs_standalone_test": dnas.kendall_tau(raw, stest),
                         "tau_standalone_val_vs_test": dnas.kendall_tau(sval, stest)}
        save(work / "results.json", results)


def run_dataset(name: str, spec: dict, args, work: Path, results: dict) -> None:
    from latency_tables import predict as predictor
    from micronas import api
    from micronas import search as dnas
    from micronas.report import arch_summary
    from micronas.stages.search import final_distill
    from micronas.train import TrainConfig, epochs_for
    from micronas.units import Budgets
    from targets import boards

    board = boards.default_board()
    budgets = api.board_budgets(Budgets.parse(latency=spec["latency"], ram=RAM), board)
    ds = api.load_dataset(spec["data"])
    shape = (ds.n_channels, ds.length, ds.n_classes)
    base = work / name
    base.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {msg}", flush=True)

    for seed in args.seeds:
        # (a) the search
        key = f"{name}/search/seed{seed}"
        if key not in results:
            out = base / f"search-seed{seed}"
            log(f"search seed {seed} -> {out}")
            t0 = time.monotonic()
            cfg = dnas.SearchConfig(seed=seed, val_subjects=spec["val"], epochs=args.search_epochs, scale=args.scale)
            r = api.search(spec["data"], out, budgets, target=board.name, cfg=cfg, final_epochs=args.epochs,
                           resume=(out / "search_checkpoint.pt").exists(), threads=1)
            rec = json.loads((out / "search.json").read_text())
            results[key] = {**figures(r), "arch": arch_summary(r.arch), "wall_seconds": round(time.monotonic() - t0, 1),
                            "search_seconds": rec.get("search_seconds"), "derivation": rec.get("candidates"),
                            "window_mean_removed": bool((rec.get("window_mean") or {}).get("remove"))}
            save(work / "results.json", results)
            log(f"search: {results[key]['arch']}: int8 {r.metrics.accuracy_int8:.3f}, {results[key]['wall_seconds']:.0f} s")
        if set(args.arms) == {"search"}:  # the search alone (e.g. comparing two versions of the space)
            continue
        rec = json.loads((base / f"search-seed{seed}" / "search.json").read_text())
        if "derivation_seconds" not in results[key]:
            results[key]["derivation_seconds"] = rec.get("derivation_seconds") or 0.0
        # the search's final-training recipe for every arm: its distillation rule, and the window
        # mean as the search decided it for this data (a preprocessing choice, not an architecture)
        remove = bool((rec.get("window_mean") or {}).get("remove"))
        data = splits(spec["data"], seed, spec["val"], remove)
        epochs = args.epochs or epochs_for(len(data["train"][1]), TrainConfig.batch_size)  # auto: the CLI's rule
        tcfg = TrainConfig(epochs=epochs, seed=seed, val_subjects=spec["val"], checkpoint_rule="last",
                           distill=final_distill(len(data["train"][1]), epochs)[0], remove_window_mean=remove)
        # the search's compute before its final training (which random search spends as one more network)
        search_s = (results[key]["search_seconds"] or 0.0) + results[key]["derivation_seconds"]

        table = predictor.find_table(board.name, *shape)
        # (b) random architectures, trained stand-alone with the same recipe
        if "random" in args.arms or "tau" in args.arms:
            random_and_ranking(name, spec, args, work, results, seed, data, tcfg, search_s, table, shape, board,
                               budgets, log)

        # (c) the hand-designed CNN, fixed widths; (d) the same as wide as the budget allows
        for arm, widths in (("cnn", spec["cnn"]), ("cnnb", None)):
            ckey = f"{name}/{arm}/seed{seed}"
            if arm not in args.arms or ckey in results:
                continue
            widths = widths or cnn_at_budget(shape, table, budgets)
            arch = cnn_arch(widths, shape)
            arch_path = base / f"{arm}_arch.json"
            arch_path.write_text(json.dumps(arch))
            t0 = time.monotonic()
            done = api.train_export_profile(spec["data"], base / f"{arm}-seed{seed}", arch_path, tcfg, board.name,
                                            budgets, threads=1)
            results[ckey] = {**figures(done), "arch": arch_summary(arch), "wall_seconds": round(time.monotonic() - t0, 1)}
            save(work / "results.json", results)
            log(f"{arm}: {results[ckey]['arch']}: int8 {done.metrics.accuracy_int8:.3f}")


def margin_resolution(results: dict, name: str, seeds: list[int], arm: str, margin: float) -> str | None:
    """The search's lead over `arm`, paired by seed (same split), its standard error, and the seeds
    a test of the issue's margin would need (two-sided 5 %, 80 % power, this spread)."""
    keys = [(f"{name}/search/seed{s}", f"{name}/{arm}/seed{s}") for s in seeds]
    d = 100 * np.array([results[a]["accuracy_int8"] - results[b]["accuracy_int8"] for a, b in keys
                        if a in results and b in results])
    if len(d) < 2:
        return None
    sd = float(np.std(d, ddof=1))
    need = math.ceil(((1.96 + 0.84) * sd / margin) ** 2)
    return (f"\nsearch - {arm}: {d.mean():+.1f} points ({', '.join(f'{x:+.1f}' for x in d)}), standard error "
            f"{sd / math.sqrt(len(d)):.1f}; telling a {margin:g}-point lead from none at this spread takes about "
            f"{need} seeds")


def report(results: dict, names: list[str], seeds: list[int]) -> None:
    def pm(vals):
        return f"{100 * np.mean(vals):.1f} ± {100 * np.std(vals):.1f}"

    for name in names:
        print(f"\n### {name} ({results['settings']['final_epochs']} final epochs)\n\n| method "
              "| int8 test accuracy, mean ± std (per seed) | int8 loss (points, per network) "
              "| latency measured (ms) | wall time per run (s) | networks |\n|---|---|---|---|---|---|")
        for kind, label in (("search", "search"), ("random", "random search, equal compute"), ("cnn", "hand-designed CNN"),
                            ("cnnb", "hand-designed CNN at the budget")):
            rs = [results[f"{name}/{kind}/seed{s}"] for s in seeds if f"{name}/{kind}/seed{s}" in results]
            if not rs:
                continue
            acc = [r["accuracy_int8"] for r in rs]
            loss = ", ".join(f"{100 * r['int8_loss']:+.1f}" for r in rs)
            lat = ", ".join(f"{r['measured_latency_ms']:.2f}" for r in rs)
            wall = ", ".join(f"{r['wall_seconds']:.0f}" for r in rs)
            ks = [str(r["k"]) for r in rs if "k" in r]
            extra = f" (k = {', '.join(ks)})" if ks else ""
            nets = "; ".join(r["arch"] for r in rs)
            print(f"| {label}{extra} | {pm(acc)} ({', '.join(f'{100 * a:.1f}' for a in acc)}) | {loss} | {lat} "
                  f"| {wall} | {nets} |")
        removed = [s for s in seeds if results.get(f"{name}/search/seed{s}", {}).get("window_mean_removed")]
        print(f"\nwindow mean (the search's decision on validation, used by every arm of the seed): removed on "
              f"{len(removed)} of {len(seeds)} seeds")
        for arm, margin in (("random", 0.5), ("cnn", 1.0), ("cnnb", 1.0)):
            line = margin_resolution(results, name, seeds, arm, margin)
            if line:
                print(line)
        for s in seeds:
            t = results.get(f"{name}/tau/seed{s}")
            if t:
                print(f"\nsupernet ranking, seed {s}, {t['n']} random networks at 80-99 % of the budget: Kendall tau "
                      f"inherited (BN recalibrated) vs stand-alone validation {t['tau_inherited_vs_standalone_val']:+.2f}, "
                      f"vs stand-alone test {t['tau_inherited_vs_standalone_test']:+.2f}; without recalibration vs test "
                      f"{t['tau_no_recal_vs_standalone_test']:+.2f}; stand-alone validation vs test "
                      f"{t['tau_standalone_val_vs_test']:+.2f}; inherited accuracies "
                      f"{100 * min(t['inherited_val']):.0f}-{100 * max(t['inherited_val']):.0f} %")
    print("\nlatency: QEMU instruction counts on the emulated core (not cycles), in ms at the board's clock")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="watch,vowels")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--pool", type=int, default=20, help="random networks trained for the ranking (first seed)")
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench-search"))
    ap.add_argument("--arms", default="search,random,cnn,cnnb,tau",
                    help="which arms to run (search, random, cnn, cnnb: the CNN at the budget, tau: the ranking "
                         "pool); random, cnn, cnnb and tau need the search arm's runs")
    ap.add_argument("--search-only", action="store_true", help="--arms search")
    ap.add_argument("--epochs", type=lambda t: None if t == "auto" else int(t), default=EPOCHS,
                    help=f"final-training epochs of every arm ({EPOCHS}; auto: the CLI's default, 120 or more on "
                         "small data); a work folder keeps the value it was started with")
    ap.add_argument("--search-epochs", type=int, default=None,
                    help="DNAS epochs, a quarter of them warm-up (default: the search's own rule)")
    ap.add_argument("--scale", default="auto",
                    help="the search's --scale (auto: sized to the budget; M or M+E: that width multiplier and "
                         "extra cells); random search draws from the space the search ran over")
    ap.add_argument("--space", default="default", choices=("default", "wide"),
                    help="the space searched and sampled (wide: an experiment, see the module docstring)")
    ap.add_argument("--ray", type=int, default=0, metavar="N",
                    help="train the random networks (and score the candidates) as tasks of a local Ray of N CPUs "
                         "(the scale extra); 0: in this process")
    args = ap.parse_args()
    args.arms = ("search",) if args.search_only else tuple(a.strip() for a in args.arms.split(","))
    unknown = set(args.arms) - {"search", "random", "cnn", "cnnb", "tau"}
    if unknown:
        raise SystemExit(f"--arms: unknown {', '.join(sorted(unknown))}; expected search, random, cnn, cnnb, tau")
    if args.ray:
        from micronas.parallel import require_ray

        require_ray("--ray").init(num_cpus=args.ray, include_dashboard=False, log_to_driver=False)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)
    available = datasets(work)
    names = [n.strip() for n in args.datasets.split(",")]
    missing = [n for n in names if n not in available]
    if missing:
        print(f"skipped {', '.join(missing)}: pip install --no-deps seglearn (watch) / aeon (vowels)")
    names = [n for n in names if n in available]
    results_path = work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    settings = {"final_epochs": args.epochs or "auto", "search_epochs": args.search_epochs}
    if args.scale != "auto":  # (folders from before these options searched the default space at auto)
        settings["scale"] = args.scale
    if args.space != "default":
        settings["space"] = args.space
    use_space(args.space)
    kept = results.setdefault("settings", settings if results == {} else {"final_epochs": EPOCHS, "search_epochs": None})
    if kept != settings:  # (folders from before these options ran the defaults)
        raise SystemExit(f"--epochs {args.epochs} --search-epochs {args.search_epochs} --scale {args.scale} "
                         f"--space {args.space}: {work} holds runs of {kept['final_epochs']} final epochs, "
                         f"--search-epochs {kept['search_epochs']}, --scale {kept.get('scale', 'auto')} and "
                         f"--space {kept.get('space', 'default')}; use another --work")
    for n in names:
        run_dataset(n, available[n], args, work, results)
    report(results, names, args.seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
