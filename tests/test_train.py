"""Training: reproducible, resumable after an interruption, and protective of existing runs."""

from __future__ import annotations

import json

import pytest
import torch

from micronas import api
from micronas_base.errors import ConfigError
from micronas.train import TrainConfig


def _state(run):
    return torch.load(run / "model.pt", weights_only=True)


RECIPES = {"plain": TrainConfig(epochs=6, seed=3, augment=(), label_smoothing=0.0, ema_decay=0.0),
           "augmented": TrainConfig(epochs=6, seed=3, augment=("jitter", "scale", "rotate", "shift", "mixup"),
                                    label_smoothing=0.1, ema_decay=0.9)}


@pytest.mark.parametrize("recipe", RECIPES)
def test_interrupted_training_resumes_to_the_same_weights(tiny_npz, tiny_arch, tmp_path, recipe):
    cfg = RECIPES[recipe]
    api.train(tiny_npz, tmp_path / "straight", arch=tiny_arch, cfg=cfg)

    seen = []

    def stop_after_epoch_3(epoch, total, entry):
        seen.append(epoch)
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        api.train(tiny_npz, tmp_path / "resumed", arch=tiny_arch, cfg=cfg, on_epoch=stop_after_epoch_3)
    assert (tmp_path / "resumed" / "checkpoint.pt").exists()
    assert not (tmp_path / "resumed" / "model.pt").exists()  # nothing half-finished is published

    api.train(tiny_npz, tmp_path / "resumed", arch=tiny_arch, cfg=cfg, on_epoch=lambda e, t, _: seen.append(e))
    assert seen == [0, 1, 2, 3, 4, 5]  # epochs 0-2 were not redone
    a, b = _state(tmp_path / "straight"), _state(tmp_path / "resumed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = json.loads((tmp_path / "resumed" / "train_log.json").read_text())
    assert [h["epoch"] for h in log["history"]] == list(range(6))
    assert not (tmp_path / "resumed" / "checkpoint.pt").exists()


def test_same_settings_reuse_other_settings_refuse(tiny_npz, tiny_arch, tmp_path):
    cfg = TrainConfig(epochs=2)
    first = api.train(tiny_npz, tmp_path / "r", arch=tiny_arch, cfg=cfg)
    again = api.train(tiny_npz, tmp_path / "r", arch=tiny_arch, cfg=cfg)
    assert not first.reused and again.reused and again.best == first.best
    with pytest.raises(ConfigError, match="trained with other settings"):
        api.train(tiny_npz, tmp_path / "r", arch=tiny_arch, cfg=TrainConfig(epochs=2, seed=1))
    forced = api.train(tiny_npz, tmp_path / "r", arch=tiny_arch, cfg=TrainConfig(epochs=2, seed=1), force=True)
    assert not forced.reused


def test_arch_must_match_the_data(tiny_npz, tmp_path):
    from search_space import arch as A

    (tmp_path / "a.json").write_text(A.load("default").dumps())  # 6 x 100, 4 classes
    with pytest.raises(ConfigError) as e:
        api.train(tiny_npz, tmp_path / "r", arch=tmp_path / "a.json", cfg=TrainConfig(epochs=1))
    assert "expects 6 channels x 100 samples and 4 classes; the data has 4 x 37 and 3 classes" in str(e.value)


def test_out_must_not_be_a_foreign_folder(tiny_npz, tmp_path):
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "main.c").write_text("int main(void){return 0;}")
    with pytest.raises(ConfigError, match="not a micronas run"):
        api.train(tiny_npz, tmp_path / "project", cfg=TrainConfig(epochs=1))
    assert sorted(p.name for p in (tmp_path / "project").iterdir()) == ["main.c"]


def test_last_epoch_checkpoint_rule_keeps_the_final_weights(tiny_npz, tiny_arch, tmp_path):
    cfg = TrainConfig(epochs=3, checkpoint_rule="last")
    s = api.train(tiny_npz, tmp_path / "run", arch=tiny_arch, cfg=cfg)
    log = json.loads((tmp_path / "run" / "train_log.json").read_text())
    assert s.best["epoch"] == 2 and log["checkpoint_rule"].startswith("the last epoch")
    assert log["best"]["val_acc"] == log["history"][-1]["val_acc"]


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("env, requested, expected", [
    ({}, 3, (3, "--threads")),
    ({"MICRONAS_THREADS": "2", "OMP_NUM_THREADS": "1"}, None, (2, "MICRONAS_THREADS")),
    ({"OMP_NUM_THREADS": "1"}, None, (1, "OMP_NUM_THREADS")),
    ({"OMP_NUM_THREADS": "3"}, 2, (2, "--threads")),
])
def test_thread_rule(monkeypatch, env, requested, expected):
    for var in ("MICRONAS_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert api.torch_threads(requested) == expected


def test_thread_default_is_at_most_four_of_the_cpus_available(monkeypatch):
    import os

    monkeypatch.delenv("MICRONAS_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpus = len(os.sched_getaffinity(0))
    assert api.torch_threads() == (min(4, cpus), f"min(4, {cpus} CPUs available)")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert api.torch_threads() == (4, "min(4, 16 CPUs available)")


@pytest.mark.parametrize("env, requested, needle", [
    ({"OMP_NUM_THREADS": "lots"}, None, "OMP_NUM_THREADS='lots' is not a thread count"),
    ({"MICRONAS_THREADS": "0"}, None, "MICRONAS_THREADS='0' is not a thread count"),
    ({}, 0, "--threads 0 is not a thread count"),
])
def test_bad_thread_counts_are_usage_errors(monkeypatch, env, requested, needle):
    from micronas_base.errors import UsageError

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(UsageError) as e:
        api.torch_threads(requested)
    assert needle in e.value.message and e.value.exit_code == 2


def test_train_applies_the_thread_count_first(tiny_npz, tiny_arch, tmp_path, monkeypatch, restore_threads):
    """Even a train that reuses its model (no epoch runs) sets torch's threads at its start."""
    cfg = TrainConfig(epochs=1, seed=0)
    api.train(tiny_npz, tmp_path / "r", arch=tiny_arch, cfg=cfg, threads=1)
    assert torch.get_num_threads() == 1
    assert api.train(tiny_npz, tmp_path / "r", arch=tiny_arch, cfg=cfg, threads=3).reused
    assert torch.get_num_threads() == 3
    monkeypatch.setenv("MICRONAS_THREADS", "2")
    api.train(tiny_npz, tmp_path / "r", arch=tiny_arch, cfg=cfg)
    assert torch.get_num_threads() == 2
    assert torch.get_num_interop_threads() == 1


def test_search_applies_and_echoes_the_thread_count(tmp_path, restore_threads):
    """Set before anything else: an infeasible budget ends the search early, threads already set."""
    from micronas_base.errors import BudgetError
    from micronas.units import Budgets

    stages: list[str] = []
    with pytest.raises(BudgetError):
        api.search("basicmotions", tmp_path / "run", Budgets.parse(latency="0.1ms"), on_stage=stages.append, threads=3)
    assert torch.get_num_threads() == 3
    assert stages[0] == "torch: 3 intra-op threads (--threads), 1 inter-op"


# ---- --device ------------------------------------------------------------------------------

@pytest.mark.parametrize("requested, gpu, expected", [
    ("cpu", True, ("cpu", "--device cpu")),
    ("auto", False, ("cpu", "--device auto: torch sees no GPU")),
    ("auto", True, ("cuda", "--device auto: torch sees a GPU")),
    ("cuda", True, ("cuda", "--device cuda")),
])
def test_device_rule(monkeypatch, requested, gpu, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    assert api.torch_device(requested) == expected


def test_bad_or_missing_devices_are_clear(monkeypatch):
    from micronas_base.errors import ToolchainError, UsageError

    with pytest.raises(UsageError, match="--device 'tpu' is not a device"):
        api.torch_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ToolchainError, match="--device cuda: torch .* sees no GPU") as e:
        api.torch_device("cuda")
    assert "--device cpu" in e.value.hint


def test_cli_train_on_a_missing_gpu_exits_2_before_writing(tiny_npz, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU torch can use")
    from typer.testing import CliRunner

    from micronas.cli import app

    r = CliRunner().invoke(app, ["train", "--data", str(tiny_npz), "--out", str(tmp_path / "r"), "--device", "cuda"])
    assert r.exit_code == 2 and "sees no GPU" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "r").exists()


def test_training_records_its_device_and_auto_on_a_cpu_machine_equals_cpu(tiny_npz, tiny_arch, tmp_path, monkeypatch):
    """"auto" without a GPU is the CPU path, bit for bit; the device is in train_log.json."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = TrainConfig(epochs=2, seed=3)
    api.train(tiny_npz, tmp_path / "cpu", arch=tiny_arch, cfg=cfg, device="cpu")
    api.train(tiny_npz, tmp_path / "auto", arch=tiny_arch, cfg=cfg, device="auto")
    logs = [json.loads((tmp_path / d / "train_log.json").read_text()) for d in ("cpu", "auto")]
    assert [g["device"] for g in logs] == ["cpu", "cpu"] and logs[0]["history"] == logs[1]["history"]
    a, b = (torch.load(tmp_path / d / "model.pt", weights_only=True) for d in ("cpu", "auto"))
    assert all(torch.equal(a[k], b[k]) and b[k].device.type == "cpu" for k in a)


def test_distillation_loss_is_the_hard_loss_when_the_teacher_agrees_and_grows_when_it_does_not():
    from micronas.train import distill_loss

    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    hard = torch.tensor(0.7)
    assert torch.allclose(distill_loss(logits, logits.clone(), hard, 0.25), 0.75 * hard)
    other = torch.tensor([[-1.0, 2.0, 0.5], [3.0, 0.0, -2.0]])
    t = 4.0  # KL(p_teacher || p_student) at temperature T, times T^2, by hand
    p, q = torch.softmax(other / t, 1), torch.softmax(logits / t, 1)
    kl = float((p * (p.log() - q.log())).sum(1).mean())
    assert float(distill_loss(logits, other, hard, 0.25)) == pytest.approx(0.75 * 0.7 + 0.25 * t * t * kl, rel=1e-6)


def test_distillation_trains_a_wider_teacher_once_and_a_killed_student_resumes_to_the_same_weights(
        tiny_npz, tiny_arch, tmp_path):
    cfg = TrainConfig(epochs=4, seed=3, distill=0.5)
    api.train(tiny_npz, tmp_path / "plain", arch=tiny_arch, cfg=TrainConfig(epochs=4, seed=3))
    seen = []
    api.train(tiny_npz, tmp_path / "straight", arch=tiny_arch, cfg=cfg,
              on_epoch=lambda e, n, entry: seen.append((bool(entry.get("teacher")), e)))
    assert seen == [(True, e) for e in range(4)] + [(False, e) for e in range(4)]
    teacher = json.loads((tmp_path / "straight" / "teacher" / "arch.json").read_text())
    assert teacher["stem"]["out"] == 12 and [c.get("out") for c in teacher["cells"]] == [12, 16, None]  # x1.5
    a, plain = _state(tmp_path / "straight"), _state(tmp_path / "plain")
    assert a.keys() == plain.keys() and not all(torch.equal(a[k], plain[k]) for k in a)  # the teacher taught

    def stop_in_student_epoch_2(epoch, total, entry):
        if not entry.get("teacher") and epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        api.train(tiny_npz, tmp_path / "resumed", arch=tiny_arch, cfg=cfg, on_epoch=stop_in_student_epoch_2)
    seen.clear()
    api.train(tiny_npz, tmp_path / "resumed", arch=tiny_arch, cfg=cfg,
              on_epoch=lambda e, n, entry: seen.append((bool(entry.get("teacher")), e)))
    assert seen == [(False, 2), (False, 3)]  # the finished teacher is kept, the student goes on
    b = _state(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_without_epochs_takes_the_minimum_weight_steps(tiny_npz, tiny_arch, tmp_path, monkeypatch):
    """`micronas train` without --epochs: 120, more on small data (tiny.npz: 48 training windows,
    batches of 12, 4 steps per epoch -> 250 epochs), recorded in config.json."""
    from micronas import train as train_mod
    from micronas.train import epochs_for

    seen = []

    def loop(run, build, data, cfg, digest, *args, **kwargs):
        seen.append((cfg.epochs, len(data["train"][1])))
        return {"best": {"epoch": cfg.epochs, "val_acc": 1.0, "val_loss": 0.0}}

    monkeypatch.setattr(train_mod, "train", loop)
    api.train(tiny_npz, tmp_path / "run", arch=tiny_arch, cfg=TrainConfig(epochs=None, seed=0))
    (epochs, windows), = seen
    assert epochs == epochs_for(windows, 32) == 250
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["epochs"] == 250
