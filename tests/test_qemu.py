"""targets.qemu: EmulatedBoard starts, serves and always stops qemu-system-arm.

The guest is a 20-instruction echo firmware built here with arm-none-eabi-gcc for mps2-an386
(CMSDK UART0 at 0x40004000). Tests that need QEMU or the cross compiler skip when they are missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import serial

from micronas_base.errors import ToolchainError
from targets import qemu as Q
from targets.protocol import DeviceClient, DeviceConnectionError, DeviceError, DeviceTimeout
from targets.qemu import EmulatedBoard, instructions_from_ticks

from .conftest import toolchain

ROOT = Path(__file__).resolve().parents[1]
MACHINE = "mps2-an386"

ECHO_C = r"""
#include <stdint.h>
#define UART 0x40004000u
#define REG(off) (*(volatile uint32_t *)(UART + (off)))
enum { DATA = 0x00, STATE = 0x04, CTRL = 0x08, BAUDDIV = 0x10 };
extern uint32_t __stack_top;
void reset_handler(void);
/* QEMU ignores the ELF entry: reset loads SP and PC from the vector table at 0x0. */
__attribute__((section(".vectors"), used))
const uintptr_t vectors[2] = {(uintptr_t)&__stack_top, (uintptr_t)reset_handler};
void reset_handler(void) {
  REG(BAUDDIV) = 16;
  REG(CTRL) = 3;                                   /* TX and RX enable */
  for (;;) {
    while (!(REG(STATE) & 2u)) {}                  /* RX full */
    uint32_t c = REG(DATA);
    while (REG(STATE) & 1u) {}                     /* TX full */
    REG(DATA) = c;
  }
}
"""

LINK_LD = """
MEMORY { FLASH (rx) : ORIGIN = 0x00000000, LENGTH = 4M  RAM (rw) : ORIGIN = 0x20000000, LENGTH = 4M }
__stack_top = ORIGIN(RAM) + LENGTH(RAM);
SECTIONS { .text : { KEEP(*(.vectors)) *(.text*) *(.rodata*) } > FLASH }
"""


@pytest.fixture(scope="module")
def echo_elf(tmp_path_factory) -> Path:
    toolchain("qemu-system-arm")
    gcc = toolchain("arm-none-eabi-gcc")
    d = tmp_path_factory.mktemp("echo_fw")
    (d / "echo.c").write_text(ECHO_C)
    (d / "link.ld").write_text(LINK_LD)
    elf = d / "echo.elf"
    subprocess.run([gcc, "-mcpu=cortex-m4", "-mthumb", "-O2", "-ffreestanding", "-nostdlib", "-nostartfiles",
                    "-T", str(d / "link.ld"), str(d / "echo.c"), "-o", str(elf)], check=True, capture_output=True)
    return elf


def _gone(pid: int, wait_s: float = 2.0) -> bool:
    """True once no process (not even a zombie) has this PID."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.01)
    return False


def test_instructions_from_ticks():
    # 25 MHz SysTick: one tick is 40 ns; at shift 0 that is 40 instructions, at shift 7 40/128.
    assert instructions_from_ticks(1, 25_000_000, 0) == pytest.approx(40.0)
    assert instructions_from_ticks(128, 25_000_000, 7) == pytest.approx(40.0)
    assert instructions_from_ticks(1000, 20_000_000, 3) == pytest.approx(1000 * 50 / 8)


def test_missing_qemu_is_a_toolchain_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolchainError, match="qemu-system-arm") as e:
        EmulatedBoard(MACHINE, tmp_path / "fw.elf", tmp_path / "log").start()
    assert "apt-get install" in str(e.value)


def test_missing_elf_is_a_device_error(tmp_path):
    toolchain("qemu-system-arm")
    with pytest.raises(DeviceError, match="does not exist"):
        EmulatedBoard(MACHINE, tmp_path / "nope.elf", tmp_path / "log").start()


def test_board_starts_serves_and_stops(echo_elf, tmp_path):
    log_dir = tmp_path / "log"
    with EmulatedBoard(MACHINE, echo_elf, log_dir) as board:
        pid = board.pid
        assert board.running and Path(f"/proc/{pid}").exists()
        assert board.url == f"socket://127.0.0.1:{board.port}"
        port = serial.serial_for_url(board.url, timeout=2)
        try:
            port.write(b"ping\n")
            assert port.read(5) == b"ping\n"
            t0 = time.monotonic()
            for i in range(50):
                msg = b"%03d" % i
                port.write(msg)
                assert port.read(3) == msg
            assert (time.monotonic() - t0) / 50 < 0.02  # nodelay=on: no 44 ms Nagle stall per reply
        finally:
            port.close()
    assert not board.running and _gone(pid)
    assert "-icount shift=7,align=off,sleep=off" in (log_dir / "qemu.cmd").read_text()
    assert (log_dir / "qemu.err").exists() and (log_dir / "qemu.out").exists()
    board.stop()  # a second stop is harmless


def test_client_over_qemu_times_out_clearly_on_an_echo_guest(echo_elf, tmp_path):
    # The echo guest returns our own request frame: a request type, so never taken as a reply.
    with EmulatedBoard(MACHINE, echo_elf, tmp_path / "log") as board:
        with DeviceClient.open(board.url, timeout_s=0.1, retries=1) as client:
            with pytest.raises(DeviceTimeout) as e:
                client.hello()
            assert client.stale == 2
        msg = str(e.value)
        assert "HELLO" in msg and board.url in msg and "0.1 s" in msg


def test_killing_qemu_mid_exchange_is_a_clear_device_error(echo_elf, tmp_path):
    with EmulatedBoard(MACHINE, echo_elf, tmp_path / "log") as board:
        pid = board.pid
        with DeviceClient.open(board.url, timeout_s=0.2, retries=50) as client:  # a 10 s budget
            killer = threading.Timer(0.3, os.kill, (pid, signal.SIGKILL))
            killer.start()
            t0 = time.monotonic()
            try:
                with pytest.raises(DeviceConnectionError) as e:
                    client.get_memory()
            finally:
                killer.cancel()
            assert time.monotonic() - t0 < 2.0  # noticed at once, not after the retry budget
        assert board.url in str(e.value) and "GET_MEMORY" in str(e.value)
        assert not isinstance(e.value, serial.SerialException) and e.value.__suppress_context__
    assert _gone(pid)


def test_keyboard_interrupt_inside_the_block_stops_qemu(echo_elf, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with EmulatedBoard(MACHINE, echo_elf, tmp_path / "log") as board:
            pid = board.pid
            raise KeyboardInterrupt
    assert _gone(pid)


def test_early_exit_quotes_the_log(echo_elf, tmp_path):
    with pytest.raises(DeviceError, match="exited with code") as e:
        with EmulatedBoard("no-such-machine", echo_elf, tmp_path / "log"):
            pass
    assert "no-such-machine" in str(e.value) and "qemu.err" in str(e.value)


def test_a_taken_port_is_retried(echo_elf, tmp_path, monkeypatch):
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    ports = iter([taken.getsockname()[1], taken.getsockname()[1]])
    real = Q._free_port
    monkeypatch.setattr(Q, "_free_port", lambda: next(ports, None) or real())
    try:
        with EmulatedBoard(MACHINE, echo_elf, tmp_path / "log") as board:
            assert board.port != taken.getsockname()[1]
            with serial.serial_for_url(board.url, timeout=2) as port:
                port.write(b"x")
                assert port.read(1) == b"x"
    finally:
        taken.close()


def test_atexit_stops_a_board_that_was_never_stopped(echo_elf, tmp_path):
    script = textwrap.dedent(f"""
        from pathlib import Path
        from targets.qemu import EmulatedBoard
        board = EmulatedBoard({MACHINE!r}, Path({str(echo_elf)!r}), Path({str(tmp_path / 'log')!r})).start()
        print(board.pid, flush=True)
    """)  # exits without stop(): the atexit hook must do it
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert _gone(int(out.stdout.split()[0]))


# ---- a parent killed outright leaves no emulator and (after the next start-up) no temp folder ----

def _start_child(script: str) -> tuple[subprocess.Popen, list[str]]:
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    line = child.stdout.readline().split()  # "READY qemu_pid tmp_dir" once the board serves
    assert line and line[0] == "READY", child.stderr.read()
    return child, line[1:]


def test_sigkill_of_the_parent_takes_qemu_with_it_and_the_sweep_removes_its_temp_dir(echo_elf, tmp_path):
    from micronas_base import tempdirs

    child, (qemu_pid, tmp) = _start_child(f"""
        import time
        from pathlib import Path
        from targets.qemu import EmulatedBoard
        board = EmulatedBoard({MACHINE!r}, Path({str(echo_elf)!r}), Path({str(tmp_path / 'log')!r})).start()
        print("READY", board.pid, board._tmp, flush=True)
        time.sleep(60)
    """)
    assert Path(tmp).name.startswith(f"micronas-qemu-{child.pid}-")
    os.kill(child.pid, signal.SIGKILL)  # no finally, no atexit: only the kernel can act
    child.wait(5)
    assert _gone(int(qemu_pid), wait_s=5.0), "qemu-system-arm outlived its killed parent"
    assert Path(tmp).is_dir()  # left behind by the kill...
    assert Path(tmp) in tempdirs.sweep_stale()  # ...and removed by the next start-up's sweep
    assert not Path(tmp).exists()


def test_sigterm_of_a_cli_command_stops_qemu_and_exits_143(echo_elf, tmp_path):
    child, (qemu_pid, tmp) = _start_child(f"""
        import time
        from pathlib import Path
        import typer
        from micronas.cli import _handled
        from targets.qemu import EmulatedBoard
        app = typer.Typer()

        @app.command()
        @_handled
        def hold() -> None:
            with EmulatedBoard({MACHINE!r}, Path({str(echo_elf)!r}), Path({str(tmp_path / 'log')!r})) as board:
                print("READY", board.pid, board._tmp, flush=True)
                time.sleep(60)

        app()
    """)
    child.terminate()
    _out, stderr = child.communicate(timeout=10)
    assert child.returncode == 143, stderr
    assert "terminated (SIGTERM)" in stderr and "Traceback" not in stderr
    assert _gone(int(qemu_pid)) and not Path(tmp).exists()


def test_the_sweep_keeps_folders_of_live_processes_and_foreign_names(tmp_path):
    from micronas_base import tempdirs

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its PID names no process (until reused, which only delays a sweep)
    stale = tmp_path / f"micronas-tflite-{dead.pid}-abc"
    live = tmp_path / f"micronas-qemu-{os.getppid()}-abc"
    mine = tmp_path / f"micronas-qemu-{os.getpid()}-abc"
    foreign = tmp_path / f"micronas-tables-{dead.pid}"  # no trailing "-": not one of ours
    for d in (stale, live, mine, foreign):
        (d / "sub").mkdir(parents=True)
    assert tempdirs.sweep_stale(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and mine.exists() and foreign.exists()
