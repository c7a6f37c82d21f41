"""Cross-build the profiling firmware (`targets/firmware/`) around a generated C model.

One ELF per (board, emulated or real, SIMD or not):

* emulated: the QEMU machine that emulates the board's core (`board.qemu`): code memory as
  "flash", its data RAM as RAM, the CMSDK UART, SysTick on the processor clock as the timer
  (HELLO timer_kind 1);
* real: the board's own memory map, its ST-LINK virtual COM port U(S)ART at 115200 8N1 and the
  DWT cycle counter (timer_kind 0). The firmware runs at the chip's reset clock (no PLL set-up),
  so clock_hz and timer_hz are that clock, not the board file's maximum.

The generated directory holds the model's sources (`micronas_model.c`, `mn_*.c`; never the TFLite
C array `model_data.c`), compiled with `-DMICRONAS_PROFILE` and without `-ffreestanding` (which
would turn the runtime's 4-byte `memcpy` loads into library calls), and beside it the generated BENCH_OP
dispatcher (`micronas_bench.c`, one handler per runtime op, handed in by the caller: it belongs
to the profiling firmware, not to the model), compiled with the firmware's
own sources and flags (`-ffreestanding`): it is the firmware's per-op half of BENCH_OP, and its
timed windows must compile as the firmware's always did. Everything with
`-O2 -Wall -Wextra -Werror -ffunction-sections -fdata-sections`, linked with `--gc-sections`.

At the bottom of the layering: stdlib and `micronas_base` only.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from micronas_base.errors import ConfigError, ExportError, ToolchainError

from .boards import Board

STACK_BYTES = 8 * 1024
BENCH_SCRATCH_BYTES = 16 * 1024
APT_HINT = "install it: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi (or scripts/toolchain.sh)"

FIRMWARE_SOURCES = ("startup.c", "main.c", "protocol.c", "timer.c", "bench.c")
COMMON_FLAGS = ("-std=c99", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections")
LINK_FLAGS = ("-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections")


@dataclass(frozen=True)
class Stm32Chip:
    """What the register-level driver (uart_stm32.c) knows about one STM32 family."""

    define: str
    reset_clock_hz: int
    serial: tuple[str, str, str]  # peripheral, TX pin, RX pin of the Nucleo's ST-LINK VCP


# Keyed by the first 7 characters of the board's pyocd target name.
STM32_CHIPS = {
    "stm32f4": Stm32Chip("MN_STM32F4", 16_000_000, ("USART2", "PA2", "PA3")),  # HSI 16 MHz
    "stm32l5": Stm32Chip("MN_STM32L5", 4_000_000, ("LPUART1", "PG7", "PG8")),  # MSI 4 MHz
    "stm32h7": Stm32Chip("MN_STM32H7", 64_000_000, ("USART3", "PD8", "PD9")),  # HSI 64 MHz
}


@dataclass(frozen=True)
class FirmwareImage:
    """A built firmware and its figures.

    Attributes:
        board: Board name.
        emulated: Built for the board's QEMU machine (else for the real board).
        simd: The runtime's DSP-extension kernels are used.
        elf: The linked ELF (what QEMU's -kernel and debuggers take).
        bin: The flash image (objcopy -O binary), for st-flash and friends.
        text_bytes: Code and read-only data in flash (.vectors, .text, .rodata).
        data_bytes: Initialised data (in RAM, its initial values in flash).
        bss_bytes: Zero-initialised RAM (the model arena is here).
        flash_bytes: text + data.
        ram_bytes: data + bss (the stack comes on top).
        stack_bytes: The fixed stack region at the top of RAM.
        clock_hz: Core clock the firmware reports in HELLO.
        timer_hz: Timer ticks per second it reports in HELLO.
        commands: Every compiler command line, as run (compile firmware, compile model, link).
    """

    board: str
    emulated: bool
    simd: bool
    elf: Path
    bin: Path
    text_bytes: int
    data_bytes: int
    bss_bytes: int
    flash_bytes: int
    ram_bytes: int
    stack_bytes: int
    clock_hz: int
    timer_hz: int
    commands: tuple[tuple[str, ...], ...]

    @property
    def command_lines(self) -> list[str]:
        """The compiler commands as shell-quoted strings."""
        return [shlex.join(c) for c in self.commands]


def firmware_dir() -> Path:
    """The firmware's C sources (package data)."""
    return Path(str(resources.files("targets") / "firmware"))


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolchainError(f"{name} not found on PATH", APT_HINT)
    return path


def stm32_chip(board: Board) -> Stm32Chip:
    """The STM32 family of a real board, checked against its serial wiring.

    Raises:
        ConfigError: no register-level driver for the board's chip, or the board file's serial
            port is not the one the driver sets up.
    """
    target = str(board.flashing.get("pyocd_target", "")).lower()
    chip = STM32_CHIPS.get(target[:7])
    if chip is None:
        raise ConfigError(
            f"board {board.name}: no firmware driver for chip {target or '(no flashing.pyocd_target)'}; "
            f"supported families: {', '.join(STM32_CHIPS)}",
            "use the emulated build (QEMU), or add the chip to targets/firmware/uart_stm32.c and targets/build.py")
    s = board.serial
    wiring = (str(s.get("peripheral", "")), str(s.get("tx_pin", "")), str(s.get("rx_pin", "")))
    if wiring != chip.serial:
        raise ConfigError(
            f"board {board.name}: serial {'/'.join(wiring)} but the {target[:7]} driver drives {'/'.join(chip.serial)}",
            "fix the board file's serial section or targets/firmware/uart_stm32.c")
    return chip


def _layout(board: Board, emulated: bool, stack_bytes: int) -> tuple[dict[str, str], list[str], int, int]:
    """Linker-script values, -D flags, clock_hz and timer_hz for one build."""
    if emulated:
        q = board.qemu
        mem = (q.code_origin, q.code_bytes, q.ram_origin, q.ram_bytes)
        clock_hz, timer_hz = board.clock_hz, q.systick_hz
        defines = ["-DMN_TIMER_SYSTICK", f"-DMN_UART_BASE=0x{q.uart_base:08X}u", f"-DMN_UART_CLOCK_HZ={q.systick_hz}u"]
        rx_timeout = 0  # the TCP link loses nothing; virtual time runs too fast for a timeout
    else:
        chip = stm32_chip(board)
        mem = (board.flash_origin, board.flash_bytes, board.ram_origin, board.sram_bytes)
        clock_hz = timer_hz = chip.reset_clock_hz
        defines = ["-DMN_TIMER_DWT", f"-D{chip.define}"]
        if board.core == "cortex-m7":
            defines.append("-DMN_DWT_UNLOCK")
        rx_timeout = clock_hz // 10  # abandon a frame whose bytes stop for 100 ms
    defines += [f"-DMN_TIMER_HZ={timer_hz}u", f"-DMN_CLOCK_HZ={clock_hz}u", f"-DMN_RX_TIMEOUT_TICKS={rx_timeout}u",
                f'-DMN_BOARD_NAME="{board.name}"', f'-DMN_CORE_NAME="{board.core}"',
                f"-DMN_BENCH_SCRATCH_BYTES={BENCH_SCRATCH_BYTES}u"]
    ld = {"FLASH_ORIGIN": f"0x{mem[0]:08X}", "FLASH_BYTES": str(mem[1]), "RAM_ORIGIN": f"0x{mem[2]:08X}",
          "RAM_BYTES": str(mem[3]), "STACK_BYTES": str(stack_bytes)}
    return ld, defines, clock_hz, timer_hz


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300)
    except OSError as e:
        raise ToolchainError(f"{cmd[0]} could not be run: {e}", APT_HINT) from None
    except subprocess.TimeoutExpired:
        raise ExportError(f"{what} took more than 300 s: {shlex.join(cmd)}") from None
    if p.returncode != 0:
        msg = (p.stderr or p.stdout).strip()
        raise ExportError(f"{what} failed (exit {p.returncode}):\n{msg[-4000:]}\ncommand: {shlex.join(cmd)}")
    return p.stdout


def _sizes(size_tool: str, elf: Path) -> tuple[int, int, int]:
    """text, data, bss of an ELF from `size` (Berkeley format)."""
    out = _run([size_tool, "-B", str(elf)], "arm-none-eabi-size")
    lines = out.strip().splitlines()
    try:
        text, data, bss = (int(v) for v in lines[-1].split()[:3])
    except (IndexError, ValueError):
        raise ExportError(f"cannot read the sizes of {elf} from:\n{out}") from None
    return text, data, bss


def build_firmware(board: Board, model_c_dir: Path, out_dir: Path, emulated: bool = True, simd: bool = True,
                   stack_bytes: int = STACK_BYTES, bench_scratch_bytes: int | None = None, *,
                   bench_c: Path) -> FirmwareImage:
    """Compile and link the profiling firmware for `board` around the C model in `model_c_dir`.

    Args:
        board: The target board (targets.boards).
        model_c_dir: A generated model directory (micronas_model.c/.h, micronas_runtime.h, mn_*.c and
).
        out_dir: Where fw.elf, fw.bin, fw.map, link.ld and the objects go (created if missing).
        emulated: Build for the board's QEMU machine instead of the real board.
        simd: Use the runtime's DSP-extension kernels (False adds -DMICRONAS_NO_SIMD).
        stack_bytes: Size of the stack region at the top of RAM.
        bench_scratch_bytes: Size of BENCH_OP's scratch buffer (default: 16 KB); the
            latency-table builder enlarges it for the largest layers of a search space.
        bench_c: The generated BENCH_OP dispatcher (`firmware_export.codegen.bench.write_dispatcher`).

    Returns:
        The image, its section sizes and the compiler commands.

    Raises:
        ToolchainError: arm-none-eabi-gcc, -size or -objcopy missing.
        ConfigError: a real board whose chip the firmware has no driver for.
        ExportError: no model in model_c_dir, or the sources do not compile or link (e.g. the
            model does not fit the board's RAM); the compiler's message is included.
    """
    gcc, size_tool, objcopy = (_tool(f"arm-none-eabi-{t}") for t in ("gcc", "size", "objcopy"))
    model_c_dir = Path(model_c_dir).resolve()
    out_dir = Path(out_dir).resolve()
    for f in ("micronas_model.c", "micronas_model.h", "micronas_runtime.h"):
        if not (model_c_dir / f).is_file():
            raise ExportError(f"{model_c_dir} holds no generated model: {f} is missing",
                              "run `micronas export RUN` and pass RUN/c")
    bench_c = Path(bench_c).resolve()
    if not bench_c.is_file():
        raise ExportError(f"the BENCH_OP dispatcher {bench_c} is missing",
                          "write it with firmware_export.codegen.bench.write_dispatcher")
    if not re.fullmatch(r"[A-Za-z0-9._+-]{1,64}", board.name) or not re.fullmatch(r"cortex-m[0-9]+", board.core):
        raise ConfigError(f"board name {board.name!r} or core {board.core!r} cannot go into the firmware",
                          "board names use letters, digits and ._+-")
    if stack_bytes < 1024 or stack_bytes % 8:
        raise ConfigError(f"stack_bytes = {stack_bytes}; expected a multiple of 8, at least 1024")

    fw = firmware_dir()
    ld_values, defines, clock_hz, timer_hz = _layout(board, emulated, stack_bytes)
    if bench_scratch_bytes is not None:
        if not 1024 <= bench_scratch_bytes <= board.sram_bytes or bench_scratch_bytes % 16:
            raise ConfigError(f"bench_scratch_bytes = {bench_scratch_bytes}; expected a multiple of 16 in "
                              f"[1024, {board.sram_bytes}]")
        defines = [d for d in defines if not d.startswith("-DMN_BENCH_SCRATCH_BYTES=")]
        defines.append(f"-DMN_BENCH_SCRATCH_BYTES={bench_scratch_bytes}u")
    out_dir.mkdir(parents=True, exist_ok=True)
    ld = (fw / "link.ld.in").read_text()
    for key, value in ld_values.items():
        ld = ld.replace(f"@{key}@", value)
    (out_dir / "link.ld").write_text(ld)

    arch = [f"-mcpu={board.core}", "-mthumb", "-mfloat-abi=soft"]
    profile = ["-DMICRONAS_PROFILE"] + ([] if simd else ["-DMICRONAS_NO_SIMD"])
    uart = "uart_cmsdk.c" if emulated else "uart_stm32.c"
    fw_sources = [*(fw / s for s in (*FIRMWARE_SOURCES, uart)), bench_c]
    model_sources = [model_c_dir / "micronas_model.c", *sorted(model_c_dir.glob("mn_*.c"))]

    commands: list[list[str]] = []
    objects: list[Path] = []
    for group, sources, extra in (("fw", fw_sources, ["-ffreestanding", *defines, "-I", str(fw)]),
                                  ("model", model_sources, [])):
        obj_dir = out_dir / "obj" / group
        obj_dir.mkdir(parents=True, exist_ok=True)
        cmd = [gcc, *arch, *COMMON_FLAGS, *profile, *extra, "-I", str(model_c_dir), "-c", *map(str, sources)]
        _run(cmd, f"compiling the {'firmware' if group == 'fw' else 'model'} for {board.name}", cwd=obj_dir)
        commands.append(cmd)
        objects += [obj_dir / (s.stem + ".o") for s in sources]

    elf, binary, map_file = out_dir / "fw.elf", out_dir / "fw.bin", out_dir / "fw.map"
    link = [gcc, *arch, *LINK_FLAGS, f"-Wl,-Map={map_file}", "-T", str(out_dir / "link.ld"), *map(str, objects),
            "-o", str(elf)]
    _run(link, f"linking the firmware for {board.name}")
    commands.append(link)
    _run([objcopy, "-O", "binary", str(elf), str(binary)], "arm-none-eabi-objcopy")
    text, data, bss = _sizes(size_tool, elf)
    return FirmwareImage(board=board.name, emulated=emulated, simd=simd, elf=elf, bin=binary, text_bytes=text,
                         data_bytes=data, bss_bytes=bss, flash_bytes=text + data, ram_bytes=data + bss,
                         stack_bytes=stack_bytes, clock_hz=clock_hz, timer_hz=timer_hz,
                         commands=tuple(tuple(c) for c in commands))


__all__ = ["FirmwareImage", "ModelFootprint", "build_firmware", "firmware_dir", "model_footprint", "stm32_chip",
           "STACK_BYTES", "STM32_CHIPS"]


APP_STUB = """/* micronas: the smallest application around the model, to measure what it adds to flash */
#include "micronas_model.h"
static int8_t in_buf[MICRONAS_INPUT_BYTES], out_buf[MICRONAS_OUTPUT_BYTES];
void _start(void) {
    for (;;) (void)micronas_invoke(in_buf, out_buf);
}
"""


@dataclass(frozen=True)
class ModelFootprint:
    """What the generated model adds to an application, from its linked ELF.

    Attributes:
        text_bytes: Code and constants (weights, params) of the model and the runtime kernels it
            calls, plus the libc memcpy/memset they use and a 10-odd-byte stub calling
            micronas_invoke; no vector table, no start-up code.
        data_bytes: Initialised data.
        bss_bytes: Zero-initialised RAM: the arena, and the stub's input/output buffers.
        command: The link command, as run.
    """

    text_bytes: int
    data_bytes: int
    bss_bytes: int
    command: tuple[str, ...]


def model_footprint(board: Board, model_c_dir: Path, out_dir: Path, gc_sections: bool = True,
                    extra_cflags: tuple[str, ...] = ()) -> ModelFootprint:
    """Link the generated model into the smallest application (`APP_STUB`) and measure it.

    Compiled as the profiling firmware compiles the model (`COMMON_FLAGS`, the board's core,
    DSP kernels) but without MICRONAS_PROFILE, the protocol or BENCH_OP, so the figure is what an
    application pays for the model: with `gc_sections`, only the kernels it calls.

    Args:
        board: The target board (its core).
        model_c_dir: A generated model directory.
        out_dir: Where the stub, the ELF and its map go (created if missing).
        gc_sections: Link with -Wl,--gc-sections (False: every kernel of the runtime stays).
        extra_cflags: Further compiler flags (e.g. -ffreestanding, to measure its cost).

    Raises:
        ToolchainError: arm-none-eabi-gcc or -size missing.
        ExportError: the model does not compile or link.
    """
    gcc, size_tool = _tool("arm-none-eabi-gcc"), _tool("arm-none-eabi-size")
    model_c_dir, out_dir = Path(model_c_dir).resolve(), Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    stub = out_dir / "app_stub.c"
    stub.write_text(APP_STUB)
    elf = out_dir / "app.elf"
    sources = [stub, model_c_dir / "micronas_model.c", *sorted(model_c_dir.glob("mn_*.c"))]
    cmd = [gcc, f"-mcpu={board.core}", "-mthumb", "-mfloat-abi=soft", *COMMON_FLAGS, *extra_cflags,
           "-I", str(model_c_dir), *map(str, sources), "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
           *(["-Wl,--gc-sections"] if gc_sections else []), f"-Wl,-Map={out_dir / 'app.map'}", "-o", str(elf)]
    _run(cmd, f"linking the model into a minimal application for {board.core}", cwd=out_dir)
    text, data, bss = _sizes(size_tool, elf)
    return ModelFootprint(text, data, bss, tuple(cmd))
