"""targets.protocol: frames, the streaming parser, the client against a simulated device, ports.

The device side is `tests/protocol_sim.py`, an independent model of docs/protocol.md. Fault
injection runs on a simulated clock, so hundreds of timeouts cost no wall-clock time.
"""

from __future__ import annotations

import binascii
import os
import random
import struct
import time
from types import SimpleNamespace

import pytest
import serial
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from targets import protocol as P
from targets.protocol import (
    CRC_BYTES,
    HEADER_BYTES,
    MAX_PAYLOAD,
    DeviceClient,
    DeviceConnectionError,
    DeviceError,
    DeviceProtocolError,
    DeviceReportedError,
    DeviceTimeout,
    Frame,
    FrameParser,
    Hello,
    InvokeStats,
    MemoryStats,
    MsgType,
    PortError,
    crc16,
    decode_frame,
    encode_frame,
)

from . import protocol_sim as sim

# ---------------------------------------------------------------------------------------------
# CRC and frames


def test_crc_known_answer():
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF
    assert sim.crc_bitwise(b"123456789") == 0x29B1


@given(st.binary(max_size=600))
def test_crc_matches_bitwise_and_binascii(data):
    assert crc16(data) == sim.crc_bitwise(data) == binascii.crc_hqx(data, 0xFFFF)
    assert crc16(data[len(data) // 2 :], crc16(data[: len(data) // 2])) == crc16(data)  # chaining


def test_frame_layout_matches_the_contract():
    f = encode_frame(0x12, MsgType.INVOKE, b"\x01\x00\x00")
    assert f[0] == 0xA5 and f[1:3] == b"\x03\x00" and f[3] == 0x12 and f[4] == 0x03
    assert f[5:8] == b"\x01\x00\x00"
    assert struct.unpack("<H", f[-2:])[0] == crc16(f[1:-2])
    assert f == sim.frame(0x12, 3, b"\x01\x00\x00")  # the simulator's independent encoder agrees


@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=MAX_PAYLOAD))
def test_encode_decode_round_trip(seq, type_, payload):
    f = encode_frame(seq, type_, payload)
    assert len(f) == HEADER_BYTES + len(payload) + CRC_BYTES
    assert decode_frame(f) == Frame(seq, type_, payload)
    assert Frame(seq, type_, payload).encode() == f
    assert FrameParser().feed(f) == [Frame(seq, type_, payload)]


@pytest.mark.parametrize("mutate, match", [
    (lambda f: f[:-1] + bytes([f[-1] ^ 1]), "CRC"),
    (lambda f: b"\x5a" + f[1:], "not a frame"),
    (lambda f: f[:-1], "LEN"),
    (lambda f: f[:3], "not a frame"),
    (lambda f: encode_frame(1, 1, bytes(MAX_PAYLOAD + 1)), "exceeds"),
])
def test_decode_rejects_bad_frames(mutate, match):
    with pytest.raises(DeviceProtocolError, match=match):
        decode_frame(mutate(encode_frame(7, 1, b"hello")))


def test_encode_rejects_out_of_range():
    with pytest.raises(ValueError):
        encode_frame(256, 1)
    with pytest.raises(ValueError):
        encode_frame(1, 1, bytes(70000))


def test_reply_payload_codecs_round_trip():
    h = Hello(1, P.TimerKind.QEMU_ICOUNT, 25_000_000, 25_000_000, 4096, 512, 9, 600, 6, "mps2-an386", "cortex-m4")
    assert Hello.decode(h.encode()) == h and h.emulated
    s = InvokeStats(3, 10, 12, 33)
    assert InvokeStats.decode(s.encode()) == s and s.mean_ticks == 11
    m = MemoryStats(4096, 1000, 2048, 300)
    assert MemoryStats.decode(m.encode()) == m
    with pytest.raises(DeviceProtocolError):
        Hello.decode(h.encode()[:-1])
    with pytest.raises(DeviceProtocolError):
        InvokeStats.decode(b"\x00" * 17)


# ---------------------------------------------------------------------------------------------
# FrameParser


def test_parser_hunts_sync_across_garbage_and_split_feeds():
    frames = [encode_frame(i, 0x81, bytes(range(i))) for i in range(20)]
    stream = b"".join(b"\x00\xa5\xff" + f for f in frames)  # 0xA5 0xFF 0x.. is an oversize header
    p = FrameParser()
    got = []
    for i in range(0, len(stream), 3):
        got += p.feed(stream[i : i + 3])
    assert [f.seq for f in got] == list(range(20))


def test_parser_rejects_oversize_len_without_buffering():
    p = FrameParser(max_payload=64)
    assert p.feed(b"\xa5\xff\xff") == []
    assert p.oversize == 1 and p.buffered == 0
    p.feed(bytes(100_000))  # no SYNC: nothing kept
    assert p.buffered == 0


def test_parser_drops_bad_crc_and_finds_the_frame_behind_a_false_sync():
    good = encode_frame(9, 0x81, b"ok")
    bad = bytearray(encode_frame(8, 0x81, b"xx"))
    bad[-1] ^= 0xFF
    # A false SYNC whose LEN (20) swallows the good frame: once 20 bytes are in and the CRC fails,
    # the parser hunts again from the byte after the false SYNC and finds the good frame.
    false_start = b"\xa5\x14\x00\x01\x02"
    p = FrameParser()
    got = p.feed(bytes(bad) + false_start + good + bytes(20))
    assert got == [Frame(9, 0x81, b"ok")]
    assert p.crc_errors == 2


def test_parser_resync_recovers_a_frame_behind_a_stalled_false_header():
    good = encode_frame(5, 0x83, b"abc")
    p = FrameParser()
    assert p.feed(b"\xa5\x00\x02" + good) == []  # the false header waits for 512 bytes
    assert p.resync() == [Frame(5, 0x83, b"abc")]
    assert p.buffered == 0


def test_parser_lowering_max_payload_keeps_the_bound():
    p = FrameParser(512)
    p.feed(b"\xa5\x00\x02" + bytes(300))
    p.max_payload = 16
    p.feed(bytes(50) + encode_frame(1, 0x81, b"z"))
    assert p.buffered <= p.max_frame_bytes


def _found_in(frame: Frame, stream: bytes) -> bool:
    return frame.encode() in stream


def _feed_all(p: FrameParser, stream: bytes, cuts: list[int]) -> list[Frame]:
    bound = HEADER_BYTES + p.max_payload + CRC_BYTES
    got: list[Frame] = []
    pos = 0
    for c in sorted(set(cuts)) + [len(stream)]:
        got += p.feed(stream[pos:c])
        pos = max(pos, c)
        assert p.buffered <= bound
    while p.buffered:  # end of stream: give up on any partial frame
        got += p.resync()
        assert p.buffered <= bound
    return got


FUZZ = settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=20),
       st.sampled_from([8, 64, 512]))
def test_fuzz_parser_random_bytes(stream, cuts, max_payload):
    p = FrameParser(max_payload)
    t0 = time.perf_counter()
    for f in _feed_all(p, stream, cuts):
        assert len(f.payload) <= max_payload and 0 <= f.seq <= 255 and 0 <= f.type <= 255
        assert _found_in(f, stream)  # a yielded frame is a CRC-valid frame that was in the stream
    assert time.perf_counter() - t0 < 0.5


@st.composite
def mutated_streams(draw):
    """Valid frames with garbage between them, then byte flips, deletions and insertions."""
    n = draw(st.integers(1, 8))
    frames = [Frame(draw(st.integers(0, 255)), draw(st.integers(0, 255)), draw(st.binary(max_size=200)))
              for _ in range(n)]
    parts, spans = [], []
    pos = 0
    for f in frames:
        gap = draw(st.binary(max_size=40) | st.sampled_from([b"\xa5", b"\xa5\x00\x02", b"\xa5\xff\xff"]))
        enc = f.encode()
        parts += [gap, enc]
        spans.append((pos + len(gap), pos + len(gap) + len(enc)))
        pos += len(gap) + len(enc)
    stream = bytearray(b"".join(parts))
    touched: set[int] = set()
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, max(len(stream) - 1, 0)))
        op = draw(st.sampled_from(["flip", "delete", "insert"]))
        if op == "flip" and stream:
            stream[i] ^= draw(st.integers(1, 255))
            touched.add(i)
        elif op == "delete" and stream:
            del stream[i]
            touched |= set(range(i, len(stream) + 1))  # everything after shifts: mark as touched
        elif op == "insert":
            stream.insert(i, draw(st.integers(0, 255)))
            touched |= set(range(i, len(stream)))
    intact = [f for f, (a, b) in zip(frames, spans) if not touched & set(range(a, b))]
    cuts = draw(st.lists(st.integers(0, len(stream)), max_size=10))
    return bytes(stream), intact, cuts


@FUZZ
@given(mutated_streams())
def test_fuzz_parser_mutated_frames(case):
    stream, intact, cuts = case
    p = FrameParser()
    t0 = time.perf_counter()
    got = _feed_all(p, stream, cuts)
    assert time.perf_counter() - t0 < 0.5
    for f in got:
        assert _found_in(f, stream)
    # every frame the mutations did not touch is delivered, in order
    it = iter(got)
    assert all(any(g == f for g in it) for f in intact)


# ---------------------------------------------------------------------------------------------
# DeviceClient against the simulator


def _client(device: sim.DeviceSim | None = None, faults: sim.Faults = sim.Faults(), seed: int = 0,
            timeout_s: float = 0.05, retries: int = 3) -> tuple[DeviceClient, sim.SimSerial]:
    link = sim.SimSerial(device or sim.DeviceSim(), faults, seed)
    return DeviceClient(link, "sim://device", timeout_s, retries, clock=link.clock), link


def _scenario(c: DeviceClient) -> list:
    """Every request type, with every chunked one spanning two chunks."""
    data = bytes((7 * i + 3) & 0xFF for i in range(c.info.input_bytes))
    out = [c.hello()]
    c.set_input(data)
    out.append(c.invoke(count=4))
    out.append(c.get_output())
    out.append(c.invoke(count=2, per_layer=True))
    out.append(c.get_layers())
    out.append(c.get_memory())
    out.append(c.bench_op(1, b"\x01\x02\x03", 5))
    c.reset_stats()
    out.append(c.get_memory())
    return out


def test_every_request_round_trips():
    dev = sim.DeviceSim()
    c, _ = _client(dev)
    with c:
        h, inv, output, inv_l, layers, mem, bench, mem2 = _scenario(c)
    assert h == Hello(1, P.TimerKind.QEMU_ICOUNT, 25_000_000, 25_000_000, 5476, 512, 140, 600, 520,
                      "sim-board", "cortex-m4")
    assert bytes(dev.input) == bytes((7 * i + 3) & 0xFF for i in range(600))
    assert output == bytes(dev.output) and len(output) == 520
    assert layers == dev.layers and len(layers) == 140
    assert inv.count == 4 and inv.min_ticks <= inv.max_ticks and inv_l.count == 2
    assert mem.arena_high_water > 0 and mem2.arena_high_water == 0 and mem2.arena_bytes == 5476
    assert bench == InvokeStats(5, 66, 68, 66 * 5 + 2)
    types = [t for _, t in dev.executed]
    assert types.count(MsgType.SET_INPUT) == 600 // 128 + 1 and types.count(MsgType.GET_OUTPUT) == 520 // 128 + 1
    assert types.count(MsgType.GET_LAYERS) == -(-140 // 32)  # 128-byte chunks of u32
    assert c.resends == 0


def test_chunks_grow_on_a_clean_link_and_shrink_on_a_noisy_one():
    dev = sim.DeviceSim()
    c, link = _client(dev)
    data = bytes(range(256)) * 2 + bytes(88)  # 600 bytes
    sizes = []
    exchange = c._exchange
    c._exchange = lambda t, p=b"", **kw: (sizes.append(len(p) - 4) if t == MsgType.SET_INPUT else None,
                                          exchange(t, p, **kw))[1]
    for _ in range(40):  # 128+ clean chunks: 128 -> 256 -> 508 (the device's 512 less the offset)
        c.set_input(data)
    assert sizes[:5] == [128, 128, 128, 128, 88] and max(sizes) == 508 and bytes(dev.input) == data
    sizes.clear()
    send = link.to_device.send

    def damage_once(data: bytes, extra_s: float = 0.0) -> None:  # the next chunk's first copy is damaged...
        link.to_device.send = send
        send(data[:-1] + bytes([data[-1] ^ 0x55]), extra_s)

    link.to_device.send = damage_once
    c.set_input(data)
    assert c.resends == 1 and sizes == [508, 92] and bytes(dev.input) == data
    sizes.clear()
    c.set_input(data)
    assert sizes == [254, 254, 92] and bytes(dev.input) == data  # ...and the chunks after it are halved


def test_chunking_follows_the_device_max_payload():
    dev = sim.DeviceSim(sim.SimConfig(max_payload=64))
    c, _ = _client(dev)
    data = os.urandom(600)
    c.set_input(data)
    c.invoke()
    assert bytes(dev.input) == data
    assert c.get_output() == bytes(dev.output) and c.get_layers() == dev.layers
    types = [t for _, t in dev.executed]
    assert types.count(MsgType.SET_INPUT) == -(-600 // 60)
    assert types.count(MsgType.GET_OUTPUT) == -(-520 // 64)
    assert types.count(MsgType.GET_LAYERS) == -(-140 // 16)


def test_error_reply_raises_with_the_code_name():
    c, _ = _client()
    with pytest.raises(DeviceReportedError, match="BENCH_OP with ERROR UNSUPPORTED: kernel 9") as e:
        c.bench_op(9, b"", 1)
    assert e.value.code == 5 and e.value.code_name == "UNSUPPORTED" and e.value.exit_code == 2
    with pytest.raises(DeviceReportedError, match="OUT_OF_RANGE"):
        c._exchange(MsgType.GET_OUTPUT, struct.pack("<IH", 10_000, 4))
    with pytest.raises(DeviceReportedError, match="UNKNOWN_TYPE"):
        c._exchange(0x42)  # type: ignore[arg-type]


def test_usage_errors_are_caught_before_sending():
    c, _ = _client()
    with pytest.raises(P.UsageError, match="600-byte input"):
        c.set_input(bytes(601))
    with pytest.raises(P.UsageError):
        c.invoke(count=0)
    with pytest.raises(P.UsageError):
        c.bench_op(1, bytes(510), 1)


def test_silent_device_times_out_within_budget():
    dev = sim.DeviceSim()
    dev.silent = True
    c, link = _client(dev, timeout_s=0.5, retries=2)
    t0 = link.clock.now
    with pytest.raises(DeviceTimeout) as e:
        c.get_memory()
    msg = str(e.value)
    assert "GET_MEMORY" in msg and "sim://device" in msg and "3 attempt(s) of 0.5 s doubling" in msg
    assert "within 3.5 s" in msg and "micronas boards" in msg
    assert "the host is overloaded or the link is noisy: raise --timeout" in msg  # the likely causes, the fix
    assert 0.5 + 1.0 + 2.0 <= link.clock.now - t0 <= 3.5 + 3 * 0.02 + 1e-9  # each resend waits twice as long
    assert [t for _, t in dev.received] == [MsgType.GET_MEMORY] * 3  # same request resent
    assert len({s for s, _ in dev.received}) == 1  # with the same SEQ


def test_stale_and_foreign_frames_are_discarded():
    c, link = _client()
    c.hello()
    seq = c._seq + 1
    # A stale reply, a duplicate of an old one, our own request echoed: all before the real reply.
    link.inject.extend([encode_frame(seq - 1, 0x86, bytes(16)), encode_frame(seq + 5, 0x86, bytes(16)),
                        encode_frame(seq, 0x06, b""), b"\xa5\x00\x02garbage"])
    m = c.get_memory()
    assert m.arena_bytes == 5476 and c.stale == 3 and c.resends == 0


def test_reply_of_the_wrong_type_is_a_protocol_error():
    c, link = _client()
    c.hello()
    seq = c._seq + 1
    link.inject.append(encode_frame(seq, 0x81, b""))
    with pytest.raises(DeviceProtocolError, match="answered GET_MEMORY"):
        c.get_memory()


def test_other_protocol_version_is_refused():
    c, _ = _client(sim.DeviceSim(sim.SimConfig(protocol_version=2)))
    with pytest.raises(DeviceProtocolError, match="version 2"):
        c.hello()


def test_bad_crc_reply_triggers_an_immediate_resend():
    class CorruptFirstWrite(sim.SimSerial):
        first = True

        def write(self, data):
            if self.first:
                self.first = False
                data = data[:-1] + bytes([data[-1] ^ 0x55])
            return super().write(data)

    link = CorruptFirstWrite(sim.DeviceSim())
    c = DeviceClient(link, "sim://device", timeout_s=0.5, retries=1, clock=link.clock)
    assert c.get_memory().arena_bytes == 5476
    assert c.resends == 1 and link.clock.now < 0.5  # no timeout was waited for


# ---------------------------------------------------------------------------------------------
# Fault injection: results identical to the clean run, or a DeviceError within the budget

TIMEOUT_S, RETRIES, POLL_S = 0.05, 4, 0.02
FAULT_LEVELS = {
    # per byte; a 519-byte frame meets a fault with p = 3 % (mild) and 79 % (harsh)
    "mild": sim.Faults(drop=1e-4, duplicate=1e-4, corrupt=1e-4, delay=0.05, max_delay_s=0.08),
    "moderate": sim.Faults(drop=3e-4, duplicate=3e-4, corrupt=3e-4, delay=0.1, max_delay_s=0.1),
    "harsh": sim.Faults(drop=1e-3, duplicate=1e-3, corrupt=1e-3, delay=0.2, max_delay_s=0.2),
}
SEEDS = 300


def _calls(c: DeviceClient) -> list:
    """The scenario as separate calls (every request type; chunked ones span two chunks)."""
    data = bytes((7 * i + 3) & 0xFF for i in range(600))
    return [c.hello, lambda: c.set_input(data), lambda: c.invoke(count=4), c.get_output,
            lambda: c.invoke(count=2, per_layer=True), c.get_layers, c.get_memory,
            lambda: c.bench_op(1, b"\x01\x02\x03", 5), c.reset_stats, c.get_memory]


def _clean() -> list:
    c, _ = _client()
    return [call() for call in _calls(c)]


def _run_faulty(level: str, seed: int):
    c, link = _client(faults=FAULT_LEVELS[level], seed=seed, timeout_s=TIMEOUT_S, retries=RETRIES)
    results, spans, error = [], [], None
    exchange = c._exchange

    def timed(*args, **kwargs):  # the budget is per exchange (a chunked call makes several)
        t0 = link.clock.now
        waits = c.attempt_timeouts(kwargs.get("timeout_s"), kwargs.get("work_s", 0.0))  # what it may take
        try:
            return exchange(*args, **kwargs)
        finally:
            spans.append((link.clock.now - t0, sum(waits) + len(waits) * POLL_S + 1e-9))

    c._exchange = timed
    for call in _calls(c):
        try:
            results.append(call())
        except DeviceError as e:
            error = e
            break
    faults = {k: link.to_device.stats[k] + link.to_host.stats[k] for k in link.to_host.stats}
    return results, error, spans, c, faults


@pytest.mark.parametrize("level", list(FAULT_LEVELS))
def test_fault_injection_recovers_or_fails_cleanly(level):
    clean = _clean()
    outcomes = {"identical": 0, "error": 0}
    kinds: dict[str, int] = {}
    resends = injected = 0
    t0 = time.perf_counter()
    for seed in range(SEEDS):
        results, error, spans, c, faults = _run_faulty(level, seed)
        injected += sum(faults.values())
        resends += c.resends
        # whatever returned is exactly what the clean run returned
        assert results == clean[: len(results)], f"seed {seed}: a wrong result got through"
        over = [(s, b) for s, b in spans if s > b]
        assert not over, f"seed {seed}: a request took {over[0][0]:.3f} s > its {over[0][1]:.3f} s budget"
        # delays rightly lift the base above the 0.05 s floor, to at most 5 round trips (mean + 4
        # deviations); a base fed by its own back-off (timing resent exchanges) reached 50-1,450 s here
        rtt = 2 * (FAULT_LEVELS[level].max_delay_s + 0.0002)
        most = sum(max(TIMEOUT_S, 5 * rtt) * 2**k for k in range(RETRIES + 1)) + (RETRIES + 1) * POLL_S
        assert all(b <= most for _s, b in spans), f"seed {seed}: the adaptive wait ran away"
        if error is None:
            assert len(results) == len(clean)
            outcomes["identical"] += 1
        else:
            assert isinstance(error, (DeviceTimeout, DeviceReportedError, DeviceProtocolError)), repr(error)
            assert "sim://device" in str(error)
            outcomes["error"] += 1
            kinds[type(error).__name__] = kinds.get(type(error).__name__, 0) + 1
    print(f"\n{level}: {SEEDS} seeds, {injected} faults injected, {resends} resends, outcomes {outcomes}, "
          f"errors {kinds}, {time.perf_counter() - t0:.2f} s")
    assert outcomes["identical"] + outcomes["error"] == SEEDS
    # retries recover from sparse faults; under harsh ones both outcomes happen (seeded: stable)
    least = {"mild": 0.98, "moderate": 0.9, "harsh": 0.05}[level]
    assert outcomes["identical"] >= least * SEEDS
    if level == "harsh":
        assert outcomes["error"] > 0
    assert resends > 0


# ---------------------------------------------------------------------------------------------
# Real pyserial transports


def test_nonexistent_port_is_a_port_error():
    with pytest.raises(PortError, match="/dev/ttyDOESNOTEXIST") as e:
        DeviceClient.open("/dev/ttyDOESNOTEXIST")
    assert "micronas boards" in str(e.value) and e.value.exit_code == 2


def test_busy_port_is_a_port_error():
    master, slave = os.openpty()
    try:
        path = os.ttyname(slave)
        with DeviceClient.open(path):
            with pytest.raises(PortError, match=path):
                DeviceClient.open(path)
    finally:
        os.close(master)
        os.close(slave)


def test_refused_socket_and_bad_url_are_port_errors():
    s = __import__("socket").socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(PortError, match=f"socket://127.0.0.1:{port}"):
        DeviceClient.open(f"socket://127.0.0.1:{port}")
    with pytest.raises(PortError, match="nosuch://x"):
        DeviceClient.open("nosuch://x")


def test_loop_url_echo_is_ignored_and_times_out():
    t0 = time.monotonic()
    with DeviceClient.open("loop://", timeout_s=0.05, retries=2) as c:
        with pytest.raises(DeviceTimeout, match=r"HELLO from loop:// within 0.35 s over 3 attempt\(s\) of 0.05 s"):
            c.hello()
        assert c.stale == 3  # its own three requests came back and were dropped
    assert time.monotonic() - t0 < 1.0


def test_socket_url_round_trip_and_lost_link():
    dev = sim.TcpDevice()
    try:
        with DeviceClient.open(dev.url, timeout_s=0.5, retries=1) as c:
            t0 = time.monotonic()
            for _ in range(20):
                c.get_memory()
            assert (time.monotonic() - t0) / 20 < 0.05  # no Nagle stall, no poll-interval wait
            assert _scenario(c)[2] == bytes(dev.device.output)
            dev.drop_connection()
            with pytest.raises(DeviceConnectionError, match=dev.url.replace(".", r"\.")) as e:
                c.get_memory()
            assert not isinstance(e.value, serial.SerialException)
    finally:
        dev.close()


# ---------------------------------------------------------------------------------------------
# Ports listing


@pytest.mark.parametrize("vid, pid, product, probe", [
    (0x0483, 0x374B, "STM32 STLink", "ST-LINK"),
    (0x0483, 0x3752, None, "ST-LINK"),
    (0x0483, 0x5740, "Virtual COM", None),
    (0x1366, 0x0105, "J-Link", "J-Link"),
    (0x0D28, 0x0204, "DAPLink CMSIS-DAP", "CMSIS-DAP"),
    (0x2E8A, 0x000C, "Picoprobe CMSIS-DAP", "CMSIS-DAP"),
    (None, None, None, None),
])
def test_probe_hints(vid, pid, product, probe):
    assert P.probe_hint(vid, pid, product) == probe


def test_ports_from_sorts_probes_first_and_list_ports_runs():
    fake = [SimpleNamespace(device="/dev/ttyS0", description="n/a", vid=None, pid=None),
            SimpleNamespace(device="/dev/ttyACM0", description="STLink", vid=0x0483, pid=0x374B,
                            serial_number="066D", manufacturer="STMicroelectronics", product="STM32 STLink")]
    ports = P.ports_from(fake)
    assert [p.device for p in ports] == ["/dev/ttyACM0", "/dev/ttyS0"]
    assert ports[0].probe == "ST-LINK" and ports[0].usb_id == "0483:374b"
    assert all(isinstance(p, P.PortInfo) for p in P.list_ports())


def test_random_garbage_never_crashes_the_client():
    rng = random.Random(1)
    c, link = _client(timeout_s=0.05, retries=0)
    link.inject.append(bytes(rng.randrange(256) for _ in range(5000)))
    assert c.get_memory().arena_bytes == 5476


def test_a_loaded_host_still_profiles_with_the_defaults():
    """A starved emulator, simulated by a link on which every reply comes 5.2 s late and each
    INVOKE repetition takes 2 s (10,000 times its timer time): with the defaults (1 s floor,
    3 resends, each waiting twice as long) every request is answered by the late reply to its
    first copy, and the results equal a clean run's. A fixed 1 s per attempt gave up after 4 s."""
    from micronas.device import Link

    def invoke_work(reply: bytes) -> float:
        return 2.0 * struct.unpack_from("<H", reply, 5)[0] if reply[4] == 0x83 else 0.0

    slow = sim.SimSerial(sim.DeviceSim(), latency_s=2.6, busy_s=invoke_work)
    c = DeviceClient(slow, "sim://device", Link().timeout_s, Link().retries, clock=slow.clock)
    clean = _clean()
    assert [call() for call in _calls(c)] == clean
    assert c.resends > 0 and slow.clock.now > 5.2 * 12  # slow indeed: 12+ exchanges of 5.2 s or more
    assert c.attempt_timeouts()[0] == 1.0  # no sample from a resent exchange: the base stayed at the floor

    fixed = sim.SimSerial(sim.DeviceSim(), latency_s=2.6)  # the old policy: 1 s per attempt, no back-off
    old = DeviceClient(fixed, "sim://device", 1.0, 3, clock=fixed.clock)
    old.attempt_timeouts = lambda timeout_s=None, work_s=0.0: [1.0] * 4  # type: ignore[method-assign]
    with pytest.raises(DeviceTimeout, match="raise --timeout"):
        old.hello()


def test_invoke_waits_for_the_work_it_asks_for():
    """After one INVOKE the client knows a repetition's ticks; a later INVOKE of many repetitions
    gets WORK_FACTOR x their timer time on top of the base, so it needs no resend."""
    per_run_s = 5000 / 25e6  # the simulator's ~5,000 ticks at 25 MHz
    slow = sim.SimSerial(sim.DeviceSim(), busy_s=lambda r: (struct.unpack_from("<H", r, 5)[0] * 5000 / 25e6
                                                             if r[4] == 0x83 else 0.0))
    c = DeviceClient(slow, "sim://device", 0.05, 0, clock=slow.clock)  # no resends allowed
    c.hello()
    assert c.attempt_timeouts()[0] == 0.05
    c.invoke(1)
    first = c._invoke_ticks
    assert 5000 <= first <= 6000
    stats = c.invoke(count=400)  # 400 x 0.2 ms = 0.08 s of work > the 0.05 s floor
    assert stats.count == 400 and c.resends == 0 and 400 * per_run_s > 0.05
    waits = c.attempt_timeouts(work_s=P.WORK_FACTOR * 401 * first / 25e6)
    assert waits[0] == pytest.approx(0.05 + 4 * 401 * first / 25e6)
