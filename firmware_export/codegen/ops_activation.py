"""Activation emitters: SOFTMAX and LOGISTIC (int8 -> int8, output scale 1/256, zero point -128),
TANH (output scale 1/128, zero point 0), HARD_SWISH, RELU and RELU6.

TFLM runs SOFTMAX, LOGISTIC and TANH int8 -> int8 through its gemmlowp-style fixed-point reference
kernels (no lookup table): the Prepare-time constants below are computed as TFLM's
`CalculateSoftmaxParams` (softmax_common.cc) and `CalculateArithmeticOpDataLogistic`
(logistic_common.cc; TANH's Prepare is the same) do, with the
float32 scale and beta widened to double, and the kernels in runtime/mn_activation.c do the rest
in integers.
"""

from __future__ import annotations

import math

import numpy as np

from micronas_base.errors import ExportError

from ..tflite_graph import Op, Tensor
from .plan import CodeGen, PlannedLayer
from .quant import activation_range, quantize_multiplier, quantize_multiplier_greater_than_one, round_half_away
from .registry import ACT_OK, Bench, BenchTensor, RuntimeOp, check, runtime_op

SOFTMAX_SCALED_DIFF_INTEGER_BITS = 5  # kScaledDiffIntegerBits: exp() input is Q5.26
LOGISTIC_INPUT_INTEGER_BITS = 4  # kInputIntegerBits: logistic() input is Q4.27
# Reciprocal of a sum of up to 511 exp() terms (each <= 1.0, Q12.19) keeps TFLM's output shift
# within 31 bits (TFLITE_CHECK(exponent <= 31) in reference_ops::Softmax).
SOFTMAX_MAX_DEPTH = 511


def _check_output(op: Op, y: Tensor) -> None:
    """TFLM requires int8 output scale exactly 1/256 (float32) and zero point -128."""
    if y.dtype != np.int8 or np.float32(y.scale) != np.float32(1.0 / 256) or y.zero_point != -128:
        raise ExportError(f"{op.name} output {y.name!r} has dtype {np.dtype(y.dtype).name}, scale {y.scale!r} "
                          f"and zero point {y.zero_point}; TFLM's int8 kernel needs int8, scale 1/256 "
                          "and zero point -128")


def calculate_input_radius(input_integer_bits: int, input_left_shift: int, total_signed_bits: int = 31) -> int:
    """TFLite's CalculateInputRadius: floor((2^ib - 1) * 2^(tsb - ib) / 2^shift) (exact in double)."""
    return ((1 << input_integer_bits) - 1) * (1 << (total_signed_bits - input_integer_bits)) >> input_left_shift


def softmax_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """(input_multiplier, input_left_shift, diff_min) as TFLM's int8 softmax Prepare computes them.

    PreprocessSoftmaxScaling: min(beta * scale * 2^(31 - 5), 2^31 - 1) in double, then
    QuantizeMultiplierGreaterThanOne; diff_min = -CalculateInputRadius(5, left_shift).

    Raises:
        ExportError: the real multiplier is not above 1 (TFLM's Prepare would abort).
    """
    real = min(float(np.float32(beta)) * float(np.float32(input_scale))
               * (1 << (31 - SOFTMAX_SCALED_DIFF_INTEGER_BITS)), (1 << 31) - 1.0)
    if not real > 1.0:
        raise ExportError(f"SOFTMAX beta {beta} times input scale {input_scale} is too small (or not positive) "
                          "for TFLM's int8 softmax (beta * scale * 2^26 must exceed 1)")
    multiplier, shift = quantize_multiplier_greater_than_one(real)
    return multiplier, shift, -calculate_input_radius(SOFTMAX_SCALED_DIFF_INTEGER_BITS, shift)


def logistic_params(input_scale: float) -> tuple[int, int, int]:
    """(input_multiplier, input_left_shift, input_range_radius) as TFLM's int8 logistic Prepare.

    frexp(scale * 2^(31 - 4)) and round(q * 2^31) (no renormalisation: q comes from a float32
    scale, so q * 2^31 is an integer), radius CalculateInputRadius(4, left_shift, 31).

    Raises:
        ExportError: the scale is below 2^-28 (a negative shift, undefined in TFLM's radius).
    """
    q, shift = math.frexp(float(np.float32(input_scale)) * (1 << (31 - LOGISTIC_INPUT_INTEGER_BITS)))
    if shift < 0 or q <= 0:
        raise ExportError(f"LOGISTIC input scale {input_scale} is not supported by TFLM's int8 kernel")
    multiplier = int(math.floor(q * (1 << 31) + 0.5))  # TfLiteRound of a positive value
    return multiplier, shift, calculate_input_radius(LOGISTIC_INPUT_INTEGER_BITS, shift, 31)


def _int8_io(op: Op, cg: CodeGen) -> tuple:
    """The op's input and output tensors, checked: int8 in, TFLM's fixed int8 output quantisation."""
    x, y = cg.t(op.inputs[0]), cg.t(op.outputs[0])
    if x.dtype != np.int8:
        raise ExportError(f"{op.name} input {x.name!r} is {np.dtype(x.dtype).name}; expected int8")
    _check_output(op, y)
    return x, y


# BENCH_OP's SOFTMAX: beta 1 and the input scale of the dyconv attention logits of the demo export
# (0.00245). Its cost depends on the data and the scale (exp's barrel shifter runs one multiply per
# set bit of the scaled difference to the row maximum): the same bytes cost ~5% more at input
# scale 0.05, and 0.7% less at 0.00245.
_BENCH_SOFTMAX_INPUT_SCALE = 0.0025
# BENCH_OP's LOGISTIC: input scale 1/32 and zero point 0 (a gate input range of +-4): every int8
# input is inside the radius, so every element takes the full fixed-point path as in a calibrated
# model (inputs beyond it take a short path: a layer with 6% of them runs 5% faster).
_BENCH_LOGISTIC_INPUT_SCALE = 1 / 32


def _elementwise_tensors(count: str) -> tuple[BenchTensor, ...]:
    return (BenchTensor("in", "int8_t", count, "stream"), BenchTensor("out", "int8_t", count, output=True))


@runtime_op(
    "SOFTMAX",
    summary="expert attention",
    produced_by=("dyconv",),
    struct="mn_softmax_params", function="mn_softmax_s8", kernel_id=9,
    cost_fields=("outer", "depth"),
    param_fields=("outer", "depth", "input_multiplier", "input_left_shift", "diff_min"),
    bench=Bench(
        call="mn_softmax_s8(p, in, out)",
        tensors=_elementwise_tensors("(uint64_t)p->outer * p->depth"),
        # depth <= 511: the sum of exps stays below 2^28 and the output shift within 31 bits (the
        # exporter's limit, TFLM's check). diff_min <= 0 keeps the row maximum (diff 0) in the
        # sum, which must be > 0; every diff the kernel scales (diff_min <= diff <= 0,
        # |diff| <= 255) must not overflow the left shift.
        checks=(check("softmax outer must be 1..16777216 and depth 1..511", "mn_bench_in(p->depth, 1, 511)",
                      elems="outer"),
                check("softmax input_multiplier must be >= 0, input_left_shift 0..31, diff_min <= 0 with "
                      "min(-diff_min, 255) << input_left_shift below 2^31",
                      "p->diff_min <= 0",
                      "((p->diff_min < -255 ? 255 : -(int64_t)p->diff_min) << p->input_left_shift) <= INT32_MAX",
                      nonneg="input_multiplier", left_shift="input_left_shift")),
    ),
)
class Softmax(RuntimeOp):
    """SOFTMAX over the last axis (TFLM reference_ops::Softmax<int8_t, int8_t>)."""

    def plan(self, op: Op, cg: CodeGen) -> PlannedLayer:
        x, _ = _int8_io(op, cg)
        if not x.shape:
            raise ExportError(f"SOFTMAX input {x.name!r} is a scalar; TFLM needs at least one dimension")
        depth = int(x.shape[-1])
        if depth > SOFTMAX_MAX_DEPTH:
            raise ExportError(f"SOFTMAX depth {depth} exceeds {SOFTMAX_MAX_DEPTH}: TFLM's int8 softmax can "
                              "fail its output-shift check on longer rows")
        outer = int(np.prod(x.shape[:-1], dtype=np.int64))
        mult, shift, diff_min = softmax_params(float(op.options.get("beta", 1.0)), x.scale)
        fields = {"outer": outer, "depth": depth, "input_multiplier": mult, "input_left_shift": shift,
                  "diff_min": diff_min}
        return cg.layer(op, fields, [cg.ptr(op.inputs[0]), cg.ptr(op.outputs[0])])

    def bench_values(self, cost) -> dict[str, int]:
        mult, shift, diff_min = softmax_params(1.0, _BENCH_SOFTMAX_INPUT_SCALE)
        return {"input_multiplier": mult, "input_left_shift": shift, "diff_min": diff_min}


def _saturating_checks(name: str) -> tuple:
    """BENCH_OP range checks of LOGISTIC and TANH (the same fixed-point input scaling): inputs the
    kernel scales have |x - zero point| < min(radius, 256), so the shift cannot overflow."""
    return (check(f"{name} size must be 1..16777216", elems="size"),
            check(f"{name} input_zero_point must be -128..127", int8="input_zero_point"),
            check(f"{name} radius and multiplier must be >= 0, input_left_shift 0..31, "
                  "min(radius, 256) << input_left_shift at most 2^31",
                  "((p->input_range_radius > 256 ? 256 : (int64_t)p->input_range_radius) << p->input_left_shift)"
                  " <= ((int64_t)1 << 31)",
                  nonneg=("input_range_radius", "input_multiplier"), left_shift="input_left_shift"))


def _saturating_fields(x) -> dict[str, int]:
    """LOGISTIC's and TANH's params from the input tensor (the same Prepare: Q4 input scaling)."""
    mult, shift, radius = logistic_params(x.scale)
    return {"size": int(np.prod(x.shape, dtype=np.int64)), "input_zero_point": x.zero_point,
            "input_range_radius": radius, "input_multiplier": mult, "input_left_shift": shift}


def _saturating_bench_values() -> dict[str, int]:
    """BENCH_OP's LOGISTIC/TANH quantisation: input scale 1/32, every int8 input inside the radius
    (the full path)."""
    mult, shift, radius = logistic_params(_BENCH_LOGISTIC_INPUT_SCALE)
    return {"input_zero_point": 0, "input_range_radius": radius, "input_multiplier": mult,
            "input_left_shift": shift}


@runtime_op(
    "LOGISTIC",
    summary="sigmoid filter attention",
    produced_by=("kdna",),
    struct="mn_logistic_params", function="mn_logistic_s8", kernel_id=10,
    cost_fields=("size",),
    param_fields=("size", "input_zero_point", "input_range_radius", "input_multiplier", "input_left_shift"),
    bench=Bench(
        call="mn_logistic_s8(p, in, out)",
        tensors=_elementwise_tensors("(uint64_t)p->size"),
        checks=_saturating_checks("logistic"),
    ),
)
class Logistic(RuntimeOp):
    """LOGISTIC elementwise (TFLM reference_integer_ops::Logistic, int8)."""

    def plan(self, op: Op, cg: CodeGen) -> PlannedLayer:
        x, _ = _int8_io(op, cg)
        return cg.layer(op, _saturating_fields(x), [cg.ptr(op.inputs[0]), cg.ptr(op.outputs[0])])

    def bench_values(self, cost) -> dict[str, int]:
        return _saturating_bench_values()


# ---- TANH, HARD_SWISH, RELU, RELU6: what Keras and PyTorch converters emit as activations ----

TANH_OUTPUT_SCALE = 1.0 / 128  # TFLite's fixed int8 tanh output quantisation (zero point 0)


@runtime_op(
    "TANH",
    summary="tanh activation (Keras/PyTorch models)",
    struct="mn_tanh_params", function="mn_tanh_s8", kernel_id=15,
    cost_fields=("size",),
    param_fields=("size", "input_zero_point", "input_range_radius", "input_multiplier", "input_left_shift"),
    bench=Bench(
        call="mn_tanh_s8(p, in, out)",
        tensors=_elementwise_tensors("(uint64_t)p->size"),
        checks=_saturating_checks("tanh"),
    ),
)
class Tanh(RuntimeOp):
    """TANH elementwise (TFLM reference_integer_ops::Tanh, int8): the input maths of LOGISTIC
    (Q4 input, the same Prepare), gemmlowp's fixed-point tanh, output in units of 1/128."""

    def plan(self, op: Op, cg: CodeGen) -> PlannedLayer:
        x, y = cg.t(op.inputs[0]), cg.t(op.outputs[0])
        if x.dtype != np.int8 or y.dtype != np.int8:
            raise ExportError(f"TANH tensors {x.name!r} -> {y.name!r} are {np.dtype(x.dtype).name} -> "
                              f"{np.dtype(y.dtype).name}; the runtime runs int8 TANH")
        if np.float32(y.scale) != np.float32(TANH_OUTPUT_SCALE) or y.zero_point != 0:
            raise ExportError(f"TANH output {y.name!r} has scale {y.scale!r} and zero point {y.zero_point}; "
                              "TFLite's int8 tanh needs scale 1/128 and zero point 0")
        return cg.layer(op, _saturating_fields(x), [cg.ptr(op.inputs[0]), cg.ptr(op.outputs[0])])

    def bench_values(self, cost) -> dict[str, int]:
        return _saturating_bench_values()  # as LOGISTIC


def downscale_to_int16(multiplier: int) -> int:
    """TFLite's DownScaleInt32ToInt16Multiplier: a Q31 significand -> Q15, rounded, saturated."""
    if multiplier >= (1 << 31) - 1 - (1 << 15):
        return (1 << 15) - 1
    return (multiplier + (1 << 15)) >> 16


def hard_swish_params(input_scale: float, output_scale: float) -> dict[str, int]:
    """HARD_SWISH's Prepare (TFLite hard_swish): the two 16-bit multipliers and exponents.

    In float32 as TFLite computes them: the input scale / 128 (the "hires" scale of x * 2^7),
    divided by the output scale and by the relu-ish scale 3/32768.

    Raises:
        ExportError: the output multiplier is above one (TFLite's Prepare refuses it).
    """
    f32 = np.float32
    hires = f32(1.0 / 128.0) * f32(input_scale)
    out_m, out_e = quantize_multiplier(float(hires / f32(output_scale)))
    relu_m, relu_e = quantize_multiplier(float(hires / (f32(3.0) / f32(32768.0))))
    if out_e > 0:
        raise ExportError(f"HARD_SWISH input scale {input_scale} / (128 x output scale {output_scale}) is above one; "
                          "TFLite's int8 hard-swish refuses it")
    return {"reluish_multiplier": downscale_to_int16(relu_m), "reluish_exponent": relu_e,
            "output_multiplier": downscale_to_int16(out_m), "output_exponent": out_e}


_BENCH_HARD_SWISH_SCALES = (0.05, 0.035)  # a conv output of +-6.4 into hard-swish's -0.375..+6.4
_BENCH_HARD_SWISH_ZERO_POINTS = (0, -117)


@runtime_op(
    "HARD_SWISH",
    summary="hard-swish activation (Keras/PyTorch MobileNet-style models)",
    struct="mn_hard_swish_params", function="mn_hard_swish_s8", kernel_id=16,
    cost_fields=("size",),
    param_fields=("size", "input_zero_point", "output_zero_point", "reluish_multiplier", "reluish_exponent",
                  "output_multiplier", "output_exponent"),
    bench=Bench(
        call="mn_hard_swish_s8(p, in, out)",
        tensors=_elementwise_tensors("(uint64_t)p->size"),
        checks=(check("hard_swish size must be 1..16777216", elems="size"),
                check("hard_swish zero points must be -128..127", int8=("input_zero_point", "output_zero_point")),
                check("hard_swish multipliers must be 0..32767, reluish_exponent -15..15, output_exponent -15..0",
                      "mn_bench_in(p->reluish_multiplier, 0, 32767)", "mn_bench_in(p->output_multiplier, 0, 32767)",
                      "mn_bench_in(p->reluish_exponent, -15, 15)", "mn_bench_in(p->output_exponent, -15, 0)")),
    ),
)
class HardSwish(RuntimeOp):
    """HARD_SWISH elementwise: x * relu6(x + 3) / 6 in TFLite's 16-bit fixed point."""

    def plan(self, op: Op, cg: CodeGen) -> PlannedLayer:
        x, y = cg.t(op.inputs[0]), cg.t(op.outputs[0])
        if x.dtype != np.int8 or y.dtype != np.int8:
            raise ExportError(f"HARD_SWISH tensors {x.name!r} -> {y.name!r} are {np.dtype(x.dtype).name} -> "
                              f"{np.dtype(y.dtype).name}; the runtime runs int8 HARD_SWISH")
        p = hard_swish_params(x.scale, y.scale)
        for k in ("reluish_exponent", "output_exponent"):
            if not -15 <= p[k] <= 15:
                raise ExportError(f"HARD_SWISH of {x.name!r}: {k} {p[k]} is outside -15..15 (input scale "
                                  f"{x.scale}, output scale {y.scale}); the 16-bit kernel cannot shift that far")
        fields = {"size": int(np.prod(x.shape, dtype=np.int64)), "input_zero_point": x.zero_point,
                  "output_zero_point": y.zero_point, **p}
        return cg.layer(op, fields, [cg.ptr(op.inputs[0]), cg.ptr(op.outputs[0])])

    def bench_values(self, cost) -> dict[str, int]:
        zi, zo = _BENCH_HARD_SWISH_ZERO_POINTS
        return {"input_zero_point": zi, "output_zero_point": zo, **hard_swish_params(*_BENCH_HARD_SWISH_SCALES)}


def relu_params(x: Tensor, y: Tensor) -> dict[str, int]:
    """RELU's Prepare (TFLM CalculateReluOpData): double(in) / double(out) requantisation, the
    output clamped at the quantised zero."""
    mult, shift = quantize_multiplier(float(np.float32(x.scale)) / float(np.float32(y.scale)))
    act_min, act_max = activation_range(1, y.scale, y.zero_point)
    return {"input_zero_point": x.zero_point, "output_zero_point": y.zero_point, "multiplier": mult,
            "shift": shift, "act_min": act_min, "act_max": act_max}


def relu6_params(x: Tensor) -> dict[str, int]:
    """RELU6's Prepare (TFLM Relu6Prepare): the raw input clamped to [zero, six] of the INPUT
    quantisation (six = FloatToQuantizedType(6.0f), rounded in float, saturated), no requantisation:
    the identity multiplier (2^30, shift 1) and zero offsets make mn_relu_s8 that clamp."""
    six = x.zero_point + round_half_away(float(np.float32(6.0) / np.float32(x.scale)))
    one, one_shift = quantize_multiplier(1.0)
    return {"input_zero_point": 0, "output_zero_point": 0, "multiplier": one, "shift": one_shift,
            "act_min": x.zero_point, "act_max": max(-128, min(127, six))}


_RELU_FIELDS = ("size", "input_zero_point", "output_zero_point", "multiplier", "shift", "act_min", "act_max")


def _relu_bench(op: str) -> Bench:
    return Bench(
        call="mn_relu_s8(p, in, out)",
        tensors=_elementwise_tensors("(uint64_t)p->size"),
        checks=(check(f"{op} size must be 1..16777216", elems="size"),
                check(f"{op} zero points must be -128..127", int8=("input_zero_point", "output_zero_point")),
                check(f"{op} multiplier must be >= 0 and shift -31..30", nonneg="multiplier", shift="shift"),
                check("activation range out of int8 range", ACT_OK)),
    )


class _Relu(RuntimeOp):
    def _fields(self, x: Tensor, y: Tensor) -> dict[str, int]:
        raise NotImplementedError

    def plan(self, op: Op, cg: CodeGen) -> PlannedLayer:
        x, y = cg.t(op.inputs[0]), cg.t(op.outputs[0])
        if x.dtype != np.int8 or y.dtype != np.int8:
            raise ExportError(f"{op.name} tensors {x.name!r} -> {y.name!r} are {np.dtype(x.dtype).name} -> "
                              f"{np.dtype(y.dtype).name}; the runtime runs int8 {op.name}")
        fields = {"size": int(np.prod(x.shape, dtype=np.int64)), **self._fields(x, y)}
        return cg.layer(op, fields, [cg.ptr(op.inputs[0]), cg.ptr(op.outputs[0])])


@runtime_op("RELU", summary="standalone ReLU (Keras/PyTorch models; micronas fuses it into the conv)",
            struct="mn_relu_params", function="mn_relu_s8", kernel_id=13, cost_fields=("size",),
            param_fields=_RELU_FIELDS, bench=_relu_bench("relu"))
class Relu(_Relu):
    """RELU (TFLM ReluQuantized): requantised to the output, clamped at its zero."""

    def _fields(self, x: Tensor, y: Tensor) -> dict[str, int]:
        return relu_params(x, y)

    def bench_values(self, cost) -> dict[str, int]:
        # a pre-activation centred on zero into an output of half the range (zero point -128):
        # about half the outputs clamp, as in a model
        one = Tensor(0, "x", (1,), np.dtype(np.int8), np.asarray([0.05], np.float32), np.asarray([0]), 0)
        half = Tensor(0, "y", (1,), np.dtype(np.int8), np.asarray([0.025], np.float32), np.asarray([-128]), 0)
        return relu_params(one, half)


@runtime_op("RELU6", summary="standalone ReLU6 (Keras/PyTorch models)", struct="mn_relu_params",
            function="mn_relu_s8", kernel_id=14, cost_fields=("size",), param_fields=_RELU_FIELDS,
            bench=_relu_bench("relu6"))
class Relu6(_Relu):
    """RELU6 (TFLM Relu6Quantized): the raw input clamped to the input's [0, 6]."""

    def _fields(self, x: Tensor, y: Tensor) -> dict[str, int]:
        return relu6_params(x)

    def bench_values(self, cost) -> dict[str, int]:
        # input scale 0.1, zero point -20 (a conv output of -10.8..14.7): [-20, 40] of -128..127
        x = Tensor(0, "x", (1,), np.dtype(np.int8), np.asarray([0.1], np.float32), np.asarray([-20]), 0)
        return relu6_params(x)
