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


def global_average(x: torch.Tensor) -> torch.Tensor:
    """Mean over time, (B, C, T) -> (B, C).

    Written as an average pool over the whole window, not `x.mean(dim=2)`: onnx2tf 1.29.24 lowers
    it to AVERAGE_POOL_2D in the channel-last layout whatever produced `x`, whereas a ReduceMean
    after an ADD of attention-scaled experts gets a TRANSPOSE (no int8 runtime kernel) inserted.
    """
    return F.avg_pool1d(x, x.shape[2]).flatten(1)


def centre_taps(w: torch.Tensor, kernel: int) -> torch.Tensor:
    """The middle `kernel` taps of a (..., K) kernel: the supernet's smaller kernel of one family
    (odd sizes, padded by kernel // 2, so the output length is the same for every size)."""
    o = (w.shape[-1] - kernel) // 2
    return w[..., o:o + kernel]


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

    def forward_sub(self, x: torch.Tensor, kernel: int, experts: None = None) -> torch.Tensor:
        """The block with the centre `kernel` taps of its kernel (the supernet's smaller kernels)."""
        y = F.conv1d(x, centre_taps(self.conv.weight, kernel), self.conv.bias, self.conv.stride, kernel // 2)
        return F.relu(self.bn(y))


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

    def forward_sub(self, x: torch.Tensor, kernel: int, experts: None = None) -> torch.Tensor:
        """The block with the centre `kernel` taps of its depthwise kernel."""
        x = F.conv1d(x, centre_taps(self.dw.weight, kernel), self.dw.bias, self.dw.stride, kernel // 2,
                     groups=self.dw.groups)
        return F.relu(self.bn_pw(self.pw(F.relu(self.bn_dw(x)))))


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
        a = global_average(x)  # (B, C_in)
        return torch.softmax(self.fc2(F.relu(self.fc1(a))), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pi = self.attention(x)  # (B, K)
        y = None
        for k, conv in enumerate(self.experts):
            yk = conv(x) * pi[:, k : k + 1].unsqueeze(2)  # (B, out, T') * (B, 1, 1)
            y = yk if y is None else y + yk
        return F.relu(self.bn(y))


class WidthConvBlock(ConvBlock):
    """wconv: width-searchable convolution (MicroNAS / FBNetV2).

    The conv holds max(widths) filters; during the search a Gumbel-softmax over the candidate
    widths mixes channel masks (mask_w keeps the first w filters), so one weight tensor trains
    every width. A derived network keeps the chosen width only and exports as a plain, narrower
    conv (`out` in arch.json is the chosen width). Built with `widths=None` it is exactly `conv`.
    """

    def __init__(self, in_channels: int, out: int, kernel: int, stride: int = 1, experts: None = None,
                 widths: tuple[int, ...] | None = None):
        widths = tuple(sorted(widths or (out,)))
        super().__init__(in_channels, max(widths), kernel, stride)
        self.widths = widths
        self.register_buffer("masks", torch.stack(
            [(torch.arange(max(widths)) < w).float() for w in widths]))  # (W, C_max)
        self.width_logits = nn.Parameter(torch.zeros(len(widths)))
        self.tau = 1.0

    def channel_mask(self) -> torch.Tensor:  # (C_max,)
        if len(self.widths) == 1:
            return self.masks[0]
        if self.training:
            g = F.gumbel_softmax(self.width_logits, tau=self.tau)  # (W,)
        else:
            g = F.one_hot(self.width_logits.argmax(), len(self.widths)).float()
        return g @ self.masks

    def chosen_width(self) -> int:
        return self.widths[int(self.width_logits.argmax())]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)  # (B, C_max, T')
        return y if len(self.widths) == 1 else y * self.channel_mask()[None, :, None]


def snap_to_int8_grid(w: torch.Tensor) -> torch.Tensor:
    """Round each output filter of `w` (O, I, K) to its symmetric per-channel int8 grid.

    TFLite quantises conv filters per output channel with scale max|w_o| / 127. Once the parent
    is on that grid, any positive per-filter multiple of it quantises to the very same int8
    values, which is what lets KernelDNA children share one int8 parent in flash.
    """
    amax = w.abs().amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    scale = amax / 127.0
    return torch.round(w / scale) * scale


class KernelDNABlock(nn.Module):
    """kdna: shared-parent kernel (KernelDNA) with a static scale and an input-dependent attention.

    Every kdna layer of one shape (in, out, kernel) derives its kernel from one parent P shared
    across the network: W_child = a * P, with a static positive per-filter scale a = exp(s)
    (it folds into the int8 per-channel requantisation, so the int8 weights are the parent's,
    stored once). An input-dependent filter attention rescales the outputs per sample:

        att(x) = sigmoid(FC2(ReLU(FC1(mean_t(x))))),  y = att(x) * ReLU(conv(x, a * P) + b)

    The same function as ReLU(att(x) * conv(...)), since the attention is positive, but the ReLU
    comes first so that the int8 conv output holds only what survives it: with the ReLU after
    the MUL the conv output was quantised over its negative values too (on the watch data
    -10.4..2.9, leaving 55 of 256 steps to the positive part).

    Exports to CONV_2D with ReLU (+PAD when strided), AVERAGE_POOL_2D, FULLY_CONNECTED x 2,
    LOGISTIC, MUL.
    There is no batch norm: its scale could be negative, and a negative filter scale would give
    the child the parent's int8 values negated, i.e. another buffer.
    """

    def __init__(self, in_channels: int, out: int, kernel: int, stride: int = 1, experts: None = None,
                 parent: nn.Parameter | None = None):
        super().__init__()
        if parent is None:
            parent = nn.Parameter(torch.empty(out, in_channels, kernel))
            nn.init.kaiming_uniform_(parent, a=5 ** 0.5)
        if tuple(parent.shape) != (out, in_channels, kernel):
            raise ValueError(f"kdna parent has shape {tuple(parent.shape)}; expected {(out, in_channels, kernel)}")
        self.parent = parent  # shared: the same Parameter object in every child of this shape
        self.log_scale = nn.Parameter(torch.zeros(out))
        self.bias = nn.Parameter(torch.zeros(out))
        self.stride, self.pad = stride, kernel // 2
        hidden = max(4, in_channels // 4)
        self.fc1 = nn.Linear(in_channels, hidden)
        self.fc2 = nn.Linear(hidden, out)
        self.folded = False

    def weight(self) -> torch.Tensor:  # (out, in, K)
        # the parent as its int8 grid values (straight-through gradient): training sees the
        # shared int8 kernel every child will run with
        p = self.parent + (snap_to_int8_grid(self.parent) - self.parent).detach()
        return self.log_scale.exp()[:, None, None] * p

    def fold_batchnorm(self) -> None:
        """Export preparation: the child's kernel a * snap(P) becomes a constant (the exported
        graph holds a plain conv, not the snapping arithmetic); the outputs do not change."""
        with torch.no_grad():
            self.register_buffer("folded_weight", self.weight().detach().clone())
        self.folded = True

    def attention(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, T) -> (B, out)
        return torch.sigmoid(self.fc2(F.relu(self.fc1(global_average(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.folded_weight if self.folded else self.weight()
        y = F.conv1d(x, w, self.bias, self.stride, self.pad)  # (B, out, T')
        return F.relu(y) * self.attention(x).unsqueeze(2)

    def forward_sub(self, x: torch.Tensor, kernel: int, experts: None = None) -> torch.Tensor:
        """The block with the centre `kernel` taps of its (parent's) kernel."""
        y = F.conv1d(x, centre_taps(self.weight(), kernel), self.bias, self.stride, kernel // 2)
        return F.relu(y) * self.attention(x).unsqueeze(2)


class DyAggBlock(nn.Module):
    """dyagg: dynamic convolution in aggregation form (DY-Conv, Chen et al. 2020).

    pi(x) = softmax(FC2(ReLU(FC1(mean_t(x))))), W(x) = sum_k pi_k(x) W_k,
    y = ReLU(BN(conv(x, W(x)))): one convolution with the attention-weighted kernel instead of K
    convolutions (the `dyconv` split form). The experts carry no bias of their own: the batch
    norm's shift is then the same for every expert and, the attention summing to one, it folds
    into one constant conv bias exactly (as its scale folds into every expert).

    Training runs every sample's own kernel in one grouped convolution (groups = batch). The
    export (batch 1) is `FC(pi) -> reshape -> conv`: the converter's aggregation FULLY_CONNECTED
    and a CONV_2D whose filter is that FC's output (firmware_export.dyagg fixes its layout and
    its quantisation: symmetric, per tensor).
    """

    def __init__(self, in_channels: int, out: int, kernel: int, stride: int = 1, experts: int = 4):
        super().__init__()
        hidden = max(4, in_channels // 4)  # as dyconv: DY-Conv's reduction ratio 4, floored
        self.stride, self.pad, self.out, self.kernel = stride, kernel // 2, out, kernel
        stack = torch.empty(experts, out, in_channels, kernel)  # (K, O, C, k): torch's conv layout
        for e in range(experts):  # each expert initialised as a Conv1d would be
            nn.init.kaiming_uniform_(stack[e], a=5 ** 0.5)
        # kept flat, (K, O*C*k): a reshape of a constant in the exported graph is not always folded by
        # the ONNX exporter, and onnx2tf 1.29.24 then fails on it ("Output tensors of a Functional
        # model must be the output of a TensorFlow Layer", seen with the second of four dyagg cells)
        self.stack = nn.Parameter(stack.flatten(1))
        self.experts_shape = (experts, out, in_channels, kernel)
        self.register_buffer("bias", torch.zeros(out))  # the folded BN shift (zero while training)
        self.fc1 = nn.Linear(in_channels, hidden)
        self.fc2 = nn.Linear(hidden, experts)
        self.bn = nn.BatchNorm1d(out)
        self.folded = False

    def fold_batchnorm(self) -> None:
        bn = self.bn
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (O,)
            self.stack.view(self.experts_shape).mul_(scale[None, :, None, None])
            self.bias.copy_(bn.bias - bn.running_mean * scale)  # the same for every expert
        self.bn = nn.Identity()
        self.folded = True

    def attention_logits(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, T) -> (B, K)
        return self.fc2(F.relu(self.fc1(global_average(x))))

    def attention(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, T) -> (B, K)
        return torch.softmax(self.attention_logits(x), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, T) -> (B, out, T')
        b, c, t = x.shape
        pi = self.attention(x)  # (B, K)
        w = pi @ self.stack  # (B, O*C*k): the FULLY_CONNECTED of the export
        if b == 1:  # the export: one plain conv with the aggregated kernel
            y = F.conv1d(x, w.reshape(self.out, c, self.kernel), self.bias, self.stride, self.pad)
        else:
            y = self._per_sample_conv(x, w, self.kernel)
        return F.relu(self.bn(y))

    def _per_sample_conv(self, x: torch.Tensor, w: torch.Tensor, kernel: int) -> torch.Tensor:
        """Every sample's own kernel w (B, O*C*k): one grouped conv over the batch folded into channels."""
        b, c, t = x.shape
        y = F.conv1d(x.reshape(1, b * c, t), w.reshape(b * self.out, c, kernel), self.bias.repeat(b),
                     self.stride, kernel // 2, groups=b)  # (1, B*O, T')
        return y.reshape(b, self.out, -1)

    def forward_sub(self, x: torch.Tensor, kernel: int, experts: int) -> torch.Tensor:
        """The block with its first `experts` experts (their attention logits alone) and the centre
        `kernel` taps of each: the supernet's smaller candidates of this family (training only)."""
        logits = self.attention_logits(x)[:, :experts]
        stack = centre_taps(self.stack.view(self.experts_shape)[:experts], kernel).flatten(1)
        w = torch.softmax(logits, dim=1) @ stack  # (B, O*C*k)
        return F.relu(self.bn(self._per_sample_conv(x, w, kernel)))
