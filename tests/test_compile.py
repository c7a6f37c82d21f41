"""Bring your own model: `micronas compile MODEL.tflite` and `micronas profile DIR|MODEL.tflite`
on models made by Keras and PyTorch, end to end on the emulated board, and every way a user's
input can be wrong (exit 2, nothing written)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from firmware_export import hostbuild, verify
from firmware_export.codegen.registry import runtime_op_names
from micronas import api
from micronas.stages import compile as compile_stage

from .conftest import toolchain
from .foreign_models import C, K, T, keras_conv1d, torch_conv1d
from .test_cli import assert_clean_failure, run_cli

BOARD = "nucleo-f446re"
# Both test networks have the same tensor shapes, so the same plan. Views (RESHAPE) cost nothing;
# the peak is the second conv, with the pooled input (32 x 8 = 256 B) and its output (32 x 16 =
# 512 B) alive together. Conv1 is smaller: input 64 x 3 = 192 B + output 64 x 8 = 512 B = 704 B.
ARENA_BYTES = 768


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("foreign")
    return {"keras": keras_conv1d(d / "keras_conv1d.tflite"),
            "keras_float": keras_conv1d(d / "keras_float.tflite", quantize=False),
            "keras_expand_dims": keras_conv1d(d / "keras_expand_dims.tflite", batch=None)}


@pytest.fixture(scope="module")
def torch_model(tmp_path_factory) -> Path:
    return torch_conv1d(tmp_path_factory.mktemp("foreign_torch") / "torch_conv1d.tflite")


@pytest.fixture(scope="module")
def windows(tmp_path_factory) -> Path:
    """Raw float windows, (N, T, C), as a user's recording would be."""
    p = tmp_path_factory.mktemp("windows") / "windows.npz"
    np.savez(p, X=np.random.default_rng(1).normal(0.5, 2.0, (24, T, C)).astype(np.float32))
    return p


@pytest.fixture(scope="module")
def keras_compiled(models, windows, tmp_path_factory) -> tuple[Path, object]:
    toolchain("arm-none-eabi-gcc")
    out = tmp_path_factory.mktemp("compiled") / "keras_c"
    p = run_cli("compile", str(models["keras"]), "--out", str(out), "--target", BOARD, "--data", str(windows),
                "--labels", "walk,run,sit,stand", "--mean", "0.5,0.5,0.5", "--std", "2,2,2")
    return out, p


def _no_staging_left(parent: Path) -> None:
    assert not [c.name for c in parent.iterdir() if c.name.startswith(("micronas-", "."))], list(parent.iterdir())


def test_compile_keras_writes_a_verified_c_model(keras_compiled, models):
    out, p = keras_compiled
    assert p.returncode == 0, p.stderr
    assert "100.0% of 24 windows bit-exact" in p.stdout
    rec = json.loads((out / "compile.json").read_text())
    # the compute ops exactly; the views around each Conv1D differ with the Keras the process runs
    # (Keras 3 emits 2 RESHAPE, the legacy Keras 2 that onnx2tf switches on in the same process 4)
    views = {k: v for k, v in rec["op_counts"].items() if k in ("RESHAPE", "EXPAND_DIMS", "SQUEEZE")}
    assert {k: v for k, v in rec["op_counts"].items() if k not in views} == \
        {"CONV_2D": 2, "MAX_POOL_2D": 1, "MEAN": 1, "FULLY_CONNECTED": 1}
    assert sum(views.values()) in (2, 4), views
    assert rec["arena_bytes_planned"] == ARENA_BYTES
    assert rec["runtime_vs_tflm"] == {"windows": 24, "exact_match_rate": 1.0, "max_lsb_diff": 0}
    assert rec["labels"] == ["walk", "run", "sit", "stand"] and rec["normalisation"]["std"] == [2.0] * 3
    assert rec["windows_source"].startswith("windows.npz[X]: 24 float32 windows, standardised by --mean/--std")
    assert rec["tflite_bytes"] == models["keras"].stat().st_size
    assert rec["code_footprint"]["text_bytes"] > rec["flash_bytes_weights"]
    # the artefacts on their own: the windows written, quantised as the header's helper does,
    # run through a fresh host build, equal TFLite Micro bit for bit
    x = np.load(out / "windows.npy")
    assert x.shape == (24, T * C) and x.dtype == np.int8
    ours = hostbuild.build_and_run(out / "c", x, K)
    tflm = verify.run_tflm(models["keras"].read_bytes(), x.reshape(24, T, C))
    assert np.array_equal(ours, tflm)
    header = (out / "c" / "micronas_model.h").read_text()
    assert "From keras_conv1d.tflite:" in header and "model_int8" not in header
    assert f"#define MICRONAS_ARENA_BYTES {ARENA_BYTES}u" in header
    assert "#define MICRONAS_MODEL_HAS_LABELS 1" in header and "#define MICRONAS_MODEL_HAS_NORMALISATION 1" in header
    assert "MICRONAS_INPUT_CHANNELS" not in header.replace("MICRONAS_MODEL_INPUT_CHANNELS", "")
    assert '"walk",' in (out / "c" / "micronas_model.c").read_text()
    data_h = (out / "c" / "model_data.h").read_text()
    assert f"#define MICRONAS_TFLM_ARENA_BYTES {rec['tflm_arena_bytes']}u" in data_h
    assert "micronas_class_labels." in data_h and "keras_conv1d.tflite:" in data_h
    assert "arena (RAM for activations)" in p.stdout and f"{ARENA_BYTES} B planned" in p.stdout
    assert (out / "report" / "report.html").is_file()
    _no_staging_left(out.parent)


def test_the_data_quantised_like_the_header_helper(keras_compiled, windows):
    """--data floats are standardised by --mean/--std and quantised with the input scale."""
    out, _ = keras_compiled
    qin, _ = verify.io_params(out / "keras_conv1d.tflite")
    raw = np.load(windows)["X"]
    assert np.array_equal(np.load(out / "windows.npy"), qin.quantize((raw - 0.5) / 2.0).reshape(len(raw), -1))


@pytest.fixture(scope="module")
def keras_profiled(keras_compiled):
    toolchain("qemu-system-arm")
    out, _ = keras_compiled
    return out, run_cli("profile", str(out), "--windows", "8")


def test_profile_a_compiled_folder(keras_profiled):
    out, p = keras_profiled
    assert p.returncode == 0, p.stderr
    prof = json.loads((out / "profile.json").read_text())
    assert prof["board"] == BOARD  # recorded by compile --target
    assert prof["arena_bytes_measured"] == prof["arena_bytes_planned"] == ARENA_BYTES
    assert prof["outputs_equal_tflm"] and prof["outputs_equal_host_runtime"] and prof["windows"] == 8
    assert [la["name"] for la in prof["per_layer_instructions"]] == [
        "0:CONV_2D", "1:MAX_POOL_2D", "2:CONV_2D", "3:MEAN", "4:FULLY_CONNECTED"]
    assert 0.99 < prof["per_layer_sum_over_total"] <= 1.0
    assert prof["total_instructions"] > 10_000 and prof["stack_high_water_bytes"] > 0
    assert f"{prof['total_instructions']:,.0f}" in p.stdout and "TensorFlow Lite Micro" in p.stdout
    md = (out / "report" / "report.md").read_text()
    assert "| arena (RAM for activations) | 768 B planned |" in md
    assert f"| instructions per inference | {prof['total_instructions']:,.0f} | not measured |" in md
    assert re.search(r"data:image/png;base64,", (out / "report" / "report.html").read_text())


def test_profile_over_a_ram_budget_exits_1_and_keeps_the_profile(keras_profiled):
    out, _ = keras_profiled
    (out / "profile.json").unlink()
    p = run_cli("profile", str(out), "--windows", "2", "--ram", "512")
    assert_clean_failure(p, 1, "768")
    assert json.loads((out / "profile.json").read_text())["over_budget"]


def test_profile_a_torch_tflite_compiles_it_first(torch_model, tmp_path):
    toolchain("arm-none-eabi-gcc")
    toolchain("qemu-system-arm")
    out = tmp_path / "torch_c"
    p = run_cli("profile", str(torch_model), "--out", str(out), "--target", BOARD, "--windows", "4")
    assert p.returncode == 0, p.stderr
    rec = json.loads((out / "compile.json").read_text())
    # the compute ops exactly; the views around each Conv1D differ with the Keras the process runs
    # (Keras 3 emits 2 RESHAPE, the legacy Keras 2 that onnx2tf switches on in the same process 4)
    views = {k: v for k, v in rec["op_counts"].items() if k in ("RESHAPE", "EXPAND_DIMS", "SQUEEZE")}
    assert {k: v for k, v in rec["op_counts"].items() if k not in views} == \
        {"CONV_2D": 2, "MAX_POOL_2D": 1, "MEAN": 1, "FULLY_CONNECTED": 1}
    assert sum(views.values()) in (2, 4), views
    assert rec["runtime_vs_tflm"]["exact_match_rate"] == 1.0 and rec["windows"] == compile_stage.RANDOM_WINDOWS
    assert "seed 0" in rec["windows_source"] and rec["labels"] is None and rec["normalisation"] is None
    prof = json.loads((out / "profile.json").read_text())
    assert prof["arena_bytes_measured"] == rec["arena_bytes_planned"] == ARENA_BYTES and prof["outputs_equal_tflm"]
    header = (out / "c" / "micronas_model.h").read_text()
    assert "#define MICRONAS_MODEL_HAS_LABELS 0" in header and "no class names were given" in header
    assert "#define MICRONAS_MODEL_HAS_NORMALISATION 0" in header
    assert '"3",' in (out / "c" / "micronas_model.c").read_text()  # the index as text, as the header says


def test_random_windows_are_seeded():
    qin = verify.QuantParams(0.1, 0, (1, T, C))
    a, why = compile_stage.random_windows(qin)
    assert np.array_equal(a, compile_stage.random_windows(qin)[0]) and a.shape == (64, T * C)
    assert a.min() == -128 and a.max() == 127 and "seed 0" in why


def test_expand_dims_from_keras_with_a_dynamic_batch(models, tmp_path):
    """Keras's default (batch None) makes the converter emit EXPAND_DIMS around each Conv1D."""
    out = tmp_path / "c"
    p = run_cli("compile", str(models["keras_expand_dims"]), "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert "EXPAND_DIMS" in json.loads((out / "compile.json").read_text())["tflite_ops"]
    assert json.loads((out / "compile.json").read_text())["runtime_vs_tflm"]["exact_match_rate"] == 1.0


def _unsupported_model(path: Path, monkeypatch) -> Path:
    """An int8 model with ops no runtime registers: SQUARED_DIFFERENCE twice, RSQRT once."""
    from . import tflite_builder

    monkeypatch.setitem(tflite_builder._OPTIONS, "SQUARED_DIFFERENCE", None)
    monkeypatch.setitem(tflite_builder._OPTIONS, "RSQRT", None)
    b = tflite_builder.ModelBuilder()
    x = b.tensor([1, 8], scale=0.1, zero_point=0)
    y = b.tensor([1, 8], scale=0.1, zero_point=0)
    z = b.tensor([1, 8], scale=0.1, zero_point=0)
    w = b.tensor([1, 8], scale=0.1, zero_point=0)
    b.op("SQUARED_DIFFERENCE", [x, x], [y])
    b.op("SQUARED_DIFFERENCE", [y, x], [z])
    b.op("RSQRT", [z], [w])
    path.write_bytes(b.build([x], [w]))
    return path


@pytest.mark.parametrize("case", ["missing", "garbage", "float", "unsupported", "data_shape", "labels", "mean"])
def test_bad_input_exits_2_and_writes_nothing(case, models, tmp_path, monkeypatch):
    out = tmp_path / "out"
    model = models["keras"]
    extra: list[str] = []
    if case == "missing":
        model, fragments = tmp_path / "nope.tflite", ["nope.tflite does not exist"]
    elif case == "garbage":
        model = tmp_path / "garbage.tflite"
        model.write_bytes(b"this is not a model at all")
        fragments = ["not a TFLite flatbuffer", "TFL3"]
    elif case == "float":
        model, fragments = models["keras_float"], ["not a full-integer int8 model", "float32", "TFLITE_BUILTINS_INT8"]
    elif case == "unsupported":
        model = _unsupported_model(tmp_path / "odd.tflite", monkeypatch)
        fragments = ["SQUARED_DIFFERENCE x2", "RSQRT x1"]
    elif case == "data_shape":
        bad = tmp_path / "chw.npy"
        np.save(bad, np.zeros((5, C, T), np.float32))  # channels-first, as a PyTorch user has it
        extra, fragments = ["--data", str(bad)], ["has shape [5, 3, 64]", "[1, 64, 3]", "transpose(0, 2, 1)"]
    elif case == "labels":
        extra, fragments = ["--labels", "a,b,c"], ["gives 3 names", "4 outputs"]
    else:
        extra, fragments = ["--mean", "0,0"], ["--mean and --std go together"]
    p = run_cli("compile", str(model), "--out", str(out), *extra)
    assert_clean_failure(p, 2, *fragments)
    assert not out.exists()
    _no_staging_left(tmp_path)


def test_an_unrelated_folder_is_never_overwritten(models, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    p = run_cli("compile", str(models["keras"]), "--out", str(out))
    assert_clean_failure(p, 2, "non-empty folder that micronas compile did not write")
    assert [c.name for c in out.iterdir()] == ["notes.txt"]


def test_an_interrupted_compile_leaves_the_previous_one(models, tmp_path, monkeypatch):
    out = tmp_path / "c"
    first = api.compile_model(models["keras"], out)
    before = (out / "compile.json").read_bytes()

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(hostbuild, "build_and_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        api.compile_model(models["keras"], out, labels="a,b,c,d")
    assert (out / "compile.json").read_bytes() == before and first.labels is None
    _no_staging_left(tmp_path)


def test_export_of_a_folder_holding_only_a_model_points_to_compile(models, tmp_path):
    (tmp_path / "model_int8.tflite").write_bytes(models["keras"].read_bytes())
    for command in ("export", "profile"):
        assert_clean_failure(run_cli(command, str(tmp_path)), 2, "holds model_int8.tflite", "micronas compile")


def test_keras_concatenation_model_compiles_and_profiles_bit_exact(tmp_path):
    """The ops Keras users' converters emit (fused and standalone RELU/RELU6, TANH, HARD_SWISH,
    MAX_POOL_2D, EXPAND_DIMS around each Conv1D, CONCATENATION of four branches, MEAN, SOFTMAX)
    through the two commands a user runs, on the emulated Cortex-M4."""
    toolchain("arm-none-eabi-gcc")
    toolchain("qemu-system-arm")
    from .test_foreign_models import keras_conv1d_tflite

    model = tmp_path / "har_concat.tflite"
    model.write_bytes(keras_conv1d_tflite(float_io=False))
    out = tmp_path / "har_concat_micronas"
    p = run_cli("compile", str(model), "--out", str(out), "--target", BOARD)
    assert p.returncode == 0, p.stderr
    rec = json.loads((out / "compile.json").read_text())
    for op in ("CONCATENATION", "TANH", "HARD_SWISH", "MAX_POOL_2D", "MEAN", "EXPAND_DIMS"):
        assert op in rec["op_counts"], rec["op_counts"]
    assert rec["runtime_vs_tflm"]["exact_match_rate"] == 1.0 and rec["runtime_vs_tflm"]["max_lsb_diff"] == 0
    p = run_cli("profile", str(out), "--target", BOARD, "--windows", "4")
    assert p.returncode == 0, p.stderr
    prof = json.loads((out / "profile.json").read_text())
    assert prof["outputs_equal_tflm"] is True
    assert prof["arena_bytes_measured"] == rec["arena_bytes_planned"]
