"""Export-time quantisation maths, as TFLite's kernels do it in their Prepare step.

Scales are float32 in the flatbuffer; TFLite widens them to double before combining them, and
turns the real multiplier into a Q31 significand and a power-of-two shift. The C runtime then
only sees integers.
"""

from __future__ import annotations

import math

import numpy as np


def round_half_away(x: float) -> int:
    """std::round: halves go away from zero."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def quantize_multiplier(m: float) -> tuple[int, int]:
    """A real multiplier -> (Q31 significand in [2^30, 2^31), shift) with m = q * 2^(shift-31).

    Zero maps to (0, 0); multipliers below 2^-32 flush to (0, 0) as TFLite does.
    """
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)  # m = q * 2^shift, q in [0.5, 1)
    q_fixed = round_half_away(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def quantize_multiplier_smaller_than_one(m: float) -> tuple[int, int]:
    if not 0.0 <= m < 1.0:
        raise ValueError(f"multiplier {m} is not in [0, 1)")
    q, shift = quantize_multiplier(m)
    if shift > 0:
        raise ValueError(f"multiplier {m} gave a positive shift {shift}")
    return q, shift


def quantize_multiplier_greater_than_one(m: float) -> tuple[int, int]:
    if m <= 1.0:
        raise ValueError(f"multiplier {m} is not above 1")
    q, shift = quantize_multiplier(m)
    if shift < 0:
        raise ValueError(f"multiplier {m} gave a negative shift {shift}")
    return q, shift


def activation_range(fused: int, scale: float, zero_point: int) -> tuple[int, int]:
    """TFLite's CalculateActivationRangeQuantized for int8 (fused activation code from the schema).

    0 NONE, 1 RELU, 2 RELU_N1_TO_1, 3 RELU6.
    """
    lo, hi = -128, 127

    def q(v: float) -> int:  # TFLite divides in float (single precision)
        return zero_point + round_half_away(float(np.float32(v) / np.float32(scale)))

    if fused == 0:
        return lo, hi
    if fused == 1:
        return max(lo, q(0.0)), hi
    if fused == 3:
        return max(lo, q(0.0)), min(hi, q(6.0))
    if fused == 2:
        return max(lo, q(-1.0)), min(hi, q(1.0))
    raise ValueError(f"fused activation code {fused} is not supported")
