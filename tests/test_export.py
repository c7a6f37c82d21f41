"""The export chain on a tiny model: artefacts, verification figures, C arrays, resume, budgets."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from micronas import api
from micronas_base.errors import BudgetError, ExportError
from micronas.units import Budgets
from firmware_export.codegen.registry import runtime_op_names

from .conftest import toolchain


def test_metrics_hold_measured_figures(exported_run):
    m = json.loads((exported_run / "metrics.json").read_text())
    tflite = (exported_run / "model_int8.tflite").read_bytes()
    assert m["tflite_bytes"] == len(tflite)
    assert m["test_windows"] == 12  # 60 windows, stratified 20 % test
    # the tiny data is learnable: a broken chain (wrong layout, bad calibration) shows up here
    assert m["accuracy_fp32"] >= 0.75 and m["accuracy_int8"] >= 0.75
    assert m["argmax_agreement_int8_vs_fp32"] >= 0.9
    assert m["int8_accuracy_drop"] == pytest.approx(m["accuracy_fp32"] - m["accuracy_int8"])
    assert m["litert_vs_tflm"]["windows"] == 12
    assert m["litert_vs_tflm"]["max_lsb_diff"] <= 1
    assert m["input"]["shape"] == [1, 37, 4] and m["output"]["shape"] == [1, 3]
    # the dynamic conv survives conversion in its split form, and nothing unregistered appears
    ops = m["tflite_ops"]
    assert set(ops) <= set(runtime_op_names())
    assert ops.count("SOFTMAX") == 1 and ops.count("MUL") == 2 and "STRIDED_SLICE" in ops
    assert ops[-1] == "FULLY_CONNECTED"


def test_verification_figures_recomputed_independently(exported_run):
    """Re-run both interpreters on the test split and compare with what export reported."""
    from firmware_export import verify
    from micronas.data import Split, Standardizer, arrays_for, load_dataset

    m = json.loads((exported_run / "metrics.json").read_text())
    cfg = json.loads((exported_run / "config.json").read_text())
    ds = load_dataset(cfg["data"]["spec"])
    split = Split.from_json(json.loads((exported_run / "split.json").read_text()))
    std = Standardizer.from_json(json.loads((exported_run / "normalization.json").read_text()))
    X, y = arrays_for(ds, split)["test"]
    path = exported_run / "model_int8.tflite"
    qin, _ = verify.io_params(path)
    xq = qin.quantize(std.apply(X).transpose(0, 2, 1))
    a, b = verify.run_litert(path, xq), verify.run_tflm(path.read_bytes(), xq)
    assert verify.compare(a, b).to_json() == m["litert_vs_tflm"]
    assert float(np.mean(b.argmax(1) == y)) == m["accuracy_int8"]


def test_int8_input_range_is_the_training_clip(exported_run):
    """The calibration windows are clipped like the training ones, so the int8 input spans the
    standardiser's clip (to half a step): a value the board saturates is one training clipped."""
    from firmware_export import verify
    from micronas.data import Standardizer

    std = Standardizer.from_json(json.loads((exported_run / "normalization.json").read_text()))
    assert std.clip is not None
    qin, _ = verify.io_params(exported_run / "model_int8.tflite")
    low, high = qin.dequantize(np.array([-128, 127]))
    assert abs(low - std.clip[0]) <= qin.scale / 2 + 1e-6
    assert abs(high - std.clip[1]) <= qin.scale / 2 + 1e-6


def test_tflm_arena_is_the_smallest_that_works(exported_run):
    """The reported arena agrees with a binary search over arena sizes, to the byte."""
    from firmware_export import verify

    m = json.loads((exported_run / "metrics.json").read_text())
    buf = (exported_run / "model_int8.tflite").read_bytes()
    x = np.zeros((1, 37, 4), np.int8)
    arena = m["tflm_arena_bytes"]
    assert verify.tflm_fits(buf, x, arena)
    assert not verify.tflm_fits(buf, x, arena - 1)
    assert m["tflm_arena_recorded_bytes"] <= arena


def test_quantize_rounds_half_away_from_zero():
    from firmware_export.verify import QuantParams

    q = QuantParams(scale=0.5, zero_point=3, shape=(1,))
    x = np.array([0.25, -0.25, 0.75, 100.0, -100.0], np.float32)  # exact halves in quant units
    assert q.quantize(x).tolist() == [4, 2, 5, 127, -128]


def _compile_shared(tmp_path, c_dir, extra: str | None = None):
    """model_data.c (and `extra`, C source beside it) as a shared library."""
    gcc = toolchain("gcc")
    lib = tmp_path / "libmodel.so"
    sources = [str(c_dir / "model_data.c")]
    if extra is not None:
        (tmp_path / "extra.c").write_text(extra)
        sources.append(str(tmp_path / "extra.c"))
    subprocess.run([gcc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-shared", "-fPIC", "-I", str(c_dir),
                    *sources, "-o", str(lib)], check=True)
    return ctypes.CDLL(str(lib))


def test_c_array_equals_tflite_and_is_16_aligned(exported_run, tmp_path):
    lib = _compile_shared(tmp_path, exported_run / "c")
    tflite = (exported_run / "model_int8.tflite").read_bytes()
    arr = (ctypes.c_ubyte * len(tflite)).in_dll(lib, "micronas_model_data")
    assert bytes(arr) == tflite
    assert ctypes.addressof(arr) % 16 == 0
    labels = (ctypes.c_char_p * 3).in_dll(lib, "micronas_class_labels")
    assert [s.decode() for s in labels] == ["high", "low", "mid"]
    std = json.loads((exported_run / "normalization.json").read_text())
    mean = (ctypes.c_float * 4).in_dll(lib, "micronas_input_mean")
    assert list(mean) == list(np.array(std["mean"], np.float32))  # float32 round trip exact


@pytest.mark.parametrize("compiler, flags", [
    ("arm-none-eabi-gcc", ["-mcpu=cortex-m33", "-mthumb", "-std=c11"]),
    ("arm-none-eabi-gcc", ["-mcpu=cortex-m4", "-mthumb", "-std=c99"]),
    ("gcc", ["-std=c99", "-pedantic"]),
    ("g++", ["-std=c++17", "-x", "c++"]),
])
def test_header_compiles(exported_run, tmp_path, compiler, flags):
    cc = toolchain(compiler)
    c_dir = exported_run / "c"
    # a consumer that uses every declaration in the header
    user = tmp_path / "user.c"
    user.write_text('#include "model_data.h"\n'
                    "int probe(void);\n"
                    "static float raw[MICRONAS_INPUT_LENGTH * MICRONAS_INPUT_CHANNELS];\n"
                    "static signed char window[MICRONAS_INPUT_LENGTH * MICRONAS_INPUT_CHANNELS];\n"
                    "int probe(void) {\n"
                    "  micronas_quantize_window(raw, window);\n"
                    "  return micronas_model_data[0] + (int)MICRONAS_TFLM_ARENA_BYTES + window[0]\n"
                    "    + micronas_class_labels[0][0] + micronas_quantize_input(1.0f, 0)\n"
                    "    + (int)micronas_input_std[0] + MICRONAS_OUTPUT_ZERO_POINT;\n"
                    "}\n")
    for src in (c_dir / "model_data.c", user):
        subprocess.run([cc, *flags, "-Wall", "-Wextra", "-Werror", "-I", str(c_dir), "-c", str(src),
                        "-o", str(tmp_path / (src.stem + ".o"))], check=True)


def test_c_arrays_are_deterministic(exported_run):
    from firmware_export import carrays

    header = (exported_run / "c" / "model_data.h").read_text()
    assert "sha256" in header and "do not edit" in header
    info = carrays.ModelInfo(37, 4, 0.1, -3, 0.05, 7, ("a", 'q"\\?é'), (0.0,) * 4, (1.0,) * 4, 1000)
    buf = (exported_run / "model_int8.tflite").read_bytes()
    assert carrays.render(buf, info) == carrays.render(buf, info)
    assert carrays.c_string('q"\\?é') == r'"q\"\\\077\303\251"'


def test_export_resumes_without_redoing_stages(run_copy):
    """A second export skips the ONNX and TFLite stages (inputs unchanged) and writes the same bytes."""
    before = (run_copy / "model_int8.tflite").read_bytes()
    stages: list[str] = []
    api.export(run_copy, on_stage=stages.append)
    assert [s.split()[0] for s in stages] == ["verification", "C", "C"]  # C arrays, C runtime
    assert (run_copy / "model_int8.tflite").read_bytes() == before


def test_budget_over_is_exit_1_naming_both_figures(run_copy):
    m = json.loads((run_copy / "metrics.json").read_text())
    with pytest.raises(BudgetError) as e:
        api.export(run_copy, Budgets(ram_bytes=512, flash_bytes=m["tflite_bytes"] - 1))
    assert e.value.exit_code == 1
    msg = str(e.value)
    planned, tflm = m["arena_bytes_planned"], m["tflm_arena_bytes"]
    assert f"runtime arena {planned:,} bytes" in msg and "RAM budget 512 bytes" in msg
    assert f"TFLite Micro would need {tflm:,} bytes" in msg
    assert f"{m['tflite_bytes']:,} bytes" in msg and f"{m['tflite_bytes'] - 1:,} bytes" in msg
    after = json.loads((run_copy / "metrics.json").read_text())
    assert after["budget_check"]["ram"] == {
        "budget_bytes": 512, "measured_bytes": planned, "what": "micronas runtime arena (planned, exact)",
        "ok": False, "tflm_arena_bytes": tflm, "tflm_ok": False}


def test_a_failed_budget_check_does_not_replace_the_recorded_budgets(run_copy):
    # "would it fit in 512 B?" must not change what a later `micronas profile` checks against
    planned = json.loads((run_copy / "metrics.json").read_text())["arena_bytes_planned"]
    api.export(run_copy, Budgets(ram_bytes=planned))
    with pytest.raises(BudgetError):
        api.export(run_copy, Budgets(ram_bytes=512))
    after = json.loads((run_copy / "metrics.json").read_text())
    assert after["budgets"]["ram_bytes"] == planned
    assert after["budget_check"]["ram"]["budget_bytes"] == 512 and not after["budget_check"]["ram"]["ok"]
    assert api.effective_budgets(run_copy, Budgets()).ram_bytes == planned


def test_budget_exactly_met_passes(run_copy):
    m = json.loads((run_copy / "metrics.json").read_text())
    out = api.export(run_copy, Budgets(ram_bytes=m["arena_bytes_planned"], flash_bytes=m["tflite_bytes"]))
    assert out.budget_check["ram"]["ok"] and out.budget_check["flash"]["ok"]


def test_unsupported_op_is_named(exported_run):
    from firmware_export import verify

    with pytest.raises(ExportError) as e:
        verify.check_ops(["CONV_2D", "FlexConv3D", "MEAN"], exported_run / "model_int8.tflite")
    assert "FlexConv3D" in str(e.value) and "CONV_2D" in str(e.value)


def test_interrupted_export_leaves_nothing_partial_and_resumes(run_copy, monkeypatch):
    from firmware_export import convert

    (run_copy / "model_int8.tflite").unlink()
    (run_copy / "model.onnx").unlink()
    real = convert.onnx_to_int8_tflite

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(convert, "onnx_to_int8_tflite", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        api.export(run_copy)
    assert (run_copy / "model.onnx").exists() and not (run_copy / "model_int8.tflite").exists()
    assert not [p for p in run_copy.rglob("*") if p.name.endswith(".tmp")]

    monkeypatch.setattr(convert, "onnx_to_int8_tflite", real)
    stages: list[str] = []
    api.export(run_copy, on_stage=stages.append)
    assert [s.split()[0] for s in stages] == ["int8", "verification", "C", "C"]  # ONNX not redone


def test_exported_model_runtime_bit_exact_on_1000_random_windows(exported_run):
    """The whole exported model (DY-Conv, dwsep, skip) through the generated C runtime."""
    from .runtime_harness import compare

    toolchain("gcc")
    r = compare((exported_run / "model_int8.tflite").read_bytes(), n=1000, seed=7)
    assert r.tflm_exact_rate == 1.0 and r.litert_max_lsb <= api.MAX_INTERPRETER_LSB_DIFF
    m = json.loads((exported_run / "metrics.json").read_text())
    assert m["runtime_vs_tflm"]["exact_match_rate"] == 1.0 and m["runtime_vs_tflm"]["windows"] == 12
    assert r.arena_bytes == m["arena_bytes_planned"] <= m["arena_bytes_without_reuse"]
    assert {"micronas_model.h", "micronas_model.c", "micronas_runtime.h", "mn_conv.c"} <= {
        p.name for p in (exported_run / "c").iterdir()}


def _predicts(monkeypatch, latency_ms):
    """Export with a latency table's prediction of `latency_ms` (the tiny data's shape has no table)."""
    from types import SimpleNamespace

    from micronas.results import PredictionRecord
    from micronas.stages import export as export_stage

    def fake(the_arch, gen, board):
        rec = PredictionRecord(latency_ms, latency_ms * 110e3, "instructions", "fake table", [1.0] * len(gen.layers),
                               gen.arena_bytes, gen.flash_bytes_weights, 50_000, "fake flash", "fake.json", board.name)
        return rec, SimpleNamespace(latency_ms=latency_ms, unit="instructions")

    monkeypatch.setattr(export_stage, "_predict_for_export", fake)


def test_predicted_latency_over_the_budget_is_exit_1_and_keeps_the_artefacts(run_copy, monkeypatch):
    _predicts(monkeypatch, 12.5)
    (run_copy / "metrics.json").unlink()
    with pytest.raises(BudgetError) as e:
        api.export(run_copy, Budgets(latency_s=0.01))
    assert e.value.exit_code == 1
    assert "predicted latency 12.500 ms (instructions) exceeds the latency budget 10.000 ms" in str(e.value)
    m = json.loads((run_copy / "metrics.json").read_text())
    assert m["predicted_latency_ms"] == 12.5 and m["budgets"]["latency_s"] == 0.01
    for f in ("model_int8.tflite", "c/micronas_model.c", "c/model_data.h"):
        assert (run_copy / f).exists()
    assert api.export(run_copy, Budgets(latency_s=0.0125)).prediction.latency_ms == 12.5  # equal to it fits


def test_export_checks_the_latency_budget_recorded_by_the_search(run_copy, monkeypatch):
    _predicts(monkeypatch, 12.5)
    (run_copy / "search.json").write_text(json.dumps({"budgets": {"latency_s": 0.01, "ram_bytes": None,
                                                                  "flash_bytes": None}}))
    with pytest.raises(BudgetError, match="exceeds the latency budget 10.000 ms"):
        api.export(run_copy)
    assert api.export(run_copy, Budgets(latency_s=0.02)).budgets.latency_s == 0.02  # given beats recorded


def _litert_off_by(monkeypatch, lsb: int):
    """Make LiteRT disagree with TFLite Micro by `lsb` on one logit of the first window (away from
    the int8 limits, so nothing clips)."""
    from firmware_export import verify

    real = verify.run_litert

    def shifted(path, x):
        out = real(path, x).copy()
        v = int(out[0, 0])
        out[0, 0] = v - lsb if v - lsb >= -128 else v + lsb
        return out

    monkeypatch.setattr(verify, "run_litert", shifted)


def test_litert_disagreement_is_recorded_and_warned_not_fatal(run_copy, monkeypatch):
    """The board computes TFLM's semantics: LiteRT's disagreement is a warning, the export finishes."""
    from micronas import report

    before = json.loads((run_copy / "metrics.json").read_text())
    _litert_off_by(monkeypatch, 9)
    stages: list[str] = []
    m = api.export(run_copy, on_stage=stages.append)
    lc = m.litert_check
    assert lc["ok"] is False and lc["allowed_max_lsb_diff"] == api.MAX_INTERPRETER_LSB_DIFF == 4
    assert lc["max_lsb_diff"] == m.litert_vs_tflm["max_lsb_diff"] >= 8  # 9, less a one-LSB rounding at most
    warnings = [s for s in stages if s.startswith("warning: ")]
    assert len(warnings) == 1 and f"differ by up to {lc['max_lsb_diff']} LSB (more than 4)" in warnings[0]
    assert lc["warning"] in warnings[0]
    # the int8 accuracy is TFLM's, unchanged; our own chain is still held exact
    assert m.accuracy_int8 == before["accuracy_int8"]
    assert m.runtime_vs_tflm["exact_match_rate"] == 1.0
    on_disk = json.loads((run_copy / "metrics.json").read_text())
    assert on_disk["litert_check"] == lc and on_disk["litert_vs_tflm"] == m.litert_vs_tflm
    for f in ("model.pt", "model_int8.tflite", "c/micronas_model.c"):
        assert (run_copy / f).exists()
    page = (run_copy / report.REPORT_DIR / "report.md")
    report.build(run_copy)
    text = page.read_text()
    assert "Warning: LiteRT and TFLite Micro outputs differ by up to" in text and "int8 (LiteRT)" in text


def test_divergence_rows_find_the_first_op_that_differs():
    from firmware_export.verify import divergence_rows

    same = np.arange(-8, 8, dtype=np.int8).reshape(2, 8)
    off = same.copy()
    off[1, 3] += 2  # one value of 16, two LSB
    a = {10: same, 11: same, 12: same, 13: same[:, :4]}
    b = {10: same, 11: off, 12: off + 1, 13: same}  # 13: TFLM lends the RESHAPE its input's buffer
    rows = divergence_rows([("CONV_2D", 10), ("FULLY_CONNECTED", 11), ("MUL", 12), ("RESHAPE", 13)], a, b)
    assert [(r.position, r.op, r.tensor, r.max_lsb, r.fraction) for r in rows] == [
        (0, "CONV_2D", 10, 0, 0.0), (1, "FULLY_CONNECTED", 11, 2, 1 / 16), (2, "MUL", 12, 3, 1.0)]


def test_op_divergence_ends_at_the_outputs_the_interpreters_give(exported_run):
    """Op by op, LiteRT against TFLM: every op of the model is compared but the RESHAPEs TFLM runs
    in place, and the last row is the output, whose figures are those of the two interpreters run
    as export runs them."""
    from firmware_export import verify

    path = exported_run / "model_int8.tflite"
    qin, _ = verify.io_params(path)
    x = np.random.default_rng(0).integers(-128, 128, (6, *qin.shape[1:])).astype(np.int8)
    rows = verify.op_divergence(path, x)
    ops = verify.list_ops(path)
    assert [r.op for r in rows] == [ops[r.position] for r in rows]
    assert all(ops[k] == "RESHAPE" for k in set(range(len(ops))) - {r.position for r in rows})
    out = np.abs(verify.run_litert(path, x).astype(int) - verify.run_tflm(path.read_bytes(), x).astype(int))
    assert rows[-1].position == len(ops) - 1
    assert rows[-1].max_lsb == out.max() and rows[-1].fraction == pytest.approx(np.mean(out > 0))


def test_litert_warning_names_where_the_interpreters_part(run_copy, monkeypatch):
    from firmware_export import verify

    _litert_off_by(monkeypatch, 9)
    monkeypatch.setattr(verify, "op_divergence", lambda path, x: [
        verify.OpDivergence(0, "CONV_2D", 5, 0, 0.0), verify.OpDivergence(3, "FULLY_CONNECTED", 9, 1, 0.004),
        verify.OpDivergence(7, "FULLY_CONNECTED", 12, 9, 0.25)])
    lc = api.export(run_copy).litert_check
    assert lc["first_divergence"] == {"position": 3, "op": "FULLY_CONNECTED", "tensor": 9, "max_lsb": 1,
                                      "fraction": 0.004, "ops": 8, "windows": 12}
    assert ("they first part at op 3 of 8 (FULLY_CONNECTED), a one-LSB rounding difference on 0.4 % of its "
            f"values, which the layers after it carry to {lc['max_lsb_diff']} LSB at the output") in lc["warning"]
    log = (run_copy / "export.log").read_text()
    assert "LiteRT vs TFLite Micro, op by op, on 12 test windows" in log
    assert "       3  FULLY_CONNECTED                 9        1  0.40 %" in log


def test_litert_warning_when_only_the_output_op_differs(run_copy, monkeypatch):
    from firmware_export import verify

    _litert_off_by(monkeypatch, 9)
    monkeypatch.setattr(verify, "op_divergence", lambda path, x: [
        verify.OpDivergence(0, "CONV_2D", 5, 0, 0.0), verify.OpDivergence(4, "FULLY_CONNECTED", 12, 9, 1 / 48)])
    lc = api.export(run_copy).litert_check
    assert "they first part at op 4 of 5 (FULLY_CONNECTED), up to 9 LSB on 2.1 % of its values (the output op " \
           "itself)." in lc["warning"]


def test_litert_diagnostic_that_fails_leaves_the_export_finished(run_copy, monkeypatch):
    from firmware_export import verify

    _litert_off_by(monkeypatch, 9)

    def broken(path, x):
        raise RuntimeError("no preserved tensors")

    monkeypatch.setattr(verify, "op_divergence", broken)
    m = api.export(run_copy)
    assert m.litert_check["ok"] is False and m.litert_check["first_divergence"] is None
    assert "they first part" not in m.litert_check["warning"]
    assert "not compared: RuntimeError: no preserved tensors" in (run_copy / "export.log").read_text()


def test_litert_within_tolerance_is_ok_without_warning(run_copy):
    stages: list[str] = []
    m = api.export(run_copy, on_stage=stages.append)
    assert m.litert_check["ok"] is True and m.litert_check["warning"] is None
    assert m.litert_check["max_lsb_diff"] == m.litert_vs_tflm["max_lsb_diff"] <= 1
    assert m.litert_check["accuracy_int8_litert"] == pytest.approx(m.accuracy_int8, abs=1 / 12 + 1e-9)
    assert not [s for s in stages if s.startswith("warning")]


def test_cli_export_exits_0_with_the_litert_warning(run_copy, monkeypatch):
    from typer.testing import CliRunner

    from micronas.cli import app

    _litert_off_by(monkeypatch, 9)
    r = CliRunner().invoke(app, ["export", str(run_copy)])
    assert r.exit_code == 0, r.output
    assert "warning: LiteRT and TFLite Micro outputs differ by up to" in r.output
    assert "(warning: more than 4 LSB" in r.output and "the int8 accuracy is TFLite Micro's" in r.output


def test_c_runtime_differing_from_tflm_is_still_fatal(run_copy, monkeypatch):
    from firmware_export import hostbuild

    real = hostbuild.build_and_run

    def off_by_one(*args, **kwargs):
        out = real(*args, **kwargs).copy()
        out[0, 0] = out[0, 0] + 1 if out[0, 0] < 127 else out[0, 0] - 1
        return out

    monkeypatch.setattr(hostbuild, "build_and_run", off_by_one)
    with pytest.raises(ExportError) as e:
        api.export(run_copy)
    assert e.value.exit_code == 2
    assert "the generated C runtime differs from TFLite Micro on 1 of 12 test windows" in e.value.message
    assert "micronas bug" in e.value.message


def test_per_layer_int8_error_is_measured_for_every_layer(exported_run):
    import torch

    from firmware_export import verify
    from micronas import layer_error
    from micronas.data import arrays_for
    from micronas.rundir import RunDir
    from micronas.stages.common import folded_model, load_run

    m = json.loads((exported_run / "metrics.json").read_text())
    e = m["layer_int8_error"]
    arch = json.loads((exported_run / "arch.json").read_text())
    assert e["split"] == "validation" and e["windows"] > 0
    assert [r["layer"] for r in e["layers"]] == list(range(len(arch["cells"]) + 2))  # blocks, then logits
    assert e["layers"][-1]["name"] == "logits"
    for r in e["layers"]:
        assert 0 < r["relative_error"] < 0.25 and 0 < r["rms_error_lsb"] < 8, r

    # the figure is a measurement: fp32 weights that no longer match the int8 model show up at once
    run = RunDir(exported_run)
    _, the_arch, ds, split, std = load_run(run)
    X = std.apply(arrays_for(ds, split)["val"][0])
    qin, _ = verify.io_params(exported_run / "model_int8.tflite")
    model = folded_model(run, the_arch)
    names = [r["name"] for r in e["layers"][:-1]]
    same = layer_error.layer_errors(exported_run / "model_int8.tflite", model, names, X, qin.quantize(X.transpose(0, 2, 1)))
    assert [round(r["relative_error"], 9) for r in same] == [round(r["relative_error"], 9) for r in e["layers"]]
    with torch.no_grad():
        model.classifier.weight.mul_(-1.0)
    off = layer_error.layer_errors(exported_run / "model_int8.tflite", model, names, X, qin.quantize(X.transpose(0, 2, 1)))
    assert [r["relative_error"] for r in off[:-1]] == [r["relative_error"] for r in same[:-1]]  # blocks untouched
    assert off[-1]["relative_error"] > 1.0 > 10 * same[-1]["relative_error"]


def test_report_shows_the_int8_loss_and_the_per_layer_error(exported_run, tmp_path):
    import shutil

    from micronas import report

    run = tmp_path / "r"
    shutil.copytree(exported_run, run)
    report.build(run)
    text = (run / "report" / "report.md").read_text()
    assert "int8 loss" in text and "int8 vs fp32 output error (validation)" in text
    assert "| head | global average" in text and " LSB) |" in text


def test_trained_dyagg_network_exports_bit_exact_and_symmetric(tmp_path, tiny_npz):
    """A trained network of aggregation-form DY-Conv cells (K = 2 and 4, stride 1 and 2) exports
    to the graph LiteRT accepts and TFLM runs (no TRANSPOSE; the computed filter symmetric, per
    tensor), and the C runtime equals TFLM on the test split and on 1,000 random windows."""
    from firmware_export import verify
    from firmware_export.tflite_graph import read
    from micronas.train import TrainConfig

    from .runtime_harness import compare

    toolchain("gcc")
    arch = {"format": "micronas.arch/1", "input_channels": 4, "input_length": 37, "num_classes": 3,
            "stem": {"op": "conv", "out": 8, "kernel": 5, "stride": 2},
            "cells": [{"op": "dyagg", "out": 12, "kernel": 5, "stride": 1, "experts": 4},
                      {"op": "dyagg", "out": 12, "kernel": 3, "stride": 2, "experts": 2},
                      {"op": "dyagg", "out": 16, "kernel": 7, "stride": 1, "experts": 2},
                      {"op": "dyagg", "out": 12, "kernel": 3, "stride": 1, "experts": 4}]}
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    run = tmp_path / "run"
    api.train(tiny_npz, run, arch=tmp_path / "arch.json", cfg=TrainConfig(epochs=8, seed=0))
    api.export(run)
    # the experts are an initializer used as they are: a Reshape of a constant that the ONNX
    # exporter leaves unfolded made onnx2tf fail (four dyagg cells of a watch-data search)
    import onnx

    graph = onnx.load(run / "model.onnx").graph
    consts = {t.name for t in graph.initializer}
    assert not [n.name for n in graph.node if n.op_type == "Reshape" and n.input[0] in consts]
    tflite = run / "model_int8.tflite"
    ops = verify.list_ops(tflite)
    assert "TRANSPOSE" not in ops and ops.count("CONV_2D") == 5 and ops.count("SOFTMAX") == 4
    g = read(tflite.read_bytes())
    computed = [g.tensors[op.inputs[1]] for op in g.ops if op.name == "CONV_2D" and not g.tensors[op.inputs[1]].is_const]
    assert [t.shape for t in computed] == [(12, 1, 5, 8), (12, 1, 3, 12), (16, 1, 7, 12), (12, 1, 3, 16)]
    assert all(len(t.scales) == 1 and t.zero_point == 0 for t in computed)
    m = json.loads((run / "metrics.json").read_text())
    assert m["runtime_vs_tflm"]["exact_match_rate"] == 1.0 and m["runtime_vs_tflm"]["windows"] == 12
    r = compare(tflite.read_bytes(), n=1000, seed=3)
    assert r.tflm_exact_rate == 1.0


def test_conversion_leaves_no_temp_files_behind(exported_run, tmp_path):
    """TensorFlow's autograph writes generated modules to the system temp dir and removes them
    only at interpreter exit, so a worker that ends otherwise (killed, os._exit) left them there:
    the conversion keeps them in its own temp folder, which goes when it ends. A fresh process
    (autograph caches what it converted) with its own TMPDIR, ended by os._exit."""
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    meta = json.loads((exported_run / "arch.json").read_text())
    script = (
        "import os, numpy as np\n"
        "from pathlib import Path\n"
        "from firmware_export import convert\n"
        f"calib = np.random.default_rng(0).standard_normal((4, {meta['input_length']}, {meta['input_channels']}))\n"
        f"convert.onnx_to_int8_tflite(Path({str(exported_run / 'model.onnx')!r}), calib.astype(np.float32), "
        f"Path({str(tmp_path / 'm.tflite')!r}))\n"
        "os._exit(0)\n")
    env = {**os.environ, "TMPDIR": str(system_tmp), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", script], env=env, cwd=Path(__file__).resolve().parents[1], check=True,
                   timeout=600)
    assert (tmp_path / "m.tflite").stat().st_size > 0
    assert sorted(p.name for p in system_tmp.iterdir()) == []


def test_a_run_without_the_window_mean_quantises_windows_on_the_board_as_in_training(tmp_path, tiny_npz, tiny_arch):
    """Trained with each window's mean removed, the export's C helpers remove it too:
    micronas_quantize_window (model_data.h) gives the int8 input the host computed for every test
    window (mean in double, then standardise, then quantise), and micronas_model.h says so."""
    from firmware_export import verify
    from micronas.data import Standardizer, arrays_for, load_dataset
    from micronas.data.split import Split
    from micronas.train import TrainConfig

    run = tmp_path / "run"
    api.train(tiny_npz, run, arch=tiny_arch, cfg=TrainConfig(epochs=3, seed=0, remove_window_mean=True))
    api.export(run)
    std = Standardizer.from_json(json.loads((run / "normalization.json").read_text()))
    assert std.remove_window_mean
    assert "#define MICRONAS_MODEL_REMOVES_WINDOW_MEAN 1" in (run / "c" / "micronas_model.h").read_text()
    assert "#define MICRONAS_REMOVES_WINDOW_MEAN 1" in (run / "c" / "model_data.h").read_text()
    ds = load_dataset(tiny_npz)
    X, _ = arrays_for(ds, Split.from_json(json.loads((run / "split.json").read_text())))["test"]
    qin, _ = verify.io_params(run / "model_int8.tflite")
    host = qin.quantize(std.apply(X).transpose(0, 2, 1))  # (N, T, C), as the board's input
    lib = _compile_shared(tmp_path, run / "c", extra='#include "model_data.h"\n'
                          "void quantize_window(const float *raw, signed char *input) {\n"
                          "  micronas_quantize_window(raw, input);\n}\n")
    raw = np.ascontiguousarray(X.transpose(0, 2, 1), dtype=np.float32)  # time-major, as a sensor delivers
    board = np.zeros(host.shape, np.int8)  # C order: one window after another, time-major
    for i in range(len(raw)):
        lib.quantize_window(raw[i].ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                            board[i].ctypes.data_as(ctypes.POINTER(ctypes.c_byte)))
    inside = (host > -128) & (host < 127)  # past the clip the host clips and the board saturates: both at the ends
    np.testing.assert_array_equal(board[inside], host[inside])
    assert np.abs(board.astype(int) - host.astype(int)).max() <= 1 and inside.mean() > 0.99
