"""Fusion: a split-form DY-Conv's CONV_2D -> MUL(attention) -> ADD chain as one kernel call.

A split-form DY-Conv exports K expert CONV_2D of one input, each output MUL'd by its attention
value (a one-element STRIDED_SLICE of the softmax), summed by a chain of K - 1 ADD; KernelDNA
exports one CONV_2D MUL'd by a per-channel attention vector. Every output element of such a
chain depends only on the same element of each expert's convolution, so one kernel
(`FUSED_CONV_MUL_ADD`, firmware_export/runtime/mn_fused.c) computes the chain's output directly,
forming every intermediate int8 exactly as the unfused kernels do, without the convs', MULs' and
partial sums' tensors, and without the attention slices (it reads the softmax itself).

`fuse(g)` rewrites the graph before scheduling, so the arena plan, the kernel calls, the
latency-table keys and the flash figures of every later stage (export and the search's
predictor, which plans the lowered graph the same way) are those of the fused model.

Pattern (anything else is left as it is):
* each branch: CONV_2D (constant filter, int8) -> views -> MUL whose other operand, through
  views, is either one element (a STRIDED_SLICE of an attention tensor, or a one-element tensor)
  or one value per output channel; every tensor of the branch read by the next op only;
* K >= 2 branches summed by ADD ops, each adding one branch to the chain's running sum, every
  partial sum read by the next ADD only; K = 1: the MUL alone (KernelDNA);
* every conv reads the same tensor with the same geometry; every attention value comes from one
  tensor, the same per-channel or per-expert way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..tflite_graph import Graph, Op

FUSED_OP = "FUSED_CONV_MUL_ADD"


@dataclass(frozen=True)
class Branch:
    """One expert: its conv, its MUL, which MUL input is the conv's, and where its attention is."""

    conv: Op
    mul: Op
    conv_slot: int  # 0 or 1: the MUL input that carries the conv output
    att_tensor: int  # the tensor the attention value(s) are read from
    att_index: int  # element of att_tensor for channel 0
    att_stride: int  # 0: one value for every channel, 1: one per channel


@dataclass(frozen=True)
class Chain:
    """A fused chain, stored in the fused op's options["chain"].

    Attributes:
        branches: The experts in the order the kernel folds them in.
        adds: adds[i] folds branches[i + 1] into the running sum.
        prev_slot: prev_slot[i]: the input of adds[i] that carries the running sum.
    """

    branches: tuple[Branch, ...]
    adds: tuple[Op, ...]
    prev_slot: tuple[int, ...]


def _conv_signature(g: Graph, op: Op) -> tuple:
    w = g.tensors[op.inputs[1]]
    o = op.options
    return (w.shape, g.tensors[op.outputs[0]].shape, o.get("padding"), o.get("strideW"), o.get("strideH"),
            o.get("dilationWFactor"), o.get("dilationHFactor"))


def _slice_index(g: Graph, op: Op) -> int | None:
    """The flat input index of a one-element STRIDED_SLICE (None when it cannot be resolved)."""
    from micronas_base.errors import ExportError

    from .ops_shape import StridedSlice
    from .plan import CodeGen

    try:
        f = StridedSlice()._params(op, CodeGen(g))
    except ExportError:  # a slice the runtime refuses: left unfused, so that planning reports it
        return None
    return int(sum(b * s for b, s in zip(f["begin"], f["in_strides"])))


def fuse(g: Graph, is_view) -> Graph:
    """`g` with every conv -> MUL -> ADD chain of the pattern above replaced by one fused op.

    Args:
        g: The int8 graph.
        is_view: op -> whether it is a view (aliases its input, no kernel).

    Returns:
        The graph (the same object when nothing fuses). The fused op keeps the index of the op
        that writes the chain's output; the views and slices that only fed the chain are dropped.
    """
    producer = {t: op for op in g.ops for t in op.outputs}
    readers: dict[int, list[int]] = {}
    for op in g.ops:
        for t in set(op.inputs):
            if t >= 0:
                readers.setdefault(t, []).append(op.index)
    outputs = set(g.outputs)

    def only_reader(t: int, op: Op | None) -> bool:
        """`t` is read by `op` alone (None: the chain's end, read by anyone)."""
        return op is None or (t not in outputs and readers.get(t, []) == [op.index])

    def int8(*ts: int) -> bool:
        return all(g.tensors[t].dtype == np.int8 for t in ts)

    def through_views(t: int, reader: Op) -> tuple[int, list[Op], bool]:
        """(the tensor `t` views, the views, whether each tensor on the way has one reader)."""
        views, single = [], only_reader(t, reader)
        while (p := producer.get(t)) is not None and is_view(p):
            views.append(p)
            t = p.inputs[0]
            single = single and only_reader(t, p)
        return t, views, single

    def attention(t: int, mul: Op, out_ch: int) -> tuple[int, int, int, list[Op]] | None:
        """(tensor, index of channel 0, stride, ops absorbed) of the MUL's attention operand `t`."""
        src, views, single = through_views(t, mul)
        n = int(np.prod(g.tensors[t].shape, dtype=np.int64))
        if n == 1:
            p = producer.get(src)
            if p is not None and p.name == "STRIDED_SLICE" and int8(p.inputs[0]):
                index = _slice_index(g, p)
                if index is not None:  # read the sliced tensor itself; the slice goes if only we read it
                    return p.inputs[0], index, 0, [*views, p] if single else []
            return src, 0, 0, views if single else []
        # one value per output channel: [.., 1, O] against the MUL's [.., T, O]
        if n == out_ch and g.tensors[t].shape[-1] == out_ch and g.tensors[mul.outputs[0]].shape[-1] == out_ch:
            return src, 0, 1, views if single else []
        return None

    def branch_of(t: int, reader: Op | None) -> tuple[Branch, list[Op]] | None:
        """The branch whose MUL writes `t`, with the views and slice it absorbs."""
        mul = producer.get(t)
        if mul is None or mul.name != "MUL" or len(mul.inputs) != 2 or not only_reader(t, reader):
            return None
        for slot in (0, 1):
            conv_out, views, single = through_views(mul.inputs[slot], mul)
            conv = producer.get(conv_out)
            if not single or conv is None or conv.name != "CONV_2D" or len(conv.inputs) < 2:
                continue
            w = g.tensors[conv.inputs[1]]
            y = g.tensors[mul.outputs[0]]
            if not w.is_const or not int8(conv.inputs[0], conv_out, mul.inputs[1 - slot], mul.outputs[0]):
                continue
            conv_shape = g.tensors[conv_out].shape
            if conv_shape[-1] != w.shape[0] or y.shape[-1] != w.shape[0] or \
                    int(np.prod(conv_shape)) != int(np.prod(y.shape)):
                continue  # the MUL must not broadcast the conv output
            att = attention(mul.inputs[1 - slot], mul, w.shape[0])
            if att is None:
                continue
            tensor, index, stride, absorbed = att
            return Branch(conv, mul, slot, tensor, index, stride), [*views, *absorbed]
        return None

    def chain_of(t: int, reader: Op | None) -> tuple[list[Branch], list[Op], list[int], list[Op]] | None:
        """The chain whose value is `t`: branches, adds, running-sum slots, absorbed ops."""
        b = branch_of(t, reader)
        if b is not None:
            return [b[0]], [], [], b[1]
        add = producer.get(t)
        if add is None or add.name != "ADD" or len(add.inputs) != 2 or not only_reader(t, reader) or \
                not int8(add.outputs[0]):
            return None
        for prev in (0, 1):  # the running sum in one slot, a branch in the other
            new = branch_of(add.inputs[1 - prev], add)
            rest = chain_of(add.inputs[prev], add) if new is not None else None
            if rest is None:
                continue
            branches, adds, slots, absorbed = rest
            return [*branches, new[0]], [*adds, add], [*slots, prev], [*absorbed, *new[1]]
        return None

    fused: dict[int, Op] = {}  # index of the op writing the chain's output -> fused op
    removed: set[int] = set()
    for op in reversed(g.ops):  # topological order reversed: a chain is found from its last ADD
        if op.name not in ("ADD", "MUL") or op.index in removed:
            continue
        found = chain_of(op.outputs[0], None)
        if found is None:
            continue
        branches, adds, slots, absorbed = found
        first = branches[0]
        x, sig = first.conv.inputs[0], _conv_signature(g, first.conv)
        if any(b.conv.inputs[0] != x or _conv_signature(g, b.conv) != sig or b.att_tensor != first.att_tensor
               or b.att_stride != first.att_stride for b in branches):
            continue
        filters = [b.conv.inputs[1] for b in branches]
        biases = [b.conv.inputs[2] if len(b.conv.inputs) > 2 else -1 for b in branches]
        fused[op.index] = Op(op.index, FUSED_OP, [x, first.att_tensor, *filters, *biases], [op.outputs[0]],
                             {"chain": Chain(tuple(branches), tuple(adds), tuple(slots))})
        removed.update(o.index for b in branches for o in (b.conv, b.mul))
        removed.update(a.index for a in adds)
        removed.update(v.index for v in absorbed)
    if not fused:
        return g
    ops = [fused.get(op.index, op) for op in g.ops if op.index in fused or op.index not in removed]
    return Graph(g.tensors, ops, list(g.inputs), list(g.outputs))
