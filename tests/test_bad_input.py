"""A bad-input sweep: user mistakes on every command, run through the real CLI in a subprocess.

Each case asserts what a user sees when they get something wrong:

1. the exit code of the contract (0 ok, 1 a budget cannot be met or the device is over budget,
   2 usage / configuration / data / internal error, 130 interrupted by Ctrl-C);
2. no Python traceback on stdout or stderr, and no "internal error";
3. a message that fits on one screen, names the offending value and says what to do next
   (a "hint:" line for micronas errors, "--help" for command-line usage errors);
4. nothing half-made left behind: the directory the command ran in (and the run directory it
   was pointed at) is the same before and after, apart from artefacts a finished stage may keep
   (listed per case), and no temporary file appears.

Cases that currently fail because of a product defect assert the correct behaviour and are
marked `xfail(strict=True)` with the defect in the reason.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import make_tiny, toolchain

MICRONAS = [sys.executable, "-m", "micronas"]
EXIT_OK, EXIT_BUDGET, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
MAX_LINES = 25  # one screen
TMP = "_tmp"  # TMPDIR of the CLI under test (internal-error logs go there): not an artefact
RESUME_LINE = "re-run the same command to resume"


# ---- running the CLI -------------------------------------------------------------------------


def cli_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MICRONAS_TABLES"}
    tmp = root / TMP
    tmp.mkdir(exist_ok=True)
    env.update(COLUMNS="200", TMPDIR=str(tmp))
    return env


def run_cli(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*MICRONAS, *args], cwd=cwd, env=cli_env(cwd), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` (but TMPDIR) -> "dir" or the sha256 of its content."""
    found = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel == TMP or rel.startswith(TMP + "/"):
            continue
        found[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def assert_nothing_left(before: dict[str, str], after: dict[str, str], allowed: tuple[str, ...] = ()) -> None:
    """Nothing created, changed or removed, except new paths under an `allowed` prefix; no temp files."""
    def ok(rel: str) -> bool:
        return any(rel == a or rel.startswith(a.rstrip("/") + "/") for a in allowed)

    new = sorted(set(after) - set(before))
    assert not [n for n in new if n.endswith(".tmp") or ".partial" in n], f"temporary files left: {new}"
    assert [n for n in new if not ok(n)] == [], f"left behind: {[n for n in new if not ok(n)]}"
    assert sorted(set(before) - set(after)) == [], "removed"
    changed = [k for k in before if k in after and before[k] != after[k] and not ok(k)]
    assert changed == [], f"changed: {changed}"


def log_free(stderr: str) -> list[str]:
    """stderr without the log lines (INFO:/WARNING:) that may precede a message."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not re.match(r"(INFO|WARNING): ", ln)]


def assert_user_message(p: subprocess.CompletedProcess, code: int, needles: tuple[str, ...], hint: str | None,
                        absent: tuple[str, ...] = ()) -> None:
    shown = f"exit {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"
    assert p.returncode == code, shown
    assert "Traceback" not in p.stdout + p.stderr, shown
    assert "internal error" not in p.stderr, shown
    lines = len(p.stderr.splitlines()) + (len(p.stdout.splitlines()) if code != EXIT_OK else 0)
    assert lines <= MAX_LINES, f"{lines} lines; " + shown
    for needle in needles:
        assert needle in p.stderr, f"{needle!r} not in stderr; " + shown
    for bad in absent:
        assert bad not in p.stderr, f"{bad!r} in stderr; " + shown
    if hint == "hint":  # a micronas error: what to do next, on its own line
        assert re.search(r"^\s+hint: \S", p.stderr, re.M), "no hint line; " + shown
    elif hint == "help":  # a command-line usage error (click): points at --help
        assert "--help" in p.stderr, shown


# ---- the cases -------------------------------------------------------------------------------


@dataclasses.dataclass
class Ctx:
    """What a case's set-up sees: the working directory, the tiny data and arch, a run copy."""

    work: Path
    tiny: Path
    arch: Path
    run: Path | None
    vars: dict[str, str]
    keep: list[Any] = dataclasses.field(default_factory=list)  # objects (sockets, fds) alive for the run


@dataclasses.dataclass
class Case:
    args: list[str]
    code: int
    needles: tuple[str, ...]
    hint: str | None = "hint"
    setup: Callable[[Ctx], None] | None = None
    run: bool = False  # needs a copy of the exported tiny run at ./run
    allowed: tuple[str, ...] = ()  # artefacts a finished stage may leave
    absent: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    timeout: float = 180


def _npz(name: str, **arrays: np.ndarray) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        np.savez(ctx.work / name, **arrays)
    return setup


def _npz_lying_header(name: str, shape: tuple[int, ...]) -> Callable[[Ctx], None]:
    """An npz whose X member's header claims `shape` but holds only the tiny data's bytes."""
    def setup(ctx: Ctx) -> None:
        import io
        import zipfile

        x = io.BytesIO()
        np.lib.format.write_array_header_1_0(x, {"descr": "<f4", "fortran_order": False, "shape": shape})
        x.write(X_TINY.astype("<f4").tobytes())
        y = io.BytesIO()
        np.save(y, Y_TINY)
        with zipfile.ZipFile(ctx.work / name, "w") as z:
            z.writestr("X.npy", x.getvalue())
            z.writestr("y.npy", y.getvalue())
    return setup


def _deep_arch(name: str, cells: int) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        arch = {"format": "micronas.arch/1", "input_channels": 4, "input_length": 37, "num_classes": 3,
                "stem": {"op": "conv", "out": 8, "kernel": 3, "stride": 1},
                "cells": [{"op": "conv", "out": 8, "kernel": 3, "stride": 1}] * cells}
        (ctx.work / name).write_text(json.dumps(arch))
    return setup


def _text(name: str, text: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        (ctx.work / name).write_text(text)
    return setup


def _random_bytes(name: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        (ctx.work / name).write_bytes(np.random.default_rng(7).bytes(4096))
    return setup


def _run_file(name: str, content: str | None) -> Callable[[Ctx], None]:
    """Replace (or, with None, delete) a file or folder of the run copy."""
    def setup(ctx: Ctx) -> None:
        p = ctx.run / name
        if content is None:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        else:
            p.write_text(content)
    return setup


def _steps(*fns: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        for fn in fns:
            fn(ctx)
    return setup


def _data_moved(ctx: Ctx) -> None:
    config = json.loads((ctx.run / "config.json").read_text())
    config["data"]["spec"] = str(ctx.work / "moved-away.npz")
    (ctx.run / "config.json").write_text(json.dumps(config))


def _data_changed(ctx: Ctx) -> None:
    X, y = make_tiny()
    np.savez(ctx.work / "edited.npz", X=X * 2, y=np.array(["low", "mid", "high"])[y])
    config = json.loads((ctx.run / "config.json").read_text())
    config["data"]["spec"] = str(ctx.work / "edited.npz")
    (ctx.run / "config.json").write_text(json.dumps(config))


def _busy_pty(ctx: Ctx) -> None:
    """A serial device another program holds (a serial monitor): a pty slave we flock."""
    master, slave = os.openpty()
    name = os.ttyname(slave)
    held = os.open(name, os.O_RDWR | os.O_NOCTTY)
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    ctx.keep += [master, slave, held]
    ctx.vars["port"] = name


def _silent_socket(ctx: Ctx) -> None:
    """A TCP port that accepts the connection but never answers (no micronas firmware there)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    ctx.keep.append(srv)
    ctx.vars["port"] = f"socket://127.0.0.1:{srv.getsockname()[1]}"


def _table(name: str, edit: Callable[[dict], None] | None = None, shipped: str = "nucleo-f446re-6ch-100-4cls.json",
           where: str = ".") -> Callable[[Ctx], None]:
    """A copy of a shipped latency table, edited, at `where`/`name`."""
    def setup(ctx: Ctx) -> None:
        from latency_tables.predict import table_dirs

        d = json.loads((table_dirs()[-1] / shipped).read_text())
        if edit:
            edit(d)
        (ctx.work / where).mkdir(parents=True, exist_ok=True)
        (ctx.work / where / name).write_text(json.dumps(d))
    return setup


def _stale(d: dict) -> None:
    d["metadata"].update(runtime_hash="0" * 64, runtime_version="0")


def _bad_key(d: dict) -> None:
    d["entries"]["FOO(bar)"] = 1.0


def _negative_count(d: dict) -> None:
    d["entries"][next(iter(d["entries"]))] = -3


def _foreign_journal(ctx: Ctx) -> None:
    (ctx.work / "t.json.partial.jsonl").write_text(
        json.dumps({"journal": "micronas.latency_table_journal/1", "board": "nucleo-f446re"}) + "\n")


def _foreign_folder(ctx: Ctx) -> None:
    (ctx.work / "project").mkdir()
    (ctx.work / "project" / "notes.txt").write_text("my notes\n")


def _interrupted_run_with_corrupt_checkpoint(ctx: Ctx) -> None:
    for name in ("model.pt", "train_log.json"):
        (ctx.run / name).unlink()
    (ctx.run / "checkpoint.pt").write_bytes(np.random.default_rng(3).bytes(3000))


def _tampered_model(ctx: Ctx) -> None:
    """model.pt replaced by a pickle that names a global: torch's weights-only loader refuses it,
    with advice to set weights_only=False (which would run the file's code)."""
    import datetime

    import torch

    torch.save({"stem.weight": datetime.date(2020, 1, 1)}, ctx.run / "model.pt")


def _truncated_model(ctx: Ctx) -> None:
    p = ctx.run / "model.pt"
    p.write_bytes(p.read_bytes()[:300])


def bug(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(reason="BUG: " + reason, strict=True)


X_TINY, Y_TINY = make_tiny()
LABELS = np.array(["low", "mid", "high"])[Y_TINY]
NAN_X = X_TINY.copy()
NAN_X[3, 1, 7] = np.nan
SUBJECTS = np.array([f"s{i % 6}" for i in range(len(Y_TINY))])
NO_LABEL_CSV = "window,acc_x,acc_y\n" + "".join(f"w{i // 5},{i * 0.1:.1f},{i * 0.2:.1f}\n" for i in range(20))
RAGGED_CSV = "window,label,a\nw0,x,1\nw0,x,2\nw1,y,3\n"
NON_NUMERIC_CSV = "window,label,a\nw0,x,1\nw0,x,oops\nw1,y,3\nw1,y,4\n"
SEARCH = ["search", "--out", "s"]  # every search case: the run directory s must not appear
SIZE_HINT = "e.g. 256k"
DID_YOU_MEAN = "did you mean 'nucleo-f446re'?"
GCC, QEMU = "arm-none-eabi-gcc", "qemu-system-arm"
PORT_ARTEFACT = ("run/firmware",)  # the firmware is built (a finished stage) before the port is opened

CASES = [
    # -- budgets ------------------------------------------------------------------------------
    pytest.param(Case([*SEARCH, "--latency", "fast"], 2, ("latency budget 'fast'", "not a valid quantity")),
                 id="search-latency-is-a-word"),
    pytest.param(Case([*SEARCH, "--latency", "-5ms"], 2, ("'-5ms'", "must be positive")),
                 id="search-latency-negative"),
    pytest.param(Case([*SEARCH, "--latency", "0"], 2, ("latency budget '0'", "has no unit")),
                 id="search-latency-zero-without-unit"),
    pytest.param(Case([*SEARCH, "--latency", "0ms"], 2, ("latency budget '0ms'", "out of range")),
                 id="search-latency-zero-ms"),
    pytest.param(Case(["profile", "run", "--latency", "fast"], 2, ("latency budget 'fast'",), run=True),
                 id="profile-latency-is-a-word"),
    pytest.param(Case(["profile", "run", "--timeout", "0"], 2, ("--timeout 0.0; expected seconds in (0, 3600]",),
                      run=True), id="profile-zero-timeout"),
    pytest.param(Case(["tables", "build", "--retries", "-2"], 2, ("--retries -2; expected an integer in [0, 100]",)),
                 id="tables-build-negative-retries"),
    pytest.param(Case([*SEARCH, "--ram", "12parsecs"], 2, ("RAM budget '12parsecs'", "unknown unit 'parsecs'",
                                                          SIZE_HINT)), id="search-ram-unknown-unit"),
    pytest.param(Case([*SEARCH, "--ram", "0"], 2, ("RAM budget '0'", "out of range")), id="search-ram-zero"),
    pytest.param(Case(["export", "run", "--flash", "1e99"], 2, ("flash budget '1e99'", "out of range"), run=True),
                 id="export-flash-1e99"),
    pytest.param(Case(["export", "run", "--ram", "1.3k"], 2, ("RAM budget '1.3k'", "not a whole number of bytes"),
                      run=True), id="export-ram-fraction-of-a-byte"),
    pytest.param(Case([*SEARCH, "--target", "nucleo-f446re", "--latency", "50ms", "--ram", "256k"], 2,
                      ("262,144 bytes", "more than nucleo-f446re has (131,072 bytes")),
                 id="search-ram-more-than-the-board-has"),
    pytest.param(Case(["profile", "run", "--ram", "4M"], 2, ("4,194,304 bytes", "more than nucleo-l552ze-q has"),
                      run=True), id="profile-ram-more-than-the-board-has"),
    pytest.param(Case([*SEARCH, "--latency", "50ms", "--scale", "7"], 2,
                      ("--scale '7'", "width multiplier from 0.25, 0.375", "auto sizes the space")),
                 id="search-scale-not-on-the-ladder"),
    pytest.param(Case([*SEARCH, "--latency", "50ms", "--window-mean", "sometimes"], 2,
                      ("--window-mean 'sometimes'", "use one of auto, keep, remove")),
                 id="search-window-mean-not-a-setting"),
    pytest.param(Case(["train", "--out", "t", "--window-mean", "auto"], 2,
                      ("--window-mean 'auto'", "use one of keep, remove")),
                 id="train-window-mean-auto-is-for-search"),
    # -- boards -------------------------------------------------------------------------------
    pytest.param(Case([*SEARCH, "--target", "nucleo-f44re", "--latency", "50ms"], 2,
                      ("unknown board 'nucleo-f44re'", DID_YOU_MEAN)), id="search-unknown-board"),
    pytest.param(Case(["profile", "run", "--target", "nucleo-f44re"], 2, ("unknown board 'nucleo-f44re'", DID_YOU_MEAN),
                      run=True), id="profile-unknown-board"),
    pytest.param(Case(["tables", "build", "--target", "nucleo-f44re", "--channels", "4", "--length", "37",
                       "--classes", "3"], 2, ("unknown board 'nucleo-f44re'", DID_YOU_MEAN)),
                 id="tables-build-unknown-board"),
    # -- data ---------------------------------------------------------------------------------
    pytest.param(Case(["data", "nope.npz"], 2, ("nope.npz: file not found",)), id="data-missing-file"),
    pytest.param(Case(["train", "--data", "random.npz", "--out", "r"], 2, ("random.npz: is not a valid .npz file",),
                      setup=_random_bytes("random.npz")), id="train-corrupt-npz"),
    pytest.param(Case(["data", "random.npz"], 2, ("random.npz: is not a valid .npz file",),
                      setup=_random_bytes("random.npz")), id="data-corrupt-npz"),
    pytest.param(Case(["data", "x4d.npz"], 2, ("X has shape (10, 2, 3, 4)", "(N, C, T)"),
                      setup=_npz("x4d.npz", X=np.zeros((10, 2, 3, 4), np.float32), y=np.arange(10) % 2)),
                 id="data-npz-wrong-rank"),
    pytest.param(Case(["data", "short_y.npz"], 2, ("X has 60 windows but 55 labels",),
                      setup=_npz("short_y.npz", X=X_TINY, y=Y_TINY[:55])), id="data-npz-fewer-labels-than-windows"),
    pytest.param(Case(["data", "nan.npz"], 2, ("nan.npz: X contains 1 NaN/inf", "window 3, channel 1, step 7"),
                      setup=_npz("nan.npz", X=NAN_X, y=Y_TINY)), id="data-npz-nan"),
    pytest.param(Case(["train", "--data", "one.npz", "--out", "r"], 2, ("only one class ('0')",),
                      setup=_npz("one.npz", X=X_TINY, y=np.zeros_like(Y_TINY))), id="train-npz-one-class"),
    pytest.param(Case(["data", "huge.npz"], 2, ("array 'X' claims shape (1099511627776, 6, 40) of float32",
                                                "(1,055,531,162,664,960 bytes)"),
                      setup=_npz_lying_header("huge.npz", (1 << 40, 6, 40))), id="data-npz-header-claims-a-petabyte"),
    pytest.param(Case(["train", "--data", "huge.npz", "--out", "r"], 2, ("array 'X' claims shape",),
                      setup=_npz_lying_header("huge.npz", (1 << 40, 6, 40))), id="train-npz-header-claims-a-petabyte"),
    pytest.param(Case(["data", "nox.npz"], 2, ("has no array 'X' (arrays found: data, y)",),
                      setup=_npz("nox.npz", data=X_TINY, y=Y_TINY)), id="data-npz-without-X"),
    pytest.param(Case(["data", "nolabel.csv"], 2, ("no 'label' column", "header: window, acc_x, acc_y"),
                      setup=_text("nolabel.csv", NO_LABEL_CSV)), id="data-csv-without-label-column"),
    pytest.param(Case(["train", "--data", "nolabel.csv", "--out", "r"], 2, ("no 'label' column",),
                      setup=_text("nolabel.csv", NO_LABEL_CSV)), id="train-csv-without-label-column"),
    pytest.param(Case(["data", "ragged.csv"], 2, ("window 'w1' (line 4) has 1 row(s)",),
                      setup=_text("ragged.csv", RAGGED_CSV)), id="data-csv-ragged-windows"),
    pytest.param(Case(["data", "nonnum.csv"], 2, ("line 3, column 'a': non-numeric value 'oops'",),
                      setup=_text("nonnum.csv", NON_NUMERIC_CSV)), id="data-csv-non-numeric"),
    pytest.param(Case(["data", "empty.csv"], 2, ("empty.csv: the file is empty",), setup=_text("empty.csv", "")),
                 id="data-csv-empty"),
    pytest.param(Case(["data", "notes.txt"], 2, ("unsupported file type '.txt'",), setup=_text("notes.txt", "hi\n")),
                 id="data-unsupported-suffix"),
    pytest.param(Case(["data", "subj.npz", "--val-subjects", "s9"], 2, ("subject(s) 's9'", "s0, s1, s2"),
                      setup=_npz("subj.npz", X=X_TINY, y=LABELS, subjects=SUBJECTS)), id="data-unknown-val-subject"),
    pytest.param(Case(["train", "--data", "subj.npz", "--arch", "{arch}", "--val-subjects", "s9", "--out", "r"], 2,
                      ("subject(s) 's9'", "s0, s1, s2"), setup=_npz("subj.npz", X=X_TINY, y=LABELS, subjects=SUBJECTS)),
                 id="train-unknown-val-subject"),
    pytest.param(Case(["search", "--data", "subj.npz", "--val-subjects", "s9", "--latency", "50ms", "--out", "s"], 2,
                      ("subject(s) 's9'",), setup=_npz("subj.npz", X=X_TINY, y=LABELS, subjects=SUBJECTS)),
                 id="search-unknown-val-subject"),
    pytest.param(Case(["train", "--data", "{tiny}", "--arch", "{arch}", "--distill", "1.5", "--out", "r"], 2,
                      ("--distill 1.5 is not a weight between 0 and 1",)), id="train-distill-out-of-range"),
    pytest.param(Case(["search", "--latency", "50ms", "--distill", "-0.1", "--out", "s"], 2,
                      ("--distill -0.1 is not a weight between 0 and 1",)), id="search-distill-out-of-range"),
    pytest.param(Case(["data", "{tiny}", "--val-subjects", "3"], 2, ("validation subjects 3", "has no subject ids")),
                 id="data-val-subjects-without-subjects"),
    pytest.param(Case(["train", "--data", "{tiny}", "--arch", "{arch}", "--val-subjects", "3", "--out", "r"], 2,
                      ("validation subjects 3", "has no subject ids")),
                 id="train-val-subjects-without-subjects"),
    pytest.param(Case(["data", "subj.npz", "--val-subjects", ","], 2, ("--val-subjects ',' names no subject",),
                      setup=_npz("subj.npz", X=X_TINY, y=LABELS, subjects=SUBJECTS)), id="data-val-subjects-empty"),
    pytest.param(Case(["data", "subj.npz", "--val-subjects", "s0,s1,s2,s3,s4,s5"], 2, ("are every subject",),
                      setup=_npz("subj.npz", X=X_TINY, y=LABELS, subjects=SUBJECTS)),
                 id="data-val-subjects-are-all-subjects"),
    # -- arch and --out -------------------------------------------------------------------------
    pytest.param(Case(["train", "--data", "basicmotions", "--arch", "{arch}", "--out", "r"], 2,
                      ("expects 4 channels x 37 samples", "the data has 6 x 100")), id="train-arch-for-other-data"),
    pytest.param(Case(["train", "--data", "{tiny}", "--arch", "nosuch.json", "--out", "r"], 2,
                      ("arch file nosuch.json does not exist",)), id="train-arch-file-missing"),
    pytest.param(Case(["train", "--data", "{tiny}", "--arch", "broken.json", "--out", "r"], 2,
                      ("broken.json: not valid JSON", "line 2"), hint=None,
                      setup=_text("broken.json", '{"format": "micronas.arch/1", "stem": \n')),
                 id="train-arch-file-corrupt"),
    pytest.param(Case(["train", "--data", "{tiny}", "--out", "notes.txt"], 2,
                      ("--out notes.txt exists and is not a directory",), setup=_text("notes.txt", "hi\n")),
                 id="train-out-is-a-file"),
    pytest.param(Case(["train", "--data", "{tiny}", "--out", "project"], 2,
                      ("--out project is a non-empty folder that is not a micronas run",), setup=_foreign_folder),
                 id="train-out-is-someone-elses-folder"),
    pytest.param(Case(["train", "--data", "{tiny}", "--checkpoint", "worst", "--out", "r"], 2,
                      ("--checkpoint 'worst'", "use last or best-val")), id="train-unknown-checkpoint-rule"),
    pytest.param(Case(["train", "--data", "{tiny}", "--arch", "{arch}", "--epochs", "16", "--out", "run"], 2,
                      ("run already holds a model trained with other settings", "--force"), run=True),
                 id="train-into-a-run-trained-otherwise"),
    pytest.param(Case(["train", "--data", "{tiny}", "--arch", "{arch}", "--epochs", "15", "--out", "run"], 2,
                      ("run/checkpoint.pt is corrupt", "rm run/checkpoint.pt"), run=True,
                      setup=_interrupted_run_with_corrupt_checkpoint),
                 id="train-resume-from-corrupt-checkpoint"),
    # -- run directories ------------------------------------------------------------------------
    pytest.param(Case(["profile", "no/such/run"], 2, ("run directory no/such/run does not exist",)),
                 id="profile-missing-run"),
    pytest.param(Case(["report", "no/such/run"], 2, ("run directory no/such/run does not exist",)),
                 id="report-missing-run"),
    pytest.param(Case(["profile", "run/model_int8.tflite"], 2, ("run/model_int8.tflite",), run=True,
                      absent=("does not exist",)),
                 id="profile-given-a-file-of-the-run"),
    pytest.param(Case(["export", "run"], 2, ("run has no trained model (model.pt)", "micronas train --out run"),
                      run=True, setup=_run_file("model.pt", None)), id="export-run-without-model"),
    pytest.param(Case(["export", "run"], 2, ("run/model.pt is truncated, corrupt or not a micronas model",
                                             "micronas train --out run --force"), run=True, setup=_tampered_model,
                      absent=("weights_only", "Weights only load failed", "Unpickl", "datetime")),
                 id="export-run-with-a-tampered-model-pt"),
    pytest.param(Case(["export", "run"], 2, ("run/model.pt is truncated, corrupt or not a micronas model",),
                      run=True, setup=_truncated_model, absent=("weights_only", "PytorchStreamReader")),
                 id="export-run-with-a-truncated-model-pt"),
    pytest.param(Case(["profile", "run", "--port", "socket://127.0.0.1:9", "--flash-cmd", "./flash.sh {{elf}}"], 2,
                      ("flash tool ./flash.sh is not executable", "chmod +x ./flash.sh"), run=True,
                      setup=_text("flash.sh", "#!/bin/sh\nexit 0\n"), allowed=("run/firmware",), tools=(GCC,)),
                 id="profile-flash-cmd-not-executable"),
    pytest.param(Case(["profile", "run"], 2, ("run has not been exported", "micronas export run"), run=True,
                      setup=_steps(_run_file("metrics.json", None), _run_file("c", None))),
                 id="profile-run-not-exported"),
    pytest.param(Case(["report", "run"], 2, ("run has no metrics.json", "micronas export run"), run=True,
                      setup=_steps(_run_file("metrics.json", None), _run_file("c", None))),
                 id="report-run-not-exported"),
    pytest.param(Case(["profile", "run"], 2, ("run/metrics.json is corrupt",), run=True,
                      setup=_run_file("metrics.json", '{"accuracy_fp32": 0.9, "budg')),
                 id="profile-corrupt-metrics-json"),
    pytest.param(Case(["report", "run"], 2, ("run/metrics.json is corrupt",), run=True,
                      setup=_run_file("metrics.json", '{"accuracy_fp32": 0.9, "budg')),
                 id="report-corrupt-metrics-json"),
    pytest.param(Case(["profile", "run"], 2, ("run/metrics.json",), run=True,
                      setup=_run_file("metrics.json", "[1, 2, 3]")),
                 id="profile-metrics-json-not-an-object"),
    pytest.param(Case(["report", "run"], 2, ("run/metrics.json",), run=True,
                      setup=_run_file("metrics.json", "[1, 2, 3]")),
                 id="report-metrics-json-not-an-object"),
    pytest.param(Case(["export", "run"], 2, ("run/config.json is corrupt",), run=True,
                      setup=_run_file("config.json", "{not json\n")), id="export-corrupt-config-json"),
    pytest.param(Case(["report", "run"], 2, ("run/config.json is corrupt",), run=True,
                      setup=_run_file("config.json", "{not json\n")), id="report-corrupt-config-json"),
    pytest.param(Case(["report", "run"], 2, ("run was written in run format 'micronas.run/0'",
                                             "reads 'micronas.run/1'"), run=True,
                      setup=_run_file("run.json", '{"format": "micronas.run/0", "micronas_version": "0.0.1"}')),
                 id="report-run-of-an-older-format"),
    pytest.param(Case(["train", "--data", "{tiny}", "--arch", "{arch}", "--epochs", "15", "--out", "run"], 2,
                      ("run was written in run format 'micronas.run/0'",), run=True,
                      setup=_run_file("run.json", '{"format": "micronas.run/0", "micronas_version": "0.0.1"}')),
                 id="train-into-a-run-of-an-older-format"),
    pytest.param(Case(["profile", "run"], 2, ("run/run.json is corrupt",), run=True,
                      setup=_run_file("run.json", "garbage")),
                 id="profile-corrupt-run-json"),
    pytest.param(Case(["export", "run"], 2, ("moved-away.npz",), run=True, setup=_data_moved,
                      absent=("give 'basicmotions' or a file",)),
                 id="export-run-whose-data-was-moved"),
    pytest.param(Case(["export", "run"], 2, ("edited.npz changed since run was trained", "--force"), run=True,
                      setup=_data_changed), id="export-run-whose-data-changed"),
    # -- ports ----------------------------------------------------------------------------------
    pytest.param(Case(["profile", "run", "--port", "/dev/ttyNOPE"], 2, ("cannot open /dev/ttyNOPE",
                                                                         "micronas boards"),
                      run=True, allowed=PORT_ARTEFACT, tools=(GCC,)), id="profile-port-does-not-exist"),
    pytest.param(Case(["profile", "run", "--port", "socket://127.0.0.1:1"], 2,
                      ("cannot open socket://127.0.0.1:1", "Connection refused"), run=True, allowed=PORT_ARTEFACT,
                      tools=(GCC,)), id="profile-port-refuses"),
    pytest.param(Case(["profile", "run", "--port", "{port}"], 2, ("cannot open /dev/", "exclusively lock",
                                                                   "port is busy"),
                      run=True, setup=_busy_pty, allowed=PORT_ARTEFACT, tools=(GCC,)), id="profile-port-busy"),
    # the hint names --timeout now that profile has it (it once named a flag that did not exist)
    pytest.param(Case(["profile", "run", "--port", "{port}"], 2, ("no valid reply to HELLO from socket://127.0.0.1:",
                                                                 "raise --timeout"),
                      run=True, setup=_silent_socket, allowed=PORT_ARTEFACT, tools=(GCC,)),
                 id="profile-port-never-answers"),
    pytest.param(Case(["profile", "run", "--port", "foo://bar"], 2, ("cannot open foo://bar", "socket://host:port"),
                      run=True, allowed=PORT_ARTEFACT, tools=(GCC,)), id="profile-port-url-malformed"),
    pytest.param(Case(["profile", "run", "--port", "socket://127.0.0.1:1", "--flash-cmd", "no-such-flasher {{elf}}"],
                      2, ("flash tool 'no-such-flasher' not found",), run=True, allowed=PORT_ARTEFACT, tools=(GCC,)),
                 id="profile-flash-tool-missing"),
    pytest.param(Case(["profile", "run", "--latency", "1us", "--windows", "2"], 1,
                      ("exceeds the latency budget 0.001 ms",), run=True,
                      allowed=("run/firmware", "run/profile.json"), tools=(GCC, QEMU)),
                 id="profile-device-over-latency-budget"),
    # -- latency tables -------------------------------------------------------------------------
    pytest.param(Case(["tables", "show", "cut.json"], 2, ("cut.json: not a valid JSON latency table",),
                      setup=_text("cut.json", '{"format": "micronas.latency_table/1", "metadata": {"board": "nu')),
                 id="tables-show-truncated-json"),
    pytest.param(Case(["tables", "show", "run/metrics.json"], 2, ("run/metrics.json: format = None",
                                                                  "'micronas.latency_table/1'"), run=True),
                 id="tables-show-a-file-that-is-no-table"),
    pytest.param(Case(["tables", "show", "stale.json"], 0, ("stale.json was measured with another version of the C "
                                                            "runtime",), hint=None, setup=_table("stale.json", _stale)),
                 id="tables-show-table-of-another-runtime-warns"),
    pytest.param(Case(["tables", "show", "badkey.json"], 2, ("badkey.json", "FOO(bar)"),
                      setup=_table("badkey.json", _bad_key)),
                 id="tables-show-table-with-a-bad-key"),
    pytest.param(Case(["tables", "show", "neg.json"], 2, ("neg.json: entry", "= -3; expected a count >= 0"),
                      setup=_table("neg.json", _negative_count)), id="tables-show-negative-count"),
    pytest.param(Case(["tables", "show", "nope.json"], 2, ("latency table nope.json does not exist",)),
                 id="tables-show-missing-file"),
    pytest.param(Case(["tables", "show", "tables"], 2, ("tables",), absent=("does not exist",),
                      setup=lambda ctx: (ctx.work / "tables").mkdir()),
                 id="tables-show-a-directory"),
    pytest.param(Case(["tables", "build", "--channels", "0", "--length", "37", "--classes", "3"], 2,
                      ("--channels = 0; expected an integer in [1, 256]",), hint=None),
                 id="tables-build-zero-channels"),
    pytest.param(Case(["tables", "build", "--channels", "4", "--length", "37", "--classes", "3", "--out", "t.json"], 2,
                      ("t.json.partial.jsonl is a partial table build for another configuration",
                       "rm t.json.partial.jsonl"), setup=_foreign_journal),
                 id="tables-build-over-a-foreign-partial-build"),
    pytest.param(Case([*SEARCH, "--latency", "1us"], 2, ("nucleo-l552ze-q-6ch-100-4cls.json", "nucleo-f446re"),
                      setup=_table("nucleo-l552ze-q-6ch-100-4cls.json", where="micronas-tables")),
                 id="search-with-a-latency-table-of-another-board"),
    # -- search ---------------------------------------------------------------------------------
    pytest.param(Case(["search", "--resume", "run", "--latency", "50ms"], 2,
                      ("--resume run: no search to resume there", "start one with --out"), run=True),
                 id="search-resume-where-no-search-ran"),
    pytest.param(Case(["search", "--resume", "a", "--out", "b", "--latency", "50ms"], 2,
                      ("--resume a and --out b name different runs",)), id="search-resume-and-out-differ"),
    # the narrowest scale of the space is tried first: its table entries, measured on the emulated
    # core, are kept (a finished, reusable artefact)
    pytest.param(Case([*SEARCH, "--latency", "1us"], 1, ("latency budget 0.001 ms is below the fastest network",
                                                         "relax --latency to at least"),
                      allowed=("micronas-tables", "micronas-tables/nucleo-l552ze-q-6ch-100-4cls.json")),
                 id="search-infeasible-latency"),
    # -- command line ---------------------------------------------------------------------------
    pytest.param(Case(["trian", "--out", "r"], 2, ("No such command 'trian'", "Did you mean 'train'?"), hint="help"),
                 id="unknown-command"),
    pytest.param(Case(["export", "run", "--ramm", "64k"], 2, ("No such option: --ramm", "--ram"), hint="help",
                      run=True), id="export-unknown-option"),
    pytest.param(Case(["train", "--data", "{tiny}", "--latency", "50ms", "--out", "r"], 2,
                      ("No such option: --latency",), hint="help"), id="train-has-no-latency-option"),
    pytest.param(Case(["train", "--data", "{tiny}"], 2, ("Missing option '--out'",), hint="help"),
                 id="train-without-out"),
    pytest.param(Case(["boards", "--all"], 2, ("No such option: --all",), hint="help"), id="boards-unknown-option"),
    pytest.param(Case(["profile", "run", "--windows", "0"], 2, ("'--windows'",), hint="help", run=True),
                 id="profile-zero-windows"),
    pytest.param(Case(["report", "run", "extra"], 2, ("unexpected extra argument", "extra"), hint="help", run=True),
                 id="report-extra-argument"),
    pytest.param(Case(["tables", "show", "--jsn"], 2, ("No such option: --jsn", "--json"), hint="help"),
                 id="tables-show-unknown-option"),
    # -- issue 16, smaller items ----------------------------------------------------------------
    pytest.param(Case([*SEARCH, "--data", "c1000.npz"], 2,
                      ("the data c1000.npz has 1,000 classes", "2..256", "merge or drop classes"),
                      absent=("--classes",), setup=_npz("c1000.npz", X=np.zeros((2000, 2, 16), np.float32),
                                                        y=np.arange(2000) % 1000)),
                 id="search-1000-classes-names-the-data-not-an-option"),
    pytest.param(Case(["profile", "run", "--flash-cmd", "st-flash write {{bin}} 0x8000000"], 2,
                      ("--flash-cmd 'st-flash write {bin} 0x8000000' was given without --port", "add --port"),
                      run=True), id="profile-flash-cmd-without-port"),
    pytest.param(Case(["tables", "build", "--channels", "4", "--length", "37", "--classes", "3",
                       "--flash-cmd", "true {{elf}}"], 2, ("--flash-cmd 'true {elf}' was given without --port",)),
                 id="tables-build-flash-cmd-without-port"),
    pytest.param(Case(["train", "--data", "{tiny}", "--arch", "deep.json", "--out", "r"], 2,
                      ("deep.json: 10,000 cells; at most 64 are supported",), setup=_deep_arch("deep.json", 10_000),
                      timeout=60), id="train-10000-cell-arch"),
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case: Case, request, tmp_path, tiny_npz, tiny_arch):
    for tool in case.tools:
        toolchain(tool)
    run = request.getfixturevalue("run_copy") if case.run else None  # tmp_path / "run"
    ctx = Ctx(work=tmp_path, tiny=tiny_npz, arch=tiny_arch, run=run,
              vars={"tiny": str(tiny_npz), "arch": str(tiny_arch)})
    try:
        if case.setup:
            case.setup(ctx)
        before = snapshot(tmp_path)
        p = run_cli([a.format(**ctx.vars) for a in case.args], tmp_path, timeout=case.timeout)
        after = snapshot(tmp_path)
    finally:
        for obj in ctx.keep:
            obj.close() if hasattr(obj, "close") else os.close(obj)
    assert_user_message(p, case.code, case.needles, case.hint, case.absent)
    assert_nothing_left(before, after, case.allowed)


def test_there_are_enough_distinct_cases():
    assert len({p.id for p in CASES}) == len(CASES) >= 32


# ---- Ctrl-C ---------------------------------------------------------------------------------


def _start(args: list[str], cwd: Path, logs: Path) -> tuple[subprocess.Popen, Path, Path]:
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / "stdout.txt", logs / "stderr.txt"
    with open(out, "w") as fo, open(err, "w") as fe:
        # a shell without job control starts background jobs with SIGINT ignored, and Python then
        # never raises KeyboardInterrupt: give the child the default disposition, as a terminal would
        p = subprocess.Popen([*MICRONAS, *args], cwd=cwd, env=cli_env(cwd), stdin=subprocess.DEVNULL,
                             stdout=fo, stderr=fe, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return p, out, err


def _wait_for(p: subprocess.Popen, err: Path, ready: Callable[[], bool], what: str, timeout: float = 150) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if p.poll() is not None:
            pytest.fail(f"the command ended (exit {p.returncode}) before {what}:\n{err.read_text()}")
        if time.monotonic() > deadline:
            p.kill()
            p.wait()
            pytest.fail(f"no {what} within {timeout} s:\n{err.read_text()}")
        time.sleep(0.1)


def _interrupt(p: subprocess.Popen, out: Path, err: Path) -> tuple[str, str]:
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        pytest.fail("Ctrl-C did not stop the command within 60 s")
    stdout, stderr = out.read_text(), err.read_text()
    shown = f"exit {p.returncode}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    assert p.returncode == EXIT_INTERRUPTED, shown
    assert "Traceback" not in stdout + stderr, shown
    message = log_free(stderr)
    assert len(message) == 1 and RESUME_LINE in message[0], shown  # one line: how to resume
    return stdout, stderr


def _temp_files(run: Path) -> list[str]:
    return [p.name for p in run.rglob("*") if p.name.endswith(".tmp") or ".partial" in p.name]


def test_ctrl_c_during_train_exits_130_and_the_same_command_resumes(tmp_path, tiny_npz, tiny_arch):
    epochs = 60
    args = ["train", "--data", str(tiny_npz), "--arch", str(tiny_arch), "--epochs", str(epochs), "--out", "run"]
    run = tmp_path / "run"
    p, out, err = _start(args, tmp_path, tmp_path / TMP / "first")
    _wait_for(p, err, lambda: (run / "checkpoint.pt").exists(), "checkpoint")
    _interrupt(p, out, err)
    assert (run / "checkpoint.pt").exists() and not (run / "model.pt").exists()
    assert _temp_files(run) == []

    again = run_cli(args, tmp_path, timeout=400)
    assert again.returncode == EXIT_OK, again.stderr
    assert "Traceback" not in again.stdout + again.stderr
    assert re.search(rf"resuming training at epoch \d+ of {epochs}", again.stderr), again.stderr
    assert (run / "model.pt").exists() and not (run / "checkpoint.pt").exists() and _temp_files(run) == []
    history = json.loads((run / "train_log.json").read_text())["history"]
    assert [e["epoch"] for e in history] == list(range(epochs))


def test_ctrl_c_during_search_exits_130_and_the_same_command_resumes(tmp_path):
    toolchain(GCC)
    # the embedded BasicMotions data: its latency table ships (the tiny data's would be measured first);
    # the window mean is given, so the first checkpoint is the DNAS's (the decision is tested in test_search)
    args = ["search", "--latency", "20ms", "--ram", "64k", "--epochs", "200", "--final-epochs", "2", "--out", "s",
            "--window-mean", "keep"]
    run = tmp_path / "s"

    def trajectory() -> list[dict]:
        f = run / "search.json"
        return json.loads(f.read_text())["trajectory"] if f.exists() else []

    p, out, err = _start(args, tmp_path, tmp_path / TMP / "first")
    # search.json is written just after the epoch's checkpoint: waiting for the checkpoint alone
    # raced with an interrupt landing between the two writes (seen once under load)
    _wait_for(p, err, lambda: (run / "search_checkpoint.pt").exists() and trajectory(), "search checkpoint")
    _interrupt(p, out, err)
    done = len(trajectory())
    assert done >= 1 and _temp_files(run) == []

    # the same command again continues at the next epoch (interrupted again once it has made progress)
    p, out, err = _start(args, tmp_path, tmp_path / TMP / "second")
    _wait_for(p, err, lambda: len(trajectory()) > done, "search epoch after the resume")
    _, stderr = _interrupt(p, out, err)
    assert f"resuming the search at epoch {done + 1} of 200" in stderr
    assert [e["epoch"] for e in trajectory()] == list(range(len(trajectory())))
    assert _temp_files(run) == []

    # --resume with other budgets is refused and leaves the checkpoint alone
    before = snapshot(run)
    other = run_cli(["search", "--resume", "s", "--latency", "30ms", "--ram", "64k", "--epochs", "200",
                     "--final-epochs", "2", "--window-mean", "keep"], tmp_path)
    assert_user_message(other, EXIT_USAGE, ("the search in s was started with other settings", "--resume"), "hint")
    assert_nothing_left(before, snapshot(run))


# ---- two commands on one run directory -------------------------------------------------------

HOLD_RUN = """
import sys, time
from micronas.rundir import RunDir
with RunDir.open(sys.argv[-1]).locked("search"):
    print("READY", flush=True)
    time.sleep(120)
"""


def test_a_second_command_on_a_busy_run_names_the_holder_and_changes_nothing(tmp_path, tiny_npz):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"format": "micronas.run/1"}))
    script = tmp_path / TMP / "hold.py"
    script.parent.mkdir(exist_ok=True)
    script.write_text(HOLD_RUN)
    holder = subprocess.Popen([sys.executable, str(script), "search", "--out", "run"], cwd=tmp_path,
                              env=cli_env(tmp_path), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "READY"
        before = snapshot(tmp_path)
        for args in (["profile", "run"], ["export", "run"], ["train", "--data", str(tiny_npz), "--out", "run"]):
            p = run_cli(args, tmp_path)
            assert_user_message(p, EXIT_USAGE, (f"run directory run is in use by PID {holder.pid} (search: hold.py "
                                                "search --out run", f"wait for PID {holder.pid} to finish"), "hint")
        assert_nothing_left(before, snapshot(tmp_path))
    finally:
        holder.kill()  # outright: the kernel drops its lock, no clean-up of ours runs
        holder.wait()
    p = run_cli(["profile", "run"], tmp_path)  # the next command goes on (to its own error here)
    assert_user_message(p, EXIT_USAGE, ("run has not been exported",), "hint")
    assert not (run / ".lock").exists()  # the dead holder's file was taken over, then removed


def test_the_run_lock_is_reentrant_and_released_on_errors(tmp_path):
    from micronas.rundir import RunDir
    from micronas_base.errors import ConfigError

    run = RunDir.create(tmp_path / "r")
    with pytest.raises(ConfigError, match="inner"):
        with run.locked("search"):
            with run.locked("train"):  # search's own stages take it again
                assert (run.path / ".lock").exists()
            raise ConfigError("inner")
    assert not (run.path / ".lock").exists()
    with run.locked("profile"):  # taken again after the error
        pass


# ---- a run directory on a read-only file system ---------------------------------------------


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


def test_a_read_only_run_directory_is_named_not_a_traceback(tmp_path, tiny_npz):
    if not _unshare_works():
        pytest.skip("needs `unshare -rm` (user and mount namespaces) to mount a folder read-only")
    run, ro = tmp_path / "run", tmp_path / "ro"
    run.mkdir()
    ro.mkdir()
    (run / "run.json").write_text(json.dumps({"format": "micronas.run/1"}))
    # in a private mount namespace: both folders read-only (as on a read-only share), nothing else touched
    mounts = " && ".join(f"mount --bind {d} {d} && mount -o remount,ro,bind {d}" for d in (run, ro))

    def read_only(args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(["unshare", "-rm", "sh", "-c", mounts + ' && exec "$@"', "sh", *MICRONAS, *args],
                              cwd=tmp_path, env=cli_env(tmp_path), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=180)

    before = snapshot(tmp_path)
    assert_user_message(read_only(["profile", "run"]), EXIT_USAGE,
                        ("cannot write into run (Read-only file system)",), "hint")
    assert_user_message(read_only(["train", "--data", str(tiny_npz), "--out", "ro/new"]), EXIT_USAGE,
                        ("cannot write ro/new: Read-only file system",), "hint")
    assert_nothing_left(before, snapshot(tmp_path))


def test_an_unwritable_artefact_path_is_a_config_error_naming_it(tmp_path):
    from micronas_base.errors import ConfigError
    from micronas_base.files import atomic_write_text

    (tmp_path / "plain-file").write_text("x")
    target = tmp_path / "plain-file" / "report.md"  # its "folder" is a file: no OS lets us write there
    with pytest.raises(ConfigError) as e:
        atomic_write_text(target, "hello")
    assert e.value.message.startswith(f"cannot write {target}: ") and "--out" in e.value.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain-file"]


def test_two_real_searches_into_one_directory_one_is_refused_the_other_finishes(tmp_path):
    """Two `micronas search` processes, other seeds, one --out: the second exits 2 at once naming
    the first's PID and command and writes nothing; the first finishes and its run is valid."""
    toolchain("arm-none-eabi-gcc")
    toolchain("qemu-system-arm")
    args = ["search", "--epochs", "1", "--final-epochs", "1", "--threads", "1", "--out", "run"]
    first = subprocess.Popen([*MICRONAS, *args, "--seed", "0"], cwd=tmp_path, env=cli_env(tmp_path),
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "run" / ".lock").exists():  # the first holds the run
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        t0 = time.monotonic()
        second = run_cli([*args, "--seed", "1"], tmp_path)
        assert time.monotonic() - t0 < 30  # refused at once, not after its own search
        assert_user_message(second, EXIT_USAGE, (f"run directory run is in use by PID {first.pid} (search: ",
                                                 "search --epochs 1", f"wait for PID {first.pid} to finish"),
                            "hint")
        out, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    run = tmp_path / "run"
    s = json.loads((run / "search.json").read_text())
    assert s["derived"] == json.loads((run / "arch.json").read_text())  # one search's, whole
    assert json.loads((run / "profile.json").read_text())["outputs_equal_tflm"] is True
    assert not (run / ".lock").exists()
    again = run_cli(["profile", "run", "-q"], tmp_path)  # the run is usable afterwards
    assert again.returncode == 0, again.stderr
