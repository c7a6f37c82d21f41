"""Build the torch network an `Arch` describes (imports torch)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .arch import Arch
from .layers import global_average
from .registry import SEARCH_OPS


class Network(nn.Module):
    """Stem, cells, global average over time, one linear classifier.

    Input (B, C, T) float, standardised per channel; output (B, num_classes) logits.
    """

    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch
        blocks, c = [], arch.input_channels
        self.parents = nn.ParameterDict()  # KernelDNA parents, one per (in, out, kernel) shape
        for layer in arch.layers:
            op = SEARCH_OPS.get(layer.op)
            params = {"out": layer.out, "kernel": layer.kernel, "stride": layer.stride}
            if layer.experts is not None:
                params["experts"] = layer.experts
            blocks.append(op.build_sharing(c, self.parents, **params))
            c = layer.out if layer.out is not None else c
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Linear(c, arch.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, classes)
        x = self.blocks(x)  # (B, C_last, T_last)
        return self.classifier(global_average(x))  # (B, C_last) -> (B, classes)


def build(arch: Arch) -> Network:
    return Network(arch)


def for_export(model: Network) -> Network:
    """An eval-mode copy with every batch norm folded into its convolution."""
    m = copy.deepcopy(model).eval()
    for block in m.blocks:
        block.fold_batchnorm()
    return m
