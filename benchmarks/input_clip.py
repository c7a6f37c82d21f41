"""Does clipping the standardised input help int8? Judged on validation data only.

Each network is trained twice by micronas's own loop (`api.train`, the default recipe, 40
epochs, last epoch, not distilled) and exported (`api.export`): once with the standardiser's
clip (`Standardizer.fit`'s default, the 0.01st-99.99th percentile of the standardised
training values) and once without (min/max of the training values sets the int8 input range,
as before). For each it prints, on the validation split: fp32 and int8 (TFLite Micro)
accuracy, the int8 input step, each layer's int8 error (`metrics.json` `layer_int8_error`),
how many windows int8 and fp32 classify differently, and the mean L1 distance between their
softmax outputs. The test split is never read.

    pip install --no-deps seglearn aeon   # into .venv; a dataset whose package is missing is skipped
    .venv/bin/python benchmarks/input_clip.py [--work DIR] [--datasets watch,vowels]

Networks: on the watch data (validation subject 3, 4 or 6 held out, seed 0) the searched
network `archs/watch_search_seed0.json` and the 64/64/64 CNN; on JapaneseVowels (seeds 0, 1, 2,
each its own seeded 20 % validation) `archs/vowels_search_seed0.json` (a network the search found
there at 5 ms) and the 32/32/32 CNN.
Finished runs are kept in WORK (results.jsonl) and reused by a rerun.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import watch_data  # noqa: E402
from search import cnn_arch, vowels_file  # noqa: E402

EPOCHS = 40
def jobs(work: Path, names: list[str]) -> list[tuple[str, str, Path, tuple[str, ...], int]]:
    """(dataset, data file, arch file, validation subjects, seed) of every network to train."""
    out = []
    if "watch" in names and watch_data.watch_file() is not None:
        data = work / "watch.npz"
        if not data.exists():
            watch_data.write(data)
        cnn = work / "cnn64.json"
        cnn.write_text(json.dumps(cnn_arch((64, 64, 64), (6, 128, 7))))
        for arch in (ROOT / "benchmarks" / "archs" / "watch_search_seed0.json", cnn):
            out += [("watch", str(data), arch, (fold,), 0) for fold in ("3", "4", "6")]
    if "vowels" in names and vowels_file() is not None:
        searched, cnn = ROOT / "benchmarks" / "archs" / "vowels_search_seed0.json", work / "cnn32.json"
        cnn.write_text(json.dumps(cnn_arch((32, 32, 32), (12, 25, 9))))
        out += [("vowels", str(vowels_file()), arch, (), seed) for arch in (searched, cnn) for seed in (0, 1, 2)]
    return out


def measure(out: Path) -> dict:
    """Validation figures of one exported run."""
    import torch

    from firmware_export import verify
    from micronas.data import arrays_for
    from micronas.rundir import RunDir
    from micronas.stages.common import folded_model, load_run

    run = RunDir.open(out)
    _, arch, ds, split, std = load_run(run)
    X, y = arrays_for(ds, split)["val"]
    X = std.apply(X)
    with torch.no_grad():
        f = folded_model(run, arch)(torch.from_numpy(X)).numpy()
    path = out / "model_int8.tflite"
    qin, qout = verify.io_params(path)
    q = verify.run_tflm(path.read_bytes(), qin.quantize(X.transpose(0, 2, 1)))
    p_int8 = torch.softmax(torch.from_numpy(qout.dequantize(q)), 1).numpy()
    p_fp32 = torch.softmax(torch.from_numpy(f), 1).numpy()
    m = json.loads((out / "metrics.json").read_text())
    return {"val_fp32": float(np.mean(f.argmax(1) == y)), "val_int8": float(np.mean(q.argmax(1) == y)),
            "windows": len(y), "differ": int(np.sum(q.argmax(1) != f.argmax(1))),
            "prob_l1": float(np.abs(p_int8 - p_fp32).sum(1).mean()),
            "input_step": float(qin.scale), "clip": std.clip,
            "layer_err": [round(la["relative_error"], 4) for la in m["layer_int8_error"]["layers"]]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench-input-clip"))
    ap.add_argument("--datasets", default="watch,vowels")
    args = ap.parse_args()
    os.chdir(ROOT)
    from micronas import api
    from micronas.data import split as split_mod
    from micronas.train import TrainConfig

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    todo = jobs(work, [d.strip() for d in args.datasets.split(",")])
    if not todo:
        print("skipped: neither seglearn (watch) nor aeon (vowels) is installed")
        return 0
    results_path = work / "results.jsonl"
    results = {}
    if results_path.exists():
        results = {r["key"]: r for r in map(json.loads, results_path.read_text().splitlines())}
    fit = split_mod.Standardizer.fit.__func__
    unclipped = classmethod(lambda cls, X, clip_percent=None: fit(cls, X, None))  # the standardiser before the clip
    for ds, data, arch, val, seed in todo:
        for variant in ("clip", "none"):
            key = f"{ds}/{arch.stem}/val{''.join(val)}/s{seed}/{variant}"
            if key in results:
                continue
            out = work / key.replace("/", "_")
            t0 = time.monotonic()
            cfg = TrainConfig(epochs=EPOCHS, seed=seed, val_subjects=val, checkpoint_rule="last")
            with mock.patch.object(split_mod.Standardizer, "fit", unclipped) if variant == "none" \
                    else contextlib.nullcontext():
                api.train(data, out, arch=arch, cfg=cfg, threads=2)
            api.export(out)
            results[key] = {"key": key, **measure(out), "seconds": round(time.monotonic() - t0, 1)}
            with open(results_path, "a") as fh:
                fh.write(json.dumps(results[key]) + "\n")
            print(f"[{time.strftime('%H:%M:%S')}] {key}: done", flush=True)
    print("\n| network | validation | clip | int8 input step | fp32 | int8 | int8 != fp32 (windows) "
          "| mean L1(p_int8 - p_fp32) | int8 error per layer (relative RMS) |\n|---|---|---|---|---|---|---|---|---|")
    for ds, data, arch, val, seed in todo:
        for variant in ("clip", "none"):
            r = results[f"{ds}/{arch.stem}/val{''.join(val)}/s{seed}/{variant}"]
            clip = f"{r['clip'][0]:.2f}..{r['clip'][1]:.2f}" if r["clip"] else "none (min/max)"
            where = f"subject {val[0]}" if val else f"seeded 20 % (seed {seed})"
            print(f"| {ds} {arch.stem} | {where} | {clip} | {r['input_step']:.4f} | {100 * r['val_fp32']:.1f} "
                  f"| {100 * r['val_int8']:.1f} | {r['differ']} of {r['windows']} | {r['prob_l1']:.4f} "
                  f"| {', '.join(f'{100 * e:.1f}' for e in r['layer_err'])} % |")
    print("\nmeans over the runs of each network and variant:")
    for ds, arch in dict.fromkeys((j[0], j[2]) for j in todo):
        for variant in ("clip", "none"):
            rs = [results[f"{ds}/{arch.stem}/val{''.join(v)}/s{s}/{variant}"] for d, _, a, v, s in todo
                  if d == ds and a == arch]
            print(f"  {ds} {arch.stem} {variant}: fp32 {100 * np.mean([r['val_fp32'] for r in rs]):.1f}, int8 "
                  f"{100 * np.mean([r['val_int8'] for r in rs]):.1f}, differ {sum(r['differ'] for r in rs)} of "
                  f"{sum(r['windows'] for r in rs)}, L1 {np.mean([r['prob_l1'] for r in rs]):.4f}, first layer "
                  f"{100 * np.mean([r['layer_err'][0] for r in rs]):.1f} %, logits "
                  f"{100 * np.mean([r['layer_err'][-1] for r in rs]):.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
