"""Quantisation-aware fine-tuning: int8-grid weights, same structure, the decision rule of export_int8."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from micronas import api, qat
from micronas.stages import export as export_stage  # where export_int8 reads QAT_TRIGGER
from micronas.data import arrays_for
from micronas.rundir import RunDir


def _folded_and_train(run_path):
    run = RunDir.open(run_path)
    config, the_arch, ds, split, std = api._load_run(run)
    X, y = arrays_for(ds, split)["train"]
    return api._folded_model(run, the_arch), (std.apply(X), y.astype(np.int64))


def test_fine_tune_leaves_weights_on_their_int8_grid(run_copy):
    model, train = _folded_and_train(run_copy)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    qat.fine_tune(model, train, epochs=2, seed=0)
    after = model.state_dict()
    assert set(after) == set(before)  # loads into the folded network export builds
    assert not any(k.startswith("qat") or ".qat" in k for k in after)
    moved = 0
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv1d, torch.nn.Linear)):
            w = m.weight.detach()
            scale = w.abs().flatten(1).amax(1) / 127
            q = w / scale.view(-1, *[1] * (w.dim() - 1))
            assert float((q - q.round()).abs().max()) < 1e-3  # on the per-channel grid the converter uses
            assert float(q.abs().max()) == pytest.approx(127.0, abs=1e-3)
            moved += 1
    assert moved >= 4
    assert any(not torch.equal(before[k], after[k]) for k in after)  # it did train


def test_export_int8_runs_qat_when_ptq_loses_and_keeps_the_better(run_copy, monkeypatch):
    monkeypatch.setattr(export_stage, "QAT_TRIGGER", -1.0)  # any loss (even none) triggers it
    m = api.export_int8(run_copy, qat_epochs=2)
    rec = m.qat
    assert rec["ran"] and rec["epochs"] == 2
    assert rec["kept"] in ("qat", "ptq")
    run = RunDir.open(run_copy)
    assert run.has(api.QAT_MODEL) == (rec["kept"] == "qat")
    assert rec["kept"] == ("qat" if rec["validation_accuracy_int8_qat"] > rec["validation_accuracy_int8_ptq"] else "ptq")
    on_disk = json.loads(run.file("metrics.json").read_text())
    assert on_disk["qat"] == rec
    assert on_disk["runtime_vs_tflm"]["exact_match_rate"] == 1.0
    assert on_disk["weights"].startswith(api.QAT_MODEL if rec["kept"] == "qat" else "model.pt")


def test_export_int8_skips_qat_without_a_loss(run_copy, monkeypatch):
    monkeypatch.setattr(export_stage, "QAT_TRIGGER", 1.0)  # a 100-point loss is impossible
    m = api.export_int8(run_copy)
    assert m.qat["ran"] is False and "kept" not in m.qat
    assert not RunDir.open(run_copy).has(api.QAT_MODEL)
