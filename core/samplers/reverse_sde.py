"""The reverse-time SDE (Anderson 1982; Song et al. 2021, eq. 6) by Euler-Maruyama:

    dx = [f(x, t) - g(t)^2 grad log p_t(x)] dt + g(t) dw-bar,   t from 1 down to 0,

in the process's own variables (core.sde: VP x with f = -1/2 beta x, g^2 = beta; VE x~ with
f = 0, g^2 = d sigma^2/dt), with the score of an eps-model s = -eps / sqrt(1 - abar). A step
from t to t - h: x_n' = (1 - h a(t)) x_n + h g(t)^2 s_n + sqrt(h g(t)^2) z (a: f = a x_n).
The steps visit the run's timesteps (t_k = core.sde's map of the respaced schedule's
original timesteps); the last one returns the model's x0 at t_0 (Tweedie's denoising, as
Song et al.'s `denoise` and every sampler here do). Stochastic; first order in the weak
sense, 1/2 in the strong sense. One network call per step.
"""

from __future__ import annotations

import numpy as np

from core.samplers.affine import AffineRun
from core.samplers.base import SamplerSpec
from core.sde import native_coefficients, process_of, run_times


class ReverseSDERun(AffineRun):
    def __init__(self, diffusion, model, **kwargs):
        super().__init__(diffusion, model, **kwargs)
        process = process_of(diffusion.schedule)
        t = run_times(diffusion.schedule)                      # (S,) increasing
        t_next = np.append(0.0, t[:-1])
        h = t - t_next
        a, g2 = process.native_drift(t), process.native_g2(t)
        x_coef, eps_coef, noise_coef = native_coefficients(
            process, t, 1.0 - h * a, h * g2, h * g2, t_next)
        self.set_coefficients(self.point_tables(diffusion.schedule.sigmas), x_coef, eps_coef,
                              noise_coef, np.arange(len(t)) == 0)


SPEC = SamplerSpec(
    name="reverse_sde", label="Reverse SDE (Euler–Maruyama)",
    description="The reverse-time SDE of the model's process (VP for DDPM, VE for NCSN) by "
                "Euler–Maruyama on the continuous-time grid (Song et al. 2021)",
    deterministic=False, make_run=ReverseSDERun)
