"""Generate the interpreter-free C model (`micronas_model.h/.c`) from an int8 `.tflite`.

Two steps. Planning (`plan.plan_model`): each op is lowered by its runtime op's emitter
(`registry.get_runtime_op`), which gives the op's params fields, constants and operands; constant
buffers are stored once per distinct content (so layers sharing a parent kernel share its bytes
in flash), activations live in one static arena laid out by `planner`. Rendering
(`render.render`): the C text from the template files, deterministic. The latency predictor
plans only; `generate` does both for the exporter, and `write` puts the model, the runtime and
the BENCH_OP dispatcher of the profiling firmware into a folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from micronas_base.files import atomic_write_bytes, atomic_write_text

from ..tflite_graph import Graph, Op, read
from . import planner
from .plan import CodeGen, ModelPlan, PlannedLayer, plan_model, schedule
from .registry import get_runtime_op, list_runtime_ops
from .render import RUNTIME_VERSION, render

RUNTIME_DIR = "runtime"


@dataclass
class Layer:
    """One emitted kernel call (views emit none)."""

    index: int  # op index in the flatbuffer
    op: str
    call: str
    macs: int = 0
    fields: dict = field(default_factory=dict)  # the kernel's params struct and cost extras


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


def plan(tflite: Path | bytes | Graph, fuse: bool = True) -> ModelPlan:
    """Plan the C model of a TFLite flatbuffer or graph without rendering any C.

    Args:
        tflite: Path or bytes of the int8 model (one int8 input, one int8 output), or a graph
            already read (the search-space lowering builds one without a flatbuffer).
        fuse: Fuse conv -> MUL -> ADD chains (codegen/fusion.py); False only to measure what
            fusion saves.

    Returns:
        The plan: layers with their params fields and MACs, arena and constant figures.

    Raises:
        ExportError: an op without an emitter, or a shape the runtime does not support.
    """
    if isinstance(tflite, Graph):
        return plan_model(tflite, fuse=fuse)
    buf = tflite if isinstance(tflite, bytes) else Path(tflite).read_bytes()
    return plan_model(read(buf), buf, fuse=fuse)


def generate(tflite: Path | bytes | Graph, labels: tuple[str, ...] | None, input_mean: tuple[float, ...] | None,
             input_std: tuple[float, ...] | None, source_name: str = "model_int8.tflite",
             fuse: bool = True, remove_window_mean: bool = False) -> Generated:
    """Generate the C model for a TFLite flatbuffer: `plan`, then render it.

    Args:
        tflite: Path or bytes of the int8 model (one int8 input, one int8 output), or a graph
            already read (the search-space lowering builds one without a flatbuffer).
        labels: Class names, in output order; None: not known (the header says so).
        input_mean: Per-channel mean used to standardise raw input (for the quantise helper);
            None (with `input_std`): not known (mean 0, std 1; the header says so).
        input_std: Per-channel std.
        source_name: The flatbuffer's file name, named in the provenance banner.
        fuse: Fuse conv -> MUL -> ADD chains (False: only to measure what fusion saves).
        remove_window_mean: The model was trained on windows whose per-channel mean was removed
            (the generated quantize_window removes it too).

    Returns:
        The header and source text and the measured figures.

    Raises:
        ExportError: an op without an emitter, or a shape the runtime does not support.
    """
    p = plan(tflite, fuse=fuse)
    header, source, calls = render(p, labels, input_mean, input_std, source_name, remove_window_mean)
    layers = [Layer(la.index, la.op, call, la.macs, la.key_fields) for la, call in zip(p.layers, calls)]
    return Generated(header, source, p.arena_bytes, p.arena_naive_bytes, p.flash_bytes_weights,
                     p.const_bytes_before_sharing, layers, p.arena, p.buffers, p.timeline)


def runtime_sources() -> list[Path]:
    """The runtime's C sources and headers (copied beside every generated model)."""
    root = resources.files("firmware_export") / RUNTIME_DIR
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith((".c", ".h")))


def write(gen: Generated, out_dir: Path) -> list[Path]:
    """Write micronas_model.h/.c and copy the runtime beside them, each by temp file + rename.

    The BENCH_OP dispatcher is not part of a model: the profiling firmware's build gets it from
    `bench.write_dispatcher`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "micronas_model.h", out_dir / "micronas_model.c"]
    atomic_write_text(written[0], gen.header)
    atomic_write_text(written[1], gen.source)
    for src in runtime_sources():
        dst = out_dir / src.name
        atomic_write_bytes(dst, src.read_bytes())
        written.append(dst)
    return written


__all__ = ["CodeGen", "Generated", "Layer", "ModelPlan", "Op", "PlannedLayer", "RUNTIME_VERSION", "generate",
           "get_runtime_op", "list_runtime_ops", "plan", "runtime_sources", "schedule", "write"]
