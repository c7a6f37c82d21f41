"""BENCH_OP, the Python side and the C dispatcher, both from the runtime-op registry.

A latency table stores, for each runtime-op configuration, the instruction count BENCH_OP
measures (docs/protocol.md, "BENCH_OP kernels"). The key is the op's cost fields
(`RuntimeOp.cost_fields`); every other params field is filled by the op's `bench_values` with
one fixed, valid value of the kind the exporter produces for real models, computed with the
exporter's own fixed-point maths (docs/latency-tables.md says which and why).

    kernel, params = bench_request("ADD", {"out_dims": (1, 1, 1, 1200), "in1_strides": (0, 0, 0, 1),
                                           "in2_strides": (0, 0, 0, 1), "relu": 0})
    stats = client.bench_op(kernel, params, count=1)

`render_dispatcher` writes the firmware's per-op half of BENCH_OP (`micronas_bench.c`): for each
op, read the request's fields into its params struct, check them, allocate and fill its tensors
and time the call, all from the op's declarative `Bench` description. The firmware's own
`targets/firmware/bench.c` keeps what no op owns: timing, scratch memory, the fill stream,
the range checks and the protocol glue.
"""

from __future__ import annotations

import numbers
import struct
from collections.abc import Mapping
from pathlib import Path

from micronas_base import __version__
from micronas_base.errors import UsageError
from micronas_base.files import atomic_write_text

from .registry import CHECK_KINDS, RuntimeOp, bench_ops, list_runtime_ops
from .render import template

DISPATCHER_NAME = "micronas_bench.c"

_I32 = (-(1 << 31), (1 << 31) - 1)


def _bench_op(name: str) -> RuntimeOp:
    for op in list_runtime_ops():
        if op.name == name and op.kernel_id is not None:
            return op
    raise UsageError(f"op {name!r} has no BENCH_OP kernel; expected one of {', '.join(o.name for o in bench_ops())}")


def _int(op: str, name: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise UsageError(f"{op} cost field {name} = {v!r} ({type(v).__name__}); expected an int")
    v = int(v)
    if not _I32[0] <= v <= _I32[1]:
        raise UsageError(f"{op} cost field {name} = {v}; expected a value that fits int32")
    return v


def _check_cost(op: RuntimeOp, cost: Mapping[str, object]) -> dict[str, int | tuple[int, ...]]:
    want = op.cost_fields
    if not isinstance(cost, Mapping):
        raise UsageError(f"{op.name} cost parameters {cost!r}; expected a mapping of {', '.join(want)}")
    missing = [f for f in want if f not in cost]
    extra = sorted(str(f) for f in cost if f not in want)
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(extra)}"] if extra
                                                                           else [])
        raise UsageError(f"{op.name} cost parameters: {'; '.join(parts)}; expected exactly {', '.join(want)}")
    out: dict[str, int | tuple[int, ...]] = {}
    for name in want:
        v = cost[name]
        if name in op.vector_fields:
            if not isinstance(v, (tuple, list)) or len(v) != 4:
                raise UsageError(f"{op.name} cost field {name} = {v!r}; expected a 4-tuple of ints")
            out[name] = tuple(_int(op.name, f"{name}[{i}]", x) for i, x in enumerate(v))
        else:
            out[name] = _int(op.name, name, v)
    if out.get("relu", 0) not in (0, 1):  # a flag: any other value would be keyed apart but benched as 1
        raise UsageError(f"{op.name} cost field relu = {out['relu']}; expected 0 or 1 (a fused ReLU)")
    return out


def bench_fields(op: str, cost: Mapping[str, int | tuple[int, ...]]) -> dict[str, int | tuple[int, ...]]:
    """Every params field of `op`'s kernel (its `param_fields` order): `cost` plus the fixed values.

    Args:
        op: TFLite builtin name of a runtime op with a BENCH_OP kernel.
        cost: Exactly the op's cost fields: ints, and 4-tuples of ints for array fields.

    Raises:
        UsageError: an unknown op, missing or extra cost fields, or a value of the wrong type.
    """
    spec = _bench_op(op)
    checked = _check_cost(spec, cost)
    fields = {**spec.bench_values(checked), **checked}
    return {name: fields[name] for name in spec.param_fields}


def bench_request(op: str, cost: Mapping[str, int | tuple[int, ...]]) -> tuple[int, bytes]:
    """(kernel id, params bytes) of the BENCH_OP request that times `op` for these cost parameters.

    Args:
        op: TFLite builtin name of a runtime op with a BENCH_OP kernel.
        cost: Exactly the op's cost fields: ints, and 4-tuples of ints for array fields.

    Returns:
        The arguments of `DeviceClient.bench_op(kernel, params, count)`: the params fields as
        little-endian i32 in declaration order.

    Raises:
        UsageError: an unknown op, missing or extra cost fields, or a value of the wrong type.
    """
    values: list[int] = []
    for v in bench_fields(op, cost).values():
        values.extend(v if isinstance(v, tuple) else (v,))
    return _bench_op(op).kernel_id, struct.pack(f"<{len(values)}i", *values)


# ---- the C dispatcher -----------------------------------------------------------------------------

def _c_name(op: RuntimeOp) -> str:
    return op.name.lower()


def _n_values(op: RuntimeOp) -> int:
    return sum(4 if f in op.vector_fields else 1 for f in op.param_fields)


def _c_string(text: str) -> str:
    if not text.isascii() or '"' in text or "\\" in text:
        raise ValueError(f"BENCH_OP message {text!r} must be plain ASCII without quotes or backslashes")
    return f'"{text}"'


def _render_op(op: RuntimeOp) -> str:
    """The job struct, the timed runner and the request handler of one op."""
    b, c = op.bench, _c_name(op)
    if b is None:
        raise ValueError(f"runtime op {op.name} has BENCH_OP kernel {op.kernel_id} but no Bench description")
    lines = [f"/* ---- {op.kernel_id}: {op.name}, {op.function} ({_n_values(op)} x i32) {'-' * 40} */", ""]
    if b.helpers:
        lines += [b.helpers.rstrip("\n"), ""]
    lines += ["typedef struct {", f"    {op.struct} p;"]
    lines += [f"    {t.ctype} *{t.name};" for t in b.tensors]
    lines += [f"}} {c}_job;", ""]
    # the runner: the job's pointers into locals before the timed window, so inside it the
    # arguments are register moves, as a generated model's constant addresses are
    lines += [f"static void {c}_run(const void *arg) {{", f"    const {c}_job *j = arg;",
              f"    const {op.struct} *p = &j->p;"]
    lines += [f"    {'' if t.output else 'const '}{t.ctype} *{t.name} = j->{t.name};" for t in b.tensors if not t.into]
    lines += [f"    MN_BENCH_LAYER({b.call});", "}", ""]
    lines += [f"static int {c}_bench(const uint8_t *f, uint16_t count, mn_stats *st) {{", f"    {c}_job j;",
              f"    {op.struct} *p = &j.p;"]
    i = 0
    for name, path in zip(op.param_fields, op.param_paths):
        for k in range(4) if name in op.vector_fields else (None,):
            lines.append(f"    p->{path}{'' if k is None else f'[{k}]'} = mn_bench_field(f, {i});")
            i += 1
    paths = dict(zip(op.param_fields, op.param_paths))
    for chk in b.checks:
        terms = []
        for name, kind in chk.fields:
            lvalues = [f"p->{paths[name]}[{k}]" for k in range(4)] if name in op.vector_fields else [f"p->{paths[name]}"]
            terms += [CHECK_KINDS[kind].format(v=v) for v in lvalues]
        terms += [f"({e})" for e in chk.exprs]
        cond = " &&\n          ".join(terms)
        lines += [f"    if (!({cond}))", f"        MN_BENCH_FAIL({_c_string(chk.message)});"]
    lines.append("    mn_bench_reset();")
    lines += [f"    const uint64_t n_{t.name} = {t.count};" for t in b.tensors]
    lines += [f"    j.{t.name} = {f'!({t.when}) ? 0 : ' if t.when else ''}mn_bench_take(n_{t.name}, sizeof *j.{t.name});"
              for t in b.tensors]
    missing = [f"(({t.when}) && !j.{t.name})" if t.when else f"!j.{t.name}" for t in b.tensors]
    lines += [f"    if ({' || '.join(missing)}) MN_BENCH_FAIL(MN_BENCH_NO_ROOM);"]
    if any(t.fill == "stream" for t in b.tensors):
        lines.append("    uint32_t stream = MN_BENCH_SEED;")
    for t in b.tensors:
        guard = f"if (j.{t.name}) " if t.when else ""
        if t.fill == "stream":
            lines.append(f"    {guard}mn_bench_fill(j.{t.name}, n_{t.name}, &stream);")
        elif t.fill == "seeded":
            lines.append(f"    {guard}mn_bench_fill_seeded(j.{t.name}, n_{t.name});")
        elif isinstance(t.fill, int) and not isinstance(t.fill, bool):
            lines.append(f"    {guard}mn_bench_set_i32(j.{t.name}, n_{t.name}, {t.fill});")
        elif isinstance(t.fill, str) and t.fill.startswith("helper:"):
            lines.append(f"    {guard}{t.fill.split(':', 1)[1]}(p, j.{t.name}, n_{t.name});")
        elif t.fill != "":
            raise ValueError(f"{op.name} tensor {t.name}: fill {t.fill!r} is not 'stream', 'seeded', '', an int "
                             "or 'helper:NAME'")
    lines += [f"    p->{t.into} = j.{t.name};" for t in b.tensors if t.into]
    lines += [f"    return mn_time_calls({c}_run, &j, count, st);", "}", ""]
    return "\n".join(lines)


def render_dispatcher() -> str:
    """The BENCH_OP dispatcher C (`micronas_bench.c`) for every op of the registry.

    Deterministic: depends on the registry only. Compiled into the profiling firmware with
    `targets/firmware/bench.h` and the runtime's `micronas_runtime.h` on the include path.
    """
    ops = bench_ops()
    table = [f"    {{{op.kernel_id}, {_n_values(op)}, {_c_string(f'{op.name} params: {_n_values(op)} x i32')}, "
             f"{_c_name(op)}_bench}}," for op in ops]
    ids = f"{ops[0].kernel_id}..{ops[-1].kernel_id}" if ops else "none"
    unsupported = f"kernel not in this firmware ({ids}: {', '.join(op.name for op in ops)})"
    return template("micronas_bench.c.tmpl").substitute(
        banner=f"Generated by micronas {__version__} from the runtime-op registry; do not edit.",
        ops="\n".join(_render_op(op) for op in ops),
        table="\n".join(table),
        unsupported=_c_string(unsupported),
    )


def write_dispatcher(out_dir: Path) -> Path:
    """Write `micronas_bench.c` (temp file + rename) into `out_dir` for a profiling firmware build.

    Returns:
        Its path, for `targets.build.build_firmware(..., bench_c=)`.
    """
    path = Path(out_dir) / DISPATCHER_NAME
    atomic_write_text(path, render_dispatcher())
    return path


__all__ = ["DISPATCHER_NAME", "bench_fields", "bench_request", "render_dispatcher", "write_dispatcher"]
