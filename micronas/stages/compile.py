"""Bring your own model: an int8 `.tflite` made elsewhere (Keras, PyTorch, any converter) compiled
to the micronas C model, verified bit for bit against TFLite Micro, then profiled on a board.

    compile_model("har.tflite", "har_c", data="windows.npz")   -> CompileResult (compile.json)
    profile_compiled("har_c", target="nucleo-f446re")          -> ProfileResult (profile.json)

The compiled folder holds:

    compile.json        what was compiled and checked (the record `profile` reads back)
    <model>.tflite      a copy of the flatbuffer (TFLite Micro's reference when profiling)
    windows.npy         the int8 windows it was verified on, (N, input bytes)
    c/                  micronas_model.h/.c + runtime (mn_*.c), model_data.h/.c (TFLM-ready array)
    profile.json        after `micronas profile DIR`
    firmware/           the profiling firmware, per board
    report/             report.html / report.md: ours against TFLite Micro, side by side

It is written into a staging folder beside --out and renamed into place only when every check
passed: a failed or interrupted compile leaves --out as it was.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from micronas import budgets as budget_mod
from micronas.results import CompileResult, ProfileResult
from micronas.stages.common import StageCallback, no_stage
from micronas.units import Budgets
from micronas_base import __version__, locks, tempdirs
from micronas_base.errors import BudgetError, ConfigError, DataError, ExportError, UsageError
from micronas_base.files import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

FORMAT = "micronas.compiled/1"
RECORD = "compile.json"
WINDOWS = "windows.npy"
C_DIR = "c"
# Without --data: seeded uniform int8 windows. Enough to reach every clamp and requantisation
# branch of a small CNN many times over, and the host build of 64 windows takes well under a second.
RANDOM_WINDOWS = 64
RANDOM_SEED = 0
INT8_HOWTO = ("quantise it to full-integer int8 with TFLiteConverter: optimizations = [tf.lite.Optimize.DEFAULT], "
              "a representative_dataset, target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8], "
              "inference_input_type = inference_output_type = tf.int8")


# ---- reading the user's model -------------------------------------------------------------------

def read_model(path: str | os.PathLike[str]) -> tuple[bytes, Any]:
    """The flatbuffer and its graph, refused with a clear error when it cannot be compiled.

    Checks, in order: the file exists; it is a single-subgraph TFLite flatbuffer; its input and
    output are int8 (a float model names the converter settings to use); every op is one the
    micronas runtime executes (the error lists each op and how often it occurs).

    Args:
        path: The .tflite file.

    Returns:
        (flatbuffer bytes, `firmware_export.tflite_graph.Graph`).

    Raises:
        ConfigError: the file is missing or unreadable.
        ExportError: not a TFLite flatbuffer, not full-integer int8, or unsupported ops.
    """
    from firmware_export import tflite_graph, verify

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"model file {p} does not exist", "pass the path of an int8 .tflite file")
    if not p.is_file():
        raise ConfigError(f"{p} is a folder, not a .tflite file",
                          "pass the .tflite file itself (`micronas profile` also takes a folder written by compile)")
    try:
        buf = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {p}: {e.strerror or e}", "check the file's permissions") from None
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ExportError(f"{p} is not a TFLite flatbuffer (no 'TFL3' identifier at bytes 4-7; "
                          f"{len(buf):,} bytes, starting {buf[:8].hex() or 'empty'})",
                          "pass the .tflite file your converter wrote (TFLiteConverter.convert() output)")
    try:
        graph = tflite_graph.read(buf)
    except ExportError as e:
        if "unsupported type code" in e.message:
            raise ExportError(f"{p}: {e.message}; micronas runs full-integer int8 models", INT8_HOWTO) from None
        raise ExportError(f"{p}: {e.message}", e.hint) from None
    except Exception as e:  # noqa: BLE001 - a corrupt flatbuffer raises anything from the generated bindings
        raise ExportError(f"{p} has a TFLite identifier but cannot be parsed ({type(e).__name__}: {e})",
                          "the file is truncated or corrupt: convert the model again") from None
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ExportError(f"{p} has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; micronas compiles "
                          "models with one input and one output")
    for kind, index in (("input", graph.inputs[0]), ("output", graph.outputs[0])):
        t = graph.tensors[index]
        if t.dtype != np.int8:
            raise ExportError(f"{p} is not a full-integer int8 model: its {kind} {t.name!r} is "
                              f"{np.dtype(t.dtype).name}", INT8_HOWTO)
    verify.check_ops([op.name for op in graph.ops], p)
    return buf, graph


def op_counts(graph: Any) -> dict[str, int]:
    """How often each op occurs, most frequent first."""
    return dict(Counter(op.name for op in graph.ops).most_common())


# ---- windows ------------------------------------------------------------------------------------

def load_windows(path: str | os.PathLike[str], qin: Any, mean: tuple[float, ...] | None,
                 std: tuple[float, ...] | None) -> tuple[np.ndarray, str]:
    """The user's windows as the model's int8 input, (N, input bytes).

    An int8 array is taken as already quantised. Any other numeric array is raw values:
    standardised by `mean`/`std` when given, then quantised with the model's input scale and
    zero point (as `micronas_model_quantize_input` does on the device).

    Args:
        path: A .npy file, or a .npz holding one array (or one named X, x or windows).
        qin: The model input's `QuantParams` (shape (1, ...)).
        mean, std: Per-channel normalisation (last axis), or None.

    Returns:
        (windows, one line saying where they came from and how they were read).

    Raises:
        DataError: unreadable file, several candidate arrays, a shape that is not the model's
            input, non-finite values.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"--data {p} does not exist", "pass a .npy or .npz file of input windows")
    try:
        loaded = np.load(p, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - numpy raises ValueError, OSError, EOFError, zipfile errors...
        raise DataError(f"--data {p} cannot be read as a .npy or .npz file ({type(e).__name__}: {e})",
                        "save the windows with numpy.save (one array) or numpy.savez") from None
    name = p.name
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.files)
            pick = keys[0] if len(keys) == 1 else next((k for k in ("X", "x", "windows") if k in keys), None)
            if pick is None:
                raise DataError(f"--data {p} holds {len(keys)} arrays ({', '.join(keys) or 'none'}) and none is "
                                "named X, x or windows", "save the windows alone, or under the name X")
            try:
                arr = loaded[pick]
            except Exception as e:  # noqa: BLE001 - a truncated member, a pickled object array
                raise DataError(f"--data {p}: array {pick!r} cannot be read ({type(e).__name__}: {e})",
                                "save it again with numpy.savez") from None
            name = f"{p.name}[{pick}]"
    else:
        arr = loaded
    want = tuple(qin.shape[1:])
    per = int(np.prod(want))
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise DataError(f"--data {name} has dtype {arr.dtype}; expected numbers")
    if arr.shape == want:
        arr = arr[None]
    elif arr.ndim == 2 and arr.shape[1] == per and len(want) > 1:
        arr = arr.reshape(len(arr), *want)
    if arr.shape[1:] != want or len(arr) == 0:
        hint = f"give N windows of shape {list(want)}, i.e. an array of shape (N, {', '.join(map(str, want))})"
        if len(want) == 2 and arr.ndim == 3 and arr.shape[1:] == want[::-1]:
            hint += "; yours looks channels-first: X.transpose(0, 2, 1) makes it time-major"
        raise DataError(f"--data {name} has shape {list(arr.shape)}; the model's input is {list(qin.shape)}", hint)
    if arr.dtype == np.int8:
        if mean is not None:
            raise UsageError("--mean/--std were given but --data is int8 (already quantised)",
                             "drop --mean/--std, or pass raw float windows")
        return np.ascontiguousarray(arr).reshape(len(arr), -1), f"{name}: {len(arr)} int8 windows, used as given"
    x = arr.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"--data {name} holds NaN or infinite values", "clean or drop those windows")
    how = "quantised with the model's input scale and zero point"
    if mean is not None and std is not None:
        x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        how = "standardised by --mean/--std, then " + how
    return qin.quantize(x).reshape(len(x), -1), f"{name}: {len(x)} {arr.dtype} windows, {how}"


def random_windows(qin: Any, n: int = RANDOM_WINDOWS, seed: int = RANDOM_SEED) -> tuple[np.ndarray, str]:
    """`n` seeded uniform int8 windows, (n, input bytes), and where they came from."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(n, int(np.prod(qin.shape[1:]))), dtype=np.int8)
    return x, f"{n} random int8 windows (numpy default_rng seed {seed}, uniform over -128..127); no --data given"


# ---- labels and normalisation ---------------------------------------------------------------------

def parse_labels(value: str | None, classes: int) -> tuple[str, ...] | None:
    """`--labels a,b,c` or `--labels FILE` (one per line) -> the class names, checked against the
    model's output count; None when not given.

    Raises:
        UsageError: a count that is not the model's output count, or an empty name.
    """
    if value is None:
        return None
    p = Path(value)
    if p.is_file():
        try:
            names = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--labels {p} cannot be read ({e})",
                             "give a UTF-8 text file, one label per line") from None
        where = f"{p} ({len(names)} lines)"
    else:
        names = [v.strip() for v in value.split(",")]
        where = f"{value!r}"
        if any(not n for n in names):
            raise UsageError(f"--labels {value!r} has an empty name",
                             "give names separated by commas, e.g. walk,run,sit")
    if len(names) != classes:
        raise UsageError(f"--labels {where} gives {len(names)} names; the model has {classes} outputs",
                         f"give exactly {classes} names, in output order")
    return tuple(names)


def parse_floats(flag: str, value: str | None, channels: int, positive: bool = False) -> tuple[float, ...] | None:
    """`--mean 0.1,0.2,0.3` -> one float per input channel; None when not given.

    Raises:
        UsageError: not numbers, the wrong count, or (std) a value that is not > 0.
    """
    if value is None:
        return None
    try:
        vals = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise UsageError(f"{flag} {value!r} is not a comma-separated list of numbers",
                         f"give {channels} numbers, one per input channel") from None
    if len(vals) != channels:
        raise UsageError(f"{flag} {value!r} gives {len(vals)} values; the model's input has {channels} channels",
                         f"give {channels} numbers, one per input channel (the last axis of the input)")
    if not all(np.isfinite(vals)) or (positive and min(vals) <= 0):
        raise UsageError(f"{flag} {value!r}: every value must be finite" + (" and > 0" if positive else ""))
    return vals


# ---- the compiled folder ---------------------------------------------------------------------------

@contextmanager
def folder_lock(folder: Path, stage: str) -> Iterator[None]:
    """Hold `.<name>.lock` beside `folder` (removed on release): one compile or profile at a time,
    also while the folder itself does not exist yet or is being replaced."""
    folder = folder.resolve()
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create {folder.parent}: {e.strerror or e}", "choose another --out") from None
    with locks.exclusive(folder.parent / f".{folder.name}.lock", f"compiled model folder {folder}", stage,
                         "choose another --out"):
        yield


def is_compiled(folder: str | os.PathLike[str]) -> bool:
    return (Path(folder) / RECORD).is_file()


def read_record(folder: Path) -> CompileResult:
    """compile.json of a compiled folder.

    Raises:
        ConfigError: missing, corrupt, or written by another format.
    """
    import json

    p = Path(folder) / RECORD
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"format {d.get('format') if isinstance(d, dict) else d!r}, expected {FORMAT!r}")
        return CompileResult.from_json(d)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{p} cannot be read ({type(e).__name__}: {e})",
                          f"compile the model again: micronas compile MODEL.tflite --out {folder}") from None


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder", "choose another --out")
    if out.is_dir() and any(out.iterdir()) and not is_compiled(out):
        raise ConfigError(f"--out {out} is a non-empty folder that micronas compile did not write",
                          "choose a new or empty folder for --out")


def _replace_folder(staging: Path, out: Path) -> None:
    """Move the finished staging folder to `out`, replacing an earlier compile there."""
    old = None
    if out.exists():
        old = Path(tempdirs.mkdtemp("replaced", dir=out.parent))
        os.replace(out, old / "previous")
    try:
        os.replace(staging, out)
    except OSError:
        if old is not None:
            os.replace(old / "previous", out)  # put the earlier compile back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def compile_model(model: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                  target: str | None = None, data: str | os.PathLike[str] | None = None,
                  labels: str | None = None, mean: str | None = None, std: str | None = None,
                  on_stage: StageCallback | None = None) -> CompileResult:
    """Compile an int8 .tflite made elsewhere into the micronas C model, verified against TFLite Micro.

    Args:
        model: The .tflite file.
        out: The folder to write (default: <model without .tflite>_micronas beside the model); a
            folder an earlier compile wrote is replaced, any other non-empty folder is refused.
        target: The board `profile` uses by default (its SRAM is checked against the arena).
        data: A .npy/.npz of input windows to verify on; None: seeded random int8 windows.
        labels: `a,b,c` or a file with one label per line; None: the header says there are none.
        mean, std: Per-channel normalisation as comma-separated numbers (both or neither).
        on_stage: Progress callback.

    Returns:
        The record written to compile.json.

    Raises:
        ConfigError, DataError, UsageError, ExportError: exit 2; --out is left as it was.
        BudgetError: the planned arena exceeds the board's SRAM (the folder is written).
    """
    stage = on_stage or no_stage
    t0 = time.monotonic()
    src = Path(model)
    buf, graph = read_model(src)
    out_dir = Path(out) if out is not None else default_out(src)
    if (mean is None) != (std is None):
        raise UsageError("--mean and --std go together", "give both (one value per input channel), or neither")
    board = budget_mod.resolve_board(target)
    _check_out(out_dir)
    with folder_lock(out_dir, "compile"):
        _check_out(out_dir)
        for stale in tempdirs.sweep_stale(out_dir.resolve().parent):  # staging folders of killed compiles
            log.debug("removed %s (its process is gone)", stale)
        staging = Path(tempdirs.mkdtemp("compile", dir=out_dir.resolve().parent))
        try:
            record = _compile_into(staging, src, buf, graph, board, data, labels, mean, std, stage, t0)
            _replace_folder(staging, out_dir.resolve())
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if record.arena_bytes_planned > board.sram_bytes:
        raise BudgetError(f"the planned arena ({record.arena_bytes_planned:,} B) exceeds {board.name}'s SRAM "
                          f"({board.sram_bytes:,} B)", "choose a board with more RAM (--target), or a smaller model")
    return record


def default_out(model: Path) -> Path:
    """<model without .tflite>_micronas, beside the model."""
    return model.with_name(model.stem + "_micronas")


def _compile_into(folder: Path, src: Path, buf: bytes, graph: Any, board: Any, data: Any, labels: str | None,
                  mean: str | None, std: str | None, stage: StageCallback, t0: float) -> CompileResult:
    from firmware_export import carrays, codegen, hostbuild, verify

    model_copy = folder / src.name
    atomic_write_bytes(model_copy, buf)
    qin, qout = verify.io_params(model_copy)
    channels, classes = int(qin.shape[-1]), int(np.prod(qout.shape))
    class_labels = parse_labels(labels, classes)
    in_mean = parse_floats("--mean", mean, channels)
    in_std = parse_floats("--std", std, channels, positive=True)
    if data is not None:
        x, windows_source = load_windows(data, qin, in_mean, in_std)
    else:
        x, windows_source = random_windows(qin)
    atomic_write_bytes(folder / WINDOWS, _npy_bytes(x))

    stage(f"C model (micronas_model.h / .c, runtime), arena planned: {len(graph.ops)} ops")
    gen = codegen.generate(buf, class_labels, in_mean, in_std, source_name=src.name)
    c_dir = folder / C_DIR
    codegen.write(gen, c_dir)

    stage(f"TFLite Micro reference and arena ({len(x)} windows)")
    x_in = x.reshape(len(x), *qin.shape[1:])
    tflm_out = verify.run_tflm(buf, x_in)
    recorded = verify.tflm_recorded_arena_bytes(buf, x_in)
    tflm_arena = verify.tflm_arena_bytes(buf, x_in, recorded=recorded)
    length = int(qin.shape[1]) if len(qin.shape) == 3 else int(qin.shape[-2]) if len(qin.shape) > 1 else 1
    info = carrays.ModelInfo(
        input_length=length, input_channels=channels,
        input_scale=qin.scale, input_zero_point=qin.zero_point,
        output_scale=qout.scale, output_zero_point=qout.zero_point,
        class_labels=class_labels or tuple(str(i) for i in range(classes)),
        input_mean=in_mean or (0.0,) * channels, input_std=in_std or (1.0,) * channels,
        tflm_arena_bytes=tflm_arena, source_name=src.name,
        labels_given=class_labels is not None, normalisation_given=in_mean is not None,
    )
    header, source = carrays.render(buf, info)
    atomic_write_bytes(c_dir / "model_data.h", header.encode())
    atomic_write_bytes(c_dir / "model_data.c", source.encode())

    stage("host builds of the generated C (release and ASan/UBSan) against TFLite Micro")
    ours = hostbuild.build_and_run(c_dir, x, classes)
    sanitized = hostbuild.build_and_run(c_dir, x, classes, sanitize=True)
    agreement = verify.compare(ours, tflm_out)
    if agreement.exact_rate < 1.0 or not np.array_equal(sanitized, ours):
        differing = round((1 - agreement.exact_rate) * len(x))
        raise ExportError(f"the generated C differs from TFLite Micro on {differing} of {len(x)} windows "
                          f"(max {agreement.max_lsb_diff} LSB); this is a micronas bug",
                          f"please report it with {src}")

    footprint = None
    if have_cross_compiler():
        stage(f"code size: the model linked into a minimal application for {board.core} (arm-none-eabi-gcc)")
        from targets.build import model_footprint

        fp = model_footprint(board, c_dir, folder / "firmware" / f"{board.name}-app")
        footprint = {"text_bytes": fp.text_bytes, "data_bytes": fp.data_bytes, "bss_bytes": fp.bss_bytes,
                     "source": f"measured: .text of the ELF of micronas_model.c + runtime linked with --gc-sections "
                               f"into a minimal application for {board.core} (arm-none-eabi-gcc -O2; includes the "
                               "libc memcpy/memset it calls, no start-up code or vector table)"}

    record = CompileResult(
        format=FORMAT, micronas_version=__version__, source=str(src), source_name=src.name,
        sha256=hashlib.sha256(buf).hexdigest(), tflite_bytes=len(buf),
        tflite_ops=[op.name for op in graph.ops], op_counts=op_counts(graph),
        input={"shape": list(qin.shape), "scale": qin.scale, "zero_point": qin.zero_point,
               "layout": "as the .tflite input, row-major (a Conv1D model: time-major, input[t * C + c])"},
        output={"shape": list(qout.shape), "scale": qout.scale, "zero_point": qout.zero_point},
        labels=list(class_labels) if class_labels is not None else None,
        normalisation={"mean": list(in_mean), "std": list(in_std)} if in_mean is not None and in_std is not None
        else None,
        target=board.name, windows=len(x), windows_source=windows_source,
        runtime_vs_tflm=agreement.to_json(), sanitizer_build_equal=True,
        arena_bytes_planned=gen.arena_bytes,
        arena_source="planned by micronas compile: exact for the micronas C runtime (static arena, tensor "
                     "lifetimes + best-fit placement)",
        arena_bytes_without_reuse=gen.arena_naive_bytes, arena_timeline=gen.timeline,
        flash_bytes_weights=gen.flash_bytes_weights,
        flash_bytes_weights_source="counted: distinct const bytes of the generated C (weights, biases, "
                                   "requantisation tables, kernel params); runtime code not included",
        runtime_layers=len(gen.layers), runtime_layer_ops=[la.op for la in gen.layers],
        macs=sum(la.macs for la in gen.layers),
        tflm_arena_bytes=tflm_arena,
        tflm_arena_source="measured: the smallest arena with which the tflite-micro host interpreter (64-bit) "
                          "constructs and invokes, found by bisection; an upper bound for a 32-bit Cortex-M",
        tflm_arena_recorded_bytes=recorded,
        board_sram_bytes=board.sram_bytes,
        compile_seconds=round(time.monotonic() - t0, 2),
        code_footprint=footprint,
    )
    from micronas import comparison

    comparison.write_report(folder, record)
    atomic_write_json(folder / RECORD, record.to_json())
    return record


def have_cross_compiler() -> bool:
    return shutil.which("arm-none-eabi-gcc") is not None and shutil.which("arm-none-eabi-size") is not None


def _npy_bytes(x: np.ndarray) -> bytes:
    import io

    b = io.BytesIO()
    np.save(b, x, allow_pickle=False)
    return b.getvalue()


# ---- profile ---------------------------------------------------------------------------------------

def profile_compiled(path: str | os.PathLike[str], target: str | None = None, port: str | None = None,
                     windows: int = 20, budgets: Budgets | None = None, flash_cmd: str | None = None,
                     out: str | os.PathLike[str] | None = None, on_stage: StageCallback | None = None,
                     on_window: Any = None, link: Any = None) -> tuple[ProfileResult, CompileResult, Path]:
    """Profile a compiled model on a board (emulated unless `port`): the same firmware, protocol
    and checks as `micronas profile RUN`; writes DIR/profile.json and the side-by-side report.

    Args:
        path: A folder written by `compile_model`, or a .tflite (compiled first into `out`, or
            reused from there when it holds a compile of the same bytes).
        target: The board; default: the one recorded at compile time.
        port, windows, flash_cmd, on_stage, on_window, link: As `micronas.stages.profile.profile`;
            the windows are the first of those the model was verified on.
        budgets: Latency, RAM (the device's arena high-water mark) and flash (the ELF) budgets.
        out: With a .tflite: the folder to compile into (default <model>_micronas beside it).

    Returns:
        (the profile, the compile record, the folder).

    Raises:
        As `compile_model` and `profile`; BudgetError (exit 1) after profile.json and the report
        are written, when a measured figure is over a budget.
    """
    from micronas import comparison
    from micronas.stages.profile import Measured, measure

    stage = on_stage or no_stage
    p = Path(path)
    if p.is_dir():
        if out is not None and Path(out).resolve() != p.resolve():
            raise UsageError(f"--out {out} is for a .tflite; {p} is already a compiled folder", "drop --out")
        if not is_compiled(p):
            raise ConfigError(f"{p} is not a folder written by `micronas compile` (no {RECORD})",
                              f"compile the model first: micronas compile MODEL.tflite --out {p}, or pass a run "
                              "directory of `micronas export`")
        folder = p
    else:
        if (p.parent / "run.json").is_file():  # a run's own model: the run has its windows and metrics
            raise ConfigError(f"{p} is the model of the micronas run {p.parent}",
                              f"profile the run: micronas profile {p.parent}")
        folder = Path(out) if out is not None else default_out(p)
        buf, _graph = read_model(p)
        if not (is_compiled(folder) and read_record(folder).sha256 == hashlib.sha256(buf).hexdigest()):
            stage(f"compiling {p} into {folder}")
            compile_model(p, folder, target=target, on_stage=stage)
        else:
            stage(f"{folder} holds this model compiled already ({RECORD}): reused")
    with folder_lock(folder, "profile"):
        record = read_record(folder)
        board = budget_mod.resolve_board(target or record.target)
        model = Measured(c_dir=folder / C_DIR, tflite=folder / record.source_name,
                         input_shape=tuple(record.input["shape"]), output_bytes=int(np.prod(record.output["shape"])),
                         arena_bytes_planned=record.arena_bytes_planned, layer_ops=list(record.runtime_layer_ops))
        try:
            x = np.load(folder / WINDOWS, allow_pickle=False)[:windows]
        except (OSError, ValueError) as e:
            raise ConfigError(f"{folder / WINDOWS} cannot be read ({e})",
                              f"compile the model again: micronas compile {record.source} --out {folder}") from None
        result, checks = measure(model, x, board, budgets or Budgets(), folder / "firmware", port=port,
                                 flash_cmd=flash_cmd, on_stage=stage, on_window=on_window, link=link,
                                 what=f"{record.source_name} compiled in {folder}")
        atomic_write_json(folder / "profile.json", result.to_json())
        comparison.write_report(folder, record, result)
    budget_mod.raise_if_over(checks, "relax the budget, choose a board with more resources, or a smaller model")
    return result, record, folder


__all__ = ["FORMAT", "RANDOM_SEED", "RANDOM_WINDOWS", "compile_model", "default_out", "is_compiled",
           "load_windows", "parse_labels", "profile_compiled", "read_model", "read_record"]
