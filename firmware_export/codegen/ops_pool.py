"""Emitters for MEAN, AVERAGE_POOL_2D and MAX_POOL_2D (1-D over time).

The integer constants are computed here as TFLM's Prepare (and, for MEAN, its Eval-time fold of
1/count into the multiplier) computes them, so the C kernels in `mn_pool.c` are bit-exact.
"""

from __future__ import annotations

import numpy as np

from micronas_base.errors import ExportError

from micronas_base.errors import UsageError

from ..tflite_graph import Op, Tensor
from .ops import PADDING_SAME, PADDING_VALID, same_pad_before
from .plan import CodeGen, PlannedLayer
from .quant import activation_range, quantize_multiplier
from .registry import ACT_OK, Bench, BenchTensor, RuntimeOp, check, runtime_op


def mean_multiplier(in_scale: float, out_scale: float, count: int) -> tuple[int, int]:
    """TFLM's MEAN rescale: QuantizeMultiplier(double(in)/double(out)), then 1/count folded in.

    Mirrors PrepareMeanOrSumHelper and reference_ops::QuantizedMeanOrSum: with
    s = min(floor(log2(count)), 32, 31 + shift), the multiplier becomes
    (multiplier << s) / count (int64, truncated) and the shift becomes shift - s.

    Args:
        in_scale: Input scale (float32 in the flatbuffer).
        out_scale: Output scale.
        count: Number of elements averaged per output.

    Returns:
        (multiplier, shift) for `mn_requantize`.
    """
    real = float(np.float32(in_scale)) / float(np.float32(out_scale))
    m, shift = quantize_multiplier(real)
    s = min(count.bit_length() - 1, 32, 31 + shift)
    return (m << s) // count, shift - s


def mean_geometry(x: Tensor, axes: np.ndarray, y: Tensor) -> tuple[int, int, int]:
    """(outer, reduce, inner) of a MEAN whose reduced axes form one block of the input.

    Axes of size 1 are ignored, so [1, 1, T, C] over axes (1, 2) and [1, T, C] over axis 1 are
    both [1][T][C] -> [1][C].

    Raises:
        ExportError: an axis is out of range, more than two distinct axes (TFLM's limit), or the
            reduced axes are interleaved with kept ones.
    """
    shape = list(x.shape)
    rank = len(shape)
    resolved: list[int] = []
    for a in (int(v) for v in np.asarray(axes).reshape(-1)):
        r = a + rank if a < 0 else a
        if not 0 <= r < rank:
            raise ExportError(f"MEAN axis {a} is out of range for input shape {shape}")
        if r not in resolved:
            resolved.append(r)
    if len(resolved) > 2:
        raise ExportError(f"MEAN over axes {resolved} of shape {shape}: TFLM reduces at most 2 axes")
    # pattern of the non-trivial axes: kept (outer) ... reduced ... kept (inner)
    outer, reduce, inner, phase = 1, 1, 1, 0
    for d, n in enumerate(shape):
        if n == 1:
            continue
        if d in resolved:
            if phase == 2:
                raise ExportError(f"MEAN over axes {resolved} of shape {shape}: the reduced axes are not "
                                  "contiguous; the runtime reduces one block of axes")
            phase, reduce = 1, reduce * n
        elif phase == 0:
            outer *= n
        else:
            phase, inner = 2, inner * n
    if int(np.prod(y.shape, dtype=np.int64)) != outer * inner:
        raise ExportError(f"MEAN output shape {list(y.shape)} does not match input {shape} over axes {resolved}")
    return outer, reduce, inner


# BENCH_OP's MEAN: a global average of a ReLU output (zero points -128) with in/out scale ratio 2,
# so the folded shift is negative from reduce 4 on, as in real global averages (mn_requantize
# branches on shift > 0).
_BENCH_MEAN_SCALES = (1.0, 0.5)


@runtime_op(
    "MEAN",
    summary="mean over axes (models converted other ways)",
    struct="mn_mean_params", function="mn_mean_s8", kernel_id=4,
    cost_fields=("outer", "reduce", "inner"),
    param_fields=("outer", "reduce", "inner", "input_zero_point", "output_zero_point", "multiplier", "shift"),
    bench=Bench(
        call="mn_mean_s8(p, in, out)",
        tensors=(BenchTensor("in", "int8_t", "(uint64_t)p->outer * p->reduce * p->inner", "stream"),
                 BenchTensor("out", "int8_t", "(uint64_t)p->outer * p->inner", output=True)),
        checks=(check("mean sizes: outer, inner 1..16777216, reduce 1..16384", elems=("outer", "inner"),
                      dim="reduce"),
                check("mean zero points must be -128..127", int8=("input_zero_point", "output_zero_point")),
                check("mean multiplier must be >= 0 and shift -31..30", nonneg="multiplier", shift="shift")),
    ),
)
class Mean(RuntimeOp):
    """MEAN (int8) as TFLM's QuantizedMeanOrSum over [outer][reduce][inner]."""

    def _geometry(self, op: Op, cg: CodeGen) -> tuple[Tensor, Tensor, int, int, int]:
        x, y = cg.t(op.inputs[0]), cg.t(op.outputs[0])
        axis = cg.t(op.inputs[1])
        if not axis.is_const or axis.dtype != np.int32:
            raise ExportError(f"MEAN axis tensor {axis.name!r} of input shape {list(x.shape)} is not an int32 "
                              "constant")
        return x, y, *mean_geometry(x, axis.data, y)

    def plan(self, op: Op, cg: CodeGen) -> PlannedLayer:
        x, y, outer, reduce, inner = self._geometry(op, cg)
        # TFLM (this release) takes the QuantizedMeanOrSum path for every int8 MEAN, also when
        # input and output quantisation are equal: no truncating integer-division path.
        multiplier, shift = mean_multiplier(x.scale, y.scale, reduce)
        fields = {
            "outer": outer, "reduce": reduce, "inner": inner,
            "input_zero_point": x.zero_point, "output_zero_point": y.zero_point,
            "multiplier": multiplier, "shift": shift,
        }
        return cg.layer(op, fields, [cg.ptr(op.inputs[0]), cg.ptr(op.outputs[0])])

    def macs(self, op: Op, cg: CodeGen) -> int:
        _, _, outer, reduce, inner = self._geometry(op, cg)
        return outer * reduce * inner  # one add per input element

    def bench_values(self, cost) -> dict[str, int]:
        if cost["reduce"] < 1:
            raise UsageError(f"MEAN cost field reduce = {cost['reduce']}; expected at least 1 (elements averaged "
                             "per output)")
        multiplier, shift = mean_multiplier(*_BENCH_MEAN_SCALES, cost["reduce"])
        return {"input_zero_point": -128, "output_zero_point": -128, "multiplier": multiplier, "shift": shift}


def pool_out_len(padding: int, in_len: int, filter_: int, stride: int) -> int:
    """TFLite's ComputeOutSize (no dilation)."""
    if padding == PADDING_SAME:
        return (in_len + stride - 1) // stride
    if padding == PADDING_VALID:
        return (in_len + stride - filter_) // stride
    raise ValueError(padding)


_POOL_COST = ("in_len", "ch", "out_len", "filter", "stride", "pad_before")


def _pool_bench(function: str) -> Bench:
    return Bench(
        call=f"{function}(p, in, out)",
        tensors=(BenchTensor("in", "int8_t", "(uint64_t)p->in_len * p->ch", "stream"),
                 BenchTensor("out", "int8_t", "(uint64_t)p->out_len * p->ch", output=True)),
        checks=(check("pool sizes must be 1..16384 (pad_before 0..16384)",
                      dim=("in_len", "ch", "out_len", "filter", "stride"), pad="pad_before"),
                # window t covers inputs [t*stride - pad_before, + filter) clipped to the input:
                # the first and the last window (and so every one between) must hold an input
                check("every pool window must cover an input: pad_before < filter and "
                      "(out_len-1)*stride - pad_before < in_len",
                      "p->pad_before < p->filter && (int64_t)(p->out_len - 1) * p->stride - p->pad_before < p->in_len"),
                check("activation range out of int8 range", ACT_OK)),
    )


class _Pool(RuntimeOp):
    """AVERAGE_POOL_2D / MAX_POOL_2D on [1, 1, T, C] (filter [1, k]) or [1, T, 1, C] (filter [k, 1])."""

    def _geometry(self, op: Op, cg: CodeGen) -> dict:
        x, y = cg.t(op.inputs[0]), cg.t(op.outputs[0])
        o = op.options
        s, so = list(x.shape), list(y.shape)
        if len(s) != 4 or len(so) != 4 or s[0] != 1 or so[0] != 1 or s[3] != so[3]:
            raise ExportError(f"{self.name} input shape {s} -> {so}: expected [1, 1, T, C] or [1, T, 1, C]")
        # The time axis is the one the other (size-1) axis leaves; a filter along a size-1 axis
        # with a size-1 output clips to that single row in TFLM, so it does not change the result.
        if s[1] == 1 and so[1] == 1:
            in_len, out_len, filt, stride = s[2], so[2], o["filterWidth"], o["strideW"]
        elif s[2] == 1 and so[2] == 1:
            in_len, out_len, filt, stride = s[1], so[1], o["filterHeight"], o["strideH"]
        else:
            raise ExportError(f"{self.name} input shape {s} -> {so}: the runtime pools 1-D time series "
                              "([1, 1, T, C] or [1, T, 1, C])")
        # TFLM's Prepare refuses a pool that changes the quantisation (the kernel copies raw values)
        if abs(float(np.float32(x.scale)) - float(np.float32(y.scale))) > 1e-6 or x.zero_point != y.zero_point:
            raise ExportError(f"{self.name} of shape {s} changes the quantisation ({x.scale}, {x.zero_point}) -> "
                              f"({y.scale}, {y.zero_point}); TFLite requires them equal")
        padding = o["padding"]
        expected = pool_out_len(padding, in_len, filt, stride)
        if expected != out_len:
            raise ExportError(f"{self.name} output length {out_len} (shape {so}) differs from TFLite's {expected} "
                              f"for input {s}, filter {filt}, stride {stride}")
        # ComputePaddingHeightWidth: the odd extra pad goes after; VALID comes out as 0.
        pad = same_pad_before(in_len, filt, stride, 1, out_len)
        for t in range(out_len):  # TFLM's AveragePool fails on an empty window; so do we
            start = t * stride - pad
            if min(filt, in_len - start) - max(0, -start) <= 0:
                raise ExportError(f"{self.name} window {t} of input {s} (filter {filt}, stride {stride}) is empty")
        act_min, act_max = activation_range(o["fusedActivationFunction"], y.scale, y.zero_point)
        return {"in_len": in_len, "ch": s[3], "out_len": out_len, "filter": filt, "stride": stride,
                "pad_before": pad, "act_min": act_min, "act_max": act_max}

    def plan(self, op: Op, cg: CodeGen) -> PlannedLayer:
        return cg.layer(op, self._geometry(op, cg), [cg.ptr(op.inputs[0]), cg.ptr(op.outputs[0])])

    def macs(self, op: Op, cg: CodeGen) -> int:
        g = self._geometry(op, cg)
        return g["out_len"] * g["ch"] * g["filter"]  # one add/compare per tap

    def bench_values(self, cost) -> dict[str, int]:
        return {"act_min": -128, "act_max": 127}  # no fused activation


@runtime_op("AVERAGE_POOL_2D", summary="global average over time (head, attention inputs)",
            produced_by=("dyconv", "kdna"), struct="mn_pool_params", function="mn_avgpool_s8", kernel_id=5,
            cost_fields=_POOL_COST, param_fields=(*_POOL_COST, "act_min", "act_max"),
            bench=_pool_bench("mn_avgpool_s8"))
class AveragePool2D(_Pool):
    """AVERAGE_POOL_2D as TFLM's reference_integer_ops::AveragePool (raw values, rounded mean)."""


@runtime_op("MAX_POOL_2D", summary="max pooling over time", struct="mn_pool_params", function="mn_maxpool_s8",
            kernel_id=6, cost_fields=_POOL_COST, param_fields=(*_POOL_COST, "act_min", "act_max"),
            bench=_pool_bench("mn_maxpool_s8"))
class MaxPool2D(_Pool):
    """MAX_POOL_2D as TFLM's reference_integer_ops::MaxPool."""
