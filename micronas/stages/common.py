"""What the stages share: the run's inputs (data, split, normalisation, arch), the skip-if-fresh
record of finished stages, and the folded network export converts."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from micronas.data import Dataset, Split, Standardizer, load_dataset
from micronas.rundir import RunDir
from micronas_base.errors import ConfigError, DataError
from search_space import arch as arch_mod

StageCallback = Callable[[str], None]
QAT_MODEL = "model_qat.pt"  # the folded network after quantisation-aware fine-tuning; export prefers it


def no_stage(_s: str) -> None:
    """A progress callback that shows nothing."""


def data_fingerprint(ds: Dataset) -> str:
    """sha256 over the data's contents (format-independent): detects a changed data file."""
    h = hashlib.sha256()
    for a in (ds.X, ds.y, ds.X_test, ds.y_test):
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
    h.update("\0".join(ds.class_names).encode())
    return h.hexdigest()


def data_spec(spec: str | os.PathLike[str]) -> str:
    """Record paths absolutely so `export` finds the data from any working directory."""
    s = str(spec)
    return s if s == "basicmotions" else str(Path(s).resolve())


def resolve_arch(arch_spec: str | os.PathLike[str] | None, ds: Dataset) -> arch_mod.Arch:
    """Load the arch; the shipped default adapts to the data's shape, a user's file must match.

    Raises:
        ConfigError: a user arch whose input shape or class count differs from the data's.
    """
    arch = arch_mod.load(arch_spec or arch_mod.DEFAULT_ARCH)
    shape = (ds.n_channels, ds.length, ds.n_classes)
    if arch_spec is None or str(arch_spec) == arch_mod.DEFAULT_ARCH:
        return arch.with_data_shape(*shape)
    if (arch.input_channels, arch.input_length, arch.num_classes) != shape:
        raise ConfigError(
            f"arch {arch_spec} expects {arch.input_channels} channels x {arch.input_length} samples and "
            f"{arch.num_classes} classes; the data has {shape[0]} x {shape[1]} and {shape[2]} classes",
            "edit input_channels, input_length and num_classes in the arch, or omit --arch to use the default",
        )
    return arch


class Stages:
    """Skip a stage whose inputs are unchanged since it last completed (stages.json)."""

    def __init__(self, run: RunDir):
        self.run = run
        self.done = run.read_json("stages.json") if run.has("stages.json") else {}

    def fresh(self, name: str, key: str, outputs: list[str]) -> bool:
        return self.done.get(name) == key and all(self.run.has(o) for o in outputs)

    def mark(self, name: str, key: str) -> None:
        self.done[name] = key
        self.run.write_json("stages.json", self.done)


@dataclass(frozen=True)
class RunInputs:
    """A trained run's config.json, arch, data, split and normalisation; unpacks as the tuple
    `(config, arch, data, split, std)`."""

    config: dict[str, Any]
    arch: arch_mod.Arch
    data: Dataset
    split: Split
    std: Standardizer

    def __iter__(self):
        return iter((self.config, self.arch, self.data, self.split, self.std))


def load_run(run: RunDir) -> RunInputs:
    """Read what a trained run was trained on, checking the data has not changed.

    Raises:
        ConfigError: the data cannot be read any more, or changed since training.
    """
    config = run.read_json("config.json")
    the_arch = arch_mod.from_json(run.read_json("arch.json"), str(run.file("arch.json")))
    try:
        ds = load_dataset(config["data"]["spec"])
    except DataError as e:
        raise ConfigError(f"the data {run.path} was trained on ({config['data']['spec']}, recorded in config.json) "
                          f"cannot be read: {e.message}",
                          "restore the file at that path, or train again on its new location") from None
    if data_fingerprint(ds) != config["data"]["fingerprint"]:
        raise ConfigError(f"the data {config['data']['spec']} changed since {run.path} was trained",
                          "retrain with `micronas train --force`, or restore the original data")
    split = Split.from_json(run.read_json("split.json"))
    std = Standardizer.from_json(run.read_json("normalization.json"))
    return RunInputs(config, the_arch, ds, split, std)


def folded_model(run: RunDir, the_arch: arch_mod.Arch):
    """The network export converts: model.pt with batch norms folded, or the QAT fine-tuned one."""
    import torch

    from search_space.network import build, for_export

    model = build(the_arch)
    _load_weights(model, run.file("model.pt"), f"retrain it: micronas train --out {run.path} --force")
    folded = for_export(model)
    if run.has(QAT_MODEL):
        _load_weights(folded, run.file(QAT_MODEL),
                      f"delete it (export fine-tunes again if needed): rm {run.file(QAT_MODEL)}")
    return folded


def _load_weights(model: Any, path: Path, hint: str) -> None:
    """Load a state dict saved by micronas into `model`.

    torch's own messages for a truncated or tampered file are long and, for a file that holds
    more than tensors, advise `weights_only=False`, which would run the file's code: never shown.

    Raises:
        ConfigError: the file cannot be read as weights for this architecture.
    """
    import torch

    try:
        state = torch.load(path, weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError...: all "not our weights"
        raise ConfigError(f"{path} is truncated, corrupt or not a micronas model (torch cannot read it as "
                          "tensors only)", hint) from None
    try:
        model.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - a state dict of another architecture, or not a dict at all
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{path} does not hold weights for the run's arch.json ({first})", hint) from None


def have_emulator() -> bool:
    """QEMU and the ARM cross compiler are installed: missing table entries can be measured."""
    return bool(shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"))


MAX_DEFAULT_THREADS = 4  # small 1-D conv nets gain little past 4 intra-op threads; more only contends


def torch_threads(requested: int | None = None) -> tuple[int, str]:
    """How many intra-op threads torch should use, and why (for the start-of-run echo).

    The rule, first that applies: `requested` (`--threads`), MICRONAS_THREADS, OMP_NUM_THREADS
    (the usual way to share a machine), else min(4, CPUs this process may run on). A second job
    on a 2-core machine with torch's default (every core) slowed a search about tenfold.

    Args:
        requested: An explicit thread count (None: from the environment or the machine).

    Returns:
        (threads, where the number came from).

    Raises:
        UsageError: a count below 1, or an environment value that is not a positive integer.
    """
    from micronas_base.errors import UsageError

    if requested is not None:
        if requested < 1:
            raise UsageError(f"--threads {requested} is not a thread count", "give 1 or more, e.g. --threads 2")
        return requested, "--threads"
    for var in ("MICRONAS_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value:
            if not value.isdigit() or int(value) < 1:
                raise UsageError(f"{var}={value!r} is not a thread count", f"set it to 1 or more, or unset {var}")
            return int(value), var
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(MAX_DEFAULT_THREADS, cpus), f"min({MAX_DEFAULT_THREADS}, {cpus} CPUs available)"


def set_torch_threads(requested: int | None = None) -> tuple[int, str]:
    """Set torch's intra-op threads by `torch_threads` and its inter-op threads to 1 (these
    networks have no parallel branches worth a second pool).

    Args:
        requested: An explicit thread count (None: the rule of `torch_threads`).

    Returns:
        (threads, where the number came from).

    Raises:
        UsageError: as `torch_threads`.
    """
    import torch

    n, why = torch_threads(requested)
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # torch allows it once, before inter-op work starts; it already holds
        pass
    return n, why


DEVICES = ("auto", "cpu", "cuda")


def torch_device(requested: str = "cpu") -> tuple[str, str]:
    """The torch device to train on, and why (for the start-of-run echo).

    Args:
        requested: "cpu" (the default and the tested path), "cuda", or "auto" (cuda when torch
            sees a GPU, else cpu).

    Returns:
        ("cpu" | "cuda", where the choice came from).

    Raises:
        UsageError: not one of DEVICES.
        ToolchainError: "cuda" asked for and torch sees no GPU.
    """
    from micronas_base.errors import ToolchainError, UsageError

    if requested not in DEVICES:
        raise UsageError(f"--device {requested!r} is not a device", f"use one of {', '.join(DEVICES)}")
    if requested == "cpu":
        return "cpu", "--device cpu"
    import torch

    seen = torch.cuda.is_available()
    if requested == "auto":
        return ("cuda", "--device auto: torch sees a GPU") if seen else ("cpu", "--device auto: torch sees no GPU")
    if not seen:
        raise ToolchainError(f"--device cuda: torch {torch.__version__} sees no GPU "
                             f"(built for CUDA: {torch.version.cuda or 'no, a CPU-only build'})",
                             "use --device cpu (or auto); for a GPU, install a CUDA build of the same torch version "
                             "over the CPU one, on a machine with a GPU (docs/commands/sweep.md, GPU)")
    return "cuda", "--device cuda"
