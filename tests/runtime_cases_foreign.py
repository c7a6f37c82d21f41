"""Cases for the ops Keras and PyTorch converters emit around 1-D convolutions: RELU, RELU6, TANH,
HARD_SWISH, QUANTIZE (int8 -> int8), CONCATENATION, EXPAND_DIMS and SQUEEZE, and DEQUANTIZE /
float QUANTIZE at the model's edges (the float API).

Quantisations span what a converter writes (zero points -128 for ReLU outputs, TANH's fixed 1/128)
and the edges of each kernel's maths (small and large scale ratios, both signs of HARD_SWISH's
relu-ish exponent, RELU6 whose 6 lies beyond the int8 range).
"""

from __future__ import annotations

import numpy as np

from .runtime_cases import case
from .tflite_builder import ModelBuilder


def unary_model(op: str, shape, q_in, q_out, **options) -> bytes:
    b = ModelBuilder()
    x = b.tensor(shape, scale=q_in[0], zero_point=q_in[1])
    y = b.tensor(shape, scale=q_out[0], zero_point=q_out[1])
    b.op(op, [x], [y], **options)
    return b.build([x], [y])


for _name, _args in [
    ("same_scale_zp_m128", dict(shape=[1, 1, 40, 8], q_in=(0.05, 3), q_out=(0.05, -128))),
    ("half_scale_3d", dict(shape=[1, 37, 5], q_in=(0.1, -20), q_out=(0.05, -128))),
    ("wider_output", dict(shape=[1, 16], q_in=(0.02, 10), q_out=(0.07, -100))),
]:
    case("RELU", _name)(lambda a=_args: unary_model("RELU", **a))

for _name, _args in [
    ("six_inside", dict(shape=[1, 1, 40, 8], q_in=(0.05, -10), q_out=(0.05, -10))),
    ("six_beyond_int8", dict(shape=[1, 25, 6], q_in=(0.02, 0), q_out=(0.02, 0))),
    # (an output quantisation that differs from the input's: TFLM clamps the raw input all the
    # same, and so does the runtime, while LiteRT requantises: not a case the 1-LSB LiteRT check
    # can hold; converters give RELU6 the input's quantisation)
]:
    case("RELU6", _name)(lambda a=_args: unary_model("RELU6", **a))

for _name, _args in [
    ("scale_1_32", dict(shape=[1, 16], q_in=(1 / 32, 0), q_out=(1 / 128, 0))),
    ("3d_small_scale", dict(shape=[1, 9, 5], q_in=(0.01, -20), q_out=(1 / 128, 0))),
    ("4d_large_scale", dict(shape=[1, 1, 11, 3], q_in=(0.3, 15), q_out=(1 / 128, 0))),
    ("tiny_scale", dict(shape=[1, 24], q_in=(0.002, 100), q_out=(1 / 128, 0))),
]:
    case("TANH", _name)(lambda a=_args: unary_model("TANH", **a))

for _name, _args in [
    ("typical", dict(shape=[1, 1, 40, 8], q_in=(0.05, 0), q_out=(0.035, -117))),
    ("small_input_scale", dict(shape=[1, 19, 4], q_in=(0.005, -30), q_out=(0.004, -100))),  # reluish exp < 0
    ("large_input_scale", dict(shape=[1, 32], q_in=(0.2, 12), q_out=(0.15, -120))),  # reluish exp > 0
    ("wide_output", dict(shape=[1, 10], q_in=(0.06, -5), q_out=(0.5, 20))),
]:
    case("HARD_SWISH", _name)(lambda a=_args: unary_model("HARD_SWISH", **a))

for _name, _args in [
    ("narrower", dict(shape=[1, 1, 30, 6], q_in=(0.05, -128), q_out=(0.075, -100))),
    ("wider_shift_positive", dict(shape=[1, 17], q_in=(0.3, 5), q_out=(0.04, -3))),
    ("same_scale_zp_shift", dict(shape=[1, 9, 4], q_in=(0.02, 10), q_out=(0.02, -20))),
]:
    case("QUANTIZE", _name)(lambda a=_args: unary_model("QUANTIZE", **a))


def concat_model(shapes, axis, q=(0.04, -7), const_input: int | None = None, q_inputs=None, seed=0) -> bytes:
    """CONCATENATION of `shapes` on `axis`; the input at `const_input` is a constant tensor."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    xs, graph_in = [], []
    for k, s in enumerate(shapes):
        qk = q_inputs[k] if q_inputs else q
        if k == const_input:
            xs.append(b.tensor(s, scale=qk[0], zero_point=qk[1],
                               data=rng.integers(-128, 128, size=s).astype(np.int8)))
        else:
            xs.append(b.tensor(s, scale=qk[0], zero_point=qk[1]))
            graph_in.append(xs[-1])
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    y = b.tensor(out, scale=q[0], zero_point=q[1])
    b.op("CONCATENATION", xs, [y], axis=axis, fusedActivationFunction=0)
    return b.build(graph_in, [y])  # one activation input: the others are constants


def concat_self_model(shape, axis, times, q=(0.04, -7), seed=0, const_shape=None) -> bytes:
    """The model input concatenated with itself `times` times (plus a constant) on `axis`."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    x = b.tensor(shape, scale=q[0], zero_point=q[1])
    inputs = [x] * times
    if const_shape is not None:
        inputs.append(b.tensor(const_shape, scale=q[0], zero_point=q[1],
                               data=rng.integers(-128, 128, size=const_shape).astype(np.int8)))
    out = list(shape)
    out[axis] = sum(len(inputs) and (shape[axis] if i is x else const_shape[axis]) for i in inputs)
    y = b.tensor(out, scale=q[0], zero_point=q[1])
    b.op("CONCATENATION", inputs, [y], axis=axis, fusedActivationFunction=0)
    return b.build([x], [y])


case("CONCATENATION", "channels_with_constant")(
    lambda: concat_model([[1, 20, 3], [1, 20, 5]], axis=2, const_input=1))
case("CONCATENATION", "time_axis_constant_first")(
    lambda: concat_model([[1, 1, 4, 6], [1, 1, 25, 6]], axis=2, const_input=0, seed=1))
case("CONCATENATION", "channels_self_3x_negative_axis")(lambda: concat_self_model([1, 1, 17, 4], axis=-1, times=3))
case("CONCATENATION", "flat_self_and_constant")(
    lambda: concat_self_model([1, 10], axis=1, times=2, const_shape=[1, 7], seed=2))
case("CONCATENATION", "single_input")(lambda: concat_self_model([1, 8, 3], axis=2, times=1, seed=3))


def expand_squeeze_model(op: str, shape_in, shape_out, axis=None, squeeze_dims=None, seed=0) -> bytes:
    b = ModelBuilder()
    rng = np.random.default_rng(seed)
    s, z = float(rng.uniform(0.01, 0.1)), int(rng.integers(-30, 30))
    x = b.tensor(shape_in, scale=s, zero_point=z)
    y = b.tensor(shape_out, scale=s, zero_point=z)
    if op == "EXPAND_DIMS":
        b.op(op, [x, b.const_i32([axis])], [y])
    else:
        b.op(op, [x], [y], squeezeDims=np.asarray(squeeze_dims, np.int32))
    return b.build([x], [y])


case("EXPAND_DIMS", "3d_to_4d_axis1")(lambda: expand_squeeze_model("EXPAND_DIMS", [1, 25, 6], [1, 1, 25, 6], axis=1))
case("EXPAND_DIMS", "3d_to_4d_axis2")(
    lambda: expand_squeeze_model("EXPAND_DIMS", [1, 37, 3], [1, 37, 1, 3], axis=2, seed=1))
case("SQUEEZE", "4d_to_3d_axis1")(
    lambda: expand_squeeze_model("SQUEEZE", [1, 1, 25, 6], [1, 25, 6], squeeze_dims=[1]))
case("SQUEEZE", "4d_to_3d_axis2")(
    lambda: expand_squeeze_model("SQUEEZE", [1, 37, 1, 3], [1, 37, 3], squeeze_dims=[2], seed=1))


def float_edges_model(shape, q, float_in=True, float_out=True, seed=0) -> bytes:
    """float32 -> QUANTIZE -> int8 RELU -> DEQUANTIZE -> float32, either edge int8 instead."""
    b = ModelBuilder()
    s, z = q
    x = b.tensor(shape, np.float32) if float_in else b.tensor(shape, scale=s, zero_point=z)
    q_in = b.tensor(shape, scale=s, zero_point=z)
    if float_in:
        b.op("QUANTIZE", [x], [q_in])
    r = b.tensor(shape, scale=s, zero_point=-128)  # (LiteRT quantises by 1/scale: 1 LSB off at ties)
    b.op("RELU", [q_in if float_in else x], [r])
    y = r
    if float_out:
        y = b.tensor(shape, np.float32)
        b.op("DEQUANTIZE", [r], [y])
    return b.build([x], [y])


case("DEQUANTIZE", "float_in_float_out")(lambda: float_edges_model([1, 1, 30, 6], (0.05, 3)))
case("DEQUANTIZE", "int8_in_float_out")(lambda: float_edges_model([1, 20], (0.2, -10), float_in=False))
case("QUANTIZE", "float_in_int8_out")(lambda: float_edges_model([1, 25, 3], (0.013, -40), float_out=False))
