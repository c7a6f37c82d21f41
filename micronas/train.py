"""fp32 training of a fixed architecture, checkpointed every epoch so a killed run resumes.

Checkpoint rule (one, documented): the weights of the epoch with the best validation accuracy;
ties go to the lower validation loss, then to the earlier epoch.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from micronas_base.errors import ConfigError
from micronas.rundir import RunDir, atomic_write_bytes

log = logging.getLogger(__name__)


# Epochs of a training whose epochs are not given (`micronas train`, a search's final training):
# DEFAULT_EPOCHS, or more on small data so that the network takes at least MIN_STEPS weight steps.
# 120 epochs of 40 training windows are 480 steps. On PickupGestureWiimoteZ (40 training windows,
# 3 seeds of 10 validation windows) micronas train's default network scored 50 % on validation
# after 480 steps, 73 % after 1,000, 80 % after 1,500 and 70 % after 3,000 (validation loss 1.44,
# 1.17, 1.10, 1.14); JapaneseVowels' searched network (840 steps at 120 epochs) ended with a lower
# validation loss on 2 of 3 seeds after 1,000 and on all 3 after 1,500 (benchmarks/README.md,
# "final_steps.py"). 1,000 steps take most of the gain at two thirds of 1,500's time, which keeps
# `make demo` (BasicMotions, distilled) under 3 minutes. Data of about 260 training windows or
# more keeps 120 epochs.
DEFAULT_EPOCHS = 120
MIN_STEPS = 1_000


def steps_per_epoch(train_windows: int, batch_size: int) -> int:
    """Weight steps of one epoch (a last batch of one window is skipped: batch norm needs two)."""
    bs = batch_size_for(train_windows, batch_size)
    return train_windows // bs + (train_windows % bs >= 2)


def epochs_for(train_windows: int, batch_size: int, min_steps: int = MIN_STEPS, at_least: int = DEFAULT_EPOCHS) -> int:
    """Epochs of at least `min_steps` weight steps on `train_windows` windows, and at least
    `at_least` epochs. The defaults: a training not told its epochs (see DEFAULT_EPOCHS); the
    search's supernet and its window-mean proxy pass their own."""
    return max(at_least, math.ceil(min_steps / steps_per_epoch(train_windows, batch_size)))


@dataclass(frozen=True)
class TrainConfig:
    """Settings of `micronas train`; recorded in config.json so a resume can check them."""

    epochs: int | None = DEFAULT_EPOCHS  # None: `epochs_for` the training windows (`micronas train`'s default)
    # The recipe (issue 13), each part chosen on validation subjects of the watch data only
    # (benchmarks/recipe.py; the figures are in benchmarks/README.md):
    batch_size: int = 32  # at most; a quarter of the training windows on small data (4+ steps per epoch)
    lr: float = 1e-3  # Adam, cosine-annealed to 0 over `epochs`
    weight_decay: float = 1e-4  # light L2 keeps int8 weight ranges tight
    seed: int = 0  # seeds the split, the weights, the batch order and the augmentation
    val_subjects: tuple[str, ...] = ()  # fixed validation subjects (else seeded, about 20 % of the pool)
    # "best_val": the epoch with the best validation accuracy (ties: lower loss, then earlier);
    # "last": the last epoch of the fixed schedule (the search's final training: on wearable data
    # validation accuracy peaks early while test accuracy keeps rising, see RECIPES/issue 6)
    checkpoint_rule: str = "best_val"
    # names from micronas.augment.TRANSFORMS, drawn from the batch-order generator; "rotate" (3-axis
    # groups) is left to the user: it is only right when the channels are x, y, z of a sensor
    augment: tuple[str, ...] = ("jitter", "scale", "shift")
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    ema_decay: float = 0.0  # > 0: keep (and evaluate) an exponential moving average of the weights
    # Knowledge distillation: > 0 trains a wider teacher (every width x `teacher_width`) with the
    # same recipe first, then the network on (1 - distill) x the loss above + distill x T^2 x the
    # KL divergence from the teacher's softened outputs on the same augmented batch (T = 4)
    distill: float = 0.0
    teacher_width: float = 1.5  # x2 gave the same gain at ~2x the teacher time (benchmarks/README.md)
    # remove each window's per-channel mean before standardising (micronas.data.Standardizer); the
    # search decides it on validation data (micronas.stages.search.choose_window_mean)
    remove_window_mean: bool = False

    def digest(self, extra: dict[str, Any]) -> str:
        settings = asdict(self)
        if not self.distill:  # runs from before distillation keep their digest (and resume)
            del settings["distill"], settings["teacher_width"]
        if not self.remove_window_mean:  # and so do runs from before the option
            del settings["remove_window_mean"]
        blob = json.dumps({"train": settings, **extra}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


EpochCallback = Callable[[int, int, dict[str, float]], None]


def _evaluate(model, X, y) -> tuple[float, float]:
    import torch
    from torch.nn import functional as F

    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        X, y = X.to(device), y.to(device)
        logits = model(X)  # (N, classes)
        loss = float(F.cross_entropy(logits, y))
        acc = float((logits.argmax(1) == y).float().mean())
    return acc, loss


DISTILL_TEMPERATURE = 4.0  # Hinton et al.'s range (2-5); the T^2 factor keeps the gradients' scale


def distill_loss(logits, teacher_logits, hard_loss, weight: float):
    """(1 - weight) x `hard_loss` + weight x T^2 x KL(teacher || student), both softened by T."""
    from torch.nn import functional as F

    t = DISTILL_TEMPERATURE
    soft = F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                    reduction="batchmean", log_target=True)
    return (1 - weight) * hard_loss + weight * t * t * soft


def run_epoch(model, X, y, opt, batch_size: int, gen, augment: tuple[str, ...] = (), label_smoothing: float = 0.0,
              ema=None, teacher=None, distill: float = 0.0) -> float:
    """One pass over (X, y) in a seeded random order; returns the mean training loss.

    The order and the augmentation are drawn on the CPU (`gen` is a CPU generator) and each batch
    is moved to the model's device afterwards, so a GPU run sees the same batches as a CPU run.

    Args:
        augment: Transforms of `micronas.augment`, drawn from `gen` after the batch order.
        label_smoothing: Cross-entropy label smoothing.
        ema: A `torch.optim.swa_utils.AveragedModel` updated after every step, or None.
        teacher: A trained model (in eval mode, on the same device) whose outputs on each
            augmented batch the model also learns (`distill_loss`), or None.
        distill: The weight of the teacher's term.
    """
    import torch
    from torch.nn import functional as F

    from micronas import augment as aug

    model.train()
    device = next(model.parameters()).device
    order = torch.randperm(len(X), generator=gen)
    total, seen = 0.0, 0
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        if len(idx) < 2 and len(order) > 1:  # batch norm needs two samples
            continue
        xb, yb = X[idx], y[idx]
        if augment:
            xb = aug.apply(xb, augment, gen)
        mixed = None
        if "mixup" in augment:
            xb, perm, w = aug.mix(xb, gen)
            mixed = (yb[perm].to(device), w)
        xb, yb = xb.to(device), yb.to(device)  # (B, C, T), (B,): drawn on the CPU, then moved
        opt.zero_grad()
        logits = model(xb)
        if mixed is not None:
            loss = (mixed[1] * F.cross_entropy(logits, yb, label_smoothing=label_smoothing)
                    + (1 - mixed[1]) * F.cross_entropy(logits, mixed[0], label_smoothing=label_smoothing))
        else:
            loss = F.cross_entropy(logits, yb, label_smoothing=label_smoothing)
        if teacher is not None and distill > 0:
            with torch.no_grad():
                taught = teacher(xb)
            loss = distill_loss(logits, taught, loss, distill)
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update_parameters(model)
        total, seen = total + float(loss.detach()) * len(idx), seen + len(idx)
    return total / max(seen, 1)


def atomic_torch_save(path, obj: Any) -> None:
    """`torch.save` to a temporary file, then rename: a kill never leaves half a file."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def save_checkpoint(path, digest: str, epoch: int, stateful: dict[str, Any], gen, **extra: Any) -> None:
    """A resumable epoch: the state of every object in `stateful` (modules, optimisers,
    schedulers) under its key, the batch-order generator, torch's RNG, and `extra`."""
    import torch

    atomic_torch_save(path, {"digest": digest, "epoch": epoch, **{k: o.state_dict() for k, o in stateful.items()},
                             "generator": gen.get_state(), "torch_rng": torch.get_rng_state(), **extra})


def resume_from(ckpt: dict[str, Any], stateful: dict[str, Any], gen) -> int:
    """Load a `save_checkpoint` checkpoint into the same objects; returns the next epoch."""
    import torch

    for k, o in stateful.items():
        o.load_state_dict(ckpt[k])
    gen.set_state(ckpt["generator"])
    torch.set_rng_state(ckpt["torch_rng"])
    return int(ckpt["epoch"]) + 1


def read_checkpoint(path, start_over: str) -> dict[str, Any] | None:
    """The checkpoint at `path` (None when there is none).

    Raises:
        ConfigError: it is corrupt; the hint says to delete it and `start_over`.
    """
    import torch

    if not path.exists():
        return None
    try:
        return torch.load(path, weights_only=True, map_location="cpu")  # a GPU run's, read anywhere
    except Exception as e:  # a corrupt checkpoint is not worth keeping
        raise ConfigError(f"{path} is corrupt ({type(e).__name__})", f"delete it to {start_over}: rm {path}") from None


def batch_size_for(train_windows: int, batch_size: int) -> int:
    """The batch a training (or search) uses: `batch_size`, smaller on small data (at least 4
    steps per epoch)."""
    return max(2, min(batch_size, train_windows // 4))


def train(run: RunDir, build_model: Callable[[], Any], data: dict[str, tuple[np.ndarray, np.ndarray]],
          cfg: TrainConfig, digest: str, on_epoch: EpochCallback | None = None, device: str = "cpu",
          teacher: Any = None) -> dict[str, Any]:
    """Train a model on standardised data, resuming from `run/checkpoint.pt` when it matches.

    Args:
        run: The run directory (receives checkpoint.pt, model.pt, train_log.json).
        build_model: Builds the network; called after seeding, so the initial weights depend
            on `cfg.seed` only, not on what used the global RNG before.
        data: {"train": (X, y), "val": (X, y)}, X (N, C, T) float32 standardised, y int64.
        cfg: Training settings.
        digest: Identifies the settings + arch + data; a checkpoint with another digest is
            never resumed.
        on_epoch: Called after every epoch with (epoch, epochs, log entry).
        device: The torch device of the weights ("cpu", "cuda"); data stays on the CPU and
            moves a batch at a time; the saved weights are on the CPU either way.
        teacher: A trained model distilled into this one with weight `cfg.distill`, or None.

    Returns:
        The summary written to train_log.json.
    """
    import torch

    torch.manual_seed(cfg.seed)
    model = build_model().to(device)  # built on the CPU after seeding: the same initial weights on any device
    if teacher is not None:
        teacher = teacher.to(device).eval()
    Xtr, ytr = (torch.from_numpy(a) for a in data["train"])
    Xva, yva = (torch.from_numpy(a) for a in data["val"])
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    gen = torch.Generator().manual_seed(cfg.seed)
    batch_size = batch_size_for(len(Xtr), cfg.batch_size)
    ema = None
    if cfg.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    kept = ema.module if ema is not None else model  # the weights that are evaluated and saved
    history: list[dict[str, float]] = []
    best: dict[str, Any] = {"epoch": -1, "val_acc": -1.0, "val_loss": float("inf")}
    best_state = None
    start = 0

    ckpt_path = run.file("checkpoint.pt")
    ckpt = read_checkpoint(ckpt_path, "train from scratch")
    stateful = {"model": model, "optimizer": opt, "scheduler": sched, **({"ema": ema} if ema is not None else {})}
    if ckpt is not None:
        if ckpt.get("digest") == digest:
            start = resume_from(ckpt, stateful, gen)
            history, best, best_state = ckpt["history"], ckpt["best"], ckpt["best_state"]
            log.info("resuming training at epoch %d of %d from %s", start + 1, cfg.epochs, ckpt_path)

    for epoch in range(start, cfg.epochs):
        train_loss = run_epoch(model, Xtr, ytr, opt, batch_size, gen, cfg.augment, cfg.label_smoothing, ema,
                               teacher, cfg.distill)
        sched.step()
        val_acc, val_loss = _evaluate(kept, Xva, yva)
        entry = {"epoch": epoch, "train_loss": train_loss, "val_acc": val_acc, "val_loss": val_loss}
        history.append(entry)
        if (val_acc, -val_loss) > (best["val_acc"], -best["val_loss"]):
            best = {"epoch": epoch, "val_acc": val_acc, "val_loss": val_loss}
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in kept.state_dict().items()}
        save_checkpoint(ckpt_path, digest, epoch, stateful, gen, history=history, best=best, best_state=best_state)
        if on_epoch:
            on_epoch(epoch, cfg.epochs, entry)

    if cfg.checkpoint_rule == "last":
        best_state = {k: v.detach().to("cpu", copy=True) for k, v in kept.state_dict().items()}
        last = history[-1]
        best = {"epoch": last["epoch"], "val_acc": last["val_acc"], "val_loss": last["val_loss"]}
        rule = "the last epoch of the fixed cosine schedule"
    else:
        rule = "best validation accuracy, ties: lower validation loss, then earlier epoch"
    atomic_torch_save(run.file("model.pt"), best_state)
    summary = {"digest": digest, "checkpoint_rule": rule, "best": best, "history": history, "device": str(device)}
    run.write_json("train_log.json", summary)
    ckpt_path.unlink(missing_ok=True)
    return summary
