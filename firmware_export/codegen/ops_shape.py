"""Emitters for PAD and STRIDED_SLICE: int8 copies, shapes resolved at export time (`mn_shape.c`)."""

from __future__ import annotations

import numpy as np

from micronas_base.errors import ExportError

from ..tflite_graph import Op
from . import CodeGen


def _const_input(op: Op, cg: CodeGen, i: int, what: str, dtype=np.int32) -> np.ndarray:
    """A constant input's values (TFLM reads paddings, begin, end and strides as int32)."""
    t = cg.t(op.inputs[i])
    if not t.is_const or t.dtype != dtype:
        raise ExportError(f"{op.name} {what} tensor {t.name!r} (input shape {list(cg.t(op.inputs[0]).shape)}) "
                          f"is not a {np.dtype(dtype).name} constant")
    return np.asarray(t.data).astype(np.int64)


class Pad:
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

    def emit(self, op: Op, cg: CodeGen) -> str:
        fields = (self._params(op, cg))
        p = cg.params("mn_pad_params", fields)
        return f"mn_pad_s8(&{p}, {cg.ptr(op.inputs[0])}, {cg.ptr(op.outputs[0])});"

    def macs(self, op: Op, cg: CodeGen) -> int:
        return 0


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


class StridedSlice:
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

    def emit(self, op: Op, cg: CodeGen) -> str:
        fields = (self._params(op, cg))
        p = cg.params("mn_slice_params", fields)
        return f"mn_strided_slice_s8(&{p}, {cg.ptr(op.inputs[0])}, {cg.ptr(op.outputs[0])});"

    def macs(self, op: Op, cg: CodeGen) -> int:
        return 0
