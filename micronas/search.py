"""Differentiable architecture search (DNAS) under latency, RAM and flash budgets.

The supernet (`search_space.supernet`) samples one candidate per position with hard
Gumbel-softmax; its temperature anneals from `tau_start` to `tau_end`. Each epoch alternates
weight steps on the train split with architecture steps on the validation split (after a
weights-only warm-up). An architecture step minimises

    cross-entropy + sum over budgets of penalty(E[cost] / budget)

where E[cost] is the expectation of the table's latency, the layers' arena (a smooth maximum)
and the flash (constants + code) under the current architecture distribution, differentiable
in the logits (`latency_tables.costs` holds the per-choice figures). The penalty is steep over
budget and mild under it, in the log ratio (MicroNAS used a log-ratio penalty):

    penalty(r) = over * log(r)     if r > 1    (over = 5, every budget)
                 under * -log(r)   otherwise   (under = 0.05, the latency budget only)

Under the latency budget the mild term pulls towards the budget, not away from it (TuNAS's
absolute reward does the same): with weight sharing, cheap candidates (skips, narrow widths)
reach a low loss first, and a search rewarded for being cheap collapses to them. On the
watch data, with a pull towards cheaper networks instead, the expected latency fell from
23 ms to 3.4 ms within two epochs of a 50 ms budget and the found network was 10 points
less accurate than a plain CNN of the same latency. Under the RAM and flash budgets there is
no pull either way: they are constraints.

After the last epoch the most likely network is derived, its exact costs predicted, and a
repair step trades the least likely choices for cheaper ones until it fits.

Everything is seeded; the supernet, both optimisers, the RNG states and the trajectory are
checkpointed after every epoch, so a killed search resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from micronas import budgets as budget_mod
from micronas.budgets import FLASH, LATENCY, RAM
from micronas_base.errors import BudgetError, ConfigError
from micronas.rundir import RunDir
from micronas.train import batch_size_for, epochs_for, read_checkpoint, resume_from, save_checkpoint
from micronas.units import Budgets

log = logging.getLogger(__name__)


# Search epochs by default, and the fewest weight steps the supernet takes by default. Each
# position holds a dozen candidates or more; on small data 40 epochs are a few hundred steps, too
# few for shared weights to learn: on JapaneseVowels (216 training windows, 7 steps per epoch;
# one module per op family, search_space.supernet) networks of the space scored 46 % validation
# accuracy with inherited weights after 280 steps, 74 % after 1,190 and 86 % after 2,800
# (stand-alone: 94-100 %), and the supernet ranked them better (benchmarks/README.md,
# "ranking.py"). Data of 1,200 windows or more keeps 40 epochs (the watch data: 2,226 windows,
# 2,800 steps); the embedded BasicMotions (32) gets 375 short ones.
DEFAULT_EPOCHS = 40
MIN_WEIGHT_STEPS = 1_500
TRAJECTORY_RECALIBRATE = 8  # batch-norm batches before each epoch's most-likely network is scored


@dataclass(frozen=True)
class SearchConfig:
    """Settings of the search; recorded in search.json, a resume must match them."""

    # None: DEFAULT_EPOCHS, or more on small data, so that the shared weights take at least
    # MIN_WEIGHT_STEPS steps (`for_data`); the resolved numbers are what search.json records
    epochs: int | None = None
    warmup_epochs: int | None = None  # weights only, candidates sampled uniformly (None: a quarter of epochs)
    batch_size: int = 32  # smaller when the training split has fewer than 4 batches
    weight_lr: float = 3e-3
    arch_lr: float = 3e-2
    tau_start: float = 5.0
    tau_end: float = 0.5
    over_weight: float = 5.0
    under_weight: float = 0.05  # mild, towards the latency budget (see the module docstring)
    ram_smoothness_bytes: float = 256.0  # soft maximum of the layers' arenas
    seed: int = 0
    val_subjects: tuple[str, ...] = ()  # fixed validation subjects (else seeded, about 20 % of the pool)
    # derivation: the most likely network and `candidates - 1` drawn from the learned distribution,
    # each repaired and filled to the budgets, scored on validation with inherited weights after a
    # short fine-tune (`finetune_epochs` over the training split); the best is trained from scratch
    candidates: int = 8
    finetune_epochs: float = 1.0
    # the space's widths (and depth) for the budget: "auto" (`micronas.space_scale`) or "M" / "M+E"
    scale: str = "auto"
    # remove each window's per-channel mean: "auto" (decided on validation by
    # `micronas.stages.search.choose_window_mean`), "keep" or "remove"; the decision, not this
    # setting, enters the digest (so runs from before the option resume)
    window_mean: str = "auto"

    def for_data(self, train_windows: int) -> SearchConfig:
        """The settings with the epochs resolved for a training split of `train_windows` windows."""
        epochs = self.epochs
        if epochs is None:
            epochs = epochs_for(train_windows, self.batch_size, MIN_WEIGHT_STEPS, at_least=DEFAULT_EPOCHS)
        warmup = epochs // 4 if self.warmup_epochs is None else self.warmup_epochs
        return replace(self, epochs=epochs, warmup_epochs=warmup)

    def digest(self, extra: dict[str, Any]) -> str:
        settings = asdict(self)
        del settings["window_mean"]
        blob = json.dumps({"search": settings, **extra}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def penalty(expected, budget: float, cfg: SearchConfig, towards: bool = True):
    """Steep over budget; under it a mild pull towards the budget (`towards`) or nothing."""
    import torch

    log_r = torch.log(expected / budget)
    under = -cfg.under_weight * log_r if towards else torch.zeros_like(log_r)
    return torch.where(log_r > 0, cfg.over_weight * log_r, under)


def cost_tensors(cm) -> dict[str, Any]:
    """The cost model's per-choice latency, flash and arena as float32 tensors: built once per
    search, not on every architecture step."""
    import torch

    def t(a):
        return torch.from_numpy(np.asarray(a, dtype=np.float32))

    return {"positions": [(t(pc.latency), t(cm.kernel_flash(pc.const_bytes, pc.kernels)), t(pc.arena))
                          for pc in cm.positions],
            "head": (t(cm.head_latency), t(cm.kernel_flash(cm.head_const, cm.head_kernels)), t(cm.head_arena))}


def expected_costs(net, cm, cfg: SearchConfig, tensors: dict[str, Any] | None = None) -> dict[str, Any]:
    """E[latency count], E[peak arena] (soft max), E[flash] under the architecture distribution.

    `tensors`: `cost_tensors(cm)`, passed in by a caller that evaluates many times.
    """
    import torch

    from search_space.registry import SEARCH_OPS

    tensors = tensors or cost_tensors(cm)
    lat = torch.tensor(cm.overhead)
    flash = torch.tensor(cm.flash_base)
    arenas = []
    q_in = torch.ones(1)  # distribution over the input widths of position 0: the data's channels
    for pos, pc, (t_lat, t_flash, t_arena) in zip(net.positions, cm.positions, tensors["positions"]):
        p_op = torch.softmax(pos.alpha, 0)
        p_w = torch.softmax(pos.beta, 0)
        w = p_op[:, None, None] * (q_in[:, None] * p_w[None, :])[None]  # (choice, width_in, width_out)
        lat = lat + (w * t_lat).sum()
        flash = flash + (w * t_flash).sum()
        arenas.append((w * t_arena).sum())
        # distribution of this position's output width over the next position's input widths
        skip = (sum(p_op[i] for i, ch in enumerate(pc.choices) if SEARCH_OPS.get(ch.op).keeps_width) if pos.skip
                else torch.tensor(0.0))
        widths_next = sorted(set(pc.widths_out) | (set(pc.widths_in) if pos.skip else set()))
        q_next = torch.zeros(len(widths_next))
        for b, w in enumerate(pc.widths_out):
            q_next = q_next + (1 - skip) * p_w[b] * _onehot(widths_next, w)
        if pos.skip:
            for a, w in enumerate(pc.widths_in):
                q_next = q_next + skip * q_in[a] * _onehot(widths_next, w)
        q_in, pc_next_widths = q_next, widths_next
    idx = [cm.head_widths.index(w) for w in pc_next_widths]
    h_lat, h_flash, h_arena = (t[idx] for t in tensors["head"])
    lat = lat + (q_in * h_lat).sum()
    flash = flash + (q_in * h_flash).sum()
    arenas.append((q_in * h_arena).sum())
    a = torch.stack(arenas)
    ram = cfg.ram_smoothness_bytes * torch.logsumexp(a / cfg.ram_smoothness_bytes, 0)
    return {"latency": lat, "ram": ram, "flash": flash}


def _onehot(widths: list[int], w: int):
    import torch

    v = torch.zeros(len(widths))
    v[widths.index(w)] = 1.0
    return v


def _costs_json(e: dict[str, Any], cm) -> dict[str, float]:
    return {"latency_ms": cm.count_to_ms(float(e["latency"])), "ram_bytes": float(e["ram"]),
            "flash_bytes": float(e["flash"])}


def _budget_counts(budgets: Budgets, cm) -> dict[str, float]:
    from latency_tables.table import count_from_seconds

    out = {}
    if budgets.latency_s is not None:
        out["latency"] = count_from_seconds(budgets.latency_s, cm.clock_hz)  # a count at one count per cycle
    if budgets.ram_bytes is not None:
        out["ram"] = float(budgets.ram_bytes)
    if budgets.flash_bytes is not None:
        out["flash"] = float(budgets.flash_bytes)
    return out


EpochCallback = Callable[[int, int, dict[str, Any]], None]


def search(run: RunDir, net_factory: Callable[[], Any], cm, data: dict[str, tuple[np.ndarray, np.ndarray]],
           budgets: Budgets, cfg: SearchConfig, digest: str, on_epoch: EpochCallback | None = None,
           must_resume: bool = False) -> list[dict]:
    """Run (or resume) the DNAS; returns the trajectory (also in search.json).

    The supernet and its logits are left in `run/search_checkpoint.pt`. A checkpoint of other
    settings is started over, unless `must_resume` (`--resume`), which makes it an error.
    """
    import torch
    from torch.nn import functional as F

    cfg = cfg.for_data(len(data["train"][1]))
    torch.manual_seed(cfg.seed)
    net = net_factory()
    w_opt = torch.optim.Adam(net.weight_parameters(), lr=cfg.weight_lr, weight_decay=1e-4)
    a_opt = torch.optim.Adam(net.arch_parameters(), lr=cfg.arch_lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    Xtr, ytr = (torch.from_numpy(a) for a in data["train"])
    Xva, yva = (torch.from_numpy(a) for a in data["val"])
    targets = _budget_counts(budgets, cm)
    tensors = cost_tensors(cm)
    bs = batch_size_for(len(Xtr), cfg.batch_size)
    trajectory: list[dict] = []
    start = 0
    stateful = {"net": net, "w_opt": w_opt, "a_opt": a_opt}
    ckpt_path = run.file("search_checkpoint.pt")
    ckpt = read_checkpoint(ckpt_path, "search from scratch")
    if ckpt is not None:
        if ckpt.get("digest") != digest and must_resume:
            raise ConfigError(f"the search in {run.path} was started with other settings (data, budgets, board, "
                              "epochs or seed)", "repeat the original command's options with --resume, or search "
                              "into a new --out")
        if ckpt.get("digest") == digest:
            start = resume_from(ckpt, stateful, gen)
            trajectory = ckpt["trajectory"]
            log.info("resuming the search at epoch %d of %d", start + 1, cfg.epochs)

    for epoch in range(start, cfg.epochs):
        t0 = time.monotonic()
        frac = epoch / max(1, cfg.epochs - 1)
        net.tau = cfg.tau_start * (cfg.tau_end / cfg.tau_start) ** frac  # exponential annealing
        net.train()
        order = torch.randperm(len(Xtr), generator=gen)
        vorder = torch.randperm(len(Xva), generator=gen)
        losses = []
        for step, i in enumerate(range(0, len(order), bs)):
            idx = order[i : i + bs]
            if len(idx) < 2:
                continue
            w_opt.zero_grad()
            loss = F.cross_entropy(net(Xtr[idx]), ytr[idx])
            loss.backward()
            w_opt.step()
            losses.append(float(loss.detach()))
            if epoch >= cfg.warmup_epochs:
                j = (step * bs) % max(1, len(vorder))
                vidx = vorder[j : j + bs]
                if len(vidx) < 2:
                    vidx = vorder[:bs]
                a_opt.zero_grad()
                e = expected_costs(net, cm, cfg, tensors)
                a_loss = F.cross_entropy(net(Xva[vidx]), yva[vidx])
                for k, b in targets.items():
                    a_loss = a_loss + penalty(e[k], b, cfg, towards=k == "latency")
                a_loss.backward()
                a_opt.step()
        net.eval()
        with torch.no_grad():
            # scored as the derivation scores its candidates: batch norm recalibrated on this
            # network alone (the supernet's own statistics mix every candidate's; with them the
            # most likely network scored at chance during the uniform warm-up)
            most_likely = net.derive()
            val_acc = inherited_accuracy(net, most_likely, Xtr, Xva, yva, recalibrate=TRAJECTORY_RECALIBRATE,
                                         seed=cfg.seed)
            e = expected_costs(net, cm, cfg, tensors)
            entry = {
                "epoch": epoch, "tau": round(net.tau, 4), "train_loss": float(np.mean(losses)) if losses else None,
                "val_acc_most_likely": val_acc, "expected": _costs_json(e, cm),
                "most_likely": most_likely.to_json(),
                "distribution": [{"ops": {ch.label: round(float(p), 4) for ch, p in
                                          zip(pos.choices, torch.softmax(pos.alpha, 0))},
                                  "widths": {str(w): round(float(p), 4) for w, p in
                                             zip(pos.widths, torch.softmax(pos.beta, 0))}}
                                 for pos in net.positions],
                "seconds": round(time.monotonic() - t0, 2),
            }
        trajectory.append(entry)
        save_checkpoint(ckpt_path, digest, epoch, stateful, gen, trajectory=trajectory)
        run.write_json("search.json", {"config": asdict(cfg), "digest": digest, "budgets": budgets.to_json(),
                                       "trajectory": trajectory})
        if on_epoch:
            on_epoch(epoch, cfg.epochs, entry)
    return trajectory


def load_supernet(run: RunDir, net_factory: Callable[[], Any]):
    import torch

    net = net_factory()
    net.load_state_dict(read_checkpoint(run.file("search_checkpoint.pt"), "search from scratch")["net"])
    return net


def inherited_accuracy(net, arch, train_x, val_x, val_y, recalibrate: int = 16, batch_size: int = 64,
                       seed: int = 0) -> float:
    """Validation accuracy of a network of the space with the supernet's weights (inherited).

    Batch norm statistics are recalibrated first (`recalibrate` batches of training windows run
    through this network alone): the supernet's running statistics mix every candidate's. The
    supernet itself is left unchanged.

    Args:
        net: A trained `SuperNet`.
        arch: A network of its space.
        train_x: Standardised training windows (N, C, T) float32 (numpy or torch).
        val_x, val_y: Validation windows and labels.
        recalibrate: Training batches for the statistics (0: keep the supernet's).
        seed: Seeds which training windows are used.
    """
    import copy

    return _recalibrated_accuracy(copy.deepcopy(net), arch, train_x, val_x, val_y, recalibrate, batch_size, seed)


def _recalibrated_accuracy(m, arch, train_x, val_x, val_y, recalibrate: int = 16, batch_size: int = 64,
                           seed: int = 0) -> float:
    """`inherited_accuracy` on a supernet copy the caller owns: its batch norm statistics change."""
    import torch

    state = m.state_of(arch)
    Xtr, Xva, yva = (torch.as_tensor(a) for a in (train_x, val_x, val_y))
    if recalibrate:
        for mod in m.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.reset_running_stats()
                mod.momentum = None  # a plain average over the recalibration batches
        m.train()
        order = torch.randperm(len(Xtr), generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            for i in range(min(recalibrate, max(1, len(Xtr) // batch_size))):
                idx = order[i * batch_size:(i + 1) * batch_size]
                if len(idx) >= 2:
                    m(Xtr[idx], fixed=state)
    m.eval()
    with torch.no_grad():
        return float((m(Xva, fixed=state).argmax(1) == yva).float().mean())


def kendall_tau(a, b) -> float:
    """Kendall's tau-b between two equally long sequences (ties in either count as neither)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    i, j = np.triu_indices(len(a), 1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    n0 = len(i)
    n1, n2 = np.sum(da == 0), np.sum(db == 0)
    denom = math.sqrt((n0 - n1) * (n0 - n2))
    return float(np.sum(da * db) / denom) if denom else float("nan")


# ---- derivation and repair ---------------------------------------------------------------------

# Derived networks must fit with room for the predictor's error (benchmarks/predictor.py: latency
# within 0.33 %, flash within 0.76 % on 50 trained networks); the arena prediction is exact.
PREDICTION_MARGIN = 0.01


def _with_margin(budgets: Budgets) -> Budgets:
    m = 1.0 - PREDICTION_MARGIN
    return Budgets(None if budgets.latency_s is None else budgets.latency_s * m, budgets.ram_bytes,
                   None if budgets.flash_bytes is None else int(budgets.flash_bytes * m))


def _checks(pred, budgets: Budgets) -> list[budget_mod.Check]:
    """A predicted network's latency, arena and flash against the budgets."""
    return [budget_mod.check(budgets, LATENCY, "latency", pred.latency_ms),
            budget_mod.check(budgets, RAM, "arena", pred.arena_bytes),
            budget_mod.check(budgets, FLASH, "flash", pred.flash_bytes)]


def _over(pred, budgets: Budgets) -> list[str]:
    """The budgets the prediction exceeds, in the derivation log's compact form."""
    return [c.short() for c in _checks(pred, budgets) if c.over]


def _violation(pred, budgets: Budgets) -> float:
    """Sum over budgets of log(figure / budget) where over: how far from fitting."""
    return sum(max(0.0, math.log(c.ratio)) for c in _checks(pred, budgets) if c.budget is not None)


def derive_and_repair(net, table, budgets: Budgets, max_steps: int = 50,
                      fill: bool = True) -> tuple[Any, Any, list[str]]:
    """The most likely network, repaired until its exact predicted costs fit, then filled.

    Repair: while over budget, among all single-position changes (another candidate or
    width), take the one that most reduces the budget violation per unit of lost
    log-probability under the searched distribution.

    Both keep a margin of PREDICTION_MARGIN below the latency and flash budgets (the arena
    prediction is exact), so the measured network fits too.

    Fill (with a latency budget): the budget is met in expectation during the search, so the
    most likely network often lies well under it. While some single-position change still
    fits every budget and is slower, take the one that gives up the least log-probability per
    log of latency gained.

    Returns:
        (arch, prediction, log of repair steps).

    Raises:
        BudgetError: no repair reaches the budgets.
    """
    from latency_tables import predict as predictor
    from micronas.report import layer_short

    budgets = _with_margin(budgets)
    score = state_log_probability(net)
    state = [(int(pos.alpha.argmax()), int(pos.beta.argmax())) for pos in net.positions]

    def arch_of(st):
        return state_arch(net, st)

    cache: dict[tuple, Any] = {}

    def neighbours(st):
        """Every valid network one position away from `st`: (position, state, arch, prediction)."""
        for i, pos in enumerate(net.positions):
            for c in range(len(pos.choices)):
                for w in range(len(pos.widths)):
                    if (c, w) == st[i]:
                        continue
                    cand = list(st)
                    cand[i] = (c, w)
                    key = tuple(cand)
                    if key not in cache:
                        try:
                            a = arch_of(cand)
                        except ConfigError:
                            cache[key] = None
                            continue
                        cache[key] = (a, predictor.predict(a, table))
                    if cache[key] is not None:
                        yield (i, cand, *cache[key])

    steps: list[str] = []
    arch = arch_of(state)
    pred = predictor.predict(arch, table)
    for _ in range(max_steps):
        if not _over(pred, budgets):
            break
        v0, s0 = _violation(pred, budgets), score(state)
        best = None
        for i, cand, a, p in neighbours(state):
            gain = v0 - _violation(p, budgets)
            if gain <= 0:
                continue
            ratio = gain / max(1e-6, s0 - score(cand))
            if best is None or ratio > best[0]:
                best = (ratio, cand, a, p, i)
        if best is None:
            break
        _, state, arch, new, i = best
        steps.append(f"position {i}: {layer_short(arch.layers[i].to_json())} ({', '.join(_over(pred, budgets))} -> "
                     f"{', '.join(_over(new, budgets)) or 'fits'})")
        pred = new
    if _over(pred, budgets):
        raise BudgetError(f"the searched network does not fit after repair: {', '.join(_over(pred, budgets))}",
                          "relax the budget, or search longer")
    for _ in range(max_steps if budgets.latency_s is not None and fill else 0):
        s0, best = score(state), None
        for i, cand, a, p in neighbours(state):
            if _over(p, budgets) or p.latency_ms <= pred.latency_ms * 1.001:
                continue
            # log-probability given up per log of latency gained: the search's next most likely
            # way of spending more of the budget
            price = max(1e-6, s0 - score(cand)) / math.log(p.latency_ms / pred.latency_ms)
            if best is None or price < best[0]:
                best = (price, cand, a, p, i)
        if best is None:
            break
        _, state, arch, new, i = best
        steps.append(f"fill, position {i}: {layer_short(arch.layers[i].to_json())} ({pred.latency_ms:.3f} -> "
                     f"{new.latency_ms:.3f} ms)")
        pred = new
    return arch, pred, steps


def draw_states(net, n: int, seed: int) -> list[list[tuple[int, int]]]:
    """n (candidate, width) choices per position drawn from the learned distribution (softmax of
    the logits), seeded."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        out.append([(int(torch.multinomial(torch.softmax(pos.alpha.detach(), 0), 1, generator=gen)),
                     int(torch.multinomial(torch.softmax(pos.beta.detach(), 0), 1, generator=gen)))
                    for pos in net.positions])
    return out


FILLED = 0.9  # a drawn candidate is kept as it is when it uses at least this share of the latency budget


def state_log_probability(net) -> Callable[[list[tuple[int, int]]], float]:
    """The learned distribution's log-probability of a (candidate, width) choice per position."""
    import torch

    logp = [(torch.log_softmax(pos.alpha.detach(), 0).tolist(), torch.log_softmax(pos.beta.detach(), 0).tolist())
            for pos in net.positions]
    return lambda st: sum(logp[i][0][c] + logp[i][1][w] for i, (c, w) in enumerate(st))


def state_arch(net, state: list[tuple[int, int]]):
    """The network a (candidate, width) choice per position stands for (validated)."""
    from search_space.arch import Arch, validate

    layers = [pos.choices[c].layer(pos.widths[w], p.stride)
              for (c, w), pos, p in zip(state, net.positions, net.space.positions)]
    return validate(Arch(net.channels, net.length, net.classes, layers[0], tuple(layers[1:])))


def derive_candidates(net, table, budgets: Budgets, n: int, seed: int, draws: int = 256) -> list[tuple[Any, Any, list[str]]]:
    """Distinct networks that fit the budgets: the most likely one (`derive_and_repair`) first,
    then up to n - 1 of `draws` networks drawn from the learned distribution that fit every budget
    as they are and use at least FILLED of the latency budget, most likely first.

    Raises:
        BudgetError: not even the most likely network can be repaired to fit.
    """
    from latency_tables import predict as predictor

    first = derive_and_repair(net, table, budgets)
    margin = _with_margin(budgets)
    log_probability = state_log_probability(net)
    seen, drawn = {first[0].dumps()}, []
    for st in draw_states(net, draws, seed):
        try:
            a = state_arch(net, st)
        except ConfigError:
            continue
        key = a.dumps()
        if key in seen:
            continue
        seen.add(key)
        p = predictor.predict(a, table)
        if _over(p, margin):
            continue
        if budgets.latency_s is not None and p.latency_ms < FILLED * budgets.latency_s * 1e3:
            continue
        drawn.append((log_probability(st), a, p))
    drawn.sort(key=lambda t: -t[0])
    return [first] + [(a, p, [f"drawn from the learned distribution (log-probability {lp:.2f})"])
                      for lp, a, p in drawn[: max(0, n - 1)]]


def score_candidate(net, arch, data: dict[str, tuple[np.ndarray, np.ndarray]], cfg: SearchConfig) -> float:
    """Validation accuracy of `arch` with the supernet's weights after a short fine-tune of them
    as that network alone (`cfg.finetune_epochs`), batch norm recalibrated. The supernet is not
    changed."""
    import copy

    import torch
    from torch.nn import functional as F

    m = copy.deepcopy(net)
    state = m.state_of(arch)
    Xtr, ytr = (torch.from_numpy(a) for a in data["train"])
    gen = torch.Generator().manual_seed(cfg.seed)
    steps = int(round(cfg.finetune_epochs * len(Xtr) / cfg.batch_size))
    if steps:
        opt = torch.optim.Adam(m.weight_parameters(), lr=cfg.weight_lr / 3)
        m.train()
        order = torch.cat([torch.randperm(len(Xtr), generator=gen) for _ in range(int(math.ceil(cfg.finetune_epochs)))])
        for i in range(steps):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            if len(idx) < 2:
                break
            opt.zero_grad()
            F.cross_entropy(m(Xtr[idx], fixed=state), ytr[idx]).backward()
            opt.step()
    return _recalibrated_accuracy(m, arch, data["train"][0], *data["val"], seed=cfg.seed)


# ---- the derivation's journal --------------------------------------------------------------------

DERIVATION_JOURNAL = "derivation.json"


def _derivation_key(run: RunDir, table: Any, budgets: Budgets, digest: str) -> str:
    """What the derivation depends on: the searched supernet, the table's figures, the budgets and
    the search's settings and data (`digest`: candidates are scored on its validation split)."""
    from micronas_base import __version__

    h = hashlib.sha256()
    h.update(run.file("search_checkpoint.pt").read_bytes())
    for part in (table.to_json(), budgets.to_json(),
                 {"margin": PREDICTION_MARGIN, "version": __version__, "digest": digest}):
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()


def derive_journaled(run: RunDir, table: Any, budgets: Budgets, digest: str,
                     derive: Callable[[], tuple[Any, Any, list[str], list[dict] | None]]) -> dict[str, Any]:
    """`derive()` done once per searched supernet: a resume after it reads the journal.

    The derivation (repair and fill, and the candidates' scores: seconds to minutes) is a pure
    function of the supernet checkpoint, the table, the budgets and the search's settings and
    data; its result is journalled in RUN/derivation.json under a hash of those, so a search
    resumed after it (killed in the final training, say) skips it with the same result, byte
    for byte, and a changed input (a table re-measured, other budgets) derives again.

    Returns:
        {"arch" (an Arch), "predicted" (the prediction's JSON), "repairs", "candidates",
        "derivation_seconds", "reused" (whether the journal was used)}.
    """
    from search_space import arch as arch_mod

    key = _derivation_key(run, table, budgets, digest)
    if run.has(DERIVATION_JOURNAL):
        try:
            j = run.read_json(DERIVATION_JOURNAL)
            if isinstance(j, dict) and j.get("key") == key:
                return {"arch": arch_mod.from_json(j["arch"], str(run.file(DERIVATION_JOURNAL))),
                        "predicted": j["predicted"], "repairs": list(j["repairs"]),
                        "candidates": j.get("candidates"), "derivation_seconds": j.get("derivation_seconds"),
                        "reused": True}
        except (ConfigError, KeyError, TypeError):
            log.warning("%s is unreadable; deriving again", run.file(DERIVATION_JOURNAL))
    t0 = time.monotonic()
    the_arch, pred, repairs, candidates = derive()
    done = {"key": key, "arch": the_arch.to_json(), "predicted": pred.to_json(), "repairs": repairs,
            "candidates": candidates, "derivation_seconds": round(time.monotonic() - t0, 1)}
    run.write_json(DERIVATION_JOURNAL, done)
    return {**done, "arch": the_arch, "reused": False}
