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
from .plan import CodeGen, PlannedLayer
from .quant import activation_range, quantize_multiplier, quantize_multiplier_smaller_than_one
from .registry import ACT_OK, Bench, BenchTensor, RuntimeOp, check, runtime_op

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
    portable kernel's cost by a few percent (its clamp is a branch; the SIMD one is not)."""
    return {"relu": int(op.options.get("fusedActivationFunction", 0) != 0)}


def add_multipliers(op_name: str, s1: float, s2: float, s_out: float) -> dict[str, int]:
    """ADD's requantisation (TFLite's Prepare): both inputs rescaled to twice the larger input
    scale and shifted left by 20, the sum rescaled to the output scale.

    Args:
        op_name: For error messages.
        s1, s2, s_out: The input and output scales (float32 values, as doubles).

    Raises:
        ExportError: a multiplier outside (0, 1), which TFLite refuses.
    """
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = _smaller_than_one(op_name, "input1", s1 / twice_max)
    m2, sh2 = _smaller_than_one(op_name, "input2", s2 / twice_max)
    mo, sho = _smaller_than_one(op_name, "output", twice_max / ((1 << ADD_LEFT_SHIFT) * s_out))
    return {"left_shift": ADD_LEFT_SHIFT, "input1_multiplier": m1, "input1_shift": sh1, "input2_multiplier": m2,
            "input2_shift": sh2, "output_multiplier": mo, "output_shift": sho}


def mul_multiplier(s1: float, s2: float, s_out: float) -> tuple[int, int]:
    """MUL's requantisation: double(s1) * double(s2) / double(s_out), left to right; may exceed one."""
    return quantize_multiplier(s1 * s2 / s_out)


def _f32(x: float) -> float:
    """x as a float32 scale of a .tflite file, widened to double."""
    return float(np.float32(x))


_BROADCAST = ("shape.out_dims", "shape.in1_strides", "shape.in2_strides")
_BROADCAST_NAMES = ("out_dims", "in1_strides", "in2_strides")
_BROADCAST_CHECK = check("broadcast out_dims must be 1..16777216, strides 0..16777216", elems="out_dims",
                         index=("in1_strides", "in2_strides"))
_QUANT_MESSAGE = "offsets or activation range out of int8 range"
# in1 and in2 hold the elements their strides walk over the output; filled from one stream
_BROADCAST_TENSORS = (BenchTensor("in1", "int8_t", "mn_bench_span(p->shape.out_dims, p->shape.in1_strides)", "stream"),
                      BenchTensor("in2", "int8_t", "mn_bench_span(p->shape.out_dims, p->shape.in2_strides)", "stream"),
                      BenchTensor("out", "int8_t", "mn_bench_elems(p->shape.out_dims)", output=True))


@runtime_op(
    "ADD",
    summary="sum of expert outputs, residuals",
    produced_by=("dyconv",),
    struct="mn_add_params", function="mn_add_s8", kernel_id=7,
    cost_fields=(*_BROADCAST_NAMES, "relu"),
    param_fields=(*_BROADCAST, "input1_offset", "input2_offset", "output_offset", "left_shift", "input1_multiplier",
                  "input1_shift", "input2_multiplier", "input2_shift", "output_multiplier", "output_shift", "act_min",
                  "act_max"),
    vector_fields=_BROADCAST_NAMES,
    bench=Bench(
        call="mn_add_s8(p, in1, in2, out)",
        tensors=_BROADCAST_TENSORS,
        checks=(_BROADCAST_CHECK,
                check(_QUANT_MESSAGE, ACT_OK, offset=("input1_offset", "input2_offset", "output_offset")),
                # (x + offset) << left_shift stays below 2^30; input scales below one (shift <= 0),
                # so the sum of the two rescaled inputs cannot overflow
                check("add left_shift must be 0..20", "mn_bench_in(p->left_shift, 0, 20)"),
                check("add multipliers must be >= 0, input shifts -31..0, output shift -31..30",
                      nonneg=("input1_multiplier", "input2_multiplier", "output_multiplier"),
                      right_shift=("input1_shift", "input2_shift"), shift="output_shift")),
    ),
)
class Add(RuntimeOp):
    """ADD: both inputs rescaled to twice the larger input scale, shifted left by 20, summed."""

    def plan(self, op: Op, cg: CodeGen) -> PlannedLayer:
        x1, x2, y = _operands(op, cg)
        m = add_multipliers(op.name, x1.scale, x2.scale, y.scale)  # float32 values as doubles
        act_min, act_max = activation_range(op.options.get("fusedActivationFunction", 0), y.scale, y.zero_point)
        fields = {
            "shape": broadcast_shape(op.name, x1.shape, x2.shape, y.shape),
            "input1_offset": -x1.zero_point, "input2_offset": -x2.zero_point, "output_offset": y.zero_point,
            **m, "act_min": act_min, "act_max": act_max,
        }
        return cg.layer(op, fields, [cg.ptr(op.inputs[0]), cg.ptr(op.inputs[1]), cg.ptr(op.outputs[0])], _relu(op))

    def macs(self, op: Op, cg: CodeGen) -> int:
        return 0  # no multiply-accumulates (the rescaling multiplies are not counted as MACs)

    def bench_values(self, cost) -> dict[str, int]:
        """relu 0: zero points 10 and 12, output zero point 0 and input scales 1 and 0.7, output
        scale 1.9 (relative): input shifts 0 and -1 and output shift -19 as in exported models; the
        output range holds the sum of any two int8 inputs, so no output is clamped (the clamp is a
        branch), as in a calibrated ADD. relu 1 (a dyconv's last sum): input zero points 0 (a
        pre-activation centred on zero), output zero point -128 and half the output scale, so
        every negative sum clamps: half the outputs, as in a trained ReLU-fused layer."""
        if cost["relu"]:
            offsets, scales = {"input1_offset": 0, "input2_offset": 0, "output_offset": -128}, (1.0, 0.7, 0.95)
        else:
            offsets, scales = {"input1_offset": -10, "input2_offset": -12, "output_offset": 0}, (1.0, 0.7, 1.9)
        return {**offsets, **add_multipliers("ADD", *map(_f32, scales)), "act_min": -128, "act_max": 127}


@runtime_op(
    "MUL",
    summary="per-sample scaling by attention weights",
    produced_by=("dyconv", "kdna"),
    struct="mn_mul_params", function="mn_mul_s8", kernel_id=8,
    cost_fields=(*_BROADCAST_NAMES, "relu"),
    param_fields=(*_BROADCAST, "input1_offset", "input2_offset", "output_offset", "output_multiplier",
                  "output_shift", "act_min", "act_max"),
    vector_fields=_BROADCAST_NAMES,
    bench=Bench(
        call="mn_mul_s8(p, in1, in2, out)",
        tensors=_BROADCAST_TENSORS,
        checks=(_BROADCAST_CHECK,
                check(_QUANT_MESSAGE, ACT_OK, offset=("input1_offset", "input2_offset", "output_offset")),
                check("mul output_multiplier must be >= 0 and output_shift -31..30", nonneg="output_multiplier",
                      shift="output_shift")),
    ),
)
class Mul(RuntimeOp):
    """MUL: (in1 - zp1) * (in2 - zp2) requantised by s1 * s2 / s_out."""

    def plan(self, op: Op, cg: CodeGen) -> PlannedLayer:
        x1, x2, y = _operands(op, cg)
        mult, shift = mul_multiplier(x1.scale, x2.scale, y.scale)
        act_min, act_max = activation_range(op.options.get("fusedActivationFunction", 0), y.scale, y.zero_point)
        fields = {
            "shape": broadcast_shape(op.name, x1.shape, x2.shape, y.shape),
            "input1_offset": -x1.zero_point, "input2_offset": -x2.zero_point, "output_offset": y.zero_point,
            "output_multiplier": mult, "output_shift": shift,
            "act_min": act_min, "act_max": act_max,
        }
        return cg.layer(op, fields, [cg.ptr(op.inputs[0]), cg.ptr(op.inputs[1]), cg.ptr(op.outputs[0])], _relu(op))

    def macs(self, op: Op, cg: CodeGen) -> int:
        return int(np.prod(cg.t(op.outputs[0]).shape, dtype=np.int64))  # one multiply per output element

    def bench_values(self, cost) -> dict[str, int]:
        """The dyconv scaling of an expert output (zero point 10) by a softmax weight (scale 1/256,
        zero point -128) with the output scale equal to the input's: no output is clamped, for any
        input bytes. relu 1 (the KernelDNA attention MUL, a conv output times a sigmoid weight):
        input1 zero point 0, output zero point -128 and half the output scale, so the negative
        half clamps (49% of all int8 input pairs)."""
        if cost["relu"]:
            offsets, s_out = {"input1_offset": 0, "input2_offset": 128, "output_offset": -128}, 0.5
        else:
            offsets, s_out = {"input1_offset": -10, "input2_offset": 128, "output_offset": 10}, 1.0
        mult, shift = mul_multiplier(_f32(1.0), _f32(1 / 256), _f32(s_out))
        return {**offsets, "output_multiplier": mult, "output_shift": shift, "act_min": -128, "act_max": 127}


@runtime_op(
    "QUANTIZE",
    summary="int8 -> int8 requantisation (converters insert it between differently quantised tensors); "
            "float32 -> int8 at the model input is the float API's edge",
    struct="mn_quantize_params", function="mn_quantize_s8", kernel_id=17,
    cost_fields=("size",),
    param_fields=("size", "input_zero_point", "output_zero_point", "multiplier", "shift"),
    bench=Bench(
        call="mn_quantize_s8(p, in, out)",
        tensors=(BenchTensor("in", "int8_t", "(uint64_t)p->size", "stream"),
                 BenchTensor("out", "int8_t", "(uint64_t)p->size", output=True)),
        checks=(check("quantize size must be 1..16777216", elems="size"),
                check("quantize zero points must be -128..127", int8=("input_zero_point", "output_zero_point")),
                check("quantize multiplier must be >= 0 and shift -31..30", nonneg="multiplier", shift="shift")),
    ),
)
class Quantize(RuntimeOp):
    """QUANTIZE int8 -> int8 (TFLM reference_ops::Requantize with double(in) / double(out)).

    A float32 -> int8 QUANTIZE of the model input never reaches `plan`: `plan.split_float_edges`
    takes it out of the graph and the generated `micronas_invoke_float` does it."""

    def plan(self, op: Op, cg: CodeGen) -> PlannedLayer:
        x, y = cg.t(op.inputs[0]), cg.t(op.outputs[0])
        if x.dtype != np.int8 or y.dtype != np.int8:
            raise ExportError(f"QUANTIZE {x.name!r} -> {y.name!r} is {np.dtype(x.dtype).name} -> "
                              f"{np.dtype(y.dtype).name}; the runtime runs int8 -> int8 QUANTIZE inside the model "
                              "and float32 -> int8 only on the model input",
                              "convert the model with int8 (or float32) input and output and int8 inside")
        multiplier, shift = quantize_multiplier(_f32(x.scale) / _f32(y.scale))
        fields = {"size": int(np.prod(x.shape, dtype=np.int64)), "input_zero_point": x.zero_point,
                  "output_zero_point": y.zero_point, "multiplier": multiplier, "shift": shift}
        return cg.layer(op, fields, [cg.ptr(op.inputs[0]), cg.ptr(op.outputs[0])])

    def bench_values(self, cost) -> dict[str, int]:
        # a ReLU output (zero point -128) requantised to a 1.5x wider range (the shift <= 0 path)
        multiplier, shift = quantize_multiplier(_f32(1.0) / _f32(1.5))
        return {"input_zero_point": -128, "output_zero_point": -100, "multiplier": multiplier, "shift": shift}


@runtime_op(
    "DEQUANTIZE",
    summary="int8 -> float32 at the model output: the float API's edge (micronas_invoke_float), no kernel",
)
class Dequantize(RuntimeOp):
    """DEQUANTIZE of the model output, done by the generated `micronas_invoke_float` (see
    `plan.split_float_edges`); anywhere else in the graph it is refused."""

    edge = True

    def plan(self, op: Op, cg: CodeGen) -> PlannedLayer:
        raise ExportError(f"DEQUANTIZE of {cg.t(op.inputs[0]).name!r} is inside the model; the runtime runs "
                          "DEQUANTIZE only on the model output (float32 in the middle of an int8 model has no kernel)",
                          "convert the model with full-integer quantisation (TFLiteConverter with "
                          "representative_dataset and TFLITE_BUILTINS_INT8)")
