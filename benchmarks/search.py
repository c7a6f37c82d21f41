"""Does the search beat a hand-designed CNN at the same budget on realistic wearable data?

For each latency budget on the default board (RAM budget 256 KiB, flash the board's) and each
seed, side by side in one run:

* `micronas search` on seglearn's watch data (benchmarks/watch_data.py: 128-sample windows,
  50 % overlap, subjects 1-7 the pool with subject 3 for validation, 8-10 the test set), with
  the final training on the issue's protocol (40 epochs, cosine schedule, last epoch);
* a hand-designed 3-layer CNN that fits the same budget, trained, exported and profiled by the
  same code (`api.train_export_profile`: same recipe, checkpoint rule and QAT rule).

Every figure is measured on the emulated core (QEMU instruction counts, not cycles) except
"predicted" (the latency table). Prints a table with mean +- std over seeds and the ratio of
accuracies (search / baseline); writes everything to WORK/results.json. Finished runs are
kept and skipped when the benchmark is run again (it resumes).

    .venv/bin/python benchmarks/search.py [--budgets 2ms,6ms,50ms] [--seeds 0,1,2] [--work DIR]

Skips cleanly (exit 0) when seglearn is not installed: pip install --no-deps seglearn
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

RAM = "256k"
# hand-designed baselines: 3 conv layers (k5; stride 1, 2, 2), the widths that fit each budget
BASELINES = {"2ms": (8, 16, 16), "6ms": (16, 32, 32), "50ms": (64, 64, 64)}


def baseline_arch(widths: tuple[int, ...], shape: tuple[int, int, int]) -> dict:
    layers = [{"op": "conv", "out": w, "kernel": 5, "stride": s} for w, s in zip(widths, (1, 2, 2))]
    return {"format": "micronas.arch/1", "input_channels": shape[0], "input_length": shape[1],
            "num_classes": shape[2], "stem": layers[0], "cells": layers[1:]}


def figures(done) -> dict:
    """The figures of a SearchResult or PipelineResult."""
    m, p = done.metrics, done.profile
    return {"accuracy_int8": m.accuracy_int8, "accuracy_fp32": m.accuracy_fp32,
            "qat": (m.qat or {}).get("kept", "ptq"),
            "predicted_latency_ms": m.prediction.latency_ms, "measured_latency_ms": p.measured_latency_ms,
            "predicted_arena_bytes": m.prediction.arena_bytes, "measured_arena_bytes": p.arena_bytes_measured,
            "predicted_flash_bytes": m.prediction.flash_bytes, "elf_flash_bytes": p.flash_bytes,
            "fits": not p.over_budget, "where": p.where, "unit": p.timer_kind}


def save(path: Path, results: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(path)


def run_all(args) -> dict:
    from micronas import api
    from micronas import search as dnas
    from micronas.report import arch_summary
    from micronas.train import TrainConfig
    from micronas.units import Budgets
    from targets import boards

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = work / "watch.npz"
    if not data.exists():
        watch_data.write(data)
    with np.load(data) as z:
        shape = (z["X"].shape[1], z["X"].shape[2], len(set(z["y"].tolist())))
    board = boards.default_board()
    results_path = work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    val = (watch_data.VAL_SUBJECT,)
    for budget in args.budgets:
        budgets = api.board_budgets(Budgets.parse(latency=budget, ram=RAM), board)
        for seed in args.seeds:
            for kind in ("search", "baseline"):
                key = f"{budget}/{kind}/seed{seed}"
                if key in results:
                    continue
                out = work / budget / f"{kind}-seed{seed}"
                print(f"[{time.strftime('%H:%M:%S')}] {key} -> {out}", flush=True)
                t0 = time.monotonic()
                if kind == "search":
                    cfg = dnas.SearchConfig(epochs=args.epochs, warmup_epochs=args.epochs // 4, seed=seed,
                                            val_subjects=val)
                    r = api.search(data, out, budgets, target=board.name, cfg=cfg, final_epochs=args.final_epochs,
                                   resume=(out / "search_checkpoint.pt").exists())
                    arch = r.arch
                    search_s = json.loads((out / "search.json").read_text()).get("search_seconds")
                else:
                    arch = baseline_arch(BASELINES[budget], shape)
                    arch_path = work / budget / "baseline_arch.json"
                    arch_path.parent.mkdir(parents=True, exist_ok=True)
                    arch_path.write_text(json.dumps(arch))
                    tcfg = TrainConfig(epochs=args.final_epochs, seed=seed, val_subjects=val, checkpoint_rule="last")
                    r = api.train_export_profile(data, out, arch_path, tcfg, board.name, budgets)
                    search_s = None
                results[key] = {**figures(r), "arch": arch_summary(arch), "wall_seconds": round(time.monotonic() - t0, 1),
                                "search_seconds": search_s, "budget": budget, "kind": kind, "seed": seed}
                save(results_path, results)
                print(f"    {results[key]['arch']}: int8 {results[key]['accuracy_int8']:.3f}, "
                      f"{results[key]['measured_latency_ms']:.3f} ms, {results[key]['wall_seconds']:.0f} s", flush=True)
    return results


def report(results: dict, args) -> None:
    def ms(vals):
        return f"{100 * np.mean(vals):.1f} ± {100 * np.std(vals):.1f}"

    print("\n| budget | model | int8 test acc (mean ± std, seeds) | x baseline | latency predicted / measured (ms) "
          "| arena predicted / measured (B) | flash predicted / ELF (B) | fits | wall time per run (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for budget in args.budgets:
        rows = {k: [results[f"{budget}/{k}/seed{s}"] for s in args.seeds if f"{budget}/{k}/seed{s}" in results]
                for k in ("search", "baseline")}
        base = np.mean([r["accuracy_int8"] for r in rows["baseline"]]) if rows["baseline"] else None
        for kind, rs in rows.items():
            if not rs:
                continue
            acc = [r["accuracy_int8"] for r in rs]
            ratio = f"{np.mean(acc) / base:.3f}" if base else "-"
            lat = "; ".join(f"{r['predicted_latency_ms']:.2f} / {r['measured_latency_ms']:.2f}" for r in rs)
            arena = "; ".join(f"{r['predicted_arena_bytes']:,} / {r['measured_arena_bytes']:,}" for r in rs)
            flash = "; ".join(f"{r['predicted_flash_bytes']:,} / {r['elf_flash_bytes']:,}" for r in rs)
            fits = "yes" if all(r["fits"] for r in rs) else "NO"
            wall = "; ".join(f"{r['wall_seconds']:.0f}" for r in rs)
            print(f"| {budget} | {kind} | {ms(acc)} ({len(rs)}) | {ratio} | {lat} | {arena} | {flash} | {fits} | {wall} |")
    print("\nnetworks found (seed: layers):")
    for budget in args.budgets:
        for s in args.seeds:
            r = results.get(f"{budget}/search/seed{s}")
            if r:
                print(f"  {budget} seed {s}: {r['arch']}  (qat: {r['qat']})")
    print("\nlatency: QEMU instruction counts on the emulated core (not cycles), in ms at the board's clock")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budgets", default="2ms,6ms,50ms", help="comma-separated latency budgets (of 2ms, 6ms, 50ms)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=40, help="search epochs")
    ap.add_argument("--final-epochs", type=int, default=40)
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench-search"))
    args = ap.parse_args()
    args.budgets = [b.strip() for b in args.budgets.split(",")]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    unknown = [b for b in args.budgets if b not in BASELINES]
    if unknown:
        print(f"error: no baseline CNN for budget(s) {', '.join(unknown)}; choose among {', '.join(BASELINES)}",
              file=sys.stderr)
        return 2
    if watch_data.watch_file() is None:
        print("skipped: seglearn is not installed (pip install --no-deps seglearn)")
        return 0
    os.chdir(ROOT)
    report(run_all(args), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
