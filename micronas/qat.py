"""Quantisation-aware fine-tuning of an exported (batch-norm-folded) network. Imports torch.

Post-training quantisation rounds every weight to its channel's int8 grid and every activation
to its tensor's int8 grid; a network that happens to be sensitive to that loses accuracy. This
module fine-tunes the folded float network with both roundings simulated in the forward pass
(straight-through gradients), so the weights settle where the rounding hurts least:

* weights of every Conv1d and Linear: per output channel, symmetric, [-127, 127], scale =
  max |w| / 127 (what the converter does for int8 per-channel weights);
* the network's input and the output of every block and of the classifier: per tensor,
  asymmetric [-128, 127], range = exponential moving average of the batch min/max (the
  converter takes the range from calibration data instead).

After fine-tuning the weights are stored on their int8 grid, so the converter's weight
quantisation reproduces them exactly. KernelDNA parents are on their grid already (the layer
snaps them) and are left to the layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from micronas.train import run_epoch

log = logging.getLogger(__name__)


class _WeightInt8(nn.Module):
    """Per-output-channel symmetric int8 fake quantisation of a weight (out, ...)."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        amax = w.detach().abs().flatten(1).amax(1).clamp_min(1e-12)
        scale = (amax / 127.0).float()
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)


class _ActInt8(nn.Module):
    """Per-tensor asymmetric int8 fake quantisation with an EMA range (like a calibrated tensor)."""

    def __init__(self, momentum: float = 0.05):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("lo", torch.tensor(float("nan")))
        self.register_buffer("hi", torch.tensor(float("nan")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            lo, hi = x.detach().min().clamp_max(0.0), x.detach().max().clamp_min(0.0)
            if torch.isnan(self.lo):
                self.lo.copy_(lo)
                self.hi.copy_(hi)
            else:
                self.lo.lerp_(lo, self.momentum)
                self.hi.lerp_(hi, self.momentum)
        scale = float(max(float(self.hi - self.lo), 1e-8) / 255.0)
        zero = int(np.clip(round(-128 - float(self.lo) / scale), -128, 127))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, -128, 127)


def _instrument(model: nn.Module) -> list:
    """Attach the fake quantisers; returns the hook handles."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Linear)) and not parametrize.is_parametrized(m, "weight"):
            parametrize.register_parametrization(m, "weight", _WeightInt8())
    handles = []
    model.qat_input = _ActInt8()
    handles.append(model.register_forward_pre_hook(lambda m, args: (m.qat_input(args[0]), *args[1:])))
    stages = [*getattr(model, "blocks", []), model.classifier]
    for block in stages:
        block.add_module("qat_output", _ActInt8())
        handles.append(block.register_forward_hook(lambda m, args, out: m.qat_output(out)))
    return handles


def _strip(model: nn.Module, handles: list) -> None:
    """Remove the quantisers, leaving every weight on its int8 grid."""
    for h in handles:
        h.remove()
    for m in list(model.modules()):
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
        if hasattr(m, "qat_output"):
            del m.qat_output
    del model.qat_input


def fine_tune(model: nn.Module, train: tuple[np.ndarray, np.ndarray], epochs: int = 10, lr: float = 2e-4,
              batch_size: int = 32, seed: int = 0,
              on_epoch: Callable[[int, int, float], None] | None = None) -> nn.Module:
    """Fine-tune a folded network (from `search_space.network.for_export`) in place.

    Args:
        model: The folded float network; it keeps its structure (same state-dict keys).
        train: Standardised training windows (N, C, T) float32 and labels (N,) int64.
        epochs: Passes over the training windows, cosine-annealed learning rate from `lr`.
        lr: Adam learning rate (small: the network is trained already).
        batch_size: Windows per step.
        seed: Seeds the batch order.
        on_epoch: Called with (epoch, epochs, mean training loss).

    Returns:
        The same module, in eval mode, with int8-grid weights.
    """
    torch.manual_seed(seed)
    handles = _instrument(model)
    X, y = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # initialise the activation ranges before the first step
        model.train()
        model(X[: min(len(X), 256)])
    for epoch in range(epochs):
        loss = run_epoch(model, X, y, opt, batch_size, gen)
        sched.step()
        if on_epoch:
            on_epoch(epoch, epochs, loss)
    _strip(model, handles)
    return model.eval()
