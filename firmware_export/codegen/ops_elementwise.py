"""ADD and MUL emitters (int8, numpy-style broadcasting of shapes up to rank 4).

Either operand may be an activation or a constant. The export-time constants follow TFLM's
Prepare steps (add_common.cc, mul_common.cc): float32 scales widened to double, ADD's inputs
rescaled into a common 2^20-shifted domain by multipliers below one, MUL's product by one
general multiplier.
"""

from __future__ import annotations

import numpy as np

from micronas_base.errors import ExportError

from ..tflite_graph import Op, Tensor
from . import CodeGen
from .quant import activation_range, quantize_multiplier, quantize_multiplier_smaller_than_one

ADD_LEFT_SHIFT = 20  # TFLite's int8 ADD headroom (15 is the int16 one)


def broadcast_shape(op_name: str, a: tuple[int, ...], b: tuple[int, ...], out: tuple[int, ...]) -> dict:
    """The runtime's `mn_broadcast` for out = a (op) b, right-aligned like numpy.

    Output dimensions of size one are dropped and neighbouring dimensions that both inputs walk
    contiguously (or both broadcast) are merged, so a same-shape op becomes one row and
    [1, T, C] * [1, 1, C] becomes T rows of C. The result is left-padded to four dimensions.

    Raises:
        ExportError: a rank above four, shapes that do not broadcast, or an output shape that is
            not their broadcast.
    """
    shapes = f"{list(a)} and {list(b)} -> {list(out)}"
    if max(len(a), len(b), len(out)) > 4:
        raise ExportError(f"{op_name} of shapes {shapes}: the runtime broadcasts up to rank 4")
    try:
        expected = np.broadcast_shapes(a, b)
    except ValueError:
        raise ExportError(f"{op_name} of shapes {shapes}: the input shapes do not broadcast") from None
    pad = lambda s: (1,) * (4 - len(s)) + tuple(s)  # noqa: E731
    if pad(expected) != pad(out):
        raise ExportError(f"{op_name} of shapes {shapes}: the output is not the broadcast shape {list(expected)}")

    def strides(s: tuple[int, ...]) -> list[int]:
        s = pad(s)
        st = [int(np.prod(s[k + 1:], dtype=np.int64)) for k in range(4)]
        return [0 if s[k] == 1 else st[k] for k in range(4)]  # a size-1 input dim is broadcast

    dims = [(d, s1, s2) for d, s1, s2 in zip(pad(out), strides(a), strides(b)) if d != 1]
    merged: list[tuple[int, int, int]] = []
    for d, s1, s2 in dims:
        if merged:
            pd, p1, p2 = merged[-1]
            if p1 == s1 * d and p2 == s2 * d:  # the outer dim continues the inner one for both inputs
                merged[-1] = (pd * d, s1, s2)
                continue
        merged.append((d, s1, s2))
    merged = [(1, 0, 0)] * (4 - len(merged)) + merged
    return {"out_dims": [m[0] for m in merged], "in1_strides": [m[1] for m in merged],
            "in2_strides": [m[2] for m in merged]}


def _operands(op: Op, cg: CodeGen) -> tuple[Tensor, Tensor, Tensor]:
    x1, x2, y = cg.t(op.inputs[0]), cg.t(op.inputs[1]), cg.t(op.outputs[0])
    for t in (x1, x2, y):
        if t.dtype != np.int8:
            raise ExportError(f"{op.name} tensor {t.name!r} is {t.dtype}; the runtime runs int8 {op.name}")
    return x1, x2, y


def _smaller_than_one(op_name: str, what: str, m: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplierSmallerThanOneExp, which CHECKs 0 < m < 1."""
    if not 0.0 < m < 1.0:
        raise ExportError(f"{op_name} {what} multiplier {m} is outside (0, 1), which TFLite refuses; "
                          "check the input and output scales (zero, or an output scale too small)")
    return quantize_multiplier_smaller_than_one(m)


def _relu(op: Op) -> dict:
    """Latency-table cost field: a fused ReLU clamps about half the outputs, which changes the
    kernel's cost by a few percent (the clamp is a branch)."""
    return {"relu": int(op.options.get("fusedActivationFunction", 0) != 0)}


def _call(fn: str, p: str, op: Op, cg: CodeGen) -> str:
    return f"{fn}(&{p}, {cg.ptr(op.inputs[0])}, {cg.ptr(op.inputs[1])}, {cg.ptr(op.outputs[0])});"


class Add:
    """ADD: both inputs rescaled to twice the larger input scale, shifted left by 20, summed."""

    def emit(self, op: Op, cg: CodeGen) -> str:
        x1, x2, y = _operands(op, cg)
        s1, s2, so = x1.scale, x2.scale, y.scale  # float32 values as doubles
        twice_max = 2.0 * max(s1, s2)
        m1, sh1 = _smaller_than_one(op.name, "input1", s1 / twice_max)
        m2, sh2 = _smaller_than_one(op.name, "input2", s2 / twice_max)
        mo, sho = _smaller_than_one(op.name, "output", twice_max / ((1 << ADD_LEFT_SHIFT) * so))
        act_min, act_max = activation_range(op.options.get("fusedActivationFunction", 0), so, y.zero_point)
        fields = ({
            "shape": broadcast_shape(op.name, x1.shape, x2.shape, y.shape),
            "input1_offset": -x1.zero_point, "input2_offset": -x2.zero_point, "output_offset": y.zero_point,
            "left_shift": ADD_LEFT_SHIFT,
            "input1_multiplier": m1, "input1_shift": sh1, "input2_multiplier": m2, "input2_shift": sh2,
            "output_multiplier": mo, "output_shift": sho,
            "act_min": act_min, "act_max": act_max,
        })
        return _call("mn_add_s8", cg.params("mn_add_params", fields, _relu(op)), op, cg)

    def macs(self, op: Op, cg: CodeGen) -> int:
        return 0  # no multiply-accumulates (the rescaling multiplies are not counted as MACs)


class Mul:
    """MUL: (in1 - zp1) * (in2 - zp2) requantised by s1 * s2 / s_out."""

    def emit(self, op: Op, cg: CodeGen) -> str:
        x1, x2, y = _operands(op, cg)
        # TFLite: double(s1) * double(s2) / double(s_out), left to right; may exceed one
        mult, shift = quantize_multiplier(x1.scale * x2.scale / y.scale)
        act_min, act_max = activation_range(op.options.get("fusedActivationFunction", 0), y.scale, y.zero_point)
        fields = ({
            "shape": broadcast_shape(op.name, x1.shape, x2.shape, y.shape),
            "input1_offset": -x1.zero_point, "input2_offset": -x2.zero_point, "output_offset": y.zero_point,
            "output_multiplier": mult, "output_shift": shift,
            "act_min": act_min, "act_max": act_max,
        })
        return _call("mn_mul_s8", cg.params("mn_mul_params", fields, _relu(op)), op, cg)

    def macs(self, op: Op, cg: CodeGen) -> int:
        return int(np.prod(cg.t(op.outputs[0]).shape, dtype=np.int64))  # one multiply per output element
