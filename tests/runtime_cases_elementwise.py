"""ADD and MUL cases: one activation input and one constant operand (the harness feeds one input).

The constant holds random int8 data with its own scale and zero point; `const_first` puts it
in the first operand slot. Each case draws its own quantisation from its seed.
"""

from __future__ import annotations

import numpy as np

from .runtime_cases import NONE, RELU, _io_quant, case
from .tflite_builder import ModelBuilder


def binary_model(op: str, x_shape, c_shape, act=NONE, const_first=False, c_scale_factor=1.0, out_scale=1.0,
                 c_spread=None, seed=0) -> bytes:
    """A single ADD or MUL of an input `x_shape` and a constant `c_shape` (broadcast numpy-style).

    Args:
        op: "ADD" or "MUL".
        x_shape: The model input's shape.
        c_shape: The constant operand's shape.
        act: Fused activation code.
        const_first: Make the constant the first operand.
        c_scale_factor: The constant's scale relative to a typical activation scale.
        out_scale: The output scale as a multiple of the default one.
        c_spread: Draw the constant within this distance of its zero point (default: all int8).
        seed: Seeds the data and the quantisation.
    """
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    s_x, z_x = _io_quant(rng)
    s_c, z_c = _io_quant(rng)
    s_c *= c_scale_factor
    x = b.tensor(x_shape, scale=s_x, zero_point=z_x)
    lo, hi = (-128, 127) if c_spread is None else (z_c - c_spread, z_c + c_spread)
    data = rng.integers(lo, hi + 1, size=c_shape).astype(np.int8)
    c = b.tensor(c_shape, data=data, scale=s_c, zero_point=z_c)
    out_shape = list(np.broadcast_shapes(tuple(x_shape), tuple(c_shape)))
    # an output scale that spans most of the result's range (some saturation at the corners)
    s_y = (0.8 * (s_x + s_c) if op == "ADD" else 90 * s_x * s_c) * out_scale
    y = b.tensor(out_shape, scale=float(s_y), zero_point=int(rng.integers(-20, 20)))
    b.op(op, [c, x] if const_first else [x, c], [y], fusedActivationFunction=act)
    return b.build([x], [y])


for _name, _args in [
    ("same_shape_odd_T", dict(x_shape=[1, 37, 6], c_shape=[1, 37, 6])),
    ("broadcast_channel", dict(x_shape=[1, 25, 8], c_shape=[1, 1, 8], seed=1)),
    ("relu", dict(x_shape=[1, 19, 5], c_shape=[1, 19, 5], act=RELU, seed=2)),
    ("second_scale_much_larger", dict(x_shape=[1, 23, 4], c_shape=[1, 23, 4], c_scale_factor=40.0, seed=3)),
    ("const_first_broadcast", dict(x_shape=[1, 21, 7], c_shape=[1, 1, 7], const_first=True, seed=4)),
    # the kernels' fast form (mn_sc): a per-sample scalar, results that saturate int8, an input
    # scale far below the other (a large right shift on one input)
    ("scalar_4d", dict(x_shape=[1, 1, 37, 7], c_shape=[1, 1, 1, 1], seed=5)),
    ("saturating", dict(x_shape=[1, 1, 23, 6], c_shape=[1, 1, 23, 6], out_scale=0.1, seed=6)),
    ("second_scale_3000x", dict(x_shape=[1, 1, 19, 5], c_shape=[1, 1, 19, 5], c_scale_factor=3000.0, seed=7)),
]:
    case("ADD", _name)(lambda a=_args: binary_model("ADD", **a))

for _name, _args in [
    ("same_shape_odd_T", dict(x_shape=[1, 33, 6], c_shape=[1, 33, 6], seed=10)),
    ("per_sample_scalar", dict(x_shape=[1, 29, 8], c_shape=[1, 1, 1], seed=11)),
    ("per_channel", dict(x_shape=[1, 27, 5], c_shape=[1, 1, 5], seed=12)),
    ("relu", dict(x_shape=[1, 17, 4], c_shape=[1, 17, 4], act=RELU, seed=13)),
    ("single_channel", dict(x_shape=[1, 41, 1], c_shape=[1, 41, 1], seed=14)),
    ("const_first_scalar", dict(x_shape=[1, 15, 6], c_shape=[1, 1, 1], const_first=True, seed=15)),
    # s_x * s_c / s_y = 2.5: a positive requantisation shift. The constant stays within 3 of its
    # zero point: LiteRT's optimized int8 MUL wraps (not saturates) results beyond int16.
    ("multiplier_above_one", dict(x_shape=[1, 31, 3], c_shape=[1, 31, 3], out_scale=1 / 225, c_spread=3,
                                  seed=16)),
    # the split DY-Conv's expert output (B, 1, T, C) times its attention weight (B, 1, 1, 1)
    ("dyconv_split_weight_4d", dict(x_shape=[1, 1, 37, 7], c_shape=[1, 1, 1, 1], seed=17)),
    ("saturating", dict(x_shape=[1, 1, 21, 9], c_shape=[1, 1, 21, 9], out_scale=0.05, seed=18)),
    ("tiny_output_multiplier", dict(x_shape=[1, 1, 18, 6], c_shape=[1, 1, 18, 6], out_scale=1e4, seed=19)),
]:
    case("MUL", _name)(lambda a=_args: binary_model("MUL", **a))
