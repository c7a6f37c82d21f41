"""The export stage: ONNX, int8 TFLite, C arrays and the micronas C runtime, verified on the test
split; the prediction from the latency table; the budget check (metrics.json). And `export_int8`:
export, then quantisation-aware fine-tuning when post-training quantisation loses any accuracy.

Only our own chain is held exact: the generated C runtime against TFLite Micro (fatal). LiteRT is
a second opinion, recorded and warned about (`litert_check`), never fatal."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from micronas import budgets as budget_mod
from micronas.budgets import FLASH, LATENCY, RAM
from micronas.data import arrays_for
from micronas.results import PredictionRecord, ExportResult
from micronas.rundir import RunDir, atomic_write_text, sha256_file
from micronas.stages.common import QAT_MODEL, StageCallback, Stages, folded_model, have_emulator, load_run, no_stage
from micronas.units import Budgets, format_size
from micronas_base import __version__
from micronas_base.errors import ConfigError, ExportError
from search_space import arch as arch_mod

log = logging.getLogger(__name__)

# LiteRT's optimised kernels may round a product differently from TFLM's reference ones, and a
# one-LSB difference in an attention branch (average pool -> FC -> softmax) can reach two LSB at
# the logits; two attention layers in a row compound it (3 LSB on 1 of 1,145 watch-data windows,
# dyconv after kdna; 7 LSB seen after a long search). More than four apart is worth a look, but it
# is a warning, not a failure: the board computes TFLM's semantics (the C runtime is held to TFLM
# exactly, and that check stays fatal), so LiteRT is a second opinion, not the reference.
MAX_INTERPRETER_LSB_DIFF = 4
# quantisation-aware fine-tuning whenever int8 loses anything on the validation split (one window
# is the smallest measurable loss); waiting for a 1-point loss left up to a point on the table
QAT_TRIGGER = 0.0


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> list[list[int]]:
    """Counts, rows = true class, columns = predicted class."""
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (y_true.astype(np.int64), y_pred.astype(np.int64)), 1)
    return m.tolist()


def recorded_budgets(run: RunDir, given: Budgets) -> Budgets:
    """`given`, with a latency budget not given taken from the search that produced the run
    (search.json), if any: export checks the prediction against it."""
    if given.latency_s is not None or not run.has("search.json"):
        return given
    searched = Budgets.from_json(run.read_json("search.json").get("budgets") or {})
    return Budgets(searched.latency_s, given.ram_bytes, given.flash_bytes)


def export(run_path: str | os.PathLike[str], budgets: Budgets = Budgets(),
           on_stage: StageCallback | None = None) -> ExportResult:
    """Export a trained run: ONNX, int8 TFLite, C arrays; verify; check budgets.

    Stages whose inputs are unchanged since they last finished are skipped (an interrupted
    export resumes). Verification always runs.

    Args:
        run_path: A run directory holding model.pt (from `train`).
        budgets: RAM (compared with the planned arena of the micronas runtime), flash (with the
            predicted firmware flash, or the flatbuffer without a latency table) and latency
            (with the predicted latency; when not given, the search's latency budget for the
            run, if it was searched).
        on_stage: Called with a short description as each stage starts.

    Returns:
        The metrics written to metrics.json.

    Raises:
        ConfigError: the run is incomplete or inconsistent.
        ExportError: a conversion or verification step failed.
        BudgetError: a figure exceeds a budget (metrics.json and the artefacts are still written).
    """
    run = RunDir.open(run_path)
    with run.locked("export"):
        return export_run(run, recorded_budgets(run, budgets), on_stage or no_stage)


def export_run(run: RunDir, budgets: Budgets, stage: StageCallback, board: Any = None) -> ExportResult:
    """`export` with the budgets final and the board known (None: the run's recorded target)."""
    metrics, over = _export(run, budgets, stage, board)
    budget_mod.raise_if_over(over, OVER_HINT)
    return metrics


OVER_HINT = "raise the budget, or train a smaller architecture (--arch)"


def _export(run: RunDir, budgets: Budgets, stage: StageCallback, board: Any) -> tuple[ExportResult, list]:
    """`export_run` without raising on a budget: the metrics (written) and the budget checks."""
    import torch

    from firmware_export import carrays, codegen, convert, hostbuild, verify

    t0 = time.monotonic()
    if not run.has("model.pt"):
        raise ConfigError(f"{run.path} has no trained model (model.pt)",
                          f"train it first: micronas train --out {run.path}")
    config, the_arch, ds, split, std = load_run(run)
    board = budget_mod.resolve_board(board if board is not None else config.get("target"))
    parts = {k: (std.apply(X), y) for k, (X, y) in arrays_for(ds, split).items()}
    X_test, y_test = parts["test"]
    log_path = run.file("export.log")
    stages = Stages(run)

    folded = folded_model(run, the_arch)
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
    parting = (_where_they_part(tflite_path, x_q, litert_out, tflm_out, log_path)
               if agreement.max_lsb_diff > MAX_INTERPRETER_LSB_DIFF else None)
    litert_check = _litert_check(agreement, litert_out, tflm_out, y_test, log_path, parting)
    if litert_check["warning"]:
        stage("warning: " + litert_check["warning"])
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
        tflm_arena_bytes=arena, remove_window_mean=std.remove_window_mean,
    )
    header, source = carrays.render(flatbuffer, info)
    atomic_write_text(run.file("c/model_data.h"), header)
    atomic_write_text(run.file("c/model_data.c"), source)

    stage("C runtime (micronas_model.h / .c), host builds checked against TFLite Micro")
    gen = codegen.generate(flatbuffer, info.class_labels, info.input_mean, info.input_std,
                           remove_window_mean=info.remove_window_mean)
    codegen.write(gen, run.file("c"))
    runtime_out = hostbuild.build_and_run(run.file("c"), x_q, the_arch.num_classes)
    sanitized_out = hostbuild.build_and_run(run.file("c"), x_q, the_arch.num_classes, sanitize=True)
    runtime_vs_tflm = verify.compare(runtime_out, tflm_out)
    if runtime_vs_tflm.exact_rate < 1.0 or not np.array_equal(sanitized_out, runtime_out):
        raise ExportError(f"the generated C runtime differs from TFLite Micro on "
                          f"{round((1 - runtime_vs_tflm.exact_rate) * len(x_q))} of {len(x_q)} test windows "
                          f"(max {runtime_vs_tflm.max_lsb_diff} LSB); this is a micronas bug",
                          f"please report it with {tflite_path}")

    prediction, predicted = _predict_for_export(the_arch, gen, board)
    layer_err = _layer_int8_error(tflite_path, folded, the_arch, parts["val"][0], qin)
    acc_fp32 = float(np.mean(fp32_pred == y_test))
    acc_int8 = float(np.mean(int8_pred == y_test))

    checks, over = {}, []
    if predicted is not None:
        over.append(budget_mod.check(budgets, LATENCY, "predicted latency", predicted.latency_ms, note=predicted.unit))
    if budgets.ram_bytes is not None:
        planned = gen.arena_bytes
        ram = budget_mod.check(budgets, RAM, "the micronas runtime arena", planned,
                               detail=f"TFLite Micro would need {format_size(arena)}")
        tflm = budget_mod.check(budgets, RAM, "the TFLite Micro arena", arena)
        checks["ram"] = {"budget_bytes": budgets.ram_bytes, "measured_bytes": planned,
                         "what": "micronas runtime arena (planned, exact)", "ok": not ram.over,
                         "tflm_arena_bytes": arena, "tflm_ok": not tflm.over}
        over.append(ram)
        if not ram.over and tflm.over:
            log.warning("the micronas runtime fits the RAM budget, but TFLite Micro would need %s",
                        format_size(arena))
    if budgets.flash_bytes is not None:
        flash, what = ((prediction.flash_bytes, "firmware flash (predicted: " + prediction.flash_source + ")")
                       if prediction.flash_bytes is not None
                       else (len(flatbuffer), "int8 flatbuffer (no latency table for this shape: no firmware estimate)"))
        fl = budget_mod.check(budgets, FLASH, what.split(" (")[0], flash)
        checks["flash"] = {"budget_bytes": budgets.flash_bytes, "measured_bytes": flash, "what": what,
                           "ok": not fl.over}
        over.append(fl)

    metrics = ExportResult(
        micronas_version=__version__,
        test_windows=int(len(y_test)),
        test_split="the data file's own test set" if split.test_from_file else "held out from the data",
        accuracy_fp32=acc_fp32,
        accuracy_int8=acc_int8,
        int8_accuracy_drop=acc_fp32 - acc_int8,
        weights=(f"{QAT_MODEL}: quantisation-aware fine-tuned from model.pt" if run.has(QAT_MODEL)
                 else "model.pt (post-training quantisation)"),
        argmax_agreement_int8_vs_fp32=float(np.mean(int8_pred == fp32_pred)),
        classes=list(config["classes"]),
        confusion_int8=_confusion(y_test, int8_pred, len(config["classes"])),
        int8_source="tflite-micro host interpreter (TFLM reference int8 kernels)",
        litert_vs_tflm=agreement.to_json(),
        litert_check=litert_check,
        tflite_bytes=len(flatbuffer),
        tflm_arena_bytes=arena,
        tflm_arena_source="measured: the smallest arena with which the tflite-micro host interpreter "
                          "(64-bit) constructs and invokes, found by bisection; an upper bound for a "
                          "32-bit Cortex-M",
        tflm_arena_recorded_bytes=recorded_arena,
        tflite_ops=ops,
        arena_bytes_planned=gen.arena_bytes,
        arena_source="planned by micronas at export time: exact for the micronas C runtime "
                     "(static arena, tensor lifetimes + best-fit placement)",
        arena_bytes_without_reuse=gen.arena_naive_bytes,
        arena_timeline=gen.timeline,
        flash_bytes_weights=gen.flash_bytes_weights,
        flash_bytes_weights_source="counted: distinct const bytes of the generated C (weights, biases, "
                                   "requantisation tables, kernel params); runtime code not included",
        flash_bytes_weights_unshared=gen.const_bytes_before_sharing,
        prediction=prediction,
        runtime_layers=len(gen.layers),
        runtime_layer_ops=[layer.op for layer in gen.layers],
        macs=sum(layer.macs for layer in gen.layers),
        runtime_vs_tflm=runtime_vs_tflm.to_json(),
        runtime_vs_litert=verify.compare(runtime_out, litert_out).to_json(),
        input={"shape": list(qin.shape), "scale": qin.scale, "zero_point": qin.zero_point,
               "layout": "time-major, channels interleaved: input[t * C + c]"},
        output={"shape": list(qout.shape), "scale": qout.scale, "zero_point": qout.zero_point},
        budgets=budgets,
        export_seconds=round(time.monotonic() - t0, 2),
        budget_check=checks,
        layer_int8_error=layer_err,
    )
    if any(c.over for c in over) and run.has("metrics.json"):
        # Asking "would it fit in 1k?" must not change the run: the budgets profile falls back
        # to stay those of the last export that met them (budget_check still shows this failed one).
        previous = run.read_json("metrics.json").get("budgets")
        if isinstance(previous, dict):
            metrics = dataclasses.replace(metrics, budgets=Budgets.from_json(previous))
    run.write_json("metrics.json", metrics.to_json())
    return metrics, over


LAYER_ERROR_WINDOWS = 256  # validation windows the per-layer int8 error is measured on


def _layer_int8_error(tflite_path: Path, folded: Any, the_arch: arch_mod.Arch, X_val: np.ndarray,
                      qin: Any) -> dict[str, Any] | None:
    """metrics.json's `layer_int8_error`: a diagnostic, so a failure is logged, never fatal."""
    from micronas import layer_error
    from micronas.report import layer_short

    X = X_val[:LAYER_ERROR_WINDOWS]
    if len(X) == 0:
        return None
    try:
        rows = layer_error.layer_errors(tflite_path, folded, [layer_short(la.to_json()) for la in the_arch.layers],
                                        X, qin.quantize(X.transpose(0, 2, 1)))
    except Exception as e:  # a diagnostic must not fail an export that verified
        log.warning("per-layer int8 error not measured: %s: %s", type(e).__name__, e)
        return None
    return {"windows": int(len(X)), "split": "validation", "source": layer_error.SOURCE, "layers": rows}


# windows (those whose outputs differ most) on which the op-by-op comparison runs
DIVERGENCE_WINDOWS = 32


def _where_they_part(tflite_path: Path, x_q: np.ndarray, litert_out: np.ndarray, tflm_out: np.ndarray,
                     log_path: Any) -> dict[str, Any] | None:
    """The first op whose output LiteRT and TFLite Micro compute differently, on the windows whose
    outputs differ most (`verify.op_divergence`); every op's figures go to export.log. A
    diagnostic: should it fail, that is logged and None returned, the export goes on."""
    from firmware_export import verify

    gap = np.abs(litert_out.astype(np.int32) - tflm_out.astype(np.int32)).max(axis=1)
    idx = np.sort(np.argsort(-gap, kind="stable")[:DIVERGENCE_WINDOWS])
    lines = [f"\nLiteRT vs TFLite Micro, op by op, on {len(idx)} test windows (those whose outputs differ most):",
             "position  op                         tensor  max LSB  values differing"]
    try:
        rows = verify.op_divergence(tflite_path, x_q[idx])
    except Exception as e:  # noqa: BLE001 - a diagnostic of a warning never ends an export
        rows = None
        lines.append(f"  not compared: {type(e).__name__}: {e}")
    for r in rows or []:
        lines.append(f"{r.position:8d}  {r.op:<25s}  {r.tensor:6d}  {r.max_lsb:7d}  {100 * r.fraction:.2f} %")
    if log_path is not None:
        with open(log_path, "a") as f:
            f.write("\n".join(lines) + "\n")
    first = next((r for r in rows or [] if r.max_lsb > 0), None)
    if first is None:
        return None
    # the last op's output is the model's, which both interpreters hold in full: it is the last row
    return {**first.to_json(), "ops": rows[-1].position + 1, "windows": int(len(idx))}


def _litert_check(agreement: Any, litert_out: np.ndarray, tflm_out: np.ndarray, y: np.ndarray,
                  log_path: Any, parting: dict[str, Any] | None = None) -> dict[str, Any]:
    """How far LiteRT, a second opinion, is from TFLite Micro (whose semantics the board computes).

    Args:
        agreement: `verify.compare(litert_out, tflm_out)`.
        litert_out, tflm_out: (N, classes) int8 outputs on the test split.
        y: (N,) test labels.
        log_path: export.log, named in the warning.
        parting: `_where_they_part`: the first op whose output differs (None: not looked for).

    Returns:
        metrics.json's `litert_check`: the allowed and measured LSB difference, whether it is within,
        argmax agreement, LiteRT's int8 test accuracy, where the two first part, and the warning
        (None when within).
    """
    ok = agreement.max_lsb_diff <= MAX_INTERPRETER_LSB_DIFF
    differing = round((1 - agreement.exact_rate) * agreement.windows)
    same_class = litert_out.argmax(1) == tflm_out.argmax(1)
    litert_acc = float(np.mean(litert_out.argmax(1) == y))
    where = ""
    if parting:
        kind = "a one-LSB rounding difference" if parting["max_lsb"] == 1 else f"up to {parting['max_lsb']} LSB"
        where = (f"; they first part at op {parting['position']} of {parting['ops']} ({parting['op']}), "
                 f"{kind} on {100 * parting['fraction']:.2g} % of its values"
                 + (f", which the layers after it carry to {agreement.max_lsb_diff} LSB at the output"
                    if parting["position"] < parting["ops"] - 1 else " (the output op itself)"))
    return {
        "allowed_max_lsb_diff": MAX_INTERPRETER_LSB_DIFF,
        "max_lsb_diff": agreement.max_lsb_diff,
        "ok": ok,
        "argmax_agreement": float(np.mean(same_class)),
        "accuracy_int8_litert": litert_acc,
        "first_divergence": parting,
        "warning": None if ok else (
            f"LiteRT and TFLite Micro outputs differ by up to {agreement.max_lsb_diff} LSB (more than "
            f"{MAX_INTERPRETER_LSB_DIFF}) on {differing} of {agreement.windows} test windows{where}. The int8 "
            f"accuracy reported is TFLite Micro's, which the C runtime and the board compute; LiteRT's is "
            f"{100 * litert_acc:.1f} %: a phone or server running LiteRT classifies {int(np.sum(~same_class))} of "
            f"the {agreement.windows} windows differently (op by op: {log_path})"),
    }


def _predict_for_export(the_arch: arch_mod.Arch, gen: Any, board: Any) -> tuple[PredictionRecord, Any]:
    """The latency table's prediction for an exported network (metrics.json) and the Prediction
    itself (None without a table), after checking that the search-space lowering produced
    exactly the exported kernels and arena."""
    from latency_tables import predict as predictor
    from latency_tables.keys import op_key
    from micronas import tables

    try:
        table = predictor.find_table(board.name, the_arch.input_channels, the_arch.input_length, the_arch.num_classes)
        p = predictor.predict(the_arch, table, measure_missing=(lambda keys: tables.measure_into(table, keys))
                              if have_emulator() and table.metadata["where"].startswith("emulated") else None,
                              elf_flash=tables.elf_flash(table) if shutil.which("arm-none-eabi-gcc") else None)
    except ConfigError as e:
        log.warning("no latency prediction: %s", e.message)
        return PredictionRecord(None, note=f"{e.message}; {e.hint or ''}".strip("; ")), None
    exported = [op_key(layer.op, layer.fields) for layer in gen.layers]
    if exported != [k for k, _ in p.per_layer] or p.arena_bytes != gen.arena_bytes:
        raise ExportError(f"the search-space lowering of this network ({len(p.per_layer)} kernels, arena "
                          f"{p.arena_bytes} B) differs from its export ({len(exported)} kernels, arena "
                          f"{gen.arena_bytes} B); this is a micronas bug", "please report it with arch.json")
    return PredictionRecord.from_json({**p.to_json(), "predicted_for_board": board.name}), p


def qat_wanted(fp32_val: float, ptq_val: float) -> bool:
    """Whether to try quantisation-aware fine-tuning: int8 (post-training) loses anything on validation.

    Args:
        fp32_val: Validation accuracy of the folded fp32 network.
        ptq_val: Validation accuracy of its post-training-quantised int8 model (TFLite Micro).
    """
    return fp32_val - ptq_val > QAT_TRIGGER


def keep_qat(ptq_val: float, qat_val: float) -> bool:
    """Whether the fine-tuned weights replace post-training quantisation: strictly better int8
    validation accuracy (a tie keeps the simpler PTQ model; the test split never decides)."""
    return qat_val > ptq_val


def _split_accuracy(run: RunDir, loaded, candidate: tuple[Any, Path] | None = None,
                    split_name: str = "val") -> tuple[float, float]:
    """(fp32, int8) accuracy on a split (validation unless told): the exported network and its int8
    TFLite model run by TFLite Micro, the semantics the C runtime and the board compute.

    `loaded`: `load_run(run)`, read once by the caller. `candidate`: (folded network, int8
    flatbuffer path) to score instead of the run's exported ones.
    """
    import torch

    from firmware_export import verify

    config, the_arch, ds, split, std = loaded
    X, y = arrays_for(ds, split)[split_name]
    X = std.apply(X)
    model, tflite_path = candidate or (folded_model(run, the_arch), run.file("model_int8.tflite"))
    with torch.no_grad():
        fp32 = model(torch.from_numpy(X)).numpy().argmax(1)
    qin, _ = verify.io_params(tflite_path)
    int8 = verify.run_tflm(tflite_path.read_bytes(), qin.quantize(X.transpose(0, 2, 1))).argmax(1)
    return float(np.mean(fp32 == y)), float(np.mean(int8 == y))


def _qat_candidate(run: RunDir, loaded, tuned: Any, train_X: np.ndarray, stage: StageCallback) -> tuple[float, float]:
    """(validation, test) int8 accuracy of fine-tuned weights under TFLite Micro, converted in a
    temporary folder of the run (removed on every exit path): the run's own export is untouched,
    so a fine-tuning that does not help costs no second export. `train_X`: the standardised
    training windows (the calibration set).
    """
    import tempfile

    from firmware_export import convert

    config, the_arch, ds, split, std = loaded
    log_path = run.file("export.log")
    # built and loaded as `folded_model` builds the exported network, so the candidate converts as it would
    model = folded_model(run, the_arch)
    model.load_state_dict(tuned.state_dict())
    tuned = model.eval()
    with tempfile.TemporaryDirectory(dir=run.path, prefix=".qat-candidate-") as tmp:
        onnx_path, tflite_path = Path(tmp) / "model.onnx", Path(tmp) / "model_int8.tflite"
        stage("int8 conversion of the fine-tuned weights (scored on validation before anything is replaced)")
        convert.export_onnx(tuned, (the_arch.input_channels, the_arch.input_length), onnx_path, log_path)
        convert.onnx_to_int8_tflite(onnx_path, np.ascontiguousarray(train_X.transpose(0, 2, 1)), tflite_path, log_path)
        _, val = _split_accuracy(run, loaded, (tuned, tflite_path))
        _, test = _split_accuracy(run, loaded, (tuned, tflite_path), "test")
        return val, test


def export_int8(run_path: str | os.PathLike[str], budgets: Budgets = Budgets(), qat_epochs: int = 10,
                on_stage: StageCallback | None = None, *, board: Any = None) -> ExportResult:
    """`export`, then quantisation-aware fine-tuning whenever post-training quantisation loses
    any validation accuracy (`qat_wanted`); the fine-tuned weights are kept only when their int8
    validation accuracy is strictly higher (`keep_qat`). The decision never looks at the test split.

    Budgets are checked on the model finally exported, after the decision: a figure over a
    budget never skips the fine-tuning.

    Args:
        run_path: A trained run.
        budgets: As for `export`.
        qat_epochs: Fine-tuning epochs.
        on_stage: Progress callback.
        board: The board, already resolved by a caller that has it (then `budgets` are final:
            nothing recorded is read); None: the run's recorded target.

    Returns:
        The metrics of the exported model, with a "qat" entry saying what was done and why.

    Raises:
        As `export`: a BudgetError after metrics.json (with the QAT record) and the artefacts are written.
    """
    from dataclasses import replace

    from micronas import qat
    from micronas.train import atomic_torch_save

    stage = on_stage or no_stage
    run = RunDir.open(run_path)
    with run.locked("export"):
        if board is None:
            budgets = recorded_budgets(run, budgets)
        run.file(QAT_MODEL).unlink(missing_ok=True)  # a fine-tuning of an earlier model.pt
        metrics, over = _export(run, budgets, stage, board)
        loaded = load_run(run)
        fp32, ptq = _split_accuracy(run, loaded)
        record: dict[str, Any] = {"validation_accuracy_fp32": fp32, "validation_accuracy_int8_ptq": ptq,
                                  "trigger": f"fp32 - int8 > {QAT_TRIGGER:g} on the validation split (any loss); "
                                             "kept when its int8 validation accuracy is strictly higher",
                                  "ran": False}
        if qat_wanted(fp32, ptq):
            stage(f"int8 loses {100 * (fp32 - ptq):.1f} points on the validation split: quantisation-aware "
                  f"fine-tuning ({qat_epochs} epochs)")
            config, the_arch, ds, split, std = loaded
            X, y = arrays_for(ds, split)["train"]
            X = std.apply(X)
            tuned = qat.fine_tune(folded_model(run, the_arch), (X, y.astype(np.int64)), epochs=qat_epochs,
                                  seed=int(config["train"]["seed"]))
            qat_val, qat_test = _qat_candidate(run, loaded, tuned, X, stage)
            record.update(ran=True, epochs=qat_epochs, validation_accuracy_int8_qat=qat_val,
                          test_accuracy_int8_ptq=metrics.accuracy_int8, test_accuracy_int8_qat=qat_test)
            if keep_qat(ptq, qat_val):
                stage(f"fine-tuning helped on the validation split ({100 * qat_val:.1f} % vs {100 * ptq:.1f} %): "
                      "exporting the fine-tuned weights")
                atomic_torch_save(run.file(QAT_MODEL), tuned.state_dict())
                metrics, over = _export(run, budgets, stage, board)
            else:
                stage(f"fine-tuning did not help on the validation split ({100 * qat_val:.1f} % vs "
                      f"{100 * ptq:.1f} %): the post-training quantised export stays")
            record["kept"] = "qat" if keep_qat(ptq, qat_val) else "ptq"
        metrics = replace(metrics, qat=record)
        run.write_json("metrics.json", metrics.to_json())
        budget_mod.raise_if_over(over, OVER_HINT)
        return metrics
