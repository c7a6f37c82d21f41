"""The supernet: every candidate of every position of a search space in one torch module.

Each position holds one module per candidate (op x kernel x experts, from the registry) built
at the position's largest width, architecture logits over the candidates (`alpha`) and over the
widths (`beta`, FBNetV2-style channel masks: width w keeps the first w channels). A forward
pass samples one candidate per position with hard Gumbel-softmax and runs only that one
(GDAS): the straight-through one-hot carries the gradient to every logit while a step costs
one network's compute. The width masks mix softly (cheap: one multiply). KernelDNA candidates
of one (in, out, kernel) shape share their parent kernel, as in a derived network.

Imports torch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .arch import Arch, LayerSpec, validate
from .layers import global_average
from .registry import SEARCH_OPS
from .space import SearchSpace


class MixedPosition(nn.Module):
    """One position: candidates, op logits `alpha`, width logits `beta`."""

    def __init__(self, choices, in_max: int, widths: list[int], stride: int, parents: nn.ParameterDict):
        super().__init__()
        self.choices = list(choices)
        self.widths = list(widths)
        self.out_max = max(widths)
        self.in_max = in_max
        mods = []
        for ch in self.choices:
            op = SEARCH_OPS.get(ch.op)
            if op.keeps_width:
                mods.append(nn.Identity())
                continue
            params = {"out": self.out_max, "kernel": ch.kernel, "stride": stride}
            if ch.experts is not None:
                params["experts"] = ch.experts
            mods.append(op.build_sharing(in_max, parents, **params))
        self.ops = nn.ModuleList(mods)
        self.alpha = nn.Parameter(torch.zeros(len(self.choices)))
        self.beta = nn.Parameter(torch.zeros(len(self.widths)))
        self.register_buffer("masks", torch.stack([(torch.arange(self.out_max) < w).float() for w in self.widths]))
        self.skip = [i for i, ch in enumerate(self.choices) if SEARCH_OPS.get(ch.op).keeps_width]

    def _resize(self, x: torch.Tensor) -> torch.Tensor:  # skip: the input's channels in out_max
        c = x.shape[1]
        if c == self.out_max:
            return x
        return F.pad(x, (0, 0, 0, self.out_max - c)) if c < self.out_max else x[:, : self.out_max]

    def forward(self, x: torch.Tensor, tau: float, sample: bool) -> torch.Tensor:
        if sample:
            g_op = F.gumbel_softmax(self.alpha, tau=tau, hard=True)
            g_w = F.gumbel_softmax(self.beta, tau=tau, hard=False)
        else:  # evaluation of the most likely network
            g_op = F.one_hot(self.alpha.argmax(), len(self.choices)).float()
            g_w = F.one_hot(self.beta.argmax(), len(self.widths)).float()
        c = int(g_op.argmax())
        if c in self.skip:
            return g_op[c] * self._resize(x)
        mask = g_w @ self.masks  # (out_max,)
        return g_op[c] * self.ops[c](x) * mask[None, :, None]


class SuperNet(nn.Module):
    """All positions of `space` for (channels, length) input and `classes` outputs."""

    def __init__(self, space: SearchSpace, choices_per_position, channels: int, length: int, classes: int):
        super().__init__()
        self.space, self.channels, self.length, self.classes = space, channels, length, classes
        self.parents = nn.ParameterDict()
        positions, c = [], channels
        for p, choices in zip(space.positions, choices_per_position):
            positions.append(MixedPosition(choices, c, sorted(p.widths), p.stride, self.parents))
            c = max(p.widths) if not all(SEARCH_OPS.get(ch.op).keeps_width for ch in choices) else c
        self.positions = nn.ModuleList(positions)
        self.classifier = nn.Linear(c, classes)
        self.tau = 5.0

    def arch_parameters(self) -> list[nn.Parameter]:
        return [p for pos in self.positions for p in (pos.alpha, pos.beta)]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def forward(self, x: torch.Tensor, sample: bool = True) -> torch.Tensor:  # (B, C, T) -> (B, classes)
        for pos in self.positions:
            x = pos(x, self.tau, sample)
        return self.classifier(global_average(x))

    def derive(self) -> Arch:
        """The most likely network: argmax op and width per position."""
        layers, c = [], self.channels
        for pos, p in zip(self.positions, self.space.positions):
            ch = pos.choices[int(pos.alpha.argmax())]
            if SEARCH_OPS.get(ch.op).keeps_width:
                layers.append(LayerSpec(op=ch.op, stride=p.stride))
                continue
            w = pos.widths[int(pos.beta.argmax())]
            layers.append(ch.layer(w, p.stride))
            c = w
        return validate(Arch(self.channels, self.length, self.classes, layers[0], tuple(layers[1:])))
