"""Annealed Langevin dynamics (Song & Ermon 2019, NCSN, algorithm 1): for each noise level
sigma_i from the largest down, K steps of Langevin dynamics on p_{sigma_i},

    x~ <- x~ + alpha_i s~(x~, sigma_i) + sqrt(2 alpha_i) z,   alpha_i = eps sigma_i^2 / sigma_L^2,

in the VE view x~ = x / sqrt(abar) (s~ = -eps_theta / sigma; sigma_L the smallest level of
the run). Taken in x = sqrt(abar) x~ the step reads x <- x + alpha abar s + sqrt(2 alpha
abar) z with s = -eps / sqrt(1 - abar): the same chain, so it serves VP (DDPM) and VE (NCSN)
models alike; a VP model's levels are its VE sigmas. The levels are the run's steps (its
spacing), K = `langevin_steps`. The option `langevin_step` is the ratio
alpha_i / sigma_i^2 = eps / sigma_L^2, which governs mixing and stability whatever the
smallest level (NCSN's eps = 2e-5 with sigma_L = 0.01 is 0.2, the default). The last
of the S x K steps returns Tweedie's denoised x0 at sigma_L instead of a move (NCSNv2's
final denoising). K network calls per level.
"""

from __future__ import annotations

import numpy as np
import torch

from core.samplers.base import OptionSpec, SamplerRun, SamplerSpec, StepOutput

LANGEVIN_STEPS = OptionSpec("langevin_steps", "K", 10.0, "Langevin steps per noise level "
                            "(NCSN used 100)", low=1.0, high=1000.0, step=1.0)
LANGEVIN_STEP = OptionSpec("langevin_step", "ε/σ_L²", 0.2, "Langevin step size at level σ_i: "
                           "ε σ_i²/σ_L² (Song & Ermon 2019); set as ε/σ_L² (NCSN: 2e-5 / "
                           "0.01² = 0.2)", low=1e-6, high=10.0, step=10.0, scale="log")


class AnnealedLangevinRun(SamplerRun):
    def __init__(self, diffusion, model, **kwargs):
        super().__init__(diffusion, model, **kwargs)
        per_level = int(round(self.options["langevin_steps"]))
        sigmas = diffusion.schedule.sigmas                           # VE sigma per level (S,)
        level = np.repeat(np.arange(len(sigmas)), per_level)         # of each sub-step (S K,)
        s = sigmas[level]
        abar = 1.0 / (1.0 + s ** 2)
        alpha = self.options["langevin_step"] * s ** 2                 # eps sigma^2 / sigma_L^2
        self.num_steps = len(level)
        self.here = self.point_tables(s)
        eps_coef = -alpha * abar / np.sqrt(1.0 - abar)
        noise_coef = np.sqrt(2.0 * alpha * abar)
        noise_coef[0] = eps_coef[0] = 0.0                           # the last: x0
        self.eps_coef, self.noise_coef = self.table(eps_coef), self.table(noise_coef)
        self.last = self.table(np.arange(self.num_steps) == 0)
        self.noise_steps = noise_coef > 0
        self.variance_host = noise_coef ** 2

    def step(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None,
             variant=0) -> StepOutput:
        x0, eps = self.predict(x, t, self.here)
        view = (-1,) + (1,) * (x.ndim - 1)
        x_next = x + self.eps_coef[t].reshape(view) * eps
        if noise is not None:
            x_next = x_next + self.noise_coef[t].reshape(view) * noise
        last = self.last[t].reshape(view)
        x_next = last * x0 + (1.0 - last) * x_next
        return StepOutput(x_next, x0, eps, self.noise_coef[t[:1]][0] ** 2)

    def record_variance(self, step: int, output: StepOutput) -> float:
        return float(self.variance_host[step])


SPEC = SamplerSpec(
    name="langevin", label="Annealed Langevin (NCSN)",
    description="Annealed Langevin dynamics over the noise levels: K steps per level, step "
                "ε σ_i²/σ_L² (Song & Ermon 2019); steps = levels",
    deterministic=False, make_run=AnnealedLangevinRun,
    options=(LANGEVIN_STEPS, LANGEVIN_STEP),
    calls_per_step=lambda options: int(round(options["langevin_steps"])),
    default_steps=lambda T: min(T, 50))
