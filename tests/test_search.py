"""DNAS: the supernet, expected costs, infeasible budgets, resume, and a tiny search end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from latency_tables import costs as costs_mod
from latency_tables import predict as predictor
from micronas import api
from micronas import budgets as budget_mod
from micronas import search as dnas
from micronas_base.errors import BudgetError, ConfigError
from micronas.rundir import RunDir
from micronas.units import Budgets
from search_space.registry import SEARCH_OPS
from search_space.space import DEFAULT_SPACE, position_choices
from search_space.supernet import SuperNet

from .conftest import toolchain


@pytest.fixture(scope="module")
def cost_model():
    table = predictor.find_table("nucleo-l552ze-q", 6, 100, 4)
    return table, costs_mod.build_costs(DEFAULT_SPACE, table)


def _factory():
    choices = [position_choices(DEFAULT_SPACE, i) for i in range(len(DEFAULT_SPACE.positions))]
    return SuperNet(DEFAULT_SPACE, choices, 6, 100, 4)


def test_supernet_holds_every_search_op_and_derives_valid_networks():
    net = _factory()
    ops = {ch.op for pos in net.positions for ch in pos.choices}
    # conv is wconv with one width; the split dyconv is registered but not offered (DEFAULT_OPS)
    assert ops | {"conv"} == set(SEARCH_OPS.names()) - {"dyconv"}
    x = torch.randn(3, 6, 100)
    for _ in range(5):
        assert net(x).shape == (3, 4)
    kdna = {n for n in net.parents}
    assert kdna and all(n.startswith("kdna_") for n in kdna)
    arch = net.derive()
    assert [la.stride for la in arch.layers] == [p.stride for p in DEFAULT_SPACE.positions]


def test_expected_costs_equal_the_exact_prediction_for_a_one_hot_distribution(cost_model):
    table, cm = cost_model
    net = _factory()
    with torch.no_grad():  # put all the probability on one network
        for pos in net.positions:
            pos.alpha.fill_(-50.0)
            pos.beta.fill_(-50.0)
            pos.alpha[0] = 50.0
            pos.beta[-1] = 50.0
    with torch.no_grad():
        e = dnas.expected_costs(net, cm, dnas.SearchConfig())
    p = predictor.predict(net.derive(), table)
    assert float(e["latency"]) == pytest.approx(p.latency_count, rel=1e-6)  # latency is additive: exact
    assert float(e["flash"]) == pytest.approx(p.flash_bytes, rel=0.01)
    assert float(e["ram"]) >= 0.5 * p.arena_bytes


def test_penalty_is_steep_over_budget_and_mild_under():
    cfg = dnas.SearchConfig()
    over = float(dnas.penalty(torch.tensor(2.0), 1.0, cfg))
    under = float(dnas.penalty(torch.tensor(0.5), 1.0, cfg))
    assert over == pytest.approx(cfg.over_weight * np.log(2)) and under == pytest.approx(-cfg.under_weight * np.log(0.5))
    assert over > 50 * abs(under) and under > 0  # under the latency budget: a mild pull towards it
    assert float(dnas.penalty(torch.tensor(1.0), 1.0, cfg)) == 0.0
    assert float(dnas.penalty(torch.tensor(0.5), 1.0, cfg, towards=False)) == 0.0  # RAM, flash: constraints


@pytest.mark.parametrize("budgets, needle", [
    (Budgets.parse(latency="0.1ms"), "latency budget 0.1 ms is below the fastest network"),
    (Budgets.parse(ram="200"), "RAM budget 200 bytes"),
    (Budgets.parse(flash="1k"), "flash budget 1,024 bytes"),
])
def test_infeasible_budget_exits_1_naming_the_minimum(tmp_path, budgets, needle):
    with pytest.raises(BudgetError) as e:
        api.search("basicmotions", tmp_path / "run", budgets)
    assert needle in e.value.message and "relax --" in e.value.hint and e.value.exit_code == 1
    assert not (tmp_path / "run").exists()


def test_minimum_costs_are_reached_by_a_real_network(cost_model):
    table, cm = cost_model
    mins = api.minimum_costs(cm, table)
    lat = [predictor.predict(api.arch_mod.from_json(a), table).latency_ms for a in mins.networks]
    assert mins.latency_ms == min(lat) and 0.5 < mins.latency_ms < 5
    assert 0 < mins.ram_bytes < 4096 and 20_000 < mins.flash_bytes < 40_000


def test_killed_search_resumes_to_the_same_architecture(tmp_path, basicmotions, cost_model):
    _, cm = cost_model
    cfg = dnas.SearchConfig(epochs=3, warmup_epochs=1, seed=3)
    budgets = Budgets.parse(latency="5ms", ram="256k")
    full = RunDir.create(tmp_path / "full")
    t_full = dnas.search(full, _factory, cm, basicmotions, budgets, cfg, "d")

    def kill(epoch, n, entry):
        if epoch == 1:
            raise KeyboardInterrupt

    killed = RunDir.create(tmp_path / "killed")
    with pytest.raises(KeyboardInterrupt):
        dnas.search(killed, _factory, cm, basicmotions, budgets, cfg, "d", on_epoch=kill)
    assert len(json.loads(killed.file("search.json").read_text())["trajectory"]) == 2
    seen = []
    t_resumed = dnas.search(killed, _factory, cm, basicmotions, budgets, cfg, "d",
                            on_epoch=lambda e, n, x: seen.append(e))
    assert seen == [2]  # finished epochs are not redone
    def strip(t):  # wall times differ between runs
        return [{k: v for k, v in e.items() if k != "seconds"} for e in t]

    assert strip(t_resumed) == strip(t_full) and all(e["seconds"] > 0 for e in t_resumed)
    assert dnas.load_supernet(killed, _factory).derive() == dnas.load_supernet(full, _factory).derive()


def test_the_recorded_epoch_accuracy_is_the_recalibrated_most_likely_network(tmp_path, basicmotions, cost_model):
    """Each epoch's validation accuracy is the most likely network's with the supernet's weights,
    batch norm recalibrated on it (as the derivation scores candidates): recomputed from the last
    checkpoint it is the same figure, so scoring it left the supernet as saved."""
    _, cm = cost_model
    cfg = dnas.SearchConfig(epochs=4, warmup_epochs=2, seed=1)
    run = RunDir.create(tmp_path / "s")
    traj = dnas.search(run, _factory, cm, basicmotions, Budgets.parse(latency="5ms", ram="256k"), cfg, "d")
    net = dnas.load_supernet(run, _factory)
    arch = net.derive()
    assert arch.to_json() == traj[-1]["most_likely"]
    again = dnas.inherited_accuracy(net, arch, basicmotions["train"][0], *basicmotions["val"],
                                    recalibrate=dnas.TRAJECTORY_RECALIBRATE, seed=cfg.seed)
    assert again == traj[-1]["val_acc_most_likely"]


def test_tiny_search_end_to_end(tiny_npz, tmp_path, monkeypatch):
    """Search (2 epochs), train, export and profile on the emulated default board; the table
    for the tiny data's shape is measured on demand."""
    toolchain("arm-none-eabi-gcc")
    toolchain("qemu-system-arm")
    monkeypatch.chdir(tmp_path)  # the on-demand table goes to ./micronas-tables
    r = api.search(str(tiny_npz), tmp_path / "run", Budgets.parse(latency="20ms", ram="64k"),
                   cfg=dnas.SearchConfig(epochs=2, warmup_epochs=1), final_epochs=5, profile_windows=3)
    assert (tmp_path / "micronas-tables" / "nucleo-l552ze-q-4ch-37-3cls.json").exists()
    s = json.loads((tmp_path / "run" / "search.json").read_text())
    assert len(s["trajectory"]) == 2 and s["derived"] == r.arch
    prof = r.profile
    assert prof.outputs_equal_tflm and prof.arena_bytes_measured == r.predicted.arena_bytes
    assert prof.measured_latency_ms <= 20 and abs(prof.prediction_error) < 0.01
    for f in ("arch.json", "model.pt", "model_int8.tflite", "c/micronas_model.c", "metrics.json", "profile.json"):
        assert (tmp_path / "run" / f).exists()
    # the report: every plot, a self-contained page and the same content as Markdown
    rep = tmp_path / "run" / "report"
    names = ["trajectory.png", "candidates.png", "layers.png", "arena.png", "confusion.png"]
    assert [Path(p).name for p in r.report.plots] == names
    for n in names:
        assert (rep / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({n})" in (rep / "report.md").read_text()
    page = (rep / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(names) and "src=\"http" not in page
    assert f"{prof.measured_latency_ms:.3f} ms" in page and "20 ms" in page
    # the window mean, decided on validation (auto), journaled, and the same everywhere after
    wm = s["window_mean"]
    assert wm["setting"] == "auto" and wm["remove"] is (wm["removed"]["val_acc"] > wm["kept"]["val_acc"])
    assert json.loads((tmp_path / "run" / "window_mean.json").read_text())["decision"] == wm
    norm = json.loads((tmp_path / "run" / "normalization.json").read_text())
    assert norm.get("remove_window_mean", False) is wm["remove"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["remove_window_mean"] is wm["remove"]
    header = (tmp_path / "run" / "c" / "micronas_model.h").read_text()
    assert f"#define MICRONAS_MODEL_REMOVES_WINDOW_MEAN {int(wm['remove'])}" in header
    md = (rep / "report.md").read_text()
    assert f"- **window mean**: {'removed' if wm['remove'] else 'kept'} ({wm['why']})" in md


def test_resume_with_other_settings_is_refused(tmp_path, basicmotions, cost_model):
    _, cm = cost_model
    run = RunDir.create(tmp_path / "r")
    cfg = dnas.SearchConfig(epochs=1, warmup_epochs=0)
    dnas.search(run, _factory, cm, basicmotions, Budgets.parse(latency="5ms"), cfg, "first")
    with pytest.raises(api.ConfigError) as e:
        dnas.search(run, _factory, cm, basicmotions, Budgets.parse(latency="5ms"), cfg, "other", must_resume=True)
    assert "other settings" in e.value.message and "--resume" in e.value.hint


def _peaked(net, pick):
    """Put (almost) all probability on candidate `pick(pos)` and the widest width, per position."""
    with torch.no_grad():
        for pos in net.positions:
            pos.alpha.copy_(torch.linspace(0, -1, len(pos.choices)))  # a defined order of alternatives
            pos.alpha[pick(pos)] = 5.0
            pos.beta.fill_(0.0)
            pos.beta[-1] = 5.0
    return net


def test_derivation_repairs_an_over_budget_network_then_fills_the_latency_budget(cost_model):
    table, _ = cost_model
    net = _peaked(_factory(), lambda pos: max(range(len(pos.choices)), key=lambda i: pos.choices[i].op == "dyagg"))
    biggest = predictor.predict(net.derive(), table)
    budget_ms = biggest.latency_ms / 3
    budgets = Budgets.parse(latency=f"{budget_ms}ms")
    arch, pred, steps = dnas.derive_and_repair(net, table, budgets)
    exact = predictor.predict(arch, table)
    assert exact.latency_ms == pred.latency_ms <= budget_ms * (1 - dnas.PREDICTION_MARGIN)  # exact, with a margin
    repairs = [s for s in steps if not s.startswith("fill")]
    assert repairs and all("-> " in s for s in repairs)
    # each step names the layer it chose as the report does (`dyagg48k7x4/2`), not as a dict
    shown = re.compile(r"^(fill, )?position \d: (skip|[a-z]+\d+k\d(x\d)?(/2)?) \(")
    assert all(shown.match(s) for s in steps) and not any("{" in s for s in steps)
    # nothing was filled past the budget, and no single change could still add latency and fit
    _, unfilled, _ = dnas.derive_and_repair(net, table, budgets, fill=False)
    assert unfilled.latency_ms <= pred.latency_ms <= budget_ms
    if any(s.startswith("fill") for s in steps):
        assert pred.latency_ms > unfilled.latency_ms


def test_derivation_fills_a_cheap_network_up_towards_the_budget(cost_model):
    table, _ = cost_model
    net = _peaked(_factory(), lambda pos: max(range(len(pos.choices)), key=lambda i: pos.choices[i].op == "skip"))
    with torch.no_grad():
        for pos in net.positions:
            pos.beta.fill_(0.0)
            pos.beta[0] = 5.0  # narrowest widths
    cheap = predictor.predict(net.derive(), table)
    budgets = Budgets.parse(latency=f"{cheap.latency_ms * 1.5}ms")
    arch, pred, steps = dnas.derive_and_repair(net, table, budgets)
    assert steps and all(s.startswith("fill") for s in steps)
    assert cheap.latency_ms < pred.latency_ms <= cheap.latency_ms * 1.5 * (1 - dnas.PREDICTION_MARGIN)
    assert predictor.predict(arch, table).latency_ms == pred.latency_ms
    assert dnas.derive_and_repair(net, table, Budgets.parse(ram="256k"))[2] == []  # no latency budget: no fill


def test_search_keeps_model_and_report_when_the_device_measures_over_budget(tmp_path, exported_run, monkeypatch):
    """After the search phase, an exit 1 from the final profile still leaves the model, the export
    and the report (with the over-budget note), and the error says where they are."""
    import shutil

    from micronas.stages import search as search_stage

    def over_on_device(data, run_path, arch, train_cfg, board, budgets, **kw):
        shutil.copytree(exported_run, run_path, dirs_exist_ok=True)  # a trained, exported run
        raise BudgetError("measured latency 31.000 ms exceeds the latency budget 20.000 ms",
                          "relax the budget or choose a smaller architecture")

    monkeypatch.setattr(search_stage, "train_export_profile", over_on_device)
    stages: list[str] = []
    with pytest.raises(BudgetError) as e:
        api.search("basicmotions", tmp_path / "run", Budgets.parse(latency="20ms"),
                   cfg=dnas.SearchConfig(epochs=1, warmup_epochs=0), on_stage=stages.append)
    assert e.value.exit_code == 1 and "measured latency 31.000 ms" in e.value.message
    page = tmp_path / "run" / "report" / "report.html"
    assert page.exists() and (tmp_path / "run" / "report" / "report.md").exists()
    assert e.value.hint == ("relax the budget or choose a smaller architecture; the trained model and export are "
                            f"kept in {tmp_path / 'run'}, the report in {page}")
    assert "report (HTML, Markdown, plots) of the kept model" in stages
    for f in ("model.pt", "model_int8.tflite", "metrics.json", "search.json", "searched_arch.json"):
        assert (tmp_path / "run" / f).exists()


def test_search_failing_before_an_export_keeps_the_model_and_says_so(tmp_path, monkeypatch):
    from micronas.stages import search as search_stage

    def chain_fails(data, run_path, *args, **kw):
        raise api.ExportError("the generated C runtime differs from TFLite Micro on 1 of 12 test windows",
                              "please report it")

    monkeypatch.setattr(search_stage, "train_export_profile", chain_fails)
    with pytest.raises(api.ExportError) as e:
        api.search("basicmotions", tmp_path / "run", Budgets.parse(latency="20ms"),
                   cfg=dnas.SearchConfig(epochs=1, warmup_epochs=0))
    assert e.value.exit_code == 2
    assert e.value.hint == f"please report it; the trained model is kept in {tmp_path / 'run'}"
    assert not (tmp_path / "run" / "report").exists() and (tmp_path / "run" / "search.json").exists()


def test_a_predicted_budget_overrun_at_export_is_left_to_the_device(tiny_npz, tiny_arch, tmp_path, monkeypatch):
    """Only a measurement ends the pipeline on a budget: export's over-budget figure is a warning,
    the profile still runs with the written metrics (and QAT was decided first)."""
    from micronas.stages import search as search_stage
    from micronas.train import TrainConfig

    seen = {}

    def fake_profile(run, board, budgets, metrics, **kw):
        seen["metrics"] = metrics
        return "measured"

    monkeypatch.setattr(search_stage, "profile_run", fake_profile)
    stages: list[str] = []
    r = api.train_export_profile(tiny_npz, tmp_path / "run", tiny_arch, TrainConfig(epochs=2, seed=0),
                                 "nucleo-l552ze-q", Budgets(ram_bytes=512), on_stage=stages.append)
    assert r.profile == "measured"
    m = seen["metrics"]
    assert m.budget_check["ram"]["ok"] is False and m.budget_check["ram"]["budget_bytes"] == 512
    assert m.qat is not None and m.qat["validation_accuracy_fp32"] >= 0  # the QAT decision was made first
    assert r.metrics == m
    warn = [s for s in stages if s.startswith("warning: predicted over budget (")]
    assert len(warn) == 1 and "RAM budget 512 bytes" in warn[0]
    assert warn[0].endswith("the measurement on nucleo-l552ze-q decides")
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["qat"] == m.qat and on_disk["budget_check"]["ram"]["ok"] is False


def test_state_of_runs_exactly_the_network_it_names():
    net = _factory().eval()
    arch = DEFAULT_SPACE.sample(__import__("random").Random(4), 6, 100, 4)
    state = net.state_of(arch)
    for (c, w), pos, layer in zip(state, net.positions, arch.layers):
        ch = pos.choices[c]
        assert (ch.kernel, ch.experts) == (layer.kernel, layer.experts)
        assert ch.op == layer.op or SEARCH_OPS.get(layer.op).supernet_as == ch.op
        if layer.out is not None:
            assert pos.widths[w] == layer.out
    # with the most likely candidates fixed, the fixed pass is the argmax pass
    x = torch.randn(4, 6, 100)
    with torch.no_grad():
        argmax = [(int(p.alpha.argmax()), int(p.beta.argmax())) for p in net.positions]
        assert torch.equal(net(x, fixed=argmax), net(x, sample=False))


def test_a_family_shares_one_module_and_smaller_kernels_are_its_centre_taps():
    from search_space.layers import ConvBlock, DWSepBlock, DyAggBlock, KernelDNABlock

    net = _factory()
    for pos in net.positions:  # one module per op (skip: an identity), not one per candidate
        assert len(pos.ops) == len({ch.op for ch in pos.choices})
    torch.manual_seed(0)
    x = torch.randn(3, 12, 40)
    for cls, kw in ((ConvBlock, {}), (DWSepBlock, {}), (KernelDNABlock, {}), (DyAggBlock, {"experts": 4})):
        big = cls(12, 8, 7, stride=2, **kw).eval()
        with torch.no_grad():  # the family's own size is the block itself
            assert torch.allclose(big.forward_sub(x, 7, kw.get("experts")), big(x), atol=1e-6)
        if cls is KernelDNABlock:
            continue  # its parent is snapped per filter: a centre crop is not a kdna block of its own
        small = cls(12, 8, 3, stride=2, **({"experts": 2} if kw else {})).eval()
        sd = {k: v for k, v in big.state_dict().items() if k in small.state_dict()}
        for k, v in small.state_dict().items():
            if v.shape != sd[k].shape:
                if k == "stack":  # (experts x out*in*k): the first two experts' centre taps
                    sd[k] = big.stack.view(big.experts_shape)[:2, ..., 2:5].flatten(1)
                elif k == "fc2.weight" or k == "fc2.bias":
                    sd[k] = sd[k][:2]
                else:
                    sd[k] = sd[k][..., 2:5]
        small.load_state_dict(sd)
        with torch.no_grad():
            assert torch.allclose(big.forward_sub(x, 3, 2 if kw else None), small(x), atol=1e-5), cls.__name__


def test_training_a_small_kernel_moves_only_the_centre_taps_of_its_family():
    net = _factory()
    pos = net.positions[1]
    c = next(i for i, ch in enumerate(pos.choices) if ch.op == "wconv" and ch.kernel == 3)
    module = pos.ops[pos.route[c][0]]
    state = [(0, 0)] * len(net.positions)
    state[1] = (c, len(pos.widths) - 1)
    net(torch.randn(4, 6, 100), fixed=state).sum().backward()
    g = module.conv.weight.grad
    assert module.conv.weight.shape[2] == max(ch.kernel for ch in pos.choices if ch.op == "wconv")
    assert g[..., 2:5].abs().sum() > 0 and g[..., :2].abs().sum() == 0 and g[..., 5:].abs().sum() == 0


def test_search_epochs_grow_on_small_data_to_the_minimum_weight_steps():
    from micronas.train import steps_per_epoch

    cfg = dnas.SearchConfig()
    assert (cfg.epochs, cfg.warmup_epochs) == (None, None)
    # 216 windows: batches of 32, 7 steps per epoch (the last of 24 windows kept) -> 215 epochs
    assert steps_per_epoch(216, 32) == 7
    assert (cfg.for_data(216).epochs, cfg.for_data(216).warmup_epochs) == (215, 53)
    assert cfg.for_data(6094).epochs == dnas.DEFAULT_EPOCHS  # large data: 191 steps per epoch
    assert steps_per_epoch(33, 32) == 4  # small data: batches of 8, a last batch of one skipped
    given = dnas.SearchConfig(epochs=3)
    assert (given.for_data(20).epochs, given.for_data(20).warmup_epochs) == (3, 0)  # what the user asked
    assert dnas.SearchConfig(epochs=8, warmup_epochs=5).for_data(20).warmup_epochs == 5


def test_training_epochs_grow_on_small_data_to_the_minimum_weight_steps():
    from micronas.train import DEFAULT_EPOCHS, MIN_STEPS, epochs_for, steps_per_epoch

    assert (DEFAULT_EPOCHS, MIN_STEPS) == (120, 1_000)
    assert epochs_for(40, 32) == 250  # PickupGestureWiimoteZ's 40: batches of 10, 4 steps per epoch
    assert epochs_for(216, 32) == 143  # JapaneseVowels: 7 steps per epoch
    assert epochs_for(257, 32) == 125 and epochs_for(258, 32) == 120  # 8 and 9 steps per epoch
    assert epochs_for(2226, 32) == 120  # the watch data keeps the default
    assert all(epochs_for(n, 32) * steps_per_epoch(n, 32) >= MIN_STEPS for n in range(8, 600))


def test_search_final_training_takes_the_minimum_weight_steps_unless_told(tmp_path, monkeypatch):
    from micronas.data import load_dataset, make_split
    from micronas.stages import search as search_stage
    from micronas.train import epochs_for
    from micronas_base.errors import ConfigError

    seen = []

    def stop(data, out, arch, cfg, *args, **kwargs):
        seen.append(cfg)
        raise ConfigError("stopped before the final training")

    monkeypatch.setattr(search_stage, "train_export_profile", stop)
    train_windows = len(make_split(load_dataset("basicmotions"), seed=0).train)
    cfg = dnas.SearchConfig(epochs=1, warmup_epochs=0, window_mean="keep")
    stages: list[str] = []
    for final_epochs in (None, 7):
        with pytest.raises(ConfigError, match="stopped before"):
            api.search("basicmotions", tmp_path / "run", Budgets.parse(latency="20ms"), cfg=cfg, threads=1,
                       final_epochs=final_epochs, resume=final_epochs is not None, on_stage=stages.append)
    assert [c.epochs for c in seen] == [epochs_for(train_windows, 32), 7] and seen[0].epochs == 250
    lines = [s for s in stages if s.startswith("final training")]
    assert f"({seen[0].epochs} epochs: at least 1,000 weight steps on {train_windows} training windows;" in lines[0]
    assert "(7 epochs;" in lines[1]


def test_kendall_tau_values():
    assert dnas.kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert dnas.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert dnas.kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert dnas.kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / np.sqrt(6))  # tau-b with a tie


def test_inherited_accuracy_recalibrates_without_changing_the_supernet(basicmotions):
    net = _factory()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    arch = net.derive()
    a = dnas.inherited_accuracy(net, arch, basicmotions["train"][0], *basicmotions["val"], seed=1)
    b = dnas.inherited_accuracy(net, arch, basicmotions["train"][0], *basicmotions["val"], seed=1)
    assert a == b and 0.0 <= a <= 1.0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_derivation_candidates_fit_are_distinct_and_the_best_scored_is_trained(cost_model, basicmotions):
    from micronas.stages import search as stage_search

    table, _ = cost_model
    net = _factory()
    with torch.no_grad():  # a spread-out distribution so draws differ
        for pos in net.positions:
            pos.alpha.copy_(torch.linspace(0, -2, len(pos.choices)))
    budgets = Budgets.parse(latency="10ms", ram="64k")
    cfg = dnas.SearchConfig(candidates=4, finetune_epochs=0.25, seed=2)
    arch, pred, steps, record = stage_search._derive(net, table, budgets, cfg, basicmotions, lambda _: None)
    cands = dnas.derive_candidates(net, table, budgets, 4, seed=2)
    assert [r["arch"] for r in record] == [a.to_json() for a, _, _ in cands]  # seeded: the same draws
    assert len(cands) == 4 and len({a.dumps() for a, _, _ in cands}) == 4
    for a, p, _ in cands:
        assert predictor.predict(a, table).latency_ms == p.latency_ms <= 10 * (1 - dnas.PREDICTION_MARGIN)
        assert p.arena_bytes <= 64 * 1024
    for a, p, _ in cands[1:]:  # drawn ones use the budget as they are
        assert p.latency_ms >= dnas.FILLED * 10
    assert sum(r["chosen"] for r in record) == 1
    chosen = next(r for r in record if r["chosen"])
    assert chosen["arch"] == arch.to_json() and chosen["validation_score"] == max(r["validation_score"] for r in record)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert dnas.score_candidate(net, arch, basicmotions, cfg) == chosen["validation_score"]  # seeded
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the supernet is untouched


def test_a_resume_after_the_derivation_reads_its_journal_byte_for_byte(tmp_path, monkeypatch):
    """A search killed after its derivation (here: the final training fails) and resumed does not
    derive again (20-40 s): same search.json and searched_arch.json, byte for byte. A journal
    whose inputs differ (its key) is derived again."""
    from micronas.stages import search as search_stage
    from micronas_base.errors import ConfigError

    def stop(*args, **kwargs):
        raise ConfigError("stopped after the derivation")

    monkeypatch.setattr(search_stage, "train_export_profile", stop)
    run = tmp_path / "run"
    args = ("basicmotions", run, Budgets.parse(latency="20ms"))
    kw = {"cfg": dnas.SearchConfig(epochs=1, warmup_epochs=0), "final_epochs": 1, "threads": 1}
    with pytest.raises(ConfigError, match="stopped after"):
        api.search(*args, **kw)
    names = ("search.json", "searched_arch.json", dnas.DERIVATION_JOURNAL)
    first = {n: (run / n).read_bytes() for n in names}
    real = dnas.derive_and_repair
    monkeypatch.setattr(dnas, "derive_and_repair", lambda *a, **k: pytest.fail("derived again"))
    stages: list[str] = []
    with pytest.raises(ConfigError, match="stopped after"):
        api.search(*args, **kw, resume=True, on_stage=stages.append)
    assert {n: (run / n).read_bytes() for n in names} == first
    assert any(s.startswith("derivation: kept from derivation.json") for s in stages)

    # the key covers every input: other budgets (or a re-measured table) derive again
    journal = json.loads(first[dnas.DERIVATION_JOURNAL])
    table = predictor.find_table("nucleo-l552ze-q", 6, 100, 4)
    rd = RunDir.open(run)
    board = budget_mod.resolve_board(None)

    digest = json.loads(first["search.json"])["digest"]

    def key(latency: str, digest: str = digest) -> str:
        return dnas._derivation_key(rd, table, budget_mod.for_board(Budgets.parse(latency=latency), board), digest)

    assert key("20ms") == journal["key"] and key("21ms") != journal["key"]
    assert key("20ms", digest="other settings or data") != journal["key"]
    table.entries[next(iter(table.entries))] += 1.0
    assert key("20ms") != journal["key"]


def test_the_final_training_distils_by_default_only_when_it_is_short():
    from micronas.stages.search import DISTILL_MAX_WINDOW_EPOCHS, FINAL_DISTILL, final_distill

    assert final_distill(900, 120) == (FINAL_DISTILL, "distilled from a wider teacher trained first "
                                                      "(108,000 window-epochs)")  # the watch data
    assert final_distill(DISTILL_MAX_WINDOW_EPOCHS // 100, 100)[0] == FINAL_DISTILL
    weight, why = final_distill(7100, 120)  # issue 13's 7k-window data: 852,000
    assert weight == 0.0 and "852,000 window-epochs" in why and "--distill 0.5" in why


def _window_mean_data(path: Path, level_is_class: bool) -> Path:
    """120 windows of 3 channels x 32 in 3 classes: either the class is the windows' level (a
    constant per class, plus noise) or their shape (a sine per class) under a random level per
    window and channel (a sensor that sits differently every time)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    t = np.arange(32)
    if level_is_class:
        X = y[:, None, None] * 1.0 + rng.normal(0, 0.3, size=(120, 3, 32))
    else:
        X = np.sin(2 * np.pi * (y[:, None, None] + 1) * t / 32) + rng.normal(0, 4.0, size=(120, 3, 1))
        X = X + rng.normal(0, 0.1, size=(120, 3, 32))
    np.savez(path, X=X.astype(np.float32), y=np.array(["a", "b", "c"])[y])
    return path


@pytest.mark.parametrize("level_is_class, removed", [(True, False), (False, True)])
def test_the_window_mean_is_removed_only_when_validation_says_it_helps(tmp_path, monkeypatch, level_is_class, removed):
    """`--window-mean auto` trains the default network both ways and removes the mean only when
    the validation loss falls: kept where the level is the class, removed where a random level
    hides the class. The decision is journaled and reused; the test split is never read."""
    from micronas.data import arrays_for, load_dataset, make_split
    from micronas.stages import search as search_stage

    monkeypatch.setattr(search_stage, "WINDOW_MEAN_PROXY_STEPS", 200)
    ds = load_dataset(_window_mean_data(tmp_path / "d.npz", level_is_class))
    split = make_split(ds, seed=0)
    parts = arrays_for(ds, split)
    run = RunDir.create(tmp_path / "run")
    lines: list[str] = []
    d = search_stage.choose_window_mean(run, ds, split, parts, "auto", 0, 32, lines.append)
    assert d["remove"] is removed and d["setting"] == "auto" and len(lines) == 1
    assert (d["removed"]["val_loss"] < d["kept"]["val_loss"]) is removed
    assert f"{d['removed']['val_loss']:.4f} with each window's mean removed" in d["why"]
    assert (tmp_path / "run" / "window_mean" / "kept" / "model.pt").exists()
    monkeypatch.setattr("micronas.train.train", lambda *a, **k: pytest.fail("trained again"))
    assert search_stage.choose_window_mean(run, ds, split, parts, "auto", 0, 32, lines.append) == d and len(lines) == 1
    for setting in ("keep", "remove"):  # given: nothing trained
        assert search_stage.choose_window_mean(run, ds, split, parts, setting, 0, 32, lines.append)["remove"] is (
            setting == "remove")
    with pytest.raises(ConfigError, match="--window-mean 'maybe'"):
        search_stage.choose_window_mean(run, ds, split, parts, "maybe", 0, 32, lines.append)
    # a search checkpointed by a micronas from before the option resumes as it began: kept
    old = RunDir.create(tmp_path / "old")
    old.file("search_checkpoint.pt").write_bytes(b"")
    d = search_stage.choose_window_mean(old, ds, split, parts, "auto", 0, 32, lines.append)
    assert d["remove"] is False and "started before" in d["why"] and len(lines) == 1


@pytest.mark.parametrize("kept, removed, remove", [
    ((0.863, 0.464), (0.850, 0.419), True),   # watch seed 1: accuracy keeps by 2 windows, the loss removes
    ((1.0, 0.094), (1.0, 0.094), False),      # a tie keeps the windows as they are
    ((0.9, 0.30), (0.95, 0.31), False),       # higher accuracy alone does not remove
])
def test_the_window_mean_decision_follows_the_validation_loss(tmp_path, monkeypatch, kept, removed, remove):
    """The proxy's validation loss decides, not its accuracy (steps of about a point on a hundred
    windows, and ties); a tie keeps. The two proxy runs' scores are given, nothing is trained."""
    from micronas.data import arrays_for, load_dataset, make_split
    from micronas.stages import search as search_stage

    scores = iter([kept, removed])  # trained kept first, then removed

    def fake_train(run, factory, data, cfg, digest):
        acc, loss = next(scores)
        return {"best": {"val_acc": acc, "val_loss": loss}}

    monkeypatch.setattr("micronas.train.train", fake_train)
    ds = load_dataset(_window_mean_data(tmp_path / "d.npz", False))
    split = make_split(ds, seed=0)
    d = search_stage.choose_window_mean(RunDir.create(tmp_path / "run"), ds, split, arrays_for(ds, split), "auto",
                                        0, 32, lambda _: None)
    assert d["remove"] is remove
    assert d["kept"] == {"val_acc": kept[0], "val_loss": kept[1]}
    assert d["removed"] == {"val_acc": removed[0], "val_loss": removed[1]}


def test_a_single_candidate_says_why_and_is_not_called_a_choice(monkeypatch):
    """When no draw from the learned distribution fits at 90 % of the latency budget, the user is
    told that the most likely network (repaired or filled) is the result, not that one of one won."""
    from types import SimpleNamespace

    from micronas import search as dnas
    from micronas.stages import search as search_stage

    arch = SimpleNamespace(to_json=lambda: {"a": 1})
    monkeypatch.setattr(dnas, "derive_candidates", lambda *a, **k: [(arch, SimpleNamespace(latency_ms=21.0), [])])
    monkeypatch.setattr(search_stage, "map_tasks", lambda f, xs: [0.75 for _ in xs])
    lines: list[str] = []
    cfg = SimpleNamespace(candidates=8, seed=0, finetune_epochs=1)
    chosen, _, _, record = search_stage._derive(None, None, None, cfg, None, lines.append)
    assert chosen is arch and record == [{"arch": {"a": 1}, "predicted_latency_ms": 21.0, "validation_score": 0.75,
                                          "chosen": True}]
    assert any(s.startswith("only the most likely network is a candidate") and "90 %" in s for s in lines)
    assert "scoring 1 candidate on validation" in " ".join(lines)
    assert lines[-1] == "the candidate scores 75.0 % on validation"
    assert not any("chose candidate" in s for s in lines)
