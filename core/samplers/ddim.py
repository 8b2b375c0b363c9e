"""DDIM (Song et al. 2021, eq. 12) from index t to the previous index of the run:

    x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma_t^2) eps_hat + sigma_t z,
    sigma_t = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)  (eq. 16)

abar_prev is the previous index's alpha-bar (1 before index 0) and eps_hat the eps
consistent with x_t and the (possibly clipped) x0_hat. eta = 0 is deterministic; eta = 1
gives sigma^2 = beta-tilde, DDPM's posterior variance. No noise at index 0. With the
variance option "analytic" the mean keeps eta's lambda = sigma_eta but the noise has
Analytic-DPM's optimal variance for that family (Bao et al. 2022, Theorem 1 with
lambda^2 = eta^2 beta-tilde; noisy even at eta = 0).
"""

from __future__ import annotations

import numpy as np
import torch

from core.analytic_dpm import analytic_dpm_variance
from core.samplers.base import ANALYTIC, ETA, VARIANCE, SamplerRun, SamplerSpec, StepOutput


class DDIMRun(SamplerRun):
    def __init__(self, diffusion, model, **kwargs):
        super().__init__(diffusion, model, **kwargs)
        schedule = diffusion.schedule
        abar, abar_prev = schedule.alphas_cumprod, schedule.alphas_cumprod_prev
        lam = (self.options["eta"] * np.sqrt((1.0 - abar_prev) / (1.0 - abar))
               * np.sqrt(1.0 - abar / abar_prev))
        sigma = lam
        if self.options.get(VARIANCE.name) == ANALYTIC:
            sigma = np.sqrt(self._analytic_variance(lam ** 2))
        self.noise_steps = (np.arange(self.num_steps) > 0) & (sigma > 0)
        self.variance_host = np.where(self.noise_steps, sigma ** 2, 0.0)   # float64, records
        self.x0_coef = self.table(np.sqrt(abar_prev))
        self.eps_coef = self.table(np.sqrt(np.maximum(1.0 - abar_prev - lam ** 2, 0.0)))
        self.sigma = self.table(np.where(self.noise_steps, sigma, 0.0))
        self.variance = self.table(self.variance_host)

    def _analytic_variance(self, lambda2: np.ndarray) -> np.ndarray:
        """Bao et al.'s optimal variance for DDIM's lambda^2 = eta^2 beta-tilde, from the
        Gamma_t that core.analytic_dpm estimated for this diffusion."""
        d = self.diffusion
        if d.eps_norm_sq is None:
            raise ValueError("the Analytic-DPM variance needs Gamma_t estimated first on a data "
                             "sample (core.generate.sample with analytic_data does it)")
        return analytic_dpm_variance(d.schedule, d.eps_norm_sq, data_variance=d.data_variance,
                                     lambda2=lambda2)

    def step(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None,
             variant=0) -> StepOutput:
        out = self.model_output(x, t)
        view = (-1,) + (1,) * (x.ndim - 1)
        sample = (self.x0_coef[t].reshape(view) * out["pred_xstart"]
                  + self.eps_coef[t].reshape(view) * out["pred_eps"])
        if noise is not None:
            sample = sample + self.sigma[t].reshape(view) * noise
        return StepOutput(sample, out["pred_xstart"], out["pred_eps"], self.variance[t[:1]][0])

    def record_variance(self, step: int, output: StepOutput) -> float:
        return float(self.variance_host[step])


SPEC = SamplerSpec(
    name="ddim", label="DDIM",
    description="DDIM: deterministic for η = 0, DDPM's posterior variance for η = 1 "
                "(Song et al. 2021)",
    deterministic=True, order=1, make_run=DDIMRun, options=(ETA, VARIANCE),
    default_steps=lambda T: min(50, T))
