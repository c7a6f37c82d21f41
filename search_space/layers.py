"""Torch modules for the search ops. Imported only through `SearchOp.build` (imports torch).

Every block maps (B, C_in, T) to (B, C_out, T'), T' = ceil(T / stride), and pads by kernel // 2
(so a stride-1 conv keeps T exactly, like TFLite 'SAME').

Each block trains with batch norm and has `fold_batchnorm()`, which folds the norm into the
preceding convolution in place so the exported graph holds only convolutions (the int8 runtime
then sees CONV_2D with a fused ReLU, not a separate scale-and-shift).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _fold_bn_into_conv(conv: nn.Conv1d, bn: nn.BatchNorm1d) -> None:
    """Fold an eval-mode batch norm that follows `conv` into its weight and bias, in place."""
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
        conv.weight.mul_(scale[:, None, None])  # (C_out, C_in/groups, K)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        new_bias = (bias - bn.running_mean) * scale + bn.bias
        conv.bias = nn.Parameter(new_bias)


class _Folded(nn.Module):
    """Shared fold logic: `self.pairs` lists (conv, bn attribute name) pairs to fold."""

    folded = False

    def fold_batchnorm(self) -> None:
        for conv, bn_name in self._fold_pairs():
            _fold_bn_into_conv(conv, getattr(self, bn_name))
        for _, bn_name in self._fold_pairs():
            setattr(self, bn_name, nn.Identity())
        self.folded = True

    def _fold_pairs(self):
        raise NotImplementedError


class ConvBlock(_Folded):
    """conv: Conv1d(k, stride) -> BN -> ReLU."""

    def __init__(self, in_channels: int, out: int, kernel: int, stride: int = 1, experts: None = None):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out, kernel, stride, padding=kernel // 2)
        self.bn = nn.BatchNorm1d(out)

    def _fold_pairs(self):
        return [(self.conv, "bn")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, T) -> (B, out, T')
        return F.relu(self.bn(self.conv(x)))


class DWSepBlock(_Folded):
    """dwsep: depthwise Conv1d(k, stride) -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU."""

    def __init__(self, in_channels: int, out: int, kernel: int, stride: int = 1, experts: None = None):
        super().__init__()
        self.dw = nn.Conv1d(in_channels, in_channels, kernel, stride, padding=kernel // 2, groups=in_channels)
        self.bn_dw = nn.BatchNorm1d(in_channels)
        self.pw = nn.Conv1d(in_channels, out, 1)
        self.bn_pw = nn.BatchNorm1d(out)

    def _fold_pairs(self):
        return [(self.dw, "bn_dw"), (self.pw, "bn_pw")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn_dw(self.dw(x)))  # (B, C_in, T')
        return F.relu(self.bn_pw(self.pw(x)))  # (B, out, T')


class SkipBlock(nn.Module):
    """skip: identity. Exports to nothing."""

    def __init__(self, in_channels: int, out: int | None = None, kernel: None = None, stride: int = 1,
                 experts: None = None):
        super().__init__()

    def fold_batchnorm(self) -> None:
        pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class DyConvBlock(_Folded):
    """dyconv: K expert convolutions mixed by an input-dependent attention (DY-Conv, CondConv).

    pi(x) = softmax(FC2(ReLU(FC1(mean_t(x))))), y = ReLU(BN(sum_k pi_k(x) * conv_k(x))).

    Written in the "split" form (K separate convs, each scaled by its own attention weight and
    summed), which exports to CONV_2D x K, MEAN, FULLY_CONNECTED, SOFTMAX, STRIDED_SLICE, MUL and
    ADD; the fused form adds SUM and TRANSPOSE, whose int8 kernels disagree between TFLite and
    TFLM (RECIPES.md). Because the attention weights sum to one, the batch norm folds into
    every expert exactly.
    """

    def __init__(self, in_channels: int, out: int, kernel: int, stride: int = 1, experts: int = 4):
        super().__init__()
        hidden = max(4, in_channels // 4)  # DY-Conv's reduction ratio 4, floored for thin layers
        self.experts = nn.ModuleList(
            nn.Conv1d(in_channels, out, kernel, stride, padding=kernel // 2) for _ in range(experts)
        )
        self.fc1 = nn.Linear(in_channels, hidden)
        self.fc2 = nn.Linear(hidden, experts)
        self.bn = nn.BatchNorm1d(out)

    def _fold_pairs(self):
        return [(conv, "bn") for conv in self.experts]

    def fold_batchnorm(self) -> None:
        # one BN folds into every expert; fold all before replacing it
        for conv in self.experts:
            _fold_bn_into_conv(conv, self.bn)
        self.bn = nn.Identity()
        self.folded = True

    def attention(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, T) -> (B, K)
        a = x.mean(dim=2)  # (B, C_in)
        return torch.softmax(self.fc2(F.relu(self.fc1(a))), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pi = self.attention(x)  # (B, K)
        y = None
        for k, conv in enumerate(self.experts):
            yk = conv(x) * pi[:, k : k + 1].unsqueeze(2)  # (B, out, T') * (B, 1, 1)
            y = yk if y is None else y + yk
        return F.relu(self.bn(y))
