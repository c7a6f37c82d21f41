"""The host side of the micronas serial protocol (docs/protocol.md, version 1).

Three layers, each usable on its own:

* frames: `crc16`, `encode_frame`, `decode_frame` and the streaming `FrameParser`, which turns any
  byte stream (garbage included) into valid frames with a buffer bounded by one maximal frame;
* `DeviceClient`: typed requests over any pyserial URL (`/dev/ttyACM0`, `socket://host:port`,
  `loop://`, `hwgrep://VID:PID`) or a pre-opened serial-like object, with a timeout and bounded
  retries on every exchange;
* `list_ports`: the serial ports of this machine, with a hint at the debug probe behind each.

Retry policy: a request is sent with a fresh SEQ and the client waits for a valid reply that
echoes it. Frames with another SEQ (stale replies to earlier attempts, echoes of our own request
on a loopback) are dropped. On a timeout, or on an ERROR BAD_CRC reply (the device saw a damaged
request), the same frame with the same SEQ is sent again, at most `retries` times; every request
is idempotent, so a duplicate execution is harmless, and a late reply to an earlier copy is
accepted. A resend after a timeout is preceded by one maximal frame's worth of zero bytes: they
complete any frame the device is stuck in after a damaged LEN (which would otherwise swallow the
resends), and are else ignored as bytes between frames.

How long an attempt waits adapts to the host and the work, so a loaded machine needs no options:

* the base is the larger of `timeout_s` (the floor, `--timeout`) and the reply time measured on
  this link so far (smoothed mean + 4 deviations, as TCP does, from replies to a first copy
  only: after a resend the reply may answer either copy);
* an INVOKE adds the work it asks for: `WORK_FACTOR` times the timer time of the repetitions
  requested, from the ticks the device reported for the previous INVOKE (none before the first);
* each resend doubles the wait (exponential back-off, one attempt at most `MAX_ATTEMPT_S`, or the
  base when that is larger), so a reply that is merely slow (a starved emulator) arrives during
  a later attempt and is accepted: it costs a duplicate request, not a failure.

An exchange therefore fails with `DeviceTimeout` after at most `sum(attempt_timeouts())` seconds
plus one read poll (0.02 s) per attempt: 1 + 2 + 4 + 8 = 15 s with the defaults on an idle host.
A chunked call (SET_INPUT, GET_OUTPUT, GET_LAYERS) makes one exchange per chunk. Chunks start at
START_CHUNK bytes, double after 64 clean chunks (up to the device's maximum payload: a clean
link soon sends full frames) and halve after one that needed a resend (to MIN_CHUNK at least):
a noisy link damages long frames most. Any other ERROR reply raises
`DeviceReportedError` at once; a lost link (QEMU killed, cable pulled) raises
`DeviceConnectionError`.

This module sits at the bottom of the layering: stdlib, pyserial and `micronas_base` only.
"""

from __future__ import annotations

import enum
import logging
import os
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from micronas_base.errors import MicronasError, UsageError

log = logging.getLogger(__name__)

SYNC = 0xA5
MAX_PAYLOAD = 512  # version 1; the device reports its own value in HELLO
HEADER_BYTES = 5  # SYNC, LEN (u16), SEQ, TYPE
CRC_BYTES = 2
PROTOCOL_VERSION = 1
REPLY_BIT = 0x80
DEFAULT_TIMEOUT_S = 1.0
DEFAULT_RETRIES = 3
WORK_FACTOR = 4.0  # an INVOKE may take this many times its timer time (QEMU on a starved host)
MAX_ATTEMPT_S = 30.0  # back-off stops doubling here (unless the base alone is larger)
MIN_CHUNK = 64  # SET_INPUT/GET_OUTPUT/GET_LAYERS chunks never shrink below this many bytes
START_CHUNK = 128  # ... and start here: at 0.1 % damaged bytes a 519-byte frame is hit 40 % of the time
_CLEAN_TO_GROW = 64  # clean chunks before the chunk size doubles (slowly: a 0.1 % link stays short)
DEFAULT_BAUDRATE = 115200
_POLL_S = 0.02  # the port's own read timeout: how often the client looks at its deadline
_BOARDS_HINT = "`micronas boards` lists the connected devices"


class MsgType(enum.IntEnum):
    """Request types; a reply has `type | 0x80`, or is ERROR."""

    HELLO = 0x01
    SET_INPUT = 0x02
    INVOKE = 0x03
    GET_OUTPUT = 0x04
    GET_LAYERS = 0x05
    GET_MEMORY = 0x06
    BENCH_OP = 0x07
    RESET_STATS = 0x08
    ERROR = 0xFF


class ErrorCode(enum.IntEnum):
    """The `code` byte of an ERROR reply."""

    BAD_CRC = 1
    BAD_LENGTH = 2
    UNKNOWN_TYPE = 3
    OUT_OF_RANGE = 4
    UNSUPPORTED = 5
    TIMER = 6


class TimerKind(enum.IntEnum):
    """What the device's timer counts (HELLO `timer_kind`)."""

    CYCLES = 0  # DWT CYCCNT on real silicon
    QEMU_ICOUNT = 1  # SysTick under `-icount`: convert with targets.qemu.instructions_from_ticks


def error_code_name(code: int) -> str:
    """The name of an ERROR code, e.g. `OUT_OF_RANGE`, or `UNKNOWN(0x2a)` for one not in v1."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"UNKNOWN(0x{code:02x})"


def _type_name(t: int) -> str:
    try:
        return MsgType(t).name
    except ValueError:
        return f"0x{t:02x}"


# --------------------------------------------------------------------------------------------
# Errors (exit code 2, like every MicronasError that is not a budget failure)


class DeviceError(MicronasError):
    """Talking to a board (real or emulated) failed."""


class PortError(DeviceError):
    """The port or URL cannot be opened: it does not exist, is busy, or the URL is malformed."""


class DeviceTimeout(DeviceError):
    """No valid reply within the timeout, after every retry."""


class DeviceConnectionError(DeviceError):
    """The link went away in the middle of an exchange (QEMU exited, USB unplugged)."""


class DeviceProtocolError(DeviceError):
    """A reply that is valid on the wire but wrong for the request (length, type, version)."""


class DeviceReportedError(DeviceError):
    """The device answered ERROR.

    Attributes:
        request: Name of the request, e.g. `GET_OUTPUT`.
        code: The ERROR code byte.
        code_name: Its name (`OUT_OF_RANGE`...).
        detail: The device's ASCII detail string.
    """

    def __init__(self, request: str, code: int, detail: str, url: str):
        self.request = request
        self.code = code
        self.code_name = error_code_name(code)
        self.detail = detail
        self.url = url
        hints = {
            ErrorCode.UNSUPPORTED: "this firmware does not hold that kernel; rebuild it with the kernel enabled",
            ErrorCode.TIMER: "the cycle counter does not advance; check the board's timer setting",
            ErrorCode.OUT_OF_RANGE: "the firmware was built for another model; rebuild and flash it",
            ErrorCode.UNKNOWN_TYPE: "host and firmware speak different protocol versions; reflash the firmware",
            ErrorCode.BAD_LENGTH: "host and firmware speak different protocol versions; reflash the firmware",
        }
        message = f"device at {url} answered {request} with ERROR {self.code_name}"
        if detail:
            message += f": {detail}"
        super().__init__(message, hints.get(code))


# --------------------------------------------------------------------------------------------
# Frames


def _make_crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _make_crc_table()


def crc16(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, xorout 0.

    Args:
        data: The bytes to check.
        crc: The running value, to continue a CRC over several pieces.

    Returns:
        The 16-bit CRC; `crc16(b"123456789") == 0x29B1`.
    """
    table = _CRC_TABLE
    for b in data:
        crc = ((crc << 8) & 0xFF00) ^ table[(crc >> 8) ^ b]
    return crc


@dataclass(frozen=True)
class Frame:
    """One protocol frame.

    Attributes:
        seq: Sequence number (u8); a reply echoes its request's.
        type: TYPE byte (a `MsgType`, `| 0x80` for a reply).
        payload: The payload, at most MAX_PAYLOAD bytes.
    """

    seq: int
    type: int
    payload: bytes = b""

    def encode(self) -> bytes:
        return encode_frame(self.seq, self.type, self.payload)


def encode_frame(seq: int, type_: int, payload: bytes = b"") -> bytes:
    """Serialise one frame: SYNC, LEN, SEQ, TYPE, payload, CRC.

    Args:
        seq: Sequence number, 0..255.
        type_: TYPE byte, 0..255.
        payload: At most 65,535 bytes (a receiver rejects more than its MAX_PAYLOAD).

    Returns:
        The frame's bytes.

    Raises:
        ValueError: seq or type out of a byte, payload longer than a u16 can say.
    """
    if not 0 <= seq <= 0xFF or not 0 <= type_ <= 0xFF:
        raise ValueError(f"seq {seq} / type {type_} must each fit in a byte")
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a u16 LEN")
    body = struct.pack("<HBB", len(payload), seq, type_) + bytes(payload)
    return bytes([SYNC]) + body + struct.pack("<H", crc16(body))


def decode_frame(data: bytes, max_payload: int = MAX_PAYLOAD) -> Frame:
    """Parse exactly one frame (no leading or trailing bytes).

    Args:
        data: The frame's bytes.
        max_payload: Largest LEN accepted.

    Returns:
        The frame.

    Raises:
        DeviceProtocolError: not a frame: wrong SYNC, LEN too big or not matching the size, bad CRC.
    """
    if len(data) < HEADER_BYTES + CRC_BYTES or data[0] != SYNC:
        raise DeviceProtocolError(f"not a frame: {bytes(data[:8]).hex()}... ({len(data)} bytes)")
    length, seq, type_ = struct.unpack_from("<HBB", data, 1)
    if length > max_payload:
        raise DeviceProtocolError(f"frame LEN {length} exceeds the maximum payload {max_payload}")
    if len(data) != HEADER_BYTES + length + CRC_BYTES:
        expected = HEADER_BYTES + length + CRC_BYTES
        raise DeviceProtocolError(f"frame LEN {length} but {len(data)} bytes (expected {expected})")
    want = crc16(data[1 : HEADER_BYTES + length])
    got = struct.unpack_from("<H", data, HEADER_BYTES + length)[0]
    if want != got:
        raise DeviceProtocolError(f"frame CRC 0x{got:04x}, computed 0x{want:04x}")
    return Frame(seq, type_, bytes(data[HEADER_BYTES : HEADER_BYTES + length]))


class FrameParser:
    """Streaming receiver: feed it any bytes, get back the complete valid frames.

    It hunts for SYNC, rejects a LEN above `max_payload` as soon as the header is in (without
    waiting for that many bytes), and drops a frame with a bad CRC. After a rejected header or a
    bad CRC it resumes hunting at the byte after the false SYNC, so a real frame hidden behind a
    false start is still found. The buffer never holds more than one maximal frame and `feed`
    never raises on garbage.

    Args:
        max_payload: Largest LEN accepted.

    Attributes:
        frames: Valid frames returned so far.
        crc_errors: Candidate frames dropped for a bad CRC.
        oversize: Headers rejected for LEN > max_payload.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD):
        if not 0 <= max_payload <= 0xFFFF:
            raise ValueError(f"max_payload {max_payload} must be 0..65535")
        self.max_payload = max_payload
        self._buf = bytearray()
        self.frames = 0
        self.crc_errors = 0
        self.oversize = 0

    @property
    def max_frame_bytes(self) -> int:
        """The buffer bound: header + max_payload + CRC."""
        return HEADER_BYTES + self.max_payload + CRC_BYTES

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not complete yet."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget any partial frame."""
        self._buf.clear()

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Take more bytes from the stream.

        Args:
            data: Any bytes.

        Returns:
            The frames completed by these bytes, in stream order (possibly none).
        """
        out: list[Frame] = []
        view = memoryview(bytes(data))
        limit = self.max_frame_bytes
        i = 0
        while i < len(view):
            # Take only what fits: the scan below always consumes a full buffer, so it stays bounded.
            if len(self._buf) >= limit:  # only after max_payload was lowered: settle the head first
                self._scan(out)
            take = limit - len(self._buf)
            self._buf += view[i : i + take]
            i += take
            self._scan(out)
        return out

    def resync(self) -> list[Frame]:
        """Give up on the partial frame at the head of the buffer and hunt again inside it.

        Call it when the stream has gone quiet (a timeout): the SYNC that started the partial frame
        was probably a damaged or false one, and a complete frame may sit behind it.

        Returns:
            Frames found in the bytes already buffered.
        """
        out: list[Frame] = []
        if self._buf:
            del self._buf[:1]
            self._scan(out)
        return out

    def _scan(self, out: list[Frame]) -> None:
        buf = self._buf
        while True:
            start = buf.find(SYNC)
            if start < 0:
                buf.clear()
                return
            if start:
                del buf[:start]
            if len(buf) < 3:
                return
            length = buf[1] | (buf[2] << 8)
            if length > self.max_payload:
                self.oversize += 1
                del buf[:1]
                continue
            total = HEADER_BYTES + length + CRC_BYTES
            if len(buf) < total:
                return
            crc = buf[total - 2] | (buf[total - 1] << 8)
            if crc16(memoryview(buf)[1 : HEADER_BYTES + length]) != crc:
                self.crc_errors += 1
                del buf[:1]
                continue
            out.append(Frame(buf[3], buf[4], bytes(buf[HEADER_BYTES : HEADER_BYTES + length])))
            self.frames += 1
            del buf[:total]


# --------------------------------------------------------------------------------------------
# Reply payloads


@dataclass(frozen=True)
class Hello:
    """The HELLO reply: what the firmware was built for.

    Attributes:
        protocol_version: 1 for this host.
        timer_kind: CYCLES (real silicon) or QEMU_ICOUNT.
        clock_hz: Core clock the firmware was built for.
        timer_hz: Timer ticks per second.
        arena_bytes: The model's tensor arena.
        max_payload: Largest frame payload the device takes and sends.
        num_layers: Entries in the per-layer timing table.
        input_bytes: Model input size.
        output_bytes: Model output size.
        board: Board name.
        core: Core name, e.g. `cortex-m4`.
    """

    protocol_version: int
    timer_kind: TimerKind | int
    clock_hz: int
    timer_hz: int
    arena_bytes: int
    max_payload: int
    num_layers: int
    input_bytes: int
    output_bytes: int
    board: str
    core: str

    _FIXED = struct.Struct("<BBIIIHHII")

    @property
    def emulated(self) -> bool:
        """True when ticks are QEMU icount ticks rather than CPU cycles."""
        return self.timer_kind == TimerKind.QEMU_ICOUNT

    def encode(self) -> bytes:
        """The reply payload (for simulators and tests)."""
        b, c = self.board.encode("ascii"), self.core.encode("ascii")
        return (self._FIXED.pack(self.protocol_version, int(self.timer_kind), self.clock_hz, self.timer_hz,
                                 self.arena_bytes, self.max_payload, self.num_layers, self.input_bytes,
                                 self.output_bytes)
                + bytes([len(b)]) + b + bytes([len(c)]) + c)

    @classmethod
    def decode(cls, payload: bytes) -> Hello:
        """Parse a HELLO reply payload.

        Raises:
            DeviceProtocolError: wrong length, non-ASCII names.
        """
        n = cls._FIXED.size
        if len(payload) < n + 2:
            raise DeviceProtocolError(f"HELLO reply of {len(payload)} bytes; expected at least {n + 2}")
        fixed = cls._FIXED.unpack_from(payload)
        blen = payload[n]
        if len(payload) < n + 1 + blen + 1:
            raise DeviceProtocolError(f"HELLO reply of {len(payload)} bytes is too short for a {blen}-byte board name")
        board = payload[n + 1 : n + 1 + blen]
        clen = payload[n + 1 + blen]
        core = payload[n + 2 + blen :]
        if len(core) != clen:
            raise DeviceProtocolError(f"HELLO reply: core name of {len(core)} bytes, length byte says {clen}")
        try:
            names = board.decode("ascii"), core.decode("ascii")
        except UnicodeDecodeError as e:
            raise DeviceProtocolError(f"HELLO reply: board/core name is not ASCII ({e})") from None
        kind: TimerKind | int
        try:
            kind = TimerKind(fixed[1])
        except ValueError:
            kind = fixed[1]
        return cls(fixed[0], kind, *fixed[2:], *names)


@dataclass(frozen=True)
class InvokeStats:
    """Timing of `count` invocations (INVOKE) or kernel calls (BENCH_OP), in timer ticks.

    Attributes:
        count: Repetitions measured.
        min_ticks: Fastest one.
        max_ticks: Slowest one.
        sum_ticks: Total over all.
    """

    count: int
    min_ticks: int
    max_ticks: int
    sum_ticks: int

    _STRUCT = struct.Struct("<HIIQ")

    @property
    def mean_ticks(self) -> float:
        return self.sum_ticks / self.count if self.count else 0.0

    def encode(self) -> bytes:
        return self._STRUCT.pack(self.count, self.min_ticks, self.max_ticks, self.sum_ticks)

    @classmethod
    def decode(cls, payload: bytes, request: str = "INVOKE") -> InvokeStats:
        if len(payload) != cls._STRUCT.size:
            raise DeviceProtocolError(f"{request} reply of {len(payload)} bytes; expected {cls._STRUCT.size}")
        return cls(*cls._STRUCT.unpack(payload))


@dataclass(frozen=True)
class MemoryStats:
    """GET_MEMORY: arena and stack sizes and their high-water marks, in bytes."""

    arena_bytes: int
    arena_high_water: int
    stack_bytes: int
    stack_high_water: int

    _STRUCT = struct.Struct("<IIII")

    def encode(self) -> bytes:
        return self._STRUCT.pack(self.arena_bytes, self.arena_high_water, self.stack_bytes, self.stack_high_water)

    @classmethod
    def decode(cls, payload: bytes) -> MemoryStats:
        if len(payload) != cls._STRUCT.size:
            raise DeviceProtocolError(f"GET_MEMORY reply of {len(payload)} bytes; expected {cls._STRUCT.size}")
        return cls(*cls._STRUCT.unpack(payload))


# --------------------------------------------------------------------------------------------
# The client


class SerialLike(Protocol):
    """What DeviceClient needs from a port: pyserial's `Serial` or any object with these."""

    timeout: float | None

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...

    def close(self) -> None: ...


def _is_native_path(url: str) -> bool:
    return "://" not in url or url.startswith("hwgrep://")


def open_port(url: str, baudrate: int = DEFAULT_BAUDRATE, write_timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
    """Open a pyserial port or URL for the protocol (8N1, exclusive for real ports).

    Args:
        url: A device path or pyserial URL.
        baudrate: For real UARTs (115200 in v1); ignored by socket:// and loop://.
        write_timeout_s: A write that blocks longer raises.

    Returns:
        The open serial object.

    Raises:
        PortError: it does not exist, is busy, refuses the connection or the URL is malformed.
    """
    import serial  # pyserial: imported here so `import targets.protocol` stays cheap

    kwargs: dict[str, Any] = {"baudrate": baudrate, "timeout": _POLL_S, "write_timeout": write_timeout_s}
    if _is_native_path(url) and os.name == "posix":
        kwargs["exclusive"] = True  # a second program on the same port corrupts both streams
    try:
        return serial.serial_for_url(url, **kwargs)
    except serial.SerialException as e:
        if url.startswith("socket://"):
            hint = "is the emulator (QEMU) running and listening on that port?"
        else:
            hint = f"{_BOARDS_HINT}; if the port is busy, close the other program using it (a serial monitor?)"
        raise PortError(f"cannot open {url}: {e}", hint) from None
    except (ValueError, OSError) as e:
        raise PortError(f"cannot open {url}: {e}",
                        f"use a device path (/dev/ttyACM0, COM3) or socket://host:port, loop://, hwgrep://VID:PID; "
                        f"{_BOARDS_HINT}") from None


class DeviceClient:
    """Typed requests to a board running the micronas firmware.

    Open one with `DeviceClient.open(url)` (it owns and closes the port) or wrap an open
    serial-like object with `DeviceClient(port)`. Use it as a context manager.

    Args:
        port: An open serial-like object (pyserial `Serial` or a test double).
        url: Names the link in messages.
        timeout_s: The floor of the per-attempt wait for a reply; the wait adapts above it (see the
            module docstring). INVOKE/BENCH_OP take a per-call override.
        retries: Resends after the first attempt.
        clock: Monotonic seconds; tests with a simulated transport pass its clock.

    The port's read timeout is set to 20 ms (the client polls it against its own deadlines).
    """

    def __init__(self, port: SerialLike, url: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 retries: int = DEFAULT_RETRIES, *, clock: Callable[[], float] = time.monotonic):
        if timeout_s <= 0:
            raise UsageError(f"timeout_s = {timeout_s}; expected a positive number of seconds")
        if retries < 0:
            raise UsageError(f"retries = {retries}; expected 0 or more")
        self.port = port
        self.url = url or getattr(port, "port", None) or repr(port)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self._clock = clock
        self._seq = 0
        self._parser = FrameParser(MAX_PAYLOAD)
        self._ready: deque[Frame] = deque()
        self._hello: Hello | None = None
        self._owns_port = False
        self.resends = 0  # attempts after the first, over the client's life (for reports and tests)
        self.stale = 0  # frames dropped for a stale SEQ
        self._srtt: float | None = None  # smoothed reply time of this link (seconds)
        self._rttvar = 0.0  # its mean deviation
        self._invoke_ticks: int | None = None  # one repetition of the model, from the last INVOKE
        self._chunk: int | None = START_CHUNK  # bytes per SET_INPUT/GET_OUTPUT/GET_LAYERS frame (None: the maximum)
        self._clean_chunks = 0
        current = getattr(port, "timeout", None)
        if current is None or current > _POLL_S:
            try:
                port.timeout = _POLL_S  # a blocking read would outlive our deadline
            except (AttributeError, ValueError):
                pass

    @classmethod
    def open(cls, url: str | SerialLike, timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES,
             baudrate: int = DEFAULT_BAUDRATE) -> DeviceClient:
        """Open a port or URL (or adopt an open serial-like object) and return a client.

        Args:
            url: `/dev/ttyACM0`, `COM3`, `socket://127.0.0.1:PORT`, `loop://`, `hwgrep://0483:374b`, or
                an object with read/write/timeout.
            timeout_s: Per-attempt reply timeout.
            retries: Resends after the first attempt.
            baudrate: For real UARTs.

        Returns:
            A client; closing it closes a port it opened.

        Raises:
            PortError: the port does not exist, is busy or refuses the connection.
        """
        if not isinstance(url, str):
            return cls(url, None, timeout_s, retries)
        port = open_port(url, baudrate, write_timeout_s=timeout_s)
        client = cls(port, url, timeout_s, retries)
        client._owns_port = True
        try:
            port.reset_input_buffer()  # bytes from a previous session would only be discarded later
        except Exception:  # noqa: BLE001 - optional on serial-likes, and harmless if it fails
            pass
        return client

    def close(self) -> None:
        """Close the port if this client opened it."""
        if self._owns_port:
            try:
                self.port.close()
            except Exception:  # noqa: BLE001 - closing a dead link must not mask the real error
                pass

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- typed requests ------------------------------------------------------------------

    def hello(self) -> Hello:
        """HELLO: protocol version, timer, sizes, board and core. Cached for chunking.

        Raises:
            DeviceProtocolError: another protocol version.
        """
        h = Hello.decode(self._exchange(MsgType.HELLO))
        if h.protocol_version != PROTOCOL_VERSION:
            raise DeviceProtocolError(
                f"device at {self.url} speaks protocol version {h.protocol_version}; "
                f"this host speaks {PROTOCOL_VERSION}",
                "rebuild and flash the firmware from this micronas version")
        if h.max_payload < 8:
            raise DeviceProtocolError(f"device at {self.url} reports max_payload {h.max_payload}; expected >= 8")
        self._hello = h
        self._parser.max_payload = min(h.max_payload, 0xFFFF)
        return h

    @property
    def info(self) -> Hello:
        """The HELLO reply, fetched on first use."""
        return self._hello if self._hello is not None else self.hello()

    @property
    def max_payload(self) -> int:
        """The largest payload the host sends: the device's value, never more than MAX_PAYLOAD."""
        return min(self.info.max_payload, MAX_PAYLOAD)

    def set_input(self, data: bytes, offset: int = 0) -> None:
        """SET_INPUT, in chunks of max_payload - 4 bytes.

        Args:
            data: Input tensor bytes.
            offset: Byte offset in the device's input buffer.

        Raises:
            UsageError: the data does not fit the firmware's input buffer.
        """
        data = bytes(data)
        if offset < 0 or offset + len(data) > self.info.input_bytes:
            raise UsageError(
                f"input of {len(data)} bytes at offset {offset} does not fit the firmware's "
                f"{self.info.input_bytes}-byte input (device at {self.url})",
                "the firmware was built for another model; rebuild and flash it")
        pos = 0
        while pos < len(data):
            step = self._chunk_bytes(self.max_payload - 4)
            self._chunked(MsgType.SET_INPUT, struct.pack("<I", offset + pos) + data[pos : pos + step], 0)
            pos += step

    def invoke(self, count: int = 1, per_layer: bool = False, timeout_s: float | None = None) -> InvokeStats:
        """INVOKE: run the model `count` times and time each run.

        Args:
            count: Repetitions, 1..65535.
            per_layer: Also record each layer's ticks (read them with `get_layers`).
            timeout_s: Per-attempt timeout for this call (long models on slow cores need more).

        Returns:
            The timing statistics.
        """
        _check_u16("count", count, minimum=1)
        payload = struct.pack("<HB", count, 1 if per_layer else 0)
        work = 0.0
        if self._invoke_ticks and self._hello is not None and self._hello.timer_hz > 0:
            # count timed runs, one untimed (count 1), the per-layer hooks: a generous estimate
            runs = (count + 1) * (1.5 if per_layer else 1.0)
            work = WORK_FACTOR * runs * self._invoke_ticks / self._hello.timer_hz
        stats = InvokeStats.decode(self._exchange(MsgType.INVOKE, payload, timeout_s=timeout_s, work_s=work),
                                   "INVOKE")
        if not per_layer and stats.max_ticks > 0:
            self._invoke_ticks = stats.max_ticks
        return stats

    def get_output(self) -> bytes:
        """GET_OUTPUT: the whole output tensor (HELLO output_bytes), in max_payload chunks."""
        total = self.info.output_bytes
        out = bytearray()
        while len(out) < total:
            n = min(self._chunk_bytes(self.max_payload), total - len(out))
            out += self._chunked(MsgType.GET_OUTPUT, struct.pack("<IH", len(out), n), n)
        return bytes(out)

    def get_layers(self) -> list[int]:
        """GET_LAYERS: ticks of each layer in the last per-layer INVOKE (its last repetition)."""
        total = self.info.num_layers
        ticks: list[int] = []
        while len(ticks) < total:
            n = min(self._chunk_bytes(self.max_payload) // 4, total - len(ticks))
            raw = self._chunked(MsgType.GET_LAYERS, struct.pack("<HH", len(ticks), n), 4 * n)
            ticks.extend(struct.unpack(f"<{n}I", raw))
        return ticks

    def get_memory(self) -> MemoryStats:
        """GET_MEMORY: arena and stack sizes and high-water marks."""
        return MemoryStats.decode(self._exchange(MsgType.GET_MEMORY))

    def bench_op(self, kernel: int, params: bytes, count: int, timeout_s: float | None = None) -> InvokeStats:
        """BENCH_OP: time one kernel `count` times.

        Args:
            kernel: Kernel id (u8) known to the firmware.
            params: Kernel-specific parameters, at most max_payload - 3 bytes.
            count: Repetitions, 1..65535.
            timeout_s: Per-attempt timeout for this call.

        Returns:
            The timing statistics.
        """
        if not 0 <= kernel <= 0xFF:
            raise UsageError(f"kernel id {kernel}; expected 0..255")
        _check_u16("count", count, minimum=1)
        params = bytes(params)
        if len(params) > self.max_payload - 3:
            raise UsageError(f"BENCH_OP params of {len(params)} bytes; the device takes at most {self.max_payload - 3}")
        payload = struct.pack("<BH", kernel, count) + params
        return InvokeStats.decode(self._exchange(MsgType.BENCH_OP, payload, timeout_s=timeout_s), "BENCH_OP")

    def reset_stats(self) -> None:
        """RESET_STATS: re-fill the arena and stack canaries."""
        self._exchange(MsgType.RESET_STATS, expect_len=0)

    # ---- the exchange ----------------------------------------------------------------------

    def attempt_timeouts(self, timeout_s: float | None = None, work_s: float = 0.0) -> list[float]:
        """The wait of each attempt of the next exchange (the first, then every resend).

        Args:
            timeout_s: The floor (default: the client's `timeout_s`).
            work_s: Seconds of device work the request asks for (INVOKE), added to the base.

        Returns:
            `retries + 1` waits in seconds: the base, doubled per resend up to MAX_ATTEMPT_S.
        """
        floor = self.timeout_s if timeout_s is None else float(timeout_s)
        base = max(floor, self._srtt + 4 * self._rttvar if self._srtt is not None else 0.0) + work_s
        cap = max(base, MAX_ATTEMPT_S)
        return [min(base * 2**k, cap) for k in range(self.retries + 1)]

    def _observe_reply_time(self, seconds: float) -> None:
        """Fold one reply time into the smoothed estimate (Jacobson/Karels, gains 1/8 and 1/4)."""
        if self._srtt is None:
            self._srtt, self._rttvar = seconds, seconds / 2
        else:
            self._rttvar += (abs(seconds - self._srtt) - self._rttvar) / 4
            self._srtt += (seconds - self._srtt) / 8

    def _chunk_bytes(self, most: int) -> int:
        return most if self._chunk is None else max(1, min(most, self._chunk))

    def _chunked(self, mtype: int, payload: bytes, reply_len: int) -> bytes:
        """One chunk's exchange; shrink the chunk after one that needed a resend, grow it back later."""
        before = self.resends
        size = max(len(payload) - 4, reply_len)  # the data this chunk carries
        reply = self._exchange(mtype, payload, expect_len=reply_len)
        if self.resends > before and size >= 2 * MIN_CHUNK:  # a short frame's loss says little
            self._chunk, self._clean_chunks = size // 2, 0
            log.debug("%s needed a resend: chunks of %d bytes from now on", _type_name(mtype), self._chunk)
        elif self._chunk is not None:
            self._clean_chunks += 1
            if self._clean_chunks >= _CLEAN_TO_GROW:
                self._chunk, self._clean_chunks = self._chunk * 2, 0
                if self._chunk >= MAX_PAYLOAD:
                    self._chunk = None
        return reply

    def _exchange(self, mtype: int, payload: bytes = b"", *, timeout_s: float | None = None,
                  expect_len: int | None = None, work_s: float = 0.0) -> bytes:
        """Send one request and return its reply payload, with adaptive timeouts and bounded retries."""
        waits = self.attempt_timeouts(timeout_s, work_s)
        self._seq = (self._seq + 1) & 0xFF
        seq = self._seq
        frame = encode_frame(seq, mtype, payload)
        name = _type_name(mtype)
        reasons: list[str] = []
        sent_at = 0.0  # when the first copy went out
        for attempt, timeout in enumerate(waits):
            out = frame
            filled = False
            if attempt:
                self.resends += 1
                log.debug("%s seq %d: resend %d (%s)", name, seq, attempt, reasons[-1])
                if reasons[-1] == "no reply":
                    # The device may be stuck inside a frame whose LEN was damaged (it waits for up to
                    # max_payload bytes and would swallow this resend). Zeros complete that frame (a
                    # CRC error there) and are then skipped as bytes between frames.
                    out = self._filler() + frame
                    filled = True
            self._write(out, name)
            if not attempt:
                sent_at = self._clock()
            deadline = self._clock() + timeout
            while True:
                reply = self._next_frame(deadline, name)
                if reply is None:
                    reasons.append("no reply")
                    break
                if reply.seq != seq or reply.type < REPLY_BIT:
                    self.stale += 1  # an old reply, a duplicate, or our own request echoed back
                    continue
                if reply.type == MsgType.ERROR:
                    code, detail = _decode_error(reply.payload)
                    if code == ErrorCode.BAD_CRC:
                        # All attempts share the SEQ, so this may answer an earlier, damaged copy while
                        # a good one is still on its way: resend at once if we may, else keep waiting.
                        # After zeros it may answer the stuck frame they completed, with the reply to this
                        # copy still to come: give that a short grace before resending.
                        if attempt < self.retries:
                            if not filled:
                                reasons.append("device saw a bad CRC")
                                break
                            filled = False
                            grace = max(0.1, 4 * self._srtt) if self._srtt is not None else 0.1
                            deadline = min(deadline, self._clock() + grace)
                        continue
                    raise DeviceReportedError(name, code, detail, self.url)
                if reply.type != mtype | REPLY_BIT:
                    raise DeviceProtocolError(
                        f"device at {self.url} answered {name} (seq {seq}) with type {_type_name(reply.type & 0x7F)}",
                        "host and firmware disagree about the protocol; reflash the firmware")
                if expect_len is not None and len(reply.payload) != expect_len:
                    raise DeviceProtocolError(
                        f"device at {self.url} answered {name} with {len(reply.payload)} bytes; expected {expect_len}")
                if not attempt and mtype not in (MsgType.INVOKE, MsgType.BENCH_OP):
                    # Only an unambiguous sample (Karn): after a resend the reply may answer either copy,
                    # and timing it from the first would feed the back-off into the next base.
                    self._observe_reply_time(self._clock() - sent_at)
                return reply.payload
        raise DeviceTimeout(
            f"no valid reply to {name} from {self.url} within {_seconds(sum(waits))} s over "
            f"{self.retries + 1} attempt(s) of {_seconds(waits[0])} s doubling ({', '.join(reasons)})",
            "is the board running the micronas firmware (reset it or flash it again)? "
            f"{_BOARDS_HINT}; if it is, the host is overloaded or the link is noisy: raise --timeout "
            "(seconds per reply) or --retries")

    def _filler(self) -> bytes:
        device_max = self._hello.max_payload if self._hello is not None else MAX_PAYLOAD
        return bytes(HEADER_BYTES + device_max + CRC_BYTES)

    def _write(self, frame: bytes, name: str) -> None:
        import serial

        try:
            self.port.write(frame)
        except serial.SerialTimeoutException:
            raise DeviceTimeout(f"writing {name} to {self.url} timed out",
                                "is the board connected and running? " + _BOARDS_HINT) from None
        except (serial.SerialException, OSError) as e:
            raise DeviceConnectionError(f"link to {self.url} lost while sending {name}: {e}",
                                        "did the emulator exit or the board get unplugged? " + _BOARDS_HINT) from None

    def _next_frame(self, deadline: float, name: str) -> Frame | None:
        """The next valid frame from the port, or None at the deadline."""
        import serial

        while True:
            if self._ready:
                return self._ready.popleft()
            if self._clock() >= deadline:
                # The stream went quiet inside a "frame": its SYNC was probably false or damaged, and
                # a complete reply may sit behind it. A reply still in flight is sent again anyway.
                while not self._ready and self._parser.buffered:
                    self._ready.extend(self._parser.resync())
                if self._ready:
                    return self._ready.popleft()
                return None
            try:
                data = self.port.read(1)
                waiting = getattr(self.port, "in_waiting", 0) if data else 0
                if waiting:
                    data += self.port.read(waiting)
            except (serial.SerialException, OSError) as e:
                raise DeviceConnectionError(
                    f"link to {self.url} lost while waiting for the reply to {name}: {e}",
                    "did the emulator exit or the board reset or get unplugged? " + _BOARDS_HINT) from None
            if data:
                self._ready.extend(self._parser.feed(data))


def _seconds(s: float) -> str:
    return f"{s:.3g}"


def _decode_error(payload: bytes) -> tuple[int, str]:
    if not payload:
        return 0, "(empty ERROR payload)"
    n = payload[1] if len(payload) > 1 else 0
    detail = payload[2 : 2 + n].decode("ascii", errors="replace")
    return payload[0], detail


def _check_u16(name: str, value: int, minimum: int = 0) -> None:
    if not minimum <= value <= 0xFFFF:
        raise UsageError(f"{name} = {value}; expected {minimum}..65535")


# --------------------------------------------------------------------------------------------
# Ports

# Debug probes whose virtual COM port the firmware talks through.
_STLINK_PIDS = {0x3748, 0x374B, 0x374E, 0x374F, 0x3752, 0x3753, 0x3754}
VID_ST, VID_SEGGER, VID_ARM_DAPLINK = 0x0483, 0x1366, 0x0D28


def probe_hint(vid: int | None, pid: int | None, product: str | None = None) -> str | None:
    """Name the debug probe behind a USB serial port, from its VID:PID and product string.

    Returns:
        "ST-LINK", "J-Link", "CMSIS-DAP", or None for anything else.
    """
    if vid == VID_ST and pid in _STLINK_PIDS:
        return "ST-LINK"
    if vid == VID_SEGGER:
        return "J-Link"
    if (vid == VID_ARM_DAPLINK and pid == 0x0204) or (product and "CMSIS-DAP" in product.upper()):
        return "CMSIS-DAP"
    return None


@dataclass(frozen=True)
class PortInfo:
    """One serial port of this machine.

    Attributes:
        device: Path or name to open (`/dev/ttyACM0`, `COM3`).
        description: pyserial's human description.
        vid: USB vendor id, None for non-USB ports.
        pid: USB product id.
        serial_number: USB serial number (tells two boards apart).
        manufacturer: USB manufacturer string.
        product: USB product string.
        probe: "ST-LINK", "J-Link", "CMSIS-DAP" or None.
    """

    device: str
    description: str
    vid: int | None = None
    pid: int | None = None
    serial_number: str | None = None
    manufacturer: str | None = None
    product: str | None = None
    probe: str | None = None

    @property
    def usb_id(self) -> str | None:
        """`VID:PID` in hex, as `hwgrep://` takes it."""
        return None if self.vid is None or self.pid is None else f"{self.vid:04x}:{self.pid:04x}"


def ports_from(infos: Iterable[Any]) -> list[PortInfo]:
    """Convert pyserial `ListPortInfo` objects (or look-alikes) into PortInfo, probes first."""
    out = []
    for p in infos:
        vid, pid, product = getattr(p, "vid", None), getattr(p, "pid", None), getattr(p, "product", None)
        out.append(PortInfo(device=p.device, description=getattr(p, "description", "") or "", vid=vid, pid=pid,
                            serial_number=getattr(p, "serial_number", None),
                            manufacturer=getattr(p, "manufacturer", None), product=product,
                            probe=probe_hint(vid, pid, product)))
    return sorted(out, key=lambda q: (q.probe is None, q.device))


def list_ports() -> list[PortInfo]:
    """The serial ports of this machine, those behind a known debug probe first.

    Returns:
        One PortInfo per port (empty when there are none).
    """
    from serial.tools import list_ports as lp

    return ports_from(lp.comports())
