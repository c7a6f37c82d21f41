"""A search space sized to the budget: scaled widths and cells, the automatic rule on the shipped
tables, and (on the emulated core) that the scaled space really spans a budget the space as
defined cannot reach."""

from __future__ import annotations

import pytest

from latency_tables import costs as costs_mod
from latency_tables import predict as predictor
from micronas import space_scale
from micronas import tables
from micronas.units import Budgets
from search_space.space import DEFAULT_SPACE, resolve_space
from targets import boards

from .conftest import toolchain


def test_scaled_widths_are_multiples_of_four_and_the_name_reads_back():
    s = DEFAULT_SPACE.scaled(1.5)
    assert s.name == "default-w1.5"
    assert [p.widths for p in s.positions] == [(12, 24, 36), (24, 36, 48), (24, 36, 48), (36, 48, 72), (36, 48, 72)]
    assert [p.stride for p in s.positions] == [p.stride for p in DEFAULT_SPACE.positions]
    deep = DEFAULT_SPACE.scaled(4.0, 2)
    assert deep.name == "default-w4+2" and len(deep.cells) == len(DEFAULT_SPACE.cells) + 2
    assert deep.cells[-1].stride == 1 and "skip" in deep.cells[-1].ops and deep.cells[-1].widths == (96, 128, 192)
    assert DEFAULT_SPACE.scaled(0.25).stem.widths == (4, 8)  # 2 and 4 both round to the floor of 4
    assert DEFAULT_SPACE.scaled(1.0) is DEFAULT_SPACE
    for space in (s, deep, DEFAULT_SPACE):
        assert resolve_space(space.name) == space
    assert resolve_space("default-w7") is None and resolve_space("other-w2") is None
    with pytest.raises(ValueError, match="0.25"):
        DEFAULT_SPACE.scaled(0.3)


@pytest.mark.parametrize("text, expected", [("auto", None), ("2", (2.0, 0)), ("4+1", (4.0, 1)), ("0.375", (0.375, 0))])
def test_scale_option_parses(text, expected):
    assert space_scale.parse(text) == expected


@pytest.mark.parametrize("text", ["7", "2+3", "x", "1.5+", "-1"])
def test_bad_scale_names_the_value_and_the_ladder(text):
    with pytest.raises(ValueError) as e:
        space_scale.parse(text)
    assert f"--scale {text!r}" in str(e.value) and "0.25, 0.375, 0.5" in str(e.value)


# (board, data shape, latency, RAM) -> the scale the rule picks on the shipped tables
CASES = [
    ("nucleo-l552ze-q", (6, 100, 4), "50ms", "256k", "1.5"),  # the demo
    ("nucleo-l552ze-q", (6, 128, 6), "20ms", "256k", "1.25"),
    ("nucleo-l552ze-q", (6, 128, 6), "1ms", "8k", "0.25"),
    # the space as defined spans it (its p25 is 5.03 ms there since the tables were rebuilt for the
    # one-step requantisation of every scale, so 5 ms now gives x0.75)
    ("nucleo-f446re", (9, 128, 6), "6ms", "64k", "1"),
    ("nucleo-h743zi", (6, 128, 6), "50ms", "256k", "2"),  # the faster core: wider
    # capped by what the probe firmware can measure (dyagg's aggregation FC holds K x a conv's
    # weights in its RAM scratch): widths stop at x1.5 on the M33 and x2 on the M7, then depth
    ("nucleo-l552ze-q", (6, 128, 6), "200ms", "256k", "1.5"),
    ("nucleo-l552ze-q", (6, 128, 6), "1s", "1M", "1.5+2"),
    ("nucleo-h743zi", (6, 128, 6), "1s", "1M", "2+2"),
]


@pytest.mark.parametrize("board, latency, wider, unreachable", [("nucleo-l552ze-q", "50ms", "2", False),
                                                                 ("nucleo-l552ze-q", "200ms", "2", True),
                                                                 ("nucleo-h743zi", "1s", "2.5", True)])
def test_a_capped_scale_says_what_caps_it(board, latency, wider, unreachable):
    """A budget that asks for a wider space than fits: the reason names the next multiplier and
    why it does not fit (here the probe firmware's scratch), and says when even the largest
    network stays under the budget (at 50 ms on the default board it does not: 65.7 ms)."""
    table = predictor.find_table(board, 6, 128, 6)
    cm = costs_mod.build_costs(DEFAULT_SPACE, table)
    scratch = tables.bench_scratch_bytes(boards.get(board))
    s = space_scale.choose(DEFAULT_SPACE, table, cm, Budgets.parse(latency, "256k"), scratch_bytes=scratch)
    need = space_scale.largest_kernel_bytes(DEFAULT_SPACE.scaled(float(wider), s.extra_cells), 6, 128)
    assert need > scratch
    assert (f"; x{wider} would suit the budget better but does not fit: its widest layer ({need:,} B of weights "
            f"and activations) would not fit the {scratch:,} B the board's probe firmware has to measure it"
            ) in s.reason
    assert ("stays under the budget, so the network found will not use all of it" in s.reason) == unreachable


def test_a_flash_budget_that_caps_the_scale_is_named():
    """Without the probe's limit (a board measured elsewhere), a small flash budget caps the
    width: the reason says it is the weights against half the flash budget."""
    table = predictor.find_table("nucleo-h743zi", 6, 128, 6)
    cm = costs_mod.build_costs(DEFAULT_SPACE, table)
    s = space_scale.choose(DEFAULT_SPACE, table, cm, Budgets.parse("1s", "512k", "256k"))
    assert s.multiplier < 4
    wider = min(x for x in space_scale.WIDTH_MULTIPLIERS if x > s.multiplier)
    assert f"; x{wider:g} would suit the budget better but does not fit: its networks' weights (about " in s.reason
    assert "B, p95) would take half the 262,144 B flash budget or more" in s.reason
    assert "probe firmware" not in s.reason and "RAM budget" not in s.reason


def test_a_scale_that_spans_the_budget_does_not_say_it_is_capped():
    table = predictor.find_table("nucleo-l552ze-q", 6, 128, 6)
    cm = costs_mod.build_costs(DEFAULT_SPACE, table)
    scratch = tables.bench_scratch_bytes(boards.get("nucleo-l552ze-q"))
    s = space_scale.choose(DEFAULT_SPACE, table, cm, Budgets.parse("20ms", "256k"), scratch_bytes=scratch)
    assert s.label == "1.25" and "does not fit" not in s.reason and "stays under" not in s.reason


@pytest.mark.parametrize("board, shape, latency, ram, label", CASES)
def test_the_rule_on_the_shipped_tables(board, shape, latency, ram, label):
    table = predictor.find_table(board, *shape)
    cm = costs_mod.build_costs(DEFAULT_SPACE, table)
    scratch = tables.bench_scratch_bytes(boards.get(board))
    s = space_scale.choose(DEFAULT_SPACE, table, cm, Budgets.parse(latency, ram), scratch_bytes=scratch)
    assert s.label == label, s.reason
    assert space_scale.largest_kernel_bytes(DEFAULT_SPACE.scaled(s.multiplier, s.extra_cells), *shape[:2]) <= scratch
    assert latency.removesuffix("ms").removesuffix("s") in s.reason and "p25" in s.reason


def test_no_latency_budget_or_a_given_scale_is_taken_as_is():
    table = predictor.find_table("nucleo-l552ze-q", 6, 100, 4)
    cm = costs_mod.build_costs(DEFAULT_SPACE, table)
    assert space_scale.choose(DEFAULT_SPACE, table, cm, Budgets.parse(None, "256k")).label == "1"
    assert space_scale.choose(DEFAULT_SPACE, table, cm, Budgets.parse("1ms", None), (3.0, 1)).label == "3+1"


def test_a_small_ram_budget_caps_the_widths():
    table = predictor.find_table("nucleo-h743zi", 6, 128, 6)
    cm = costs_mod.build_costs(DEFAULT_SPACE, table)
    wide = space_scale.choose(DEFAULT_SPACE, table, cm, Budgets.parse("200ms", "256k"))
    capped = space_scale.choose(DEFAULT_SPACE, table, cm, Budgets.parse("200ms", "16k"))
    assert wide.multiplier == 4.0 and capped.multiplier < wide.multiplier


def test_stepping_down_drops_cells_first_then_widths():
    s = space_scale.Scale(4.0, 2, "r")
    labels = []
    while s is not None:
        labels.append(s.label)
        s = space_scale.smaller(s)
    assert labels == ["4+2", "4+1", "4", "3", "2.5", "2", "1.5", "1.25", "1", "0.75", "0.5", "0.375", "0.25"]


def _largest_ms(cm) -> float:
    """The latency of the most expensive network of a cost model's space (per-layer maxima: the
    widest, most expensive choice everywhere is a network of the space)."""
    count = sum(float(pc.latency.max()) for pc in cm.positions) + float(cm.head_latency.max()) + cm.overhead
    return cm.count_to_ms(count)


def test_the_scaled_space_reaches_far_past_the_defined_one(tmp_path, monkeypatch):
    """On the emulated M7 at 50 ms the space as defined tops out far below the budget; the chosen
    scale (x2, the widest the probe firmware can measure there; its new table entries measured on
    the emulated core) reaches about four times further, and its cheapest network stays cheap."""
    toolchain("arm-none-eabi-gcc")
    toolchain("qemu-system-arm")
    monkeypatch.chdir(tmp_path)  # the measured entries go to ./micronas-tables
    table = predictor.find_table("nucleo-h743zi", 6, 128, 6)
    budgets = Budgets.parse("50ms", "256k")
    base = costs_mod.build_costs(DEFAULT_SPACE, table)
    assert _largest_ms(base) < 0.2 * 50
    s = space_scale.choose(DEFAULT_SPACE, table, base, budgets,
                           scratch_bytes=tables.bench_scratch_bytes(boards.get("nucleo-h743zi")))
    assert s.label == "2"
    space = DEFAULT_SPACE.scaled(s.multiplier, s.extra_cells)
    cm = costs_mod.build_costs(space, table, measure_missing=lambda keys: tables.measure_into(table, keys))
    assert (tmp_path / "micronas-tables" / "nucleo-h743zi-6ch-128-6cls.json").exists()
    assert _largest_ms(cm) > 3.5 * _largest_ms(base)
    cheapest = predictor.predict(costs_mod.cheapest_network(cm, "latency", 6, 128, 6), table)
    assert cheapest.latency_ms < 0.2 * 50 and cheapest.missing == []


def test_without_an_emulator_an_infeasible_budget_is_a_budget_error_not_a_loop(tmp_path, monkeypatch):
    """The narrowest scale's entries cannot be measured (no emulator): the space as defined is
    searched instead, and a budget it cannot meet is the usual BudgetError (no stepping down into
    scales that cannot be measured either)."""
    from micronas.search import SearchConfig
    from micronas.stages.search import _sized_space
    from micronas_base.errors import BudgetError

    monkeypatch.chdir(tmp_path)  # only the shipped table: no entries measured by an earlier test
    monkeypatch.delenv("MICRONAS_TABLES", raising=False)
    table = predictor.find_table("nucleo-l552ze-q", 6, 100, 4)
    assert table.path.parent.name == "tables"
    lines = []
    with pytest.raises(BudgetError):
        _sized_space(table, Budgets.parse("1us", "256k"), boards.get("nucleo-l552ze-q"), SearchConfig(), None,
                     lines.append)
    assert any("cannot measure" in line for line in lines)
