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

    def forward(self, x: torch.Tensor, tau: float, sample: bool,
                fixed: tuple[int, int] | None = None) -> torch.Tensor:
        if fixed is not None:  # one given candidate and width (a network of the space, inherited weights)
            g_op = F.one_hot(torch.tensor(fixed[0]), len(self.choices)).float()
            g_w = F.one_hot(torch.tensor(fixed[1]), len(self.widths)).float()
        elif sample:
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

    def forward(self, x: torch.Tensor, sample: bool = True,
                fixed: list[tuple[int, int]] | None = None) -> torch.Tensor:  # (B, C, T) -> (B, classes)
        """Sampled candidates (training), the most likely ones (`sample=False`), or the network
        `fixed` gives as (candidate, width) indices per position (see `state_of`)."""
        for i, pos in enumerate(self.positions):
            x = pos(x, self.tau, sample, None if fixed is None else fixed[i])
        return self.classifier(global_average(x))

    def state_of(self, arch: Arch) -> list[tuple[int, int]]:
        """(candidate, width) indices per position of a network of the space.

        Raises:
            ValueError: a layer the supernet does not hold (an op its space leaves out, or an
                op the supernet trains as another: `supernet_as`, e.g. conv as wconv).
        """
        state = []
        for pos, layer in zip(self.positions, arch.layers):
            op = layer.op
            names = {ch.op for ch in pos.choices}
            if op not in names and SEARCH_OPS.get(op).supernet_as in names:
                op = SEARCH_OPS.get(op).supernet_as
            for c, ch in enumerate(pos.choices):
                if ch.op == op and ch.kernel == layer.kernel and ch.experts == layer.experts:
                    break
            else:
                raise ValueError(f"{layer.to_json()} is not a candidate of this supernet")
            w = pos.widths.index(layer.out) if layer.out is not None else 0
            state.append((c, w))
        return state

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
