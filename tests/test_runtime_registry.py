"""The runtime-op registry (firmware_export/codegen/registry.py), parametrised over its entries:
every op answers every downstream question, and the BENCH_OP dispatcher generated from it
compiles cleanly for the host (the Cortex-M builds are test_firmware.py's)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from firmware_export.codegen import runtime_sources
from firmware_export.codegen.bench import bench_fields, render_dispatcher
from firmware_export.codegen.registry import (CHECK_KINDS, RuntimeOp, bench_ops, get_runtime_op, list_runtime_ops,
                                              runtime_op_names)
from micronas_base.errors import ConfigError
from targets.build import firmware_dir

from .conftest import toolchain

OPS = list_runtime_ops()
HEADER = next(p for p in runtime_sources() if p.name == "micronas_runtime.h").read_text()


def test_unknown_name_lists_known_and_closest():
    with pytest.raises(ConfigError) as e:
        get_runtime_op("CONV2D")
    assert e.value.hint == "did you mean 'CONV_2D'?"
    assert "CONV_2D" in e.value.message and "STRIDED_SLICE" in e.value.message


def test_names_and_kernel_ids_are_unique():
    assert len(set(runtime_op_names())) == len(OPS)
    ids = [op.kernel_id for op in bench_ops()]
    # 1..n, no gaps (1..12 as before the registry)
    assert ids == list(range(1, len(ids) + 1))
    assert {op.name: op.kernel_id for op in bench_ops() if op.kernel_id <= 12} == {
        "CONV_2D": 1, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 3, "MEAN": 4, "AVERAGE_POOL_2D": 5,
        "MAX_POOL_2D": 6, "ADD": 7, "MUL": 8, "SOFTMAX": 9, "LOGISTIC": 10, "PAD": 11, "STRIDED_SLICE": 12}


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_every_op_answers_every_question(op: RuntimeOp):
    assert op.summary and isinstance(op, RuntimeOp)
    assert get_runtime_op(op.name) is op
    if op.view or op.edge:  # RESHAPE, DEQUANTIZE: no kernel, no struct, nothing to time
        assert op.kernel_id is None and op.bench is None and not op.struct
        assert not (op.view and op.edge)
        return
    assert op.kernel_id is not None and op.bench is not None
    assert re.search(r"\} " + op.struct + ";", HEADER), f"{op.struct} is not in micronas_runtime.h"
    assert re.search(r"\b" + op.function + r"\(", HEADER), f"{op.function} is not declared in micronas_runtime.h"
    # the cost fields are params fields, but for a fused ReLU the exporter reports beside the struct
    assert set(op.cost_fields) - set(op.param_fields) <= {"relu"}
    assert len(set(op.param_fields)) == len(op.param_fields)
    assert op.vector_fields <= set(op.param_fields)
    for chk in op.bench.checks:
        assert chk.message and (chk.fields or chk.exprs)
        for name, kind in chk.fields:
            assert name in op.param_fields and kind in CHECK_KINDS, (name, kind)
    # every field the device reads is range-checked, by kind or by an expression naming it
    checked = {name for chk in op.bench.checks for name, _ in chk.fields} | {
        name for chk in op.bench.checks for name in op.param_fields
        if any(re.search(r"p->" + name + r"\b", e) for e in chk.exprs)}
    assert checked == set(op.param_fields) or op.bench.helpers, f"unchecked: {set(op.param_fields) - checked}"
    names = [t.name for t in op.bench.tensors]
    assert len(set(names)) == len(names)
    # the kernel, or a helper of the bench that calls it (CONCATENATION builds its input pointers)
    assert op.bench.call.startswith(op.function + "(p, ") or re.search(r"\b" + op.function + r"\(", op.bench.helpers)
    for t in op.bench.tensors:
        assert t.into or re.search(r"\b" + t.name + r"\b", op.bench.call), f"{t.name} is neither passed nor stored"


@pytest.mark.parametrize("op", bench_ops(), ids=lambda op: op.name)
def test_representative_values_fill_every_params_field(op: RuntimeOp):
    cost = {f: ((1, 1, 1, 4) if f in op.vector_fields else (0 if f == "relu" else 1)) for f in op.cost_fields}
    fields = bench_fields(op.name, cost)
    assert list(fields) == list(op.param_fields)


def test_the_dispatcher_is_deterministic_and_covers_every_kernel():
    src = render_dispatcher()
    assert src == render_dispatcher()
    for op in bench_ops():
        assert f"{{{op.kernel_id}, " in src and (f"{op.function}(p, " in src or f"{op.function}(&q, " in src)
    assert "switch" not in src  # one table, no dispatch on op names in C either


@pytest.mark.parametrize("flags", [["-O2"], ["-O0", "-DMICRONAS_NO_SIMD"]])
def test_dispatcher_and_glue_compile_cleanly_on_the_host(tmp_path: Path, flags):
    """The generated dispatcher and the firmware glue with -Wall -Wextra -Werror (host gcc; the
    Cortex-M builds, with the rest of the firmware, are test_firmware.py's and test_bench_ops.py's)."""
    gcc = toolchain("gcc")
    c = tmp_path / "c"
    c.mkdir()
    for src in runtime_sources():
        (c / src.name).write_bytes(src.read_bytes())
    (c / "micronas_bench.c").write_text(render_dispatcher())
    (c / "micronas_model.h").write_text(
        "#include <stdint.h>\n#define MICRONAS_ARENA_BYTES 64u\nint8_t *micronas_arena(void);\n")
    for src in (c / "micronas_bench.c", firmware_dir() / "bench.c"):
        subprocess.run([gcc, "-std=c99", *flags, "-Wall", "-Wextra", "-Werror", "-ffreestanding", "-I",
                        str(firmware_dir()), "-I", str(c), "-c", str(src), "-o", str(tmp_path / (src.stem + ".o"))],
                       check=True)
