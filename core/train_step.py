"""One training step, written once as a function of tensors already on the device: the
eager trainer calls it, and the CUDA-graph path (core.fast_step) captures the same call.

    loss  = mean_b w_b L(x0_b, t_b, eps_b)           (GaussianDiffusion.training_losses)
    g     = clip(grad loss, grad_clip)                (global norm; grad_clip 0: no clip)
    theta = AdamW(theta, g)                           (the optimizer's lr: set by the caller)
    ema   = lerp(ema, theta, w)                       (w = 1 - decay_n, a device scalar)

It reads nothing back to the host and makes no tensor from host data, unless the eager
caller passes `check`, which runs between the gradient and the update (the per-step
finite check of CPU training). Shapes: x0, noise (B, ...); t (B,) int64; weights (B,) the
timestep sampler's importance weights; y (B,) labels or None.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from core.diffusion import GaussianDiffusion
from core.ema import EMA

# the per-step metrics row, in this order: weighted batch means of the loss, of L_simple's
# MSE and of the VLB term, the gradient norm before clipping, and the mean raw loss in each
# quarter of t (NaN where a quarter had no sample), as improved-diffusion logs it
METRIC_KEYS = ("loss", "mse", "vlb", "grad_norm", "loss_q0", "loss_q1", "loss_q2", "loss_q3")


class StepBatch(NamedTuple):
    x0: torch.Tensor
    t: torch.Tensor
    weights: torch.Tensor
    noise: torch.Tensor
    y: torch.Tensor | None = None


def train_step(model, diffusion: GaussianDiffusion, optimizer: torch.optim.Optimizer,
               params: list[torch.Tensor], ema: EMA, batch: StepBatch,
               ema_weight: torch.Tensor, grad_clip: float,
               check: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
               micro_batch: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on `batch` (see the module docstring).

    micro_batch k (0 < k < B, dividing B): the forward and backward passes run on B/k chunks
    of k examples and the gradients accumulate, each chunk's loss scaled by k/B, so the
    gradient is that of the whole batch's mean loss (up to float rounding) with the
    activations of k examples in memory at a time.

    Returns (raw losses (B,) detached, for a loss-aware timestep sampler; the metrics row
    (len(METRIC_KEYS),) float32 on the device).
    """
    optimizer.zero_grad(set_to_none=True)
    size = batch.x0.shape[0]
    if 0 < micro_batch < size:
        parts = [_losses_backward(model, diffusion, StepBatch(*(
            None if field is None else field[start:start + micro_batch] for field in batch)),
            scale=micro_batch / size) for start in range(0, size, micro_batch)]
        loss = torch.stack([part[0] for part in parts]).sum()
        losses = {key: torch.cat([part[1][key] for part in parts]) for key in parts[0][1]}
    else:
        loss, losses = _losses_backward(model, diffusion, batch, scale=1.0)
    max_norm = grad_clip if grad_clip > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    if check is not None:
        check(loss, grad_norm)
    optimizer.step()
    ema.update_with(ema_weight)
    row = metrics_row(loss, losses, batch.weights, batch.t, grad_norm, diffusion.num_timesteps)
    return losses["loss"], row


def _losses_backward(model, diffusion: GaussianDiffusion, batch: StepBatch, scale: float):
    """Backward of scale * mean_b w_b L_b on `batch`; returns (that loss, detached, and
    the per-example losses, detached)."""
    kwargs = {} if batch.y is None else {"y": batch.y}
    losses = diffusion.training_losses(model, batch.x0, batch.t, kwargs, noise=batch.noise)
    loss = (losses["loss"] * batch.weights).mean()
    (loss * scale if scale != 1.0 else loss).backward()
    return (loss * scale).detach(), {key: value.detach() for key, value in losses.items()}


def metrics_row(loss: torch.Tensor, losses: dict, weights: torch.Tensor, t: torch.Tensor,
                grad_norm: torch.Tensor, num_timesteps: int) -> torch.Tensor:
    """The METRIC_KEYS row of one step, (8,) float32 on the device (no host sync)."""
    weighted = (losses["loss"].detach() * weights).float()
    quarter = torch.div(t * 4, num_timesteps, rounding_mode="floor").clamp_(max=3)
    sums = torch.zeros(4, device=t.device).scatter_add_(0, quarter, weighted)
    counts = torch.zeros(4, device=t.device).scatter_add_(0, quarter, torch.ones_like(weighted))
    return torch.cat([
        torch.stack([loss.float(), (losses["mse"].detach() * weights).mean().float(),
                     (losses["vlb"].detach() * weights).mean().float(), grad_norm.float()]),
        sums / counts,
    ])
