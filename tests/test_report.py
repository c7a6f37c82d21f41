"""`micronas report` on runs that were not searched: the parts they have, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

from micronas import report
from micronas_base.errors import ConfigError

import pytest


def test_report_of_an_exported_run_has_its_parts(run_copy):
    r = report.build(run_copy)
    assert [p.split("/")[-1] for p in r.plots] == ["arena.png", "confusion.png"]  # no search, no profile
    md = (run_copy / "report" / "report.md").read_text()
    m = json.loads((run_copy / "metrics.json").read_text())
    assert f"{100 * m['accuracy_int8']:.1f} %" in md
    assert report.interval_text(m["accuracy_int8"], m["test_windows"]) in md  # how far the figure can be trusted
    assert f"{m['arena_bytes_planned']:,} B" in md
    assert "Not profiled on a device yet" in md
    clip = json.loads((run_copy / "normalization.json").read_text())["clip"]
    assert (f"| int8 input | step {m['input']['scale']:.3g} | standardised values clipped to "
            f"{clip[0]:.2f}..{clip[1]:.2f} in training") in md
    cfg = json.loads((run_copy / "config.json").read_text())["train"]
    assert f"- **training**: {cfg['epochs']} epochs; batches of {cfg['batch_size']};" in md
    # the confusion matrix counts every test window once
    assert sum(map(sum, m["confusion_int8"])) == m["test_windows"]
    assert max(t["top_byte"] for t in m["arena_timeline"]) == m["arena_bytes_planned"]


def test_report_without_an_export_is_a_clear_error(tmp_path):
    (tmp_path / "run").mkdir()
    p = subprocess.run([sys.executable, "-m", "micronas", "report", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "not a micronas run directory" in p.stderr and "hint:" in p.stderr


def test_report_api_raises_config_error(tmp_path, run_copy):
    (run_copy / "metrics.json").unlink()
    with pytest.raises(ConfigError, match="nothing has been exported"):
        report.build(run_copy)


def test_the_training_line_names_the_teacher_of_a_distilled_run(tmp_path):
    from micronas.rundir import RunDir
    from micronas.train import TrainConfig
    from dataclasses import asdict

    run = RunDir.create(tmp_path / "run")
    (run.path / "teacher").mkdir()
    (run.path / "teacher" / "train_log.json").write_text(json.dumps({"best": {"val_acc": 0.8125}}))
    t = asdict(TrainConfig(epochs=40, distill=0.5, checkpoint_rule="last"))
    assert report._training_text(run, t) == (
        "40 epochs; batches of 32; Adam 0.001, cosine; label smoothing 0.1; augmentation jitter, scale, shift; "
        "kept: last epoch; distilled at 0.5 from a x1.5-wide teacher, teacher validation accuracy 81.2 %")


def test_the_qat_row_gives_the_fine_tuned_validation_accuracy_when_it_ran(run_copy):
    m = json.loads((run_copy / "metrics.json").read_text())
    m["qat"] = {"validation_accuracy_fp32": 0.8162, "validation_accuracy_int8_ptq": 0.812, "ran": True,
                "validation_accuracy_int8_qat": 0.8718, "kept": "qat", "trigger": "T"}
    (run_copy / "metrics.json").write_text(json.dumps(m))
    report.build(run_copy)
    md = (run_copy / "report" / "report.md").read_text()
    assert ("| QAT | ran, kept qat | validation fp32 81.6 %, int8 (PTQ) 81.2 %, int8 after fine-tuning 87.2 %; "
            "rule: T |") in md
    m["qat"] = {"validation_accuracy_fp32": 0.9, "validation_accuracy_int8_ptq": 0.9, "ran": False, "trigger": "T"}
    (run_copy / "metrics.json").write_text(json.dumps(m))
    report.build(run_copy)
    assert "| QAT | not needed | validation fp32 90.0 %, int8 (PTQ) 90.0 %; rule: T |" in \
        (run_copy / "report" / "report.md").read_text()


def test_accuracy_interval_is_the_wilson_score_interval():
    """95 % Wilson intervals, computed by hand: 50 of 100 right, 80 of 80 right (never above 1)."""
    lo, hi = report.accuracy_interval(0.5, 100)
    assert lo == pytest.approx(0.40383, abs=1e-5) and hi == pytest.approx(0.59617, abs=1e-5)
    lo, hi = report.accuracy_interval(1.0, 80)
    assert lo == pytest.approx(0.95418, abs=1e-5) and hi == 1.0
    assert report.accuracy_interval(0.9, 1145)[1] - report.accuracy_interval(0.9, 1145)[0] < 0.04
    assert report.accuracy_interval(0.0, 0) == (0.0, 1.0)  # no windows: nothing is known
    assert report.interval_text(0.5, 1000) == "95 % interval 0.469-0.531 over 1,000 windows"
