"""The `micronas` command line: a thin layer over `micronas.api`.

Only typer, rich and the light micronas modules load at start-up; torch and the converters are
imported by the commands that use them, so `micronas --help` answers at once.

Exit codes: 0 ok, 1 a budget cannot be met or is exceeded, 2 usage/config/data/internal error,
130 interrupted (Ctrl-C; re-running the same command resumes), 143 terminated (SIGTERM; cleaned up as for Ctrl-C).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from micronas_base import __version__
from micronas_base import tempdirs
from micronas_base.errors import (EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, MicronasError, Terminated,
                                  UsageError)
from micronas.units import SIZE_UNITS_HELP, Budgets, format_size
from targets.protocol import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S  # stdlib only at import: --help stays instant


app = typer.Typer(
    name="micronas",
    help="Find, train, quantise and ship an int8 time-series classifier that fits a microcontroller.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

RAM_HELP = f"RAM budget, e.g. 256k, 96KiB, 1.5M. {SIZE_UNITS_HELP}."
FLASH_HELP = f"Flash budget, e.g. 512k, 1M. {SIZE_UNITS_HELP}."


def _setup_logging(quiet: bool = False) -> None:
    """Library log lines on stderr: INFO and up, or with --quiet only warnings and errors."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    for name in ("micronas", "search_space", "firmware_export", "latency_tables", "targets"):
        lg = logging.getLogger(name)
        lg.setLevel(logging.WARNING if quiet else logging.INFO)
        lg.handlers[:] = [handler]
        lg.propagate = False


def _internal_error_log(text: str) -> Path | None:
    """Write a traceback to a file of this process's own in the temp folder; None if that fails.

    Named `micronas-internal-error-<pid>-<random>.log` and created exclusively, so two failing
    commands never overwrite each other's (nor follow a link someone planted at a fixed name).
    Not swept at start-up: it is for the user to read after the command has ended.
    """
    import tempfile

    try:
        fd, name = tempfile.mkstemp(prefix=f"micronas-internal-error-{os.getpid()}-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return Path(name)
    except OSError:
        return None


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def _handled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn errors into a one-screen message and the right exit code (no traceback).

    Also: temp folders left by micronas processes that were killed outright are swept first, and
    SIGTERM is handled like Ctrl-C (emulators stopped, temp files removed, finished stages kept)
    but exits 143, so a scheduler sees it was its own signal.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _setup_logging(quiet=kwargs.get("quiet") is True)  # --quiet hides QEMU's INFO lines too
        for stale in tempdirs.sweep_stale():
            logging.getLogger("micronas").debug("removed %s (its process is gone)", stale)
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _on_sigterm) if main else None
        try:
            return fn(*args, **kwargs)
        except MicronasError as e:
            sys.stdout.flush()  # keep what was printed before the error above it in a shared log
            err.print("error: " + e.message, markup=False)
            if e.hint:
                err.print("  hint: " + e.hint, markup=False)
            raise typer.Exit(e.exit_code) from None
        except Terminated:
            sys.stdout.flush()
            err.print("terminated (SIGTERM); finished stages are kept, re-run the same command to resume",
                      markup=False)
            raise typer.Exit(EXIT_TERMINATED) from None
        except KeyboardInterrupt:
            sys.stdout.flush()
            err.print("interrupted; finished stages are kept, re-run the same command to resume", markup=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except typer.Exit:
            raise
        except Exception as e:  # a bug, not a user mistake: say so, keep the traceback out of the way
            log_file = _internal_error_log(traceback.format_exc())
            sys.stdout.flush()
            err.print(f"internal error: {type(e).__name__}: {e}", markup=False)
            err.print(f"  the traceback is in {log_file}; please report it with the command you ran"
                      if log_file else "  please report it with the command you ran (the traceback could not "
                      "be written to the temp folder)", markup=False)
            raise typer.Exit(EXIT_USAGE) from None
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)

    return wrapper


QUIET = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or result lines (errors only).")]
DEVICE = Annotated[str, typer.Option(
    "--device", help="Where torch trains: cpu (default, the tested path), cuda, or auto (cuda when torch sees a GPU).")]
TIMEOUT = Annotated[float, typer.Option(
    "--timeout", help="Least seconds to wait for a reply before resending; the wait adapts above it (the link's "
    "reply times, the work asked for) and doubles with each resend.")]
RETRIES = Annotated[int, typer.Option(
    "--retries", help="Resends of a request that got no valid reply (raise it on a noisy serial line).")]


def _link(timeout: float, retries: int):
    from micronas.device import Link

    return Link(timeout_s=timeout, retries=retries)


def _echo_budgets(budgets: Budgets, show) -> None:
    """How the budgets were read, one line each (hidden by --quiet)."""
    for line in budgets.describe():
        show.line(line)


def _version(value: bool) -> None:
    if value:
        out.print(f"micronas {__version__}", markup=False)
        raise typer.Exit()


THREADS_HELP = ("torch's intra-op threads. Default: MICRONAS_THREADS or OMP_NUM_THREADS if set, else "
                "min(4, CPUs available); lower it on a shared machine.")
AUGMENT_HELP = ("Training augmentation: a comma-separated list of jitter, scale, shift, rotate (3-axis groups: only "
                "when the channels are x, y, z of sensors), warp (time stretch), mixup; or none. "
                "Default: jitter,scale,shift.")
WINDOW_MEAN_HELP = ("Each window's per-channel mean: keep it, or remove it before standardising (an accelerometer's "
                    "mean is mostly gravity, i.e. how the sensor sits); the board removes it too "
                    "(micronas_model_quantize_window).")
FINAL_EPOCHS_HELP = ("Epochs of the final training. Default: 120, or more on small data, so that the network takes at "
                     "least 1,000 weight steps.")
DISTILL_HELP = ("Knowledge distillation: the weight (0-1) of a teacher's soft outputs in the training loss; the "
                "teacher is the same network with every width x1.5, trained first with the same recipe (about 3x "
                "the training time). 0 turns it off.")
SEARCH_EPOCHS_HELP = ("Search epochs, a quarter of them weights-only warm-up. Default: 40, more on small data so "
                      "that the supernet's weights take at least 1,500 steps.")
VAL_SUBJECTS_HELP = ("Comma-separated subject ids whose windows are the validation split (e.g. 3, or 3,5); "
                     "default: whole subjects picked by --seed, about 20 % of the pool.")


def _subjects(value: Optional[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    ids = tuple(v.strip() for v in value.split(",") if v.strip())
    if not ids:
        raise UsageError(f"--val-subjects {value!r} names no subject", "give ids separated by commas, e.g. 3 or 3,5")
    return ids


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Find, train, quantise and ship an int8 time-series classifier that fits a microcontroller."""


def _train_counter(show):
    def on_epoch(e: int, n: int, entry: dict) -> None:
        who = ("teacher", "teacher epochs (distillation)") if entry.get("teacher") else ("train", "training epochs")
        show.counter(*who, n).update(
            e + 1, f"val acc {entry['val_acc']:.3f}, val loss {entry['val_loss']:.4f}")
    return on_epoch


def _window_counter(show):
    return lambda i, n: show.counter("profile", "profiled windows", n).update(i)


@app.command()
@_handled
def train(
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory to create (or resume).")],
    data: Annotated[str, typer.Option(help="'basicmotions' (embedded default) or a .npz, .ts or .csv file.")]
    = "basicmotions",
    arch: Annotated[Optional[str], typer.Option(
        help="arch.json path or a shipped arch name; default: 'default' adapted to the data's shape.")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, max=100000, help=(
        "Training epochs (fixed schedule). Default: 120, or more on small data, so that the network takes at "
        "least 1,000 weight steps."))] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed for the split, the weights and the batch order.")] = 0,
    val_subjects: Annotated[Optional[str], typer.Option(help=VAL_SUBJECTS_HELP)] = None,
    checkpoint: Annotated[str, typer.Option(
        help="Which epoch's weights to keep: 'last' (of the fixed cosine schedule; what search uses) or "
             "'best-val' (best validation accuracy).")] = "best-val",
    force: Annotated[bool, typer.Option(help="Retrain even if the run already holds a model.")] = False,
    augment: Annotated[Optional[str], typer.Option(help=AUGMENT_HELP)] = None,
    window_mean: Annotated[str, typer.Option(help=WINDOW_MEAN_HELP + " keep (default) or remove.")] = "keep",
    distill: Annotated[float, typer.Option(help=DISTILL_HELP + " Default: 0 (off).")] = 0.0,
    threads: Annotated[Optional[int], typer.Option(min=1, help=THREADS_HELP)] = None,
    device: DEVICE = "cpu",
    quiet: QUIET = False,
) -> None:
    """Train an architecture on a dataset (fp32); resumes an interrupted run."""
    from micronas import api
    from micronas.progress import Progress
    from micronas.train import TrainConfig

    rules = {"last": "last", "best-val": "best_val"}
    if checkpoint not in rules:
        raise UsageError(f"--checkpoint {checkpoint!r} is not a checkpoint rule", "use last or best-val")
    cfg = TrainConfig(epochs=epochs, seed=seed, val_subjects=_subjects(val_subjects), checkpoint_rule=rules[checkpoint],
                      remove_window_mean=_window_mean(window_mean, ("keep", "remove")) == "remove",
                      **_distill(distill), **_augment(augment))
    show = Progress.for_cli(quiet)
    show.line(f"training on {data} into {out_dir}")
    n, why = api.torch_threads(threads)
    dev, dev_why = api.torch_device(device)
    show.line(f"torch: {n} intra-op thread{'s' if n > 1 else ''} ({why}), 1 inter-op; on {dev} ({dev_why})")
    with show:
        s = api.train(data, out_dir, arch=arch, cfg=cfg, force=force, on_epoch=_train_counter(show), threads=n,
                      device=dev)
    sp = s.split
    show.line(f"split: {sp.train} train / {sp.val} val / {sp.test} test windows"
              + (" (by subject)" if sp.by_subject else ""))
    b = s.best
    verb = "already trained (same settings); kept" if s.reused else "kept"
    show.line(f"{verb} epoch {b['epoch'] + 1}: val acc {b['val_acc']:.3f}, val loss {b['val_loss']:.4f}")
    show.line(f"model: {Path(s.run) / 'model.pt'}\nnext: micronas export {s.run}")


@app.command()
@_handled
def export(
    run: Annotated[Path, typer.Argument(help="Run directory from `micronas train`.")],
    latency: Annotated[Optional[str], typer.Option(
        help="Latency budget, e.g. 50ms, 0.05s, 500us; checked against the predicted latency. Default: the "
             "search's, for a searched run.")] = None,
    ram: Annotated[Optional[str], typer.Option(help=RAM_HELP)] = None,
    flash: Annotated[Optional[str], typer.Option(help=FLASH_HELP)] = None,
    quiet: QUIET = False,
) -> None:
    """Export a trained run to ONNX, int8 TFLite and C arrays, verified on the test split.

    Exits 1 when the micronas runtime's planned arena exceeds --ram, the predicted firmware flash
    (the flatbuffer when no latency table fits the data's shape) exceeds --flash, or the predicted
    latency exceeds --latency (by default the latency budget of the search that made the run).
    The artefacts are kept either way.
    """
    from micronas.progress import Progress

    budgets = Budgets.parse(latency=latency, ram=ram, flash=flash)
    show = Progress.for_cli(quiet)
    _echo_budgets(budgets, show)
    from micronas import api
    from micronas.report import interval_text

    m = api.export(run, budgets, on_stage=show.stage)
    a, rt, p = m.litert_vs_tflm, m.runtime_vs_tflm, m.prediction
    lines = [
        f"accuracy (test, {m.test_windows} windows): fp32 {m.accuracy_fp32:.3f}, "
        f"int8 {m.accuracy_int8:.3f} (drop {m.int8_accuracy_drop * 100:+.1f} points; int8 "
        f"{interval_text(m.accuracy_int8, m.test_windows)})",
        f"int8 vs fp32 argmax agreement: {m.argmax_agreement_int8_vs_fp32:.3f}" + _layer_error_note(m),
        f"LiteRT vs TFLite Micro: {a['exact_match_rate'] * 100:.1f}% of windows bit-exact, "
        f"max difference {a['max_lsb_diff']} LSB" + _litert_note(m),
        f"model: {format_size(m.tflite_bytes)} int8 flatbuffer, {len(m.tflite_ops)} ops",
        f"micronas C runtime: arena {format_size(m.arena_bytes_planned)} (planned, exact), "
        f"const data {format_size(m.flash_bytes_weights)}, {m.runtime_layers} kernel calls, {m.macs:,} MACs",
        f"runtime vs TFLite Micro: {rt['exact_match_rate'] * 100:.1f}% of "
        f"{rt['windows']} test windows bit-exact (host build, also under ASan/UBSan)",
        f"TFLM arena: {format_size(m.tflm_arena_bytes)} (measured, tflite-micro host interpreter)",
        (f"predicted on {p.for_board}: {p.latency_ms:.3f} ms ({p.latency_count:,.0f} {p.latency_unit}, latency "
         f"table {p.latency_table}), firmware flash {format_size(p.flash_bytes)}"
         if p.latency_ms is not None else f"no latency prediction: {p.note or ''}"),
        f"export took {m.export_seconds:.1f} s",
        f"artefacts in {Path(run)}: model.onnx, model_int8.tflite, c/micronas_model.h (+ runtime), "
        "c/model_data.h (TFLM), metrics.json",
    ]
    for line in lines:
        show.line(line)


def _augment(spec: str | None) -> dict:
    """--augment -> TrainConfig overrides (none when not given: the default recipe)."""
    from micronas import augment as aug

    return {} if spec is None else {"augment": aug.parse(spec)}


def _distill(value: float | str | None) -> dict:
    """--distill -> TrainConfig overrides (none when not given)."""
    if value is None:
        return {}
    try:
        weight = float(value)
    except ValueError:
        weight = float("nan")
    if not 0.0 <= weight <= 1.0:
        raise UsageError(f"--distill {value} is not a weight between 0 and 1",
                         "e.g. --distill 0.5 (the teacher's share of the loss), or --distill 0 for none")
    return {"distill": weight}


def _layer_error_note(m) -> str:
    """Where int8 loses most: the layer whose output error (relative to fp32) grows the most."""
    rows = (m.layer_int8_error or {}).get("layers") or []
    if not rows:
        return ""
    steps = [(r["relative_error"] - (rows[i - 1]["relative_error"] if i else 0.0), r) for i, r in enumerate(rows)]
    _, worst = max(steps, key=lambda s: s[0])
    return (f"; per-layer output error {100 * min(r['relative_error'] for r in rows):.1f}-"
            f"{100 * max(r['relative_error'] for r in rows):.1f} %, grows most at {worst['name']} "
            "(report: Architecture)")


def _litert_note(m) -> str:
    """A clause flagging LiteRT's disagreement with TFLite Micro (the board's semantics), if over."""
    c = m.litert_check
    if not c or c["ok"]:
        return ""
    first = c.get("first_divergence")
    where = f"; they first part at op {first['position']} ({first['op']}, {first['max_lsb']} LSB)" if first else ""
    return (f" (warning: more than {c['allowed_max_lsb_diff']} LSB{where}; the int8 accuracy is TFLite Micro's, "
            f"LiteRT's would be {c['accuracy_int8_litert']:.3f})")


@app.command()
@_handled
def profile(
    run: Annotated[Path, typer.Argument(
        help="Exported run directory (`micronas export`), a folder written by `micronas compile`, or an int8 "
             ".tflite (compiled first into --out).")],
    target: Annotated[Optional[str], typer.Option(help="Board name (see `micronas boards`); default nucleo-l552ze-q.")]
    = None,
    port: Annotated[Optional[str], typer.Option(
        help="pyserial URL of a real board (/dev/ttyACM0, socket://host:port, hwgrep://0483:374b). "
             "Without it the board's core is emulated by QEMU.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option(
        "--out", help="With a .tflite: the folder to compile it into (default MODEL_micronas beside it).")] = None,
    windows: Annotated[int, typer.Option(min=1, max=10000, help="Test windows checked bit for bit on the device.")]
    = 20,
    latency: Annotated[Optional[str], typer.Option(help="Latency budget, e.g. 50ms, 0.05s, 500us.")] = None,
    ram: Annotated[Optional[str], typer.Option(help=RAM_HELP)] = None,
    flash: Annotated[Optional[str], typer.Option(help=FLASH_HELP)] = None,
    flash_cmd: Annotated[Optional[str], typer.Option(
        help="With --port: program the board first with this command ({elf} / {bin} placeholders); "
             "runs as an argument list, not through a shell.")] = None,
    timeout: TIMEOUT = DEFAULT_TIMEOUT_S,
    retries: RETRIES = DEFAULT_RETRIES,
    quiet: QUIET = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print profile.json on stdout (progress on stderr).")]
    = False,
) -> None:
    """Run the model on a board (emulated unless --port) and measure latency, arena and stack.

    Exits 1 when a budget (given here or recorded by export) is exceeded on the device.
    """
    from micronas import api
    from micronas.progress import Progress

    link = _link(timeout, retries)
    if run.suffix == ".tflite" or api.is_compiled(run):
        return _profile_compiled(run, target, port, out_dir, windows, Budgets.parse(latency=latency, ram=ram,
                                 flash=flash), flash_cmd, link, quiet, json_out)
    if out_dir is not None:
        raise UsageError(f"--out {out_dir} is for a .tflite; {run} is a run directory", "drop --out")
    budgets = api.effective_budgets(run, Budgets.parse(latency=latency, ram=ram, flash=flash))  # as profile reads them
    show = Progress.for_cli(quiet, to_stderr=json_out)
    _echo_budgets(budgets, show)  # including those recorded by `micronas export`
    with show:
        p = api.profile(run, target=target, port=port, windows=windows, budgets=budgets, flash_cmd=flash_cmd,
                        on_stage=show.stage, on_window=_window_counter(show), link=link)
    if json_out:
        print(json.dumps(p.to_json(), indent=1))
        return
    _profile_lines(p, show, per_layer=False)
    show.line(f"profile: {Path(run) / 'profile.json'}")


@app.command("compile")
@_handled
def compile_(
    model: Annotated[Path, typer.Argument(help="An int8 .tflite made elsewhere (Keras, PyTorch, any converter).")],
    out_dir: Annotated[Optional[Path], typer.Option(
        "--out", help="Folder to write (default: MODEL_micronas beside the model); an earlier compile there is "
                      "replaced.")] = None,
    target: Annotated[Optional[str], typer.Option(
        help="Board (see `micronas boards`) whose SRAM the arena is checked against and that `micronas profile DIR` "
             "uses; default nucleo-l552ze-q.")] = None,
    data: Annotated[Optional[Path], typer.Option(
        help="Input windows to verify on: .npy, or .npz with one array (or one named X): shape (N, *input shape); "
             "int8 is used as is, floats are quantised with the model's input scale. Default: 64 seeded random "
             "int8 windows.")] = None,
    labels: Annotated[Optional[str], typer.Option(
        help="Class names in output order, 'a,b,c' or a file with one per line. Without it the header says there "
             "are none.")] = None,
    mean: Annotated[Optional[str], typer.Option(
        help="Per-channel mean of the training data, e.g. 0.1,0.2,0.3: the header's quantize helper subtracts "
             "it (and --data floats are standardised by it).")] = None,
    std: Annotated[Optional[str], typer.Option(help="Per-channel std, with --mean.")] = None,
    quiet: QUIET = False,
) -> None:
    """Compile an int8 .tflite into the micronas C model, verified bit for bit against TFLite Micro.

    Writes micronas_model.h/.c + runtime and the TFLM-ready C array (c/), the planned arena, and a
    report comparing the micronas runtime with TFLite Micro. Exits 2 (writing nothing) for a
    missing, garbage or float model, unsupported ops or windows of the wrong shape; 1 when the
    arena exceeds the board's SRAM (the folder is written).
    """
    from micronas import api, comparison
    from micronas.progress import Progress

    show = Progress.for_cli(quiet)
    show.line(f"compiling {model}")
    with show:
        r = api.compile_model(model, out_dir, target=target, data=data, labels=labels, mean=mean, std=std,
                              on_stage=show.stage)
    folder = out_dir or api.default_compile_out(model)
    agree = r.runtime_vs_tflm
    show.line(f"ops: " + ", ".join(f"{k} x{v}" for k, v in r.op_counts.items()))
    show.line(f"verified on {r.windows_source}")
    show.line(f"generated C vs TFLite Micro: {agree['exact_match_rate'] * 100:.1f}% of {agree['windows']} windows "
              "bit-exact (host build, also under ASan/UBSan)")
    show.line(f"arena {r.arena_bytes_planned:,} B (planned, exact) of {r.target}'s {format_size(r.board_sram_bytes)} "
              f"SRAM; {r.runtime_layers} kernel calls, {r.macs:,} MACs")
    for line in comparison.lines(r):
        show.line(line)
    if r.labels is None:
        show.line("labels: none given (--labels); the header says so")
    show.line(f"written: {folder}/c/micronas_model.h (+ .c, runtime), {folder}/c/model_data.h (TFLM), "
              f"{folder}/compile.json, {folder}/report/report.html")
    show.line(f"next: micronas profile {folder}")


def _profile_compiled(path: Path, target, port, out_dir, windows, budgets, flash_cmd, link, quiet, json_out) -> None:
    """`micronas profile` for a model made elsewhere: compiled folder or .tflite."""
    from micronas import api, comparison
    from micronas.progress import Progress

    show = Progress.for_cli(quiet, to_stderr=json_out)
    _echo_budgets(budgets, show)
    with show:
        p, record, folder = api.profile_compiled(path, target=target, port=port, windows=windows, budgets=budgets,
                                                 flash_cmd=flash_cmd, out=out_dir, on_stage=show.stage,
                                                 on_window=_window_counter(show), link=link)
    if json_out:
        print(json.dumps(p.to_json(), indent=1))
        return
    _profile_lines(p, show)
    show.line(f"micronas against TensorFlow Lite Micro ({record.source_name}):")
    for line in comparison.lines(record, p):
        show.line(line)
    show.line(f"profile: {folder / 'profile.json'}")
    show.line(f"report: {folder / 'report' / 'report.html'}")


def _profile_lines(p, show, per_layer: bool = True) -> None:
    """A profile's figures: the count per inference, its source, the prediction's error, per-layer
    counts (with `per_layer`; the report has them too), outputs, arena, stack, ELF sizes."""
    show.line(f"{p.board} ({p.where}): {p.total:,.0f} {p.timer_kind} per inference (mean of {p.windows} windows) "
              f"-> {p.measured_latency_ms:.3f} ms at {p.clock_hz / 1e6:g} MHz")
    show.line(f"  source: {p.count_source}")
    if p.prediction_error is not None:
        show.line(f"  predicted before export: {p.predicted_latency_ms:.3f} ms (latency table), "
                  f"{p.prediction_error * 100:+.2f}% from this measurement")
    show.line(f"  per-layer sum / total: {p.per_layer_sum_over_total:.4f}")
    for la in p.per_layer if per_layer else []:
        show.line(f"    {la['name']:<24} {la[p.timer_kind]:>12,.0f} {p.timer_kind}")
    show.line(f"  outputs on {p.windows} windows equal the host runtime and TFLite Micro: "
              f"{p.outputs_equal_host_runtime and p.outputs_equal_tflm}")
    show.line(f"  arena high-water {p.arena_bytes_measured:,} B (planned {p.arena_bytes_planned:,} B), "
              f"stack high-water {p.stack_high_water_bytes:,} B")
    show.line(f"  firmware: flash {format_size(p.flash_bytes)}, RAM {format_size(p.ram_bytes)} (ELF)")


@app.command()
@_handled
def boards() -> None:
    """List the known boards and the serial devices connected now."""
    from targets import boards as board_registry
    from targets import protocol

    for b in board_registry.all_boards().values():
        mark = " (default)" if b.default else ""
        out.print(f"{b.name}{mark}: {b.core}, {b.clock_hz / 1e6:g} MHz, {format_size(b.sram_bytes)} SRAM, "
                  f"{format_size(b.flash_bytes)} flash; emulated by QEMU {b.qemu.machine}", markup=False)
    ports = protocol.list_ports()
    if not ports:
        out.print("no serial devices connected (profiling runs on the emulated core without --port)", markup=False)
    for port in ports:
        hint = f" [{port.probe}]" if port.probe else ""
        out.print(f"  {port.device}: {port.description}{hint}", markup=False)


@app.command()
@_handled
def data(
    path: Annotated[str, typer.Argument(help="'basicmotions' or a .npz, .ts or .csv file.")] = "basicmotions",
    seed: Annotated[int, typer.Option(min=0, help="Seed of the split to show.")] = 0,
    val_subjects: Annotated[Optional[str], typer.Option(help=VAL_SUBJECTS_HELP)] = None,
) -> None:
    """Check a data file and show what micronas reads from it (shape, classes, split)."""
    from micronas.data import load_dataset, make_split

    ds = load_dataset(path)
    split = make_split(ds, seed=seed, val_subjects=_subjects(val_subjects))
    counts = {name: int((ds.y == i).sum()) for i, name in enumerate(ds.class_names)}
    channels = f"{ds.n_channels} channel{'s' if ds.n_channels != 1 else ''}"
    out.print(f"{ds.source}: {len(ds.X)} windows of {channels} x {ds.length} samples", markup=False)
    if ds.X_test is not None:
        out.print(f"test set in the file: {len(ds.X_test)} windows", markup=False)
    out.print("classes: " + ", ".join(f"{k} ({v})" for k, v in counts.items()), markup=False)
    out.print(f"split (seed {seed}): {len(split.train)} train / {len(split.val)} val / {len(split.test)} test"
              + (" by subject" if split.by_subject else ", stratified by class"), markup=False)


def _window_mean(text: str, allowed: tuple[str, ...] = ("auto", "keep", "remove")) -> str:
    """--window-mean checked up front: a bad value is a usage error before anything runs."""
    value = text.strip().lower()
    if value not in allowed:
        raise UsageError(f"--window-mean {text!r} is not a setting", f"use one of {', '.join(allowed)}")
    return value


def _scale(text: str) -> str:
    """--scale checked up front: a bad value is a usage error before anything runs."""
    from micronas import space_scale

    try:
        space_scale.parse(text)
    except ValueError as e:
        raise UsageError(str(e), "leave it out: auto sizes the space to the latency budget") from None
    return text


@app.command()
@_handled
def search(
    latency: Annotated[Optional[str], typer.Option(help="Latency budget, e.g. 50ms, 0.05s, 500us.")] = None,
    ram: Annotated[Optional[str], typer.Option(help=RAM_HELP + " Default: the board's SRAM.")] = None,
    flash: Annotated[Optional[str], typer.Option(help=FLASH_HELP + " Default: the board's flash.")] = None,
    target: Annotated[Optional[str], typer.Option(help="Board name (see `micronas boards`); default nucleo-l552ze-q.")]
    = None,
    data: Annotated[str, typer.Option(help="'basicmotions' (embedded) or a .npz, .ts or .csv file.")] = "basicmotions",
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run directory; default runs/search.")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue a killed search in this run directory.")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, max=10000, help=SEARCH_EPOCHS_HELP)] = None,
    final_epochs: Annotated[Optional[int], typer.Option(min=1, max=10000, help=FINAL_EPOCHS_HELP)] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seeds the split, the supernet and the search.")] = 0,
    val_subjects: Annotated[Optional[str], typer.Option(help=VAL_SUBJECTS_HELP)] = None,
    candidates: Annotated[int, typer.Option(min=1, max=64, help=(
        "Networks scored on validation at derivation: the most likely one and others drawn from the "
        "learned distribution (1: the most likely only)."))] = 8,
    scale: Annotated[str, typer.Option(help=(
        "Width multiplier of the search space, optionally +N extra cells (e.g. 2, 0.5, 4+1); 'auto' sizes "
        "it to the latency budget on the board (see docs/search.md)."))] = "auto",
    augment: Annotated[Optional[str], typer.Option(help=AUGMENT_HELP)] = None,
    window_mean: Annotated[str, typer.Option(help=WINDOW_MEAN_HELP + (
        " Default 'auto': decided on the validation split (micronas train's default network trained both "
        "ways); or keep, remove."))] = "auto",
    distill: Annotated[str, typer.Option(help=DISTILL_HELP + (
        " Default 'auto': 0.5 when the final training is short (training windows x --final-epochs up to "
        "250,000), else 0 (see docs/search.md)."))] = "auto",
    port: Annotated[Optional[str], typer.Option(
        help="pyserial URL of a real board for the final profile (and missing table entries); default: emulated.")]
    = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help=THREADS_HELP)] = None,
    device: Annotated[str, typer.Option(
        "--device", help="Where the final training runs: cpu (default, the tested path), cuda, or auto (cuda when "
                         "torch sees a GPU); the DNAS runs on the CPU.")] = "cpu",
    timeout: TIMEOUT = DEFAULT_TIMEOUT_S,
    retries: RETRIES = DEFAULT_RETRIES,
    quiet: QUIET = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout (progress on stderr).")]
    = False,
) -> None:
    """Search the most accurate network that fits, train, export and profile it: data to a measured model.

    Exits 1 when a budget is below what any network of the search space reaches (the message names
    the minimum), or when the found network exceeds a budget on the device.
    """
    from micronas import api
    from micronas import search as dnas

    if resume is not None and out_dir is not None and Path(resume) != Path(out_dir):
        raise UsageError(f"--resume {resume} and --out {out_dir} name different runs", "pass one of them")
    run = resume or out_dir or Path("runs/search")
    if resume is not None and not (Path(resume) / "search_checkpoint.pt").exists():
        raise UsageError(f"--resume {resume}: no search to resume there (no search_checkpoint.pt)",
                         "start one with --out")
    from micronas.progress import Progress

    scale = _scale(scale)
    link = _link(timeout, retries)
    plan = api.plan_budgets(Budgets.parse(latency=latency, ram=ram, flash=flash), target)
    show = Progress.for_cli(quiet, to_stderr=json_out)
    for line in plan.lines:
        show.line(line)

    def epoch(e: int, n: int, entry: dict) -> None:
        x = entry["expected"]
        show.counter("search", "search epochs", n).update(
            e + 1, f"val acc {entry['val_acc_most_likely']:.2f}, E[latency] {x['latency_ms']:.2f} ms")

    with show:
        r = api.search(data, run, plan.budgets, target=plan.board, port=port,
                       cfg=dnas.SearchConfig(epochs=epochs, seed=seed,
                                             val_subjects=_subjects(val_subjects), candidates=candidates,
                                             scale=scale, window_mean=_window_mean(window_mean)),
                       final_epochs=final_epochs,
                       train_overrides={**_augment(augment), **_distill(None if distill == "auto" else distill)},
                       on_stage=show.stage,
                       on_epoch=epoch, resume=resume is not None,
                       on_train_epoch=_train_counter(show), on_window=_window_counter(show), threads=threads,
                       link=link, device=device)
    if json_out:
        print(json.dumps(r.to_json(), indent=1))
        return
    p, m, pr = r.predicted, r.metrics, r.profile
    from micronas.report import arch_summary, interval_text

    show.line(f"found: {arch_summary(r.arch)}")
    for step in r.repairs:
        show.line(f"  derivation: {step}")
    q = m.qat or {}
    show.line(f"accuracy (test): fp32 {m.accuracy_fp32:.3f}, int8 {m.accuracy_int8:.3f} "
              f"({interval_text(m.accuracy_int8, m.test_windows)})"
              + (f" (quantisation-aware fine-tuning ran, kept {q['kept']})" if q.get("ran") else ""))
    if _litert_note(m):
        show.line(f"LiteRT vs TFLite Micro: max difference {m.litert_vs_tflm['max_lsb_diff']} LSB" + _litert_note(m))
    show.line(f"latency: predicted {p.latency_ms:.3f} ms, measured {pr.measured_latency_ms:.3f} ms "
              f"({pr.where}, {pr.timer_kind})")
    show.line(f"arena: predicted {p.arena_bytes:,} B, measured {pr.arena_bytes_measured:,} B; "
              f"flash: predicted {p.flash_bytes:,} B, ELF {pr.flash_bytes:,} B")
    show.line(f"run: {r.run} (search.json, arch.json, model_int8.tflite, c/, profile.json)")
    show.line(f"report: {r.report.html}")


@app.command()
@_handled
def sweep(
    latency: Annotated[str, typer.Option(help="Latency budgets, comma-separated, e.g. 5ms,10ms,20ms,50ms.")],
    ram: Annotated[str, typer.Option(help="RAM budgets, comma-separated, e.g. 64k,256k. " + SIZE_UNITS_HELP + ".")],
    out_dir: Annotated[Path, typer.Option("--out", help="Sweep folder: sweep.json, jobs/<name>/, report/ (re-run "
                                                        "the same command to resume).")],
    target: Annotated[Optional[str], typer.Option(help="Boards, comma-separated (see `micronas boards`); default "
                                                       "nucleo-l552ze-q.")] = None,
    seeds: Annotated[str, typer.Option(help="Seeds, comma-separated, e.g. 0,1,2.")] = "0",
    data: Annotated[str, typer.Option(help="'basicmotions' (embedded) or a .npz, .ts or .csv file.")] = "basicmotions",
    epochs: Annotated[Optional[int], typer.Option(min=1, max=10000, help=SEARCH_EPOCHS_HELP)] = None,
    final_epochs: Annotated[Optional[int], typer.Option(min=1, max=10000, help=FINAL_EPOCHS_HELP)] = None,
    candidates: Annotated[int, typer.Option(min=1, max=64, help="Candidates scored at derivation (as search).")] = 8,
    val_subjects: Annotated[Optional[str], typer.Option(help=VAL_SUBJECTS_HELP)] = None,
    augment: Annotated[Optional[str], typer.Option(help=AUGMENT_HELP)] = None,
    address: Annotated[Optional[str], typer.Option(help="An existing Ray cluster (ray://HOST:10001 or auto); "
                                                        "default: a local Ray started for the sweep.")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="CPUs of the local Ray: jobs at once (default: CPUs "
                                                               "available).")] = None,
    device: DEVICE = "cpu",
    quiet: QUIET = False,
) -> None:
    """Run one search per board x latency budget x RAM budget x seed on Ray; one report with a Pareto plot.

    Needs the scale extra (pip install 'micronas\\[scale]'). Exits 0 when every job met its budgets,
    1 when some budget cannot be met (reported, the others complete), 2 when a job failed.
    """
    from micronas import sweep as sweep_mod
    from micronas.progress import Progress

    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device {device!r} is not a device", "use one of auto, cpu, cuda")
    try:
        seed_list = tuple(int(v) for v in sweep_mod.parse_list(seeds, "--seeds", "0,1,2"))
    except ValueError:
        raise UsageError(f"--seeds {seeds!r} holds something that is not a whole number", "e.g. --seeds 0,1,2") from None
    if any(v < 0 for v in seed_list):
        raise UsageError(f"--seeds {seeds!r} holds a negative seed", "seeds are 0 or more")
    cfg = sweep_mod.SweepConfig(
        latencies=sweep_mod.parse_list(latency, "--latency", "5ms,10ms"),
        rams=sweep_mod.parse_list(ram, "--ram", "64k,256k"),
        targets=sweep_mod.parse_list(target, "--target", "nucleo-l552ze-q,nucleo-f446re") if target else (),
        seeds=seed_list, data=data, epochs=epochs, final_epochs=final_epochs, candidates=candidates,
        val_subjects=_subjects(val_subjects), augment=augment, device=device)
    if augment is not None:
        _augment(augment)  # a bad list fails now, not in every job
    from micronas.parallel import require_ray

    require_ray("micronas sweep")  # before anything is written
    show = Progress.for_cli(quiet)
    for line in sweep_mod.describe(cfg):
        show.line(line)
    r = sweep_mod.run_sweep(cfg, out_dir, address=address, workers=workers, on_stage=show.line)
    ok, bad, failed = r.count("ok"), r.count("infeasible") + r.count("over_budget"), r.count("failed")
    show.line(f"{len(r.jobs)} jobs: {ok} ok, {bad} over budget or infeasible, {failed} failed "
              f"({len(r.ran)} run now, {len(r.skipped)} kept from before; {r.wall_s:.0f} s)")
    show.line(f"report: {r.report_html}\n        {r.report_md}" + (f"\n  plot: {r.plot}" if r.plot else ""))
    if failed:
        names = [n for n, j in r.jobs.items() if j["status"] == "failed"]
        raise MicronasError(f"{failed} of {len(r.jobs)} sweep jobs failed: {', '.join(names)}",
                            f"the report and {Path(out_dir) / 'sweep.json'} say why; re-run the same command to "
                            "retry them (finished jobs are kept)")
    if bad:
        from micronas_base.errors import BudgetError

        raise BudgetError(f"{bad} of {len(r.jobs)} sweep jobs cannot meet their budgets (reported in the table)",
                          f"see {r.report_md}")


tables_app = typer.Typer(help="Latency lookup tables: measure every op of the search space on a board, show them.",
                         no_args_is_help=True)
app.add_typer(tables_app, name="tables")


@app.command()
@_handled
def report(
    run: Annotated[Path, typer.Argument(help="A run directory (from search, or train + export [+ profile]).")],
) -> None:
    """Write the run's report: RUN/report/report.html (self-contained) and report.md, with PNG plots."""
    from micronas import report as report_mod

    r = report_mod.build(run)
    out.print(f"report: {r.html}", markup=False)
    out.print(f"        {r.markdown}", markup=False)
    for p in r.plots:
        out.print(f"  plot: {p}", markup=False)


@tables_app.command("build")
@_handled
def tables_build(
    target: Annotated[Optional[str], typer.Option(help="Board name (see `micronas boards`); default nucleo-l552ze-q.")]
    = None,
    port: Annotated[Optional[str], typer.Option(
        help="pyserial URL of a real board running the table firmware; without it the board's core is emulated "
             "by QEMU.")] = None,
    data: Annotated[str, typer.Option(help="Take the input shape and class count from this data "
                                           "('basicmotions' or a file).")] = "basicmotions",
    channels: Annotated[Optional[int], typer.Option(help="Input channels (overrides --data).")] = None,
    length: Annotated[Optional[int], typer.Option(help="Input length in samples (overrides --data).")] = None,
    classes: Annotated[Optional[int], typer.Option(help="Number of classes (overrides --data).")] = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", help="Table file; default "
                                                     "./micronas-tables/<board>-<C>ch-<T>-<K>cls.json.")] = None,
    flash_cmd: Annotated[Optional[str], typer.Option(
        help="With --port: program the table firmware first with this command ({elf} / {bin} placeholders).")]
    = None,
    timeout: TIMEOUT = DEFAULT_TIMEOUT_S,
    retries: RETRIES = DEFAULT_RETRIES,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary (errors only).")] = False,
) -> None:
    """Measure every runtime op the search space can produce for one input shape (resumable).

    Every entry is measured with BENCH_OP over serial on one firmware image and saved as it
    arrives: a killed build continues where it stopped when run again.
    """
    from micronas import api
    from micronas.progress import Progress

    if target is not None and "," in target:
        _tables_build_many(target, port, data, channels, length, classes, out_path, quiet)
        return
    link = _link(timeout, retries)
    show = Progress.for_cli(quiet)
    with show:
        table = api.build_table(target, data, channels, length, classes, out_path, port=port, flash_cmd=flash_cmd,
                                on_stage=show.stage, progress=lambda done, total, key, elapsed: show.counter(
                                    "entries", "measuring table entries", total).update(done), link=link)
    if not quiet:
        _show_table(table)


def _tables_build_many(target: str, port: Optional[str], data: str, channels: Optional[int], length: Optional[int],
                       classes: Optional[int], out_dir: Optional[Path], quiet: bool) -> None:
    """`tables build --target B,C`: one emulated build per board in parallel (Ray or processes)."""
    from latency_tables import table as table_mod
    from micronas import sweep
    from micronas.parallel import ray_installed
    from micronas.tables import build_tables_for

    if port is not None:
        raise UsageError(f"--port {port} with --target {target}: a serial port is one board",
                         "build a real board's table alone (--target NAME --port URL); several boards are emulated")
    boards = list(sweep.parse_list(target, "--target", "nucleo-l552ze-q,nucleo-f446re"))
    if not quiet:
        out.print(f"building {len(boards)} tables in parallel on the emulated cores "
                  f"({'Ray tasks' if ray_installed() else 'a process pool'}); each resumes on its own", markup=False)
    results = build_tables_for(boards, data, channels, length, classes, out_dir)
    worst = 0
    for r in results:
        if r.error is None:
            if not quiet:
                _show_table(table_mod.load(Path(r.path)))
        else:
            worst = max(worst, r.exit_code)
            err.print(f"error: {r.board}: {r.error}" + (f"\n  hint: {r.hint}" if r.hint else ""), markup=False)
    if worst:
        raise typer.Exit(worst)


def _show_table(table) -> None:
    import statistics

    m = table.metadata
    out.print(table.describe(), markup=False)
    out.print(f"  {m['where']}, {m['core']} at {m['clock_hz'] / 1e6:g} MHz; counts are {m['timer_kind']}: "
              f"{m['count_source']}", markup=False)
    out.print(f"  built {m['date']} by micronas {m['micronas_version']} (runtime {m['runtime_version']}, "
              f"{m['runtime_hash'][:12]}), {m['compiler']}", markup=False)
    out.print(f"  command: {m['command']}", markup=False)
    if "build_seconds" in m:
        out.print(f"  {len(table.entries)} entries measured in {m.get('measure_seconds', 0):.0f} s; whole build "
                  f"{m['build_seconds']:.0f} s (enumeration, firmware builds, overhead, flash model)", markup=False)
    if table.overhead is not None:
        out.print(f"  fixed per-inference overhead: {table.overhead:,.0f} {m['timer_kind']} "
                  f"(per probe network: {', '.join(f'{o:,.0f}' for o in m.get('overhead_per_probe', []))})",
                  markup=False)
    fm = m.get("flash_model")
    if fm:
        out.print(f"  flash model: {fm['base_bytes']:,.0f} B + constants + {fm['per_layer_bytes']:.1f} B per layer",
                  markup=False)
    by_op: dict[str, list[float]] = {}
    for key, v in table.entries.items():
        by_op.setdefault(key.split("(")[0], []).append(v)
    out.print(f"  {'op':<16} {'entries':>7} {'min':>12} {'median':>12} {'max':>12}", markup=False)
    for op, vals in sorted(by_op.items()):
        out.print(f"  {op:<16} {len(vals):>7} {min(vals):>12,.0f} {statistics.median(vals):>12,.0f} "
                  f"{max(vals):>12,.0f}", markup=False)


@tables_app.command("show")
@_handled
def tables_show(
    path: Annotated[Optional[Path], typer.Argument(help="A table file; without it, list the tables found.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the table's metadata (and entries) or the list "
                                                          "as JSON.")] = False,
) -> None:
    """Summarise a latency table, or list the tables micronas finds (yours, then the shipped ones)."""
    from latency_tables import table as table_mod

    if path is not None:
        table = table_mod.load(path, allow_stale=True)
        if json_out:
            print(json.dumps({"path": str(path), "metadata": table.metadata, "overhead": table.overhead,
                              "entries": table.entries}, indent=1))
        else:
            _show_table(table)
        return
    from micronas import api

    found = api.list_tables()
    if json_out:
        print(json.dumps([f.to_json() for f in found], indent=1))
        return
    for f in found:
        out.print(f"{f.path}: {f.summary}", markup=False)
    if not found:
        out.print("no latency tables found in " + ", ".join(str(d) for d in table_mod.table_dirs()), markup=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
