"""Ancestral (DDPM) and DDIM sampling as generators of steps, and classifier-free guidance.

Both samplers walk the indices t = T-1, ..., 0 of a (possibly respaced) GaussianDiffusion
and yield one `StepRecord` per step, so a caller can stop, throttle, or record any subset.
All randomness comes from the given torch.Generator: the same seed gives the same run.
No noise is added at t = 0. `clip_denoised=None` means: clamp pred_x0 to [-1, 1] for
image diffusions, not for continuous data (standardised vectors leave [-1, 1]).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from core.diffusion import DataKind, GaussianDiffusion


@dataclass
class StepRecord:
    """One reverse step.

    t: index of the step in the (possibly respaced) diffusion, T-1 down to 0.
    x: the sample after this step, x_{t-1} of the papers (x_0 when t == 0), (B, ...).
    pred_x0, pred_eps: the model's estimates of x0 and eps at x_t, (B, ...).
    variance: mean of the variance of the noise added at this step (0.0 where none).
    """

    t: int
    x: torch.Tensor
    pred_x0: torch.Tensor
    pred_eps: torch.Tensor
    variance: float


def _resolve_clip(diffusion: GaussianDiffusion, clip_denoised):
    """None -> True for images, False for vectors; a bool as given; a (low, high) box (tuple
    or list) as a tuple."""
    if clip_denoised is None:
        return diffusion.data_kind is DataKind.IMAGE
    if isinstance(clip_denoised, (tuple, list)):
        return tuple(clip_denoised)
    return bool(clip_denoised)


def _standard_normal(shape, generator: torch.Generator | None, like: torch.Tensor | None = None,
                     device="cpu", dtype=torch.float32) -> torch.Tensor:
    """N(0, I) of `shape`, drawn on the generator's device and moved to the target device."""
    if like is not None:
        device, dtype = like.device, like.dtype
    draw_device = generator.device if generator is not None else device
    noise = torch.randn(tuple(shape), generator=generator, device=draw_device, dtype=dtype)
    return noise.to(device)


def _step_tensor(t, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    if isinstance(t, torch.Tensor):
        if t.ndim == 0:
            t = int(t)
        else:
            values = t.unique()
            if values.numel() != 1:
                raise ValueError("p_sample: all batch elements must share one timestep t")
            return int(values), t.to(device=x.device, dtype=torch.long)
    return int(t), torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)


def _initial_noise(shape, noise, generator, device) -> torch.Tensor:
    if noise is not None:
        if tuple(noise.shape) != tuple(shape):
            raise ValueError(f"noise shape {tuple(noise.shape)} must equal shape {tuple(shape)}")
        return noise.to(device)
    return _standard_normal(shape, generator, device=device)


@torch.no_grad()
def p_sample(diffusion: GaussianDiffusion, model, x: torch.Tensor, t, *,
             clip_denoised: bool | tuple | None = None, model_kwargs=None,
             generator: torch.Generator | None = None) -> StepRecord:
    """One ancestral step x_{t-1} ~ p_theta(x_{t-1} | x_t) = N(mean, Sigma), x (B, ...).

    x_{t-1} = mean + exp(log_variance / 2) z with z ~ N(0, I) from `generator`; z = 0 at
    t = 0. `t` is an int (or a LongTensor (B,) holding one value) indexing the diffusion.
    """
    step, t_batch = _step_tensor(t, x)
    clip = _resolve_clip(diffusion, clip_denoised)
    out = diffusion.p_mean_variance(model, x, t_batch, model_kwargs, clip_denoised=clip)
    if step > 0:
        noise = _standard_normal(x.shape, generator, like=x)
        sample = out["mean"] + torch.exp(0.5 * out["log_variance"]) * noise
        variance = float(out["variance"].mean())
    else:
        sample, variance = out["mean"], 0.0
    return StepRecord(step, sample, out["pred_xstart"], out["pred_eps"], variance)


@torch.no_grad()
def ddpm_sample(diffusion: GaussianDiffusion, model, shape, *, noise=None,
                generator: torch.Generator | None = None, device="cpu",
                clip_denoised: bool | tuple | None = None, model_kwargs=None) -> Iterator[StepRecord]:
    """Ancestral sampling from x_T ~ N(0, I) (or `noise`), one StepRecord per step T-1..0.

    The last record's x is the sample x_0 of shape `shape`.
    """
    x = _initial_noise(shape, noise, generator, device)
    for step in reversed(range(diffusion.num_timesteps)):
        record = p_sample(diffusion, model, x, step, clip_denoised=clip_denoised,
                          model_kwargs=model_kwargs, generator=generator)
        x = record.x
        yield record


@torch.no_grad()
def ddim_step(diffusion: GaussianDiffusion, model, x: torch.Tensor, step: int, *,
              eta: float = 0.0, clip_denoised: bool | tuple | None = None, model_kwargs=None,
              generator: torch.Generator | None = None) -> StepRecord:
    """One DDIM step (Song et al. 2021, eq. 12) from index `step` to the previous index.

    x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z,
    sigma = eta sqrt((1 - abar_prev) / (1 - abar)) sqrt(1 - abar / abar_prev)   (eq. 16),
    where abar_prev is the previous index's alpha-bar (1 before index 0) and eps_hat is
    the eps consistent with x_t and the (possibly clipped) x0_hat. eta = 0 is
    deterministic; eta = 1 gives sigma^2 = beta-tilde (DDPM's posterior variance).
    """
    step, t_batch = _step_tensor(step, x)
    clip = _resolve_clip(diffusion, clip_denoised)
    out = diffusion.p_mean_variance(model, x, t_batch, model_kwargs, clip_denoised=clip)
    abar = float(diffusion.schedule.alphas_cumprod[step])
    abar_prev = float(diffusion.schedule.alphas_cumprod_prev[step])
    sigma = eta * math.sqrt((1.0 - abar_prev) / (1.0 - abar)) * math.sqrt(1.0 - abar / abar_prev)
    direction = math.sqrt(max(1.0 - abar_prev - sigma ** 2, 0.0))
    sample = math.sqrt(abar_prev) * out["pred_xstart"] + direction * out["pred_eps"]
    variance = 0.0
    if step > 0 and sigma > 0:
        sample = sample + sigma * _standard_normal(x.shape, generator, like=x)
        variance = sigma ** 2
    return StepRecord(step, sample, out["pred_xstart"], out["pred_eps"], variance)


@torch.no_grad()
def ddim_sample(diffusion: GaussianDiffusion, model, shape, *, eta: float = 0.0, noise=None,
                generator: torch.Generator | None = None, device="cpu",
                clip_denoised: bool | tuple | None = None, model_kwargs=None) -> Iterator[StepRecord]:
    """DDIM sampling over every index of `diffusion` (respace it for fewer steps).

    Yields one StepRecord per step T-1..0; the last record's x is the sample.
    """
    if not math.isfinite(eta) or eta < 0:
        raise ValueError(f"eta = {eta!r} is invalid: must be a finite number >= 0")
    x = _initial_noise(shape, noise, generator, device)
    for step in reversed(range(diffusion.num_timesteps)):
        record = ddim_step(diffusion, model, x, step, eta=eta, clip_denoised=clip_denoised,
                           model_kwargs=model_kwargs, generator=generator)
        x = record.x
        yield record


class GuidedModel(nn.Module):
    """Classifier-free guidance (Ho & Salimans 2022) around a class-conditional model.

    forward(x, t, y) runs the conditional (labels y) and unconditional (labels null_class)
    passes as one doubled batch and returns, on the mean channels,

        out = (1 + w) out_cond - w out_uncond,    w = guidance_scale,

    which is the guided eps formula for an eps model. For x0 and v models it is exactly
    the same guidance: x0 and v are affine in eps at fixed (x_t, t), and the weights
    (1 + w) and -w sum to 1, so mixing outputs equals converting the mixed eps. With a
    learned variance (2C output channels for C input channels) the variance channels come
    from the conditional half. With y None the model is called once, unguided.
    """

    def __init__(self, model, guidance_scale: float, null_class: int):
        super().__init__()
        if not math.isfinite(guidance_scale):
            raise ValueError(f"guidance_scale = {guidance_scale!r} is invalid: must be finite")
        self.model = model
        self.guidance_scale = float(guidance_scale)
        self.null_class = int(null_class)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                **kwargs) -> torch.Tensor:
        if y is None:
            return self.model(x, t, **kwargs)
        null = torch.full_like(y, self.null_class)
        both = self.model(torch.cat([x, x]), torch.cat([t, t]), y=torch.cat([y, null]), **kwargs)
        cond, uncond = both.chunk(2, dim=0)
        channels = x.shape[1]
        w = self.guidance_scale
        guided = (1.0 + w) * cond[:, :channels] - w * uncond[:, :channels]
        if cond.shape[1] == 2 * channels:
            guided = torch.cat([guided, cond[:, channels:]], dim=1)
        return guided
