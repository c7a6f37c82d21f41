"""Emulated boards: qemu-system-arm with the firmware's UART on a local TCP socket.

    with EmulatedBoard("mps2-an386", elf, run_dir / "qemu") as board:
        with DeviceClient.open(board.url) as client:
            stats = client.invoke(count=10)
        instructions = instructions_from_ticks(stats.min_ticks, client.info.timer_hz, board.icount_shift)

QEMU runs with `-icount shift=S,align=off,sleep=off`: every guest instruction is 2^S ns of virtual
time, so timings are deterministic and convert exactly to instructions. The serial port is
`tcp:127.0.0.1:PORT,server=on,wait=on,nodelay=on`: the guest starts only when the host connects
(no boot output lost) and replies are not held back by Nagle's algorithm. QEMU's own output goes
to files in `log_dir`. QEMU is stopped by the PID this object started (SIGTERM, then SIGKILL), on
exit, on any exception including KeyboardInterrupt, and at interpreter exit.

A parent that is killed outright (`kill -9`, the OOM killer) runs none of that, so on Linux QEMU
is also started through a tiny wrapper that asks the kernel to SIGKILL it when its parent dies
(prctl PR_SET_PDEATHSIG) and then execs QEMU in place (same PID). A wrapper rather than
`preexec_fn`: Python code between fork and exec can deadlock in a process with threads (torch's,
the nudger's). The kernel ties the signal to the parent *thread* that started QEMU, so a board
must be started by a thread that outlives its use (the main thread, in micronas). QEMU runs in its
own process group, so a Ctrl-C at the terminal reaches micronas, which stops QEMU itself, rather
than killing QEMU under a running exchange. Its temp folder is named with micronas's PID
(`micronas_base.tempdirs`), so the next start-up sweeps it if it was left behind.

A QEMU 7.2 quirk, handled here: the guest starts when the host connects, and QEMU's main loop
may go to sleep before the guest has enabled its UART receiver; bytes the host sends then sit
unread until the loop wakes on its own about one second later (seen on half of the launches, with
and without -icount). The CMSDK UART does not wake the loop when its receiver is enabled. So the
board also opens a private HMP monitor on a Unix socket and, until one second after the host's
connection is established, sends it an empty line every 10 ms: each one wakes the main loop, which
then sees the receiver enabled. The first reply then comes in ~10 ms instead of ~1 s.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from micronas_base import tempdirs
from micronas_base.errors import ToolchainError

from .protocol import DeviceError, DeviceClient

log = logging.getLogger(__name__)

QEMU = "qemu-system-arm"
APT_HINT = "apt-get install -y --no-install-recommends qemu-system-arm (as root), or `make toolchain`"
_BIND_FAILURES = ("Address already in use", "Failed to bind", "Failed to find an available port")
_READY = "waiting for connection"
_NUDGE_EVERY_S = 0.01
_NUDGE_AFTER_CONNECT_S = 1.0  # the stall lasts until ~1 s after the host connects
_NUDGE_BLIND_S = 10.0  # without /proc to see the connection: nudge this long after start
ICOUNT_SHIFT = 7  # -icount shift: 128 ns per guest instruction (deterministic, sub-tick resolution)

# argv: parent PID, the program, its arguments. PR_SET_PDEATHSIG (1) = SIGKILL (9); a parent that
# died before the prctl took effect is seen as a changed parent PID: give up rather than orphan.
_DIE_WITH_PARENT = ("import ctypes,os,sys\n"
                    "ctypes.CDLL(None).prctl(1,9,0,0,0)\n"
                    "os.getppid()==int(sys.argv[1]) or os._exit(1)\n"
                    "os.execv(sys.argv[2],sys.argv[2:])")


def dies_with_parent(cmd: list[str]) -> list[str]:
    """`cmd` wrapped so the kernel kills it when this process dies (Linux; elsewhere unchanged)."""
    if not sys.platform.startswith("linux") or not sys.executable:
        return cmd
    return [sys.executable, "-I", "-S", "-c", _DIE_WITH_PARENT, str(os.getpid()), *cmd]


def instructions_from_ticks(ticks: float, timer_hz: float, icount_shift: int) -> float:
    """Guest instructions behind a tick count measured under `-icount shift=S`.

    One instruction is 2^S ns of virtual time; a tick is 1e9 / timer_hz ns.

    Args:
        ticks: Timer ticks (HELLO timer_kind 1).
        timer_hz: The timer's rate (HELLO timer_hz).
        icount_shift: S, the `-icount shift` QEMU ran with.

    Returns:
        ticks * (1e9 / timer_hz) / 2**S.
    """
    return ticks * (1e9 / timer_hz) / 2**icount_shift


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tcp_states(port: int, pid: int | None = None) -> set[str] | None:
    """TCP states (`0A` listen, `01` established) of local sockets on `port`, from Linux /proc.

    Args:
        port: Local port.
        pid: Count only sockets this process holds (so a foreign listener is not mistaken for QEMU).

    Returns:
        The set of state codes, or None when /proc cannot tell (not Linux).
    """
    inodes: set[str] | None = None
    if pid is not None:
        try:
            inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")
                      if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")}
        except OSError:
            return None
    needle = f":{port:04X}"
    states: set[str] = set()
    seen = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        seen = True
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[1].endswith(needle) and (inodes is None or cols[9] in inodes):
                states.add(cols[3])
    return states if seen else None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").rstrip()
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# Every live board, for the atexit cleanup (weak: a collected board was already stopped).
_LIVE: "weakref.WeakSet[EmulatedBoard]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for board in list(_LIVE):
        board.stop()


class EmulatedBoard:
    """qemu-system-arm running a firmware ELF, reachable at `.url`.

    Args:
        machine: QEMU machine (`mps2-an386`, `mps2-an500`, `mps2-an505`, `mps3-an547`).
        elf: The firmware image.
        log_dir: Where QEMU's stdout and stderr go (`qemu.out`, `qemu.err`); created if needed.
        icount_shift: S in `-icount shift=S`: one instruction is 2^S ns of virtual time.
        start_timeout_s: How long QEMU may take to open its serial socket.
        bind_attempts: Ports tried when the chosen one turns out to be taken.
        extra_args: More QEMU arguments (e.g. `-cpu`), appended last.

    Attributes:
        url: `socket://127.0.0.1:PORT`, for `DeviceClient.open`.
        port: The TCP port.
        pid: QEMU's process id while running.
    """

    def __init__(self, machine: str, elf: Path, log_dir: Path, icount_shift: int = ICOUNT_SHIFT, *,
                 start_timeout_s: float = 10.0, bind_attempts: int = 5, extra_args: tuple[str, ...] = ()):
        self.machine = machine
        self.elf = Path(elf)
        self.log_dir = Path(log_dir)
        self.icount_shift = int(icount_shift)
        self.start_timeout_s = start_timeout_s
        self.bind_attempts = bind_attempts
        self.extra_args = tuple(extra_args)
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._files: list[Any] = []
        self._tmp: str | None = None  # holds the monitor socket (short path: sun_path is ~108 bytes)
        self._nudger: threading.Thread | None = None
        self._stop_nudge = threading.Event()

    # ---- paths and state -------------------------------------------------------------------

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / "qemu.out"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / "qemu.err"

    @property
    def url(self) -> str:
        if self.port is None:
            raise DeviceError(f"emulated {self.machine} is not started", "use `with EmulatedBoard(...) as board:`")
        return f"socket://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of QEMU's stderr and stdout."""
        return "\n".join(t for t in (_tail(self.stderr_path, lines), _tail(self.stdout_path, lines)) if t)

    def command(self, port: int, monitor: Path | None = None) -> list[str]:
        """The qemu-system-arm command line for a serial socket on `port` (and a nudge monitor)."""
        mon = [] if monitor is None else [
            "-chardev", f"socket,id=micronas-nudge,path={monitor},server=on,wait=off",
            "-mon", "chardev=micronas-nudge,mode=readline"]
        return [
            QEMU, "-machine", self.machine, "-nographic", "-monitor", "none",
            "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on",
            "-icount", f"shift={self.icount_shift},align=off,sleep=off",
            "-semihosting-config", "enable=on,target=native",
            "-kernel", str(self.elf), *mon, *self.extra_args,
        ]

    def connect(self, timeout_s: float = 2.0, retries: int = 2) -> DeviceClient:
        """Open a DeviceClient on this board (QEMU starts the guest on this connection)."""
        return DeviceClient.open(self.url, timeout_s=timeout_s, retries=retries)

    # ---- start and stop ----------------------------------------------------------------------

    def start(self) -> EmulatedBoard:
        """Launch QEMU and wait until its serial socket listens.

        Raises:
            ToolchainError: qemu-system-arm is not installed.
            DeviceError: the ELF is missing, QEMU exits early (the message quotes its log), or it
                does not open its socket in time.
        """
        if self.running:
            return self
        exe = shutil.which(QEMU)
        if exe is None:
            raise ToolchainError(f"{QEMU} not found on PATH; it runs the emulated boards", APT_HINT)
        if not self.elf.is_file():
            raise DeviceError(f"firmware image {self.elf} does not exist",
                              "build the firmware first (`micronas profile` builds it; see targets/build.py)")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, self.bind_attempts + 1):
            port = _free_port()
            outcome = self._launch(exe, port)
            if outcome == "ready":
                self.port = port
                _LIVE.add(self)
                log.info("QEMU %s pid %d serving %s", self.machine, self.pid, self.url)
                return self
            log.info("QEMU could not bind port %d (attempt %d/%d); trying another", port, attempt, self.bind_attempts)
        raise DeviceError(f"QEMU could not bind a local TCP port for the serial link in {self.bind_attempts} attempts",
                          f"something is grabbing ports on 127.0.0.1; QEMU's log:\n{self.log_tail()}")

    def _launch(self, exe: str, port: int) -> str:
        """Start QEMU on `port`; return "ready" or "bind-failed" (other failures raise)."""
        self._close_files()
        out = open(self.stdout_path, "wb")
        err = open(self.stderr_path, "wb")
        self._files = [out, err]
        if self._tmp is None:
            self._tmp = tempdirs.mkdtemp("qemu")
        monitor = Path(self._tmp) / "nudge.sock"
        monitor.unlink(missing_ok=True)
        cmd = [exe, *self.command(port, monitor)[1:]]
        (self.log_dir / "qemu.cmd").write_text(" ".join(cmd) + "\n")
        try:
            self._proc = subprocess.Popen(dies_with_parent(cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                          process_group=0)
        except OSError as e:
            self._reap()
            raise ToolchainError(f"cannot run {exe}: {e}", APT_HINT) from None
        deadline = time.monotonic() + self.start_timeout_s
        try:
            while True:
                if self._proc.poll() is not None:
                    tail = self.log_tail()
                    if any(s in tail for s in _BIND_FAILURES):
                        self._reap()
                        return "bind-failed"
                    code = self._proc.returncode
                    self._reap()
                    raise DeviceError(
                        f"QEMU ({self.machine}, {self.elf.name}) exited with code {code} before opening its "
                        f"serial port; the end of its log ({self.stderr_path}):\n{tail or '(empty)'}",
                        f"check the machine name and the ELF; the full command is in {self.log_dir / 'qemu.cmd'}")
                if _READY in _tail(self.stderr_path, 5) or "0A" in (_tcp_states(port, self._proc.pid) or ()):
                    self._start_nudger(port, monitor)
                    return "ready"
                if time.monotonic() > deadline:
                    self.stop()
                    raise DeviceError(f"QEMU did not open its serial port 127.0.0.1:{port} within "
                                      f"{self.start_timeout_s:g} s; its log:\n{self.log_tail()}",
                                      "is the machine overloaded? try again")
                time.sleep(0.005)
        except BaseException:
            self.stop()  # KeyboardInterrupt while waiting: no QEMU left behind
            raise

    def stop(self, timeout_s: float = 3.0) -> int | None:
        """Stop QEMU (SIGTERM, then SIGKILL after `timeout_s`) and reap it. Safe to call twice.

        Returns:
            QEMU's exit code, or None if it was not started.
        """
        proc = self._proc
        if proc is None:
            return None
        try:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout_s)
        except ProcessLookupError:  # already gone
            pass
        finally:
            self._reap()
        return proc.returncode

    def _start_nudger(self, port: int, monitor: Path) -> None:
        self._stop_nudge.clear()
        self._nudger = threading.Thread(target=self._nudge, args=(port, monitor), daemon=True,
                                        name=f"qemu-nudge-{port}")
        self._nudger.start()

    def _nudge(self, port: int, monitor: Path) -> None:
        """Wake QEMU's main loop every 10 ms until 1 s after the host connects (see the module doc)."""
        start = time.monotonic()
        connected_at: float | None = None
        sock: socket.socket | None = None
        try:
            while not self._stop_nudge.wait(_NUDGE_EVERY_S):
                now = time.monotonic()
                if connected_at is None:
                    states = _tcp_states(port)
                    if states is None:
                        if now - start > _NUDGE_BLIND_S:
                            return
                    elif "01" in states:
                        connected_at = now
                elif now - connected_at > _NUDGE_AFTER_CONNECT_S:
                    return
                try:
                    if sock is None:
                        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                        sock.setblocking(False)
                        sock.connect(str(monitor))
                    sock.send(b"\n")
                    while sock.recv(4096):  # drain the prompts so QEMU never blocks on us
                        pass
                except BlockingIOError:
                    pass
                except OSError:  # QEMU gone or not listening yet: try again on the next tick
                    if sock is not None:
                        sock.close()
                    sock = None
        finally:
            if sock is not None:
                sock.close()

    def _reap(self) -> None:
        self._stop_nudge.set()
        if self._nudger is not None and self._nudger is not threading.current_thread():
            self._nudger.join(2.0)
        self._nudger = None
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(1.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._close_files()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        _LIVE.discard(self)

    def _close_files(self) -> None:
        for f in self._files:
            try:
                f.close()
            except OSError:
                pass
        self._files = []

    def __enter__(self) -> EmulatedBoard:
        return self.start()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        exited_alone = self._proc is not None and self._proc.poll() is not None
        code = self.stop()
        if exited_alone and exc is not None:  # the likely cause of the error in flight
            log.warning("QEMU exited by itself (code %s) during the session; its log:\n%s", code, self.log_tail())

    def __del__(self) -> None:  # last resort; __exit__ and atexit are the real paths
        try:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait(1.0)
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    def __repr__(self) -> str:
        state = f"pid {self.pid}, {self.url}" if self.running else "stopped"
        return f"EmulatedBoard({self.machine!r}, {str(self.elf)!r}, {state})"
