"""Exponential moving average of model weights, updated with foreach ops (few kernel launches).

    ema <- decay_n * ema + (1 - decay_n) * theta,  decay_n = min(decay, (1 + n) / (10 + n))

n is the number of updates so far; the warm-up of decay_n (as TensorFlow's
ExponentialMovingAverage with num_updates) lets the average follow the fast early changes,
so short runs get a useful EMA, and it reaches `decay` after a few hundred updates at 0.99.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def effective_decay(decay: float, num_updates: int) -> float:
    """min(decay, (1 + n) / (10 + n))."""
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates))


def make_ema(model: nn.Module) -> nn.Module:
    """A frozen deep copy of `model` (no gradients, eval mode) to hold the average."""
    ema = copy.deepcopy(model)
    ema.requires_grad_(False)
    ema.eval()
    return ema


class EMA:
    """Keeps `average` (a frozen copy made by make_ema) tracking `model`'s weights.

    The parameter lists are gathered once, so an update is two foreach calls."""

    def __init__(self, average: nn.Module, model: nn.Module):
        self.average = average
        self._targets = list(average.parameters())
        self._sources = list(model.parameters())
        self._target_buffers = list(average.buffers())
        self._source_buffers = list(model.buffers())
        self._weights: list[torch.Tensor] | None = None
        if [p.shape for p in self._targets] != [p.shape for p in self._sources]:
            raise ValueError("EMA: the average and the model have different parameters")

    @torch.no_grad()
    def update(self, decay: float) -> None:
        """average <- decay * average + (1 - decay) * model; buffers are copied."""
        if self._targets:
            torch._foreach_lerp_(self._targets, self._sources, 1.0 - decay)
        if self._target_buffers:
            torch._foreach_copy_(self._target_buffers, self._source_buffers)

    @torch.no_grad()
    def update_with(self, weight: torch.Tensor) -> None:
        """average <- lerp(average, model, w), w = 1 - decay a 0-d tensor on the device
        (refilled every step, so one captured CUDA graph serves every step; no host read:
        the scalar overload of lerp would read w back). Buffers are copied."""
        if self._targets:
            if self._weights is None or self._weights[0] is not weight:
                self._weights = [weight] * len(self._targets)
            torch._foreach_lerp_(self._targets, self._sources, self._weights)
        if self._target_buffers:
            torch._foreach_copy_(self._target_buffers, self._source_buffers)
