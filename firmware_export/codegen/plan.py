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
from . import fusion, planner
from .registry import RuntimeOp, get_runtime_op, list_runtime_ops, runtime_op_names

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
    def const(self, data: np.ndarray, shared: bool = True) -> ConstRef:
        """A constant array holding `data`; identical contents share one array unless `shared` is
        False (a table of kernel parameters, which counts as params do: once per layer)."""
        data = np.ascontiguousarray(data)
        ctype = CTYPES.get(data.dtype)
        if ctype is None:
            raise ExportError(f"constant of dtype {data.dtype} cannot be emitted")
        raw = data.tobytes()
        self.const_bytes_before_sharing += len(raw)
        key = (ctype, raw) if shared else (ctype, raw, len(self.consts))
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
    float_input: FloatEdge | None = None
    float_output: FloatEdge | None = None


@dataclass(frozen=True)
class FloatEdge:
    """A float32 model input (QUANTIZE) or output (DEQUANTIZE) that the generated float API does.

    Attributes:
        scale, zero_point: The int8 side's quantisation (the one TFLM's kernel reads).
        elems: Elements of the tensor.
    """

    scale: float
    zero_point: int
    elems: int


def split_float_edges(g: Graph) -> tuple[Graph, FloatEdge | None, FloatEdge | None]:
    """Take a float32 input's QUANTIZE and a float32 output's DEQUANTIZE out of the graph.

    A model converted with float input or output (TFLiteConverter without
    `inference_input_type=tf.int8`) starts with QUANTIZE float32 -> int8 and ends with DEQUANTIZE
    int8 -> float32; the int8 graph between them is what the kernels run, and the generated
    `micronas_invoke_float` does the two conversions as TFLM does.

    Returns:
        (the int8 graph, the input edge or None, the output edge or None).

    Raises:
        ExportError: a float32 input not read by exactly one QUANTIZE to int8, or a float32
            output not written by a DEQUANTIZE from int8.
    """
    tin, tout = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    ops, inputs, outputs = list(g.ops), list(g.inputs), list(g.outputs)
    fin = fout = None
    if tin.dtype == np.float32:
        readers = [op for op in ops if tin.index in op.inputs]
        q = readers[0] if len(readers) == 1 else None
        if q is None or q.name != "QUANTIZE" or g.tensors[q.outputs[0]].dtype != np.int8:
            raise ExportError(f"the model input {tin.name!r} is float32 and read by "
                              f"{', '.join(op.name for op in readers) or 'no op'}; the runtime takes a float32 "
                              "input only through one QUANTIZE to int8",
                              "convert with full-integer quantisation (inference_input_type=tf.int8), or keep the "
                              "converter's QUANTIZE at the input")
        ops.remove(q)
        inputs = [q.outputs[0]]
        qt = g.tensors[q.outputs[0]]
        fin = FloatEdge(qt.scale, qt.zero_point, int(np.prod(qt.shape, dtype=np.int64)))
    if tout.dtype == np.float32:
        writers = [op for op in ops if tout.index in op.outputs]
        d = writers[0] if len(writers) == 1 else None
        if d is None or d.name != "DEQUANTIZE" or g.tensors[d.inputs[0]].dtype != np.int8:
            raise ExportError(f"the model output {tout.name!r} is float32 and written by "
                              f"{', '.join(op.name for op in writers) or 'no op'}; the runtime gives a float32 "
                              "output only through a DEQUANTIZE from int8",
                              "convert with full-integer quantisation (inference_output_type=tf.int8)")
        if any(tout.index in op.inputs for op in ops):
            raise ExportError(f"the float32 model output {tout.name!r} is also read inside the model; the runtime "
                              "computes in int8 only")
        ops.remove(d)
        outputs = [d.inputs[0]]
        dt = g.tensors[d.inputs[0]]
        fout = FloatEdge(dt.scale, dt.zero_point, int(np.prod(dt.shape, dtype=np.int64)))
    if fin is None and fout is None:
        return g, None, None
    return Graph(g.tensors, ops, inputs, outputs), fin, fout


def unsupported_ops_message(names: list[str]) -> str | None:
    """One line naming every op of `names` (one entry per op in the model) the runtime lacks.

    Each with how often it occurs, custom ops (Flex ops included) marked, in order of first
    appearance: "UNIDIRECTIONAL_SEQUENCE_LSTM x1, FlexErf x2 (custom)". None when all are supported.
    """
    known = set(runtime_op_names())
    counts: dict[str, int] = {}
    for n in names:
        if n not in known:
            counts[n] = counts.get(n, 0) + 1
    if not counts:
        return None
    parts = []
    for n, k in counts.items():
        custom = n.startswith(("CUSTOM:", "Flex"))  # the graph reader's "CUSTOM:name", LiteRT's Flex names
        parts.append(f"{n.removeprefix('CUSTOM:')} x{k}{' (custom)' if custom else ''}")
    return ", ".join(parts)


def unsupported_ops_error(names: list[str], what: str = "the model") -> ExportError | None:
    """The one error for a model with ops the runtime does not run (None when it has none)."""
    listed = unsupported_ops_message(names)
    if listed is None:
        return None
    supported = ", ".join(op.name for op in list_runtime_ops())
    return ExportError(f"{what} contains ops the micronas runtime does not support: {listed}; supported: "
                       f"{supported}",
                       "re-convert the model without them (full-integer int8 with TFLITE_BUILTINS_INT8, no "
                       "SELECT_TF_OPS; an LSTM as Conv1D layers), or add the op to the runtime "
                       "(docs/adding-an-op.md)")


def emitters_for(g: Graph) -> dict[str, RuntimeOp]:
    """The runtime op of every op name in `g`.

    Raises:
        ExportError: ops without an emitter, each named once with its count, with the supported set.
    """
    err = unsupported_ops_error([op.name for op in g.ops])
    if err is not None:
        raise err
    return {n: get_runtime_op(n) for n in sorted({op.name for op in g.ops})}


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


def plan_model(g: Graph, tflite: bytes = b"", fuse: bool = True) -> ModelPlan:
    """Plan the C model of a graph: schedule, views, arena, constants and every kernel call.

    Args:
        g: The graph (one input, one output: int8, or float32 through QUANTIZE / DEQUANTIZE).
        tflite: The flatbuffer it was read from, if any (for the provenance banner).
        fuse: Replace conv -> MUL(attention) -> ADD chains by one fused kernel call each
            (`fusion.fuse`); False only to measure what fusion saves.

    Returns:
        The plan, with the arena and constant figures the generated C will have.

    Raises:
        ExportError: an op without an emitter, or a shape the runtime does not support.
    """
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise ExportError(f"the model has {len(g.inputs)} inputs and {len(g.outputs)} outputs; expected 1 and 1")
    emitters_for(g)  # every op has an emitter: unsupported ops are named before anything else
    g, float_input, float_output = split_float_edges(g)
    for t in (g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]):
        if t.dtype != np.int8:
            raise ExportError(f"model {t.name!r} tensor is {np.dtype(t.dtype).name}; expected int8 (or float32 "
                              "through QUANTIZE / DEQUANTIZE)")
    emitters = emitters_for(g)
    if fuse:  # conv -> MUL -> ADD chains: one kernel call each, none of their tensors in the arena
        g = fusion.fuse(g, lambda op: emitters[op.name].view)
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
                     arena.naive_bytes, cg.const_bytes, cg.const_bytes_before_sharing, timeline, float_input,
                     float_output)


__all__ = ["ArenaRef", "CodeGen", "Const", "ConstRef", "FloatEdge", "ModelPlan", "NULL", "PlannedLayer", "emitters_for",
           "plan_model", "schedule", "split_float_edges", "struct_bytes", "unsupported_ops_error",
           "unsupported_ops_message"]
