"""The micronas error hierarchy and its exit codes.

Every failure a user can cause or meet is a `MicronasError`. The CLI turns one into a
one-screen message and the exit code below; library code never prints or exits.

Exit codes (the contract scripts rely on):
    0  ok
    1  a budget cannot be met, or a measured figure is over budget
    2  usage, configuration, data or internal error
    130  interrupted (Ctrl-C): finished stages are kept, the same command resumes
    143  terminated (SIGTERM): cleaned up as for Ctrl-C; 128 + 15, as shells report a killed job
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_OK = 0
EXIT_BUDGET = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM: a scheduler or `kill` stopped us; distinct from a user's Ctrl-C


class Terminated(KeyboardInterrupt):
    """Raised by the CLI's SIGTERM handler. A KeyboardInterrupt, so every cleanup path that
    stops an emulator or removes a temp file on Ctrl-C runs for SIGTERM too."""


class MicronasError(Exception):
    """Base class: a message that says what failed, the value, the options and what to do next.

    Args:
        message: What failed, naming the offending value.
        hint: The next thing to try (a command, a flag, a file to fix). Optional.
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class UsageError(MicronasError):
    """A flag or argument value that cannot be interpreted (a budget of `fast`, say)."""


class DataError(MicronasError):
    """A data file that cannot be used: wrong format, NaN, ragged, too few classes..."""


class ConfigError(MicronasError):
    """An arch.json, board file or run directory that is invalid or inconsistent."""


class ExportError(MicronasError):
    """The ONNX / TFLite / C-array export chain failed or its verification did not pass."""


class ToolchainError(MicronasError):
    """A required external tool (compiler, QEMU, Python package) is missing or failed."""


class BudgetError(MicronasError):
    """A budget cannot be met, or a measured figure exceeds it. Exit code 1."""

    exit_code = EXIT_BUDGET


def unknown_name_error(
    kind: str, name: str, known: Iterable[str], cls: type[MicronasError] = ConfigError
) -> MicronasError:
    """Build the error for an unknown registry name, listing the known names and the closest.

    Args:
        kind: What was looked up, e.g. "op" or "board".
        name: The name that was not found.
        known: Every valid name.
        cls: The error class to instantiate.

    Returns:
        An error instance whose message names the value and the options.
    """
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    message = f"unknown {kind} {name!r}; known: {', '.join(known)}"
    hint = f"did you mean {close[0]!r}?" if close else None
    return cls(message, hint)
