"""`micronas profile` end to end on the emulated board (QEMU), as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from micronas import api
from micronas_base.errors import BudgetError, ConfigError
from micronas.units import Budgets

from .conftest import toolchain
from .test_cli import assert_clean_failure, run_cli


@pytest.fixture(scope="module")
def profiled(exported_run, tmp_path_factory):
    toolchain("arm-none-eabi-gcc")
    toolchain("qemu-system-arm")
    run = tmp_path_factory.mktemp("profile") / "run"
    shutil.copytree(exported_run, run)
    return run, api.profile(run, windows=12)


def test_profile_measures_and_checks_everything(profiled):
    run, p = profiled
    m = json.loads((run / "metrics.json").read_text())
    assert p.to_json() == json.loads((run / "profile.json").read_text())
    p = p.to_json()  # the file's keys, as profile.json names them
    assert p["board"] == "nucleo-l552ze-q" and p["where"] == "emulated: QEMU mps2-an505"
    assert p["timer_kind"] == "instructions" and "not cycles" in p["count_source"]
    assert p["outputs_equal_host_runtime"] and p["outputs_equal_tflm"] and p["windows"] == 12
    assert p["arena_bytes_measured"] == p["arena_bytes_planned"] == m["arena_bytes_planned"]
    assert len(p["per_layer_instructions"]) == m["runtime_layers"]
    assert abs(p["per_layer_sum_over_total"] - 1) < 0.01  # per-layer counts sum to the whole within 1 %
    assert p["repeat_min_max_ticks"][0] == p["repeat_min_max_ticks"][1]  # deterministic repeats
    assert p["repeat_equals_first_run"]
    lo, hi = p["total_instructions_min_max"]
    assert lo <= p["total_instructions"] <= hi
    assert p["measured_latency_ms"] == pytest.approx(p["total_instructions"] / 110e6 * 1e3, rel=1e-3)
    assert 0 < p["stack_high_water_bytes"] < p["stack_bytes_reserved"]
    assert p["flash_bytes"] == p["elf"]["text_bytes"] + p["elf"]["data_bytes"]
    assert p["ram_bytes"] > p["arena_bytes_planned"]  # the firmware's statics hold the arena and more


def test_ram_budget_is_the_arena_as_in_search_and_export(profiled):
    run, p = profiled
    arena = p.arena_bytes_measured
    ok = api.profile(run, windows=1, budgets=Budgets(ram_bytes=arena))  # the firmware's other statics do not count
    assert ok.over_budget == [] and ok.ram_bytes > arena
    with pytest.raises(BudgetError) as e:
        api.profile(run, windows=1, budgets=Budgets(ram_bytes=arena - 1))
    assert "high-water mark" in str(e.value) and f"{arena:,} bytes" in str(e.value)


def test_same_binary_twice_gives_identical_counts(profiled):
    run, first = profiled
    again = api.profile(run, windows=12)
    assert again.total == first.total and again.timer_kind == "instructions"
    assert again.per_layer == first.per_layer


def test_latency_over_budget_exits_1_and_still_writes_the_profile(profiled):
    run, p = profiled
    (run / "profile.json").unlink()
    with pytest.raises(BudgetError) as e:
        api.profile(run, windows=1, budgets=Budgets(latency_s=1e-6))
    assert e.value.exit_code == 1 and "exceeds the latency budget 0.001 ms" in str(e.value)
    assert json.loads((run / "profile.json").read_text())["over_budget"]


def test_outputs_that_differ_from_tflm_keep_the_previous_profile(profiled, monkeypatch):
    from firmware_export import verify
    from micronas_base.errors import ExportError

    run, _ = profiled
    before = (run / "profile.json").read_bytes()
    real = verify.run_tflm
    monkeypatch.setattr(verify, "run_tflm", lambda *a, **k: real(*a, **k) ^ 1)  # a reference the device misses
    with pytest.raises(ExportError, match="from TFLite Micro on 1 of 1 windows"):
        api.profile(run, windows=1)
    assert (run / "profile.json").read_bytes() == before  # a wrong device measured nothing to keep


def _device_reports(monkeypatch, **changes):
    """Profile through a device whose HELLO (timer_hz) or INVOKE (min_ticks) replies are altered."""
    import contextlib
    import dataclasses

    from micronas import device

    real = device.open_device

    @contextlib.contextmanager
    def altered(*args, **kwargs):
        with real(*args, **kwargs) as dev:
            hello, invoke = dev.hello, dev.invoke
            if "timer_hz" in changes:
                dev.hello = lambda: dataclasses.replace(hello(), timer_hz=changes["timer_hz"])
            if "min_ticks" in changes:
                dev.invoke = lambda *a, **k: dataclasses.replace(invoke(*a, **k), min_ticks=changes["min_ticks"])
            yield dev

    monkeypatch.setattr(device, "open_device", altered)


@pytest.mark.parametrize("changes, needle", [
    ({"timer_hz": 0}, "the device reports a 0 Hz timer (HELLO timer_hz)"),
    ({"min_ticks": 0}, "the device reported 0 timer ticks for an inference of nucleo-l552ze-q"),
])
def test_a_device_with_a_dead_timer_is_a_device_error(profiled, monkeypatch, changes, needle):
    from targets.protocol import DeviceError

    run, _ = profiled
    before = (run / "profile.json").read_bytes()
    _device_reports(monkeypatch, **changes)
    with pytest.raises(DeviceError) as e:  # not a ZeroDivisionError reported as an internal error
        api.profile(run, windows=1)
    assert needle in e.value.message and e.value.hint
    assert (run / "profile.json").read_bytes() == before


def test_budget_above_the_board_names_both_figures(profiled):
    run, _ = profiled
    with pytest.raises(ConfigError) as e:
        api.profile(run, target="nucleo-f446re", budgets=Budgets(ram_bytes=256 * 1024))
    assert "262,144 bytes (256 KiB) is more than nucleo-f446re has (131,072 bytes (128 KiB))" in str(e.value)


def test_cli_profile_and_a_port_that_does_not_exist(profiled):
    run, p = profiled
    ok = run_cli("profile", str(run), "--windows", "12")
    assert ok.returncode == 0, ok.stderr
    assert f"{p.total:,.0f} instructions per inference (mean of 12 windows)" in ok.stdout
    quiet = run_cli("profile", str(run), "--windows", "12", "-q")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")  # not even QEMU's INFO line
    bad = run_cli("profile", str(run), "--port", "/dev/ttyDOESNOTEXIST", "--windows", "1")
    assert_clean_failure(bad, 2, "/dev/ttyDOESNOTEXIST")
    unknown = run_cli("profile", str(run), "--target", "nucleo-f446")
    assert_clean_failure(unknown, 2, "did you mean 'nucleo-f446re'?")


def _qemu_child(parent: int) -> int | None:
    """The PID of a qemu-system-arm whose parent is `parent`, from /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if comm.startswith("qemu-system-arm") and int(rest[1]) == parent:
            return int(entry.name)
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_kill_9_of_profile_leaves_no_emulator_and_the_next_start_sweeps_its_temp_dir(profiled, tmp_path):
    """`kill -9` of `micronas profile` in mid-session: no finally, no atexit runs. The kernel kills
    QEMU (parent-death signal); its temp folder, named with the dead PID, goes at the next start."""
    run, _ = profiled
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "micronas", "profile", str(run), "-q"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    qemu = None
    try:
        deadline = time.monotonic() + 120
        while qemu is None:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            qemu = _qemu_child(proc.pid)
            time.sleep(0.002)
        os.kill(qemu, signal.SIGSTOP)  # hold the session open: the host now waits for a reply
        owned = sorted(p.name for p in tmp.iterdir())
        assert any(n.startswith(f"micronas-qemu-{proc.pid}-") for n in owned), owned
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        gone = time.monotonic() + 5
        while Path(f"/proc/{qemu}").exists() and time.monotonic() < gone:
            time.sleep(0.01)
        assert not Path(f"/proc/{qemu}").exists(), "qemu-system-arm outlived its killed parent"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if qemu is not None and Path(f"/proc/{qemu}").exists():
            os.kill(qemu, signal.SIGKILL)
    assert [p.name for p in tmp.iterdir() if p.name.startswith(f"micronas-qemu-{proc.pid}-")]  # left by the kill
    nxt = subprocess.run([sys.executable, "-m", "micronas", "boards"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert nxt.returncode == 0, nxt.stderr
    assert not [p.name for p in tmp.iterdir() if p.name.startswith("micronas-")]  # swept at start-up
