"""The runtime-op registry: every int8 TFLite builtin the micronas C runtime executes.

A runtime op is one object, its emitter, which answers every downstream question: how the
exporter plans and renders its kernel call (params struct, constants, MACs), which params fields
key the latency tables (`cost_fields`), and how BENCH_OP times it (`kernel_id`, the field order
the device reads, representative values for the other fields, and the declarative `Bench`
description the firmware's dispatcher is generated from). Each emitter class registers itself
with `@runtime_op(...)` beside its definition, as timm's model registry does; `list_runtime_ops`
and `get_runtime_op` are the only way in. Nothing else in the tree branches on an op's name.

The registry lives in firmware_export, which owns every runtime op: the search space names the
ops it lowers to (`produced_by` is documentation only), the latency tables key on the cost
fields, the firmware build receives the generated dispatcher as files. The `ops*.py` modules of
this package are imported on first use, so a new emitter module registers itself by existing.

Imports numpy (through the emitters) but no torch or TensorFlow.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from micronas_base.errors import unknown_name_error

if TYPE_CHECKING:
    from ..tflite_graph import Op
    from .plan import CodeGen, PlannedLayer

# Field-check kinds of a BENCH_OP request: C conditions over one int32 value `{v}` (the limits are
# targets/firmware/bench.h's, so that no kernel indexes outside the tensors BENCH_OP allocates).
CHECK_KINDS: dict[str, str] = {
    "dim": "mn_bench_in({v}, 1, MN_BENCH_MAX_DIM)",  # a size
    "elems": "mn_bench_in({v}, 1, MN_BENCH_MAX_ELEMS)",  # a size counting several merged axes
    "index": "mn_bench_in({v}, 0, MN_BENCH_MAX_ELEMS)",  # strides, start indices
    "pad": "mn_bench_in({v}, 0, MN_BENCH_MAX_DIM)",
    "step": "({v} != 0 && mn_bench_in({v}, -MN_BENCH_MAX_DIM, MN_BENCH_MAX_DIM))",
    "offset": "mn_bench_in({v}, -MN_BENCH_MAX_OFFSET, MN_BENCH_MAX_OFFSET)",  # zero-point offsets
    "int8": "mn_bench_in({v}, -128, 127)",  # zero points, pad values
    "flag": "mn_bench_in({v}, 0, 1)",
    "nonneg": "{v} >= 0",  # multipliers, radii
    "shift": "mn_bench_in({v}, -31, 30)",  # a requantisation shift (mn_requantize)
    "right_shift": "mn_bench_in({v}, -31, 0)",
    "left_shift": "mn_bench_in({v}, 0, 31)",
}
ACT_OK = "mn_bench_act_ok(p->act_min, p->act_max)"  # act_min <= act_max, both int8


@dataclass(frozen=True)
class Check:
    """One rule BENCH_OP enforces before it allocates anything; broken: OUT_OF_RANGE, `message`.

    Attributes:
        message: The error detail (ASCII, says the rule).
        fields: (params field, kind of CHECK_KINDS) pairs; an array field is checked element-wise.
        exprs: Further C conditions that must hold, over `p` (the params struct), evaluated after
            the field terms and in order (so an expression may rely on the terms before it).
    """

    message: str
    fields: tuple[tuple[str, str], ...] = ()
    exprs: tuple[str, ...] = ()


def check(message: str, *exprs: str, **kinds: tuple[str, ...] | str) -> Check:
    """A `Check` from kind=fields keywords: `check("sizes 1..16384", dim=("in_len", "ch"))`."""
    fields = []
    for kind, names in kinds.items():
        if kind not in CHECK_KINDS:
            raise ValueError(f"check kind {kind!r} is unknown; known: {', '.join(CHECK_KINDS)}")
        fields += [(n, kind) for n in ((names,) if isinstance(names, str) else names)]
    return Check(message, tuple(fields), exprs)


@dataclass(frozen=True)
class BenchTensor:
    """A tensor BENCH_OP allocates in scratch memory for one call.

    Attributes:
        name: The C variable the call expression uses.
        ctype: "int8_t" or "int32_t".
        count: Elements, as a C expression over `p` (uint64_t arithmetic; the fields are checked).
        fill: "stream": the next bytes of the call's pseudo-random stream (inputs in order);
            "seeded": the stream from its seed again (every such tensor holds the same bytes);
            "": not filled (outputs); an int: every element that value (int32 constants);
            "helper:NAME": `NAME(p, tensor, count)`, a function of `Bench.helpers`, fills it
            before the timed window (values that depend on the fields, such as row sizes).
        output: Written by the kernel (passed as a non-const pointer).
        into: The params struct's pointer field that points at it ("" : passed to the call).
        when: A C condition over `p`; when false the tensor is not allocated and the call gets a
            null pointer (an optional operand such as a bias the model does not have).
    """

    name: str
    ctype: str
    count: str
    fill: str | int = ""
    output: bool = False
    into: str = ""
    when: str = ""


@dataclass(frozen=True)
class Bench:
    """How BENCH_OP runs an op: what the generated dispatcher (`bench.render_dispatcher`) does.

    Attributes:
        call: The kernel call, with `p` the params struct pointer and the tensors by name.
        tensors: Allocated in this order (the scratch layout, hence the data addresses, follow it).
        checks: Checked in this order.
        helpers: C helper functions (static) the checks or sizes use, for what a range per field
            cannot say (a slice's begin/step span, say).
    """

    call: str
    tensors: tuple[BenchTensor, ...]
    checks: tuple[Check, ...]
    helpers: str = ""


class RuntimeOp:
    """Base of every emitter: one runtime op, registered by `@runtime_op`.

    Class attributes set by the decorator: name, summary, produced_by, struct, function,
    kernel_id, cost_fields, param_fields (flat names, the order BENCH_OP reads them),
    param_paths (each field's C member path, `shape.out_dims` for a nested struct),
    vector_fields, bench. A view (RESHAPE) sets `view = True` and has no kernel; an edge
    (DEQUANTIZE) sets `edge = True`: it is done by the generated float API at the model's output,
    never as a kernel call.
    """

    name: str = ""
    summary: str = ""
    produced_by: tuple[str, ...] = ()
    struct: str = ""
    function: str = ""
    kernel_id: int | None = None
    cost_fields: tuple[str, ...] = ()
    param_fields: tuple[str, ...] = ()
    param_paths: tuple[str, ...] = ()
    vector_fields: frozenset[str] = frozenset()
    bench: Bench | None = None
    view: bool = False
    edge: bool = False

    def plan(self, op: Op, cg: CodeGen) -> PlannedLayer:
        """The layer's params fields, constants (stored in `cg`) and operands; no C text."""
        raise NotImplementedError

    def render(self, layer: PlannedLayer, params_name: str) -> str:
        """The C statement that runs a planned layer, its params struct being `params_name`."""
        args = ", ".join(str(a) for a in layer.args)
        return f"{self.function}(&{params_name}, {args});"

    def macs(self, op: Op, cg: CodeGen) -> int:
        """Multiply-accumulates of one call (0 for ops without any)."""
        return 0

    def bench_values(self, cost: Mapping[str, Any]) -> dict[str, Any]:
        """Representative values of every params field that is not a cost field, for BENCH_OP.

        Computed with the exporter's own fixed-point maths for quantisation parameters of the kind
        exported models have, chosen so the kernel takes the path real layers take where its cost
        depends on such a value (docs/latency-tables.md).

        Args:
            cost: The op's checked cost fields.
        """
        return {}


_REGISTRY: dict[str, RuntimeOp] = {}
_loaded = False
_load_lock = threading.RLock()


def runtime_op(name: str, *, summary: str, produced_by: tuple[str, ...] = (), struct: str = "",
               function: str = "", kernel_id: int | None = None, cost_fields: tuple[str, ...] = (),
               param_fields: tuple[str, ...] = (), vector_fields: tuple[str, ...] = (),
               bench: Bench | None = None):
    """Class decorator: register an emitter as the runtime op `name`.

    Args:
        name: The TFLite builtin name, exactly as the interpreter reports it.
        summary: What the op is used for in micronas models.
        produced_by: Search ops whose export emits it (documentation and lowering tests).
        struct: The params C struct type (micronas_runtime.h).
        function: The C kernel function.
        kernel_id: BENCH_OP kernel id (docs/protocol.md); None: not benchable (a view).
        cost_fields: The latency-key fields, in key order: the params fields that change the
            kernel's cost (plus any the emitter reports beside the struct, such as `relu`).
        param_fields: Every int32 params field in declaration order, pointers omitted; a field of
            a nested struct is written `member.field`.
        vector_fields: Fields that are int32_t[4] arrays.
        bench: How BENCH_OP allocates, checks and calls the kernel.

    Raises:
        ValueError: a name or kernel id registered twice, or cost fields out of place.
    """

    def register(cls: type[RuntimeOp]) -> type[RuntimeOp]:
        if name in _REGISTRY:
            raise ValueError(f"runtime op {name!r} registered twice")
        if kernel_id is not None and any(op.kernel_id == kernel_id for op in _REGISTRY.values()):
            raise ValueError(f"BENCH_OP kernel id {kernel_id} of {name} registered twice")
        flat = tuple(p.rsplit(".", 1)[-1] for p in param_fields)
        attrs = dict(name=name, summary=summary, produced_by=tuple(produced_by), struct=struct, function=function,
                     kernel_id=kernel_id, cost_fields=tuple(cost_fields), param_fields=flat,
                     param_paths=tuple(param_fields), vector_fields=frozenset(vector_fields), bench=bench)
        for key, value in attrs.items():
            setattr(cls, key, value)
        _REGISTRY[name] = cls()
        return cls

    return register


def _load() -> None:
    """Import every `ops*` module of this package once: their decorators fill the registry."""
    global _loaded
    if _loaded:
        return
    with _load_lock:  # threads (benchmarks/kernels.py builds firmware in a pool) must not see it half-filled
        if _loaded:
            return
        from . import __path__ as pkg_path

        for mod in sorted(m.name for m in pkgutil.iter_modules(pkg_path) if m.name.startswith("ops")):
            importlib.import_module(f"{__package__}.{mod}")
        _loaded = True


def list_runtime_ops() -> list[RuntimeOp]:
    """Every registered runtime op, in registration order (module by module)."""
    _load()
    return list(_REGISTRY.values())


def runtime_op_names() -> list[str]:
    """The names of every registered runtime op."""
    return [op.name for op in list_runtime_ops()]


def get_runtime_op(name: str) -> RuntimeOp:
    """The runtime op called `name`.

    Raises:
        ConfigError: `name` is not registered; the message lists the known names and the closest.
    """
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise unknown_name_error("runtime op", name, _REGISTRY) from None


def bench_ops() -> list[RuntimeOp]:
    """The ops BENCH_OP can time (every op but views), in kernel-id order."""
    return sorted((op for op in list_runtime_ops() if op.kernel_id is not None), key=lambda op: op.kernel_id)


__all__ = ["ACT_OK", "Bench", "BenchTensor", "CHECK_KINDS", "Check", "RuntimeOp", "bench_ops", "check",
           "get_runtime_op", "list_runtime_ops", "runtime_op", "runtime_op_names"]
