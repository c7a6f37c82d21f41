"""Capture what C libraries write to file descriptors 1 and 2.

TensorFlow, onnx2tf and tflite-micro log from C++ straight to the process's stdout/stderr,
which `contextlib.redirect_stdout` cannot see. The CLI must stay readable, so the chain's
output goes to a log file in the run directory instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def capture_fds(log_path: Path | None = None, fds: tuple[int, ...] = (1, 2)) -> Iterator[list[str]]:
    """Redirect `fds` to a temporary file for the duration of the block.

    Args:
        log_path: When given, the captured text is appended to this file afterwards.
        fds: File descriptors to capture.

    Yields:
        A list that holds the captured text (one string) once the block has exited.
    """
    captured: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as tmp:
        saved = {fd: os.dup(fd) for fd in fds}
        try:
            for fd in fds:
                os.dup2(tmp.fileno(), fd)
            yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, dup in saved.items():
                os.dup2(dup, fd)
                os.close(dup)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            captured.append(text)
            if log_path is not None:
                with open(log_path, "a", encoding="utf-8") as f:
                    f.write(text)
