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

from core.samplers.affine import AffineRun
from core.samplers.base import SamplerSpec


class EulerRun(AffineRun):
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
        # the last step (s_next = 0) lands on x0 by itself: no step is flagged `last`
        self.set_coefficients(self.point_tables(s), alpha_next / alpha,
                              alpha_next * (down - s), alpha_next * up, np.zeros(len(s), bool))


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
