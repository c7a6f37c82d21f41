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

import contextlib
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from micronas_base import __version__
from micronas.data import Dataset, Split, Standardizer, arrays_for, load_dataset, make_split
from micronas_base.errors import BudgetError, ConfigError, DataError, ExportError
from micronas.rundir import RunDir, atomic_write_text, sha256_file
from micronas.train import EpochCallback, TrainConfig
from micronas.units import Budgets, format_size
from search_space import arch as arch_mod

log = logging.getLogger(__name__)

StageCallback = Callable[[str], None]
# LiteRT's optimised kernels may round a product differently from TFLM's reference ones, and a
# one-LSB difference in an attention branch (average pool -> FC -> softmax) can reach two LSB at
# the logits; two attention layers in a row compound it (3 LSB on 1 of 1,145 watch-data windows,
# dyconv after kdna). More than four apart means the conversion, not the rounding, is wrong.
# (The generated C runtime is held to TFLM exactly, not to this tolerance.)
MAX_INTERPRETER_LSB_DIFF = 4


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
    split = make_split(ds, seed=cfg.seed, val_subjects=cfg.val_subjects)
    run = RunDir.create(out)  # only now: a bad split option leaves nothing behind
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
        for name in ("model.pt", QAT_MODEL, "train_log.json", "checkpoint.pt", "metrics.json", "stages.json"):
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
    return config, the_arch, ds, split, std


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> list[list[int]]:
    """Counts, rows = true class, columns = predicted class."""
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (y_true.astype(np.int64), y_pred.astype(np.int64)), 1)
    return m.tolist()


QAT_MODEL = "model_qat.pt"  # the folded network after quantisation-aware fine-tuning; export prefers it


def _folded_model(run: RunDir, the_arch: arch_mod.Arch):
    """The network export converts: model.pt with batch norms folded, or the QAT fine-tuned one."""
    import torch

    from search_space.network import build, for_export

    model = build(the_arch)
    model.load_state_dict(torch.load(run.file("model.pt"), weights_only=True))
    folded = for_export(model)
    if run.has(QAT_MODEL):
        folded.load_state_dict(torch.load(run.file(QAT_MODEL), weights_only=True))
    return folded


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

    folded = _folded_model(run, the_arch)
    with torch.no_grad():
        fp32_logits = folded(torch.from_numpy(X_test)).numpy()  # (N, classes)
    fp32_pred = fp32_logits.argmax(1)

    key = sha256_file(run.file("model.pt")) + sha256_file(run.file("arch.json"))
    if run.has(QAT_MODEL):
        key += sha256_file(run.file(QAT_MODEL))
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
    recorded_arena = verify.tflm_recorded_arena_bytes(flatbuffer, x_q)
    arena = verify.tflm_arena_bytes(flatbuffer, x_q, recorded=recorded_arena)
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

    prediction = _predict_for_export(the_arch, gen, config.get("target"))
    acc_fp32 = float(np.mean(fp32_pred == y_test))
    acc_int8 = float(np.mean(int8_pred == y_test))
    metrics: dict[str, Any] = {
        "micronas_version": __version__,
        "test_windows": int(len(y_test)),
        "test_split": "the data file's own test set" if split.test_from_file else "held out from the data",
        "accuracy_fp32": acc_fp32,
        "accuracy_int8": acc_int8,
        "int8_accuracy_drop": acc_fp32 - acc_int8,
        "weights": (f"{QAT_MODEL}: quantisation-aware fine-tuned from model.pt" if run.has(QAT_MODEL)
                    else "model.pt (post-training quantisation)"),
        "argmax_agreement_int8_vs_fp32": float(np.mean(int8_pred == fp32_pred)),
        "classes": list(config["classes"]),
        "confusion_int8": _confusion(y_test, int8_pred, len(config["classes"])),
        "int8_source": "tflite-micro host interpreter (TFLM reference int8 kernels)",
        "litert_vs_tflm": agreement.to_json(),
        "tflite_bytes": len(flatbuffer),
        "tflm_arena_bytes": arena,
        "tflm_arena_source": "measured: the smallest arena with which the tflite-micro host interpreter "
                             "(64-bit) constructs and invokes, found by bisection; an upper bound for a "
                             "32-bit Cortex-M",
        "tflm_arena_recorded_bytes": recorded_arena,
        "tflite_ops": ops,
        "arena_bytes_planned": gen.arena_bytes,
        "arena_source": "planned by micronas at export time: exact for the micronas C runtime "
                        "(static arena, tensor lifetimes + best-fit placement)",
        "arena_bytes_without_reuse": gen.arena_naive_bytes,
        "arena_timeline": gen.timeline,
        "flash_bytes_weights": gen.flash_bytes_weights,
        "flash_bytes_weights_source": "counted: distinct const bytes of the generated C (weights, biases, "
                                      "requantisation tables, kernel params); runtime code not included",
        "flash_bytes_weights_unshared": gen.const_bytes_before_sharing,
        **prediction,
        "runtime_layers": len(gen.layers),
        "runtime_layer_ops": [layer.op for layer in gen.layers],
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
        flash, what = ((prediction["predicted_flash_bytes"], "firmware flash (predicted: "
                        + prediction["predicted_flash_source"] + ")") if prediction.get("predicted_flash_bytes") is not None
                       else (len(flatbuffer), "int8 flatbuffer (no latency table for this shape: no firmware estimate)"))
        checks["flash"] = {"budget_bytes": budgets.flash_bytes, "measured_bytes": flash, "what": what,
                           "ok": flash <= budgets.flash_bytes}
        if flash > budgets.flash_bytes:
            over.append(f"{what.split(' (')[0]} {format_size(flash)} exceeds the flash budget "
                        f"{format_size(budgets.flash_bytes)}")
    metrics["budget_check"] = checks
    run.write_json("metrics.json", metrics)
    if over:
        raise BudgetError("; ".join(over), "raise the budget, or train a smaller architecture (--arch)")
    return metrics


QAT_TRIGGER = 0.01  # quantisation-aware fine-tuning when int8 loses more than 1 point (validation split)


def _val_accuracy(run: RunDir, loaded: tuple) -> tuple[float, float]:
    """(fp32, int8) accuracy on the validation split: the exported network and its int8 TFLite model.

    `loaded`: `_load_run(run)`, read once by the caller.
    """
    import torch

    from firmware_export import verify

    config, the_arch, ds, split, std = loaded
    X, y = arrays_for(ds, split)["val"]
    X = std.apply(X)
    with torch.no_grad():
        fp32 = _folded_model(run, the_arch)(torch.from_numpy(X)).numpy().argmax(1)
    tflite_path = run.file("model_int8.tflite")
    qin, _ = verify.io_params(tflite_path)
    int8 = verify.run_litert(tflite_path, qin.quantize(X.transpose(0, 2, 1))).argmax(1)
    return float(np.mean(fp32 == y)), float(np.mean(int8 == y))


def export_int8(run_path: str | os.PathLike[str], budgets: Budgets = Budgets(), qat_epochs: int = 10,
                on_stage: StageCallback | None = None) -> dict[str, Any]:
    """`export`, then quantisation-aware fine-tuning when post-training quantisation loses more
    than 1 point of validation accuracy; the fine-tuned weights are kept only when their int8
    validation accuracy is higher. The decision never looks at the test split.

    Returns:
        The metrics of the exported model, with a "qat" entry saying what was done and why.
    """
    from micronas import qat
    from micronas.train import atomic_torch_save

    stage = on_stage or (lambda _s: None)
    run = RunDir.open(run_path)
    run.file(QAT_MODEL).unlink(missing_ok=True)  # a fine-tuning of an earlier model.pt
    metrics = export(run.path, budgets, on_stage=stage)
    loaded = _load_run(run)
    fp32, ptq = _val_accuracy(run, loaded)
    record: dict[str, Any] = {"validation_accuracy_fp32": fp32, "validation_accuracy_int8_ptq": ptq,
                              "trigger": f"fp32 - int8 > {QAT_TRIGGER:g} on the validation split", "ran": False}
    if fp32 - ptq > QAT_TRIGGER:
        stage(f"int8 loses {100 * (fp32 - ptq):.1f} points on the validation split: quantisation-aware "
              f"fine-tuning ({qat_epochs} epochs)")
        config, the_arch, ds, split, std = loaded
        X, y = arrays_for(ds, split)["train"]
        tuned = qat.fine_tune(_folded_model(run, the_arch), (std.apply(X), y.astype(np.int64)), epochs=qat_epochs,
                              seed=int(config["train"]["seed"]))
        atomic_torch_save(run.file(QAT_MODEL), tuned.state_dict())
        ptq_test = metrics["accuracy_int8"]
        metrics = export(run.path, budgets, on_stage=stage)
        _, qat_val = _val_accuracy(run, loaded)
        record.update(ran=True, epochs=qat_epochs, validation_accuracy_int8_qat=qat_val,
                      test_accuracy_int8_ptq=ptq_test, test_accuracy_int8_qat=metrics["accuracy_int8"])
        if qat_val <= ptq:
            stage(f"fine-tuning did not help on the validation split ({100 * qat_val:.1f} % vs "
                  f"{100 * ptq:.1f} %): back to post-training quantisation")
            run.file(QAT_MODEL).unlink()
            metrics = export(run.path, budgets, on_stage=stage)
        record["kept"] = "qat" if qat_val > ptq else "ptq"
    metrics["qat"] = record
    run.write_json("metrics.json", metrics)
    return metrics


def board_budgets(budgets: Budgets, board: Any) -> Budgets:
    """`budgets` with RAM and flash not given set to what the board has."""
    return Budgets(budgets.latency_s, budgets.ram_bytes if budgets.ram_bytes is not None else board.sram_bytes,
                   budgets.flash_bytes if budgets.flash_bytes is not None else board.flash_bytes)


def check_board_has(budgets: Budgets, board: Any) -> None:
    """A RAM or flash budget above what the board has is a ConfigError naming both figures."""
    for what, value, have in (("RAM", budgets.ram_bytes, board.sram_bytes),
                              ("flash", budgets.flash_bytes, board.flash_bytes)):
        if value is not None and value > have:
            raise ConfigError(f"the {what} budget {format_size(value)} is more than {board.name} has "
                              f"({format_size(have)})", f"lower --{what.lower()} or choose another --target")


def _predict_for_export(the_arch: arch_mod.Arch, gen: Any, target: str | None) -> dict[str, Any]:
    """The latency table's prediction for an exported network (metrics.json), and a check that
    the search-space lowering produced exactly the exported kernels and arena."""
    from latency_tables import predict as predictor
    from latency_tables.keys import op_key
    from targets import boards

    import shutil

    from latency_tables import build as table_build

    board = boards.get(target) if target else boards.default_board()
    try:
        table = predictor.find_table(board.name, the_arch.input_channels, the_arch.input_length, the_arch.num_classes)
        p = predictor.predict(the_arch, table, measure_missing=(lambda keys: table_build.measure_into(table, keys))
                              if _have_emulator() and table.metadata["where"].startswith("emulated") else None,
                              elf_flash=bool(shutil.which("arm-none-eabi-gcc")))
    except ConfigError as e:
        log.warning("no latency prediction: %s", e.message)
        return {"predicted_latency_ms": None, "predicted_latency_note": f"{e.message}; {e.hint or ''}".strip("; ")}
    exported = [op_key(layer.op, layer.fields) for layer in gen.layers]
    if exported != [k for k, _ in p.per_layer] or p.arena_bytes != gen.arena_bytes:
        raise ExportError(f"the search-space lowering of this network ({len(p.per_layer)} kernels, arena "
                          f"{p.arena_bytes} B) differs from its export ({len(exported)} kernels, arena "
                          f"{gen.arena_bytes} B); this is a micronas bug", "please report it with arch.json")
    return {**p.to_json(), "predicted_for_board": board.name}


# ---------------------------------------------------------------------------------------------
# profile

ICOUNT_SHIFT = 7  # QEMU -icount shift: 128 ns per guest instruction (deterministic, sub-tick resolution)


def _device_windows(run: RunDir, n: int) -> np.ndarray:
    """The first `n` test windows, quantised for the model input: (N, T*C) int8."""
    from firmware_export import verify

    _config, _arch, ds, split, std = _load_run(run)
    X, _y = arrays_for(ds, split)["test"]
    qin, _qout = verify.io_params(run.file("model_int8.tflite"))
    x_q = qin.quantize(std.apply(X[:n]).transpose(0, 2, 1))  # (N, T, C) int8
    return x_q.reshape(len(x_q), -1)


def effective_budgets(run_path: str | os.PathLike[str], given: Budgets | None) -> Budgets:
    """Budgets given on the command line, falling back to those recorded by `export`."""
    run = RunDir.open(run_path)
    recorded = Budgets.from_json(run.read_json("metrics.json").get("budgets", {})) if run.has("metrics.json") \
        else Budgets()
    given = given or Budgets()
    return Budgets(given.latency_s if given.latency_s is not None else recorded.latency_s,
                   given.ram_bytes if given.ram_bytes is not None else recorded.ram_bytes,
                   given.flash_bytes if given.flash_bytes is not None else recorded.flash_bytes)


def profile(run_path: str | os.PathLike[str], target: str | None = None, port: str | None = None,
            windows: int = 20, budgets: Budgets | None = None, flash_cmd: str | None = None,
            on_stage: StageCallback | None = None,
            on_window: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Build the profiling firmware for a run's model, run it on a board, write profile.json.

    Emulated (QEMU, the board's core) unless `port` is given; then the firmware must already be on
    the board, or `flash_cmd` / pyocd programs it first.

    Args:
        run_path: An exported run (c/micronas_model.c exists).
        target: Board name; default: the board recorded in the run, else the default board.
        port: A pyserial URL of a real board (/dev/ttyACM0, socket://..., hwgrep://VID:PID).
        windows: Test windows sent to the device and compared bit for bit.
        budgets: Budgets to check; those not given fall back to the ones recorded by export.
        flash_cmd: Flash command template with {elf}/{bin} (real boards only).
        on_stage: Progress callback.

    Returns:
        The profile written to profile.json.

    Raises:
        ConfigError: the run is not exported, or a budget is above what the board has.
        DeviceError: the device or emulator failed, or its outputs differ from the host's.
        BudgetError: a measured figure exceeds a budget (profile.json is still written).
    """
    from firmware_export import hostbuild, verify
    from targets import boards, build, flash, protocol, qemu

    stage = on_stage or (lambda _s: None)
    run = RunDir.open(run_path)
    if not run.has("metrics.json") or not run.has("c/micronas_model.c"):
        raise ConfigError(f"{run.path} has not been exported", f"run: micronas export {run.path}")
    metrics = run.read_json("metrics.json")
    target = target or (run.read_json("config.json").get("target") if run.has("config.json") else None)
    board = boards.get(target) if target else boards.default_board()
    budgets = effective_budgets(run_path, budgets)
    check_board_has(budgets, board)
    emulated = port is None
    kind = "emulated" if emulated else "board"
    out_dir = run.file(f"firmware/{board.name}-{kind}")
    stage(f"firmware for {board.name} ({'QEMU ' + board.qemu.machine if emulated else 'real board'}), "
          "arm-none-eabi-gcc")
    image = build.build_firmware(board, run.file("c"), out_dir, emulated=emulated)

    x = _device_windows(run, windows)
    out_bytes = int(metrics["output"]["shape"][-1])
    stage(f"reference outputs: host build of the generated C and TFLite Micro ({len(x)} windows)")
    host_out = hostbuild.build_and_run(run.file("c"), x, out_bytes)
    tflm_out = verify.run_tflm(run.file("model_int8.tflite").read_bytes(),
                               x.reshape(len(x), *metrics["input"]["shape"][1:]))

    if not emulated and flash_cmd is not None:
        stage(f"flashing {board.name}")
        flash.flash(board, image.elf, image.bin, flash_cmd)
    ctx = qemu.EmulatedBoard(board.qemu.machine, image.elf, out_dir, icount_shift=ICOUNT_SHIFT) if emulated else None
    device_out = []
    with ctx if ctx is not None else contextlib.nullcontext() as emu:
        url = emu.url if emu is not None else port
        stage(f"profiling over {url}")
        with protocol.DeviceClient.open(url) as dev:
            hello = dev.hello()
            if hello.arena_bytes != metrics["arena_bytes_planned"] or hello.output_bytes != out_bytes:
                raise ConfigError(f"the device at {url} runs another model (arena {hello.arena_bytes} B, "
                                  f"{hello.output_bytes} outputs; this run: {metrics['arena_bytes_planned']} B, "
                                  f"{out_bytes})", "flash this run's firmware: " + str(image.elf))
            window_ticks = []
            for i, w in enumerate(x):  # counts depend on the data (clamps, max, softmax cut-off): time every window
                dev.set_input(w.tobytes())
                window_ticks.append(dev.invoke(1).min_ticks)
                device_out.append(np.frombuffer(dev.get_output(), np.int8))
                if on_window:
                    on_window(i + 1, len(x))
            repeat = dev.invoke(count=3)  # the last window again: the same count every time
            dev.invoke(1, per_layer=True)
            layers = dev.get_layers()
            mem = dev.get_memory()
    device_out = np.stack(device_out)
    mismatch_host = int((device_out != host_out).any(axis=1).sum())
    mismatch_tflm = int((device_out != tflm_out).any(axis=1).sum())

    if hello.timer_kind == 1:
        def count(ticks: float) -> float:
            return qemu.instructions_from_ticks(ticks, hello.timer_hz, ICOUNT_SHIFT)
        unit, source = "instructions", (f"measured on the emulated core: QEMU {board.qemu.machine} instruction count "
                                        f"(-icount shift={ICOUNT_SHIFT}), not cycles; latency assumes one instruction "
                                        f"per cycle at the board clock {board.clock_hz / 1e6:g} MHz")
    else:
        def count(ticks: float) -> float:
            return float(ticks)
        unit, source = "cycles", f"measured on the board: DWT cycle counter at {board.clock_hz / 1e6:g} MHz"
    total = count(float(np.mean(window_ticks)))
    last = count(window_ticks[-1])  # the window the per-layer run used
    names = [f"{i}:{n}" for i, n in enumerate(metrics.get("runtime_layer_ops", []))]
    per_layer = [{"index": i, "name": names[i] if i < len(names) else str(i), unit: round(count(t), 1)}
                 for i, t in enumerate(layers)]
    layer_sum = sum(entry[unit] for entry in per_layer)
    latency_ms = total / board.clock_hz * 1e3
    result: dict[str, Any] = {
        "micronas_version": __version__,
        "board": board.name, "core": board.core, "clock_hz": board.clock_hz,
        "where": f"emulated: QEMU {board.qemu.machine}" if emulated else f"real board over {port}",
        "timer_kind": unit, "count_source": source,
        f"total_{unit}": round(total, 1),
        f"total_{unit}_min_max": [round(count(min(window_ticks)), 1), round(count(max(window_ticks)), 1)],
        f"total_{unit}_note": f"mean over the {len(x)} test windows (counts depend on the data)",
        f"per_layer_{unit}": per_layer,
        f"per_layer_sum_{unit}": round(layer_sum, 1),
        f"per_layer_window_total_{unit}": round(last, 1),
        "per_layer_sum_over_total": round(layer_sum / last, 5) if last else None,
        "repeat_min_max_ticks": [repeat.min_ticks, repeat.max_ticks],
        "repeat_equals_first_run": repeat.min_ticks == window_ticks[-1],
        "measured_latency_ms": round(latency_ms, 4),
        "windows": len(x),
        "outputs_equal_host_runtime": mismatch_host == 0,
        "outputs_equal_tflm": mismatch_tflm == 0,
        "arena_bytes_measured": mem.arena_high_water,
        "arena_bytes_planned": metrics["arena_bytes_planned"],
        "stack_high_water_bytes": mem.stack_high_water,
        "stack_bytes_reserved": mem.stack_bytes,
        "elf": {"text_bytes": image.text_bytes, "data_bytes": image.data_bytes, "bss_bytes": image.bss_bytes},
        "flash_bytes": image.flash_bytes,
        "ram_bytes": image.ram_bytes,
        "ram_source": "ELF data + bss of the profiling firmware: the arena, BENCH_OP's scratch buffer, the serial "
                      "protocol's buffers and statics; not the stack (its high-water mark is separate). The RAM "
                      "budget is checked against the arena high-water mark, as search and export check the arena",
        "budgets": budgets.to_json(),
    }
    if metrics.get("predicted_for_board") == board.name and metrics.get("predicted_latency_unit") == unit:
        predicted = float(metrics["predicted_latency_count"])
        result["predicted_latency_ms"] = metrics["predicted_latency_ms"]
        result["prediction_error"] = round((predicted - total) / total, 5)
        result["prediction_source"] = metrics["predicted_latency_source"]
    over = []
    if budgets.latency_s is not None and latency_ms > budgets.latency_s * 1e3:
        over.append(f"latency {latency_ms:.3f} ms ({unit}) exceeds the latency budget {budgets.latency_s * 1e3:.3f} ms")
    if budgets.ram_bytes is not None and mem.arena_high_water > budgets.ram_bytes:
        over.append(f"the arena's high-water mark on the device {format_size(mem.arena_high_water)} exceeds the RAM "
                    f"budget {format_size(budgets.ram_bytes)}")
    if budgets.flash_bytes is not None and image.flash_bytes > budgets.flash_bytes:
        over.append(f"firmware flash {format_size(image.flash_bytes)} exceeds the flash budget "
                    f"{format_size(budgets.flash_bytes)}")
    result["over_budget"] = over
    run.write_json("profile.json", result)
    if mismatch_host or mismatch_tflm:
        raise ExportError(f"the device's outputs differ from the host runtime on {mismatch_host} and from TFLite Micro "
                          f"on {mismatch_tflm} of {len(x)} windows", "this is a micronas bug; please report it")
    if mem.arena_high_water != metrics["arena_bytes_planned"]:
        raise ExportError(f"the arena high-water mark on the device ({mem.arena_high_water} B) differs from the "
                          f"planned arena ({metrics['arena_bytes_planned']} B)", "this is a micronas bug; please report it")
    if over:
        raise BudgetError("; ".join(over), "relax the budget or choose a smaller architecture")
    return result




# ---------------------------------------------------------------------------------------------
# search


def minimum_costs(cm: Any, table: Any) -> dict[str, Any]:
    """The smallest latency, arena and flash a network of the space reaches for this data on
    this board: exact predictions of the cheapest networks by each per-layer measure."""
    from latency_tables import costs as costs_mod
    from latency_tables import predict as predictor

    m = table.metadata
    cands = [costs_mod.cheapest_network(cm, metric, m["input_channels"], m["input_length"], m["num_classes"])
             for metric in ("latency", "ram", "flash")]
    preds = [predictor.predict(a, table) for a in cands]
    return {"latency_ms": min(p.latency_ms for p in preds), "ram_bytes": min(p.arena_bytes for p in preds),
            "flash_bytes": min(p.flash_bytes for p in preds),
            "networks": [a.to_json() for a in cands]}


def _check_feasible(budgets: Budgets, mins: dict[str, Any], board: Any) -> None:
    problems = []
    if budgets.latency_s is not None and budgets.latency_s * 1e3 < mins["latency_ms"]:
        problems.append((f"the latency budget {budgets.latency_s * 1e3:g} ms is below the fastest network of the search "
                         f"space for this data on {board.name}: {mins['latency_ms']:.3f} ms (predicted from its "
                         "latency table)", f"relax --latency to at least {math.ceil(mins['latency_ms'] * 1000) / 1000:g}ms"))
    if budgets.ram_bytes is not None and budgets.ram_bytes < mins["ram_bytes"]:
        problems.append((f"the RAM budget {format_size(budgets.ram_bytes)} is below the smallest arena of the search "
                         f"space for this data: {format_size(mins['ram_bytes'])}",
                         f"relax --ram to at least {mins['ram_bytes']}"))
    if budgets.flash_bytes is not None and budgets.flash_bytes < mins["flash_bytes"]:
        problems.append((f"the flash budget {format_size(budgets.flash_bytes)} is below the smallest firmware of the "
                         f"search space for this data on {board.name}: {format_size(mins['flash_bytes'])}",
                         f"relax --flash to at least {mins['flash_bytes']}"))
    if problems:
        raise BudgetError("; ".join(p for p, _ in problems), "; ".join(h for _, h in problems))


def search(data: str | os.PathLike[str], out: str | os.PathLike[str], budgets: Budgets = Budgets(),
           target: str | None = None, port: str | None = None, cfg: Any = None, final_epochs: int = 120,
           profile_windows: int = 20, on_stage: StageCallback | None = None,
           on_epoch: EpochCallback | None = None, resume: bool = False,
           on_train_epoch: EpochCallback | None = None,
           on_window: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Search, train, export and profile: from data to a measured, budget-checked model.

    Budgets not given default to the board's SRAM and flash. Before searching, a budget below
    what any network of the space can reach is a BudgetError naming the minimum.

    Returns:
        A summary: the architecture, predicted and measured figures, accuracy.

    Raises:
        BudgetError: infeasible budget, or the measured network exceeds one.
        ConfigError, DataError, DeviceError: as the stages raise them.
    """
    import torch

    from latency_tables import build as table_build
    from latency_tables import costs as costs_mod
    from latency_tables import predict as predictor
    from micronas import search as dnas
    from search_space.space import DEFAULT_SPACE, position_choices
    from search_space.supernet import SuperNet
    from targets import boards

    stage = on_stage or (lambda _s: None)
    cfg = cfg or dnas.SearchConfig()
    board = boards.get(target) if target else boards.default_board()
    budgets = board_budgets(budgets, board)
    check_board_has(budgets, board)
    ds = load_dataset(data)
    shape = (ds.n_channels, ds.length, ds.n_classes)
    split = make_split(ds, seed=cfg.seed, val_subjects=cfg.val_subjects)
    std = Standardizer.fit(ds.X[split.train])
    parts = arrays_for(ds, split)
    scaled = {k: (std.apply(parts[k][0]), parts[k][1].astype(np.int64)) for k in ("train", "val")}  # not test

    stage(f"latency table for {board.name}, {shape[0]}ch x {shape[1]}, {shape[2]} classes")
    try:
        table = predictor.find_table(board.name, *shape)
    except predictor.NoTableError:  # only a missing table is measured; a bad one is the user's to fix
        if port is not None or not _have_emulator():
            raise
        out_table = Path(predictor.USER_TABLES_DIR) / table_build.default_table_name(board.name, *shape)
        stage(f"no table yet: measuring one on the emulated core into {out_table}")
        table = table_build.build_table(board.name, *shape, out_table, on_stage=stage)
    measure = ((lambda keys: table_build.measure_into(table, keys, port=port, on_stage=stage))
               if port is not None or _have_emulator() else None)
    cm = costs_mod.build_costs(DEFAULT_SPACE, table, measure_missing=measure)
    mins = minimum_costs(cm, table)
    _check_feasible(budgets, mins, board)
    run = RunDir.create(out)  # only now: an infeasible budget leaves nothing behind

    choices = [position_choices(DEFAULT_SPACE, i) for i in range(len(DEFAULT_SPACE.positions))]

    def factory():
        return SuperNet(DEFAULT_SPACE, choices, *shape)

    digest = cfg.digest({"data": data_fingerprint(ds), "budgets": budgets.to_json(), "board": board.name,
                         "table": table.metadata["runtime_hash"], "space": DEFAULT_SPACE.name})
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    stage(f"DNAS over the {DEFAULT_SPACE.name} space ({cfg.epochs} epochs; supernet checkpointed every epoch)")
    trajectory = dnas.search(run, factory, cm, scaled, budgets, cfg, digest, on_epoch, must_resume=resume)
    net = dnas.load_supernet(run, factory)
    stage("derivation: the most likely network, exact costs, repair if over a budget, fill towards the latency budget")
    the_arch, pred, repairs = dnas.derive_and_repair(net, table, budgets)
    run.write_json("search.json", {"config": asdict(cfg), "digest": digest, "budgets": budgets.to_json(),
                                   "board": board.name, "latency_table": table.path.name if table.path else None,
                                   "minimum_costs": mins, "trajectory": trajectory,
                                   "search_seconds": round(sum(e.get("seconds", 0.0) for e in trajectory), 1),
                                   "derived": the_arch.to_json(), "repairs": repairs,
                                   "predicted": pred.to_json()})
    arch_path = run.file("searched_arch.json")
    atomic_write_text(arch_path, the_arch.dumps())

    stage(f"final training of the derived network from scratch ({final_epochs} epochs)")
    train_cfg = TrainConfig(epochs=final_epochs, seed=cfg.seed, val_subjects=cfg.val_subjects,
                            checkpoint_rule="last")
    done = train_export_profile(data, run.path, arch_path, train_cfg, board.name, budgets, port=port,
                                profile_windows=profile_windows, on_stage=stage, on_epoch=on_train_epoch,
                                on_window=on_window)
    from micronas import report

    stage("report (HTML, Markdown, plots)")
    return {"run": str(run.path), "arch": the_arch.to_json(), "repairs": repairs, "minimum_costs": mins,
            "predicted": pred.to_json(), **done, "report": report.build(run.path)}


def train_export_profile(data: str | os.PathLike[str], run_path: str | os.PathLike[str],
                         arch: str | os.PathLike[str], train_cfg: TrainConfig, target: str, budgets: Budgets,
                         port: str | None = None, profile_windows: int = 20,
                         on_stage: StageCallback | None = None, on_epoch: EpochCallback | None = None,
                         on_window: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Train `arch` from scratch into a run, export it to int8 (QAT when PTQ loses more than a
    point) and profile it on the board: the last steps of a search, and how a hand-designed
    baseline is measured the same way. A run holding another model is retrained.

    Returns:
        {"train": best/last epoch, "metrics": metrics.json, "profile": profile.json}.
    """
    stage = on_stage or (lambda _s: None)
    try:
        summary = train(data, run_path, arch=arch, cfg=train_cfg, on_epoch=on_epoch)
    except ConfigError:  # the run holds the model of an earlier search of another network: replace it
        summary = train(data, run_path, arch=arch, cfg=train_cfg, force=True, on_epoch=on_epoch)
    run = RunDir.open(run_path)
    config = run.read_json("config.json")
    config["target"] = target
    run.write_json("config.json", config)
    stage("int8 export, C runtime")
    metrics = export_int8(run.path, budgets, on_stage=stage)  # records the latency budget for a later profile
    stage(f"profile on {target} ({'emulated' if port is None else port})")
    prof = profile(run.path, target=target, port=port, windows=profile_windows, budgets=budgets, on_stage=stage,
                   on_window=on_window)
    return {"train": summary["best"], "metrics": metrics, "profile": prof}


def _have_emulator() -> bool:
    import shutil

    return bool(shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"))
