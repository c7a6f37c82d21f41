"""Runtime cases for MEAN, AVERAGE_POOL_2D, MAX_POOL_2D, PAD and STRIDED_SLICE.

Each case is a single-op model with its own shapes and quantisation. Pools, PAD and
STRIDED_SLICE keep the input quantisation on the output (TFLite requires it for pools; the
others are copies); MEAN covers both equal and different input/output quantisation.
"""

from __future__ import annotations

import numpy as np

from .runtime_cases import NONE, RELU, SAME, VALID, _io_quant, case
from .tflite_builder import ModelBuilder


def mean_model(shape, axes, keep, out_quant="same", seed=0) -> bytes:
    """MEAN over `axes`; out_quant "same" copies the input quantisation, a float scales it."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    s, z = _io_quant(rng)
    x = b.tensor(shape, scale=s, zero_point=z)
    ax = b.const_i32(axes)
    rank = len(shape)
    reduced = {a % rank for a in axes}
    out = [1 if d in reduced else n for d, n in enumerate(shape)] if keep else \
        [n for d, n in enumerate(shape) if d not in reduced]
    if out_quant == "same":
        y = b.tensor(out, scale=s, zero_point=z)
    else:  # a different scale (out_quant times the input's) and zero point
        y = b.tensor(out, scale=s * out_quant, zero_point=int(rng.integers(-40, 40)))
    b.op("MEAN", [x, ax], [y], keepDims=keep)
    return b.build([x], [y])


for _name, _args in [
    ("btc_axis1_same_quant", dict(shape=[1, 50, 8], axes=[1], keep=False)),
    ("btc_axis1_keep_requant", dict(shape=[1, 37, 5], axes=[1], keep=True, out_quant=0.45, seed=1)),
    ("4d_axes12_keep_same_quant", dict(shape=[1, 1, 25, 6], axes=[1, 2], keep=True, seed=2)),
    ("4d_axes12_nokeep_requant", dict(shape=[1, 1, 33, 4], axes=[1, 2], keep=False, out_quant=0.3, seed=3)),
    ("4d_axes12_nokeep_same_quant_oddlen", dict(shape=[1, 1, 19, 3], axes=[2, 1], keep=False, seed=4)),
    ("4d_time_on_H_keep_requant_upscale", dict(shape=[1, 16, 1, 7], axes=[1, 2], keep=True, out_quant=0.5,
                                               seed=5)),
    ("4d_negative_axis_single_channel", dict(shape=[1, 1, 21, 1], axes=[-2], keep=False, out_quant=1.7, seed=6)),
    # axis 1 of [1, 1, T, C] has size 1: every element is requantised on its own
    ("4d_size1_axis_requant", dict(shape=[1, 1, 12, 5], axes=[1], keep=True, out_quant=0.6, seed=8)),
    ("btc_axis1_pow2_len_requant", dict(shape=[1, 64, 3], axes=[1], keep=False, out_quant=0.8, seed=7)),
]:
    case("MEAN", _name)(lambda a=_args: mean_model(**a))


def pool_model(op, in_len, ch, filt, stride, padding, act=NONE, axis="W", seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    s, z = _io_quant(rng)
    out_len = -(-in_len // stride) if padding == SAME else (in_len - filt) // stride + 1
    spatial = (lambda n: [1, 1, n]) if axis == "W" else (lambda n: [1, n, 1])
    x = b.tensor([*spatial(in_len), ch], scale=s, zero_point=z)
    y = b.tensor([*spatial(out_len), ch], scale=s, zero_point=z)
    geo = (dict(filterWidth=filt, filterHeight=1, strideW=stride, strideH=1) if axis == "W"
           else dict(filterWidth=1, filterHeight=filt, strideW=1, strideH=stride))
    b.op(op, [x], [y], padding=padding, fusedActivationFunction=act, **geo)
    return b.build([x], [y])


for _op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
    for _name, _args in [
        ("k2_s2_valid", dict(in_len=40, ch=6, filt=2, stride=2, padding=VALID)),
        ("k3_s1_same_oddlen", dict(in_len=37, ch=4, filt=3, stride=1, padding=SAME, seed=1)),
        ("k3_s2_same_oddlen_relu", dict(in_len=29, ch=5, filt=3, stride=2, padding=SAME, act=RELU, seed=2)),
        ("k2_s1_same_even_filter", dict(in_len=16, ch=3, filt=2, stride=1, padding=SAME, seed=3)),
        ("k3_s2_valid_time_on_H_single_channel", dict(in_len=21, ch=1, filt=3, stride=2, padding=VALID, axis="H",
                                                      seed=4)),
        ("k2_s2_same_oddlen_time_on_H", dict(in_len=15, ch=2, filt=2, stride=2, padding=SAME, axis="H", seed=5)),
        # the SIMD kernels' halfword sums hold windows up to 256 taps; a longer one takes the scalar loop
        ("global_300_taps_ch5", dict(in_len=300, ch=5, filt=300, stride=1, padding=VALID, seed=6)),
        ("k4_s3_same_ch7_relu", dict(in_len=40, ch=7, filt=4, stride=3, padding=SAME, act=RELU, seed=7)),
    ]:
        case(_op, _name)(lambda o=_op, a=_args: pool_model(o, **a))


def pad_model(shape, paddings, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    s, z = _io_quant(rng)
    x = b.tensor(shape, scale=s, zero_point=z)
    p = b.const_i32(paddings)
    y = b.tensor([n + lo + hi for n, (lo, hi) in zip(shape, paddings)], scale=s, zero_point=z)
    b.op("PAD", [x, p], [y])
    return b.build([x], [y])


case("PAD", "3d_time_asymmetric")(lambda: pad_model([1, 25, 6], [[0, 0], [1, 2], [0, 0]]))
case("PAD", "3d_single_channel_after_only")(lambda: pad_model([1, 17, 1], [[0, 0], [0, 3], [0, 0]], seed=1))
case("PAD", "4d_time_on_W")(lambda: pad_model([1, 1, 30, 4], [[0, 0], [0, 0], [2, 1], [0, 0]], seed=2))
case("PAD", "4d_time_on_H_and_channels")(lambda: pad_model([1, 7, 1, 3], [[0, 0], [3, 0], [0, 0], [1, 2]], seed=3))


def slice_model(shape, begin, end, strides, out_shape, begin_mask=0, end_mask=0, shrink=0, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    s, z = _io_quant(rng)
    x = b.tensor(shape, scale=s, zero_point=z)
    ins = [x, b.const_i32(begin), b.const_i32(end), b.const_i32(strides)]
    y = b.tensor(out_shape, scale=s, zero_point=z)
    b.op("STRIDED_SLICE", ins, [y], beginMask=begin_mask, endMask=end_mask, shrinkAxisMask=shrink,
         ellipsisMask=0, newAxisMask=0)
    return b.build([x], [y])


# the exporter's slice of expert k out of a softmax vector: x[:, k:k+1]
case("STRIDED_SLICE", "softmax_expert_k")(
    lambda: slice_model([1, 6], [0, 2], [0, 3], [1, 1], [1, 1], begin_mask=1, end_mask=1))
case("STRIDED_SLICE", "softmax_last_shrink_negative")(
    lambda: slice_model([1, 5], [0, -1], [0, 0], [1, 1], [1], begin_mask=1, end_mask=1, shrink=2, seed=1))
# [:, -15:19:2, 1:5] of [1, 20, 6]
case("STRIDED_SLICE", "3d_stride2_negative_begin")(
    lambda: slice_model([1, 20, 6], [0, -15, 1], [1, 19, 5], [1, 2, 1], [1, 7, 4], seed=2))
# [:, :, ::-1, ::2] of [1, 1, 13, 3]: reversed time, every other channel
case("STRIDED_SLICE", "4d_reverse_time_channel_stride2")(
    lambda: slice_model([1, 1, 13, 3], [0, 0, -1, 0], [0, 0, 0, 0], [1, 1, -1, 2], [1, 1, 13, 2],
                        begin_mask=0b1011, end_mask=0b1111, seed=3))
# [:, :, 2:100:3, :] of [1, 1, 31, 2]: the end clamps to the axis
case("STRIDED_SLICE", "4d_stride3_end_clamped")(
    lambda: slice_model([1, 1, 31, 2], [0, 0, 2, 0], [1, 1, 100, 2], [1, 1, 3, 1], [1, 1, 10, 2], seed=4))
