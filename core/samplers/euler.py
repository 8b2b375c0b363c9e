"""Euler and Euler-ancestral on the sigma parameterisation (Karras et al. 2022, algorithm 2
with S_churn = 0; k-diffusion's sample_euler and sample_euler_ancestral).

With x~ = x / alpha = x0 + s eps (VE view, s = sqrt((1 - abar) / abar)), the probability-flow
ODE is dx~/ds = eps(x~, s). Euler: x~_next = x~ + (s_next - s) eps. (In the VP variables
this is DDIM with eta = 0, step for step.) Euler-ancestral takes the step to
s_down = sqrt(s_next^2 - s_up^2), s_up = min(s_next, s_next sqrt(s^2 - s_next^2) / s), and
adds s_up z: the reverse SDE's noise, DDPM-like. The last step goes to the data.
"""

from __future__ import annotations

import numpy as np
import torch

from core.samplers.base import SamplerRun, SamplerSpec, StepOutput


class EulerRun(SamplerRun):
    ANCESTRAL = False

    def __init__(self, diffusion, model, **kwargs):
        super().__init__(diffusion, model, **kwargs)
        s = self.grid_sigmas()
        s_next = np.append(0.0, s[:-1])                     # index t goes to t - 1 (or data)
        if self.ANCESTRAL:
            up = np.minimum(s_next, np.sqrt(np.maximum(s_next ** 2 * (s ** 2 - s_next ** 2), 0.0))
                            / s)
            down = np.sqrt(np.maximum(s_next ** 2 - up ** 2, 0.0))
        else:
            up, down = np.zeros_like(s), s_next
        alpha, alpha_next = 1.0 / np.sqrt(1.0 + s ** 2), 1.0 / np.sqrt(1.0 + s_next ** 2)
        self.here = self.point_tables(s)
        self.x_coef = self.table(alpha_next / alpha)
        self.eps_coef = self.table(alpha_next * (down - s))
        self.noise_coef = self.table(alpha_next * up)
        self.noise_steps = up > 0
        self.variance_host = (alpha_next * up) ** 2

    def step(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None,
             variant=0) -> StepOutput:
        x0, eps = self.predict(x, t, self.here)
        view = (-1,) + (1,) * (x.ndim - 1)
        x_next = self.x_coef[t].reshape(view) * x + self.eps_coef[t].reshape(view) * eps
        if noise is not None:
            x_next = x_next + self.noise_coef[t].reshape(view) * noise
        variance = self.noise_coef[t[:1]][0] ** 2
        return StepOutput(x_next, x0, eps, variance)

    def record_variance(self, step: int, output: StepOutput) -> float:
        return float(self.variance_host[step])


class EulerAncestralRun(EulerRun):
    ANCESTRAL = True


def karras_steps(T: int) -> int:
    return min(20, T)


SPEC = SamplerSpec(
    name="euler", label="Euler (σ)",
    description="Euler on the probability-flow ODE in σ (Karras et al. 2022); equal to DDIM "
                "with η = 0 on the same steps",
    deterministic=True, order=1, make_run=EulerRun, default_steps=karras_steps)
SPEC_ANCESTRAL = SamplerSpec(
    name="euler_a", label="Euler ancestral (σ)",
    description="Euler-ancestral: an Euler step to σ_down plus fresh noise σ_up (k-diffusion)",
    deterministic=False, make_run=EulerAncestralRun, default_steps=karras_steps)
