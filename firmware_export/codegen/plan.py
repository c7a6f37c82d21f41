"""Planning: everything about a generated model except its C text.

`plan_model` schedules the ops, aliases views to their source buffers, lays out the activation
arena (`planner`), asks each op's emitter for its params fields, operands and MACs, and stores
every constant once per distinct content (weights shared by several layers count once). The
latency predictor stops here; `render` turns a plan into C.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from micronas_base.errors import ExportError

from ..tflite_graph import Graph, Op, Tensor
from . import planner
from .registry import RuntimeOp, get_runtime_op, runtime_op_names

CTYPES = {np.dtype(np.int8): "int8_t", np.dtype(np.int32): "int32_t", np.dtype(np.uint8): "uint8_t",
          np.dtype(np.int16): "int16_t"}


@dataclass(frozen=True)
class ConstRef:
    """A constant array of the plan (`str`: its C name)."""

    id: int
    prefix: str = "mn_c"

    def __str__(self) -> str:
        return f"{self.prefix}{self.id}"


@dataclass(frozen=True)
class ArenaRef:
    """An activation at a byte offset of the arena (`str`: its C address)."""

    offset: int

    def __str__(self) -> str:
        return f"(mn_arena + {self.offset})"


class _Null:
    def __str__(self) -> str:
        return "NULL"

    def __repr__(self) -> str:
        return "NULL"


NULL = _Null()  # an absent optional operand (a convolution without bias)


@dataclass(frozen=True)
class Const:
    """One distinct constant array: its C element type and values."""

    ctype: str
    data: np.ndarray = field(repr=False)


@dataclass
class PlannedLayer:
    """One kernel call, planned: what the emitter decided, before any C is written.

    Attributes:
        index: The op's index in the flatbuffer.
        op: Its runtime-op name.
        fields: The params struct (ints, lists for arrays, dicts for nested structs, ConstRef for
            pointers to constants).
        args: The kernel's operands after the params pointer (ArenaRef, ConstRef or NULL).
        cost_extra: What else changes the kernel's cost but is not a struct field (ADD/MUL's
            fused ReLU); the latency tables key on `fields` and these.
        macs: Multiply-accumulates of the call.
    """

    index: int
    op: str
    fields: dict
    args: list
    cost_extra: dict = field(default_factory=dict)
    macs: int = 0

    @property
    def key_fields(self) -> dict:
        """The params struct and the cost extras: what `latency_tables.keys.op_key` takes."""
        return {**self.fields, **self.cost_extra}


def struct_bytes(fields: dict) -> int:
    """Size of a params struct on a 32-bit core: 4 bytes a field (int32 or pointer)."""
    size = 0
    for v in fields.values():
        if isinstance(v, (list, tuple)):
            size += 4 * len(v)
        elif isinstance(v, dict):
            size += struct_bytes(v)
        else:
            size += 4
    return size


class CodeGen:
    """State shared with the op emitters while one model is planned."""

    def __init__(self, graph: Graph):
        self.g = graph
        self._const_ids: dict[tuple[str, bytes], int] = {}
        self.consts: list[Const] = []
        self.const_bytes = 0
        self.const_bytes_before_sharing = 0
        self.alias: dict[int, int] = {}  # view tensor -> tensor that owns the buffer
        self.offsets: dict[int, int] = {}

    # -- tensors -----------------------------------------------------------------------
    def t(self, i: int) -> Tensor:
        return self.g.tensors[i]

    def owner(self, i: int) -> int:
        while i in self.alias:
            i = self.alias[i]
        return i

    def ptr(self, i: int) -> ConstRef | ArenaRef:
        """Tensor `i`'s data: its constant array or its place in the arena."""
        t = self.t(i)
        if t.is_const:
            return self.const(t.data)
        return ArenaRef(self.offsets[self.owner(i)])

    # -- constants ---------------------------------------------------------------------
    def const(self, data: np.ndarray) -> ConstRef:
        """A constant array holding `data`; identical contents share one array."""
        data = np.ascontiguousarray(data)
        ctype = CTYPES.get(data.dtype)
        if ctype is None:
            raise ExportError(f"constant of dtype {data.dtype} cannot be emitted")
        raw = data.tobytes()
        self.const_bytes_before_sharing += len(raw)
        key = (ctype, raw)
        if key not in self._const_ids:
            self._const_ids[key] = len(self.consts)
            self.consts.append(Const(ctype, data))
            self.const_bytes += len(raw)
        return ConstRef(self._const_ids[key])

    def i32(self, values) -> ConstRef:
        return self.const(np.asarray(values, np.int32))

    def layer(self, op: Op, fields: dict, args: list, cost_extra: dict | None = None) -> PlannedLayer:
        """A planned kernel call; its params struct counts as constant bytes (never shared)."""
        nbytes = struct_bytes(fields)
        self.const_bytes += nbytes
        self.const_bytes_before_sharing += nbytes
        return PlannedLayer(op.index, op.name, fields, list(args), dict(cost_extra or {}))


@dataclass
class ModelPlan:
    """A model planned: schedule, arena, constants and every kernel call, no C text.

    Attributes:
        graph: The graph planned.
        tflite: The flatbuffer bytes (empty for a graph lowered from the search space).
        ops: Every op in execution order (views included).
        layers: The kernel calls in execution order (views emit none).
        consts: The distinct constant arrays, in first-use order (their C names are mn_c<i>).
        arena: The planner's placement of the activation buffers.
        buffers: Every activation buffer with its lifetime.
        offsets: Tensor (buffer owner) -> arena byte offset.
        input_offset, output_offset: Arena offsets of the model input and output.
        arena_bytes: Planned peak.
        arena_naive_bytes: Sum of all activation buffers.
        flash_bytes_weights: Distinct constant bytes: weights, biases, multipliers, params.
        const_bytes_before_sharing: The same without sharing identical arrays.
        timeline: Per kernel call, in execution order: bytes of the buffers alive during it and
            the highest arena byte they reach (the plan's peak is the largest "top").
    """

    graph: Graph
    tflite: bytes
    ops: list[Op]
    layers: list[PlannedLayer]
    consts: list[Const]
    arena: planner.Plan
    buffers: list[planner.Buffer]
    offsets: dict[int, int]
    input_offset: int
    output_offset: int
    arena_bytes: int
    arena_naive_bytes: int
    flash_bytes_weights: int
    const_bytes_before_sharing: int
    timeline: list[dict]


def emitters_for(g: Graph) -> dict[str, RuntimeOp]:
    """The runtime op of every op name in `g`.

    Raises:
        ExportError: ops without an emitter, all of them named once, with the supported set.
    """
    names = sorted({op.name for op in g.ops})
    known = set(runtime_op_names())
    missing = [n for n in names if n not in known]
    if missing:
        raise ExportError(f"the model contains ops the micronas runtime has no C kernel emitter for: "
                          f"{', '.join(missing)}; supported: {', '.join(sorted(known))}",
                          "change the architecture so it avoids these ops, or register an emitter for them "
                          "(docs/adding-an-op.md)")
    return {n: get_runtime_op(n) for n in names}


def _signature(g: Graph, op: Op) -> tuple:
    """What an op is, independent of tensor numbering: its name and every tensor's shape."""
    return (op.name, tuple(g.tensors[i].shape for i in op.inputs if i >= 0),
            tuple(g.tensors[i].shape for i in op.outputs))


def _topological(g: Graph) -> list[Op]:
    """Any topological order of the ops (Kahn's algorithm in flatbuffer order)."""
    produced = set(g.inputs) | {t.index for t in g.tensors if t.is_const}
    pending, order = list(g.ops), []
    while pending:
        ready = [op for op in pending if all(i < 0 or i in produced for i in op.inputs)]
        if not ready:
            raise ExportError(f"the graph has a cycle or an input no op produces ({len(pending)} ops left)")
        for op in ready:
            pending.remove(op)
            produced.update(op.outputs)
            order.append(op)
    return order


def schedule(g: Graph, is_view=None) -> list[Op]:
    """The order the generated code runs the ops in: a canonical, memory-aware topological order.

    Greedy: among the ops whose inputs are ready, run the one that adds the fewest bytes to the
    live activations (its output minus the inputs it is the last reader of; views add nothing),
    then the one reading the most recently produced tensor (depth first), then the one farthest
    from the output, then the smallest signature. Every criterion depends only on the graph's structure and shapes, not on how the
    converter numbered or ordered the ops, so a graph built from the search space's lowering
    schedules like the exported flatbuffer and gets the very same arena. It also keeps the
    arena small: a DY-Conv computes its attention first, then folds each expert into the sum
    before starting the next.

    Args:
        g: The graph.
        is_view: op -> whether it is a view (emits no code, aliases its input); default: asks
            the op's emitter in the runtime-op registry.
    """
    if is_view is None:
        emitters = emitters_for(g)
        is_view = lambda op: emitters[op.name].view  # noqa: E731
    views = {op.outputs[0]: op.inputs[0] for op in g.ops if is_view(op)}

    def owner(i: int) -> int:
        while i in views:
            i = views[i]
        return i

    readers: dict[int, int] = {}  # owner -> pending non-view ops reading it (or a view of it)
    for op in g.ops:
        if is_view(op):
            continue
        for i in {owner(i) for i in op.inputs if i >= 0 and not g.tensors[i].is_const}:
            readers[i] = readers.get(i, 0) + 1
    kept = {owner(i) for i in g.outputs}
    # height: the longest chain of ops from an op to the graph output. Among otherwise equal
    # ops it tells apart the experts of a DY-Conv by where their outputs join the sum.
    consumers: dict[int, list[Op]] = {}
    for op in g.ops:
        for i in op.inputs:
            if i >= 0:
                consumers.setdefault(i, []).append(op)
    height: dict[int, int] = {}
    for op in reversed(_topological(g)):
        height[op.index] = 1 + max((height[c.index] for i in op.outputs for c in consumers.get(i, [])), default=0)
    produced_at: dict[int, int] = {i: -1 for i in g.inputs}
    produced_at.update({t.index: -1 for t in g.tensors if t.is_const})
    pending = list(g.ops)
    order: list[Op] = []

    def cost(op: Op) -> tuple:
        recency = max((produced_at[i] for i in op.inputs if i >= 0), default=-1)
        if is_view(op):
            return (0, -recency, -height[op.index], repr(_signature(g, op)))
        freed = sum(g.tensors[o].nbytes for o in {owner(i) for i in op.inputs if i >= 0 and not g.tensors[i].is_const}
                    if readers.get(o) == 1 and o not in kept)
        added = sum(g.tensors[i].nbytes for i in op.outputs)
        return (added - freed, -recency, -height[op.index], repr(_signature(g, op)))

    while pending:
        ready = [op for op in pending if all(i < 0 or i in produced_at for i in op.inputs)]
        if not ready:
            raise ExportError(f"the graph has a cycle or an input no op produces ({len(pending)} ops left)")
        best = min(ready, key=cost)
        pending.remove(best)
        if not is_view(best):
            for o in {owner(i) for i in best.inputs if i >= 0 and not g.tensors[i].is_const}:
                readers[o] -= 1
        for i in best.outputs:
            produced_at[i] = len(order)
        order.append(best)
    return order


def _activation_buffers(g: Graph, ops: list[Op], views: set[int], cg: CodeGen) -> list[planner.Buffer]:
    n = len(ops)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i in g.inputs:
        first[i] = -1
    for step, op in enumerate(ops):
        for i in op.inputs:
            if i >= 0 and not g.tensors[i].is_const:
                o = cg.owner(i)
                last[o] = max(last.get(o, step), step)
        for i in op.outputs:
            o = cg.owner(i)
            first.setdefault(o, step)
            last.setdefault(o, step)
    for i in g.outputs:
        last[cg.owner(i)] = n
    owners = sorted(set(first))
    return [planner.Buffer(o, g.tensors[o].nbytes, first[o], last.get(o, first[o])) for o in owners if o not in views]


def plan_model(g: Graph, tflite: bytes = b"") -> ModelPlan:
    """Plan the C model of a graph: schedule, views, arena, constants and every kernel call.

    Args:
        g: The graph (one int8 input, one int8 output).
        tflite: The flatbuffer it was read from, if any (for the provenance banner).

    Returns:
        The plan, with the arena and constant figures the generated C will have.

    Raises:
        ExportError: an op without an emitter, or a shape the runtime does not support.
    """
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise ExportError(f"the model has {len(g.inputs)} inputs and {len(g.outputs)} outputs; expected 1 and 1")
    for t in (g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]):
        if t.dtype != np.int8:
            raise ExportError(f"model {t.name!r} tensor is {t.dtype}; expected int8")
    emitters = emitters_for(g)
    cg = CodeGen(g)
    ops = schedule(g)
    views: set[int] = set()
    for op in ops:
        if emitters[op.name].view:
            cg.alias[op.outputs[0]] = op.inputs[0]
            views.add(op.outputs[0])
    buffers = _activation_buffers(g, ops, views, cg)
    arena = planner.plan(buffers)
    planner.check(buffers, arena)
    cg.offsets = dict(arena.offsets)

    layers: list[PlannedLayer] = []
    timeline: list[dict] = []
    for step, op in enumerate(ops):
        em = emitters[op.name]
        if em.view:
            continue
        layer = em.plan(op, cg)
        layer.macs = int(em.macs(op, cg))
        layers.append(layer)
        live = [b for b in buffers if b.first <= step <= b.last]
        timeline.append({"layer": len(timeline), "op": op.name, "live_bytes": sum(b.size for b in live),
                         "top_byte": max((arena.offsets[b.id] + b.size for b in live), default=0)})
    return ModelPlan(g, tflite, ops, layers, cg.consts, arena, buffers, cg.offsets,
                     cg.offsets[cg.owner(g.inputs[0])], cg.offsets[cg.owner(g.outputs[0])], arena.arena_bytes,
                     arena.naive_bytes, cg.const_bytes, cg.const_bytes_before_sharing, timeline)


__all__ = ["ArenaRef", "CodeGen", "Const", "ConstRef", "ModelPlan", "NULL", "PlannedLayer", "emitters_for",
           "plan_model", "schedule", "struct_bytes"]
