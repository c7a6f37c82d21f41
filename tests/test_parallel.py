"""micronas.parallel: the same results in-process and as Ray tasks; a dying worker is retried once."""

from __future__ import annotations

import json

import os
import sys
from pathlib import Path

import pytest
import torch

from micronas import parallel
from micronas_base.errors import ToolchainError, UsageError

RAY_SKIP = "Ray is the scale extra: `make scale` or pip install 'micronas[scale]'"


ROOT = Path(__file__).resolve().parents[1]


def _start_ray(ray) -> None:
    """A local Ray of 2 CPUs whose workers can import this module's functions (`tests.…`): they
    put the driver's folder at init on their path, and the tests run in a scratch folder."""
    here = os.getcwd()
    os.chdir(ROOT)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    finally:
        os.chdir(here)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for the module (torch at one thread in every task)."""
    ray = pytest.importorskip("ray", reason=RAY_SKIP)
    _start_ray(ray)
    yield ray
    ray.shutdown()


def _spread_supernet():
    from search_space.space import DEFAULT_SPACE, position_choices
    from search_space.supernet import SuperNet

    torch.manual_seed(0)
    net = SuperNet(DEFAULT_SPACE, [position_choices(DEFAULT_SPACE, i) for i in range(len(DEFAULT_SPACE.positions))],
                   6, 100, 4)
    with torch.no_grad():  # a spread-out distribution so the drawn candidates differ
        for pos in net.positions:
            pos.alpha.copy_(torch.linspace(0, -2, len(pos.choices)))
    return net


def _derive(basicmotions):
    from latency_tables import predict as predictor
    from micronas import search as dnas
    from micronas.stages import search as stage_search
    from micronas.units import Budgets

    table = predictor.find_table("nucleo-l552ze-q", 6, 100, 4)
    cfg = dnas.SearchConfig(candidates=3, finetune_epochs=0.25, seed=1)
    torch.set_num_threads(1)  # as every Ray task does: the same reductions, the same bits
    return stage_search._derive(_spread_supernet(), table, Budgets.parse(latency="8ms", ram="64k"), cfg,
                                basicmotions, lambda _: None)


def test_candidate_scores_are_identical_in_process_and_as_ray_tasks(basicmotions, local_ray):
    assert parallel.ray_ready()  # "auto" now sends the fine-tunes to Ray
    on_ray = _derive(basicmotions)
    local_ray.shutdown()
    try:
        assert not parallel.ray_ready()
        here = _derive(basicmotions)
    finally:
        _start_ray(local_ray)
    assert [r["validation_score"] for r in on_ray[3]] == [r["validation_score"] for r in here[3]]
    # the candidates really are different networks (their scores may tie: BasicMotions' validation
    # split has a few windows)
    assert len({json.dumps(r["arch"], sort_keys=True) for r in here[3]}) == len(here[3]) > 1
    assert on_ray[0].to_json() == here[0].to_json()


def _square(x: int) -> int:
    return x * x


def test_map_tasks_keeps_the_order_on_every_executor(local_ray):
    items = list(range(7))
    want = [x * x for x in items]
    for how in ("inproc", "ray", "auto"):
        assert parallel.map_tasks(_square, items, executor=how) == want, how


def test_map_tasks_process_pool():
    assert parallel.map_tasks(_square, [3, 1, 2], executor="process", workers=2) == [9, 1, 4]


def _die_once(marker: str) -> int:
    """Kills its worker the first time (as an out-of-memory kill would), succeeds the second."""
    m = Path(marker)
    if not m.exists():
        m.write_text("died once")
        os._exit(1)
    return os.getpid()


def _die_always(_: str) -> int:
    os._exit(1)


def test_a_worker_that_dies_is_retried_once_then_the_failure_is_raised(local_ray, tmp_path):
    assert isinstance(parallel.map_tasks(_die_once, [str(tmp_path / "m")], executor="ray")[0], int)
    with pytest.raises(local_ray.exceptions.RayError):
        parallel.map_tasks(_die_always, ["x"], executor="ray")


def test_unknown_executor_and_missing_ray_are_clear(monkeypatch):
    with pytest.raises(UsageError, match="executor 'threads' is not one of auto, ray, process, inproc"):
        parallel.map_tasks(_square, [1], executor="threads")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    with pytest.raises(ToolchainError) as e:
        parallel.map_tasks(_square, [1], executor="ray")
    assert "pip install 'micronas[scale]'" in e.value.hint
