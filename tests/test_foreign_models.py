"""Models made elsewhere: a Keras Conv1D network converted by TFLiteConverter, run through the
exporter's C-runtime path bit-exact against TFLite Micro; the one error for unsupported ops.

The Keras network uses what such models use (Conv1D with relu6 / tanh / hard-swish, a standalone
ReLU and ReLU6, MaxPooling1D, Concatenate, GlobalAveragePooling1D, Dense + softmax), so the
converter emits EXPAND_DIMS and RESHAPE around CONV_2D, MAX_POOL_2D, TANH, HARD_SWISH, RELU,
RELU6, a QUANTIZE before the CONCATENATION (tanh's fixed 1/128 scale), MEAN, FULLY_CONNECTED and
SOFTMAX; converted once with int8 input and output and once with float32 ones (QUANTIZE and
DEQUANTIZE at the edges, run by the generated `micronas_invoke_float`).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from micronas_base.errors import ExportError

from .conftest import toolchain
from .runtime_harness import compare
from .tflite_builder import ModelBuilder

WINDOWS = 300  # random windows per model (each op is checked on 1,000 in test_runtime_ops)


def keras_conv1d_tflite(float_io: bool) -> bytes:
    """A small Keras HAR-style Conv1D network (input 128 x 6), full-integer int8 by TFLiteConverter."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    keras = tf.keras
    keras.utils.set_random_seed(0)
    inp = keras.Input((128, 6))  # (T, C); batch left open, as users write it
    a = keras.layers.Conv1D(16, 5, padding="same", activation="relu6")(inp)  # fused RELU6
    a = keras.layers.MaxPooling1D(2)(a)
    b = keras.layers.Conv1D(8, 3, padding="same", activation="tanh")(a)
    # x * relu6(x + 3) / 6, which the converter fuses into HARD_SWISH (a callable works in Keras 3
    # and in the legacy Keras 2 that onnx2tf selects with TF_USE_LEGACY_KERAS, which lacks the name)
    c = keras.layers.Activation(lambda t: t * tf.nn.relu6(t + 3.0) * (1.0 / 6.0))(
        keras.layers.Conv1D(8, 3, padding="same")(a))
    d = keras.layers.Conv1D(8, 1)(keras.layers.ReLU()(a))  # standalone RELU (the pool has 4 readers)
    e = keras.layers.Conv1D(4, 1)(keras.layers.ReLU(max_value=6.0)(a))  # standalone RELU6
    m = keras.layers.Concatenate()([b, c, d, e])
    g = keras.layers.GlobalAveragePooling1D()(m)
    out = keras.layers.Dense(6, activation="softmax")(g)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(32):
            yield [rng.normal(size=(1, 128, 6)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not float_io:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


@pytest.fixture(scope="module")
def keras_models() -> dict[str, bytes]:
    pytest.importorskip("tensorflow")
    return {"int8": keras_conv1d_tflite(False), "float": keras_conv1d_tflite(True)}


KERAS_OPS = {"EXPAND_DIMS", "RESHAPE", "CONV_2D", "MAX_POOL_2D", "RELU6", "TANH", "HARD_SWISH", "RELU", "QUANTIZE",
             "CONCATENATION", "MEAN", "FULLY_CONNECTED", "SOFTMAX"}


@pytest.mark.parametrize("io", ["int8", "float"])
def test_keras_conv1d_model_is_bit_exact_with_tflm(keras_models, io):
    from firmware_export import codegen
    from firmware_export.tflite_graph import read

    toolchain("gcc")
    model = keras_models[io]
    ops = [op.name for op in read(model).ops]
    edges = {"QUANTIZE", "DEQUANTIZE"} if io == "float" else set()
    assert set(ops) == KERAS_OPS | edges, sorted(set(ops))
    if io == "float":
        assert ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE"
    r = compare(model, n=WINDOWS)  # raises, naming the first differing window, unless every output is TFLM's
    assert r.tflm_exact_rate == 1.0 and r.windows == WINDOWS
    assert r.litert_max_lsb <= 1
    plan = codegen.plan(model)
    # the views (EXPAND_DIMS, RESHAPE) and the float edges emit no kernel call
    assert len(plan.layers) == len([o for o in ops if o not in {"EXPAND_DIMS", "RESHAPE", "DEQUANTIZE"}]) - (
        1 if io == "float" else 0)
    assert (plan.float_input is not None, plan.float_output is not None) == ((io == "float"),) * 2
    assert r.arena_bytes < r.naive_bytes


# ---- unsupported ops -----------------------------------------------------------------------------

def unsupported_model() -> bytes:
    """CONV-free graph with an LSTM and two Flex (custom) ops: int8 [1, 8, 4]."""
    b = ModelBuilder()
    x = b.tensor([1, 8, 4], scale=0.05, zero_point=0)
    t1 = b.tensor([1, 8, 4], scale=0.05, zero_point=0)
    b.op("CUSTOM:FlexErf", [x], [t1])
    t2 = b.tensor([1, 8, 4], scale=0.05, zero_point=0)
    b.op("UNIDIRECTIONAL_SEQUENCE_LSTM", [t1], [t2], fusedActivationFunction=0, timeMajor=False)
    t3 = b.tensor([1, 8, 4], scale=0.05, zero_point=0)
    b.op("CUSTOM:FlexErf", [t2], [t3])
    y = b.tensor([1, 8, 4], scale=0.05, zero_point=-128)
    b.op("RELU", [t3], [y])
    return b.build([x], [y])


def test_unsupported_ops_are_one_error_with_counts():
    from firmware_export import codegen

    with pytest.raises(ExportError) as e:
        codegen.plan(unsupported_model())
    msg = str(e.value)
    assert "contains ops the micronas runtime does not support: FlexErf x2 (custom), UNIDIRECTIONAL_SEQUENCE_LSTM x1;" \
        in msg
    assert "supported: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, RESHAPE" in msg and "HARD_SWISH" in msg
    assert "RELU" not in msg.split("supported:")[0]  # a supported op of the model is not listed as missing
    assert e.value.hint and "SELECT_TF_OPS" in e.value.hint and "docs/adding-an-op.md" in e.value.hint
    assert e.value.exit_code == 2


def test_the_exporter_op_check_gives_the_same_error(tmp_path):
    from firmware_export import verify

    with pytest.raises(ExportError, match=r"m\.tflite contains ops .*: FlexConv3D x2 \(custom\), LSTM x1; supported"):
        verify.check_ops(["CONV_2D", "FlexConv3D", "LSTM", "FlexConv3D", "MEAN"], tmp_path / "m.tflite")


def test_concatenation_of_differently_quantised_inputs_is_refused():
    """TFLM's Prepare refuses it (its int8 kernel copies raw values); so does the exporter."""
    from firmware_export import codegen

    b = ModelBuilder()
    x = b.tensor([1, 8, 2], scale=0.1, zero_point=5)
    c = b.tensor([1, 8, 3], scale=0.02, zero_point=-30, data=np.zeros((1, 8, 3), np.int8))
    y = b.tensor([1, 8, 5], scale=0.1, zero_point=5)
    b.op("CONCATENATION", [x, c], [y], axis=2, fusedActivationFunction=0)
    with pytest.raises(ExportError, match=r"CONCATENATION input 't1' has scale 0\.0199.* and zero point -30, the "
                                          r"output 't2' 0\.1.* and 5; TFLM concatenates int8 tensors of equal"):
        codegen.plan(b.build([x], [y]))


def test_float_edges_elsewhere_are_refused():
    """A DEQUANTIZE inside the model has no kernel; a float input must go through one QUANTIZE."""
    from firmware_export import codegen

    b = ModelBuilder()
    x = b.tensor([1, 10], scale=0.1, zero_point=0)
    f = b.tensor([1, 10], np.float32)
    b.op("DEQUANTIZE", [x], [f])
    y = b.tensor([1, 10], scale=0.1, zero_point=0)
    b.op("QUANTIZE", [f], [y])
    with pytest.raises(ExportError, match=r"DEQUANTIZE of 't0' is inside the model; the runtime runs DEQUANTIZE only "
                                          r"on the model output"):
        codegen.plan(b.build([x], [y]))
    b = ModelBuilder()
    x = b.tensor([1, 10], np.float32)
    y = b.tensor([1, 10], scale=0.1, zero_point=0)
    b.op("RELU", [x], [y])
    with pytest.raises(ExportError, match=r"model input 't0' is float32 and read by RELU; the runtime takes a float32 "
                                          r"input only through one QUANTIZE to int8"):
        codegen.plan(b.build([x], [y]))


# ---- the emulated Cortex-M4 ----------------------------------------------------------------------

@pytest.mark.parametrize("io", ["int8", "float"])
def test_keras_model_on_the_emulated_cortex_m4(keras_models, io, tmp_path):
    """The profiling firmware around each Keras model builds for the emulated nucleo-f446re
    (-Wall -Wextra -Werror, the float API included) and its SIMD build gives TFLM's outputs on the
    emulated core (for the float model: TFLM's float output is the dequantised int8 core output)."""
    import shutil

    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None:
        pytest.skip("needs arm-none-eabi-gcc and qemu-system-arm")
    from firmware_export import codegen, verify
    from firmware_export.codegen.plan import split_float_edges
    from firmware_export.tflite_graph import read
    from micronas.device import build_image
    from targets import boards
    from targets.protocol import DeviceClient
    from targets.qemu import EmulatedBoard, instructions_from_ticks

    model = keras_models[io]
    g = read(model)
    _, fin, fout = split_float_edges(g)
    gen = codegen.generate(model, labels=tuple("abcdef"), input_mean=(0.0,) * 6, input_std=(1.0,) * 6)
    codegen.write(gen, tmp_path / "c")
    assert ("micronas_invoke_float" in gen.header) == (io == "float")
    board = boards.get("nucleo-f446re")
    image = build_image(board, tmp_path / "c", tmp_path / "fw", emulated=True, simd=True)
    rng = np.random.default_rng(5)
    if io == "float":
        x = rng.normal(size=(6, 1, 128, 6)).astype(np.float32)
        q_in = verify.QuantParams(fin.scale, fin.zero_point, ())
        q_out = verify.QuantParams(fout.scale, fout.zero_point, ())
        windows = [q_in.quantize(w) for w in x]
    else:
        x = rng.integers(-128, 128, size=(6, 1, 128, 6)).astype(np.int8)
        windows = list(x)
    ref = verify.run_tflm(model, x[:, 0])
    with EmulatedBoard(board.qemu.machine, image.elf, tmp_path / "qemu") as emu:
        with DeviceClient.open(emu.url, timeout_s=20.0) as dev:
            hello = dev.hello()
            for w, r in zip(windows, ref):
                dev.set_input(np.ascontiguousarray(w, np.int8).tobytes())
                stats = dev.invoke(1)
                out = np.frombuffer(dev.get_output(), np.int8)
                if io == "float":
                    np.testing.assert_array_equal(q_out.dequantize(out).view(np.int32), r.view(np.int32))
                else:
                    np.testing.assert_array_equal(out, r)
            instructions = instructions_from_ticks(stats.min_ticks, hello.timer_hz, emu.icount_shift)
    print(f"\nKeras Conv1D ({io} I/O) on the emulated Cortex-M4: {instructions:,.0f} instructions per inference "
          f"(QEMU instruction count), arena {gen.arena_bytes:,} B planned, constants {gen.flash_bytes_weights:,} B, "
          f"flatbuffer {len(model):,} B")
    assert 50_000 < instructions < 5_000_000
