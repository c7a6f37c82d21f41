"""Emitters for PAD and STRIDED_SLICE: int8 copies, shapes resolved at export time (`mn_shape.c`)."""

from __future__ import annotations

import numpy as np

from micronas_base.errors import ExportError

from ..tflite_graph import Op
from .plan import CodeGen, PlannedLayer
from .registry import Bench, BenchTensor, RuntimeOp, check, runtime_op


def _const_input(op: Op, cg: CodeGen, i: int, what: str, dtype=np.int32) -> np.ndarray:
    """A constant input's values (TFLM reads paddings, begin, end and strides as int32)."""
    t = cg.t(op.inputs[i])
    if not t.is_const or t.dtype != dtype:
        raise ExportError(f"{op.name} {what} tensor {t.name!r} (input shape {list(cg.t(op.inputs[0]).shape)}) "
                          f"is not a {np.dtype(dtype).name} constant")
    return np.asarray(t.data).astype(np.int64)


_PAD_OUT = " * ".join(f"(uint64_t)(p->pad_before[{d}] + p->in_dims[{d}] + p->pad_after[{d}])" for d in range(4))


@runtime_op(
    "PAD",
    summary="explicit zero-point padding before a strided convolution",
    produced_by=("conv", "wconv", "dwsep", "dyconv", "kdna"),
    struct="mn_pad_params", function="mn_pad_s8", kernel_id=11,
    cost_fields=("in_dims", "pad_before", "pad_after"),
    param_fields=("in_dims", "pad_before", "pad_after", "pad_value"),
    vector_fields=("in_dims", "pad_before", "pad_after"),
    bench=Bench(
        call="mn_pad_s8(p, in, out)",
        tensors=(BenchTensor("in", "int8_t", "mn_bench_elems(p->in_dims)", "stream"),
                 BenchTensor("out", "int8_t", _PAD_OUT, output=True)),  # each factor < 2^16: no overflow
        checks=(check("pad in_dims must be 1..16384, pad_before and pad_after 0..16384", dim="in_dims",
                      pad=("pad_before", "pad_after")),
                check("pad_value must be -128..127", int8="pad_value")),
    ),
)
class Pad(RuntimeOp):
    """PAD with a constant value, up to 4-D (shapes right-aligned to 4-D)."""

    def _params(self, op: Op, cg: CodeGen) -> dict:
        x, y = cg.t(op.inputs[0]), cg.t(op.outputs[0])
        shape, rank = list(x.shape), len(x.shape)
        pads = _const_input(op, cg, 1, "paddings")
        if rank > 4 or pads.shape != (rank, 2):
            raise ExportError(f"PAD of shape {shape} with paddings of shape {list(pads.shape)}: the runtime pads "
                              "up to 4-D tensors with [rank, 2] paddings")
        if (pads < 0).any():
            raise ExportError(f"PAD of shape {shape} has negative paddings {pads.tolist()}")
        expected = [int(n + a + b) for n, (a, b) in zip(shape, pads)]
        if expected != list(y.shape):
            raise ExportError(f"PAD output shape {list(y.shape)} differs from {expected} (input {shape}, "
                              f"paddings {pads.tolist()})")
        # TFLM: the output zero point (cast through uint8 to int8: the same value), unless a
        # constant_values input (PADV2-style third input) gives the value.
        value = y.zero_point
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            value = int(_const_input(op, cg, 2, "constant_values", np.int8).reshape(-1)[0])
        lead = 4 - rank
        return {"in_dims": [1] * lead + shape, "pad_before": [0] * lead + [int(a) for a, _ in pads],
                "pad_after": [0] * lead + [int(b) for _, b in pads], "pad_value": value}

    def plan(self, op: Op, cg: CodeGen) -> PlannedLayer:
        return cg.layer(op, self._params(op, cg), [cg.ptr(op.inputs[0]), cg.ptr(op.outputs[0])])

    def bench_values(self, cost) -> dict[str, int]:
        return {"pad_value": -128}  # the zero point of a ReLU output (the value does not change the cost)


def _clamp(v: int, lo: int, hi: int) -> int:
    return hi if v > hi else (lo if v < lo else v)


def slice_axis(size: int, begin: int, end: int, stride: int, begin_masked: bool, end_masked: bool,
               shrink: bool) -> tuple[int, int]:
    """(first index, element count) of one axis, as TFLM's StartForAxis / StopForAxis.

    Masked begins and ends take the whole axis in the stride's direction; negative indices
    count from the end; then the start clamps to [0, size] (stride > 0) or [-1, size - 1]
    (stride < 0), and so does the stop. A shrunk axis is the single element at the start.
    """
    if size == 0:
        return 0, 0
    start = (0 if stride > 0 else size - 1) if begin_masked else begin
    if not begin_masked and start < 0:
        start += size
    start = _clamp(start, 0, size) if stride > 0 else _clamp(start, -1, size - 1)
    if shrink:
        return start, 1
    if end_masked:
        stop = size if stride > 0 else -1
    else:
        stop = end + size if end < 0 else end
        stop = _clamp(stop, 0, size) if stride > 0 else _clamp(stop, -1, size - 1)
    count = max(0, -(-(stop - start) // stride))  # ceil((stop - start) / stride), at least 0
    return start, count


_I32_MAX = (1 << 31) - 1
# The first and last index of each axis (begin, begin + (out_dims-1)*step) must lie in 0..2^24,
# and the input holds 1 + sum of the highest index times the axis stride (a step-1 innermost axis
# is copied as one contiguous run: its in_stride is not used).
_SLICE_HELPERS = """\
static int64_t slice_last(const mn_slice_params *p, int d) {
    return (int64_t)p->begin[d] + (int64_t)(p->out_dims[d] - 1) * p->step[d];
}

static int slice_ends_ok(const mn_slice_params *p) {
    for (int d = 0; d < 4; ++d)
        if (slice_last(p, d) < 0 || slice_last(p, d) > MN_BENCH_MAX_ELEMS) return 0;
    return 1;
}

static uint64_t slice_input_elems(const mn_slice_params *p) {
    uint64_t n = 1;
    for (int d = 0; d < 4; ++d) {
        const int64_t last = slice_last(p, d), top = last > p->begin[d] ? last : p->begin[d];
        const int64_t stride = d == 3 && p->step[3] == 1 ? 1 : p->in_strides[d];
        n += (uint64_t)top * (uint64_t)stride; /* < 2^50 */
    }
    return n;
}
"""


@runtime_op(
    "STRIDED_SLICE",
    summary="one expert's attention weight out of the softmax vector",
    produced_by=("dyconv",),
    struct="mn_slice_params", function="mn_strided_slice_s8", kernel_id=12,
    # begin is not a cost field: it moves the start address, not the work (the experts' slices of
    # a DY-Conv share one key)
    cost_fields=("out_dims", "in_strides", "step"),
    param_fields=("out_dims", "in_strides", "begin", "step"),
    vector_fields=("out_dims", "in_strides", "begin", "step"),
    bench=Bench(
        call="mn_strided_slice_s8(p, in, out)",
        tensors=(BenchTensor("in", "int8_t", "slice_input_elems(p)", "stream"),
                 BenchTensor("out", "int8_t", "mn_bench_elems(p->out_dims)", output=True)),
        checks=(check("strided_slice out_dims must be 1..16384, in_strides 0..16777216, begin 0..16777216, "
                      "step +-1..16384", dim="out_dims", index=("in_strides", "begin"), step="step"),
                check("strided_slice begin + (out_dims-1)*step must be 0..16777216 on every axis",
                      "slice_ends_ok(p)")),
        helpers=_SLICE_HELPERS,
    ),
)
class StridedSlice(RuntimeOp):
    """STRIDED_SLICE with constant begin/end/strides, up to 4-D (as TFLM's micro kernel)."""

    def _params(self, op: Op, cg: CodeGen) -> dict:
        x, y = cg.t(op.inputs[0]), cg.t(op.outputs[0])
        shape, rank = list(x.shape), len(x.shape)
        o = op.options
        if o.get("ellipsisMask", 0) or o.get("newAxisMask", 0):
            raise ExportError(f"STRIDED_SLICE of shape {shape} uses an ellipsis or new-axis mask; the runtime (as "
                              "TFLM, which ignores them) does not support these")
        if o.get("offset", False):
            raise ExportError(f"STRIDED_SLICE of shape {shape} uses offset=true, which TFLM does not implement")
        if rank > 4:
            raise ExportError(f"STRIDED_SLICE of shape {shape}: TFLM and the runtime slice up to 4-D tensors")
        begin = _const_input(op, cg, 1, "begin").reshape(-1)
        end = _const_input(op, cg, 2, "end").reshape(-1)
        strides = _const_input(op, cg, 3, "strides").reshape(-1)
        if not len(begin) == len(end) == len(strides) == rank:
            raise ExportError(f"STRIDED_SLICE of shape {shape}: begin/end/strides have {len(begin)}/{len(end)}/"
                              f"{len(strides)} entries; expected {rank}")
        bm, em, sm = o.get("beginMask", 0), o.get("endMask", 0), o.get("shrinkAxisMask", 0)
        starts, counts, kept = [], [], []
        for d in range(rank):
            if strides[d] == 0:
                raise ExportError(f"STRIDED_SLICE of shape {shape} has stride 0 on axis {d}")
            shrink = bool(sm >> d & 1)
            start, count = slice_axis(shape[d], int(begin[d]), int(end[d]), int(strides[d]), bool(bm >> d & 1),
                                      bool(em >> d & 1), shrink)
            if shrink and not 0 <= start < shape[d]:
                raise ExportError(f"STRIDED_SLICE of shape {shape} shrinks axis {d} at index {int(begin[d])}, "
                                  "outside the axis")
            starts.append(start)
            counts.append(count)
            if not shrink:
                kept.append(count)
        if kept != list(y.shape):  # TFLM's CheckOutputSize
            raise ExportError(f"STRIDED_SLICE output shape {list(y.shape)} differs from {kept} (input {shape})")
        in_strides = [int(np.prod(shape[d + 1:], dtype=np.int64)) for d in range(rank)]
        lead = 4 - rank
        return {"out_dims": [1] * lead + counts, "in_strides": [0] * lead + in_strides,
                "begin": [0] * lead + starts, "step": [1] * lead + [int(s) for s in strides]}

    def plan(self, op: Op, cg: CodeGen) -> PlannedLayer:
        return cg.layer(op, self._params(op, cg), [cg.ptr(op.inputs[0]), cg.ptr(op.outputs[0])])

    def bench_values(self, cost) -> dict[str, tuple[int, ...]]:
        # the lowest valid start on each axis: 0, or the last index walked for a negative step
        return {"begin": tuple(min((d - 1) * -s, _I32_MAX) if s < 0 and d > 1 else 0
                               for d, s in zip(cost["out_dims"], cost["step"]))}


CONCAT_MAX_INPUTS = 10  # TFLM's kMaxInputNum (MN_CONCAT_MAX_INPUTS)

# BENCH_OP's inputs: `count` tensors whose rows split out_row as evenly as it divides (the row
# sizes are not in the key: the latency table assumes an even split), laid one after the other in
# the input stream. The rows are set before the timed window; the pointer array is built inside
# it, as a generated model builds it on the stack before the call.
_CONCAT_HELPERS = """\
static void mn_bench_concat_rows(const mn_concat_params *p, int32_t *rows, uint64_t n) {
    for (uint64_t k = 0; k < n; ++k) rows[k] = p->out_row / p->count + ((int32_t)k < p->out_row % p->count ? 1 : 0);
}

static void mn_bench_concat(const mn_concat_params *p, const int8_t *in, int8_t *out) {
    const int8_t *ins[MN_CONCAT_MAX_INPUTS];
    for (int32_t k = 0; k < p->count; ++k) {
        ins[k] = in;
        in += (uint32_t)p->outer * (uint32_t)p->in_rows[k]; /* < the scratch memory: checked */
    }
    mn_concat_s8(p, ins, out);
}
"""


@runtime_op(
    "CONCATENATION",
    summary="Keras Concatenate / torch.cat of int8 tensors (raw copies, as TFLM)",
    struct="mn_concat_params", function="mn_concat_s8", kernel_id=18,
    cost_fields=("outer", "count", "out_row"),
    param_fields=("outer", "count", "out_row"),
    bench=Bench(
        call="mn_bench_concat(p, in, out)",
        tensors=(BenchTensor("in", "int8_t", "(uint64_t)p->outer * p->out_row", "stream"),
                 BenchTensor("out", "int8_t", "(uint64_t)p->outer * p->out_row", output=True),
                 BenchTensor("rows", "int32_t", "p->count", "helper:mn_bench_concat_rows", into="in_rows")),
        checks=(check("concatenation outer must be 1..16777216, out_row 1..16384, count 1..10 and at most out_row",
                      "mn_bench_in(p->count, 1, MN_CONCAT_MAX_INPUTS)", "p->count <= p->out_row",
                      elems="outer", dim="out_row"),),
        helpers=_CONCAT_HELPERS,
    ),
)
class Concatenation(RuntimeOp):
    """CONCATENATION along any axis, int8, up to 10 inputs (activations or constants).

    TFLM's int8 kernel copies raw values: its Prepare refuses inputs whose scale or zero point
    differ from the output's (the converter gives every input the output's quantisation, or
    inserts a QUANTIZE), and so does the exporter."""

    def _geometry(self, op: Op, cg: CodeGen) -> tuple[int, list[int]]:
        y = cg.t(op.outputs[0])
        xs = [cg.t(i) for i in op.inputs]
        shapes = [list(x.shape) for x in xs]
        if op.options.get("fusedActivationFunction", 0) != 0:
            raise ExportError(f"CONCATENATION of shapes {shapes} has a fused activation; TFLM refuses one")
        for t in (*xs, y):
            if t.dtype != np.int8:
                raise ExportError(f"CONCATENATION tensor {t.name!r} is {np.dtype(t.dtype).name}; the runtime "
                                  "concatenates int8 tensors")
        for x in xs:
            if np.float32(x.scale) != np.float32(y.scale) or x.zero_point != y.zero_point:
                raise ExportError(f"CONCATENATION input {x.name!r} has scale {x.scale!r} and zero point "
                                  f"{x.zero_point}, the output {y.name!r} {y.scale!r} and {y.zero_point}; TFLM "
                                  "concatenates int8 tensors of equal quantisation only",
                                  "re-convert the model: TFLiteConverter gives the inputs of a concatenation the "
                                  "output's quantisation")
        if not 1 <= len(xs) <= CONCAT_MAX_INPUTS:
            raise ExportError(f"CONCATENATION of {len(xs)} inputs {shapes}: TFLM concatenates 1..{CONCAT_MAX_INPUTS}")
        rank = len(y.shape)
        axis = int(op.options.get("axis", 0))
        a = axis + rank if axis < 0 else axis
        if not 0 <= a < rank or any(len(s) != rank for s in shapes):
            raise ExportError(f"CONCATENATION of shapes {shapes} on axis {axis}: the axis or the ranks do not "
                              f"match the output shape {list(y.shape)}")
        expected = list(y.shape)
        expected[a] = sum(s[a] for s in shapes)
        if expected != list(y.shape) or any(s[:a] + s[a + 1:] != expected[:a] + expected[a + 1:] for s in shapes):
            raise ExportError(f"CONCATENATION of shapes {shapes} on axis {axis} does not give the output shape "
                              f"{list(y.shape)}")
        outer = int(np.prod(y.shape[:a], dtype=np.int64))
        return outer, [int(np.prod(s[a:], dtype=np.int64)) for s in shapes]

    def plan(self, op: Op, cg: CodeGen) -> PlannedLayer:
        outer, rows = self._geometry(op, cg)
        fields = {"outer": outer, "count": len(rows), "out_row": sum(rows), "in_rows": cg.i32(rows)}
        return cg.layer(op, fields, [*(cg.ptr(i) for i in op.inputs), cg.ptr(op.outputs[0])])

    def render(self, layer: PlannedLayer, params_name: str) -> str:
        *inputs, out = layer.args
        arr = ", ".join(str(a) for a in inputs)
        return (f"{{ const int8_t *const mn_in[{len(inputs)}] = {{{arr}}}; "
                f"{self.function}(&{params_name}, mn_in, {out}); }}")


class _View(RuntimeOp):
    """A shape-only op: the output shares the input's buffer (int8 data is unchanged)."""

    view = True


@runtime_op("EXPAND_DIMS", summary="Keras/PyTorch Conv1D: [1, T, C] -> [1, 1, T, C] before CONV_2D (a view)")
class ExpandDims(_View):
    """EXPAND_DIMS: a view."""


@runtime_op("SQUEEZE", summary="Keras/PyTorch Conv1D: [1, 1, T, C] -> [1, T, C] after CONV_2D (a view)")
class Squeeze(_View):
    """SQUEEZE: a view."""
