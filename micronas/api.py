"""The Python API behind the CLI: `train` and `export`. Notebooks can call these directly.

Each stage writes its artefact into an explicit run directory:

    run.json            run format marker
    config.json         data source and fingerprint, training settings, class names
    arch.json           the architecture (alone rebuilds the network)
    split.json          train/val/test indices
    normalization.json  per-channel mean/std of the training split
    model.pt            fp32 state dict (load with weights_only=True)
    train_log.json      per-epoch history and the checkpoint rule
    model.onnx          dynamo ONNX export, batch norms folded, one file
    model_int8.tflite   full-integer int8, builtins only, 16-byte aligned buffers
    c/model_data.{h,c}  the flatbuffer as a C array plus I/O quantisation and labels
    metrics.json        accuracies, agreement, sizes, the TFLM arena, budget check
    export.log          what the converters printed
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from micronas import __version__
from micronas.data import Dataset, Split, Standardizer, arrays_for, load_dataset, make_split
from micronas.errors import BudgetError, ConfigError, ExportError
from micronas.rundir import RunDir, atomic_write_text, sha256_file
from micronas.train import EpochCallback, TrainConfig
from micronas.units import Budgets, format_size
from search_space import arch as arch_mod

log = logging.getLogger(__name__)

StageCallback = Callable[[str], None]
# LiteRT's optimised kernels may round a product differently from TFLM's reference ones; more
# than one LSB apart means the conversion, not the rounding, is wrong.
MAX_INTERPRETER_LSB_DIFF = 1


def data_fingerprint(ds: Dataset) -> str:
    """sha256 over the data's contents (format-independent): detects a changed data file."""
    h = hashlib.sha256()
    for a in (ds.X, ds.y, ds.X_test, ds.y_test):
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
    h.update("\0".join(ds.class_names).encode())
    return h.hexdigest()


def _data_spec(spec: str | os.PathLike[str]) -> str:
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


def train(data: str | os.PathLike[str], out: str | os.PathLike[str], arch: str | os.PathLike[str] | None = None,
          cfg: TrainConfig = TrainConfig(), force: bool = False,
          on_epoch: EpochCallback | None = None) -> dict[str, Any]:
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

    Returns:
        A summary: run path, arch, split sizes, best epoch and validation accuracy, and
        whether the model was reused.

    Raises:
        DataError, ConfigError: bad data, arch or run directory.
    """
    ds = load_dataset(data)
    the_arch = resolve_arch(arch, ds)
    run = RunDir.create(out)
    split = make_split(ds, seed=cfg.seed)
    fingerprint = data_fingerprint(ds)
    digest = cfg.digest({"arch": the_arch.to_json(), "data": fingerprint})
    summary = {"run": str(run.path), "arch": the_arch.to_json(), "classes": list(ds.class_names),
               "split": {"train": len(split.train), "val": len(split.val), "test": len(split.test),
                         "test_from_file": split.test_from_file, "by_subject": split.by_subject}}

    if run.has("model.pt") and run.has("train_log.json"):
        done = run.read_json("train_log.json")
        if done.get("digest") == digest and not force:
            return {**summary, "reused": True, "best": done["best"]}
        if not force:
            raise ConfigError(f"{run.path} already holds a model trained with other settings, arch or data",
                              "choose another --out, or pass --force to retrain here")
    if force:
        for name in ("model.pt", "train_log.json", "checkpoint.pt", "metrics.json", "stages.json"):
            run.file(name).unlink(missing_ok=True)

    std = Standardizer.fit(ds.X[split.train])
    run.write_json("arch.json", the_arch.to_json())
    run.write_json("split.json", split.to_json())
    run.write_json("normalization.json", std.to_json())
    run.write_json("config.json", {
        "micronas_version": __version__,
        "data": {"spec": _data_spec(data), "fingerprint": fingerprint, "source": ds.source,
                 "channels": ds.n_channels, "length": ds.length},
        "classes": list(ds.class_names),
        "train": asdict(cfg),
        "digest": digest,
    })

    from micronas.train import train as train_loop
    from search_space.network import build

    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    parts = arrays_for(ds, split)
    scaled = {k: (std.apply(X), y.astype(np.int64)) for k, (X, y) in parts.items()}
    result = train_loop(run, lambda: build(the_arch), scaled, cfg, digest, on_epoch)
    return {**summary, "reused": False, "best": result["best"]}


# ---------------------------------------------------------------------------------------------
# export


class _Stages:
    """Skip a stage whose inputs are unchanged since it last completed (stages.json)."""

    def __init__(self, run: RunDir):
        self.run = run
        self.done = run.read_json("stages.json") if run.has("stages.json") else {}

    def fresh(self, name: str, key: str, outputs: list[str]) -> bool:
        return self.done.get(name) == key and all(self.run.has(o) for o in outputs)

    def mark(self, name: str, key: str) -> None:
        self.done[name] = key
        self.run.write_json("stages.json", self.done)


def _load_run(run: RunDir) -> tuple[dict, arch_mod.Arch, Dataset, Split, Standardizer]:
    config = run.read_json("config.json")
    the_arch = arch_mod.from_json(run.read_json("arch.json"), str(run.file("arch.json")))
    ds = load_dataset(config["data"]["spec"])
    if data_fingerprint(ds) != config["data"]["fingerprint"]:
        raise ConfigError(f"the data {config['data']['spec']} changed since {run.path} was trained",
                          "retrain with `micronas train --force`, or restore the original data")
    split = Split.from_json(run.read_json("split.json"))
    std = Standardizer.from_json(run.read_json("normalization.json"))
    return config, the_arch, ds, split, std


def export(run_path: str | os.PathLike[str], budgets: Budgets = Budgets(),
           on_stage: StageCallback | None = None) -> dict[str, Any]:
    """Export a trained run: ONNX, int8 TFLite, C arrays; verify; check budgets.

    Stages whose inputs are unchanged since they last finished are skipped (an interrupted
    export resumes). Verification always runs.

    Args:
        run_path: A run directory holding model.pt (from `train`).
        budgets: RAM (compared with the measured TFLM arena) and flash (compared with the
            flatbuffer size); latency is not measured until the profiling issue lands.
        on_stage: Called with a short description as each stage starts.

    Returns:
        The metrics written to metrics.json.

    Raises:
        ConfigError: the run is incomplete or inconsistent.
        ExportError: a conversion or verification step failed.
        BudgetError: a measured figure exceeds a budget (metrics.json is still written).
    """
    import torch

    from firmware_export import carrays, codegen, convert, hostbuild, verify
    from search_space.network import build, for_export

    stage = on_stage or (lambda _s: None)
    t0 = time.monotonic()
    run = RunDir.open(run_path)
    if not run.has("model.pt"):
        raise ConfigError(f"{run.path} has no trained model (model.pt)",
                          f"train it first: micronas train --out {run.path}")
    config, the_arch, ds, split, std = _load_run(run)
    parts = {k: (std.apply(X), y) for k, (X, y) in arrays_for(ds, split).items()}
    X_test, y_test = parts["test"]
    log_path = run.file("export.log")
    stages = _Stages(run)

    model = build(the_arch)
    model.load_state_dict(torch.load(run.file("model.pt"), weights_only=True))
    folded = for_export(model)
    with torch.no_grad():
        fp32_logits = folded(torch.from_numpy(X_test)).numpy()  # (N, classes)
    fp32_pred = fp32_logits.argmax(1)

    key = sha256_file(run.file("model.pt")) + sha256_file(run.file("arch.json"))
    if not stages.fresh("onnx", key, ["model.onnx"]):
        stage("ONNX export (torch dynamo)")
        convert.export_onnx(folded, (the_arch.input_channels, the_arch.input_length), run.file("model.onnx"), log_path)
        stages.mark("onnx", key)

    calib = np.ascontiguousarray(parts["train"][0].transpose(0, 2, 1))  # (N, C, T) -> (N, T, C)
    key = sha256_file(run.file("model.onnx")) + hashlib.sha256(calib.tobytes()).hexdigest()
    if not stages.fresh("tflite", key, ["model_int8.tflite"]):
        stage("int8 TFLite conversion (onnx2tf + TFLiteConverter, calibrated)")
        convert.onnx_to_int8_tflite(run.file("model.onnx"), calib, run.file("model_int8.tflite"), log_path)
        stages.mark("tflite", key)

    stage("verification (LiteRT and TFLite Micro on the test split)")
    tflite_path = run.file("model_int8.tflite")
    flatbuffer = tflite_path.read_bytes()
    ops = verify.list_ops(tflite_path)
    verify.check_ops(ops, tflite_path)
    qin, qout = verify.io_params(tflite_path)
    expected_in = (1, the_arch.input_length, the_arch.input_channels)
    if qin.shape != expected_in or qout.shape != (1, the_arch.num_classes):
        raise ExportError(f"{tflite_path.name} has input {list(qin.shape)} and output {list(qout.shape)}; "
                          f"expected {list(expected_in)} and [1, {the_arch.num_classes}]")
    x_q = qin.quantize(X_test.transpose(0, 2, 1))  # (N, T, C) int8
    litert_out = verify.run_litert(tflite_path, x_q)  # (N, classes) int8
    tflm_out = verify.run_tflm(flatbuffer, x_q)
    agreement = verify.compare(litert_out, tflm_out)
    if agreement.max_lsb_diff > MAX_INTERPRETER_LSB_DIFF:
        raise ExportError(f"LiteRT and TFLite Micro outputs differ by up to {agreement.max_lsb_diff} LSB "
                          f"(allowed {MAX_INTERPRETER_LSB_DIFF}) on the test split",
                          f"inspect the op list {ops} and {log_path}")
    arena = verify.tflm_arena_bytes(flatbuffer, x_q)
    int8_pred = tflm_out.argmax(1)

    stage("C arrays (model_data.h / model_data.c)")
    info = carrays.ModelInfo(
        input_length=the_arch.input_length, input_channels=the_arch.input_channels,
        input_scale=qin.scale, input_zero_point=qin.zero_point,
        output_scale=qout.scale, output_zero_point=qout.zero_point,
        class_labels=tuple(config["classes"]),
        input_mean=tuple(float(v) for v in std.mean), input_std=tuple(float(v) for v in std.std),
        tflm_arena_bytes=arena,
    )
    header, source = carrays.render(flatbuffer, info)
    atomic_write_text(run.file("c/model_data.h"), header)
    atomic_write_text(run.file("c/model_data.c"), source)

    stage("C runtime (micronas_model.h / .c), host builds checked against TFLite Micro")
    gen = codegen.generate(flatbuffer, info.class_labels, info.input_mean, info.input_std)
    codegen.write(gen, run.file("c"))
    runtime_out = hostbuild.build_and_run(run.file("c"), x_q, the_arch.num_classes)
    sanitized_out = hostbuild.build_and_run(run.file("c"), x_q, the_arch.num_classes, sanitize=True)
    runtime_vs_tflm = verify.compare(runtime_out, tflm_out)
    if runtime_vs_tflm.exact_rate < 1.0 or not np.array_equal(sanitized_out, runtime_out):
        raise ExportError(f"the generated C runtime differs from TFLite Micro on "
                          f"{round((1 - runtime_vs_tflm.exact_rate) * len(x_q))} of {len(x_q)} test windows "
                          f"(max {runtime_vs_tflm.max_lsb_diff} LSB); this is a micronas bug",
                          f"please report it with {tflite_path}")

    acc_fp32 = float(np.mean(fp32_pred == y_test))
    acc_int8 = float(np.mean(int8_pred == y_test))
    metrics: dict[str, Any] = {
        "micronas_version": __version__,
        "test_windows": int(len(y_test)),
        "test_split": "the data file's own test set" if split.test_from_file else "held out from the data",
        "accuracy_fp32": acc_fp32,
        "accuracy_int8": acc_int8,
        "int8_accuracy_drop": acc_fp32 - acc_int8,
        "argmax_agreement_int8_vs_fp32": float(np.mean(int8_pred == fp32_pred)),
        "int8_source": "tflite-micro host interpreter (TFLM reference int8 kernels)",
        "litert_vs_tflm": agreement.to_json(),
        "tflite_bytes": len(flatbuffer),
        "tflm_arena_bytes": arena,
        "tflm_arena_source": "measured: the smallest arena with which the tflite-micro host interpreter "
                             "(64-bit) constructs and invokes, found by bisection; an upper bound for a "
                             "32-bit Cortex-M",
        "tflm_arena_recorded_bytes": verify.tflm_recorded_arena_bytes(flatbuffer, x_q),
        "tflite_ops": ops,
        "arena_bytes_planned": gen.arena_bytes,
        "arena_source": "planned by micronas at export time: exact for the micronas C runtime "
                        "(static arena, tensor lifetimes + best-fit placement)",
        "arena_bytes_without_reuse": gen.arena_naive_bytes,
        "flash_bytes_weights": gen.flash_bytes_weights,
        "flash_bytes_weights_source": "counted: distinct const bytes of the generated C (weights, biases, "
                                      "requantisation tables, kernel params); runtime code not included",
        "flash_bytes_weights_unshared": gen.const_bytes_before_sharing,
        "runtime_layers": len(gen.layers),
        "macs": sum(layer.macs for layer in gen.layers),
        "runtime_vs_tflm": runtime_vs_tflm.to_json(),
        "runtime_vs_litert": verify.compare(runtime_out, litert_out).to_json(),
        "input": {"shape": list(qin.shape), "scale": qin.scale, "zero_point": qin.zero_point,
                  "layout": "time-major, channels interleaved: input[t * C + c]"},
        "output": {"shape": list(qout.shape), "scale": qout.scale, "zero_point": qout.zero_point},
        "budgets": budgets.to_json(),
        "export_seconds": round(time.monotonic() - t0, 2),
    }
    over = []
    checks = {}
    if budgets.ram_bytes is not None:
        planned = gen.arena_bytes
        checks["ram"] = {"budget_bytes": budgets.ram_bytes, "measured_bytes": planned,
                         "what": "micronas runtime arena (planned, exact)", "ok": planned <= budgets.ram_bytes,
                         "tflm_arena_bytes": arena, "tflm_ok": arena <= budgets.ram_bytes}
        if planned > budgets.ram_bytes:
            over.append(f"the micronas runtime arena {format_size(planned)} exceeds the RAM budget "
                        f"{format_size(budgets.ram_bytes)} (TFLite Micro would need {format_size(arena)})")
        elif arena > budgets.ram_bytes:
            log.warning("the micronas runtime fits the RAM budget, but TFLite Micro would need %s",
                        format_size(arena))
    if budgets.flash_bytes is not None:
        checks["flash"] = {"budget_bytes": budgets.flash_bytes, "measured_bytes": len(flatbuffer),
                           "what": "int8 flatbuffer", "ok": len(flatbuffer) <= budgets.flash_bytes}
        if len(flatbuffer) > budgets.flash_bytes:
            over.append(f"model size {format_size(len(flatbuffer))} exceeds the flash budget "
                        f"{format_size(budgets.flash_bytes)}")
    metrics["budget_check"] = checks
    run.write_json("metrics.json", metrics)
    if over:
        raise BudgetError("; ".join(over), "raise the budget, or train a smaller architecture (--arch)")
    return metrics
