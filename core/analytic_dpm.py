"""Analytic-DPM (Bao et al. 2022): the optimal variance of a Gaussian reverse step, from
the score the eps-network already estimates, and the range that must contain it.

Shapes: every function takes and returns float64 numpy arrays over timesteps, (T,) for the
whole schedule or (K,) at given zero-based timesteps.
"""

from __future__ import annotations

import numpy as np

from .schedule import NoiseSchedule


def analytic_dpm_range(schedule: NoiseSchedule, data_variance: float,
                       timesteps=None) -> tuple[np.ndarray, np.ndarray]:
    """The interval that holds the optimal reverse variance, per dimension: (low, high).

    Under q(x_{t-1} | x_t, x_0) = N(c_t x_0 + c'_t x_t, beta-tilde_t I) (c_t =
    posterior_mean_coef1), the law of total variance gives
    Var(x_{t-1} | x_t) = beta-tilde_t + c_t^2 Var(x_0 | x_t), and 0 <= E Var(x_0|x_t) <= Var(x_0),
    so sigma*_t^2 lies in [beta-tilde_t, beta-tilde_t + c_t^2 Var(x_0)], with Var(x_0) the
    per-dimension data variance tr Cov(x_0) / D. (Bao et al. 2022, Theorem 2, state it with
    (b - a)^2 / 4 for data in [a, b]; the data-variance form also holds for unbounded data.)
    Arrays are (T,), or (K,) at the given timesteps.
    """
    ts = np.arange(schedule.num_timesteps) if timesteps is None else np.asarray(timesteps)
    low = schedule.posterior_variance[ts]
    return low, low + schedule.posterior_mean_coef1[ts] ** 2 * float(data_variance)


def analytic_dpm_variance(schedule: NoiseSchedule, eps_norm_sq, timesteps=None,
                          data_variance: float | None = None) -> np.ndarray:
    """Analytic-DPM's optimal reverse variance (Bao et al. 2022, Theorem 1, DDPM case).

    With lambda_t^2 = beta-tilde_t (the DDPM posterior variance), bbar_t = 1 - abar_t and
    Gamma_t = E|eps_theta(x_t, t)|^2 / D (an estimate of bbar_t E|grad log q_t|^2 / D):

        sigma*_t^2 = lambda_t^2 + (sqrt(bbar_t / alpha_t) - sqrt(bbar_{t-1} - lambda_t^2))^2
                     * (1 - Gamma_t)

    `eps_norm_sq` is (T,), or (K,) at `timesteps`; returns the same shape, float64. With the
    exact E[eps|x_t] this equals the expected per-dimension variance of the true reverse
    step (tested); for N(0, I) data (Gamma_t = 1 - abar_t) it equals beta_t. A network's
    Gamma_t carries Monte Carlo and model error, and at the last steps of a cosine or
    respaced schedule the raw formula can leave the possible range (even go negative):
    given `data_variance` (tr Cov(x_0) / D), the result is clipped to analytic_dpm_range,
    as Bao et al. clip theirs.
    """
    ts = np.arange(schedule.num_timesteps) if timesteps is None else np.asarray(timesteps)
    gamma = np.asarray(eps_norm_sq, dtype=np.float64)
    if gamma.shape != ts.shape:
        raise ValueError(f"eps_norm_sq has shape {gamma.shape}, expected {ts.shape}")
    lam2 = schedule.posterior_variance[ts]
    bbar = 1.0 - schedule.alphas_cumprod[ts]
    bbar_prev = 1.0 - schedule.alphas_cumprod_prev[ts]
    gap = np.sqrt(bbar / schedule.alphas[ts]) - np.sqrt(np.maximum(bbar_prev - lam2, 0.0))
    sigma2 = lam2 + gap**2 * (1.0 - gamma)
    if data_variance is not None:
        low, high = analytic_dpm_range(schedule, data_variance, ts)
        sigma2 = np.clip(sigma2, low, high)
    return sigma2
