"""A Python model of the device side of docs/protocol.md, and transports to reach it.

Written independently of `targets.protocol` (its own bitwise CRC and its own byte-at-a-time
receiver, the way the firmware does it), so the host is tested against the contract rather than
against itself.

* `DeviceSim`: feed request bytes, get reply bytes. The "model" is a deterministic function of
  the input, so every result can be compared with a clean run.
* `SimSerial`: a serial-like object (read/write/timeout/in_waiting) on a simulated clock, with a
  `Faults` spec that drops, duplicates, corrupts and delays bytes in both directions from a
  seeded RNG. Time only passes when the host waits, so timeouts cost no wall-clock time.
* `TcpDevice`: the simulator behind a real TCP socket, for `socket://` through real pyserial.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

SYNC = 0xA5
HELLO, SET_INPUT, INVOKE, GET_OUTPUT, GET_LAYERS, GET_MEMORY, BENCH_OP, RESET_STATS = range(1, 9)
ERROR = 0xFF
BAD_CRC, BAD_LENGTH, UNKNOWN_TYPE, OUT_OF_RANGE, UNSUPPORTED, TIMER = range(1, 7)


def crc_bitwise(data: bytes) -> int:
    """CRC-16/CCITT-FALSE, one bit at a time (the textbook definition)."""
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def frame(seq: int, type_: int, payload: bytes = b"") -> bytes:
    body = struct.pack("<HBB", len(payload), seq, type_) + payload
    return bytes([SYNC]) + body + struct.pack("<H", crc_bitwise(body))


@dataclass
class SimConfig:
    """What the simulated firmware reports in HELLO. Sizes force chunking at max_payload 512."""

    protocol_version: int = 1
    timer_kind: int = 1
    clock_hz: int = 25_000_000
    timer_hz: int = 25_000_000
    arena_bytes: int = 5476
    max_payload: int = 512
    num_layers: int = 140  # > 128 u32 per reply: two GET_LAYERS chunks
    input_bytes: int = 600  # > 508: two SET_INPUT chunks
    output_bytes: int = 520  # > 512: two GET_OUTPUT chunks
    board: str = "sim-board"
    core: str = "cortex-m4"
    kernels: tuple[int, ...] = (0, 1, 2)
    stack_bytes: int = 4096


class DeviceSim:
    """The device: a byte-at-a-time receiver, the request handlers, the model state."""

    def __init__(self, cfg: SimConfig | None = None):
        self.cfg = cfg or SimConfig()
        self.input = bytearray(self.cfg.input_bytes)
        self.output = bytearray(self.cfg.output_bytes)
        self.layers = [0] * self.cfg.num_layers
        self.arena_hw = 0
        self.stack_hw = 0
        self.rx = bytearray()
        self.executed: list[tuple[int, int]] = []  # (seq, type) of every request run
        self.received: list[tuple[int, int]] = []  # (seq, type) of every CRC-valid request
        self.silent = False  # swallow requests without answering

    # receiver: SYNC hunt, header, LEN check, payload, CRC, like the C firmware
    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        for b in data:
            self.rx.append(b)
            if self.rx[0] != SYNC:
                self.rx.clear()
                continue
            if len(self.rx) < 3:
                continue
            length = self.rx[1] | self.rx[2] << 8
            if length > self.cfg.max_payload:
                self.rx.clear()
                continue
            if len(self.rx) < 5 + length + 2:
                continue
            raw, self.rx = bytes(self.rx), bytearray()
            seq, type_ = raw[3], raw[4]
            if crc_bitwise(raw[1 : 5 + length]) != (raw[-2] | raw[-1] << 8):
                out += self._error(seq, BAD_CRC, "crc")
                continue
            self.received.append((seq, type_))
            if not self.silent:
                out += self.handle(seq, type_, raw[5 : 5 + length])
        return bytes(out)

    def _error(self, seq: int, code: int, detail: str) -> bytes:
        d = detail.encode()
        return frame(seq, ERROR, bytes([code, len(d)]) + d)

    def _model(self) -> None:
        s = sum(self.input)
        for i in range(len(self.output)):
            self.output[i] = (s + 31 * i + self.input[i % len(self.input)]) & 0xFF
        for i in range(len(self.layers)):
            self.layers[i] = 100 + 7 * i + s % 13
        self.arena_hw = max(self.arena_hw, 1000 + s % 2000)
        self.stack_hw = max(self.stack_hw, 300 + s % 100)

    def handle(self, seq: int, type_: int, p: bytes) -> bytes:
        c = self.cfg
        self.executed.append((seq, type_))
        ok = type_ | 0x80
        if type_ == HELLO:
            if p:
                return self._error(seq, BAD_LENGTH, "hello")
            b, k = c.board.encode(), c.core.encode()
            body = struct.pack("<BBIIIHHII", c.protocol_version, c.timer_kind, c.clock_hz, c.timer_hz,
                               c.arena_bytes, c.max_payload, c.num_layers, c.input_bytes, c.output_bytes)
            return frame(seq, ok, body + bytes([len(b)]) + b + bytes([len(k)]) + k)
        if type_ == SET_INPUT:
            if len(p) < 4:
                return self._error(seq, BAD_LENGTH, "set_input")
            off = struct.unpack_from("<I", p)[0]
            if off + len(p) - 4 > len(self.input):
                return self._error(seq, OUT_OF_RANGE, "input")
            self.input[off : off + len(p) - 4] = p[4:]
            return frame(seq, ok)
        if type_ in (INVOKE, BENCH_OP):
            if type_ == INVOKE:
                if len(p) != 3:
                    return self._error(seq, BAD_LENGTH, "invoke")
                count, mode = struct.unpack("<HB", p)
                self._model()
                base = 5000 + sum(self.input) % 977 + 100 * mode
            else:
                if len(p) < 3:
                    return self._error(seq, BAD_LENGTH, "bench_op")
                kernel, count = struct.unpack_from("<BH", p)
                if kernel not in c.kernels:
                    return self._error(seq, UNSUPPORTED, f"kernel {kernel}")
                base = 50 + 10 * kernel + sum(p[3:]) % 101
            if count == 0:
                return self._error(seq, OUT_OF_RANGE, "count")
            spread = count % 3
            return frame(seq, ok, struct.pack("<HIIQ", count, base, base + spread, base * count + spread))
        if type_ == GET_OUTPUT:
            if len(p) != 6:
                return self._error(seq, BAD_LENGTH, "get_output")
            off, n = struct.unpack("<IH", p)
            if off + n > len(self.output) or n > c.max_payload:
                return self._error(seq, OUT_OF_RANGE, "output")
            return frame(seq, ok, bytes(self.output[off : off + n]))
        if type_ == GET_LAYERS:
            if len(p) != 4:
                return self._error(seq, BAD_LENGTH, "get_layers")
            first, n = struct.unpack("<HH", p)
            if first + n > len(self.layers) or 4 * n > c.max_payload:
                return self._error(seq, OUT_OF_RANGE, "layers")
            return frame(seq, ok, struct.pack(f"<{n}I", *self.layers[first : first + n]))
        if type_ == GET_MEMORY:
            if p:
                return self._error(seq, BAD_LENGTH, "get_memory")
            return frame(seq, ok, struct.pack("<IIII", c.arena_bytes, self.arena_hw, c.stack_bytes, self.stack_hw))
        if type_ == RESET_STATS:
            if p:
                return self._error(seq, BAD_LENGTH, "reset_stats")
            self.arena_hw = self.stack_hw = 0
            return frame(seq, ok)
        return self._error(seq, UNKNOWN_TYPE, f"type {type_}")


# --------------------------------------------------------------------------------------------
# A simulated link


class SimClock:
    """Seconds that advance only when the host waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Faults:
    """Per-byte fault probabilities, and per-write chance and size of a delay."""

    drop: float = 0.0
    duplicate: float = 0.0
    corrupt: float = 0.0
    delay: float = 0.0
    max_delay_s: float = 0.1


class _Channel:
    """One direction of the link: bytes queued with the time they arrive, in order."""

    def __init__(self, clock: SimClock, rng: random.Random, faults: Faults, latency_s: float):
        self.clock, self.rng, self.faults, self.latency_s = clock, rng, faults, latency_s
        self.queue: deque[tuple[float, int]] = deque()
        self.last = 0.0
        self.stats = {"drop": 0, "duplicate": 0, "corrupt": 0, "delay": 0}

    def send(self, data: bytes, extra_s: float = 0.0) -> None:
        f, rng = self.faults, self.rng
        t = max(self.clock.now + self.latency_s + extra_s, self.last)
        if f.delay and rng.random() < f.delay:
            t += rng.uniform(0, f.max_delay_s)
            self.stats["delay"] += 1
        for b in data:
            r = rng.random()
            if r < f.drop:
                self.stats["drop"] += 1
                continue
            r -= f.drop
            if r < f.corrupt:
                b ^= rng.randrange(1, 256)
                self.stats["corrupt"] += 1
            elif r - f.corrupt < f.duplicate:
                self.queue.append((t, b))
                self.stats["duplicate"] += 1
            self.queue.append((t, b))
        self.last = t

    def due(self) -> bytes:
        out = bytearray()
        while self.queue and self.queue[0][0] <= self.clock.now:
            out.append(self.queue.popleft()[1])
        return bytes(out)

    def next_time(self) -> float | None:
        return self.queue[0][0] if self.queue else None


class SimSerial:
    """A serial-like object wired to a DeviceSim through a (possibly faulty) simulated link.

    Args:
        device: The simulator.
        faults: Fault spec, applied to both directions.
        seed: Seeds the fault RNG.
        latency_s: Fixed one-way delay.
        busy_s: Seconds the device computes before a reply goes out, from the reply's bytes (a slow
            INVOKE); default none.
    """

    def __init__(self, device: DeviceSim, faults: Faults = Faults(), seed: int = 0, latency_s: float = 0.0002,
                 busy_s: Callable[[bytes], float] | None = None):
        self.device = device
        self.clock = SimClock()
        rng = random.Random(seed)
        self.to_device = _Channel(self.clock, rng, faults, latency_s)
        self.to_host = _Channel(self.clock, rng, faults, latency_s)
        self.rx = bytearray()
        self.timeout: float | None = 1.0
        self.port = "sim://device"
        self.closed = False
        self.inject: deque[bytes] = deque()  # raw bytes the host receives before the next reply
        self.busy_s = busy_s

    def _pump(self) -> None:
        while True:
            req = self.to_device.due()
            if not req:
                break
            reply = self.device.feed(req)
            if reply:
                while self.inject:
                    self.to_host.send(self.inject.popleft())
                self.to_host.send(reply, self.busy_s(reply) if self.busy_s else 0.0)
        self.rx += self.to_host.due()

    def write(self, data: bytes) -> int:
        self.to_device.send(bytes(data))
        self._pump()
        return len(data)

    @property
    def in_waiting(self) -> int:
        self._pump()
        return len(self.rx)

    def read(self, size: int = 1) -> bytes:
        deadline = self.clock.now + (self.timeout if self.timeout is not None else 1e9)
        while True:
            self._pump()
            if self.rx:
                out, self.rx = bytes(self.rx[:size]), self.rx[size:]
                return out
            times = [t for t in (self.to_device.next_time(), self.to_host.next_time()) if t is not None]
            if not times or min(times) > deadline:
                self.clock.now = deadline
                return b""
            self.clock.now = max(self.clock.now, min(times))

    def close(self) -> None:
        self.closed = True


# --------------------------------------------------------------------------------------------
# The simulator behind a TCP socket (real pyserial socket:// on the host side)


@dataclass
class TcpDevice:
    """Serve a DeviceSim on 127.0.0.1:<port> to one client at a time, from a thread."""

    device: DeviceSim = field(default_factory=DeviceSim)

    def __post_init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.port = self.server.getsockname()[1]
        self.url = f"socket://127.0.0.1:{self.port}"
        self.conn: socket.socket | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        self.conn = conn
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                reply = self.device.feed(data)
                if reply:
                    try:
                        conn.sendall(reply)
                    except OSError:
                        return

    def drop_connection(self) -> None:
        """Close the link as a dying emulator would."""
        if self.conn is not None:
            try:
                self.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.conn.close()

    def close(self) -> None:
        self.drop_connection()
        self.server.close()
        self.thread.join(timeout=2)
