"""benchmarks/faults.py's byte-level proxy, on the device simulator behind a real TCP socket.

The benchmark itself (QEMU, 60 profiling sessions) is not a test; these check that the proxy is
transparent at 0 % and that a byte it damages is caught by the protocol rather than accepted.
"""

from __future__ import annotations

from benchmarks.faults import FaultProxy
from targets.protocol import DeviceClient

from . import protocol_sim as sim


def _session(c: DeviceClient) -> tuple:
    data = bytes((5 * i + 1) & 0xFF for i in range(c.info.input_bytes))
    c.set_input(data)
    return c.invoke(count=2), c.get_output(), c.get_layers(), c.get_memory()


def _direct() -> tuple:
    dev = sim.TcpDevice()
    try:
        with DeviceClient.open(dev.url, timeout_s=0.5, retries=0) as c:
            return _session(c)
    finally:
        dev.close()


def test_no_faults_is_transparent():
    dev = sim.TcpDevice()
    try:
        with FaultProxy(dev.port, rate=0.0) as proxy, DeviceClient.open(proxy.url, timeout_s=0.5, retries=0) as c:
            assert _session(c) == _direct()
            assert c.resends == 0 and proxy.stats == {"corrupt": 0, "drop": 0, "duplicate": 0}
    finally:
        dev.close()


def test_a_corrupted_byte_is_caught_and_resent():
    dev = sim.TcpDevice()
    try:
        # byte 12 is inside the first SET_INPUT frame (HELLO's request is 7 bytes): its CRC fails
        with FaultProxy(dev.port, corrupt_at=(12,)) as proxy, \
                DeviceClient.open(proxy.url, timeout_s=0.5, retries=1) as c:
            assert _session(c) == _direct()
            assert proxy.stats["corrupt"] == 1 and c.resends == 1
            received = [t for _s, t in dev.device.received]
            executed = [t for _s, t in dev.device.executed]
            # the damaged copy was refused (BAD_CRC), not run; after it the chunks halve (128 -> 64)
            assert received.count(2) == executed.count(2) == 1 + -(-(600 - 128) // 64)
            assert len(received) == len(executed)
    finally:
        dev.close()


def test_a_fault_rate_damages_bytes_and_never_yields_a_wrong_result():
    dev = sim.TcpDevice()
    try:
        with FaultProxy(dev.port, rate=0.003, seed=3) as proxy, \
                DeviceClient.open(proxy.url, timeout_s=0.2, retries=5) as c:
            assert _session(c) == _direct()
            assert sum(proxy.stats.values()) > 0 and c.resends > 0
    finally:
        dev.close()
