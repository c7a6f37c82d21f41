"""The supernet: every candidate of every position of a search space in one torch module.

Each position holds one module per candidate (op x kernel x experts, from the registry) built
at the position's largest width, architecture logits over the candidates (`alpha`) and over the
widths (`beta`, FBNetV2-style channel masks: width w keeps the first w channels). A forward
pass samples one candidate per position with hard Gumbel-softmax and runs only that one
(GDAS): the straight-through one-hot carries the gradient to every logit while a step costs
one network's compute. The width masks mix softly (cheap: one multiply).

The candidates of one op share one module, built at their largest kernel and expert count: a
k3 candidate runs the centre three taps of the k7 kernel, a x2 DY-Conv the first two experts
(`forward_sub` of the block). A position of a dozen candidates then trains four modules, each on
every draw of its family: on the watch data 20 networks at the budget scored 66-74 % validation
accuracy on average (two searches) with inherited weights, against 42 % with a module per
candidate (stand-alone: 80-89 %; benchmarks/README.md, "ranking.py"). A derived network is
trained from scratch and holds its own kernels; KernelDNA layers of a derived network share
their parent as before.

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

    # candidates of one op share one module at the family's largest kernel (and most experts):
    # a smaller kernel runs its centre taps, fewer experts the first ones (`forward_sub`), so each
    # family's weights train on every draw of any of its sizes (see the module docstring)
    share_kernels = True

    def __init__(self, choices, in_max: int, widths: list[int], stride: int, parents: nn.ParameterDict):
        super().__init__()
        self.choices = list(choices)
        self.widths = list(widths)
        self.out_max = max(widths)
        self.in_max = in_max
        mods, self.route, family = [], [], {}
        for ch in self.choices:
            op = SEARCH_OPS.get(ch.op)
            if op.keeps_width:
                self.route.append((len(mods), None))
                mods.append(nn.Identity())
                continue
            if ch.op in family:
                self.route.append((family[ch.op], (ch.kernel, ch.experts)))
                continue
            shared = self.share_kernels and hasattr(op.block_class(), "forward_sub")
            same = [c for c in self.choices if c.op == ch.op] if shared else [ch]
            params = {"out": self.out_max, "kernel": max(c.kernel for c in same), "stride": stride}
            if ch.experts is not None:
                params["experts"] = max(c.experts for c in same)
            mod = op.build_sharing(in_max, parents, **params)
            if shared:
                family[ch.op] = len(mods)
            self.route.append((len(mods), (ch.kernel, ch.experts) if shared else None))
            mods.append(mod)
        self.ops = nn.ModuleList(mods)
        self.alpha = nn.Parameter(torch.zeros(len(self.choices)))
        self.beta = nn.Parameter(torch.zeros(len(self.widths)))
        self.register_buffer("masks", torch.stack([(torch.arange(self.out_max) < w).float() for w in self.widths]))
        self.skip = [i for i, ch in enumerate(self.choices) if SEARCH_OPS.get(ch.op).keeps_width]

    def _run(self, c: int, x: torch.Tensor) -> torch.Tensor:
        """Candidate `c` on x: its own module, or its family's at its kernel and experts."""
        m, sub = self.route[c]
        return self.ops[m](x) if sub is None else self.ops[m].forward_sub(x, *sub)

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
        return g_op[c] * self._run(c, x) * mask[None, :, None]


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

    @staticmethod
    def layout() -> str:
        """How candidates hold their weights (a search's digest names it: a checkpoint of
        another layout is not resumed)."""
        return "families share kernels/1" if MixedPosition.share_kernels else "a module per candidate/1"

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
