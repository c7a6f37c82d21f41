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


def dwconv_model(in_len, in_ch, mult, kernel, stride, padding, act=NONE, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    s_in, z_in = _io_quant(rng)
    out_ch = in_ch * mult
    out_len = -(-in_len // stride) if padding == SAME else (in_len - kernel) // stride + 1
    x = b.tensor([1, 1, in_len, in_ch], scale=s_in, zero_point=z_in)
    w, ws = per_channel_weights(rng, (1, 1, kernel, out_ch), qdim=3)
    wt = b.tensor(w.shape, data=w, scale=ws, zero_point=np.zeros(out_ch, int), quantized_dimension=3)
    bt = b.tensor([out_ch], np.int32, scale=s_in * ws, zero_point=np.zeros(out_ch, int), data=bias_for(rng, out_ch))
    y = b.tensor([1, 1, out_len, out_ch], scale=_out_scale(s_in, float(ws.mean()), kernel),
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


def fc_model(batches, n_in, n_out, act=NONE, per_channel=False, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    s_in, z_in = _io_quant(rng)
    # batches > 1 as a 3-D [1, batches, n_in] input, which FULLY_CONNECTED flattens to rows
    x = b.tensor([1, batches, n_in] if batches > 1 else [1, n_in], scale=s_in, zero_point=z_in)
    w = rng.integers(-127, 128, size=(n_out, n_in)).astype(np.int8)
    ws = rng.uniform(0.002, 0.05, size=n_out if per_channel else 1).astype(np.float32)
    wt = b.tensor(w.shape, data=w, scale=ws, zero_point=np.zeros(len(ws), int))
    bt = b.tensor([n_out], np.int32, scale=s_in * ws, zero_point=np.zeros(len(ws), int), data=bias_for(rng, n_out))
    y = b.tensor([batches, n_out], scale=_out_scale(s_in, float(ws.mean()), n_in), zero_point=int(rng.integers(-20, 20)))
    b.op("FULLY_CONNECTED", [x, wt, bt], [y], fusedActivationFunction=act)
    return b.build([x], [y])


case("FULLY_CONNECTED", "32_to_4")(lambda: fc_model(1, 32, 4))
case("FULLY_CONNECTED", "single_input_relu")(lambda: fc_model(1, 1, 3, act=RELU, seed=1))
case("FULLY_CONNECTED", "batched_5x17_to_9")(lambda: fc_model(5, 17, 9, seed=2))
case("FULLY_CONNECTED", "per_channel")(lambda: fc_model(1, 24, 6, per_channel=True, seed=3))


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
