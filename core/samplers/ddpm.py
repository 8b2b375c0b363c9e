"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2; improved DDPM's variances).

    x_{t-1} = mu_theta(x_t, t) + [t > 0] exp(log Sigma_theta(x_t, t) / 2) z,   z ~ N(0, I)

with mu_theta the posterior mean q(x_{t-1} | x_t, x0_hat) and Sigma_theta the diffusion's
variance (fixed beta-tilde, fixed beta, learned range, or a reverse variance such as
Analytic-DPM's sigma*^2 set by GaussianDiffusion.with_reverse_variance). No noise at t = 0.
"""

from __future__ import annotations

import numpy as np
import torch

from core.samplers.base import VARIANCE, SamplerRun, SamplerSpec, StepOutput


class DDPMRun(SamplerRun):
    def __init__(self, diffusion, model, **kwargs):
        super().__init__(diffusion, model, **kwargs)
        self.noise_steps = np.arange(self.num_steps) > 0
        self.adds_noise = self.table(self.noise_steps)

    def step(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None,
             variant=0) -> StepOutput:
        out = self.model_output(x, t)
        view = (-1,) + (1,) * (x.ndim - 1)
        gate = self.adds_noise[t]                              # (B,) 1 where noise is added
        sample = out["mean"]
        if noise is not None:
            sample = sample + gate.reshape(view) * torch.exp(0.5 * out["log_variance"]) * noise
        variance = out["variance"].mean() * gate[0]
        return StepOutput(sample, out["pred_xstart"], out["pred_eps"], variance)


SPEC = SamplerSpec(
    name="ddpm", label="DDPM",
    description="DDPM: ancestral sampling, noise added at every step (Ho et al. 2020)",
    deterministic=False, make_run=DDPMRun, options=(VARIANCE,))
