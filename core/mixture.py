"""Exact reverse-process analysis for data that is a mixture of isotropic Gaussians.

Data x_0 ~ sum_k pi_k N(m_k, s^2 I) in D dimensions (the "gaussian", "8gaussians" and
"grid25" toys). Under the forward process q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)
every quantity of interest stays a Gaussian mixture with a shared isotropic variance:

    marginal    q(x_t)            = sum_k pi_k N(sqrt(abar_t) m_k, sigma_t^2 I),
                                    sigma_t^2 = abar_t s^2 + 1 - abar_t
    component   q(k | x_t)        = pi_k N(x_t; sqrt(abar_t) m_k, sigma_t^2 I) / q(x_t)
    reverse     q(x_{t-1} | x_t)  = sum_k q(k | x_t) N(mu_k(x_t), v_t I), with
                                    1 / v_t = 1 / sigma_{t-1}^2 + alpha_t / beta_t,
                                    mu_k = v_t (sqrt(abar_{t-1}) m_k / sigma_{t-1}^2
                                               + sqrt(alpha_t) x_t / beta_t)

(the reverse step is Bayes' rule for the pair x_{t-1} ~ N(sqrt(abar_{t-1}) m_k,
sigma_{t-1}^2 I), x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps within component k).
At t = 0, x_{-1} means x_0: abar_{-1} = 1 and sigma_{-1}^2 = s^2.

Entropies use the chain rule, exact for any joint density:

    H(X_{t-1} | X_t) = H(X_t | X_{t-1}) + H(X_{t-1}) - H(X_t),
    H(X_t | X_{t-1}) = D/2 log(2 pi e beta_t)         (closed form),

so the true conditional entropy needs only the two marginal mixture entropies, each a
Monte Carlo average of -log q(x) over samples of q, reported with its standard error. The
expected reverse variance E_{x_t}[tr Cov q(x_{t-1}|x_t)] / D is a Monte Carlo average of a
closed form (law of total variance over the components). Everything is float64 numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .schedule import NoiseSchedule

LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class McEstimate:
    """A Monte Carlo estimate: value and its standard error (same shape)."""

    value: np.ndarray
    stderr: np.ndarray


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    peak = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(peak, axis=axis) + np.log(np.sum(np.exp(a - peak), axis=axis))


class MixtureReverseProcess:
    """Closed-form forward marginals and true reverse steps of an isotropic Gaussian mixture.

    `mixture` has `means` (K, D), `std` (shared s) and `weights` (K,) summing to 1;
    `schedule` is a NoiseSchedule. Timestep arguments follow the zero-based convention;
    t = -1 denotes the data distribution itself.
    """

    def __init__(self, mixture, schedule: NoiseSchedule):
        self.means = np.asarray(mixture.means, dtype=np.float64)
        if self.means.ndim != 2:
            raise ValueError(f"mixture means must have shape (K, D), got {self.means.shape}")
        self.std = float(mixture.std)
        weights = np.asarray(mixture.weights, dtype=np.float64)
        if weights.shape != (self.means.shape[0],) or np.any(weights < 0):
            raise ValueError("mixture weights must be K non-negative numbers")
        self.weights = weights / weights.sum()
        self.log_weights = np.log(np.maximum(self.weights, 1e-300))
        self.schedule = schedule
        self.dim = self.means.shape[1]

    # -- marginals q(x_t) -------------------------------------------------------
    def abar(self, t: int) -> float:
        """abar_t, with abar_{-1} = 1."""
        return 1.0 if t < 0 else float(self.schedule.alphas_cumprod[t])

    def marginal_params(self, t: int) -> tuple[np.ndarray, float]:
        """(component means (K, D), shared variance sigma_t^2) of q(x_t)."""
        abar = self.abar(t)
        return np.sqrt(abar) * self.means, abar * self.std**2 + (1.0 - abar)

    def component_log_joint(self, x: np.ndarray, t: int) -> np.ndarray:
        """log pi_k + log N(x; sqrt(abar_t) m_k, sigma_t^2 I): (N, K) for x of shape (N, D)."""
        means, var = self.marginal_params(t)
        sq = np.sum((x[:, None, :] - means[None, :, :]) ** 2, axis=-1)
        return self.log_weights[None, :] - 0.5 * sq / var - 0.5 * self.dim * (LOG_2PI + np.log(var))

    def marginal_log_density(self, x: np.ndarray, t: int) -> np.ndarray:
        """log q(x_t) in nats: (N,) for x of shape (N, D)."""
        return _logsumexp(self.component_log_joint(np.asarray(x, dtype=np.float64), t), axis=1)

    def sample_marginal(self, n: int, t: int, rng: np.random.Generator) -> np.ndarray:
        """n draws of x_t ~ q(x_t): (n, D)."""
        means, var = self.marginal_params(t)
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        return means[k] + np.sqrt(var) * rng.standard_normal((n, self.dim))

    def posterior_weights(self, x_t: np.ndarray, t: int) -> np.ndarray:
        """q(k | x_t): (N, K), rows sum to 1."""
        log_joint = self.component_log_joint(x_t, t)
        return np.exp(log_joint - _logsumexp(log_joint, axis=1)[:, None])

    def denoised_mean(self, x_t: np.ndarray, t: int) -> np.ndarray:
        """E[x_0 | x_t]: (N, D). Within component k, E[x_0|x_t,k] = m_k + sqrt(abar) s^2 /
        sigma_t^2 (x_t - sqrt(abar) m_k)."""
        abar = self.abar(t)
        means, var = self.marginal_params(t)
        gain = np.sqrt(abar) * self.std**2 / var
        per_component = self.means[None] + gain * (x_t[:, None, :] - means[None])
        return np.einsum("nk,nkd->nd", self.posterior_weights(x_t, t), per_component)

    def optimal_eps(self, x_t: np.ndarray, t: int) -> np.ndarray:
        """E[eps | x_t] = (x_t - sqrt(abar_t) E[x_0|x_t]) / sqrt(1 - abar_t): the ideal
        eps-prediction network, (N, D)."""
        abar = self.abar(t)
        return (x_t - np.sqrt(abar) * self.denoised_mean(x_t, t)) / np.sqrt(1.0 - abar)

    # -- the true reverse step q(x_{t-1} | x_t) -----------------------------------------
    def reverse_step(self, x_t: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray, float]:
        """q(x_{t-1} | x_t) as (weights (N, K), means (N, K, D), shared variance v_t)."""
        beta = float(self.schedule.betas[t])
        alpha = 1.0 - beta
        prev_means, prev_var = self.marginal_params(t - 1)
        v = 1.0 / (1.0 / prev_var + alpha / beta)
        means = v * (prev_means[None] / prev_var + np.sqrt(alpha) * x_t[:, None, :] / beta)
        return self.posterior_weights(x_t, t), means, v

    def reverse_variance(self, x_t: np.ndarray, t: int) -> np.ndarray:
        """tr Cov q(x_{t-1} | x_t) / D per point: (N,). Law of total variance:
        v_t + (1/D) sum_k w_k |mu_k - mu_bar|^2."""
        weights, means, v = self.reverse_step(x_t, t)
        mean = np.einsum("nk,nkd->nd", weights, means)
        spread = np.einsum("nk,nk->n", weights, np.sum((means - mean[:, None]) ** 2, axis=-1))
        return v + spread / self.dim

    # -- Monte Carlo summaries --------------------------------------------------------
    def expected_reverse_variance(self, t: int, n: int, rng: np.random.Generator) -> McEstimate:
        """E_{x_t}[tr Cov q(x_{t-1}|x_t)] / D (per dimension) with its standard error."""
        values = self.reverse_variance(self.sample_marginal(n, t, rng), t)
        return McEstimate(np.float64(values.mean()), np.float64(values.std(ddof=1) / np.sqrt(n)))

    def marginal_entropy(self, t: int, n: int, rng: np.random.Generator) -> McEstimate:
        """H(X_t) = -E log q(x_t) in nats (total over D dims) with its standard error."""
        log_q = self.marginal_log_density(self.sample_marginal(n, t, rng), t)
        return McEstimate(np.float64(-log_q.mean()), np.float64(log_q.std(ddof=1) / np.sqrt(n)))

    def forward_step_entropy(self, t: int) -> float:
        """H(X_t | X_{t-1}) = D/2 log(2 pi e beta_t), nats."""
        return 0.5 * self.dim * (LOG_2PI + 1.0 + np.log(self.schedule.betas[t]))

    def reverse_entropy(self, t: int, n: int, rng: np.random.Generator) -> McEstimate:
        """H(X_{t-1} | X_t) = H(X_t|X_{t-1}) + H(X_{t-1}) - H(X_t), nats (total over D).

        The two marginal entropies are estimated from independent samples, so the standard
        errors add in quadrature."""
        h_prev = self.marginal_entropy(t - 1, n, rng)
        h_now = self.marginal_entropy(t, n, rng)
        value = self.forward_step_entropy(t) + h_prev.value - h_now.value
        return McEstimate(np.float64(value), np.float64(np.hypot(h_prev.stderr, h_now.stderr)))

    def eps_norm_sq(self, t: int, n: int, rng: np.random.Generator) -> float:
        """E_{x_t} |E[eps | x_t]|^2 / D: the quantity Analytic-DPM estimates with a network."""
        eps = self.optimal_eps(self.sample_marginal(n, t, rng), t)
        return float(np.mean(np.sum(eps**2, axis=1)) / self.dim)


def analytic_dpm_variance(schedule: NoiseSchedule, eps_norm_sq) -> np.ndarray:
    """Analytic-DPM's optimal reverse variance (Bao et al. 2022, Theorem 1, DDPM case).

    With lambda_t^2 = beta-tilde_t (the DDPM posterior variance), bbar_t = 1 - abar_t and
    Gamma_t = E|eps_theta(x_t, t)|^2 / D (an estimate of bbar_t E|grad log q_t|^2 / D):

        sigma*_t^2 = lambda_t^2 + (sqrt(bbar_t / alpha_t) - sqrt(bbar_{t-1} - lambda_t^2))^2
                     * (1 - Gamma_t)

    `eps_norm_sq` is (T,). Returns (T,) float64. With the exact E[eps|x_t] this equals the
    expected per-dimension variance of the true reverse step (tested); for N(0, I) data
    (Gamma_t = 1 - abar_t) it equals beta_t.
    """
    gamma = np.asarray(eps_norm_sq, dtype=np.float64)
    lam2 = schedule.posterior_variance
    bbar = 1.0 - schedule.alphas_cumprod
    bbar_prev = 1.0 - schedule.alphas_cumprod_prev
    gap = np.sqrt(bbar / schedule.alphas) - np.sqrt(np.maximum(bbar_prev - lam2, 0.0))
    return lam2 + gap**2 * (1.0 - gamma)


def reverse_process_curves(mixture, schedule: NoiseSchedule, timesteps, n: int = 4000,
                           seed: int = 0) -> dict[str, np.ndarray]:
    """Per-t truth for the app and the reports, at the given timesteps (K,):

    true_variance (+ _err): E[Var q(x_{t-1}|x_t)] per dimension;
    true_entropy (+ _err): H(X_{t-1}|X_t) in nats per dimension;
    marginal_entropy (+ _err): H(X_t) in nats per dimension;
    marginal_entropy_delta: H(X_t) - H(X_{t-1}) per dimension (same samples as above);
    analytic_variance: Analytic-DPM's sigma*^2 with the exact E[eps|x_t].
    """
    process = MixtureReverseProcess(mixture, schedule)
    rng = np.random.default_rng(seed)
    dim = process.dim
    ts = np.asarray(list(timesteps), dtype=np.int64)
    out = {name: np.zeros(len(ts)) for name in (
        "true_variance", "true_variance_err", "true_entropy", "true_entropy_err",
        "marginal_entropy", "marginal_entropy_err", "marginal_entropy_delta", "eps_norm_sq")}
    for i, t in enumerate(ts):
        var = process.expected_reverse_variance(int(t), n, rng)
        h_prev = process.marginal_entropy(int(t) - 1, n, rng)
        h_now = process.marginal_entropy(int(t), n, rng)
        out["true_variance"][i], out["true_variance_err"][i] = var.value, var.stderr
        out["true_entropy"][i] = (process.forward_step_entropy(int(t)) + h_prev.value - h_now.value) / dim
        out["true_entropy_err"][i] = np.hypot(h_prev.stderr, h_now.stderr) / dim
        out["marginal_entropy"][i] = h_now.value / dim
        out["marginal_entropy_err"][i] = h_now.stderr / dim
        out["marginal_entropy_delta"][i] = (h_now.value - h_prev.value) / dim
        out["eps_norm_sq"][i] = process.eps_norm_sq(int(t), n, rng)
    gamma_full = np.zeros(schedule.num_timesteps)
    gamma_full[ts] = out["eps_norm_sq"]
    full = analytic_dpm_variance(schedule, gamma_full)
    out["analytic_variance"] = full[ts]
    out["t"] = ts
    return out
