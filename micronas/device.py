"""One way to build the profiling firmware and reach a device, emulated or over `--port`: used
by `profile` and by table builds.

    image = build_image(board, c_dir, out_dir, emulated=True)

    with open_device(board, image, port=None, log_dir=work) as dev:
        count, unit, source = counter(dev.hello(), board)

Without a port the board's core runs `image` in QEMU (`-icount`, deterministic instruction
counts); with one, the board at that pyserial URL is used, programmed first with `flash_cmd`
when one is given (else it must already run the image, which the caller's HELLO check sees).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from micronas_base.errors import UsageError
from targets.protocol import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S

Counter = Callable[[float], float]


@dataclass(frozen=True)
class Link:
    """How patiently the host talks to a device: the floor of the reply timeout, and resends.

    The wait adapts above the floor by itself (`targets.protocol`): to the reply times measured
    on the link, to the work an INVOKE asks for, and doubling with each resend, so a loaded host
    (the emulator starved of CPU) profiles with the defaults. `--timeout`/`--retries` remain for
    a link slower than that (a board whose every reply takes more than 15 s) or a very noisy line.
    """

    timeout_s: float = DEFAULT_TIMEOUT_S  # floor of the first attempt; each resend waits twice as long
    retries: int = DEFAULT_RETRIES  # resends after the first attempt

    def __post_init__(self) -> None:
        if not (isinstance(self.timeout_s, (int, float)) and 0 < self.timeout_s <= 3600):
            raise UsageError(f"--timeout {self.timeout_s!r}; expected seconds in (0, 3600]",
                             "e.g. --timeout 5 on a busy host")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or not 0 <= self.retries <= 100:
            raise UsageError(f"--retries {self.retries!r}; expected an integer in [0, 100]",
                             "e.g. --retries 8 on a noisy serial line")


def check_flash_cmd(flash_cmd: str | None, port: str | None) -> None:
    """`--flash-cmd` programs a real board, so it needs `--port`; alone it would be ignored.

    Raises:
        UsageError: a flash command without a port.
    """
    if flash_cmd is not None and port is None:
        raise UsageError(f"--flash-cmd {flash_cmd!r} was given without --port: it programs a real board, and "
                         "without --port the board is emulated (QEMU runs the firmware directly)",
                         "add --port with the board's serial port (`micronas boards` lists them), or drop "
                         "--flash-cmd to profile on the emulated core")


def build_image(board: Any, model_c_dir: Path, out_dir: Path, **options: Any) -> Any:
    """The profiling firmware for `board` around the generated model in `model_c_dir`.

    The BENCH_OP dispatcher, generated from the runtime-op registry, is written into `out_dir`
    and handed to the build beside the model (it belongs to the firmware, not to the model).

    Args:
        board: The board (`targets.boards.Board`).
        model_c_dir: A generated model directory (`firmware_export.codegen.write`).
        out_dir: Where the dispatcher, objects, ELF and binary go.
        **options: `targets.build.build_firmware`'s options (emulated, simd, bench_scratch_bytes...).

    Returns:
        The `targets.build.FirmwareImage`.
    """
    from firmware_export.codegen.bench import write_dispatcher
    from targets.build import build_firmware

    out_dir = Path(out_dir)
    return build_firmware(board, model_c_dir, out_dir, bench_c=write_dispatcher(out_dir / "bench"), **options)


@contextlib.contextmanager
def open_device(board: Any, image: Any, port: str | None = None, log_dir: Path | None = None,
                flash_cmd: str | None = None, on_stage: Callable[[str], None] | None = None,
                on_connect: Callable[[str], None] | None = None, link: Link | None = None) -> Iterator[Any]:
    """A connected `targets.protocol.DeviceClient` running `image`.

    Args:
        board: The board (`targets.boards.Board`).
        image: The firmware (`targets.build.FirmwareImage`).
        port: A pyserial URL of a real board; None emulates the board's core in QEMU.
        log_dir: Where QEMU writes its output (emulated only; default: beside the ELF).
        flash_cmd: With `port`: program the board with this command template ({elf}/{bin}) first.
        on_stage: Progress callback (the flashing step).
        on_connect: Called with the URL just before the client connects.
        link: Reply timeout and retries (default `Link()`).

    Yields:
        The open client; it and QEMU are closed on exit, on any exception too.

    Raises:
        DeviceError: the emulator or the board failed.
    """
    from targets import flash, protocol, qemu

    if port is not None and flash_cmd is not None:
        (on_stage or (lambda _s: None))(f"flashing {board.name}")
        flash.flash(board, image.elf, image.bin, flash_cmd)
    ctx = (qemu.EmulatedBoard(board.qemu.machine, image.elf, log_dir or Path(image.elf).parent / "qemu")
           if port is None else contextlib.nullcontext())
    with ctx as emu:
        url = emu.url if emu is not None else port
        if on_connect:
            on_connect(url)
        link = link or Link()
        with protocol.DeviceClient.open(url, timeout_s=link.timeout_s, retries=link.retries) as dev:
            yield dev


def counter(hello: Any, board: Any) -> tuple[Counter, str, str]:
    """How the device's timer ticks become counts: (ticks -> count, unit, one-sentence source).

    Args:
        hello: The device's HELLO reply (timer kind and rate).
        board: The board.

    Returns:
        Emulated (QEMU icount timer): instructions; a real board: DWT cycles.

    Raises:
        DeviceError: the device reports a timer rate of 0 (or less).
    """
    from targets import qemu
    from targets.protocol import DeviceError

    if hello.timer_kind == 1 and not hello.timer_hz > 0:  # every count would divide by it
        raise DeviceError(f"the device reports a {hello.timer_hz} Hz timer (HELLO timer_hz); counts cannot be "
                          "converted to time", "its firmware's timer set-up is broken: rebuild and flash this "
                          "micronas's firmware (`micronas profile` builds it)")
    if hello.timer_kind == 1:
        return (lambda ticks: qemu.instructions_from_ticks(ticks, hello.timer_hz, qemu.ICOUNT_SHIFT), "instructions",
                f"measured on the emulated core: QEMU {board.qemu.machine} instruction count (-icount "
                f"shift={qemu.ICOUNT_SHIFT}), not cycles")
    return (float, "cycles", f"measured on the board: DWT cycle counter at {board.clock_hz / 1e6:g} MHz")
