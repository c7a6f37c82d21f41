"""Board files and registry, flashing adapters (argument construction; no board here)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from micronas_base.errors import ConfigError, ToolchainError
from targets import boards, flash


@pytest.mark.parametrize("name", sorted(boards.all_boards()))
def test_every_board_file_is_complete(name):
    b = boards.get(name)
    assert b.core in boards.CORES and b.clock_hz > 0 and b.sram_bytes > 0 and b.flash_bytes > 0
    for figure in ("core", "clock_hz", "sram_bytes", "flash_bytes", "serial", "qemu"):
        assert len(b.sources[figure]) > 10
    assert b.qemu.machine.startswith("mps2-") and b.qemu.systick_hz in (20_000_000, 25_000_000)


def test_the_three_boards_of_the_brief():
    got = {b.name: (b.core, b.clock_hz, b.sram_bytes, b.flash_bytes, b.qemu.machine) for b in boards.all_boards().values()}
    assert got == {
        "nucleo-l552ze-q": ("cortex-m33", 110_000_000, 256 * 1024, 512 * 1024, "mps2-an505"),
        "nucleo-f446re": ("cortex-m4", 180_000_000, 128 * 1024, 512 * 1024, "mps2-an386"),
        "nucleo-h743zi": ("cortex-m7", 480_000_000, 512 * 1024, 2 * 1024 * 1024, "mps2-an500"),
    }
    assert boards.default_board().name == "nucleo-l552ze-q"


def test_unknown_board_suggests_the_closest():
    with pytest.raises(ConfigError) as e:
        boards.get("nucleo-f446")
    assert "known: nucleo-f446re, nucleo-h743zi, nucleo-l552ze-q" in e.value.message
    assert e.value.hint == "did you mean 'nucleo-f446re'?"


def test_board_file_without_sources_is_rejected():
    d = json.loads((Path(boards.__file__).parent / "boards" / "nucleo-f446re.json").read_text())
    del d["sources"]["clock_hz"]
    with pytest.raises(ConfigError, match="no source line for 'clock_hz'"):
        boards.parse(d, "my-board.json")


def test_flash_command_is_an_argument_list_not_a_shell(tmp_path):
    elf = tmp_path / "fw; touch PWNED.elf"
    args = flash.command_args("openocd -c 'program {elf} verify reset exit'", elf, tmp_path / "fw.bin")
    assert args == ["openocd", "-c", f"program {elf} verify reset exit"]
    # run a real command: the hostile name arrives as one argument and nothing else runs
    record = tmp_path / "args.json"
    cmd = f"{sys.executable} -c 'import json,sys; json.dump(sys.argv[1:], open(\"{record}\", \"w\"))' {{elf}} {{bin}}"
    board = boards.get("nucleo-f446re")
    flash.flash(board, elf, tmp_path / "fw.bin", command=cmd)
    assert json.loads(record.read_text()) == [str(elf), str(tmp_path / "fw.bin")]
    assert not (tmp_path / "PWNED.elf").exists() and not Path("PWNED.elf").exists()


@pytest.mark.parametrize("template, fragment", [
    ("", "empty"), ("st-flash write fw.bin 0x8000000", "names neither"), ("openocd -c 'program {elf}", "cannot be split"),
])
def test_bad_flash_commands(template, fragment, tmp_path):
    with pytest.raises(ConfigError, match=fragment):
        flash.command_args(template, tmp_path / "a.elf", tmp_path / "a.bin")


def test_pyocd_arguments_and_missing_tools(tmp_path, monkeypatch):
    b = boards.get("nucleo-l552ze-q")
    assert flash.pyocd_args(b, tmp_path / "a.elf") == ["pyocd", "flash", "--target", "stm32l552zetxq", "--format",
                                                       "elf", str(tmp_path / "a.elf")]
    with pytest.raises(ToolchainError, match="not found on PATH"):
        flash.flash(b, tmp_path / "a.elf", tmp_path / "a.bin", command="no-such-flasher {elf}")
    monkeypatch.setattr(flash.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(flash.shutil, "which", lambda name: None)
    with pytest.raises(ToolchainError, match="pyocd is not installed"):
        flash.flash(b, tmp_path / "a.elf", tmp_path / "a.bin")


def _script(path: Path, text: str, mode: int = 0o755) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_flash_command_that_hangs_is_stopped_with_what_it_started(tmp_path):
    pids = tmp_path / "pids"
    hang = _script(tmp_path / "hang.sh", f"#!/bin/sh\nsleep 60 &\necho $! > {pids}\nwait\n")
    t0 = time.monotonic()
    with pytest.raises(ToolchainError) as e:
        flash.flash(boards.get("nucleo-f446re"), tmp_path / "a.elf", tmp_path / "a.bin", command=f"{hang} {{elf}}",
                    timeout_s=1.0)
    assert time.monotonic() - t0 < 10
    assert "did not finish within 1 s" in e.value.message and str(hang) in e.value.message and e.value.hint
    sleeper = int(pids.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{sleeper}").exists() and "Z" not in _state(sleeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{sleeper}").exists() or "Z" in _state(sleeper)  # its child went with it


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@pytest.mark.parametrize("text, mode, needle", [
    ("#!/bin/sh\nexit 0\n", 0o644, "is not executable"),
    ("exit 0\n", 0o755, "Exec format error"),  # no #! line: the kernel cannot run it
])
def test_a_flash_tool_that_cannot_run_is_a_toolchain_error(tmp_path, text, mode, needle):
    tool = _script(tmp_path / "flash.sh", text, mode)
    with pytest.raises(ToolchainError) as e:
        flash.flash(boards.get("nucleo-f446re"), tmp_path / "a.elf", tmp_path / "a.bin", command=f"{tool} {{elf}}")
    assert needle in e.value.message and str(tool) in e.value.message and e.value.hint
