"""The train stage: an architecture trained on a dataset into a run directory (resumable)."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from micronas.data import Standardizer, arrays_for, load_dataset, make_split
from micronas.results import SplitSizes, TrainResult
from micronas.rundir import TEACHER_DIR, RunDir
from micronas.stages.common import QAT_MODEL, data_fingerprint, data_spec, resolve_arch, set_torch_threads, torch_device
from micronas.train import EpochCallback, TrainConfig, epochs_for
from micronas_base import __version__
from micronas_base.errors import ConfigError


def train(data: str | os.PathLike[str], out: str | os.PathLike[str], arch: str | os.PathLike[str] | None = None,
          cfg: TrainConfig = TrainConfig(), force: bool = False,
          on_epoch: EpochCallback | None = None, threads: int | None = None, device: str = "cpu") -> TrainResult:
    """Train an architecture on a dataset into a run directory.

    Resumes from the last finished epoch when the run holds a checkpoint with the same settings;
    does nothing when the run already holds a model trained with the same settings.

    Args:
        data: "basicmotions" or a .npz/.ts/.csv path.
        out: Run directory (created).
        arch: An arch.json path, a shipped arch name, or None for the default.
        cfg: Training settings.
        force: Retrain even when the run holds a model (from any settings).
        on_epoch: Progress callback.
        threads: torch's intra-op threads (None: MICRONAS_THREADS, OMP_NUM_THREADS, else
            min(4, CPUs); see `set_torch_threads`).
        device: "cpu", "cuda" or "auto" (see `torch_device`); recorded in train_log.json.

    Returns:
        The run path, arch, split sizes, best epoch and validation accuracy, and whether the
        model was reused.

    Raises:
        DataError, ConfigError: bad data, arch or run directory.
        UsageError: a thread count below 1, or an unknown device.
        ToolchainError: "cuda" without a GPU torch can see.
    """
    dev, _ = torch_device(device)
    set_torch_threads(threads)  # first: a shared machine is oversubscribed by torch's default
    ds = load_dataset(data)
    the_arch = resolve_arch(arch, ds)
    split = make_split(ds, seed=cfg.seed, val_subjects=cfg.val_subjects)
    if cfg.epochs is None:  # `micronas train` without --epochs: 120, more on small data
        cfg = replace(cfg, epochs=epochs_for(len(split.train), cfg.batch_size))
    run = RunDir.create(out)  # only now: a bad split option leaves nothing behind
    with run.locked("train"):
        fingerprint = data_fingerprint(ds)
        digest = cfg.digest({"arch": the_arch.to_json(), "data": fingerprint})
        sizes = SplitSizes(len(split.train), len(split.val), len(split.test), split.test_from_file, split.by_subject)

        def result(reused: bool, best: dict) -> TrainResult:
            return TrainResult(str(run.path), the_arch.to_json(), list(ds.class_names), sizes, reused, best)

        if run.has("model.pt") and run.has("train_log.json"):
            done = run.read_json("train_log.json")
            if done.get("digest") == digest and not force:
                return result(True, done["best"])
            if not force:
                raise ConfigError(f"{run.path} already holds a model trained with other settings, arch or data",
                                  "choose another --out, or pass --force to retrain here")
        if force:
            for name in ("model.pt", QAT_MODEL, "train_log.json", "checkpoint.pt", "metrics.json", "stages.json"):
                run.file(name).unlink(missing_ok=True)
            shutil.rmtree(run.file(TEACHER_DIR), ignore_errors=True)

        std = Standardizer.fit(ds.X[split.train], remove_window_mean=cfg.remove_window_mean)
        run.write_json("arch.json", the_arch.to_json())
        run.write_json("split.json", split.to_json())
        run.write_json("normalization.json", std.to_json())
        run.write_json("config.json", {
            "micronas_version": __version__,
            "data": {"spec": data_spec(data), "fingerprint": fingerprint, "source": ds.source,
                     "channels": ds.n_channels, "length": ds.length},
            "classes": list(ds.class_names),
            "train": asdict(cfg),
            "digest": digest,
        })

        from micronas.train import train as train_loop
        from search_space.network import build

        parts = arrays_for(ds, split)
        scaled = {k: (std.apply(X), y.astype(np.int64)) for k, (X, y) in parts.items()}
        teacher = _teacher(run, the_arch, scaled, cfg, fingerprint, on_epoch, dev) if cfg.distill > 0 else None
        out_ = train_loop(run, lambda: build(the_arch), scaled, cfg, digest, on_epoch, device=dev, teacher=teacher)
        return result(False, out_["best"])


def _teacher(run: RunDir, the_arch: Any, data: dict, cfg: TrainConfig, fingerprint: str,
             on_epoch: EpochCallback | None, device: str) -> Any:
    """The network distilled from: `the_arch` with every width x cfg.teacher_width, trained with
    the same recipe into RUN/teacher (resumable; kept for a resume of the student; never exported)."""
    import torch

    from micronas.train import train as train_loop
    from search_space.network import build

    wide = the_arch.widened(cfg.teacher_width)
    tcfg = replace(cfg, distill=0.0)
    digest = tcfg.digest({"arch": wide.to_json(), "data": fingerprint, "role": "teacher"})
    trun = RunDir.create(run.file(TEACHER_DIR))
    done = trun.read_json("train_log.json") if trun.has("train_log.json") and trun.has("model.pt") else None
    if done is None or done.get("digest") != digest:
        trun.write_json("arch.json", wide.to_json())
        tell = None if on_epoch is None else (lambda e, n, entry: on_epoch(e, n, {**entry, "teacher": True}))
        train_loop(trun, lambda: build(wide), data, tcfg, digest, tell, device=device)
    model = build(wide)
    model.load_state_dict(torch.load(trun.file("model.pt"), map_location="cpu", weights_only=True))
    return model
