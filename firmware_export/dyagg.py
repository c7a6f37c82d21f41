"""Finalise the converter's flatbuffer for aggregation-form dynamic convolutions (`dyagg`).

The torch layer exports `FC(pi) -> reshape -> conv` with the aggregated kernel as the conv's
filter. TFLiteConverter (TF 2.19) turns that into

    FULLY_CONNECTED (stacked experts, per-channel) -> RESHAPE -> TRANSPOSE -> RESHAPE -> TRANSPOSE
    -> CONV_2D (filter: that chain's output)

with the aggregated filter quantised per tensor and *asymmetrically* (a calibrated zero point
such as -3). LiteRT's int8 conv refuses a filter zero point ("zero_point != 0") and TFLite
Micro's silently ignores it (outputs off by several LSB). This pass rewrites each such chain
into the form both run exactly:

    FULLY_CONNECTED (rows permuted into the conv's OHWI order, per-tensor weights)
    -> RESHAPE [O, 1, k, C] -> CONV_2D

* The layout chain (RESHAPE / TRANSPOSE only moves elements) becomes a permutation of the FC's
  output rows, found by pushing `arange(N)` through it: no TRANSPOSE is left to run.
* The FC weights are requantised per tensor at s_w = max of their per-row scales (the largest
  row's grid is unchanged; the others move by at most half an LSB of s_w), and the FC output,
  i.e. the conv filter, is quantised symmetrically at that same s_w, zero point 0. The attention
  is a softmax (non-negative, summing to one), so every aggregated weight is a convex
  combination of expert weights and lies within [-127, 127] * s_w: the static scale cannot
  overflow (the quantised softmax may sum to slightly more than one: at most a saturated LSB).
  With the softmax's fixed output scale 1/256 the FC's requantisation multiplier is then
  exactly 1/256 (TFLite's multiplier 2^30, shift -7).
* The conv's bias (its scale input scale x filter scale) is rescaled to the new filter scale.

No TensorFlow here: the flatbuffer is edited with ai-edge-litert's schema bindings.
"""

from __future__ import annotations

import logging

import numpy as np

from micronas_base.errors import ExportError

log = logging.getLogger(__name__)

_LAYOUT_OPS = ("RESHAPE", "TRANSPOSE")


def _i32(buf: bytes, model, tensor) -> np.ndarray | None:
    b = model.buffers[tensor.buffer]
    if b.data is not None and len(b.data):
        raw = np.asarray(b.data, np.uint8).tobytes()
    elif b.offset and b.size:
        raw = buf[b.offset : b.offset + b.size]
    else:
        return None
    return raw


def _data(buf: bytes, model, tensor, dtype) -> np.ndarray | None:
    raw = _i32(buf, model, tensor)
    if raw is None:
        return None
    shape = [int(s) for s in tensor.shape] if tensor.shape is not None else []
    return np.frombuffer(raw, dtype).reshape(shape).copy()


def _set_data(model, tensor, arr: np.ndarray) -> None:
    """Give `tensor` a fresh buffer holding `arr` (a buffer may be shared: never edit in place)."""
    from ai_edge_litert import schema_py_generated as S

    b = S.BufferT()
    b.data = np.frombuffer(np.ascontiguousarray(arr).tobytes(), np.uint8)
    model.buffers.append(b)
    tensor.buffer = len(model.buffers) - 1


def _quant(tensor, scale: float, zero_point: int = 0) -> None:
    from ai_edge_litert import schema_py_generated as S

    q = S.QuantizationParametersT()
    q.scale = [float(np.float32(scale))]
    q.zeroPoint = [int(zero_point)]
    q.quantizedDimension = 0
    tensor.quantization = q


def finalize(buf: bytes) -> tuple[bytes, int]:
    """Rewrite every aggregated-filter CONV_2D of an int8 flatbuffer (see the module docstring).

    Args:
        buf: The converter's flatbuffer.

    Returns:
        (the rewritten flatbuffer, how many convolutions were rewritten); the input unchanged
        when no conv has a computed filter.

    Raises:
        ExportError: a conv's filter is computed by something other than a layout chain over a
            constant-weight FULLY_CONNECTED (no runtime can run it exactly).
    """
    from ai_edge_litert import schema_py_generated as S

    model = S.ModelT.InitFromPackedBuf(buf, 0)
    g = model.subgraphs[0]
    names = {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}

    def opname(op) -> str:
        c = model.operatorCodes[op.opcodeIndex]
        return names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "?")

    def is_const(t: int) -> bool:
        return _i32(buf, model, g.tensors[t]) is not None

    for op in g.operators:  # writable index arrays (the unpacked ones are read-only views)
        op.inputs = np.array(op.inputs, np.int32)
        op.outputs = np.array(op.outputs, np.int32)
    producer = {int(o): op for op in g.operators for o in op.outputs}
    consumers: dict[int, int] = {}
    for op in g.operators:
        for i in op.inputs:
            consumers[int(i)] = consumers.get(int(i), 0) + 1
    drop: set[int] = set()  # ids of operators removed
    rewritten = 0
    for conv in list(g.operators):
        if opname(conv) != "CONV_2D" or is_const(int(conv.inputs[1])):
            continue
        chain, t = [], int(conv.inputs[1])
        while t in producer and opname(producer[t]) in _LAYOUT_OPS:
            chain.append(producer[t])
            t = int(producer[t].inputs[0])
        fc = producer.get(t)
        if fc is None or opname(fc) != "FULLY_CONNECTED" or not is_const(int(fc.inputs[1])) \
                or any(consumers.get(int(op.outputs[0]), 0) != 1 for op in chain) or consumers.get(t, 0) != 1:
            raise ExportError(f"CONV_2D filter tensor {int(conv.inputs[1])} is computed, but not by a "
                              "FULLY_CONNECTED over constant weights followed by reshapes/transposes only",
                              "the runtime runs computed conv filters only in the dyagg form")
        chain.reverse()  # FC output -> conv filter
        fw_t = g.tensors[int(fc.inputs[1])]
        w = _data(buf, model, fw_t, np.int8).astype(np.int64)  # (N, K)
        n = w.shape[0]
        # the element order the chain produces: push arange(N) through it
        idx = np.arange(n).reshape([int(s) for s in g.tensors[t].shape])
        for op in chain:
            out_shape = [int(s) for s in g.tensors[int(op.outputs[0])].shape]
            if opname(op) == "TRANSPOSE":
                perm = _data(buf, model, g.tensors[int(op.inputs[1])], np.int32)
                idx = np.transpose(idx, perm)
            idx = idx.reshape(out_shape)
        filt_t = g.tensors[int(conv.inputs[1])]
        filt_shape = [int(s) for s in filt_t.shape]
        order = idx.reshape(-1)
        if sorted(order.tolist()) != list(range(n)):
            raise ExportError(f"CONV_2D filter tensor {int(conv.inputs[1])}: the layout chain is not a permutation")
        # per-tensor FC weights at the largest row scale; the rows in the conv's order
        fq = fw_t.quantization
        row_scales = np.asarray(fq.scale, np.float64)
        if len(row_scales) == 1:
            row_scales = np.repeat(row_scales, n)
        s_w = float(np.float32(row_scales.max()))
        w_new = np.clip(np.round(w * (row_scales[:, None] / s_w)), -127, 127).astype(np.int8)[order]
        new_w = S.TensorT()
        new_w.shape = np.asarray(w_new.shape, np.int32)
        new_w.type = fw_t.type
        new_w.name = (fw_t.name or b"") + b"/dyagg"
        _quant(new_w, s_w)
        _set_data(model, new_w, w_new)
        g.tensors.append(new_w)
        fc.inputs[1] = len(g.tensors) - 1
        if len(fc.inputs) > 2 and fc.inputs[2] >= 0:  # an FC bias (none when the experts have none)
            bt = g.tensors[int(fc.inputs[2])]
            b = _data(buf, model, bt, np.int32)
            in_scale = float(g.tensors[int(fc.inputs[0])].quantization.scale[0])
            b_new = np.round(b.astype(np.float64) * np.asarray(bt.quantization.scale, np.float64)
                             / (in_scale * s_w)).astype(np.int32)[order]
            nb = S.TensorT()
            nb.shape, nb.type, nb.name = np.asarray([n], np.int32), bt.type, (bt.name or b"") + b"/dyagg"
            _quant(nb, np.float32(in_scale) * np.float32(s_w))
            _set_data(model, nb, b_new)
            g.tensors.append(nb)
            fc.inputs[2] = len(g.tensors) - 1
        # the filter: symmetric, per tensor, at s_w
        _quant(g.tensors[t], s_w)
        _quant(filt_t, s_w)
        # one RESHAPE FC output -> filter replaces the chain
        first = chain[0]
        if opname(first) != "RESHAPE":
            raise ExportError(f"CONV_2D filter tensor {int(conv.inputs[1])}: the layout chain does not start "
                              "with a RESHAPE")
        shape_t = S.TensorT()
        shape_t.shape, shape_t.type, shape_t.name = np.asarray([4], np.int32), S.TensorType.INT32, b"dyagg/shape"
        _set_data(model, shape_t, np.asarray(filt_shape, np.int32))
        g.tensors.append(shape_t)
        first.inputs = np.asarray([t, len(g.tensors) - 1], np.int32)
        first.outputs = np.asarray([int(conv.inputs[1])], np.int32)
        opts = S.ReshapeOptionsT()
        opts.newShape = np.asarray(filt_shape, np.int32)
        first.builtinOptionsType, first.builtinOptions = S.BuiltinOptions.ReshapeOptions, opts
        drop.update(id(op) for op in chain[1:])
        # the conv bias at input scale x new filter scale
        if len(conv.inputs) > 2 and conv.inputs[2] >= 0:
            bt = g.tensors[int(conv.inputs[2])]
            b = _data(buf, model, bt, np.int32).astype(np.float64)
            old = float(bt.quantization.scale[0])
            new = float(np.float32(g.tensors[int(conv.inputs[0])].quantization.scale[0]) * np.float32(s_w))
            nb = S.TensorT()
            nb.shape, nb.type, nb.name = bt.shape, bt.type, (bt.name or b"") + b"/dyagg"
            _quant(nb, new)
            _set_data(model, nb, np.round(b * old / new).astype(np.int32))
            g.tensors.append(nb)
            conv.inputs[2] = len(g.tensors) - 1
        rewritten += 1
    if not rewritten:
        return buf, 0
    g.operators = [op for op in g.operators if id(op) not in drop]
    _compact(model)
    import flatbuffers

    b = flatbuffers.Builder(len(buf) + 1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    log.debug("dyagg: rewrote %d aggregated-filter conv(s)", rewritten)
    return bytes(b.Output()), rewritten


def _compact(model) -> None:
    """Drop tensors no operator or graph edge uses, and buffers no tensor uses (renumbering)."""
    g = model.subgraphs[0]
    used = {int(i) for op in g.operators for i in list(op.inputs) + list(op.outputs) if i >= 0}
    used |= {int(i) for i in g.inputs} | {int(i) for i in g.outputs}
    keep = sorted(used)
    remap = {old: new for new, old in enumerate(keep)}
    g.tensors = [g.tensors[i] for i in keep]
    for op in g.operators:
        op.inputs = np.asarray([remap[int(i)] if i >= 0 else -1 for i in op.inputs], np.int32)
        op.outputs = np.asarray([remap[int(i)] for i in op.outputs], np.int32)
    g.inputs = np.asarray([remap[int(i)] for i in g.inputs], np.int32)
    g.outputs = np.asarray([remap[int(i)] for i in g.outputs], np.int32)
    for sig in model.signatureDefs or []:
        for tm in list(sig.inputs or []) + list(sig.outputs or []):
            tm.tensorIndex = remap[int(tm.tensorIndex)]
    meta = [m.buffer for m in model.metadata or []]
    bufs = sorted({0} | {t.buffer for t in g.tensors} | set(meta))
    bremap = {old: new for new, old in enumerate(bufs)}
    model.buffers = [model.buffers[i] for i in bufs]
    for t in g.tensors:
        t.buffer = bremap[t.buffer]
    for m in model.metadata or []:
        m.buffer = bremap[m.buffer]
