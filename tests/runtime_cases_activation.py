"""SOFTMAX and LOGISTIC cases: int8 in, int8 out with scale 1/256 and zero point -128 (as TFLM requires).

Input scales span small (0.01: every difference inside softmax's diff_min window) to large
(0.5 and beta 2: differences beyond -31 or -7 steps are clipped to -128 before exp()).
"""

from __future__ import annotations

from .runtime_cases import case
from .tflite_builder import ModelBuilder

OUT_SCALE, OUT_ZP = 1.0 / 256, -128


def softmax_model(shape, scale, zero_point, beta=1.0) -> bytes:
    b = ModelBuilder()
    x = b.tensor(shape, scale=scale, zero_point=zero_point)
    y = b.tensor(shape, scale=OUT_SCALE, zero_point=OUT_ZP)
    b.op("SOFTMAX", [x], [y], beta=beta)
    return b.build([x], [y])


def logistic_model(shape, scale, zero_point) -> bytes:
    b = ModelBuilder()
    x = b.tensor(shape, scale=scale, zero_point=zero_point)
    y = b.tensor(shape, scale=OUT_SCALE, zero_point=OUT_ZP)
    b.op("LOGISTIC", [x], [y])
    return b.build([x], [y])


for _name, _args in [
    ("k2_experts", dict(shape=[1, 2], scale=0.05, zero_point=3)),
    ("k4_experts_large_scale", dict(shape=[1, 4], scale=0.5, zero_point=-10)),
    ("k4_experts_small_scale", dict(shape=[1, 4], scale=0.01, zero_point=0)),
    ("10_classes", dict(shape=[1, 10], scale=0.1, zero_point=-20)),
    ("3d_odd_T", dict(shape=[1, 7, 6], scale=0.08, zero_point=12)),
    ("4d_time_series", dict(shape=[1, 1, 9, 5], scale=0.25, zero_point=-3)),
    ("beta_half", dict(shape=[1, 10], scale=0.2, zero_point=5, beta=0.5)),
    ("beta_2_clipped", dict(shape=[1, 4], scale=1.0, zero_point=0, beta=2.0)),
]:
    case("SOFTMAX", _name)(lambda a=_args: softmax_model(**a))

for _name, _args in [
    ("c16_small_scale", dict(shape=[1, 16], scale=0.02, zero_point=0)),
    ("3d_odd_T", dict(shape=[1, 9, 5], scale=0.1, zero_point=-20)),
    ("c32_large_scale", dict(shape=[1, 32], scale=0.4, zero_point=10)),
    ("4d_tiny_scale", dict(shape=[1, 1, 11, 3], scale=0.004, zero_point=-100)),
]:
    case("LOGISTIC", _name)(lambda a=_args: logistic_model(**a))
