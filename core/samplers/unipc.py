"""UniPC (Zhao et al. 2023), the B(h) = e^h - 1 ("bh2") variant in data prediction, as
diffusers' UniPCMultistepScheduler runs it: a multistep predictor UniP-p and, at the start
of every later step, a corrector UniC-p that re-uses the model output at the new point (no
extra network call), which raises the order to p + 1.

With hh = -h, h = lambda_t - lambda_s0, phi_1 = e^hh - 1 and B(h) = e^hh - 1, the predictor
from x_s0 with the x0 predictions m_0 (at s0) and m_i (at earlier points, r_i = (lambda_si -
lambda_s0) / h) is

    x_t = (sigma_t / sigma_s0) x_s0 - alpha_t phi_1 m_0 - alpha_t B(h) sum_i rho_i (m_i - m_0) / r_i

with rho = 1/2 for order 2 and rho solving R rho = b (R_ji = r_i^(j-1), b_j = the Taylor
factors of phi) for order 3; the corrector has the same form with the new point's
prediction as one more term. Orders are lowered at the start (too few past points) and at
the end (lower_order_final): p_k = min(order, S - k, k + 1). The last step goes to the data.
Global order p + 1: 3 for UniPC-2 and 4 for UniPC-3 (measured in float64 on 8 Gaussians
with the exact eps at 128-512 steps, tests/test_solver_orders.py; at fewer steps the
lowered orders of the first steps keep the observed slope nearer 3).
"""

from __future__ import annotations

import math

import numpy as np

from core.samplers.base import SamplerSpec
from core.samplers.multistep import MultistepRun


def _rhos(rks: list[float], hh: float, order: int, corrector: bool) -> np.ndarray:
    """diffusers' R and b for UniP/UniC-order, and the solution the update uses."""
    h_phi_1 = math.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1.0
    b_h = math.expm1(hh)
    ratios = np.asarray([*rks, 1.0])
    rows, b, factorial = [], [], 1
    for i in range(1, order + 1):
        rows.append(ratios ** (i - 1))
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1.0 / factorial
    R, b = np.asarray(rows), np.asarray(b)
    if corrector:
        return np.array([0.5]) if order == 1 else np.linalg.solve(R, b)
    return np.array([0.5]) if order == 2 else np.linalg.solve(R[:-1, :-1], b[:-1])


class UniPCRun(MultistepRun):
    ORDER = 2

    @property
    def HISTORY(self) -> int:  # noqa: N802 - the base class reads it as a constant
        return self.ORDER

    def coefficients(self, alpha, sigma, lam):
        S, K = self.num_steps, self.ORDER
        keep, from_last, pred_x = np.ones(S), np.zeros(S), np.zeros(S)
        corr, pred = np.zeros((S, K + 1)), np.zeros((S, K + 1))
        orders = [min(K, S - k, k + 1) for k in range(S)]
        for k in range(S):
            if k > 0:                         # UniC at x_k, with the order of step k - 1
                keep[k], from_last[k] = 0.0, 1.0
                self._update(corr[k], from_last, k, alpha, sigma, lam, orders[k - 1],
                             source=k - 1, target=k, corrector=True)
            pred_x[k] = 1.0
            self._update(pred[k], pred_x, k, alpha, sigma, lam, orders[k], source=k,
                         target=k + 1, corrector=False)
        return keep, from_last, pred_x, corr, pred

    @staticmethod
    def _update(row, x_coef, k, alpha, sigma, lam, order, source, target, corrector):
        """Fill row (coefficients of m_k, m_{k-1}, ...) and scale x_coef[k] for a step from
        point `source` to `target`; m_k is the prediction at `source` for the predictor and
        at `target` (the new point) for the corrector, whose m_0 is then m_{k-1}."""
        h = lam[target] - lam[source]
        x_coef[k] *= sigma[target] / sigma[source]
        if not math.isfinite(h):                        # to the data: x_t = m_0
            row[1 if corrector else 0] += 1.0
            return
        hh = -h
        h_phi_1, b_h = math.expm1(hh), math.expm1(hh)
        m0 = 1 if corrector else 0                      # the index of m_0 in the row
        row[m0] += -alpha[target] * h_phi_1
        rks = [(lam[source - i] - lam[source]) / h for i in range(1, order)]
        rhos = _rhos(rks, hh, order, corrector)
        scale = -alpha[target] * b_h
        for i, rk in enumerate(rks, start=1):           # D1_i = (m_i - m_0) / r_i
            row[m0 + i] += scale * rhos[i - 1] / rk
            row[m0] -= scale * rhos[i - 1] / rk
        if corrector:                                   # the new point: rho_last (m_t - m_0)
            row[0] += scale * rhos[-1]
            row[m0] -= scale * rhos[-1]


class UniPC3Run(UniPCRun):
    ORDER = 3


SPEC = SamplerSpec(
    name="unipc", label="UniPC-2 (bh2)",
    description="UniPC bh2 of order 2: a multistep predictor and a corrector that re-uses "
                "the next model output (Zhao et al. 2023)",
    deterministic=True, order=3, make_run=UniPCRun, default_steps=lambda T: min(20, T))
SPEC_3 = SamplerSpec(
    name="unipc_3", label="UniPC-3 (bh2)",
    description="UniPC bh2 of order 3 (Zhao et al. 2023)",
    deterministic=True, order=4, make_run=UniPC3Run, default_steps=lambda T: min(20, T))
