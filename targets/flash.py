"""Flashing real boards: pyocd when installed, or a command the user gives.

A user command is a string with `{elf}` and/or `{bin}` placeholders, e.g.
`st-flash --reset write {bin} 0x8000000` or `openocd -f board/st_nucleo_f4.cfg -c "program {elf} verify reset exit"`.
It is split like a shell would split it (shlex) and run as an argument list, never through a
shell, so file names cannot inject commands.

Not exercised against hardware here (no board is connected to this machine); tests check the
argument lists and error paths.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

from micronas_base.errors import ConfigError, ToolchainError

from .boards import Board

PLACEHOLDERS = ("{elf}", "{bin}")


def command_args(template: str, elf: Path, binary: Path) -> list[str]:
    """The argument list for a user flash command.

    Raises:
        ConfigError: the template is empty, unbalanced, or names neither {elf} nor {bin}.
    """
    try:
        parts = shlex.split(template)
    except ValueError as e:
        raise ConfigError(f"flash command {template!r} cannot be split: {e}", "check its quotes") from None
    if not parts:
        raise ConfigError("the flash command is empty", "e.g. --flash-cmd 'st-flash write {bin} 0x8000000'")
    if not any(p in template for p in PLACEHOLDERS):
        raise ConfigError(f"flash command {template!r} names neither {{elf}} nor {{bin}}",
                          "put {elf} or {bin} where the firmware file goes")
    return [p.replace("{elf}", str(elf)).replace("{bin}", str(binary)) for p in parts]


def pyocd_args(board: Board, elf: Path) -> list[str]:
    """The pyocd command that programs `elf` into `board` (pyocd is an optional extra).

    Raises:
        ConfigError: the board file has no pyocd target.
    """
    target = board.flashing.get("pyocd_target")
    if not target:
        raise ConfigError(f"board {board.name} has no flashing.pyocd_target", "give --flash-cmd instead")
    return ["pyocd", "flash", "--target", target, "--format", "elf", str(elf)]


def flash(board: Board, elf: Path, binary: Path, command: str | None = None, timeout_s: float = 120.0) -> list[str]:
    """Program the firmware into a real board; returns the argument list that ran.

    Raises:
        ToolchainError: pyocd is not installed and no command was given, or the command cannot
            be run, failed, or did not finish within `timeout_s` (then it is killed).
    """
    if command:
        args = command_args(command, elf, binary)
    else:
        if importlib.util.find_spec("pyocd") is None and shutil.which("pyocd") is None:
            raise ToolchainError("pyocd is not installed, so micronas cannot flash the board itself",
                                 "pip install pyocd, or pass --flash-cmd 'st-flash write {bin} 0x8000000'")
        args = pyocd_args(board, elf)
    if shutil.which(args[0]) is None:
        if os.sep in args[0] and Path(args[0]).is_file():
            raise ToolchainError(f"flash tool {args[0]} is not executable",
                                 f"chmod +x {args[0]}, or give another --flash-cmd")
        raise ToolchainError(f"flash tool {args[0]!r} not found on PATH", "install it or give another --flash-cmd")
    try:  # its own session: a hung tool is stopped with everything it started (a GDB server, say)
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    except OSError as e:  # e.g. a script without a #! line: "Exec format error"
        raise ToolchainError(f"cannot run the flash tool {args[0]}: {e.strerror or e}",
                             "check that it is a program (a script needs a #! line), or give another --flash-cmd") \
            from None
    try:
        _out, err = p.communicate(timeout=timeout_s)
    except BaseException as e:  # the timeout, or Ctrl-C / SIGTERM while it runs
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.communicate()
        if isinstance(e, subprocess.TimeoutExpired):
            raise ToolchainError(f"flashing did not finish within {timeout_s:g} s ({' '.join(args)}); it was "
                                 "stopped", "is the board connected and its probe free? try the command by hand") \
                from None
        raise
    if p.returncode != 0:
        raise ToolchainError(f"flashing failed ({' '.join(args)}, exit {p.returncode}): {err.strip()[-500:]}")
    return args
