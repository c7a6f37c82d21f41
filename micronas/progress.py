"""Progress of long steps, as the user's terminal wants it.

* a terminal: a rich progress bar per counted step (search epochs, training epochs, table
  entries, profiled windows) with elapsed time and ETA, and one line per stage;
* not a terminal (CI logs, pipes): plain lines, a counted step printing about every tenth of
  its count with elapsed time and ETA;
* `--quiet`: nothing (errors still go to stderr).

With `--json` the progress goes to stderr so that stdout holds only the JSON document.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from rich.console import Console


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Task:
    """One counted step; `update(done, info)` after each item."""

    def __init__(self, reporter: Progress, label: str, total: int):
        self.reporter, self.label, self.total = reporter, label, max(1, int(total))
        self.t0 = time.monotonic()
        self.every = max(1, -(-self.total // 10))  # about ten lines per step in a log
        self._bar = None
        self._id = None

    def update(self, done: int, info: str = "") -> None:
        r = self.reporter
        if r.mode == "bar" and self._bar is not None:
            self._bar.update(self._id, completed=done, info=info)
        elif r.mode == "lines" and (done == self.total or done == 1 or done % self.every == 0):
            elapsed = time.monotonic() - self.t0
            eta = elapsed / done * (self.total - done) if done else 0.0
            r.console.print(f"  {self.label} {done}/{self.total}  elapsed {_clock(elapsed)}  ETA {_clock(eta)}"
                            + (f"  {info}" if info else ""), markup=False)


class Progress:
    """Where progress goes: mode "bar", "lines" or "quiet"."""

    def __init__(self, mode: str, console: Console):
        if mode not in ("bar", "lines", "quiet"):
            raise ValueError(mode)
        self.mode, self.console = mode, console
        self.t0 = time.monotonic()
        self._open: tuple[str, ExitStack, Task] | None = None  # the counted step on screen

    def counter(self, name: str, label: str, total: int) -> Task:
        """The counted step `name`, opened on first use; opening another (or a stage) ends it."""
        if self._open is not None and self._open[0] == name:
            return self._open[2]
        self.close()
        stack = ExitStack()
        self._open = (name, stack, stack.enter_context(self.task(label, total)))
        return self._open[2]

    def close(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @classmethod
    def for_cli(cls, quiet: bool = False, to_stderr: bool = False) -> Progress:
        console = Console(stderr=to_stderr, highlight=False, soft_wrap=True)
        if quiet:
            return cls("quiet", console)
        return cls("bar" if console.is_terminal else "lines", console)

    def stage(self, text: str) -> None:
        """A step without a count (conversion, builds): one line, stamped with the time since the start."""
        self.close()
        if self.mode != "quiet":
            self.console.print(f"- [{_clock(time.monotonic() - self.t0)}] {text}", markup=False)

    def line(self, text: str) -> None:
        """A result line that --quiet also hides (figures a script reads from --json instead)."""
        if self.mode != "quiet":
            self.console.print(text, markup=False)

    @contextmanager
    def task(self, label: str, total: int) -> Iterator[Task]:
        t = Task(self, label, total)
        if self.mode != "bar":
            yield t
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)
        from rich.progress import Progress as RichProgress

        with RichProgress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                          console=self.console, transient=False) as bar:
            t._bar, t._id = bar, bar.add_task(label, total=t.total, info="")
            yield t
