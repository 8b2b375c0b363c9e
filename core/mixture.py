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

so the true conditional entropy needs only the entropy change H(X_{t-1}) - H(X_t). It is a
Monte Carlo average over *paired* draws: the same component k and the same z ~ N(0, I) give
x_{t-1} = sqrt(abar_{t-1}) m_k + sigma_{t-1} z and x_t = sqrt(abar_t) m_k + sigma_t z, each
exactly distributed as its marginal, so

    H(X_{t-1}) - H(X_t) = E[log q_t(x_t) - log q_{t-1}(x_{t-1})]

is unbiased and, since the two log-densities move together, far less noisy than two
independent entropy estimates. A control variate removes the rest: g_s, the Gaussian with
the mean and covariance of q_s, has E_{q_s}[-log g_s(x)] = H(g_s) in closed form (true for
any density with those moments), so the same pair's log g_t(x_t) - log g_{t-1}(x_{t-1}) has
a known mean; subtracting it (times the regression coefficient) leaves almost nothing once
q_t is nearly Gaussian. Standard errors (n = 4000, 8 Gaussians, T = 100): ~1e-4 nats at
early t, ~1e-8 at late t, always small against the gap between the bounds,
D/2 log(beta_t / beta-tilde_t), which shrinks to ~1e-5 at late t. The expected reverse variance
E_{x_t}[tr Cov q(x_{t-1}|x_t)] / D is a Monte Carlo average of a closed form (law of total
variance over the components). Every estimate carries its standard error (sample standard
deviation / sqrt(n)). Caveat: for tight, well-separated components (grid25, s = 0.1) at the
first few t, the log-density change is heavy-tailed (rare draws between components), and a
single run's standard error can be far too small; a spread over seeds is the safer error
there. Everything is float64 numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .analytic_dpm import analytic_dpm_range, analytic_dpm_variance  # noqa: F401 (re-exported)
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


def _regression_coefficient(f: np.ndarray, c: np.ndarray) -> float:
    """b = Cov(f, c) / Var(c), the variance-minimising control-variate weight (0 if c is
    constant). Estimated from the same draws, which biases the result by O(1/n) only."""
    c_var = float(c.var())
    return float(np.mean((f - f.mean()) * (c - c.mean())) / c_var) if c_var > 0 else 0.0


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
        self.data_mean, self.data_cov = _moments(self.means, self.std, self.weights)

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
        """H(X_t) = -E log q(x_t) in nats (total over D) with its standard error.

        Control variate as in entropy_change: -log q(x) + b (log g_t(x) + H(g_t)) has the
        same mean, and b = Cov / Var removes most of the noise once q_t is nearly Gaussian."""
        x = self.sample_marginal(n, t, rng)
        f = -self.marginal_log_density(x, t)
        c = self.gaussian_log_density(x, t) + self.gaussian_entropy(t)  # mean zero
        residual = f - _regression_coefficient(f, c) * c
        return McEstimate(np.float64(residual.mean()), np.float64(residual.std(ddof=1) / np.sqrt(n)))

    def forward_step_entropy(self, t: int) -> float:
        """H(X_t | X_{t-1}) = D/2 log(2 pi e beta_t), nats."""
        return 0.5 * self.dim * (LOG_2PI + 1.0 + np.log(self.schedule.betas[t]))

    def sample_marginal_pair(self, n: int, t: int, rng: np.random.Generator
                             ) -> tuple[np.ndarray, np.ndarray]:
        """n paired draws (x_{t-1}, x_t), each (n, D): one component k and one z per pair,
        x_s = sqrt(abar_s) m_k + sigma_s z. Each is exactly q(x_s)-distributed (not a draw
        of the forward chain: only the marginals are right, which is all an entropy needs)."""
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        z = rng.standard_normal((n, self.dim))
        prev_means, prev_var = self.marginal_params(t - 1)
        means, var = self.marginal_params(t)
        return prev_means[k] + np.sqrt(prev_var) * z, means[k] + np.sqrt(var) * z

    def gaussian_params(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(mean (D,), covariance (D, D)) of q(x_t): sqrt(abar) mu_0, abar C_0 + (1 - abar) I."""
        abar = self.abar(t)
        return np.sqrt(abar) * self.data_mean, abar * self.data_cov + (1.0 - abar) * np.eye(self.dim)

    def gaussian_log_density(self, x: np.ndarray, t: int) -> np.ndarray:
        """log g_t(x), g_t = N(mean, cov of q(x_t)): (N,) for x of shape (N, D)."""
        mean, cov = self.gaussian_params(t)
        chol = np.linalg.cholesky(cov)
        white = np.linalg.solve(chol, (x - mean).T)
        return (-0.5 * np.sum(white**2, axis=0) - np.sum(np.log(np.diag(chol)))
                - 0.5 * self.dim * LOG_2PI)

    def gaussian_entropy(self, t: int) -> float:
        """H(g_t) = 1/2 log det(2 pi e cov of q(x_t)) = E_{q_t}[-log g_t(x)], nats."""
        _, logdet = np.linalg.slogdet(self.gaussian_params(t)[1])
        return 0.5 * (self.dim * (LOG_2PI + 1.0) + logdet)

    def entropy_change(self, t: int, n: int, rng: np.random.Generator) -> McEstimate:
        """H(X_{t-1}) - H(X_t) in nats (total over D): paired draws with the moment-matched
        Gaussian as control variate (module docstring). f = log q_t(x_t) - log q_{t-1}(x_{t-1}),
        c = log g_t(x_t) - log g_{t-1}(x_{t-1}), E c = H(g_{t-1}) - H(g_t);
        estimate = mean(f - b c) + b E c with b = Cov(f, c) / Var(c)."""
        x_prev, x_now = self.sample_marginal_pair(n, t, rng)
        f = self.marginal_log_density(x_now, t) - self.marginal_log_density(x_prev, t - 1)
        c = self.gaussian_log_density(x_now, t) - self.gaussian_log_density(x_prev, t - 1)
        c_mean = self.gaussian_entropy(t - 1) - self.gaussian_entropy(t)
        residual = f - _regression_coefficient(f, c) * (c - c_mean)
        return McEstimate(np.float64(residual.mean()), np.float64(residual.std(ddof=1) / np.sqrt(n)))

    def reverse_entropy(self, t: int, n: int, rng: np.random.Generator) -> McEstimate:
        """H(X_{t-1} | X_t) = H(X_t|X_{t-1}) + [H(X_{t-1}) - H(X_t)], nats (total over D).

        The first term is closed form; the bracket is entropy_change (paired draws and a
        control variate), whose standard error is the estimate's."""
        change = self.entropy_change(t, n, rng)
        return McEstimate(np.float64(self.forward_step_entropy(t) + change.value), change.stderr)

    def eps_norm_sq(self, t: int, n: int, rng: np.random.Generator) -> float:
        """E_{x_t} |E[eps | x_t]|^2 / D: the quantity Analytic-DPM estimates with a network."""
        eps = self.optimal_eps(self.sample_marginal(n, t, rng), t)
        return float(np.mean(np.sum(eps**2, axis=1)) / self.dim)


def _moments(means: np.ndarray, std: float, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), covariance (D, D)) of sum_k w_k N(m_k, s^2 I), weights summing to 1:
    the weighted spread of the means plus s^2 I."""
    mean = weights @ means
    spread = means - mean
    return mean, (weights[:, None] * spread).T @ spread + std**2 * np.eye(means.shape[1])


def mixture_data_variance(mixture) -> float:
    """tr Cov(x_0) / D of an isotropic Gaussian mixture: spread of the means plus s^2."""
    means = np.asarray(mixture.means, dtype=np.float64)
    weights = np.asarray(mixture.weights, dtype=np.float64)
    _, cov = _moments(means, float(mixture.std), weights / weights.sum())
    return float(np.trace(cov) / means.shape[1])


def reverse_process_curves(mixture, schedule: NoiseSchedule, timesteps, n: int = 4000,
                           seed: int = 0) -> dict[str, np.ndarray]:
    """Per-t truth for the app and the reports, at the given timesteps (K,), float64:

    true_variance (+ _err): E[Var q(x_{t-1}|x_t)] per dimension;
    true_entropy (+ _err): H(X_{t-1}|X_t) in nats per dimension (paired draws);
    marginal_entropy (+ _err): H(X_t) in nats per dimension (its own draws);
    marginal_entropy_delta (+ _err): H(X_t) - H(X_{t-1}) per dimension (the same paired
        draws as true_entropy, so the two are consistent to rounding).
    (Analytic-DPM's sigma*^2 with the exact score equals true_variance: see eps_norm_sq and
    core.analytic_dpm.)
    """
    process = MixtureReverseProcess(mixture, schedule)
    rng = np.random.default_rng(seed)
    dim = process.dim
    ts = np.asarray(list(timesteps), dtype=np.int64)
    out = {name: np.zeros(len(ts)) for name in (
        "true_variance", "true_variance_err", "true_entropy", "true_entropy_err",
        "marginal_entropy", "marginal_entropy_err", "marginal_entropy_delta",
        "marginal_entropy_delta_err")}
    for i, t in enumerate(ts.tolist()):
        var = process.expected_reverse_variance(t, n, rng)
        change = process.entropy_change(t, n, rng)
        marginal = process.marginal_entropy(t, n, rng)
        out["true_variance"][i], out["true_variance_err"][i] = var.value, var.stderr
        out["true_entropy"][i] = (process.forward_step_entropy(t) + change.value) / dim
        out["true_entropy_err"][i] = change.stderr / dim
        out["marginal_entropy"][i] = marginal.value / dim
        out["marginal_entropy_err"][i] = marginal.stderr / dim
        out["marginal_entropy_delta"][i] = -change.value / dim
        out["marginal_entropy_delta_err"][i] = change.stderr / dim
    out["t"] = ts
    return out
