"""`micronas sweep` on a local Ray of 2 CPUs: a 2x2 sweep of tiny searches end to end with an
infeasible budget among them, a killed sweep resumed, and the clear error without Ray.

The searches are tiny (1 search epoch, 1 final-training epoch, 1 candidate on the shipped
BasicMotions data) but real: DNAS, int8 export and a profile on the emulated core each.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from micronas import sweep_report

from .conftest import toolchain

MICRONAS = [sys.executable, "-m", "micronas"]
TINY = ["--epochs", "1", "--final-epochs", "1", "--candidates", "1", "--workers", "2"]


@pytest.fixture
def need_ray_and_toolchain():
    pytest.importorskip("ray", reason="Ray is the scale extra: `make scale` or pip install 'micronas[scale]'")
    toolchain("qemu-system-arm")
    toolchain("arm-none-eabi-gcc")


def _env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}


def _journal(out: Path) -> dict:
    return json.loads((out / "sweep.json").read_text())


@pytest.mark.slow
def test_2x2_sweep_reports_an_infeasible_budget_and_completes_the_others(tmp_path, need_ray_and_toolchain):
    out = tmp_path / "sweep"
    p = subprocess.run([*MICRONAS, "sweep", "--latency", "20ms,50ms", "--ram", "512,256k", *TINY, "--out", str(out)],
                       capture_output=True, text=True, env=_env(), timeout=900)
    assert p.returncode == 1, (p.stdout, p.stderr)  # some budget cannot be met: 1, not a crash
    assert "Traceback" not in p.stdout + p.stderr
    assert "2 of 4 sweep jobs cannot meet their budgets" in p.stderr
    # 512 bytes: below the 600-byte input window itself, whatever the space's scale (1 KiB fits a
    # network of the space at widths x0.25)
    assert "RAM budgets: 512 bytes (0.5 KiB), 262,144 bytes (256 KiB)" in p.stdout
    jobs = _journal(out)["jobs"]
    assert sorted(jobs) == sorted(f"nucleo-l552ze-q_lat{lat}_ram{ram}_seed0" for lat in ("20ms", "50ms")
                                  for ram in ("512", "256k"))
    for name, rec in jobs.items():
        if "ram512_" in name:
            assert rec["status"] == "infeasible" and "below the smallest arena" in rec["message"]
            assert not (out / "jobs" / name).exists()  # an infeasible search writes nothing
            continue
        assert rec["status"] == "ok", rec
        f = rec["figures"]
        prof = json.loads((out / "jobs" / name / "profile.json").read_text())
        metrics = json.loads((out / "jobs" / name / "metrics.json").read_text())
        assert f["measured_latency_ms"] == prof["measured_latency_ms"] <= float(rec["job"]["latency"][:-2])
        assert f["arena_bytes_measured"] == prof["arena_bytes_measured"] <= 256 * 1024
        assert f["accuracy_int8"] == metrics["accuracy_int8"]
        assert f["timer_kind"] == "instructions" and f["device"]["final_training"] == "cpu"
    md = (out / "report" / "sweep.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("| nucleo-l552ze-q")]
    assert len(table) == 4
    assert sum("Pareto front" in ln for ln in table) >= 1
    assert (out / "report" / sweep_report.PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "data:image/png;base64," in (out / "report" / "sweep.html").read_text()


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_rerunning_finished_jobs(tmp_path, need_ray_and_toolchain):
    out = tmp_path / "sweep"
    cmd = [*MICRONAS, "sweep", "--latency", "20ms,50ms", "--ram", "256k", *TINY, "--workers", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(),
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:  # until the first job is done, the second running
            if (out / "sweep.json").exists():
                done = [n for n, r in _journal(out)["jobs"].items() if r["status"] == "ok"]
                if done:
                    break
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.5)
        else:
            pytest.fail("no job finished in 10 minutes")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and the local Ray it started
        proc.wait()
    first = done[0]
    before = _journal(out)["jobs"]
    assert [r["status"] for n, r in before.items() if n != first] == ["submitted"]
    model = out / "jobs" / first / "model_int8.tflite"
    mtime = model.stat().st_mtime_ns

    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=900)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert "resuming: 1 finished job kept, 1 to run" in p.stdout
    after = _journal(out)["jobs"]
    assert after[first] == before[first]  # not rerun: the same record, timestamps and figures
    assert model.stat().st_mtime_ns == mtime
    (second,) = [n for n in after if n != first]
    assert after[second]["status"] == "ok" and after[second]["attempts"] == 2
    assert after[second]["started"] > before[second]["started"]


def test_sigterm_stops_the_sweep_and_its_local_ray_with_exit_143(tmp_path, need_ray_and_toolchain):
    out = tmp_path / "sweep"
    proc = subprocess.Popen([*MICRONAS, "sweep", "--latency", "50ms", "--ram", "256k", *TINY, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not ((out / "sweep.json").exists() and "submitted" in (out / "sweep.json").read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, "the sweep never started its job"
            time.sleep(0.5)
        time.sleep(3)  # the job is inside its search
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, (stdout, stderr)
    assert "terminated (SIGTERM)" in stderr and "Traceback" not in stderr
    time.sleep(2)
    with pytest.raises(ProcessLookupError):  # nothing of its session is left: Ray, the job, QEMU
        os.killpg(proc.pid, 0)
    assert [r["status"] for r in _journal(out)["jobs"].values()] == ["submitted"]  # resumable, not "failed"


def test_sweep_without_ray_exits_2_and_says_how_to_get_it(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from micronas.cli import app

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as when the extra is not installed
    r = CliRunner().invoke(app, ["sweep", "--latency", "5ms,10ms", "--ram", "64k", "--out", str(tmp_path / "s")])
    assert r.exit_code == 2, r.output
    assert "micronas sweep needs Ray, which is not installed" in r.output
    assert "pip install 'micronas[scale]'" in r.output
    assert not (tmp_path / "s").exists()  # nothing written


@pytest.mark.parametrize("args, needle", [
    (["--latency", "5ms,,10ms", "--ram", "64k"], "--latency '5ms,,10ms' has an empty item"),
    (["--latency", "5ms", "--ram", "64k,64k"], "--ram '64k,64k' repeats a value"),
    (["--latency", "fast", "--ram", "64k"], "fast"),
    (["--latency", "5ms", "--ram", "64k", "--seeds", "0,x"], "--seeds '0,x' holds something that is not a whole"),
    (["--latency", "5ms", "--ram", "64k", "--target", "nucleo-nope"], "nucleo-nope"),
    (["--latency", "5ms", "--ram", "64k", "--device", "tpu"], "--device 'tpu' is not a device"),
])
def test_bad_sweep_options_exit_2_before_anything_is_written(tmp_path, args, needle):
    pytest.importorskip("ray", reason="Ray is the scale extra: `make scale` or pip install 'micronas[scale]'")
    p = subprocess.run([*MICRONAS, "sweep", *args, "--out", str(tmp_path / "s")], capture_output=True, text=True,
                       env=_env(), timeout=120)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and needle in p.stderr, p.stderr
    assert not (tmp_path / "s").exists()


def test_pareto_front_marks_the_undominated_points():
    pts = [(10.0, 0.8), (20.0, 0.9), (15.0, 0.7), (30.0, 0.9), (5.0, 0.5)]
    assert sweep_report.pareto(pts) == [True, True, False, False, True]
