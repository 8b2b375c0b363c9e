"""Heun's second-order method on the sigma parameterisation (Karras et al. 2022, algorithm 1
with S_churn = 0): with x~ = x / alpha, d = eps(x~, s) and the Euler point
x~' = x~ + (s_next - s) d,

    x~_next = x~ + (s_next - s) (d + eps(x~', s_next)) / 2,

two network calls per step; the last step (to the data, s_next = 0) is an Euler step.
"""

from __future__ import annotations

import numpy as np
import torch

from core.samplers.base import SamplerRun, SamplerSpec, StepOutput

LAST = "last"


class HeunRun(SamplerRun):
    def __init__(self, diffusion, model, **kwargs):
        super().__init__(diffusion, model, **kwargs)
        s = self.grid_sigmas()
        s_next = np.append(0.0, s[:-1])
        alpha, alpha_next = 1.0 / np.sqrt(1.0 + s ** 2), 1.0 / np.sqrt(1.0 + s_next ** 2)
        self.here = self.point_tables(s)
        self.there = self.point_tables(s_next)
        self.x_coef = self.table(alpha_next / alpha)
        self.euler_coef = self.table(alpha_next * (s_next - s))

    def variant(self, step: int):
        return LAST if step == 0 else 0

    def step(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None,
             variant=0) -> StepOutput:
        x0, eps = self.predict(x, t, self.here)
        view = (-1,) + (1,) * (x.ndim - 1)
        x_coef, euler_coef = self.x_coef[t].reshape(view), self.euler_coef[t].reshape(view)
        x_next = x_coef * x + euler_coef * eps
        if variant != LAST:
            _, eps_next = self.predict(x_next, t, self.there)
            x_next = x_coef * x + euler_coef * (0.5 * (eps + eps_next))
        return StepOutput(x_next, x0, eps, torch.zeros((), device=x.device))


SPEC = SamplerSpec(
    name="heun", label="Heun (σ)",
    description="Heun's second-order method on the probability-flow ODE in σ (Karras et al. "
                "2022): 2 network calls per step, an Euler step at the end",
    deterministic=True, order=2, make_run=HeunRun, model_calls_per_step=2,
    default_steps=lambda T: min(10, T), nfe=lambda steps: 2 * steps - 1)
