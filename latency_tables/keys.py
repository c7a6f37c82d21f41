"""Latency-table keys: one string per runtime-op configuration, from one function.

A key is the op's TFLite name and every parameter that changes the kernel's cost, in the
order its runtime op's `cost_fields` lists them (firmware_export's registry; the same fields
BENCH_OP takes), e.g.

    CONV_2D(in_len=104,in_ch=16,out_len=50,out_ch=24,kernel=5,stride=2,dilation=1,pad_before=0,groups=1)
    MUL(out_dims=1x1x1x1200,in1_strides=0x0x0x1,in2_strides=0x0x0x0)

Values that do not change the cost (zero points, multipliers, activation clamps) are not part
of the key. `op_key` takes the params struct the code generator emits for a layer, so the
exporter, the lowering and the table builder all key through it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from firmware_export.codegen.registry import bench_ops
from micronas_base.errors import ConfigError

_KEY = re.compile(r"^([A-Z][A-Z0-9_]*)\((.*)\)$")


def _cost_fields() -> dict[str, tuple[str, ...]]:
    """Op name -> its cost fields, for every op BENCH_OP can time (views have no key)."""
    return {op.name: op.cost_fields for op in bench_ops()}


def _flat(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The params struct with nested structs (ADD/MUL's `shape`) merged in."""
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if isinstance(v, Mapping):
            out.update(_flat(v))
        else:
            out[k] = v
    return out


def cost_params(op: str, fields: Mapping[str, Any]) -> dict[str, int | tuple[int, ...]]:
    """The cost parameters of a layer from its emitted params struct.

    Raises:
        ConfigError: `op` has no BENCH_OP kernel, or `fields` lacks a cost parameter.
    """
    cost_fields = _cost_fields()
    names = cost_fields.get(op)
    if names is None:
        raise ConfigError(f"runtime op {op!r} has no latency-table key; known: {', '.join(sorted(cost_fields))}")
    flat = _flat(fields)
    missing = [n for n in names if n not in flat]
    if missing:
        raise ConfigError(f"{op} params lack the cost fields {missing}")
    return {n: tuple(int(x) for x in flat[n]) if isinstance(flat[n], (list, tuple)) else int(flat[n])
            for n in names}


def op_key(op: str, fields: Mapping[str, Any]) -> str:
    """The table key of a layer: `OP(name=value,...)`, tuples written `1x19x12x1`."""
    params = cost_params(op, fields)

    def text(v: int | tuple[int, ...]) -> str:
        return "x".join(map(str, v)) if isinstance(v, tuple) else str(v)

    return f"{op}(" + ",".join(f"{k}={text(v)}" for k, v in params.items()) + ")"


def parse_key(key: str) -> tuple[str, dict[str, int | tuple[int, ...]]]:
    """Inverse of `op_key`: (op, cost params).

    Raises:
        ConfigError: the text is not a key of a known op with exactly its cost fields.
    """
    m = _KEY.match(key)
    if not m:
        raise ConfigError(f"latency-table key {key!r} is not of the form OP(name=value,...)")
    op, body = m.groups()
    params: dict[str, int | tuple[int, ...]] = {}
    try:
        for item in body.split(",") if body else []:
            name, value = item.split("=")
            parts = value.split("x")
            params[name] = tuple(int(p) for p in parts) if len(parts) > 1 else int(value)
    except ValueError:
        raise ConfigError(f"latency-table key {key!r}: parameter {item!r} is not name=integer or "
                          "name=AxBxCxD") from None
    cost_fields = _cost_fields()
    names = cost_fields.get(op)
    if names is None or list(params) != list(names):
        raise ConfigError(f"latency-table key {key!r}: expected {op}({', '.join(names or ())}); "
                          f"known ops: {', '.join(sorted(cost_fields))}")
    return op, params
