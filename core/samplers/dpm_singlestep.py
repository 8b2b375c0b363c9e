"""DPM-Solver-2 and DPM-Solver-3 (Lu et al. 2022, "DPM-Solver", algorithms 4 and 5 with
r1 = 1/2 and r1 = 1/3, r2 = 2/3): singlestep solvers of the probability-flow ODE in noise
prediction, with intermediate network calls between the steps. From s to t with
h = lambda_t - lambda_s (lambda = log(alpha / sigma)) and eps_0 = eps(x_s, s):

  order 2:  u  = (a_s1/a_s) x - s_s1 (e^(r1 h) - 1) eps_0
            x_t = (a_t/a_s) x - s_t (e^h - 1) eps_0 - s_t/(2 r1) (e^h - 1) (eps(u, s1) - eps_0)
  order 3:  u1 = (a_s1/a_s) x - s_s1 (e^(r1 h) - 1) eps_0,            D1 = eps(u1, s1) - eps_0
            u2 = (a_s2/a_s) x - s_s2 (e^(r2 h) - 1) eps_0
                 - s_s2 r2/r1 ((e^(r2 h) - 1)/(r2 h) - 1) D1,           D2 = eps(u2, s2) - eps_0
            x_t = (a_t/a_s) x - s_t (e^h - 1) eps_0 - s_t/r2 ((e^h - 1)/h - 1) D2

(a = alpha = sqrt(abar), s_ = sigma = sqrt(1 - abar), s_i at lambda_s + r_i h.) The last step
goes to the data and is first order (the paper lowers the order at the end: near the data a
high-order step over a long h is unstable), so a run of S steps calls the network
order (S - 1) + 1 times.
"""

from __future__ import annotations

import numpy as np
import torch

from core.samplers.base import SamplerRun, SamplerSpec, StepOutput
from core.samplers.multistep import vp_terms

LAST = "last"


class DPMSolver2Run(SamplerRun):
    RATIOS = (0.5,)

    def __init__(self, diffusion, model, **kwargs):
        super().__init__(diffusion, model, **kwargs)
        s = self.grid_sigmas()
        abar = diffusion.schedule.alphas_cumprod
        abar_next = diffusion.schedule.alphas_cumprod_prev      # index t goes to t - 1
        alpha, sigma, lam = vp_terms(abar)
        alpha_t, sigma_t, lam_t = vp_terms(abar_next)
        with np.errstate(invalid="ignore"):
            h = np.where(np.isfinite(lam_t), lam_t - lam, np.nan)  # nan at the data: unused
        self.here = self.point_tables(s)
        self.mids, self.coef = [], {}
        for i, r in enumerate(self.RATIOS):
            s_mid = np.exp(-(lam + r * h))                       # VE sigma = e^-lambda
            s_mid = np.where(np.isfinite(s_mid), s_mid, s)
            self.mids.append(self.point_tables(s_mid))
            a_mid, sig_mid = 1.0 / np.sqrt(1.0 + s_mid ** 2), s_mid / np.sqrt(1.0 + s_mid ** 2)
            self.coef[f"u{i}_x"] = self.table(a_mid / alpha)
            self.coef[f"u{i}_e"] = self.table(np.nan_to_num(-sig_mid * np.expm1(r * h)))
        phi = np.nan_to_num(-sigma_t * np.expm1(h))
        self.coef["x"] = self.table(alpha_t / alpha)
        self.coef["e"] = self.table(phi)
        if len(self.RATIOS) == 1:
            self.coef["d"] = self.table(np.nan_to_num(phi / (2.0 * self.RATIOS[0])))
        else:
            r1, r2 = self.RATIOS
            s_mid2 = np.where(np.isfinite(h), np.exp(-(lam + r2 * h)), s)
            sig_mid2 = s_mid2 / np.sqrt(1.0 + s_mid2 ** 2)
            with np.errstate(invalid="ignore", divide="ignore"):
                self.coef["u1_d"] = self.table(np.nan_to_num(
                    -sig_mid2 * r2 / r1 * (np.expm1(r2 * h) / (r2 * h) - 1.0)))
                self.coef["d"] = self.table(np.nan_to_num(
                    -sigma_t / r2 * (np.expm1(h) / h - 1.0)))
        # the first-order last step to the data is x0 itself (variant LAST)

    def variant(self, step: int):
        return LAST if step == 0 else 0

    def step(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None,
             variant=0) -> StepOutput:
        x0, eps0 = self.predict(x, t, self.here)
        zero = torch.zeros((), device=x.device)
        if variant == LAST:
            return StepOutput(x0, x0, eps0, zero)
        view = (-1,) + (1,) * (x.ndim - 1)
        c = {name: table[t].reshape(view) for name, table in self.coef.items()}
        u = c["u0_x"] * x + c["u0_e"] * eps0
        _, eps1 = self.predict(u, t, self.mids[0])
        if len(self.RATIOS) == 1:
            x_next = c["x"] * x + c["e"] * eps0 + c["d"] * (eps1 - eps0)
        else:
            d1 = eps1 - eps0
            u2 = c["u1_x"] * x + c["u1_e"] * eps0 + c["u1_d"] * d1
            _, eps2 = self.predict(u2, t, self.mids[1])
            x_next = c["x"] * x + c["e"] * eps0 + c["d"] * (eps2 - eps0)
        return StepOutput(x_next, x0, eps0, zero)


class DPMSolver3Run(DPMSolver2Run):
    RATIOS = (1.0 / 3.0, 2.0 / 3.0)


SPEC_2 = SamplerSpec(
    name="dpm_2s", label="DPM-Solver-2 (singlestep)",
    description="DPM-Solver-2: second-order singlestep ODE solver in noise prediction, one "
                "extra network call per step (Lu et al. 2022)",
    deterministic=True, order=2, make_run=DPMSolver2Run, model_calls_per_step=2,
    default_steps=lambda T: min(10, T), nfe=lambda steps: 2 * steps - 1)
SPEC_3 = SamplerSpec(
    name="dpm_3s", label="DPM-Solver-3 (singlestep)",
    description="DPM-Solver-3: third-order singlestep ODE solver in noise prediction, two "
                "extra network calls per step (Lu et al. 2022)",
    deterministic=True, order=3, make_run=DPMSolver3Run, model_calls_per_step=3,
    default_steps=lambda T: min(7, T), nfe=lambda steps: 3 * steps - 2)
