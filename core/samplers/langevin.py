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

from core.samplers.affine import AffineRun
from core.samplers.base import OptionSpec, SamplerSpec

LANGEVIN_STEPS = OptionSpec("langevin_steps", "K", 10.0, "Langevin steps per noise level "
                            "(NCSN used 100)", low=1.0, high=1000.0, step=1.0)
LANGEVIN_STEP = OptionSpec("langevin_step", "ε/σ_L²", 0.2, "Langevin step size at level σ_i: "
                           "ε σ_i²/σ_L² (Song & Ermon 2019); set as ε/σ_L² (NCSN: 2e-5 / "
                           "0.01² = 0.2)", low=1e-6, high=10.0, step=10.0, scale="log")


class AnnealedLangevinRun(AffineRun):
    def __init__(self, diffusion, model, **kwargs):
        super().__init__(diffusion, model, **kwargs)
        per_level = int(round(self.options["langevin_steps"]))
        sigmas = diffusion.schedule.sigmas                           # VE sigma per level (S,)
        level = np.repeat(np.arange(len(sigmas)), per_level)         # of each sub-step (S K,)
        s = sigmas[level]
        abar = 1.0 / (1.0 + s ** 2)
        alpha = self.options["langevin_step"] * s ** 2                 # eps sigma^2 / sigma_L^2
        self.num_steps = len(level)
        self.set_coefficients(self.point_tables(s), np.ones(self.num_steps),
                              -alpha * abar / np.sqrt(1.0 - abar), np.sqrt(2.0 * alpha * abar),
                              np.arange(self.num_steps) == 0)


SPEC = SamplerSpec(
    name="langevin", label="Annealed Langevin (NCSN)",
    description="Annealed Langevin dynamics over the noise levels: K steps per level, step "
                "ε σ_i²/σ_L² (Song & Ermon 2019); steps = levels",
    deterministic=False, make_run=AnnealedLangevinRun,
    options=(LANGEVIN_STEPS, LANGEVIN_STEP),
    calls_per_step=lambda options: int(round(options["langevin_steps"])),
    default_steps=lambda T: min(T, 50))
