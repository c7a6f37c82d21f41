"""Op registry, arch.json encoding and the torch layers, parametrised over the registry."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from micronas_base.errors import ConfigError
from search_space import arch as A
from search_space.network import build, for_export
from search_space.registry import SEARCH_OPS

from .conftest import TINY_ARCH


def test_unknown_names_list_known_and_closest():
    with pytest.raises(ConfigError) as e:
        SEARCH_OPS.get("dyconf")
    assert "dyconv" in e.value.message and "conv, dwsep" in e.value.message.replace("'", "")
    assert e.value.hint == "did you mean 'dyconv'?"


def _one_layer_arch(op):
    spec = {"op": op.name}
    if not op.keeps_width:
        spec["out"] = 12
    if op.kernels:
        spec["kernel"] = op.kernels[-1]
    if op.experts:
        spec["experts"] = op.experts[0]
    stride = max(op.strides)
    spec["stride"] = stride
    return A.from_json({**TINY_ARCH, "cells": [spec]}), stride


@pytest.mark.parametrize("op", list(SEARCH_OPS), ids=SEARCH_OPS.names())
def test_every_op_builds_with_the_shape_arch_predicts(op):
    arch, _ = _one_layer_arch(op)
    torch.manual_seed(0)
    net = build(arch).eval()
    x = torch.randn(3, arch.input_channels, arch.input_length)
    feats = net.blocks(x)
    assert tuple(feats.shape) == (3, arch.widths()[-1], arch.lengths()[-1])
    assert tuple(net(x).shape) == (3, arch.num_classes)


@pytest.mark.parametrize("op", list(SEARCH_OPS), ids=SEARCH_OPS.names())
def test_batchnorm_folding_preserves_outputs(op):
    arch, _ = _one_layer_arch(op)
    torch.manual_seed(1)
    net = build(arch)
    net.train()
    for _ in range(3):  # give the norms non-trivial running statistics
        net(torch.randn(8, arch.input_channels, arch.input_length) * 3 + 1)
    net.eval()
    x = torch.randn(5, arch.input_channels, arch.input_length)
    folded = for_export(net)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in folded.modules())
    torch.testing.assert_close(folded(x), net(x), rtol=1e-5, atol=1e-5)


def test_the_space_offers_every_registered_op_but_the_split_dyconv():
    from search_space.space import ALL_OPS, DEFAULT_OPS, DEFAULT_SPACE, position_choices

    assert ALL_OPS == tuple(SEARCH_OPS.names()) == ("conv", "wconv", "dwsep", "dyconv", "kdna", "skip", "dyagg")
    assert DEFAULT_OPS == ("conv", "wconv", "dwsep", "kdna", "skip", "dyagg")
    # conv is trained as wconv where both are offered (its registry entry says so)
    assert {c.op for c in position_choices(DEFAULT_SPACE, 2)} == {"wconv", "dwsep", "kdna", "skip", "dyagg"}
    assert {c.op for c in position_choices(DEFAULT_SPACE, 0)} == {"conv"}


def test_default_arch_round_trips():
    arch = A.load("default")
    assert A.from_json(json.loads(arch.dumps())) == arch
    assert arch.widths() == [16, 24, 32, 32] and arch.lengths() == [100, 50, 25, 25]
    assert arch.with_data_shape(9, 128, 6).lengths() == [128, 64, 32, 32]


def _bad(path, value):
    d = copy.deepcopy(TINY_ARCH)
    target = d
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return d


@pytest.mark.parametrize("d, fragment", [
    (_bad(["format"], "micronas.arch/0"), "format = 'micronas.arch/0'"),
    (_bad(["stem", "op"], "convv"), "unknown search op 'convv'"),
    (_bad(["stem", "kernel"], 4), "stem.kernel = 4; op 'conv' expects one of 3, 5, 7"),
    (_bad(["stem", "stride"], 3), "stem.stride = 3"),
    (_bad(["cells", 0, "experts"], 3), "cells[0].experts = 3; op 'dyconv' expects one of 2, 4"),
    (_bad(["cells", 0, "experts"], KeyError), "cells[0].experts = None"),
    (_bad(["cells", 1, "out"], KeyError), "cells[1]: op 'dwsep' needs 'out'"),
    (_bad(["cells", 1, "out"], 0), "cells[1].out = 0"),
    (_bad(["cells", 1, "out"], "12"), "cells[1].out = '12'; expected an integer"),
    (_bad(["cells", 2, "out"], 99), "keeps the width (12 channels) but out = 99"),
    (_bad(["cells", 1, "colour"], "red"), "unknown keys ['colour']"),
    (_bad(["num_classes"], 1), "num_classes = 1"),
    (_bad(["stem"], {"op": "skip"}), "stem op 'skip' is not allowed"),
    (_bad(["cells"], "conv"), "'cells' = 'conv'"),
])
def test_invalid_arch_is_a_clear_error(d, fragment):
    with pytest.raises(ConfigError) as e:
        A.from_json(d, "my_arch.json")
    assert fragment in str(e.value)
    assert str(e.value).startswith("my_arch.json")
    assert e.value.exit_code == 2


def test_arch_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        A.load(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        A.load(tmp_path / "broken.json")
    with pytest.raises(ConfigError, match="shipped: default"):
        A.load("tiny")


def test_sampler_draws_valid_networks_of_every_op_reproducibly():
    import random

    from search_space.space import DEFAULT_SPACE

    archs = [DEFAULT_SPACE.sample(random.Random(s), 6, 100, 4) for s in range(300)]
    assert archs[:5] == [DEFAULT_SPACE.sample(random.Random(s), 6, 100, 4) for s in range(5)]
    seen = {layer.op for a in archs for layer in a.cells}
    assert seen == set(DEFAULT_SPACE.cells[0].ops)  # every op of the space, skip included
    for a in archs:
        assert A.from_json(a.to_json()) == a  # valid against the registry
        assert [layer.stride for layer in a.layers] == [p.stride for p in DEFAULT_SPACE.positions]
        assert all(a.cells[i].op != "skip" for i, p in enumerate(DEFAULT_SPACE.cells) if p.stride == 2)
    assert len(set(DEFAULT_SPACE.layer_configs(6, 100))) == len(list(DEFAULT_SPACE.layer_configs(6, 100)))
