"""Single-op models for the runtime bit-exactness tests, registered per runtime op.

`case(op, name)` registers a zero-argument function that returns a `.tflite` flatbuffer. This
module holds the shared helpers and the CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED and RESHAPE
cases; `runtime_cases_*.py` modules hold the others and are imported by test_runtime_ops.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .tflite_builder import ModelBuilder, bias_for, per_channel_weights

SAME, VALID = 0, 1
NONE, RELU, RELU6 = 0, 1, 3
CASES: dict[str, dict[str, Callable[[], bytes]]] = {}
# (op, case) -> why LiteRT is not held to 1 LSB there (TFLM, the reference, always is exact)
LITERT_DIFFERS: dict[tuple[str, str], str] = {}


def case(op: str, name: str, litert_differs: str = ""):
    """Register a case; `litert_differs` says why LiteRT may differ from TFLM by more than 1 LSB."""
    def register(fn):
        CASES.setdefault(op, {})[name] = fn
        if litert_differs:
            LITERT_DIFFERS[(op, name)] = litert_differs
        return fn

    return register


def _io_quant(rng):
    return float(rng.uniform(0.01, 0.1)), int(rng.integers(-30, 30))


def _out_scale(in_scale: float, w_scale: float, taps: int) -> float:
    """An output scale that keeps the accumulator's spread inside int8 (not all saturated)."""
    return float(3 * 74 * 73 * math.sqrt(taps) * in_scale * w_scale / 128)


def conv_model(in_len, in_ch, out_ch, kernel, stride, padding, groups=1, act=NONE, seed=0, axis="W",
               bias=True) -> bytes:
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    s_in, z_in = _io_quant(rng)
    cf = in_ch // groups
    out_len = -(-in_len // stride) if padding == SAME else (in_len - kernel) // stride + 1
    spatial = (lambda n: [1, 1, n]) if axis == "W" else (lambda n: [1, n, 1])
    x = b.tensor([*spatial(in_len), in_ch], scale=s_in, zero_point=z_in)
    fshape = (out_ch, 1, kernel, cf) if axis == "W" else (out_ch, kernel, 1, cf)
    w, ws = per_channel_weights(rng, fshape)
    wt = b.tensor(fshape, data=w, scale=ws, zero_point=np.zeros(out_ch, int))
    inputs = [x, wt]
    if bias:
        inputs.append(b.tensor([out_ch], np.int32, scale=s_in * ws, zero_point=np.zeros(out_ch, int),
                               data=bias_for(rng, out_ch)))
    y = b.tensor([*spatial(out_len), out_ch], scale=_out_scale(s_in, float(ws.mean()), kernel * cf),
                 zero_point=int(rng.integers(-20, 20)))
    stride_opts = {"strideW": stride, "strideH": 1} if axis == "W" else {"strideW": 1, "strideH": stride}
    b.op("CONV_2D", inputs, [y], padding=padding, dilationWFactor=1, dilationHFactor=1,
         fusedActivationFunction=act, **stride_opts)
    return b.build([x], [y])


for _args in [
    ("k3_s1_same", dict(in_len=100, in_ch=6, out_ch=8, kernel=3, stride=1, padding=SAME)),
    ("k5_s2_same_oddlen", dict(in_len=37, in_ch=4, out_ch=8, kernel=5, stride=2, padding=SAME, seed=1)),
    ("k3_s2_valid_relu", dict(in_len=20, in_ch=5, out_ch=7, kernel=3, stride=2, padding=VALID, act=RELU, seed=2)),
    ("k7_single_channel", dict(in_len=33, in_ch=1, out_ch=1, kernel=7, stride=1, padding=SAME, seed=3)),
    ("k5_s1_valid_wide_relu6", dict(in_len=50, in_ch=24, out_ch=32, kernel=5, stride=1, padding=VALID,
                                    act=RELU6, seed=4)),
    ("grouped_depthwise_k3", dict(in_len=25, in_ch=8, out_ch=8, kernel=3, stride=1, padding=SAME, groups=8, seed=5)),
    ("grouped_2_k5_s2", dict(in_len=31, in_ch=8, out_ch=6, kernel=5, stride=2, padding=VALID, groups=2, seed=6)),
    ("time_on_H_axis", dict(in_len=29, in_ch=3, out_ch=5, kernel=3, stride=2, padding=SAME, axis="H", seed=7)),
    ("pointwise_k1", dict(in_len=16, in_ch=12, out_ch=10, kernel=1, stride=1, padding=VALID, seed=8)),
]:
    case("CONV_2D", _args[0])(lambda a=_args[1]: conv_model(**a))


def dyagg_model(in_len, in_ch, out_ch, kernel, experts, stride=1, seed=0) -> bytes:
    """A dyagg layer as firmware_export.dyagg leaves it: attention (AVERAGE_POOL_2D, FC + ReLU,
    FC, SOFTMAX), the aggregation FC over the stacked experts (per-tensor weights at s_w, no bias,
    output symmetric at s_w), RESHAPE to the OHWI filter, CONV_2D with that computed filter."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    s_in, z_in = _io_quant(rng)
    x = b.tensor([1, in_len, in_ch], scale=s_in, zero_point=z_in)
    x_pool = b.tensor([1, in_len, 1, in_ch], scale=s_in, zero_point=z_in)
    b.op("RESHAPE", [x, b.const_i32([1, in_len, 1, in_ch])], [x_pool])
    pooled = b.tensor([1, 1, 1, in_ch], scale=s_in, zero_point=z_in)
    b.op("AVERAGE_POOL_2D", [x_pool], [pooled], padding=VALID, strideW=1, strideH=in_len, filterWidth=1,
         filterHeight=in_len, fusedActivationFunction=NONE)
    hidden = max(4, in_ch // 4)
    h = b.tensor([1, hidden], scale=0.05, zero_point=-128)
    w1, s1 = per_channel_weights(rng, (hidden, in_ch))
    b.op("FULLY_CONNECTED", [pooled, b.tensor(w1.shape, data=w1, scale=s1, zero_point=np.zeros(hidden, int)),
                             b.tensor([hidden], np.int32, scale=s_in * s1, data=bias_for(rng, hidden))],
         [h], fusedActivationFunction=RELU)
    logits = b.tensor([1, experts], scale=0.02, zero_point=3)
    w2, s2 = per_channel_weights(rng, (experts, hidden))
    b.op("FULLY_CONNECTED", [h, b.tensor(w2.shape, data=w2, scale=s2, zero_point=np.zeros(experts, int)), -1],
         [logits], fusedActivationFunction=NONE)
    pi = b.tensor([1, experts], scale=1 / 256, zero_point=-128)
    b.op("SOFTMAX", [logits], [pi], beta=1.0)
    n = out_ch * kernel * in_ch
    s_w = float(rng.uniform(0.002, 0.02))
    stack = rng.integers(-127, 128, size=(n, experts), dtype=np.int64).astype(np.int8)
    agg = b.tensor([1, n], scale=s_w, zero_point=0)
    b.op("FULLY_CONNECTED", [pi, b.tensor(stack.shape, data=stack, scale=s_w, zero_point=0), -1], [agg],
         fusedActivationFunction=NONE)
    filt = b.tensor([out_ch, 1, kernel, in_ch], scale=s_w, zero_point=0)
    b.op("RESHAPE", [agg, b.const_i32([out_ch, 1, kernel, in_ch])], [filt])
    x_conv = b.tensor([1, 1, in_len, in_ch], scale=s_in, zero_point=z_in)
    b.op("RESHAPE", [x, b.const_i32([1, 1, in_len, in_ch])], [x_conv])
    out_len = -(-in_len // stride)
    y = b.tensor([1, 1, out_len, out_ch], scale=_out_scale(s_in, s_w, kernel * in_ch) / 2, zero_point=-128)
    bias = b.tensor([out_ch], np.int32, scale=s_in * s_w, data=bias_for(rng, out_ch) // 8)
    b.op("CONV_2D", [x_conv, filt, bias], [y], padding=SAME, strideW=stride, strideH=1, dilationWFactor=1,
         dilationHFactor=1, fusedActivationFunction=RELU)
    return b.build([x], [y])


for _args in [
    ("dyagg_k4_c32_k5", dict(in_len=64, in_ch=32, out_ch=32, kernel=5, experts=4, seed=40)),
    ("dyagg_k2_c6_o10_k3", dict(in_len=40, in_ch=6, out_ch=10, kernel=3, experts=2, seed=41)),
    ("dyagg_k4_c5_o7_k5_s2", dict(in_len=33, in_ch=5, out_ch=7, kernel=5, experts=4, stride=2, seed=42)),
    ("dyagg_k2_c8_o3_k7", dict(in_len=24, in_ch=8, out_ch=3, kernel=7, experts=2, seed=43)),
]:
    case("CONV_2D", _args[0])(lambda a=_args[1]: dyagg_model(**a))


def dwconv_model(in_len, in_ch, mult, kernel, stride, padding, act=NONE, seed=0, scale_factor=1.0,
                 weight_div=1) -> bytes:
    """scale_factor multiplies the output scale (small: large per-channel requantisation scales);
    weight_div shrinks the int8 weights and the bias (same scales)."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    s_in, z_in = _io_quant(rng)
    out_ch = in_ch * mult
    out_len = -(-in_len // stride) if padding == SAME else (in_len - kernel) // stride + 1
    x = b.tensor([1, 1, in_len, in_ch], scale=s_in, zero_point=z_in)
    w, ws = per_channel_weights(rng, (1, 1, kernel, out_ch), qdim=3)
    w = (w.astype(np.int64) // weight_div).astype(np.int8)
    wt = b.tensor(w.shape, data=w, scale=ws, zero_point=np.zeros(out_ch, int), quantized_dimension=3)
    bt = b.tensor([out_ch], np.int32, scale=s_in * ws, zero_point=np.zeros(out_ch, int),
                  data=bias_for(rng, out_ch) // weight_div)
    y = b.tensor([1, 1, out_len, out_ch], scale=_out_scale(s_in, float(ws.mean()), kernel) * scale_factor,
                 zero_point=int(rng.integers(-20, 20)))
    b.op("DEPTHWISE_CONV_2D", [x, wt, bt], [y], padding=padding, strideW=stride, strideH=1, depthMultiplier=mult,
         dilationWFactor=1, dilationHFactor=1, fusedActivationFunction=act)
    return b.build([x], [y])


for _args in [
    ("k3_s1_same", dict(in_len=40, in_ch=8, mult=1, kernel=3, stride=1, padding=SAME)),
    ("k5_s2_same_oddlen_mult2", dict(in_len=37, in_ch=3, mult=2, kernel=5, stride=2, padding=SAME, seed=1)),
    ("k7_single_channel_relu", dict(in_len=21, in_ch=1, mult=1, kernel=7, stride=1, padding=VALID, act=RELU, seed=2)),
]:
    case("DEPTHWISE_CONV_2D", _args[0])(lambda a=_args[1]: dwconv_model(**a))


def fc_model(batches, n_in, n_out, act=NONE, per_channel=False, seed=0, scale_factor=1.0, weight_div=1) -> bytes:
    """scale_factor multiplies the output scale (small: large requantisation scales); weight_div
    shrinks the int8 weights and the bias (same scales)."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    s_in, z_in = _io_quant(rng)
    # batches > 1 as a 3-D [1, batches, n_in] input, which FULLY_CONNECTED flattens to rows
    x = b.tensor([1, batches, n_in] if batches > 1 else [1, n_in], scale=s_in, zero_point=z_in)
    w = (rng.integers(-127, 128, size=(n_out, n_in)) // weight_div).astype(np.int8)
    ws = rng.uniform(0.002, 0.05, size=n_out if per_channel else 1).astype(np.float32)
    wt = b.tensor(w.shape, data=w, scale=ws, zero_point=np.zeros(len(ws), int))
    bt = b.tensor([n_out], np.int32, scale=s_in * ws, zero_point=np.zeros(len(ws), int),
                  data=bias_for(rng, n_out) // weight_div)
    y = b.tensor([batches, n_out], scale=_out_scale(s_in, float(ws.mean()), n_in) * scale_factor, zero_point=int(rng.integers(-20, 20)))
    b.op("FULLY_CONNECTED", [x, wt, bt], [y], fusedActivationFunction=act)
    return b.build([x], [y])


case("FULLY_CONNECTED", "32_to_4")(lambda: fc_model(1, 32, 4))
case("FULLY_CONNECTED", "single_input_relu")(lambda: fc_model(1, 1, 3, act=RELU, seed=1))
case("FULLY_CONNECTED", "batched_5x17_to_9")(lambda: fc_model(5, 17, 9, seed=2))
case("FULLY_CONNECTED", "per_channel")(lambda: fc_model(1, 24, 6, per_channel=True, seed=3))
# 2 or 4 inputs, per tensor: the aggregation path of mn_fc.c (here with a bias, as BENCH_OP calls it;
# the dyagg cases of CONV_2D run it without), four outputs per word and an odd tail
case("FULLY_CONNECTED", "aggregation_4_to_37_bias_relu")(lambda: fc_model(2, 4, 37, act=RELU, seed=4))
case("FULLY_CONNECTED", "aggregation_2_to_22_bias")(lambda: fc_model(1, 2, 22, seed=5))


def reshape_model(shape_in, shape_out, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    s, z = _io_quant(rng)
    x = b.tensor(shape_in, scale=s, zero_point=z)
    shape = b.const_i32(shape_out)
    y = b.tensor(shape_out, scale=s, zero_point=z)
    b.op("RESHAPE", [x, shape], [y], newShape=np.asarray(shape_out, np.int32))
    return b.build([x], [y])


case("RESHAPE", "4d_to_3d")(lambda: reshape_model([1, 1, 25, 6], [1, 25, 6]))
case("RESHAPE", "3d_to_4d_odd")(lambda: reshape_model([1, 37, 3], [1, 1, 37, 3], seed=1))




@case("FULLY_CONNECTED", "double_precision_multiplier")
def fc_double_precision_scales() -> bytes:
    """Scales whose Q31 multiplier differs between double(in) * double(w) (what TFLM does) and
    double(float(in * w)) (older TFLite sources): 1507720493 vs 1507720476."""
    rng = np.random.default_rng(11)
    b = ModelBuilder()
    x = b.tensor([1, 64], scale=0.06405920535326004, zero_point=3)
    w = rng.integers(-127, 128, size=(16, 64)).astype(np.int8)
    wt = b.tensor(w.shape, data=w, scale=0.027708884328603745, zero_point=0)
    bt = b.tensor([16], np.int32, scale=0.06405920535326004 * 0.027708884328603745, zero_point=0,
                  data=bias_for(rng, 16))
    y = b.tensor([1, 16], scale=0.005056378897279501 * 64, zero_point=-7)
    b.op("FULLY_CONNECTED", [x, wt, bt], [y], fusedActivationFunction=0)
    return b.build([x], [y])
