"""Op emitters: one class per runtime op, named by its registry entry.

An emitter answers, for one op of a graph: the kernel call (with its export-time params struct)
and the multiply-accumulate count. Views (RESHAPE) set `view = True` and emit nothing: their
output shares the input's arena buffer. Scales are combined exactly as TFLite's Prepare steps
do (float32 operands, widened to double, see docs/runtime-semantics.md), so the integer
constants equal TFLM's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from micronas_base.errors import ExportError

from ..tflite_graph import Op, Tensor
from . import CodeGen
from .quant import activation_range, quantize_multiplier

PADDING_SAME, PADDING_VALID = 0, 1


def c_struct(fields: dict[str, object], _nested: bool = False) -> tuple[str, int]:
    """A C99 designated initializer and the struct's size on a 32-bit core (4 bytes a field).

    Top-level fields go one per line (readable generated code); nested structs stay inline.
    """
    parts = []
    size = 0
    for k, v in fields.items():
        if isinstance(v, (list, tuple)):
            parts.append(f".{k} = {{{', '.join(str(int(x)) for x in v)}}}")
            size += 4 * len(v)
        elif isinstance(v, dict):
            inner, inner_size = c_struct(v, _nested=True)
            parts.append(f".{k} = {inner}")
            size += inner_size
        else:
            parts.append(f".{k} = {v}")
            size += 4
    if _nested:
        return "{" + ", ".join(parts) + "}", size
    return "{\n    " + ",\n    ".join(parts) + ",\n}", size


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


def _bias(op: Op, cg: CodeGen) -> str:
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        b = cg.t(op.inputs[2])
        if b.dtype != np.int32:
            raise ExportError(f"{op.name} bias {b.name!r} is {b.dtype}; expected int32")
        return cg.const(b.data)
    return "NULL"


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
    act_min, act_max = activation_range(op.options["fusedActivationFunction"], y.scale, y.zero_point)
    return {"input_offset": -x.zero_point, "output_offset": y.zero_point, "act_min": act_min,
            "act_max": act_max, "out_multiplier": cg.i32(mults), "out_shift": cg.i32(shifts)}


class Conv2D:
    """CONV_2D as a 1-D (optionally grouped) convolution: filter [O, 1, K, C/groups]."""

    def emit(self, op: Op, cg: CodeGen) -> str:
        w = _require_const(op, cg, 1, "filter")
        o_ch, kh, kw, cf = w.shape
        g = conv_1d(op, cg, kh, kw)
        if o_ch != g.out_ch or g.in_ch % cf:
            raise ExportError(f"CONV_2D filter {list(w.shape)} does not fit {g.in_ch} -> {g.out_ch} channels")
        fields = ({
            "in_len": g.in_len, "in_ch": g.in_ch, "out_len": g.out_len, "out_ch": g.out_ch,
            "kernel": g.kernel, "stride": g.stride, "dilation": g.dilation, "pad_before": g.pad_before,
            "groups": g.in_ch // cf, **_conv_quant_fields(op, cg, w),
        })
        p = cg.params("mn_conv_params", fields)
        return f"mn_conv_s8(&{p}, {cg.ptr(op.inputs[0])}, {cg.const(w.data)}, {_bias(op, cg)}, {cg.ptr(op.outputs[0])});"

    def macs(self, op: Op, cg: CodeGen) -> int:
        w = cg.t(op.inputs[1])
        g = conv_1d(op, cg, w.shape[1], w.shape[2])
        return g.out_len * g.out_ch * g.kernel * w.shape[3]


class DepthwiseConv2D:
    """DEPTHWISE_CONV_2D as 1-D: filter [1, 1, K, C * depth_multiplier]."""

    def emit(self, op: Op, cg: CodeGen) -> str:
        w = _require_const(op, cg, 1, "filter")
        _, kh, kw, wc = w.shape
        g = conv_1d(op, cg, kh, kw)
        mult = g.out_ch // g.in_ch
        if wc != g.out_ch or mult * g.in_ch != g.out_ch:
            raise ExportError(f"DEPTHWISE_CONV_2D filter {list(w.shape)} does not fit {g.in_ch} -> {g.out_ch} channels")
        fields = ({
            "in_len": g.in_len, "in_ch": g.in_ch, "out_len": g.out_len, "depth_multiplier": mult,
            "kernel": g.kernel, "stride": g.stride, "dilation": g.dilation, "pad_before": g.pad_before,
            **_conv_quant_fields(op, cg, w),
        })
        p = cg.params("mn_dwconv_params", fields)
        filt = cg.const(w.data.reshape(g.kernel, g.out_ch))
        return f"mn_dwconv_s8(&{p}, {cg.ptr(op.inputs[0])}, {filt}, {_bias(op, cg)}, {cg.ptr(op.outputs[0])});"

    def macs(self, op: Op, cg: CodeGen) -> int:
        w, y = cg.t(op.inputs[1]), cg.t(op.outputs[0])
        return int(np.prod(y.shape)) * w.shape[1] * w.shape[2]


class FullyConnected:
    def emit(self, op: Op, cg: CodeGen) -> str:
        x, y = cg.t(op.inputs[0]), cg.t(op.outputs[0])
        w = _require_const(op, cg, 1, "weights")
        out_features, in_features = w.shape
        batches = int(np.prod(x.shape)) // in_features
        # per-tensor or per-channel: the same double-precision derivation (the 2026 TFLM build
        # widens both scales to double before multiplying; older sources multiplied in float)
        mults, shifts = per_channel_multipliers(x, w, y)
        act_min, act_max = activation_range(op.options["fusedActivationFunction"], y.scale, y.zero_point)
        fields = ({
            "batches": batches, "in_features": in_features, "out_features": out_features,
            "input_offset": -x.zero_point, "filter_offset": -w.zero_point, "output_offset": y.zero_point,
            "act_min": act_min, "act_max": act_max, "per_channel": int(len(mults) > 1),
            "out_multiplier": cg.i32(mults), "out_shift": cg.i32(shifts),
        })
        p = cg.params("mn_fc_params", fields)
        return f"mn_fc_s8(&{p}, {cg.ptr(op.inputs[0])}, {cg.const(w.data)}, {_bias(op, cg)}, {cg.ptr(op.outputs[0])});"

    def macs(self, op: Op, cg: CodeGen) -> int:
        w, x = cg.t(op.inputs[1]), cg.t(op.inputs[0])
        return int(np.prod(x.shape)) // w.shape[1] * w.shape[0] * w.shape[1]


class Reshape:
    """RESHAPE: a view; the output shares the input's buffer (int8 data is unchanged)."""

    view = True

    def emit(self, op: Op, cg: CodeGen) -> str:
        return ""
