"""Checks built into export: op list, interpreters, agreement, the TFLM arena.

Two interpreters read the same int8 flatbuffer:

* ai-edge-litert with `BUILTIN_WITHOUT_DEFAULT_DELEGATES` (TFLite's optimised builtin kernels,
  no XNNPACK) — the golden TFLite reference;
* tflite-micro's host interpreter (TFLM's reference int8 kernels, the semantics CMSIS-NN keeps
  and the micronas C runtime must match bit for bit).

Their outputs may differ by one LSB (the optimised kernels round some products differently);
`compare_interpreters` reports the exact-match rate and the largest difference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from micronas_base.errors import ExportError
from .codegen.plan import unsupported_ops_error

from ._fdcapture import capture_fds

# Headroom for measuring; the arena is then measured exactly and reported.
_MEASURE_ARENA_BYTES = 16 * 1024 * 1024
_ARENA_TOTAL_RE = re.compile(r"Arena allocation total (\d+) bytes")


@dataclass(frozen=True)
class QuantParams:
    """Scale and zero point of an int8 tensor, with its shape."""

    scale: float
    zero_point: int
    shape: tuple[int, ...]

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """float -> int8 as TFLite's reference QUANTIZE: float32 divide, round half away from zero."""
        v = x.astype(np.float32) / np.float32(self.scale)
        q = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))
        return np.clip(q + self.zero_point, -128, 127).astype(np.int8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - self.zero_point) * np.float32(self.scale)


def _litert(path: Path, preserve_all_tensors: bool = False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path), experimental_preserve_all_tensors=preserve_all_tensors,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return it


def io_params(path: Path) -> tuple[QuantParams, QuantParams]:
    """Input and output quantisation parameters of a single-input, single-output int8 model.

    Raises:
        ExportError: the model does not have exactly one int8 input and one int8 output.
    """
    it = _litert(path)
    ins, outs = it.get_input_details(), it.get_output_details()
    if len(ins) != 1 or len(outs) != 1:
        raise ExportError(f"{path}: expected one input and one output, got {len(ins)} and {len(outs)}")
    params = []
    for d in (ins[0], outs[0]):
        if d["dtype"] != np.int8:
            raise ExportError(f"{path}: tensor {d['name']!r} is {np.dtype(d['dtype']).name}; expected int8")
        scale, zp = d["quantization"]
        params.append(QuantParams(float(scale), int(zp), tuple(int(s) for s in d["shape"])))
    return params[0], params[1]


def list_ops(path: Path) -> list[str]:
    """The ordered list of op names in the flatbuffer's (single) subgraph."""
    return [op["op_name"] for op in _litert(path)._get_ops_details()]


def check_ops(ops: list[str], path: Path) -> None:
    """Every op must be a registered runtime op (one the C runtime executes).

    Raises:
        ExportError: naming each unexpected op (a Flex op, say) with its count, and the supported set.
    """
    err = unsupported_ops_error(ops, path.name)
    if err is not None:
        raise err


def run_litert(path: Path, x_int8: np.ndarray) -> np.ndarray:
    """Run every window (N, *input_shape[1:]) through LiteRT; returns (N, output elements) int8."""
    it = _litert(path)
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    out = []
    for x in x_int8:
        it.set_tensor(i, x[None])
        it.invoke()
        out.append(it.get_tensor(o).reshape(-1).copy())
    return np.stack(out)


def run_tflm(flatbuffer: bytes, x_int8: np.ndarray, arena_bytes: int = _MEASURE_ARENA_BYTES) -> np.ndarray:
    """Run every window through the tflite-micro host interpreter; returns (N, output elements) int8."""
    from tflite_micro import runtime

    with capture_fds(fds=(2,)):
        it = runtime.Interpreter.from_bytes(flatbuffer, arena_size=arena_bytes)
    out = []
    for x in x_int8:
        it.set_input(x[None], 0)
        it.invoke()
        out.append(np.array(it.get_output(0)).reshape(-1).copy())
    return np.stack(out)


def tflm_recorded_arena_bytes(flatbuffer: bytes, x_int8: np.ndarray) -> int:
    """The arena total TFLM's RecordingMicroAllocator reports after one invoke.

    This is the final head + tail. It leaves out the temporary scratch the memory planner
    needs during AllocateTensors, so a model can need more than this (seen: 9,752 B needed,
    7,248 B recorded). `tflm_arena_bytes` measures what is actually needed.

    Raises:
        ExportError: the interpreter did not report its allocation.
    """
    from tflite_micro import runtime

    with capture_fds(fds=(2,)) as captured:
        it = runtime.Interpreter.from_bytes(flatbuffer, arena_size=_MEASURE_ARENA_BYTES)
        it.set_input(x_int8[:1], 0)
        it.invoke()
        it.print_allocations()
    m = _ARENA_TOTAL_RE.search(captured[0])
    if not m:
        raise ExportError("tflite-micro did not report its arena allocation",
                          f"its output was: {captured[0][:300]!r}")
    return int(m.group(1))


def tflm_arena_bytes(flatbuffer: bytes, x_int8: np.ndarray, recorded: int | None = None) -> int:
    """The smallest arena with which TFLM constructs the interpreter and invokes, to the byte.

    Bisection between the allocator's recorded total (a lower bound) and the first doubling of
    it that works; about 15 interpreter constructions. Measured by the 64-bit host build, whose
    persistent structs are larger than a Cortex-M's: an upper bound for the device.

    Args:
        flatbuffer: The int8 model.
        x_int8: At least one input window.
        recorded: `tflm_recorded_arena_bytes` of this model, when the caller already has it.

    Raises:
        ExportError: the model does not run even with the measuring headroom.
    """
    lo = recorded if recorded is not None else tflm_recorded_arena_bytes(flatbuffer, x_int8)
    if tflm_fits(flatbuffer, x_int8, lo):
        return lo
    hi = lo
    while not tflm_fits(flatbuffer, x_int8, hi):  # invariant: lo does not fit
        lo, hi = hi, hi * 2
        if hi > _MEASURE_ARENA_BYTES:
            raise ExportError(f"TFLite Micro does not run this model even with a {_MEASURE_ARENA_BYTES:,}-byte arena")
    while hi - lo > 1:  # lo fails, hi fits
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if tflm_fits(flatbuffer, x_int8, mid) else (mid, hi)
    return hi


def tflm_fits(flatbuffer: bytes, x_int8: np.ndarray, arena_bytes: int) -> bool:
    """True when TFLM constructs and invokes with exactly `arena_bytes` of arena."""
    from tflite_micro import runtime

    with capture_fds(fds=(2,)):
        try:
            it = runtime.Interpreter.from_bytes(flatbuffer, arena_size=arena_bytes)
            it.set_input(x_int8[:1], 0)
            it.invoke()
            return True
        except RuntimeError:
            return False


@dataclass(frozen=True)
class Agreement:
    """How two int8 interpreters agree over a set of windows."""

    windows: int
    exact_rate: float  # fraction of windows whose whole output vector is identical
    max_lsb_diff: int

    def to_json(self) -> dict:
        return {"windows": self.windows, "exact_match_rate": self.exact_rate, "max_lsb_diff": self.max_lsb_diff}


def compare(a: np.ndarray, b: np.ndarray) -> Agreement:
    """Compare two (N, ...) int8 output arrays window by window."""
    diff = np.abs(a.astype(np.int32) - b.astype(np.int32)).reshape(len(a), -1)
    return Agreement(len(a), float(np.mean(diff.max(axis=1) == 0)), int(diff.max(initial=0)))



@dataclass(frozen=True)
class OpDivergence:
    """One op's output, LiteRT against TFLite Micro, over a set of windows."""

    position: int  # in execution order
    op: str  # builtin name, e.g. FULLY_CONNECTED
    tensor: int  # its output tensor's index in the flatbuffer
    max_lsb: int
    fraction: float  # of the output values that differ

    def to_json(self) -> dict:
        return {"position": self.position, "op": self.op, "tensor": self.tensor, "max_lsb": self.max_lsb,
                "fraction": self.fraction}


def divergence_rows(ops: list[tuple[str, int]], a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> list[OpDivergence]:
    """Per op (name, output tensor) in execution order, how far `a`'s values of its output are
    from `b`'s (each (windows, ...) int8). An op whose output one side does not hold in full
    (TFLM lends a RESHAPE's output its input's buffer) is left out."""
    rows = []
    for k, (name, t) in enumerate(ops):
        if t not in a or t not in b or a[t].size != b[t].size:
            continue
        d = np.abs(a[t].astype(np.int32).ravel() - b[t].astype(np.int32).ravel())
        rows.append(OpDivergence(k, name, t, int(d.max(initial=0)), float(np.mean(d > 0)) if d.size else 0.0))
    return rows


def op_divergence(path: Path, x_int8: np.ndarray) -> list[OpDivergence]:
    """Where LiteRT and TFLite Micro part: every op's output from both interpreters, all tensors
    preserved, over the windows `x_int8` (N, *input_shape[1:]). A diagnostic for a disagreement
    at the output: the first row with `max_lsb > 0` is where it starts."""
    from tflite_micro import runtime

    lite = _litert(path, preserve_all_tensors=True)
    ops = [(o["op_name"], int(o["outputs"][0])) for o in lite._get_ops_details() if len(o["outputs"])]
    with capture_fds(fds=(2,)):
        micro = runtime.Interpreter.from_bytes(path.read_bytes(), arena_size=_MEASURE_ARENA_BYTES,
                                               intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    i = lite.get_input_details()[0]["index"]
    a: dict[int, list[np.ndarray]] = {t: [] for _, t in ops}
    b: dict[int, list[np.ndarray]] = {t: [] for _, t in ops}
    for x in x_int8:
        lite.set_tensor(i, x[None])
        lite.invoke()
        micro.set_input(x[None], 0)
        micro.invoke()
        for _, t in ops:
            a[t].append(np.array(lite.get_tensor(t)).ravel())
            b[t].append(np.array(micro.GetTensor(t, 0)["tensor_data"]).ravel())
    return divergence_rows(ops, {t: np.stack(v) for t, v in a.items()}, {t: np.stack(v) for t, v in b.items()})


@dataclass(frozen=True)
class Intermediates:
    """Every op's output over a batch of windows, from LiteRT with all tensors preserved.

    `ops[k]` is (op name, input tensor indices, output tensor indices) in execution order;
    `values[t]` the (N, *shape) int8 values of tensor t; `quant[t]` its (scale, zero point);
    `cuts` the positions k after which op k's single output is the only live tensor (every path
    from the input to the output passes through it), -1 standing for the graph input.
    """

    ops: list[tuple[str, tuple[int, ...], tuple[int, ...]]]
    values: dict[int, np.ndarray]
    quant: dict[int, tuple[float, int]]
    input_index: int
    output_index: int
    cuts: list[int]

    def tensor_at(self, position: int) -> int:
        """The tensor a cut position stands for."""
        return self.input_index if position < 0 else self.ops[position][2][0]

    def dequantized(self, tensor: int) -> np.ndarray:
        scale, zp = self.quant[tensor]
        return (self.values[tensor].astype(np.float64) - zp) * scale


def run_litert_intermediates(path: Path, x_int8: np.ndarray) -> Intermediates:
    """Run windows through LiteRT keeping every intermediate tensor (a diagnostic: LiteRT's int8
    kernels agree with TFLite Micro's within a few LSB, see `metrics.json` `litert_vs_tflm`)."""
    it = _litert(path, preserve_all_tensors=True)
    details = {t["index"]: t for t in it.get_tensor_details()}
    ops = [(o["op_name"], tuple(int(i) for i in o["inputs"] if i >= 0), tuple(int(i) for i in o["outputs"]))
           for o in it._get_ops_details()]
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    produced = [t for _, _, outs in ops for t in outs]
    values: dict[int, list[np.ndarray]] = {t: [] for t in produced}
    for x in x_int8:
        it.set_tensor(i, x[None])
        it.invoke()
        for t in produced:
            values[t].append(it.get_tensor(t)[0].copy())
    quant = {t: (float(details[t]["quantization"][0]), int(details[t]["quantization"][1])) for t in (i, *produced)}
    producer = {i: -1} | {t: k for k, (_, _, outs) in enumerate(ops) for t in outs}
    last_use = dict(producer)
    for k, (_, ins, _) in enumerate(ops):
        for t in ins:
            if t in producer:
                last_use[t] = k
    last_use[o] = len(ops)
    cuts = [-1]
    for k, (_, _, outs) in enumerate(ops):
        live = [t for t, p in producer.items() if p <= k < last_use[t]]
        if len(outs) == 1 and live == [outs[0]]:
            cuts.append(k)
    return Intermediates(ops, {t: np.stack(v) for t, v in values.items()} | {i: np.asarray(x_int8)}, quant, i, o, cuts)

