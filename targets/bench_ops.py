"""BENCH_OP requests for every executing runtime op, for the latency lookup tables.

A latency table stores, for each runtime op configuration, the instruction count BENCH_OP
measures (docs/protocol.md, "BENCH_OP kernels"). The key is the op's *cost parameters*
(`COST_FIELDS`): the fields of the kernel's params struct that change how much work the kernel
does (shapes, strides, kernel size...). Every other field (zero-point offsets, activation range,
requantisation multipliers and shifts, softmax/logistic fixed-point constants, pad value) is
filled here with one fixed, valid value of the kind the micronas exporter produces for real
models (firmware_export/codegen/ops*.py), chosen so that the kernel takes the path real layers
take where its cost depends on such a value:

* CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED: the device uses multiplier 2^30 and shift -8
  for every channel, the fast requantisation form of mn_internal.h (shift -22..-2, multiplier
  >= 0, |output offset| <= 256), which exported convs and FCs take (their shifts are -4..-13).
  Conv: input offset 128 (the input zero point -128 of a ReLU output), output offset -128 with
  the ReLU-fused range -128..127, as an exported conv + ReLU: about half the outputs clamp at
  -128, as in the model (where the clamp is a branch, i.e. off the SIMD interior path, a clamped
  output costs ~2 instructions less). FC: input offset 128, filter offset 0 (symmetric int8
  weights: the kernel's filter-offset loop is skipped, as for every exported FC), output offset
  0 and range -128..127 (no fused activation: the classifier and the attention logits).
* MEAN: zero points -128 (the mean of a ReLU output), multiplier and shift folded with 1/reduce
  exactly as the exporter does, for in/out scale ratio 2: the shift is negative from reduce 4
  on, as in real global averages (the kernel's mn_requantize branches on shift > 0).
* AVERAGE_POOL_2D / MAX_POOL_2D: activation range -128..127 (no fused activation).
* ADD: zero points 10 and 12 (offsets -10, -12), output zero point 0, TFLite's left shift 20 and
  the exporter's multipliers for input scales 1 and 0.7 and output scale 1.9 (relative), i.e.
  input shifts 0 and -1 and output shift -19 as in exported models. The output range holds the
  sum of any two int8 inputs, so no output is clamped (the clamp is a branch: a clamped element
  costs ~4 instructions of ~100 less). A calibrated ADD rarely clamps either. A ReLU-fused ADD
  (a dyconv's last sum) clamps about half its elements and runs ~2% faster, so the fused ReLU is
  a cost field (`relu`, not a struct field: the exporter reports it beside the struct): with
  relu = 1 the input zero points are 0 (a pre-activation centred on zero), the output zero point
  -128 and the output scale half as large (relative 0.95), so every negative sum clamps: half
  the outputs over all int8 input pairs, as in a trained ReLU-fused layer.
* MUL: the dyconv scaling of an expert output (zero point 10) by a softmax weight (scale 1/256,
  zero point -128, so input2_offset 128) with the output scale equal to the input's: multiplier
  2^30, shift -7; no output is clamped, for any input bytes. relu = 1 (the KernelDNA attention
  MUL, a conv output times a sigmoid weight): input1 zero point 0, output zero point -128 and half
  the output scale (shift -6), so the negative half clamps (49% of all int8 input pairs).
* SOFTMAX: beta 1 and input scale 0.0025 (the scale of the dyconv attention logits of the demo
  export), constants computed as the exporter's softmax_params: multiplier 1374389504, left
  shift 18, diff_min -7936. The kernel's cost depends on the data and the scale (exp's barrel
  shifter runs one multiply per set bit of the scaled difference to the row maximum): the same
  bytes cost ~5% more at input scale 0.05, and 0.7% less at 0.00245.
* LOGISTIC: input scale 1/32 and zero point 0 (a gate input range of +-4), as the exporter's
  logistic_params: multiplier 2^30, left shift 23, radius 240. Every int8 input is inside the
  radius, so every element takes the full fixed-point path (~290 instructions) as in a calibrated
  model (inputs beyond the radius take a short path: a layer with 6% of them runs 5% faster).
* PAD: pad value -128 (the zero point of a ReLU output; the value does not change the cost).
* STRIDED_SLICE: begin is not a cost field (it moves the start address, not the work: the
  experts' slices of a DY-Conv share one key); the device slices from index 0 (from index
  (out_dims - 1) * -step on an axis of negative step, whose walk ends at 0).

The device fills the inputs with a fixed pseudo-random byte stream (ADD/MUL: the second
operand continues the stream), so the figures are deterministic, and times each call as a model
layer is timed: a BENCH_OP figure is the layer's INVOKE mode 1 figure in a generated model
(tests/test_bench_ops.py checks every op against one).

    kernel, params = bench_request("ADD", {"out_dims": (1, 1, 1, 1200), "in1_strides": (0, 0, 0, 1),
                                           "in2_strides": (0, 0, 0, 1)})
    stats = client.bench_op(kernel, params, count=1)

Imports the standard library and micronas_base only (targets is the bottom layer).
"""

from __future__ import annotations

import math
import numbers
import struct
from collections.abc import Callable, Mapping

from micronas_base.errors import UsageError

# TFLite builtin name -> BENCH_OP kernel id (targets/firmware/bench.c)
BENCH_KERNELS: dict[str, int] = {
    "CONV_2D": 1,
    "DEPTHWISE_CONV_2D": 2,
    "FULLY_CONNECTED": 3,
    "MEAN": 4,
    "AVERAGE_POOL_2D": 5,
    "MAX_POOL_2D": 6,
    "ADD": 7,
    "MUL": 8,
    "SOFTMAX": 9,
    "LOGISTIC": 10,
    "PAD": 11,
    "STRIDED_SLICE": 12,
}

_POOL_COST = ("in_len", "ch", "out_len", "filter", "stride", "pad_before")
_BROADCAST = ("out_dims", "in1_strides", "in2_strides")

# The params fields that change the kernel's cost (the lookup key); tuple-valued fields
# (VECTOR_FIELDS) are 4-tuples of ints, the others ints.
COST_FIELDS: dict[str, tuple[str, ...]] = {
    "CONV_2D": ("in_len", "in_ch", "out_len", "out_ch", "kernel", "stride", "dilation", "pad_before", "groups"),
    "DEPTHWISE_CONV_2D": ("in_len", "in_ch", "out_len", "depth_multiplier", "kernel", "stride", "dilation",
                          "pad_before"),
    "FULLY_CONNECTED": ("batches", "in_features", "out_features", "per_channel"),
    "MEAN": ("outer", "reduce", "inner"),
    "AVERAGE_POOL_2D": _POOL_COST,
    "MAX_POOL_2D": _POOL_COST,
    "ADD": (*_BROADCAST, "relu"),
    "MUL": (*_BROADCAST, "relu"),
    "SOFTMAX": ("outer", "depth"),
    "LOGISTIC": ("size",),
    "PAD": ("in_dims", "pad_before", "pad_after"),
    "STRIDED_SLICE": ("out_dims", "in_strides", "step"),
}

# Fields that are int32_t[4] arrays in the params struct (per op: PAD's pad_before is an array,
# the pools' pad_before a scalar).
VECTOR_FIELDS: dict[str, frozenset[str]] = {
    **{op: frozenset() for op in COST_FIELDS},
    "ADD": frozenset(_BROADCAST),
    "MUL": frozenset(_BROADCAST),
    "PAD": frozenset(("in_dims", "pad_before", "pad_after")),
    "STRIDED_SLICE": frozenset(("out_dims", "in_strides", "begin", "step")),
}

# Every params field the device reads, in declaration order (micronas_runtime.h, pointers omitted).
PARAM_FIELDS: dict[str, tuple[str, ...]] = {
    "CONV_2D": (*COST_FIELDS["CONV_2D"], "input_offset", "output_offset", "act_min", "act_max"),
    "DEPTHWISE_CONV_2D": (*COST_FIELDS["DEPTHWISE_CONV_2D"], "input_offset", "output_offset", "act_min", "act_max"),
    "FULLY_CONNECTED": ("batches", "in_features", "out_features", "input_offset", "filter_offset", "output_offset",
                        "act_min", "act_max", "per_channel"),
    "MEAN": ("outer", "reduce", "inner", "input_zero_point", "output_zero_point", "multiplier", "shift"),
    "AVERAGE_POOL_2D": (*_POOL_COST, "act_min", "act_max"),
    "MAX_POOL_2D": (*_POOL_COST, "act_min", "act_max"),
    "ADD": (*_BROADCAST, "input1_offset", "input2_offset", "output_offset", "left_shift", "input1_multiplier",
            "input1_shift", "input2_multiplier", "input2_shift", "output_multiplier", "output_shift", "act_min",
            "act_max"),
    "MUL": (*_BROADCAST, "input1_offset", "input2_offset", "output_offset", "output_multiplier", "output_shift",
            "act_min", "act_max"),
    "SOFTMAX": ("outer", "depth", "input_multiplier", "input_left_shift", "diff_min"),
    "LOGISTIC": ("size", "input_zero_point", "input_range_radius", "input_multiplier", "input_left_shift"),
    "PAD": ("in_dims", "pad_before", "pad_after", "pad_value"),
    "STRIDED_SLICE": ("out_dims", "in_strides", "begin", "step"),
}


# ---- the exporter's fixed-point maths (firmware_export/codegen/quant.py, ops_*.py), stdlib only --

def _f32(x: float) -> float:
    """x rounded to float32, as a scale stored in a .tflite file."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _quantize_multiplier(m: float) -> tuple[int, int]:
    """A real multiplier -> (Q31 significand, shift), as TFLite's QuantizeMultiplier."""
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)
    q_fixed = int(math.floor(abs(q) * (1 << 31) + 0.5))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def _mean_multiplier(ratio: float, reduce: int) -> tuple[int, int]:
    """MEAN's rescale with 1/reduce folded in, as the exporter's mean_multiplier."""
    if reduce < 1:
        raise UsageError(f"MEAN cost field reduce = {reduce}; expected at least 1 (elements averaged per output)")
    m, shift = _quantize_multiplier(ratio)
    s = min(reduce.bit_length() - 1, 32, 31 + shift)
    return (m << s) // reduce, shift - s


def _add_constants(s1: float, s2: float, s_out: float) -> dict[str, int]:
    """ADD's requantisation for relative scales, as the exporter's Add emitter."""
    s1, s2, s_out = _f32(s1), _f32(s2), _f32(s_out)
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = _quantize_multiplier(s1 / twice_max)
    m2, sh2 = _quantize_multiplier(s2 / twice_max)
    mo, sho = _quantize_multiplier(twice_max / ((1 << 20) * s_out))
    return {"left_shift": 20, "input1_multiplier": m1, "input1_shift": sh1, "input2_multiplier": m2,
            "input2_shift": sh2, "output_multiplier": mo, "output_shift": sho}


def _softmax_constants(beta: float, input_scale: float) -> dict[str, int]:
    """As the exporter's softmax_params (5 integer bits, TFLite's CalculateInputRadius)."""
    real = min(_f32(beta) * _f32(input_scale) * (1 << 26), (1 << 31) - 1.0)
    multiplier, shift = _quantize_multiplier(real)
    radius = ((1 << 5) - 1) * (1 << 26) >> shift
    return {"input_multiplier": multiplier, "input_left_shift": shift, "diff_min": -radius}


def _logistic_constants(input_scale: float, zero_point: int) -> dict[str, int]:
    """As the exporter's logistic_params (4 integer bits)."""
    q, shift = math.frexp(_f32(input_scale) * (1 << 27))
    return {"input_zero_point": zero_point, "input_range_radius": ((1 << 4) - 1) * (1 << 27) >> shift,
            "input_multiplier": int(math.floor(q * (1 << 31) + 0.5)), "input_left_shift": shift}


# ---- representative values of the non-cost fields ----------------------------------------------

_RELU_CONV = {"input_offset": 128, "output_offset": -128, "act_min": -128, "act_max": 127}
_MEAN_SCALE_RATIO = 2.0  # input scale / output scale of a global average of a ReLU output
_ADD_SCALES = (1.0, 0.7, 1.9)  # input1, input2, output (relative): the output covers the full sum
_MUL = {"input1_offset": -10, "input2_offset": 128, "output_offset": 10,
        "output_multiplier": 1 << 30, "output_shift": -7}  # = quantize_multiplier(1 / 256)
# relu = 1 (a fused ReLU, output zero point -128): the output covers the positive half, so about
# half the outputs clamp at -128, as in a ReLU-fused layer of a trained model (the clamp is a
# branch: a clamped element costs a few instructions less). The input zero points are 0 (the
# pre-activation centred on zero): with ADD's -10, -12 or MUL's 10, 57% / 53% clamp instead of 50%
# / 49%, which made the bench 0.2-0.5% cheaper than ReLU-fused layers in a model.
_ADD = {"input1_offset": -10, "input2_offset": -12, "output_offset": 0}
_ADD_RELU = {"input1_offset": 0, "input2_offset": 0, "output_offset": -128}
_ADD_RELU_SCALES = (1.0, 0.7, 0.95)
_MUL_RELU = {"input1_offset": 0, "output_offset": -128, "output_shift": -6}  # output scale half the input's
_SOFTMAX_INPUT_SCALE = 0.0025  # dyconv attention logits of the demo export (0.00245)
_LOGISTIC_INPUT_SCALE = 1 / 32  # gate input range +-4

_DEFAULTS: dict[str, Callable[[dict], dict[str, int]]] = {
    "CONV_2D": lambda c: dict(_RELU_CONV),
    "DEPTHWISE_CONV_2D": lambda c: dict(_RELU_CONV),
    "FULLY_CONNECTED": lambda c: {"input_offset": 128, "filter_offset": 0, "output_offset": 0, "act_min": -128,
                                  "act_max": 127},
    "MEAN": lambda c: dict(zip(("multiplier", "shift"), _mean_multiplier(_MEAN_SCALE_RATIO, c["reduce"])),
                           input_zero_point=-128, output_zero_point=-128),
    "AVERAGE_POOL_2D": lambda c: {"act_min": -128, "act_max": 127},
    "MAX_POOL_2D": lambda c: {"act_min": -128, "act_max": 127},
    "ADD": lambda c: {**(_ADD_RELU if c["relu"] else _ADD), "act_min": -128, "act_max": 127,
                      **_add_constants(*(_ADD_RELU_SCALES if c["relu"] else _ADD_SCALES))},
    "MUL": lambda c: {**_MUL, **(_MUL_RELU if c["relu"] else {}), "act_min": -128, "act_max": 127},
    "SOFTMAX": lambda c: _softmax_constants(1.0, _SOFTMAX_INPUT_SCALE),
    "LOGISTIC": lambda c: _logistic_constants(_LOGISTIC_INPUT_SCALE, 0),
    "PAD": lambda c: {"pad_value": -128},
    # the lowest valid start on each axis: 0, or the last index walked for a negative step
    "STRIDED_SLICE": lambda c: {"begin": tuple(min((d - 1) * -s, _I32[1]) if s < 0 and d > 1 else 0
                                               for d, s in zip(c["out_dims"], c["step"]))},
}

_I32 = (-(1 << 31), (1 << 31) - 1)


def _int(op: str, name: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise UsageError(f"{op} cost field {name} = {v!r} ({type(v).__name__}); expected an int")
    v = int(v)
    if not _I32[0] <= v <= _I32[1]:
        raise UsageError(f"{op} cost field {name} = {v}; expected a value that fits int32")
    return v


def _check_cost(op: str, cost: Mapping[str, object]) -> dict[str, int | tuple[int, ...]]:
    if not isinstance(cost, Mapping):
        raise UsageError(f"{op} cost parameters {cost!r}; expected a mapping of {', '.join(COST_FIELDS[op])}")
    want = COST_FIELDS[op]
    missing = [f for f in want if f not in cost]
    extra = sorted(str(f) for f in cost if f not in want)
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(extra)}"] if extra
                                                                           else [])
        raise UsageError(f"{op} cost parameters: {'; '.join(parts)}; expected exactly {', '.join(want)}")
    out: dict[str, int | tuple[int, ...]] = {}
    for name in want:
        v = cost[name]
        if name in VECTOR_FIELDS[op]:
            if not isinstance(v, (tuple, list)) or len(v) != 4:
                raise UsageError(f"{op} cost field {name} = {v!r}; expected a 4-tuple of ints")
            out[name] = tuple(_int(op, f"{name}[{i}]", x) for i, x in enumerate(v))
        else:
            out[name] = _int(op, name, v)
    if out.get("relu", 0) not in (0, 1):  # a flag: any other value would be keyed apart but benched as 1
        raise UsageError(f"{op} cost field relu = {out['relu']}; expected 0 or 1 (a fused ReLU)")
    return out


def bench_fields(op: str, cost: Mapping[str, int | tuple[int, ...]]) -> dict[str, int | tuple[int, ...]]:
    """Every params field of `op`'s kernel (PARAM_FIELDS order): `cost` plus the fixed values.

    Raises:
        UsageError: an unknown op, missing or extra cost fields, or a value of the wrong type.
    """
    if op not in BENCH_KERNELS:
        raise UsageError(f"op {op!r} has no BENCH_OP kernel; expected one of {', '.join(BENCH_KERNELS)}")
    checked = _check_cost(op, cost)
    fields = {**_DEFAULTS[op](checked), **checked}
    return {name: fields[name] for name in PARAM_FIELDS[op]}


def bench_request(op: str, cost: Mapping[str, int | tuple[int, ...]]) -> tuple[int, bytes]:
    """(kernel id, params bytes) of the BENCH_OP request that times `op` for these cost parameters.

    Args:
        op: TFLite builtin name, a key of BENCH_KERNELS.
        cost: Exactly the op's COST_FIELDS: ints, and 4-tuples of ints for array fields.

    Returns:
        The arguments of `DeviceClient.bench_op(kernel, params, count)`.

    Raises:
        UsageError: an unknown op, missing or extra cost fields, or a value of the wrong type.
    """
    values: list[int] = []
    for v in bench_fields(op, cost).values():
        values.extend(v if isinstance(v, tuple) else (v,))
    return BENCH_KERNELS[op], struct.pack(f"<{len(values)}i", *values)


__all__ = ["BENCH_KERNELS", "COST_FIELDS", "PARAM_FIELDS", "VECTOR_FIELDS", "bench_fields", "bench_request"]
