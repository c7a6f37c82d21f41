"""Progress output: lines in logs (about ten per step, with ETA), nothing with --quiet, a bar on a terminal."""

from __future__ import annotations

import io
import re

from rich.console import Console

from micronas.progress import Progress


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=terminal, width=120, highlight=False), buf


def test_lines_mode_prints_about_ten_lines_per_step_with_eta():
    console, buf = _console(False)
    show = Progress("lines", console)
    show.stage("ONNX export")
    for i in range(100):
        show.counter("train", "training epochs", 100).update(i + 1, f"val acc {i / 100:.2f}")
    show.stage("profile")
    lines = buf.getvalue().splitlines()
    assert re.fullmatch(r"- \[0:\d\d\] ONNX export", lines[0]) and re.fullmatch(r"- \[0:\d\d\] profile", lines[-1])
    counted = [ln for ln in lines if "training epochs" in ln]
    assert len(counted) == 11  # the first, every tenth, the last
    assert counted[0].startswith("  training epochs 1/100  elapsed 0:00  ETA ")
    assert counted[-1].startswith("  training epochs 100/100") and counted[-1].endswith("val acc 0.99")


def test_quiet_prints_nothing():
    console, buf = _console(True)
    show = Progress("quiet", console)
    with show:
        show.stage("x")
        show.line("a result")
        for i in range(5):
            show.counter("a", "a", 5).update(i + 1)
    assert buf.getvalue() == ""


def test_bar_mode_draws_one_bar_per_step_and_closes_it_at_the_next_stage():
    console, buf = _console(True)
    show = Progress("bar", console)
    with show:
        for i in range(3):
            show.counter("search", "search epochs", 3).update(i + 1, "E[latency] 1.00 ms")
        show.stage("derivation")
        for i in range(2):
            show.counter("train", "training epochs", 2).update(i + 1)
    out = buf.getvalue()
    assert "search epochs" in out and "3/3" in out and "ETA" in out and "training epochs" in out
    assert out.index("search epochs") < out.index("derivation") < out.index("training epochs")
    assert show._open is None


def test_for_cli_picks_lines_when_not_a_terminal_and_stderr_for_json(capsys):
    show = Progress.for_cli(quiet=False, to_stderr=True)
    assert show.mode == "lines"  # pytest's captured streams are not terminals
    show.line("to stderr")
    captured = capsys.readouterr()
    assert captured.out == "" and "to stderr" in captured.err
    assert Progress.for_cli(quiet=True).mode == "quiet"
