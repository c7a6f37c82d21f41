"""Augmentation of IMU windows for training, drawn from the training loop's seeded generator.

Every transform works on a batch of standardised windows (B, C, T) and draws its randomness
from the `torch.Generator` that also orders the batches, so a seed fixes the whole run and a
resumed run (which restores that generator) continues with the same draws.

Transforms (names as in `--augment`):

* ``jitter``: additive Gaussian noise, sigma 0.05 (in standard deviations of each channel);
* ``scale``: each window's channels multiplied by a factor drawn from N(1, 0.1);
* ``rotate``: each group of three consecutive channels (x, y, z of one sensor) rotated by a
  random rotation of at most 15 degrees about a random axis — the sensor sitting differently on
  another wrist; only when the channel count is a multiple of 3;
* ``shift``: the window moved by up to 1/8 of its length either way, edges repeated — the
  segmentation's phase;
* ``warp``: the window stretched or squeezed in time about its centre by a factor drawn
  log-uniformly from [1/1.25, 1.25] (linear interpolation, edges repeated) — the same movement
  done faster or slower by another person;
* ``mixup``: pairs of windows blended with a weight from Beta(0.2, 0.2), labels blended alike
  (handled by the loss, see `mix`).
"""

from __future__ import annotations

import math

from micronas_base.errors import UsageError

TRANSFORMS = ("jitter", "scale", "rotate", "shift", "warp", "mixup")
JITTER_SIGMA = 0.05
SCALE_SIGMA = 0.1
MAX_ROTATION_DEG = 15.0
MAX_SHIFT_FRACTION = 1 / 8
MAX_WARP = 1.25
MIXUP_ALPHA = 0.2


def parse(spec: str | None) -> tuple[str, ...]:
    """`--augment` text -> transform names in canonical order.

    Args:
        spec: Comma-separated names from TRANSFORMS, "none" or "" (nothing).

    Raises:
        UsageError: an unknown name.
    """
    if spec is None or spec.strip().lower() in ("", "none"):
        return ()
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in TRANSFORMS]
    if bad:
        raise UsageError(f"--augment {spec!r}: unknown transform {', '.join(map(repr, bad))}",
                         f"use a comma-separated list of {', '.join(TRANSFORMS)}, or none")
    return tuple(t for t in TRANSFORMS if t in names)


def _rotations(n: int, gen, dtype):
    """n random rotation matrices (n, 3, 3), angle uniform in [-MAX, MAX] about a uniform axis."""
    import torch

    axis = torch.randn(n, 3, generator=gen, dtype=dtype)
    axis = axis / axis.norm(dim=1, keepdim=True).clamp_min(1e-12)
    angle = (torch.rand(n, generator=gen, dtype=dtype) * 2 - 1) * math.radians(MAX_ROTATION_DEG)
    x, y, z = axis.unbind(1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], 1).reshape(n, 3, 3)  # cross-product matrix
    eye = torch.eye(3, dtype=dtype).expand(n, 3, 3)
    s, c = angle.sin()[:, None, None], angle.cos()[:, None, None]
    return eye + s * k + (1 - c) * (k @ k)  # Rodrigues


def _warp(x, gen):
    """Each window resampled at centre + (t - centre) * f, f log-uniform in [1/MAX_WARP, MAX_WARP]."""
    import torch

    b, c, t = x.shape
    f = torch.exp((torch.rand(b, 1, 1, generator=gen, dtype=x.dtype) * 2 - 1) * math.log(MAX_WARP))
    centre = (t - 1) / 2
    pos = ((torch.arange(t, dtype=x.dtype).reshape(1, 1, t) - centre) * f + centre).clamp(0, t - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=t - 1)
    w = pos - lo.to(x.dtype)
    return x.gather(2, lo.expand(b, c, t)) * (1 - w) + x.gather(2, hi.expand(b, c, t)) * w


def apply(x, transforms: tuple[str, ...], gen):
    """The per-window transforms of `transforms` (all but mixup) applied to a batch.

    Args:
        x: (B, C, T) float tensor, standardised.
        transforms: Names from TRANSFORMS.
        gen: The torch.Generator the draws come from.

    Returns:
        A new tensor of the same shape (x itself when nothing applies).
    """
    import torch

    b, c, t = x.shape
    if "rotate" in transforms and c % 3 == 0:
        r = _rotations(b * (c // 3), gen, x.dtype).reshape(b, c // 3, 3, 3)
        x = torch.einsum("bgij,bgjt->bgit", r, x.reshape(b, c // 3, 3, t)).reshape(b, c, t)
    if "scale" in transforms:
        x = x * (1 + SCALE_SIGMA * torch.randn(b, c, 1, generator=gen, dtype=x.dtype))
    if "warp" in transforms:
        x = _warp(x, gen)
    if "shift" in transforms:
        m = max(1, int(t * MAX_SHIFT_FRACTION))
        s = torch.randint(-m, m + 1, (b, 1, 1), generator=gen)
        idx = (torch.arange(t).reshape(1, 1, t) - s).clamp(0, t - 1).expand(b, c, t)
        x = x.gather(2, idx)
    if "jitter" in transforms:
        x = x + JITTER_SIGMA * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    return x


def mix(x, gen):
    """Mixup: (blended x, permutation, weight) — the loss is w * CE(y) + (1 - w) * CE(y[perm])."""
    import torch

    # Beta(a, a) by Johnk's method from the seeded generator (torch.distributions takes none)
    u = torch.rand(2, generator=gen, dtype=torch.float64)
    a = MIXUP_ALPHA
    while True:
        p, q = float(u[0]) ** (1 / a), float(u[1]) ** (1 / a)
        if p + q <= 1 and p + q > 0:
            w = p / (p + q)
            break
        u = torch.rand(2, generator=gen, dtype=torch.float64)
    w = max(w, 1 - w)  # the first window dominates: its label stays the main one
    perm = torch.randperm(x.shape[0], generator=gen)
    return w * x + (1 - w) * x[perm], perm, w
