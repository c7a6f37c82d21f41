"""Emitters of the convolutions, FULLY_CONNECTED and RESHAPE: one registered class per runtime op.

An emitter answers, for one op of a graph: its params fields, constants and operands (`plan`),
the kernel call (`render`), the multiply-accumulate count, and how BENCH_OP times it. Views
(RESHAPE) set `view = True` and emit nothing: their output shares the input's arena buffer.
Scales are combined exactly as TFLite's Prepare steps do (float32 operands, widened to double,
see docs/runtime-semantics.md), so the integer constants equal TFLM's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from micronas_base.errors import ExportError

from ..tflite_graph import Op, Tensor
from .plan import NULL, CodeGen, ConstRef, PlannedLayer
from .quant import activation_range, quantize_multiplier
from .registry import ACT_OK, Bench, BenchTensor, RuntimeOp, check, runtime_op

PADDING_SAME, PADDING_VALID = 0, 1


def spatial_1d(t: Tensor, what: str) -> tuple[int, int, str]:
    """(length, channels, axis) of a [1, H, W, C] (or [1, T, C]) tensor that is 1-D in time.

    Raises:
        ExportError: both spatial dimensions are larger than one.
    """
    s = t.shape
    if len(s) == 3 and s[0] == 1:
        return s[1], s[2], "H"
    if len(s) == 4 and s[0] == 1:
        if s[1] == 1:
            return s[2], s[3], "W"
        if s[2] == 1:
            return s[1], s[3], "H"
    raise ExportError(f"{what} tensor {t.name!r} has shape {list(s)}; the runtime runs 1-D time series "
                      "([1, 1, T, C] or [1, T, 1, C])")


def same_pad_before(in_len: int, kernel: int, stride: int, dilation: int, out_len: int) -> int:
    """Padding before the first input for TFLite 'SAME' (the odd extra pad goes after)."""
    effective = (kernel - 1) * dilation + 1
    return max(((out_len - 1) * stride + effective - in_len) // 2, 0)


def per_channel_multipliers(x: Tensor, w: Tensor, y: Tensor) -> tuple[list[int], list[int]]:
    """TFLite's per-channel conv requantisation: double(in) * double(filter[c]) / double(out)."""
    mults, shifts = [], []
    for fs in w.scales:
        m, s = quantize_multiplier(float(np.float32(x.scale)) * float(fs) / float(np.float32(y.scale)))
        mults.append(m)
        shifts.append(s)
    return mults, shifts


def has_bias(op: Op) -> bool:
    """Whether a conv or fully connected op has its optional bias input (index 2; -1 = absent)."""
    return len(op.inputs) > 2 and op.inputs[2] >= 0


def _bias(op: Op, cg: CodeGen) -> ConstRef:
    if has_bias(op):
        b = cg.t(op.inputs[2])
        if b.dtype != np.int32:
            raise ExportError(f"{op.name} bias {b.name!r} is {b.dtype}; expected int32")
        return cg.const(b.data)
    return NULL


def _require_const(op: Op, cg: CodeGen, i: int, what: str) -> Tensor:
    t = cg.t(op.inputs[i])
    if not t.is_const:
        raise ExportError(f"{op.name} {what} {t.name!r} is not a constant; the runtime needs constant weights")
    return t


@dataclass(frozen=True)
class Conv1D:
    """The 1-D geometry of a CONV_2D / DEPTHWISE_CONV_2D op (time on H or W)."""

    in_len: int
    in_ch: int
    out_len: int
    out_ch: int
    kernel: int
    stride: int
    dilation: int
    pad_before: int


def conv_1d(op: Op, cg: CodeGen, kh: int, kw: int) -> Conv1D:
    """Read the 1-D geometry of a convolution whose filter has spatial size (kh, kw).

    Raises:
        ExportError: the filter is 2-D, or a tensor is not a 1-D time series.
    """
    in_len, in_ch, axis = spatial_1d(cg.t(op.inputs[0]), f"{op.name} input")
    out_len, out_ch, _ = spatial_1d(cg.t(op.outputs[0]), f"{op.name} output")
    o = op.options
    if axis == "W":
        kernel, stride, dilation, other_k = kw, o["strideW"], o["dilationWFactor"], kh
    else:
        kernel, stride, dilation, other_k = kh, o["strideH"], o["dilationHFactor"], kw
    if other_k != 1:
        raise ExportError(f"{op.name} filter is {kh} x {kw}; the runtime runs 1-D convolutions over time")
    pad = same_pad_before(in_len, kernel, stride, dilation, out_len) if o["padding"] == PADDING_SAME else 0
    return Conv1D(in_len, in_ch, out_len, out_ch, kernel, stride, dilation, pad)


def _conv_quant_fields(op: Op, cg: CodeGen, w: Tensor) -> dict[str, object]:
    """Offsets, clamps and per-channel requantisation shared by both convolutions."""
    x, y = cg.t(op.inputs[0]), cg.t(op.outputs[0])
    mults, shifts = per_channel_multipliers(x, w, y)
    if len(mults) == 1 and w.shape[0] > 1:  # a per-tensor filter: every channel the same (as TFLM)
        mults, shifts = mults * w.shape[0], shifts * w.shape[0]
    act_min, act_max = activation_range(op.options["fusedActivationFunction"], y.scale, y.zero_point)
    return {"input_offset": -x.zero_point, "output_offset": y.zero_point, "act_min": act_min,
            "act_max": act_max, "out_multiplier": cg.i32(mults), "out_shift": cg.i32(shifts)}



# BENCH_OP's convolutions and FC: every output multiplier 2^30 with shift -8, the fast
# requantisation form of mn_internal.h (shift -22..-2, multiplier >= 0, |output offset| <= 256)
# that exported convs and FCs take (their shifts are -4..-13); biases 0.
_BENCH_MULT, _BENCH_SHIFT = 1 << 30, -8
_QUANT_MESSAGE = "offsets or activation range out of int8 range"


def _bench_quant(n: str) -> tuple[BenchTensor, ...]:
    """The per-channel requantisation arrays of `n` channels (pointer fields of the struct)."""
    return (BenchTensor("mult", "int32_t", n, _BENCH_MULT, into="out_multiplier"),
            BenchTensor("shift", "int32_t", n, _BENCH_SHIFT, into="out_shift"))


def _relu_conv_values() -> dict[str, int]:
    """An exported conv + ReLU: input zero point -128 (a ReLU output), output zero point -128 and
    the ReLU clamp, so about half the outputs clamp at -128 as in the model (the clamp is a
    branch: a clamped output costs ~2 instructions less off the SIMD interior path)."""
    act_min, act_max = activation_range(1, 1.0, -128)
    return {"input_offset": 128, "output_offset": -128, "act_min": act_min, "act_max": act_max}


@runtime_op(
    "CONV_2D",
    # onnx2tf 1.29.24 lowers a depthwise Conv1d to a grouped CONV_2D (filter [C, 1, K, 1]), which
    # TFLM runs; DEPTHWISE_CONV_2D stays registered for models converted other ways.
    summary="1-D convolution as a [1, 1, T, C] x [O, 1, K, C/groups] conv, per-channel int8",
    produced_by=("conv", "wconv", "dwsep", "dyconv", "kdna", "dyagg"),
    struct="mn_conv_params", function="mn_conv_s8", kernel_id=1,
    cost_fields=("in_len", "in_ch", "out_len", "out_ch", "kernel", "stride", "dilation", "pad_before", "groups"),
    param_fields=("in_len", "in_ch", "out_len", "out_ch", "kernel", "stride", "dilation", "pad_before", "groups",
                  "input_offset", "output_offset", "act_min", "act_max"),
    bench=Bench(
        call="mn_conv_s8(p, in, w, bias, out)",
        tensors=(BenchTensor("in", "int8_t", "(uint64_t)p->in_len * p->in_ch", "seeded"),
                 BenchTensor("w", "int8_t", "(uint64_t)p->out_ch * p->kernel * (p->in_ch / p->groups)", "seeded"),
                 BenchTensor("out", "int8_t", "(uint64_t)p->out_len * p->out_ch", output=True),
                 BenchTensor("bias", "int32_t", "p->out_ch", 0),
                 *_bench_quant("p->out_ch")),
        checks=(check("conv sizes must be 1..16384 (pad_before 0..16384)",
                      dim=("in_len", "in_ch", "out_len", "out_ch", "kernel", "stride", "dilation", "groups"),
                      pad="pad_before"),
                check("groups must divide in_ch and out_ch", "p->in_ch % p->groups == 0 && p->out_ch % p->groups == 0"),
                check(_QUANT_MESSAGE, ACT_OK, offset=("input_offset", "output_offset"))),
    ),
)
class Conv2D(RuntimeOp):
    """CONV_2D as a 1-D (optionally grouped) convolution: filter [O, 1, K, C/groups]."""

    def plan(self, op: Op, cg: CodeGen) -> PlannedLayer:
        w = cg.t(op.inputs[1])
        if not w.is_const and (len(w.scales) != 1 or w.zero_point != 0):
            # a computed filter (dyagg's aggregated kernel): TFLM's int8 conv ignores a filter
            # zero point and LiteRT refuses one, so only a symmetric per-tensor one is exact
            raise ExportError(f"CONV_2D computed filter {w.name!r} has {len(w.scales)} scale(s) and zero point "
                              f"{w.zero_point}; expected one scale and zero point 0 (firmware_export.dyagg)")
        o_ch, kh, kw, cf = w.shape
        g = conv_1d(op, cg, kh, kw)
        if o_ch != g.out_ch or g.in_ch % cf:
            raise ExportError(f"CONV_2D filter {list(w.shape)} does not fit {g.in_ch} -> {g.out_ch} channels")
        fields = {
            "in_len": g.in_len, "in_ch": g.in_ch, "out_len": g.out_len, "out_ch": g.out_ch,
            "kernel": g.kernel, "stride": g.stride, "dilation": g.dilation, "pad_before": g.pad_before,
            "groups": g.in_ch // cf, **_conv_quant_fields(op, cg, w),
        }
        # a constant filter lives in flash; a computed one (dyagg) in the arena, where its FC put it
        filt = cg.const(w.data) if w.is_const else cg.ptr(op.inputs[1])
        return cg.layer(op, fields, [cg.ptr(op.inputs[0]), filt, _bias(op, cg), cg.ptr(op.outputs[0])])

    def macs(self, op: Op, cg: CodeGen) -> int:
        w = cg.t(op.inputs[1])
        g = conv_1d(op, cg, w.shape[1], w.shape[2])
        return g.out_len * g.out_ch * g.kernel * w.shape[3]

    def bench_values(self, cost) -> dict[str, int]:
        return _relu_conv_values()


@runtime_op(
    "DEPTHWISE_CONV_2D",
    summary="depthwise 1-D convolution",
    struct="mn_dwconv_params", function="mn_dwconv_s8", kernel_id=2,
    cost_fields=("in_len", "in_ch", "out_len", "depth_multiplier", "kernel", "stride", "dilation", "pad_before"),
    param_fields=("in_len", "in_ch", "out_len", "depth_multiplier", "kernel", "stride", "dilation", "pad_before",
                  "input_offset", "output_offset", "act_min", "act_max"),
    bench=Bench(
        call="mn_dwconv_s8(p, in, w, bias, out)",
        tensors=(BenchTensor("in", "int8_t", "(uint64_t)p->in_len * p->in_ch", "seeded"),
                 BenchTensor("w", "int8_t", "(uint64_t)p->kernel * (p->in_ch * p->depth_multiplier)", "seeded"),
                 BenchTensor("out", "int8_t", "(uint64_t)p->out_len * (p->in_ch * p->depth_multiplier)", output=True),
                 BenchTensor("bias", "int32_t", "p->in_ch * p->depth_multiplier", 0),
                 *_bench_quant("p->in_ch * p->depth_multiplier")),
        checks=(check("dwconv sizes must be 1..16384 (pad_before 0..16384)",
                      "(int64_t)p->in_ch * p->depth_multiplier <= MN_BENCH_MAX_DIM",
                      dim=("in_len", "in_ch", "out_len", "depth_multiplier", "kernel", "stride", "dilation"),
                      pad="pad_before"),
                check(_QUANT_MESSAGE, ACT_OK, offset=("input_offset", "output_offset"))),
    ),
)
class DepthwiseConv2D(RuntimeOp):
    """DEPTHWISE_CONV_2D as 1-D: filter [1, 1, K, C * depth_multiplier]."""

    def plan(self, op: Op, cg: CodeGen) -> PlannedLayer:
        w = _require_const(op, cg, 1, "filter")
        _, kh, kw, wc = w.shape
        g = conv_1d(op, cg, kh, kw)
        mult = g.out_ch // g.in_ch
        if wc != g.out_ch or mult * g.in_ch != g.out_ch:
            raise ExportError(f"DEPTHWISE_CONV_2D filter {list(w.shape)} does not fit {g.in_ch} -> {g.out_ch} channels")
        fields = {
            "in_len": g.in_len, "in_ch": g.in_ch, "out_len": g.out_len, "depth_multiplier": mult,
            "kernel": g.kernel, "stride": g.stride, "dilation": g.dilation, "pad_before": g.pad_before,
            **_conv_quant_fields(op, cg, w),
        }
        filt = cg.const(w.data.reshape(g.kernel, g.out_ch))
        return cg.layer(op, fields, [cg.ptr(op.inputs[0]), filt, _bias(op, cg), cg.ptr(op.outputs[0])])

    def macs(self, op: Op, cg: CodeGen) -> int:
        w, y = cg.t(op.inputs[1]), cg.t(op.outputs[0])
        return int(np.prod(y.shape)) * w.shape[1] * w.shape[2]

    def bench_values(self, cost) -> dict[str, int]:
        return _relu_conv_values()


@runtime_op(
    "FULLY_CONNECTED",
    summary="classifier and attention MLPs",
    produced_by=("dyconv", "kdna", "dyagg"),
    struct="mn_fc_params", function="mn_fc_s8", kernel_id=3,
    cost_fields=("batches", "in_features", "out_features", "per_channel", "has_bias"),
    param_fields=("batches", "in_features", "out_features", "input_offset", "filter_offset", "output_offset",
                  "act_min", "act_max", "per_channel", "has_bias"),
    bench=Bench(
        call="mn_fc_s8(p, in, w, bias, out)",
        tensors=(BenchTensor("in", "int8_t", "(uint64_t)p->batches * p->in_features", "seeded"),
                 BenchTensor("w", "int8_t", "(uint64_t)p->out_features * p->in_features", "seeded"),
                 BenchTensor("out", "int8_t", "(uint64_t)p->batches * p->out_features", output=True),
                 BenchTensor("bias", "int32_t", "p->out_features", 0, when="p->has_bias"),
                 *_bench_quant("p->per_channel ? p->out_features : 1")),
        checks=(check("fc batches and in_features must be 1..16384", dim=("batches", "in_features")),
                # dyagg's aggregation FC has out * kernel * in outputs (25,200 at 60 channels, k7)
                check("fc out_features must be 1..16777216", elems="out_features"),
                check("per_channel must be 0 or 1", flag="per_channel"),
                check("has_bias must be 0 or 1", flag="has_bias"),
                check(_QUANT_MESSAGE, ACT_OK, offset=("input_offset", "filter_offset", "output_offset"))),
    ),
)
class FullyConnected(RuntimeOp):
    """FULLY_CONNECTED, per-tensor or per-channel weights."""

    def plan(self, op: Op, cg: CodeGen) -> PlannedLayer:
        x, y = cg.t(op.inputs[0]), cg.t(op.outputs[0])
        w = _require_const(op, cg, 1, "weights")
        out_features, in_features = w.shape
        batches = int(np.prod(x.shape)) // in_features
        # per-tensor or per-channel: the same double-precision derivation (the 2026 TFLM build
        # widens both scales to double before multiplying; older sources multiplied in float)
        mults, shifts = per_channel_multipliers(x, w, y)
        act_min, act_max = activation_range(op.options["fusedActivationFunction"], y.scale, y.zero_point)
        fields = {
            "batches": batches, "in_features": in_features, "out_features": out_features,
            "input_offset": -x.zero_point, "filter_offset": -w.zero_point, "output_offset": y.zero_point,
            "act_min": act_min, "act_max": act_max, "per_channel": int(len(mults) > 1),
            "has_bias": int(has_bias(op)),
            "out_multiplier": cg.i32(mults), "out_shift": cg.i32(shifts),
        }
        return cg.layer(op, fields, [cg.ptr(op.inputs[0]), cg.const(w.data), _bias(op, cg), cg.ptr(op.outputs[0])])

    def macs(self, op: Op, cg: CodeGen) -> int:
        w, x = cg.t(op.inputs[1]), cg.t(op.inputs[0])
        return int(np.prod(x.shape)) // w.shape[1] * w.shape[0] * w.shape[1]

    def bench_values(self, cost) -> dict[str, int]:
        # input zero point -128 (a ReLU output), symmetric int8 weights (filter offset 0: the
        # kernel's filter-offset loop is skipped, as for every exported FC), no fused activation
        # (the classifier and the attention logits)
        act_min, act_max = activation_range(0, 1.0, 0)
        return {"input_offset": 128, "filter_offset": 0, "output_offset": 0, "act_min": act_min, "act_max": act_max}


@runtime_op("RESHAPE", summary="1-D <-> 2-D views around convolutions",
            produced_by=("conv", "wconv", "dwsep", "dyconv", "kdna", "dyagg"))
class Reshape(RuntimeOp):
    """RESHAPE: a view; the output shares the input's buffer (int8 data is unchanged)."""

    view = True
