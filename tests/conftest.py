"""Shared fixtures: a tiny synthetic dataset and one trained + exported run per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

# Small but learnable: 3 classes that differ in frequency and in which channel carries an offset;
# 4 channels, odd length 37 (so the stride-2 layers see odd and even lengths).
TINY_ARCH = {
    "format": "micronas.arch/1",
    "input_channels": 4,
    "input_length": 37,
    "num_classes": 3,
    "stem": {"op": "conv", "out": 8, "kernel": 3, "stride": 1},
    "cells": [
        {"op": "dyconv", "out": 8, "kernel": 5, "stride": 2, "experts": 2},
        {"op": "dwsep", "out": 12, "kernel": 3, "stride": 2},
        {"op": "skip"},
    ],
}


def make_tiny(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    t = np.arange(37)
    X = np.stack([np.sin(2 * np.pi * (k + 1) * t / 37 + rng.uniform(0, 6, (4, 1))) for k in y])
    X[np.arange(n), y] += 1.0  # class k: offset on channel k
    X = (X + 0.3 * rng.standard_normal(X.shape)).astype(np.float32)  # (N, 4, 37)
    return X, y


@pytest.fixture(scope="session", autouse=True)
def _run_outside_the_checkout(tmp_path_factory):
    """Every test runs in a scratch folder: what the product writes to ./ (latency-table entries
    measured on demand go to ./micronas-tables) stays out of the checkout, where it would be found
    by later runs and tests."""
    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(here)


@pytest.fixture(scope="session")
def basicmotions():
    """BasicMotions' train and validation arrays (seed-0 split), standardised as train makes them."""
    from micronas.data import Standardizer, arrays_for, load_dataset, make_split

    ds = load_dataset("basicmotions")
    parts = arrays_for(ds, make_split(ds, seed=0))
    std = Standardizer.fit(parts["train"][0])
    return {k: (std.apply(X), y.astype(np.int64)) for k, (X, y) in parts.items() if k in ("train", "val")}


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory) -> Path:
    X, y = make_tiny()
    p = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(p, X=X, y=np.array(["low", "mid", "high"])[y])
    return p


@pytest.fixture(scope="session")
def tiny_arch(tmp_path_factory) -> Path:
    import json

    p = tmp_path_factory.mktemp("arch") / "arch.json"
    p.write_text(json.dumps(TINY_ARCH))
    return p


@pytest.fixture(scope="session")
def exported_run(tmp_path_factory, tiny_npz, tiny_arch) -> Path:
    """Train (15 epochs) and export the tiny arch once; tests copy it before changing it."""
    from micronas import api
    from micronas.train import TrainConfig

    run = tmp_path_factory.mktemp("runs") / "tiny"
    api.train(tiny_npz, run, arch=tiny_arch, cfg=TrainConfig(epochs=15, seed=0))
    api.export(run)
    return run


@pytest.fixture
def run_copy(exported_run, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(exported_run, dst)
    return dst


def toolchain(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (run `make setup` as root, or scripts/toolchain.sh)")
    return path
