"""What a latency table for a search space and an input shape must hold: every runtime-op
configuration its networks can execute, and the probe networks whose firmware measures them.

Pure: nothing here compiles firmware, starts QEMU or talks serial. The measuring campaign
(`micronas tables build`, on-demand entries) is `micronas.tables`.
"""

from __future__ import annotations

import random

from search_space.arch import Arch
from search_space.registry import SEARCH_OPS
from search_space.space import SearchSpace

from .generate import generate, graph_keys, plan
from .lowering import lower_head, lower_layer
from .table import default_table_name

__all__ = ["default_table_name", "enumerate_keys", "generate", "graph_keys", "plan", "probe_arch"]


def enumerate_keys(space: SearchSpace, channels: int, length: int, classes: int) -> list[str]:
    """Every key a network of `space` for (channels, length) input and `classes` can execute.

    Args:
        space: The search space.
        channels: Input channels.
        length: Input length in samples.
        classes: Output classes.

    Returns:
        The keys, in first-seen order.
    """
    keys: dict[str, None] = {}
    for _pos, c, t, layer in space.layer_configs(channels, length):
        if SEARCH_OPS.get(layer.op).keeps_width:  # runs nothing
            continue
        for k in graph_keys(lower_layer(layer, c, t)):
            keys.setdefault(k)
    t_last = space.lengths(length)[-1]
    for c in sorted(space.input_widths(channels)[-1]):
        for k in graph_keys(lower_head(c, t_last, classes)):
            keys.setdefault(k)
    return list(keys)


def probe_arch(space: SearchSpace, channels: int, length: int, classes: int, seed: int) -> Arch:
    """The probe network of `seed`: a seeded sample of the space, whose firmware measures entries."""
    return space.sample(random.Random(seed), channels, length, classes)
