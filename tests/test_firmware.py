"""The profiling firmware: cross builds for every board, and the serial protocol on the emulated cores.

The emulated tests start QEMU themselves (`-icount shift=7,align=off,sleep=off`, serial on a TCP
port) and speak the protocol of docs/protocol.md through a minimal inline encoder, independent
of the host-side module.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from firmware_export import codegen
from micronas.device import build_image
from micronas_base.errors import ExportError, ToolchainError
from targets import boards

from .protocol_sim import crc_bitwise
from .protocol_sim import frame as encode_test_frame
from .conftest import toolchain
from .test_codegen import reference_model

BOARDS = sorted(boards.all_boards())
ICOUNT_SHIFT = 7
ARENA_BYTES = 80  # the reference model's planned arena (tests/test_codegen.py)
INPUT_BYTES, OUTPUT_BYTES, NUM_LAYERS = 48, 3, 3

# protocol constants (docs/protocol.md)
HELLO, SET_INPUT, INVOKE, GET_OUTPUT, GET_LAYERS, GET_MEMORY, BENCH_OP, RESET_STATS = range(1, 9)
ERROR = 0xFF
BAD_CRC, BAD_LENGTH, UNKNOWN_TYPE, OUT_OF_RANGE, UNSUPPORTED = 1, 2, 3, 4, 5


# ---- fixtures: one generated model, six firmware images ---------------------------------------

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    gen = codegen.generate(reference_model(), labels=("a", "b", "c"), input_mean=(0.0, 0.5, -1.0),
                           input_std=(1.0, 2.0, 0.5))
    assert (gen.arena_bytes, len(gen.layers)) == (ARENA_BYTES, NUM_LAYERS)
    d = tmp_path_factory.mktemp("model") / "c"
    codegen.write(gen, d)
    return d


@pytest.fixture(scope="module")
def images(model_dir, tmp_path_factory):
    """(board name, emulated) -> FirmwareImage, built in parallel."""
    toolchain("arm-none-eabi-gcc")
    out = tmp_path_factory.mktemp("fw")
    keys = [(name, emu) for name in BOARDS for emu in (True, False)]

    def one(key):
        name, emu = key
        return build_image(boards.get(name), model_dir, out / f"{name}-{'emu' if emu else 'real'}", emulated=emu)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(keys, pool.map(one, keys)))


# ---- builds --------------------------------------------------------------------------------------

@pytest.mark.parametrize("emulated", [True, False], ids=["emulated", "real"])
@pytest.mark.parametrize("name", BOARDS)
def test_firmware_builds_for_every_board(images, name, emulated):
    img = images[(name, emulated)]
    board = boards.get(name)
    assert img.text_bytes > 0 and img.bss_bytes > 0 and img.data_bytes >= 0
    assert img.flash_bytes == img.text_bytes + img.data_bytes > 0
    assert img.ram_bytes == img.data_bytes + img.bss_bytes > 0
    assert img.bss_bytes >= ARENA_BYTES  # the static arena is zero-initialised RAM
    assert img.elf.is_file() and img.bin.stat().st_size >= img.text_bytes
    # the vector table opens the image: initial SP = top of RAM, reset handler in flash (Thumb bit)
    sp, pc = struct.unpack("<II", img.bin.read_bytes()[:8])
    if emulated:
        q = board.qemu
        ram_top, flash = q.ram_origin + q.ram_bytes, (q.code_origin, q.code_origin + q.code_bytes)
    else:
        ram_top, flash = board.ram_origin + board.sram_bytes, (board.flash_origin, board.flash_origin + board.flash_bytes)
    assert sp == ram_top and flash[0] <= pc < flash[1] and pc & 1
    compile_fw, compile_model, link = img.commands
    for cmd in (compile_fw, compile_model):
        assert {"-Wall", "-Wextra", "-Werror", "-O2", "-mthumb", f"-mcpu={board.core}", "-DMICRONAS_PROFILE",
                "-ffunction-sections", "-fdata-sections"} <= set(cmd)
    assert "-ffreestanding" not in compile_model  # it would turn the runtime's memcpy loads into calls
    assert not any(a.endswith("model_data.c") for a in compile_model)
    assert "-Wl,--gc-sections" in link
    assert ("-DMN_TIMER_SYSTICK" in compile_fw) == emulated


def test_missing_cross_compiler_names_the_package(monkeypatch, model_dir, tmp_path):
    import targets.build

    monkeypatch.setattr(targets.build.shutil, "which", lambda name: None)
    with pytest.raises(ToolchainError) as e:
        build_image(boards.default_board(), model_dir, tmp_path)
    assert "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi" in str(e.value)


def test_compile_error_carries_the_compiler_message(model_dir, tmp_path):
    toolchain("arm-none-eabi-gcc")
    broken = tmp_path / "c"
    shutil.copytree(model_dir, broken)
    with open(broken / "micronas_model.c", "a") as f:
        f.write("\n#error deliberately broken model\n")
    with pytest.raises(ExportError, match="deliberately broken model"):
        build_image(boards.default_board(), broken, tmp_path / "out")


# ---- the emulated boards -------------------------------------------------------------------------


class Device:
    """A minimal client: one request, one reply, checked CRC and SEQ."""

    def __init__(self, port, log: Path):
        self.port, self.log, self.seq = port, log, 0

    def _read(self, n: int) -> bytes:
        data = self.port.read(n)
        if len(data) != n:
            raise AssertionError(f"the device went quiet ({len(data)}/{n} bytes); QEMU log:\n{self.log.read_text()}")
        return data

    def send_raw(self, data: bytes) -> None:
        self.port.write(data)

    def reply(self) -> tuple[int, int, bytes]:
        while self._read(1) != b"\xa5":
            pass
        head = self._read(4)
        n, seq, type_ = struct.unpack("<HBB", head)
        payload = self._read(n)
        (crc,) = struct.unpack("<H", self._read(2))
        assert crc == crc_bitwise(head + payload), "reply with a bad CRC"
        return seq, type_, payload

    def request(self, type_: int, payload: bytes = b"") -> tuple[int, bytes]:
        """(reply type, payload) of one request; asserts the SEQ is echoed."""
        self.seq = (self.seq + 1) & 0xFF
        self.send_raw(encode_test_frame(self.seq, type_, payload))
        seq, rtype, body = self.reply()
        assert seq == self.seq
        return rtype, body

    def ok(self, type_: int, payload: bytes = b"") -> bytes:
        rtype, body = self.request(type_, payload)
        assert rtype == type_ | 0x80, f"type {type_:#x}: ERROR {body[:1].hex()} {body[2:].decode(errors='replace')}"
        return body

    def error(self, type_: int, payload: bytes = b"") -> int:
        rtype, body = self.request(type_, payload)
        assert rtype == ERROR and len(body) == 2 + body[1]
        return body[0]

    def invoke(self, count: int, mode: int) -> tuple[int, int, int, int]:
        return struct.unpack("<HIIQ", self.ok(INVOKE, struct.pack("<HB", count, mode)))

    def layers(self) -> tuple[int, ...]:
        return struct.unpack(f"<{NUM_LAYERS}I", self.ok(GET_LAYERS, struct.pack("<HH", 0, NUM_LAYERS)))

    def memory(self) -> tuple[int, int, int, int]:
        return struct.unpack("<4I", self.ok(GET_MEMORY))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", params=BOARDS)
def device(request, images, tmp_path_factory):
    """The board's emulated firmware running in QEMU, connected over TCP."""
    serial = pytest.importorskip("serial")
    qemu = toolchain("qemu-system-arm")
    board = boards.get(request.param)
    img = images[(board.name, True)]
    log = tmp_path_factory.mktemp("qemu") / f"{board.name}.log"
    port = _free_port()
    cmd = [qemu, "-M", board.qemu.machine, "-nographic", "-monitor", "none",
           "-icount", f"shift={ICOUNT_SHIFT},align=off,sleep=off",
           "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on", "-kernel", str(img.elf)]
    with open(log, "w") as logf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
    link = None
    try:
        deadline = time.monotonic() + 10
        while link is None:
            try:
                link = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=2)
            except serial.SerialException:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"QEMU did not open port {port}: {' '.join(cmd)}\n{log.read_text()}")
                time.sleep(0.05)
        yield board, Device(link, log)
    finally:
        if link is not None:
            link.close()
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def windows_and_logits(model_dir):
    """20 random input windows and the host build's logits for them."""
    from firmware_export import hostbuild

    toolchain("gcc")
    x = np.random.default_rng(7).integers(-128, 128, size=(20, INPUT_BYTES)).astype(np.int8)
    return x, hostbuild.build_and_run(model_dir, x, OUTPUT_BYTES)


def test_hello_describes_the_build(device):
    board, dev = device
    body = dev.ok(HELLO)
    fixed = struct.unpack_from("<BBIIIHHII", body)
    assert fixed == (1, 1, board.clock_hz, board.qemu.systick_hz, ARENA_BYTES, 512, NUM_LAYERS, INPUT_BYTES,
                     OUTPUT_BYTES)
    n = struct.calcsize("<BBIIIHHII")
    name = body[n + 1 : n + 1 + body[n]].decode()
    core = body[n + 2 + body[n] :]
    assert (name, core.decode(), body[n + 1 + body[n]]) == (board.name, board.core, len(core))


def test_outputs_match_the_host_build(device, windows_and_logits):
    _, dev = device
    x, want = windows_and_logits
    got = []
    for window in x:
        dev.ok(SET_INPUT, struct.pack("<I", 0) + window[:20].tobytes())  # in two pieces, at offsets
        dev.ok(SET_INPUT, struct.pack("<I", 20) + window[20:].tobytes())
        count, lo, hi, total = dev.invoke(1, 0)
        assert count == 1 and lo == hi == total > 0
        got.append(np.frombuffer(dev.ok(GET_OUTPUT, struct.pack("<IH", 0, OUTPUT_BYTES)), np.int8))
    np.testing.assert_array_equal(np.stack(got), want)


def test_layer_ticks_add_up_to_the_whole_model(device):
    _, dev = device
    _, whole, whole_max, _ = dev.invoke(3, 0)
    count, lo, hi, total = dev.invoke(2, 1)
    layers = dev.layers()
    assert all(t > 0 for t in layers)
    assert lo == hi == sum(layers) and total == 2 * sum(layers) and count == 2
    # The whole-model count also holds what no layer does: copying the input into the arena and
    # the output out of it, and the calls: a fixed 203 ticks here (~63 instructions), 1.4 % of
    # this tiny model but 0.01 % of the default one (the 1 % check on a real model is in
    # test_profile.py). Everything else is in the layers.
    overhead = whole - sum(layers)
    assert 0 <= overhead <= 256, (layers, whole)


def test_the_same_invoke_gives_the_same_ticks(device):
    _, dev = device
    dev.ok(SET_INPUT, struct.pack("<I", 0) + bytes(range(INPUT_BYTES)))
    first, again = dev.invoke(4, 0), dev.invoke(4, 0)
    assert first == again and first[1] == first[2]
    dev.invoke(1, 1)
    layers = dev.layers()
    dev.send_raw(b"\x00" * 7)  # shift the device's polling loop: timing must not depend on the host
    dev.invoke(1, 1)
    assert dev.layers() == layers


def test_memory_high_water(device):
    _, dev = device
    dev.ok(RESET_STATS)
    assert dev.memory()[:2] == (ARENA_BYTES, 0)
    dev.invoke(1, 0)
    arena, arena_hw, stack, stack_hw = dev.memory()
    assert arena == arena_hw == ARENA_BYTES
    assert stack == 8192 and 0 < stack_hw < stack


def test_bad_frames_are_answered_or_skipped(device):
    _, dev = device
    frame = bytearray(encode_test_frame(0x42, HELLO))
    frame[-1] ^= 0x01
    dev.send_raw(bytes(frame))
    seq, rtype, body = dev.reply()
    assert (seq, rtype, body[0]) == (0x42, ERROR, BAD_CRC)
    dev.send_raw(b"\x00\xa5\xff\xff")  # junk, then a header whose LEN is over MAX_PAYLOAD
    assert dev.ok(HELLO)[0] == 1  # ...skipped without waiting for 65535 bytes
    assert dev.error(0x33) == UNKNOWN_TYPE
    assert dev.error(HELLO, b"x") == BAD_LENGTH
    assert dev.error(INVOKE, struct.pack("<H", 1)) == BAD_LENGTH
    assert dev.error(INVOKE, struct.pack("<HB", 0, 0)) == OUT_OF_RANGE
    assert dev.error(INVOKE, struct.pack("<HB", 1, 2)) == OUT_OF_RANGE
    assert dev.error(SET_INPUT, struct.pack("<I", INPUT_BYTES - 1) + b"ab") == OUT_OF_RANGE
    assert dev.error(GET_OUTPUT, struct.pack("<IH", 1, OUTPUT_BYTES)) == OUT_OF_RANGE
    assert dev.error(GET_LAYERS, struct.pack("<HH", 1, NUM_LAYERS)) == OUT_OF_RANGE


def test_bench_op_times_conv_and_fully_connected(device):
    _, dev = device

    def conv(out_len: int) -> bytes:
        return struct.pack("<13i", out_len, 16, out_len, 16, 3, 1, 1, 1, 1, 3, -2, -128, 127)

    def bench(kernel: int, params: bytes, count: int = 3) -> tuple[int, int, int, int]:
        return struct.unpack("<HIIQ", dev.ok(BENCH_OP, struct.pack("<BH", kernel, count) + params))

    small, big = bench(1, conv(32)), bench(1, conv(64))
    assert small[0] == 3 and small[1] == small[2] > 0 and small[3] == 3 * small[1]
    assert 1.8 < big[1] / small[1] < 2.2  # twice the output steps, twice the work
    fc = bench(3, struct.pack("<10i", 1, 64, 10, 3, 0, -2, -128, 127, 1, 1))  # ..., per_channel, has_bias
    assert fc[1] == fc[2] > 0
    dw = bench(2, struct.pack("<12i", 32, 8, 32, 2, 3, 1, 1, 1, 3, -2, -128, 127))
    assert dw[1] > 0
    assert dev.error(BENCH_OP, struct.pack("<BH", 99, 1) + conv(8)) == UNSUPPORTED  # ids 1..12 exist
    assert dev.error(BENCH_OP, struct.pack("<BH", 1, 1) + conv(8)[:-4]) == BAD_LENGTH
    assert dev.error(BENCH_OP, struct.pack("<BH", 1, 1) + conv(16000)) == OUT_OF_RANGE  # does not fit
    # the model still runs correctly after the arena served as scratch space
    dev.ok(RESET_STATS)
    dev.invoke(2, 0)
    assert dev.memory()[1] == ARENA_BYTES
