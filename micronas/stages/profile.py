"""The profile stage: the profiling firmware for a run's model on a board (emulated unless a
port is given), its outputs compared bit for bit, counts per inference and per layer, arena and
stack high-water marks, checked against the budgets (profile.json)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from micronas import budgets as budget_mod
from micronas.budgets import FLASH, LATENCY, RAM
from micronas.data import arrays_for
from micronas.results import ExportResult, ProfileResult
from micronas.rundir import RunDir
from micronas.stages.common import StageCallback, load_run, no_stage
from micronas.units import Budgets
from micronas_base import __version__
from micronas_base.errors import ConfigError, ExportError

WindowCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class DeviceSession:
    """What one profiling session read from a device, before any check.

    Attributes:
        hello: The HELLO reply.
        window_ticks: Timer ticks of each window's single inference.
        outputs: Each window's output tensor, (N, outputs) int8.
        repeat: INVOKE count 3 of the last window.
        layers: Ticks per layer of the last window (per-layer INVOKE).
        memory: Arena and stack high-water marks.
    """

    hello: Any
    window_ticks: list[int]
    outputs: np.ndarray
    repeat: Any
    layers: list[int]
    memory: Any


def device_session(dev: Any, x: np.ndarray, on_window: WindowCallback | None = None) -> DeviceSession:
    """The profiling exchange with a connected device: every window in, timed and read back.

    Args:
        dev: An open `targets.protocol.DeviceClient` running this model's firmware.
        x: Quantised windows, (N, T*C) int8.
        on_window: Called with (windows done, windows) as each is profiled.

    Returns:
        What the device said, unchecked.
    """
    hello = dev.hello()
    window_ticks, outputs = [], []
    for i, w in enumerate(x):  # counts depend on the data (clamps, max, softmax cut-off): time every window
        dev.set_input(w.tobytes())
        window_ticks.append(dev.invoke(1).min_ticks)
        outputs.append(np.frombuffer(dev.get_output(), np.int8))
        if on_window:
            on_window(i + 1, len(x))
    repeat = dev.invoke(count=3)  # the last window again: the same count every time
    dev.invoke(1, per_layer=True)
    layers = dev.get_layers()
    return DeviceSession(hello, window_ticks, np.stack(outputs), repeat, layers, dev.get_memory())


def _device_windows(run: RunDir, n: int) -> np.ndarray:
    """The first `n` test windows, quantised for the model input: (N, T*C) int8."""
    from firmware_export import verify

    _config, _arch, ds, split, std = load_run(run)
    X, _y = arrays_for(ds, split)["test"]
    qin, _qout = verify.io_params(run.file("model_int8.tflite"))
    x_q = qin.quantize(std.apply(X[:n]).transpose(0, 2, 1))  # (N, T, C) int8
    return x_q.reshape(len(x_q), -1)


def effective_budgets(run_path: str | os.PathLike[str], given: Budgets | None) -> Budgets:
    """Budgets given on the command line, falling back to those recorded by `export`."""
    run = RunDir.open(run_path)
    recorded = Budgets.from_json(run.read_json("metrics.json").get("budgets", {})) if run.has("metrics.json") \
        else Budgets()
    return budget_mod.fall_back(given, recorded)


def profile(run_path: str | os.PathLike[str], target: str | None = None, port: str | None = None,
            windows: int = 20, budgets: Budgets | None = None, flash_cmd: str | None = None,
            on_stage: StageCallback | None = None,
            on_window: WindowCallback | None = None, link: Any = None) -> ProfileResult:
    """Build the profiling firmware for a run's model, run it on a board, write profile.json.

    Emulated (QEMU, the board's core) unless `port` is given; then the firmware must already be on
    the board, or `flash_cmd` / pyocd programs it first.

    Args:
        run_path: An exported run (c/micronas_model.c exists).
        target: Board name; default: the board recorded in the run, else the default board.
        port: A pyserial URL of a real board (/dev/ttyACM0, socket://..., hwgrep://VID:PID).
        windows: Test windows sent to the device and compared bit for bit.
        budgets: Budgets to check; those not given fall back to the ones recorded by export.
        flash_cmd: Flash command template with {elf}/{bin} (real boards only).
        on_stage: Progress callback.
        on_window: Called with (windows done, windows) as each is profiled.
        link: `micronas.device.Link` (reply timeout and retries); default: the protocol's.

    Returns:
        The profile written to profile.json.

    Raises:
        ConfigError: the run is not exported, or a budget is above what the board has.
        DeviceError: the device or emulator failed.
        ExportError: the device's outputs differ from the host runtime's or TFLite Micro's, or its
            arena from the plan (profile.json is then not written; an earlier one is kept).
        BudgetError: a measured figure exceeds a budget (profile.json is still written).
        UsageError: `flash_cmd` without `port`.
    """
    from micronas.device import check_flash_cmd

    check_flash_cmd(flash_cmd, port)
    run = RunDir.open(run_path)
    with run.locked("profile"):
        if not run.has("metrics.json") or not run.has("c/micronas_model.c"):
            raise ConfigError(f"{run.path} has not been exported", f"run: micronas export {run.path}")
        metrics = ExportResult.from_json(run.read_json("metrics.json"))
        target = target or (run.read_json("config.json").get("target") if run.has("config.json") else None)
        board = budget_mod.resolve_board(target)
        return profile_run(run, board, budget_mod.fall_back(budgets, metrics.budgets), metrics, port=port,
                           windows=windows, flash_cmd=flash_cmd, on_stage=on_stage, on_window=on_window,
                           link=link)


def profile_run(run: RunDir, board: Any, budgets: Budgets, metrics: ExportResult, port: str | None = None,
                windows: int = 20, flash_cmd: str | None = None, on_stage: StageCallback | None = None,
                on_window: WindowCallback | None = None, link: Any = None) -> ProfileResult:
    """`profile` with the board resolved, the budgets final and the export's metrics in hand."""
    model = Measured(c_dir=run.file("c"), tflite=run.file("model_int8.tflite"),
                     input_shape=tuple(metrics.input["shape"]), output_bytes=int(metrics.output["shape"][-1]),
                     arena_bytes_planned=metrics.arena_bytes_planned, layer_ops=list(metrics.runtime_layer_ops),
                     prediction=metrics.prediction)
    result, checks = measure(model, _device_windows(run, windows), board, budgets, run.file("firmware"), port=port,
                             flash_cmd=flash_cmd, on_stage=on_stage, on_window=on_window, link=link,
                             what="this run")
    run.write_json("profile.json", result.to_json())  # over budget is still a valid measurement: kept
    budget_mod.raise_if_over(checks, "relax the budget or choose a smaller architecture")
    return result


@dataclass(frozen=True)
class Measured:
    """What profiling needs of a generated model, whether a run exported it or `compile` did.

    Attributes:
        c_dir: The generated model and runtime (micronas_model.c, mn_*.c).
        tflite: The int8 flatbuffer it was generated from (TFLite Micro's reference).
        input_shape: The model input's shape, batch first.
        output_bytes: int8 outputs per window.
        arena_bytes_planned: The planned arena (the device's high-water mark must equal it).
        layer_ops: The runtime op of each kernel call, in execution order.
        prediction: The latency table's prediction (`PredictionRecord`); None: nothing predicted.
    """

    c_dir: Path
    tflite: Path
    input_shape: tuple[int, ...]
    output_bytes: int
    arena_bytes_planned: int
    layer_ops: list[str]
    prediction: Any = None


def measure(model: Measured, x: np.ndarray, board: Any, budgets: Budgets, firmware_root: Path,
            port: str | None = None, flash_cmd: str | None = None, on_stage: StageCallback | None = None,
            on_window: WindowCallback | None = None, link: Any = None,
            what: str = "this model") -> tuple[ProfileResult, list]:
    """Build the profiling firmware around a generated model, run `x` on the device, check it.

    Args:
        model: The generated model and what is known of it.
        x: (N, input bytes) int8 windows, each timed and compared bit for bit.
        board: The board.
        budgets: Budgets to check (already resolved by the caller).
        firmware_root: The firmware is built into firmware_root/<board>-<emulated|board>.
        port, flash_cmd, on_stage, on_window, link: As `profile`.
        what: How a HELLO mismatch names the model the device should run.

    Returns:
        The profile (not written) and the budget checks (not raised).

    Raises:
        ConfigError, DeviceError: as `profile`.
        ExportError: the device's outputs differ from the host runtime's or TFLite Micro's, or
            its arena high-water mark from the plan: nothing measured is worth keeping.
    """
    from firmware_export import hostbuild, verify
    from latency_tables.table import count_to_ms
    from micronas.device import build_image, counter, open_device

    stage = on_stage or no_stage
    budget_mod.check_board_has(budgets, board)
    emulated = port is None
    kind = "emulated" if emulated else "board"
    out_dir = Path(firmware_root) / f"{board.name}-{kind}"
    stage(f"firmware for {board.name} ({'QEMU ' + board.qemu.machine if emulated else 'real board'}), "
          "arm-none-eabi-gcc")
    image = build_image(board, model.c_dir, out_dir, emulated=emulated)

    out_bytes = model.output_bytes
    stage(f"reference outputs: host build of the generated C and TFLite Micro ({len(x)} windows)")
    host_out = hostbuild.build_and_run(model.c_dir, x, out_bytes)
    tflm_out = verify.run_tflm(model.tflite.read_bytes(), x.reshape(len(x), *model.input_shape[1:]))

    with open_device(board, image, port, out_dir, flash_cmd=flash_cmd, on_stage=stage,
                     on_connect=lambda url: stage(f"profiling over {url}"), link=link) as dev:
        hello = dev.hello()
        if hello.arena_bytes != model.arena_bytes_planned or hello.output_bytes != out_bytes:
            raise ConfigError(f"the device at {dev.url} runs another model (arena {hello.arena_bytes} B, "
                              f"{hello.output_bytes} outputs; {what}: {model.arena_bytes_planned} B, "
                              f"{out_bytes})", "flash its firmware: " + str(image.elf))
        session = device_session(dev, x, on_window)
    window_ticks, device_out, repeat, layers, mem = (session.window_ticks, session.outputs, session.repeat,
                                                     session.layers, session.memory)
    if min(window_ticks) <= 0:  # a stopped timer: every figure below (and its ratios) would be 0 or undefined
        from targets.protocol import DeviceError

        raise DeviceError(f"the device reported {min(window_ticks)} timer ticks for an inference of {board.name}; "
                          "its timer is not running", "rebuild and flash its firmware: " + str(image.elf))
    mismatch_host = int((device_out != host_out).any(axis=1).sum())
    mismatch_tflm = int((device_out != tflm_out).any(axis=1).sum())

    count, unit, source = counter(hello, board)
    if unit == "instructions":
        source += f"; latency assumes one instruction per cycle at the board clock {board.clock_hz / 1e6:g} MHz"
    total = count(float(np.mean(window_ticks)))
    last = count(window_ticks[-1])  # the window the per-layer run used
    names = [f"{i}:{n}" for i, n in enumerate(model.layer_ops)]
    per_layer = [{"index": i, "name": names[i] if i < len(names) else str(i), unit: round(count(t), 1)}
                 for i, t in enumerate(layers)]
    layer_sum = sum(entry[unit] for entry in per_layer)
    latency_ms = count_to_ms(total, board.clock_hz)
    pred = model.prediction
    predicted = pred is not None and pred.for_board == board.name and pred.latency_unit == unit
    checks = [budget_mod.check(budgets, LATENCY, "latency", latency_ms, note=unit),
              budget_mod.check(budgets, RAM, "the arena's high-water mark on the device", mem.arena_high_water),
              budget_mod.check(budgets, FLASH, "firmware flash", image.flash_bytes)]
    result = ProfileResult(
        micronas_version=__version__,
        board=board.name, core=board.core, clock_hz=board.clock_hz,
        where=f"emulated: QEMU {board.qemu.machine}" if emulated else f"real board over {port}",
        timer_kind=unit, count_source=source,
        total=round(total, 1),
        total_min_max=[round(count(min(window_ticks)), 1), round(count(max(window_ticks)), 1)],
        total_note=f"mean over the {len(x)} test windows (counts depend on the data)",
        per_layer=per_layer,
        per_layer_sum=round(layer_sum, 1),
        per_layer_window_total=round(last, 1),
        per_layer_sum_over_total=round(layer_sum / last, 5) if last else None,
        repeat_min_max_ticks=[repeat.min_ticks, repeat.max_ticks],
        repeat_equals_first_run=repeat.min_ticks == window_ticks[-1],
        measured_latency_ms=round(latency_ms, 4),
        windows=len(x),
        outputs_equal_host_runtime=mismatch_host == 0,
        outputs_equal_tflm=mismatch_tflm == 0,
        arena_bytes_measured=mem.arena_high_water,
        arena_bytes_planned=model.arena_bytes_planned,
        stack_high_water_bytes=mem.stack_high_water,
        stack_bytes_reserved=mem.stack_bytes,
        elf={"text_bytes": image.text_bytes, "data_bytes": image.data_bytes, "bss_bytes": image.bss_bytes},
        flash_bytes=image.flash_bytes,
        ram_bytes=image.ram_bytes,
        ram_source="ELF data + bss of the profiling firmware: the arena, BENCH_OP's scratch buffer, the serial "
                   "protocol's buffers and statics; not the stack (its high-water mark is separate). The RAM "
                   "budget is checked against the arena high-water mark, as search and export check the arena",
        budgets=budgets,
        predicted_latency_ms=pred.latency_ms if predicted else None,
        prediction_error=round((float(pred.latency_count) - total) / total, 5) if predicted else None,
        prediction_source=pred.latency_source if predicted else None,
        over_budget=budget_mod.over_messages(checks),
    )
    # Checked before profile.json is written: a device that computes wrong outputs measured
    # nothing worth keeping, and the previous profile.json (if any) stays as it was.
    if mismatch_host or mismatch_tflm:
        raise ExportError(f"the device's outputs differ from the host runtime on {mismatch_host} and from TFLite Micro "
                          f"on {mismatch_tflm} of {len(x)} windows", "this is a micronas bug; please report it")
    if mem.arena_high_water != model.arena_bytes_planned:
        raise ExportError(f"the arena high-water mark on the device ({mem.arena_high_water} B) differs from the "
                          f"planned arena ({model.arena_bytes_planned} B)", "this is a micronas bug; please report it")
    return result, checks
