"""Generate the interpreter-free C model (`micronas_model.h/.c`) from an int8 `.tflite`.

Each op is lowered by the emitter its runtime-op registry entry names
(`search_space.registry.RUNTIME_OPS[...].emitter`): the emitter turns the op's tensors and options
into a static const params struct and one kernel call. Constant buffers are emitted once per
distinct content (so layers sharing a parent kernel share its bytes in flash), activations live
in one static arena laid out by `planner`, and the whole file is deterministic.
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template

import numpy as np

from micronas_base import __version__
from micronas_base.errors import ExportError
from search_space.registry import RUNTIME_OPS

from micronas_base.files import atomic_write_text
from ..tflite_graph import Graph, Op, Tensor, read
from . import planner

_CTYPES = {np.dtype(np.int8): "int8_t", np.dtype(np.int32): "int32_t", np.dtype(np.uint8): "uint8_t",
           np.dtype(np.int16): "int16_t"}
RUNTIME_DIR = "runtime"
RUNTIME_VERSION = "1"  # bump when kernel semantics or the params structs change


@dataclass
class Layer:
    """One emitted kernel call (views emit none)."""

    index: int  # op index in the flatbuffer
    op: str
    call: str
    macs: int = 0
    fields: dict = field(default_factory=dict)  # the kernel's params struct, as emitted


@dataclass
class Generated:
    """What the generator produced and measured."""

    header: str
    source: str
    arena_bytes: int  # planned peak
    arena_naive_bytes: int  # sum of all activation buffers
    flash_bytes_weights: int  # distinct constant bytes: weights, biases, multipliers, params
    const_bytes_before_sharing: int
    layers: list[Layer]
    plan: planner.Plan
    buffers: list[planner.Buffer] = field(default_factory=list)
    # per emitted kernel, in execution order: bytes of the buffers alive during it and the
    # highest arena byte they reach (the plan's peak is the largest "top")
    timeline: list[dict] = field(default_factory=list)


def emitter_for(name: str):
    """The emitter instance for a runtime op (via the registry; unknown names list the known)."""
    spec = RUNTIME_OPS.get(name)
    if not spec.emitter:
        raise ExportError(f"runtime op {name} has no C kernel emitter yet")
    module, cls = spec.emitter.split(":")
    return getattr(importlib.import_module(module), cls)()


class CodeGen:
    """State shared with the op emitters while one model is generated."""

    def __init__(self, graph: Graph):
        self.g = graph
        self._consts: dict[tuple[str, bytes], str] = {}
        self._const_defs: list[str] = []
        self._param_defs: list[str] = []
        self.const_bytes = 0
        self.const_bytes_before_sharing = 0
        self.alias: dict[int, int] = {}  # view tensor -> tensor that owns the buffer
        self.offsets: dict[int, int] = {}
        self.last_fields: dict = {}

    # -- tensors -----------------------------------------------------------------------
    def t(self, i: int) -> Tensor:
        return self.g.tensors[i]

    def owner(self, i: int) -> int:
        while i in self.alias:
            i = self.alias[i]
        return i

    def ptr(self, i: int) -> str:
        """C expression for tensor `i`'s data: its const array or its place in the arena."""
        t = self.t(i)
        if t.is_const:
            return self.const(t.data)
        return f"(mn_arena + {self.offsets[self.owner(i)]})"

    # -- constants ---------------------------------------------------------------------
    def const(self, data: np.ndarray, prefix: str = "mn_c") -> str:
        """Name of a static const array holding `data`; identical contents share one array."""
        data = np.ascontiguousarray(data)
        ctype = _CTYPES.get(data.dtype)
        if ctype is None:
            raise ExportError(f"constant of dtype {data.dtype} cannot be emitted")
        raw = data.tobytes()
        self.const_bytes_before_sharing += len(raw)
        key = (ctype, raw)
        if key not in self._consts:
            name = f"{prefix}{len(self._consts)}"
            self._consts[key] = name
            values = data.reshape(-1).tolist()
            per_line = 16 if ctype in ("int8_t", "uint8_t") else 6
            rows = [", ".join(str(int(v)) for v in values[i : i + per_line]) for i in range(0, len(values), per_line)]
            body = "\n    " + ",\n    ".join(rows) + ",\n"
            align = "MICRONAS_ALIGNAS16 " if ctype in ("int8_t", "uint8_t") else ""
            self._const_defs.append(f"static {align}const {ctype} {name}[{len(values)}] = {{{body}}};")
            self.const_bytes += len(raw)
        return self._consts[key]

    def params(self, ctype: str, fields: dict, cost_extra: dict | None = None) -> str:
        """Name of a static const params struct `ctype` initialised from `fields`.

        `fields`, with `cost_extra` (what else changes the kernel's cost but is not a struct
        field), is kept as `last_fields`: the latency tables key on it.
        """
        from .ops import c_struct

        body, nbytes = c_struct(fields)
        self.last_fields = {**fields, **(cost_extra or {})}
        name = f"mn_p{len(self._param_defs)}"
        self._param_defs.append(f"static const {ctype} {name} = {body};")
        self.const_bytes += nbytes
        self.const_bytes_before_sharing += nbytes
        return name

    def i32(self, values) -> str:
        return self.const(np.asarray(values, np.int32))


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
        is_view = lambda op: getattr(emitter_for(op.name), "view", False)  # noqa: E731
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


def _template(name: str) -> Template:
    return Template((resources.files("firmware_export") / "templates" / name).read_text())


def generate(tflite: Path | bytes | Graph, labels: tuple[str, ...], input_mean: tuple[float, ...],
             input_std: tuple[float, ...]) -> Generated:
    """Generate the C model for a TFLite flatbuffer.

    Args:
        tflite: Path or bytes of the int8 model (one int8 input, one int8 output), or a graph
            already read (the search-space lowering builds one without a flatbuffer).
        labels: Class names, in output order.
        input_mean: Per-channel mean used to standardise raw input (for the quantise helper).
        input_std: Per-channel std.

    Returns:
        The header and source text and the measured figures.

    Raises:
        ExportError: an op without an emitter, or a shape the runtime does not support.
    """
    from ..carrays import c_float, c_string

    if isinstance(tflite, Graph):
        g, buf = tflite, b""
    else:
        buf = tflite if isinstance(tflite, bytes) else Path(tflite).read_bytes()
        g = read(buf)
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise ExportError(f"the model has {len(g.inputs)} inputs and {len(g.outputs)} outputs; expected 1 and 1")
    tin, tout = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    for t in (tin, tout):
        if t.dtype != np.int8:
            raise ExportError(f"model {t.name!r} tensor is {t.dtype}; expected int8")
    cg = CodeGen(g)
    ops = schedule(g)
    emitters = [emitter_for(op.name) for op in ops]
    views: set[int] = set()
    for op, em in zip(ops, emitters):
        if getattr(em, "view", False):
            cg.alias[op.outputs[0]] = op.inputs[0]
            views.add(op.outputs[0])
    buffers = _activation_buffers(g, ops, views, cg)
    plan = planner.plan(buffers)
    planner.check(buffers, plan)
    cg.offsets = dict(plan.offsets)

    layers: list[Layer] = []
    for op, em in zip(ops, emitters):
        if getattr(em, "view", False):
            continue
        cg.last_fields = {}
        call = em.emit(op, cg)
        layers.append(Layer(op.index, op.name, call, int(em.macs(op, cg)) if hasattr(em, "macs") else 0,
                            dict(cg.last_fields)))

    digest = hashlib.sha256(buf).hexdigest()
    source_line = (f"From model_int8.tflite: {len(buf)} bytes, sha256 {digest}." if buf else
                   "From a graph lowered from the search space (synthetic weights, for measurement only).")
    banner = f"Generated by micronas {__version__} (runtime {RUNTIME_VERSION}); do not edit. {source_line}"
    in_shape = [d for d in tin.shape]
    body = []
    for k, layer in enumerate(layers):
        body.append(f"    MN_LAYER_BEGIN({k});")
        body.append(f"    {layer.call}")
        body.append(f"    MN_LAYER_END({k});")
    header = _template("micronas_model.h.tmpl").substitute(
        banner=banner,
        arena_bytes=plan.arena_bytes,
        input_bytes=tin.nbytes,
        output_bytes=tout.nbytes,
        input_shape=", ".join(map(str, in_shape)),
        input_length=in_shape[1] if len(in_shape) == 3 else in_shape[-2],
        input_channels=in_shape[-1],
        input_scale=c_float(tin.scale),
        input_zero_point=tin.zero_point,
        output_scale=c_float(tout.scale),
        output_zero_point=tout.zero_point,
        num_classes=len(labels),
        num_layers=len(layers),
    )
    source = _template("micronas_model.c.tmpl").substitute(
        banner=banner,
        consts="\n".join(cg._const_defs),
        params="\n".join(cg._param_defs),
        input_offset=cg.offsets[cg.owner(g.inputs[0])],
        output_offset=cg.offsets[cg.owner(g.outputs[0])],
        body="\n".join(body),
        layer_names="\n".join(f"    {c_string(f'{k}:{layer.op}')}," for k, layer in enumerate(layers)),
        labels="\n".join(f"    {c_string(label)}," for label in labels),
        mean=", ".join(c_float(v) + "f" for v in input_mean),
        std=", ".join(c_float(v) + "f" for v in input_std),
    )
    timeline = []
    for step, op in enumerate(ops):
        if getattr(emitters[step], "view", False):
            continue
        live = [b for b in buffers if b.first <= step <= b.last]
        timeline.append({"layer": len(timeline), "op": op.name, "live_bytes": sum(b.size for b in live),
                         "top_byte": max((plan.offsets[b.id] + b.size for b in live), default=0)})
    return Generated(header, source, plan.arena_bytes, plan.naive_bytes, cg.const_bytes,
                     cg.const_bytes_before_sharing, layers, plan, buffers, timeline)



def runtime_sources() -> list[Path]:
    """The runtime's C sources and headers (copied beside every generated model)."""
    root = resources.files("firmware_export") / RUNTIME_DIR
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith((".c", ".h")))


def write(gen: Generated, out_dir: Path) -> list[Path]:
    """Write micronas_model.h/.c and copy the runtime beside them (temp file + rename each)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "micronas_model.h", out_dir / "micronas_model.c"]
    atomic_write_text(written[0], gen.header)
    atomic_write_text(written[1], gen.source)
    for src in runtime_sources():
        dst = out_dir / src.name
        tmp = dst.with_name("." + dst.name + ".tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(dst)
        written.append(dst)
    return written


__all__ = ["Generated", "Layer", "CodeGen", "generate", "write", "runtime_sources", "Op"]
