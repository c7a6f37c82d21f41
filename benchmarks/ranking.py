"""Which signal ranks networks at the budget? Kendall tau of cheap scores against trained accuracy.

The search can only beat random sampling if something it can afford tells a better network from
a worse one before training it. This benchmark scores the ranking pool of `benchmarks/search.py`
(20 random networks of the searched space at 80-99 % of the latency budget, each trained
stand-alone with the search's final recipe; `search.py --arms search,random,tau` first) by:

- the supernet: validation accuracy with inherited weights, batch norm recalibrated, after a
  DNAS of the default settings but for its layout (`--layouts`: shared, each op's candidates in
  one module, the default; separate, a module per candidate, as before) and its epochs
  (`--search-epochs`: auto, the search's rule; or a number);
- zero-cost proxies at initialisation (mean over 3 initialisations, 64 training windows): the
  NASWOT score (log-determinant of the kernel of each block's ReLU activation pattern), the
  gradient norm of the loss, the parameter count;
- a short stand-alone training: `--short-epochs` of the final recipe, not distilled (two
  processes of one thread each).

Each against the pool's stand-alone validation accuracy (what a selection sees) and fp32 test
accuracy (what the user gets), with stand-alone validation against test as the ceiling. Decisions
in the product use validation only; test is read here to report.

    .venv/bin/python benchmarks/ranking.py [--work runs/bench-search] [--datasets watch,vowels]
        [--layouts shared,separate] [--search-epochs auto,40] [--short-epochs 8]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import search as bench  # noqa: E402  (benchmarks/search.py: datasets, splits, the pool)

POOL_SEED = 0


def supernet_scores(name: str, spec: dict, work: Path, archs: list[dict], data: dict, shared: bool,
                    epochs: int | None) -> tuple[list, float, int]:
    """Inherited, recalibrated validation accuracy of each network after a DNAS of this layout and
    epochs (None: the search's rule); its seconds and epochs."""
    from latency_tables import costs as costs_mod
    from latency_tables import predict as predictor
    from micronas import api
    from micronas import search as dnas
    from micronas.rundir import RunDir
    from micronas.units import Budgets
    from search_space.arch import from_json
    from search_space.space import position_choices
    from search_space.supernet import MixedPosition, SuperNet
    from targets import boards

    board = boards.default_board()
    budgets = api.board_budgets(Budgets.parse(latency=spec["latency"], ram=bench.RAM), board)
    ds = api.load_dataset(spec["data"])
    shape = (ds.n_channels, ds.length, ds.n_classes)
    space = bench.searched_space(json.loads((work / name / f"search-seed{POOL_SEED}" / "search.json").read_text()))
    cm = costs_mod.build_costs(space, predictor.find_table(board.name, *shape))
    choices = [position_choices(space, i) for i in range(len(space.positions))]
    cfg = dnas.SearchConfig(seed=POOL_SEED, val_subjects=spec["val"], epochs=epochs).for_data(len(data["train"][1]))
    MixedPosition.share_kernels = shared  # this process only: the benchmark compares the two layouts
    with tempfile.TemporaryDirectory(prefix="micronas-ranking-") as tmp:
        run = RunDir.create(Path(tmp) / "search")
        t0 = time.monotonic()
        dnas.search(run, lambda: SuperNet(space, choices, *shape), cm, {k: data[k] for k in ("train", "val")},
                    budgets, cfg, cfg.digest({"benchmark": "ranking"}))
        seconds = time.monotonic() - t0
        net = dnas.load_supernet(run, lambda: SuperNet(space, choices, *shape))
    scores = [dnas.inherited_accuracy(net, from_json(a), data["train"][0], *data["val"], seed=POOL_SEED)
              for a in archs]
    return scores, seconds, cfg.epochs


def proxy_scores(archs: list[dict], data: dict) -> dict[str, list[float]]:
    """NASWOT, gradient norm and parameter count of each network at initialisation."""
    import torch
    from torch.nn import functional as F

    from search_space.arch import from_json
    from search_space.network import build

    X, y = (torch.from_numpy(a) for a in data["train"])
    out: dict[str, list[list[float]]] = {"NASWOT": [], "gradient norm": [], "parameters": []}
    for s in range(3):
        idx = torch.randperm(len(X), generator=torch.Generator().manual_seed(s))[:64]
        rows = {k: [] for k in out}
        for a in archs:
            torch.manual_seed(s)
            m = build(from_json(a)).train()
            codes: list = []
            hooks = [b.register_forward_hook(lambda _m, _i, o: codes.append((o > 0).double().flatten(1)))
                     for b in m.blocks]
            m.zero_grad()
            F.cross_entropy(m(X[idx]), y[idx]).backward()
            for h in hooks:
                h.remove()
            c = torch.cat(codes, 1)
            rows["NASWOT"].append(float(torch.slogdet(c @ c.T + (1 - c) @ (1 - c).T)[1]))
            rows["gradient norm"].append(float(sum(p.grad.norm() for p in m.parameters() if p.grad is not None)))
            rows["parameters"].append(float(sum(p.numel() for p in m.parameters())))
        for k in out:
            out[k].append(rows[k])
    return {k: list(np.mean(v, 0)) for k, v in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench-search"), help="benchmarks/search.py's --work")
    ap.add_argument("--datasets", default="watch,vowels")
    ap.add_argument("--layouts", default="shared,separate", help="supernet layouts: shared (the default), separate")
    ap.add_argument("--search-epochs", default="auto", help="DNAS epochs: auto (the search's rule) and/or numbers")
    ap.add_argument("--short-epochs", type=int, default=8, help="short stand-alone training (0: skip)")
    args = ap.parse_args()
    from micronas import search as dnas

    work = Path(args.work)
    results = json.loads((work / "results.json").read_text())
    available = bench.datasets(work)
    for name in [n.strip() for n in args.datasets.split(",")]:
        pool = results.get(f"{name}/pool/seed{POOL_SEED}")
        if name not in available or pool is None or len(pool["runs"]) < len(pool["archs"]):
            print(f"{name}: no trained ranking pool in {work}; run benchmarks/search.py --arms search,random,tau")
            continue
        spec, archs = available[name], pool["archs"]
        n = len(archs)
        sval = [pool["runs"][str(i)]["val_acc"] for i in range(n)]
        stest = [pool["runs"][str(i)]["test_acc_fp32"] for i in range(n)]
        data = bench.splits(spec["data"], POOL_SEED, spec["val"])
        rows = [("stand-alone validation (what random search selects by)", sval)]
        for layout in args.layouts.split(","):
            for e in args.search_epochs.split(","):
                scores, seconds, epochs = supernet_scores(name, spec, work, archs, data, layout == "shared",
                                                          None if e == "auto" else int(e))
                rows.append((f"supernet ({layout}, {epochs} epochs{' = auto' if e == 'auto' else ''}, "
                             f"{seconds:.0f} s), inherited, BN recalibrated", scores))
        rows += [(f"{k} at initialisation", v) for k, v in proxy_scores(archs, data).items()]
        if args.short_epochs:  # search.py's stand-alone training, shorter and not distilled
            from micronas.train import TrainConfig

            t0 = time.monotonic()
            tcfg = TrainConfig(epochs=args.short_epochs, seed=POOL_SEED, val_subjects=spec["val"],
                               checkpoint_rule="last")
            with tempfile.TemporaryDirectory(prefix="micronas-ranking-") as tmp, \
                    get_context("spawn").Pool(2) as procs:
                task = functools.partial(bench.train_random, spec["data"], Path(tmp), archs, tcfg, data["test"])
                short = [r["val_acc"] for r in procs.map(task, range(n))]
            rows.append((f"{args.short_epochs} epochs stand-alone ({(time.monotonic() - t0) / n * 2:.0f} s "
                         "per network, one thread)", short))
        print(f"\n### {name}: {n} networks at 80-99 % of the {spec['latency']} budget\n\n"
              "| score | tau vs stand-alone validation | tau vs stand-alone test (fp32) | range |\n|---|---|---|---|")
        for label, v in rows:
            print(f"| {label} | {dnas.kendall_tau(v, sval):+.2f} | {dnas.kendall_tau(v, stest):+.2f} "
                  f"| {min(v):.3g}-{max(v):.3g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
