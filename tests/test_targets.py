"""Board files and registry, flashing adapters (argument construction; no board here)."""

from __future__ import annotations

import json
import sys
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
