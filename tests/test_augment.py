"""Augmentation of IMU windows: seeded, reproducible, and doing what each transform says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from micronas import augment
from micronas_base.errors import UsageError


def _batch(seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((8, 6, 64)).astype(np.float32))


def test_parse_orders_names_and_refuses_unknown_ones():
    assert augment.parse("shift, jitter") == ("jitter", "shift")
    assert augment.parse("none") == () and augment.parse(None) == () and augment.parse("") == ()
    with pytest.raises(UsageError) as e:
        augment.parse("jitter,flip")
    assert "'flip'" in str(e.value) and "rotate" in e.value.hint


@pytest.mark.parametrize("names", [("jitter",), ("scale",), ("rotate",), ("shift",), ("warp",), augment.TRANSFORMS[:5]])
def test_same_seed_same_draws_other_seed_other_draws(names):
    x = _batch()
    a = augment.apply(x, names, torch.Generator().manual_seed(5))
    b = augment.apply(x, names, torch.Generator().manual_seed(5))
    c = augment.apply(x, names, torch.Generator().manual_seed(6))
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, x)


def test_rotation_keeps_each_sensor_vector_length_and_turns_it_at_most_15_degrees():
    x = _batch()
    r = augment.apply(x, ("rotate",), torch.Generator().manual_seed(1))
    for g in (slice(0, 3), slice(3, 6)):  # accelerometer xyz, gyroscope xyz
        n0, n1 = x[:, g].norm(dim=1), r[:, g].norm(dim=1)
        assert torch.allclose(n0, n1, rtol=1e-5, atol=1e-5)
        cos = (x[:, g] * r[:, g]).sum(1) / (n0 * n1)
        assert float(cos.min()) >= np.cos(np.radians(15.0)) - 1e-5
    # one rotation per window and sensor: the same for every time step
    y = augment.apply(x[:, :, :1].expand(8, 6, 64).contiguous(), ("rotate",), torch.Generator().manual_seed(1))
    assert torch.allclose(y, y[:, :, :1].expand(8, 6, 64), atol=1e-6)


def test_rotation_leaves_channel_counts_other_than_multiples_of_3_alone():
    x = _batch()[:, :4]
    assert torch.equal(augment.apply(x, ("rotate",), torch.Generator().manual_seed(0)), x)


def test_shift_moves_the_window_and_repeats_its_edge():
    x = torch.arange(64, dtype=torch.float32).reshape(1, 1, 64).expand(16, 2, 64).contiguous()
    s = augment.apply(x, ("shift",), torch.Generator().manual_seed(0))
    for row in s[:, 0]:
        d = row - x[0, 0]
        moved = -int(round(float(torch.median(d))))  # value at t is x[t - moved]
        assert abs(moved) <= 64 // 8
        if moved > 0:  # moved right: the first sample repeated at the start
            assert torch.all(row[:moved + 1] == 0)
        elif moved < 0:
            assert torch.all(row[moved - 1:] == 63)


def test_warp_stretches_time_about_the_centre_by_at_most_1_25_and_repeats_the_edges():
    t = 65
    x = torch.arange(t, dtype=torch.float64).reshape(1, 1, t).expand(32, 2, t).contiguous()
    w = augment.apply(x, ("warp",), torch.Generator().manual_seed(0))
    factors = []
    for row in w[:, 0]:
        assert row[32] == 32  # the centre stays
        inner = (row > 0) & (row < t - 1)  # away from the repeated edges a ramp of slope f
        f = (row[inner][-1] - row[inner][0]) / (int(inner.nonzero()[-1]) - int(inner.nonzero()[0]))
        assert torch.allclose(row[inner][1:] - row[inner][:-1], f.expand(int(inner.sum()) - 1), atol=1e-9)
        factors.append(float(f))
        assert float(row.min()) >= 0 and float(row.max()) <= t - 1
    assert 1 / 1.25 - 1e-9 <= min(factors) < 0.95 and 1.05 < max(factors) <= 1.25 + 1e-9
    assert torch.equal(w[:, 0], w[:, 1])  # one factor per window, every channel alike


def test_scale_multiplies_each_channel_of_a_window_by_one_factor():
    x = _batch().abs() + 1
    s = augment.apply(x, ("scale",), torch.Generator().manual_seed(2))
    ratio = s / x
    assert torch.allclose(ratio, ratio[:, :, :1].expand_as(ratio), rtol=1e-5)
    assert 0.5 < float(ratio.min()) and float(ratio.max()) < 1.5


def test_mixup_weight_favours_the_first_window_and_is_seeded():
    x = _batch()
    m1, p1, w1 = augment.mix(x, torch.Generator().manual_seed(3))
    m2, p2, w2 = augment.mix(x, torch.Generator().manual_seed(3))
    assert w1 == w2 and torch.equal(p1, p2) and torch.equal(m1, m2)
    assert 0.5 <= w1 <= 1.0
    assert torch.allclose(m1, w1 * x + (1 - w1) * x[p1])
