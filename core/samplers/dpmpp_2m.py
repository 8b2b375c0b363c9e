"""DPM-Solver++ 2M (Lu et al. 2022, "DPM-Solver++", Algorithm 2): the multistep second-order
solver of the probability-flow ODE in data prediction, as diffusers'
DPMSolverMultistepScheduler runs it (solver_order 2, "midpoint", final step to sigma = 0):

    h = lambda_{k+1} - lambda_k,  r = (lambda_k - lambda_{k-1}) / h,  D = m_k + (m_k - m_{k-1}) / (2 r)
    x_{k+1} = (sigma_{k+1} / sigma_k) x_k - alpha_{k+1} (e^{-h} - 1) D

with the first step and the last step (to the data) first order, D = m_k (DDIM's update).
"""

from __future__ import annotations

import numpy as np

from core.samplers.base import SamplerSpec
from core.samplers.multistep import MultistepRun


class DPMSolverPP2MRun(MultistepRun):
    HISTORY = 1

    def coefficients(self, alpha, sigma, lam):
        S = self.num_steps
        keep, from_last = np.ones(S), np.zeros(S)
        pred_x, corr, pred = np.zeros(S), np.zeros((S, 2)), np.zeros((S, 2))
        for k in range(S):
            h = lam[k + 1] - lam[k]
            pred_x[k] = sigma[k + 1] / sigma[k]
            first = -alpha[k + 1] * np.expm1(-h)            # the coefficient of D
            if k == 0 or k == S - 1:
                pred[k, 0] = first
            else:
                r = (lam[k] - lam[k - 1]) / h
                pred[k, 0] = first * (1.0 + 0.5 / r)
                pred[k, 1] = -first * 0.5 / r
        return keep, from_last, pred_x, corr, pred


SPEC = SamplerSpec(
    name="dpmpp_2m", label="DPM-Solver++ 2M",
    description="DPM-Solver++ 2M: second-order multistep ODE solver in data prediction "
                "(Lu et al. 2022); first order at the first and last step",
    deterministic=True, order=2, make_run=DPMSolverPP2MRun, default_steps=lambda T: min(20, T))
