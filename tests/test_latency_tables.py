"""Latency tables: keys, lowering vs export, table files, resumable builds, the predictor."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from latency_tables import build as tb
from latency_tables import predict as predictor
from latency_tables import table as table_mod
from latency_tables.keys import op_key, parse_key
from latency_tables.lowering import lower
from micronas import tables as campaigns
from micronas_base.errors import ConfigError
from search_space import arch as arch_mod
from search_space.registry import SEARCH_OPS
from search_space.space import DEFAULT_SPACE, Position, SearchSpace

from .conftest import toolchain

# A small space (a few dozen keys) so the tests measure a whole table in seconds.
TINY_SPACE = SearchSpace("tiny-test", stem=Position(1, (8,), ops=("conv",), kernels=(3,)),
                         cells=(Position(2, (8,), ops=("conv", "dyconv", "kdna"), kernels=(3,)),
                                Position(1, (12,), ops=("dwsep", "skip"), kernels=(5,))))


# ---- keys ------------------------------------------------------------------------------------

def test_every_key_of_the_space_round_trips():
    keys = tb.enumerate_keys(DEFAULT_SPACE, 6, 37, 3)
    assert len(keys) == len(set(keys)) > 100
    for key in keys:
        op, params = parse_key(key)
        assert op_key(op, params) == key


def test_key_takes_only_cost_fields_and_flattens_nested_structs():
    fields = {"shape": {"out_dims": [1, 1, 19, 12], "in1_strides": [0, 0, 12, 1], "in2_strides": [0, 0, 0, 0]},
              "input1_offset": 3, "output_multiplier": 1 << 30, "relu": 1}
    assert op_key("MUL", fields) == "MUL(out_dims=1x1x19x12,in1_strides=0x0x12x1,in2_strides=0x0x0x0,relu=1)"


@pytest.mark.parametrize("bad", ["CONV_2D", "CONV_2D(in_len=3)", "NOPE(size=3)", "LOGISTIC(size=x)",
                                 "LOGISTIC(size=3,extra=1)", "logistic(size=3)", ""])
def test_malformed_key_is_a_clear_error(bad):
    with pytest.raises(ConfigError) as e:
        parse_key(bad)
    assert repr(bad) in e.value.message or "NOPE" in e.value.message


# ---- lowering == export ------------------------------------------------------------------------

# Every search op of the registry, at every stride it allows, in three exported networks
# (a kdna pair of one shape checks the shared parent; skip after dyconv and the head after a
# dyconv check the global averages).
LOWERING_ARCHS = [
    {"stem": {"op": "conv", "out": 8, "kernel": 3, "stride": 1},
     "cells": [{"op": "dyconv", "out": 12, "kernel": 5, "stride": 2, "experts": 2},
               {"op": "kdna", "out": 12, "kernel": 3, "stride": 1}, {"op": "kdna", "out": 12, "kernel": 3, "stride": 1},
               {"op": "dwsep", "out": 16, "kernel": 7, "stride": 2}, {"op": "skip"}]},
    {"stem": {"op": "wconv", "out": 8, "kernel": 5, "stride": 1},
     "cells": [{"op": "kdna", "out": 16, "kernel": 5, "stride": 2}, {"op": "dyconv", "out": 16, "kernel": 3,
                                                                     "stride": 1, "experts": 4},
               {"op": "dwsep", "out": 16, "kernel": 3, "stride": 1}, {"op": "dyconv", "out": 16, "kernel": 7,
                                                                       "stride": 1, "experts": 2}]},
    {"stem": {"op": "conv", "out": 8, "kernel": 7, "stride": 2},
     "cells": [{"op": "wconv", "out": 12, "kernel": 3, "stride": 2}, {"op": "skip"},
               {"op": "conv", "out": 16, "kernel": 5, "stride": 1},
               {"op": "dyagg", "out": 12, "kernel": 5, "stride": 2, "experts": 4},
               {"op": "dyagg", "out": 12, "kernel": 3, "stride": 1, "experts": 2}]},
]


def _arch(d: dict) -> arch_mod.Arch:
    return arch_mod.from_json({"format": "micronas.arch/1", "input_channels": 5, "input_length": 37,
                               "num_classes": 3, **d})


def test_lowering_archs_cover_every_search_op_at_every_stride():
    seen = {(layer.op, layer.stride) for d in LOWERING_ARCHS for layer in _arch(d).layers}
    wanted = {(op.name, s) for op in SEARCH_OPS for s in op.strides}
    assert wanted <= seen, f"add these to LOWERING_ARCHS: {sorted(wanted - seen)}"


@pytest.mark.parametrize("op", SEARCH_OPS.names())
def test_every_search_op_has_a_lowering(op):
    from latency_tables.lowering import LOWERINGS

    assert op in LOWERINGS, f"search op {op!r} has no lowering: add one with @lowers({op!r}) in latency_tables/lowering.py"


def test_unknown_lowering_names_the_known_ones():
    from latency_tables.lowering import LOWERINGS

    with pytest.raises(ConfigError) as e:
        LOWERINGS.get("dyconf")
    assert "dyconv" in e.value.message and e.value.hint == "did you mean 'dyconv'?"


def test_kdna_layers_of_one_shape_share_one_parent_constant():
    """Two same-shape KernelDNA layers lower to one parent constant, keyed as the network keys it."""
    from latency_tables.lowering import lower
    from search_space.network import build

    arch = _arch({"stem": {"op": "conv", "out": 8, "kernel": 3, "stride": 1},
                  "cells": [{"op": "kdna", "out": 8, "kernel": 3, "stride": 1},
                            {"op": "kdna", "out": 8, "kernel": 3, "stride": 1},
                            {"op": "kdna", "out": 8, "kernel": 5, "stride": 1}]})
    g = lower(arch)
    filters = [g.tensors[op.inputs[1]].index for op in g.ops if op.name == "CONV_2D"]
    assert len(filters) == 4 and filters[1] == filters[2] and len(set(filters)) == 3
    assert sorted(build(arch).parents.keys()) == ["kdna_8x8x3", "kdna_8x8x5"]


def _export_tflite(arch: arch_mod.Arch, tmp: Path) -> bytes:
    import torch

    from firmware_export import convert
    from search_space import network

    torch.manual_seed(0)
    net = network.build(arch)
    with torch.no_grad():  # non-trivial attention scales and kdna filter scales
        for name, p in net.named_parameters():
            if name.endswith("log_scale"):
                p.uniform_(-0.5, 0.5)
    model = network.for_export(net)
    convert.export_onnx(model, (arch.input_channels, arch.input_length), tmp / "m.onnx", tmp / "log")
    calib = np.random.default_rng(0).standard_normal((16, arch.input_length, arch.input_channels)).astype(np.float32)
    convert.onnx_to_int8_tflite(tmp / "m.onnx", calib, tmp / "m.tflite", tmp / "log")
    return (tmp / "m.tflite").read_bytes()


@pytest.mark.parametrize("index", range(len(LOWERING_ARCHS)))
def test_lowering_equals_the_exported_model_op_by_op(index, tmp_path):
    """Every search op exports to int8 TFLite, runs bit-exact on the C runtime (vs TFLite Micro),
    and lowers to exactly the kernels and arena of its export."""
    from firmware_export.codegen import generate

    from .runtime_harness import compare

    arch = _arch(LOWERING_ARCHS[index])
    labels, mean, std = ("a", "b", "c"), (0.0,) * 5, (1.0,) * 5
    tflite = _export_tflite(arch, tmp_path)
    compare(tflite, n=300)  # raises unless the C runtime equals TFLite Micro on every window
    exported = generate(tflite, labels, mean, std)
    lowered = generate(lower(arch), labels, mean, std)
    assert [(la.op, op_key(la.op, la.fields)) for la in lowered.layers] == \
        [(la.op, op_key(la.op, la.fields)) for la in exported.layers]
    assert lowered.arena_bytes == exported.arena_bytes
    # every dyconv / kdna chain of the export is one fused call; no MUL or ADD is left over
    ops = [la.op for la in exported.layers]
    chains = sum(1 for layer in arch.layers if layer.op in ("dyconv", "kdna"))
    assert ops.count("FUSED_CONV_MUL_ADD") == chains and "MUL" not in ops and "ADD" not in ops
    # constants: an upper bound, exact but for small tables a model happens to repeat by value
    assert exported.flash_bytes_weights <= lowered.flash_bytes_weights <= 1.03 * exported.flash_bytes_weights
    if index == 0:  # two kdna children of one shape: the parent's int8 weights are emitted once
        w = [la.call.split(", ")[2] for la in exported.layers if la.op in ("CONV_2D", "FUSED_CONV_MUL_ADD")]
        assert len(w) - len(set(w)) == 1


def test_kdna_exports_its_relu_on_the_conv_so_the_int8_conv_output_has_no_negative_range(tmp_path):
    """KernelDNA computes att * ReLU(conv) (the same function as ReLU(att * conv), the attention
    being positive): the exported CONV_2D carries the ReLU, so its int8 output spans only what
    survives it (zero point -128), and the MUL needs none; the lowering says the same."""
    import torch

    from firmware_export.tflite_graph import read
    from latency_tables.lowering import lower
    from search_space import network

    arch = _arch({"stem": {"op": "conv", "out": 8, "kernel": 3, "stride": 1},
                  "cells": [{"op": "kdna", "out": 12, "kernel": 5, "stride": 2}]})
    exported = read(_export_tflite(arch, tmp_path))
    for g in (exported, lower(arch)):
        mul = next(op for op in g.ops if op.name == "MUL")
        conv = [op for op in g.ops if op.name == "CONV_2D"][-1]
        assert conv.options["fusedActivationFunction"] == 1 and mul.options["fusedActivationFunction"] == 0
    conv = [op for op in exported.ops if op.name == "CONV_2D"][-1]
    assert int(exported.tensors[conv.outputs[0]].zero_points[0]) == -128
    # and the float function is the one it replaced
    torch.manual_seed(1)
    block = network.build(arch).blocks[1]
    x = torch.randn(4, 8, 32)
    y = torch.nn.functional.conv1d(x, block.weight(), block.bias, block.stride, block.pad)
    torch.testing.assert_close(block(x), torch.relu(y * block.attention(x).unsqueeze(2)), rtol=0, atol=1e-6)


# ---- table files ---------------------------------------------------------------------------

def _table_dict(**changes) -> dict:
    d = {"format": table_mod.TABLE_FORMAT, "metadata": {k: "x" for k in table_mod.REQUIRED_METADATA},
         "overhead": 10.0, "entries": {"LOGISTIC(size=12)": 123.0}}
    d["metadata"].update(runtime_hash=table_mod.runtime_hash(), clock_hz=1000, input_channels=2,
                         input_length=8, num_classes=2, cflags=[], timer_kind="instructions")
    d.update(changes)
    return d


def test_table_file_round_trip(tmp_path):
    t = table_mod.from_json(_table_dict(), "t")
    t.save(tmp_path / "t.json")
    back = table_mod.load(tmp_path / "t.json")
    assert back.entries == {"LOGISTIC(size=12)": 123.0} and back.overhead == 10.0


@pytest.mark.parametrize("text, needle", [
    ('{"format": "micronas.latency_table/1", "metadata": {', "truncated or corrupt"),
    ("", "truncated or corrupt"),
    ("\x00\x01garbage", "truncated or corrupt"),
    ('{"format": "other/1"}', "expected 'micronas.latency_table/1'"),
    ("[1, 2]", "format"),
])
def test_corrupt_or_truncated_table_is_a_clear_error(tmp_path, text, needle):
    p = tmp_path / "t.json"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        table_mod.load(p)
    assert needle in e.value.message and str(p) in e.value.message


@pytest.mark.parametrize("change, needle", [
    ({"entries": {"LOGISTIC(size=12)": -1}}, "expected a count >= 0"),
    ({"entries": {"LOGISTIC(size=12)": "fast"}}, "expected a count >= 0"),
    ({"entries": {"CONV_2D(in_len=4)": 1.0}}, "expected CONV_2D("),
    ({"entries": [1, 2]}, "'entries'"),
    ({"metadata": {"board": "x"}}, "metadata lacks"),
    ({"overhead": "none"}, "overhead"),
])
def test_invalid_table_content_names_the_field(tmp_path, change, needle):
    with pytest.raises(ConfigError) as e:
        table_mod.from_json(_table_dict(**change), "t.json")
    assert needle in e.value.message


def _meta(**changes) -> dict:
    return _table_dict()["metadata"] | changes


GOOD_FLASH = {"base_bytes": 21000.0, "per_layer_bytes": 31.5}


@pytest.mark.parametrize("change, needles", [
    ({"overhead": -5.0}, ("overhead = -5.0", "expected a count >= 0")),
    ({"overhead": 124.0}, ("overhead = 124.0", "exceeds the costliest kernel", "LOGISTIC(size=12) = 123.0")),
    ({"overhead": True}, ("overhead = True", "expected a number")),
    ({"entries": {"LOGISTIC(size=12)": 0, "LOGISTIC(size=8)": 0.0}}, ("all 2 entries are 0",)),
    ({"metadata": _meta(clock_hz=0)}, ("clock_hz = 0", "expected a whole number of Hz > 0")),
    ({"metadata": _meta(clock_hz=-80_000_000)}, ("clock_hz = -80000000",)),
    ({"metadata": _meta(clock_hz=80e6)}, ("clock_hz = 80000000.0",)),
    ({"metadata": _meta(clock_hz="80 MHz")}, ("clock_hz = '80 MHz'",)),
    ({"metadata": _meta(flash_model=[1, 2])}, ("flash_model = [1, 2]", "base_bytes, per_layer_bytes")),
    ({"metadata": _meta(flash_model={"base_bytes": 1.0})}, ("flash_model lacks per_layer_bytes",)),
    ({"metadata": _meta(flash_model=GOOD_FLASH | {"per_layer_bytes": "31"})},
     ("flash_model.per_layer_bytes = '31'", "bytes >= 0")),
    ({"metadata": _meta(flash_model=GOOD_FLASH | {"base_bytes": -1})}, ("flash_model.base_bytes = -1",)),
])
def test_implausible_table_figures_are_refused_on_load(tmp_path, change, needles):
    p = tmp_path / "t.json"
    p.write_text(json.dumps(_table_dict(**change)))
    with pytest.raises(ConfigError) as e:
        table_mod.load(p)
    assert e.value.message.startswith(f"{p}: ")
    for needle in needles:
        assert needle in e.value.message
    assert "micronas tables build" in e.value.hint


def test_plausible_figures_still_load():
    t = table_mod.from_json(_table_dict(overhead=0.0, metadata=_meta(flash_model=GOOD_FLASH)), "t.json")
    assert t.overhead == 0.0 and t.flash_bytes(100, 2) == 21000.0 + 100 + 63.0
    assert table_mod.from_json(_table_dict(overhead=None), "t.json").overhead is None


def test_table_of_another_runtime_is_refused_unless_allowed(tmp_path, caplog):
    d = _table_dict()
    d["metadata"]["runtime_hash"] = "0" * 64
    d["metadata"]["command"] = "micronas tables build --target x"
    (tmp_path / "t.json").write_text(json.dumps(d))
    with pytest.raises(ConfigError) as e:
        table_mod.load(tmp_path / "t.json")
    assert "another version of the C runtime" in e.value.message and "micronas tables build" in e.value.hint
    assert table_mod.load(tmp_path / "t.json", allow_stale=True).entries
    assert "another version of the C runtime" in caplog.text


def test_missing_entries_name_the_keys_and_the_command():
    arch = DEFAULT_SPACE.sample(random.Random(3), 2, 8, 2)
    t = table_mod.from_json(_table_dict(), "t.json")
    t.metadata["command"] = "micronas tables build --target b --channels 2 --length 8 --classes 2"
    with pytest.raises(predictor.MissingEntriesError) as e:
        predictor.predict(arch, t)
    assert "CONV_2D(" in e.value.message and "lacks" in e.value.message
    assert "micronas tables build --target b" in e.value.hint
    # measured on demand: the callback fills the entries, then the prediction goes through
    seen = []

    def measure(keys):
        seen.extend(keys)
        t.entries.update({k: 100.0 for k in keys})

    p = predictor.predict(arch, t, measure_missing=measure)
    assert seen and p.latency_count == 100.0 * len(p.per_layer) + 10.0


# ---- building on the emulated core -----------------------------------------------------------

@pytest.fixture(scope="module")
def built_table(tmp_path_factory):
    toolchain("arm-none-eabi-gcc")
    toolchain("qemu-system-arm")
    out = tmp_path_factory.mktemp("tables") / "t.json"
    table = campaigns.build_table("nucleo-f446re", 4, 29, 3, out, space_name=TINY_SPACE)
    return out, table


def test_build_measures_every_key_with_metadata(built_table):
    out, table = built_table
    assert set(table.entries) == set(tb.enumerate_keys(TINY_SPACE, 4, 29, 3))
    m = table.metadata
    assert m["board"] == "nucleo-f446re" and m["core"] == "cortex-m4" and m["timer_kind"] == "instructions"
    assert m["runtime_hash"] == table_mod.runtime_hash() and "micronas tables build" in m["command"]
    assert all(v > 0 for v in table.entries.values())
    assert not out.with_name(out.name + ".partial.jsonl").exists()
    assert table_mod.load(out).entries == table.entries


def test_killed_build_resumes_to_the_same_table(built_table, tmp_path):
    _, full = built_table
    out = tmp_path / "t.json"

    def kill_after_five(done, total, key, elapsed):
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        campaigns.build_table("nucleo-f446re", 4, 29, 3, out, space_name=TINY_SPACE, progress=kill_after_five)
    journal = out.with_name(out.name + ".partial.jsonl")
    assert len(journal.read_text().splitlines()) == 1 + 5 and not out.exists()
    measured = []
    resumed = campaigns.build_table("nucleo-f446re", 4, 29, 3, out, space_name=TINY_SPACE,
                             progress=lambda done, total, key, el: measured.append(key))
    assert len(measured) == len(full.entries) - 5
    assert resumed.entries == full.entries and resumed.overhead == full.overhead


def test_journal_of_another_build_is_refused(tmp_path):
    j = tmp_path / "t.json.partial.jsonl"
    j.write_text(json.dumps({"journal": "x", "board": "other"}) + "\n")
    with pytest.raises(ConfigError) as e:
        campaigns.Journal(j, {"journal": "x", "board": "nucleo-f446re"})
    assert "another configuration" in e.value.message and "rm " in e.value.hint


def test_prediction_matches_the_emulated_core_within_one_percent(built_table, tmp_path):
    from firmware_export.codegen import generate, write
    from micronas.device import build_image
    from targets import boards, protocol, qemu

    _, table = built_table
    arch = tb.probe_arch(TINY_SPACE, 4, 29, 3, seed=7)
    p = predictor.predict(arch, table)
    gen = generate(lower(arch), ("a", "b", "c"), (0.0,) * 4, (1.0,) * 4)
    write(gen, tmp_path / "c")
    board = boards.get("nucleo-f446re")
    image = build_image(board, tmp_path / "c", tmp_path / "fw")
    with qemu.EmulatedBoard(board.qemu.machine, image.elf, tmp_path, icount_shift=qemu.ICOUNT_SHIFT) as emu:
        with protocol.DeviceClient.open(emu.url) as dev:
            hello = dev.hello()
            dev.set_input(np.random.default_rng(1).integers(-128, 128, hello.input_bytes, dtype=np.int8).tobytes())
            measured = qemu.instructions_from_ticks(dev.invoke(count=2).mean_ticks, hello.timer_hz, qemu.ICOUNT_SHIFT)
            arena = dev.get_memory().arena_high_water
    assert abs(p.latency_count - measured) / measured <= 0.01
    assert p.arena_bytes == arena == hello.arena_bytes
    assert abs(p.flash_bytes - image.flash_bytes) / image.flash_bytes <= 0.01


# ---- shipped tables ----------------------------------------------------------------------------

SHIPPED = sorted((Path(__file__).resolve().parents[1] / "latency_tables" / "tables").glob("*.json"))


def test_tables_are_shipped_for_three_boards_and_three_shapes():
    names = {p.name for p in SHIPPED}
    for board in ("nucleo-l552ze-q", "nucleo-f446re", "nucleo-h743zi"):
        for shape in ((6, 100, 4), (6, 128, 6), (9, 128, 6)):
            assert tb.default_table_name(board, *shape) in names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_table_is_current_and_complete(path):
    t = table_mod.load(path)  # refuses a table of another runtime
    m = t.metadata
    assert m["where"].startswith("emulated: QEMU") and m["timer_kind"] == "instructions"
    assert set(t.entries) == set(tb.enumerate_keys(DEFAULT_SPACE, m["input_channels"], m["input_length"],
                                                   m["num_classes"]))
    # copies in and out, calls and hooks: positive, a few thousand instructions (of millions)
    assert 0 < t.overhead < 5000 and all(0 < o < 5000 for o in m["overhead_per_probe"])
    assert m["command"].startswith("micronas tables build --target " + m["board"])
    assert predictor.find_table(m["board"], m["input_channels"], m["input_length"], m["num_classes"]).entries
    assert m["bench_hash"] == table_mod.bench_hash(t.entries)  # measured with this BENCH_OP firmware


def test_bench_hash_follows_the_requests_of_the_tables_keys(monkeypatch):
    """It changes with the keys and with an op's representative values, not with anything else."""
    from firmware_export.codegen.registry import get_runtime_op

    keys = ["SOFTMAX(outer=1,depth=4)", "LOGISTIC(size=32)"]
    h = table_mod.bench_hash(keys)
    assert h == table_mod.bench_hash(reversed(keys)) and h != table_mod.bench_hash(keys[:1])
    softmax = type(get_runtime_op("SOFTMAX"))
    values = softmax.bench_values
    monkeypatch.setattr(softmax, "bench_values", lambda self, cost: {**values(self, cost), "diff_min": -1})
    assert table_mod.bench_hash(keys) != h


def test_default_arch_is_predicted_from_the_shipped_table():
    arch = arch_mod.load("default")
    p = predictor.predict(arch, predictor.find_table("nucleo-l552ze-q", 6, 100, 4))
    assert p.unit == "instructions" and 3e5 < p.latency_count < 1e6  # its DY-Conv cell in aggregation form
    assert p.latency_ms == pytest.approx(p.latency_count / 110e6 * 1e3)


# ---- CLI --------------------------------------------------------------------------------------

def _cli(*args):
    from typer.testing import CliRunner

    from micronas.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_tables_show_summarises_a_table_and_lists_the_shipped_ones():
    r = _cli("tables", "show", str(SHIPPED[0]))
    assert r.exit_code == 0, r.output
    assert "CONV_2D" in r.output and "overhead" in r.output and "command: micronas tables build" in r.output
    r = _cli("tables", "show")
    assert r.exit_code == 0 and all(p.name in r.output for p in SHIPPED)


@pytest.mark.parametrize("args, needle", [
    (["--channels", "0", "--length", "10", "--classes", "2"], "--channels = 0"),
    (["--channels", "3", "--length", "4", "--classes", "2"], "--length = 4"),
    (["--target", "nucleo-f44re", "--channels", "3", "--length", "40", "--classes", "2"], "nucleo-f446re"),
])
def test_cli_tables_build_rejects_bad_input(args, needle, tmp_path):
    r = _cli("tables", "build", *args, "--out", str(tmp_path / "t.json"))
    assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output


def test_cli_tables_show_of_a_corrupt_file_exits_2(tmp_path):
    (tmp_path / "t.json").write_text('{"format": "micronas.lat')
    r = _cli("tables", "show", str(tmp_path / "t.json"))
    assert r.exit_code == 2 and "truncated or corrupt" in r.output


def test_missing_entries_are_measured_on_demand_into_a_user_table(built_table, tmp_path):
    out, full = built_table
    t = table_mod.load(out)
    t.path = tmp_path / "user.json"
    gone = sorted(t.entries)[:3]
    for k in gone:
        del t.entries[k]
    campaigns.measure_into(t, gone, space=TINY_SPACE)
    assert t.entries == full.entries  # the counts are deterministic: the same values as the build
    assert table_mod.load(tmp_path / "user.json").entries == full.entries


# ---- export writes the prediction ---------------------------------------------------------------

def test_export_metrics_say_why_there_is_no_prediction(exported_run):
    m = json.loads((exported_run / "metrics.json").read_text())
    assert m["predicted_latency_ms"] is None
    assert "no latency table" in m["predicted_latency_note"] and "micronas tables build" in m["predicted_latency_note"]


def test_export_predicts_from_a_table_and_matches_the_lowering(exported_run, tmp_path, monkeypatch):
    """The tiny test network, trained and exported, against a table of a space holding its layers."""
    import shutil

    from micronas import api

    toolchain("arm-none-eabi-gcc")
    toolchain("qemu-system-arm")
    space = SearchSpace("default", stem=Position(1, (8,), ops=("conv",), kernels=(3,)),
                        cells=(Position(2, (8,), ops=("dyconv",), kernels=(5,)),
                               Position(2, (12,), ops=("dwsep",), kernels=(3,)), Position(1, (12,), ops=("skip",))))
    tables = tmp_path / "tables"
    campaigns.build_table("nucleo-l552ze-q", 4, 37, 3, tables / tb.default_table_name("nucleo-l552ze-q", 4, 37, 3),
                   space_name=space)
    monkeypatch.setenv(predictor.TABLES_ENV, str(tables))
    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    m = api.export(run).to_json()  # raises if the lowering disagrees with the exported model
    assert m["predicted_for_board"] == "nucleo-l552ze-q" and m["predicted_latency_ms"] > 0
    assert m["predicted_arena_bytes"] == m["arena_bytes_planned"]
    assert "ELF" in m["predicted_flash_source"] and m["latency_table"].endswith("4ch-37-3cls.json")


@pytest.mark.slow
def test_tables_for_two_boards_build_in_parallel_to_the_sequential_figures(built_table, tmp_path):
    """`tables build --target B,C`: one build per board at once (Ray if installed, else processes);
    the counts are the emulated core's, so the parallel build equals the sequential one exactly."""
    from micronas.tables import build_tables_for

    out, sequential = built_table
    done = build_tables_for(["nucleo-f446re", "nucleo-l552ze-q"], "basicmotions", 4, 29, 3, out_dir=tmp_path,
                            space=TINY_SPACE)
    assert [(d.board, d.error) for d in done] == [("nucleo-f446re", None), ("nucleo-l552ze-q", None)]
    f446, l552 = (table_mod.load(Path(d.path)) for d in done)
    assert Path(done[0].path).name == "nucleo-f446re-4ch-29-3cls.json"
    assert f446.entries == sequential.entries and f446.overhead == sequential.overhead
    assert set(l552.entries) == set(sequential.entries) and l552.metadata["core"] == "cortex-m33"
    assert l552.entries != f446.entries  # a different core really was measured


def test_tables_for_several_boards_report_each_failure_and_keep_the_others(tmp_path, monkeypatch):
    from micronas import tables as campaigns_mod
    from micronas_base.errors import ToolchainError

    def fake_build(board, c, t, k, out, space_name="default", **_):  # the dispatch, not the measuring
        if board.name == "nucleo-h743zi":
            raise ToolchainError("qemu-system-arm crashed", "run it again")
        out.write_text(board.name)

    monkeypatch.setattr(campaigns_mod, "build_table", fake_build)
    done = campaigns_mod.build_tables_for(["nucleo-f446re", "nucleo-h743zi", "nucleo-l552ze-q"], "basicmotions",
                                          out_dir=tmp_path, executor="inproc")
    assert [(d.board, d.error, d.exit_code) for d in done] == [
        ("nucleo-f446re", None, 0), ("nucleo-h743zi", "qemu-system-arm crashed", 2), ("nucleo-l552ze-q", None, 0)]
    assert (tmp_path / "nucleo-l552ze-q-6ch-100-4cls.json").read_text() == "nucleo-l552ze-q"
    with pytest.raises(ConfigError, match="names a board twice"):
        campaigns_mod.build_tables_for(["nucleo-f446re", "nucleo-f446re"], "basicmotions", executor="inproc")


def test_cli_tables_build_for_several_boards_refuses_a_port():
    r = _cli("tables", "build", "--target", "nucleo-f446re,nucleo-l552ze-q", "--port", "loop://")
    assert r.exit_code == 2 and "a serial port is one board" in r.output and "Traceback" not in r.output
