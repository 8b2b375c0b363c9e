"""Entropies of the diffusion's Gaussians, in nats, as float64 numpy arrays of shape (T,).

The reverse step's conditional entropy is bounded (Sohl-Dickstein et al. 2015, appendix):

    H_q(X_t|X_{t-1}) + H_q(X_{t-1}|X_0) - H_q(X_t|X_0)  <=  H_q(X_{t-1}|X_t)  <=  H_q(X_t|X_{t-1})

For the Gaussian forward process in D dimensions the upper bound is D/2 log(2 pi e beta_t)
and the lower bound simplifies to D/2 log(2 pi e beta-tilde_t): improved DDPM's two
variance extremes. The lower bound always holds. The upper bound is the chain rule
H(X_{t-1}|X_t) = H(X_t|X_{t-1}) + H(X_{t-1}) - H(X_t) with H(X_t) >= H(X_{t-1}) assumed; the
variance-preserving step X_t = sqrt(alpha_t) X_{t-1} + sqrt(beta_t) eps only guarantees
H(X_t) >= H(X_{t-1}) + D/2 log alpha_t (scaling, then independent noise, which never lowers
entropy), so for data whose variance exceeds 1 (the 8-Gaussian ring) the truth can exceed
D/2 log(2 pi e beta_t), by at most D/2 log(1/alpha_t): general_upper_bound holds for any data. A D-dimensional Gaussian with covariance C has entropy
H = 1/2 (D log(2 pi e) + log det C); isotropic variance s gives D/2 log(2 pi e s).

t=0 convention (as the schedule's posterior_log_variance_clipped): beta-tilde_0 = 0 would
give -inf, so every lower-bound quantity at t=0 uses beta-tilde_1 instead.
"""

from __future__ import annotations

import math

import numpy as np

from core.schedule import NoiseSchedule

LOG_2PI_E = math.log(2.0 * math.pi * math.e)


def _check_dim(dim) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim = {dim!r} is invalid: must be a positive integer")
    return int(dim)


def _to_numpy(values) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def gaussian_entropy_from_log_variance(dim: int, log_variance) -> np.ndarray:
    """D/2 (log(2 pi e) + log_variance): entropy of N(m, e^log_variance I_D), elementwise."""
    return 0.5 * _check_dim(dim) * (LOG_2PI_E + _to_numpy(log_variance))


def gaussian_entropy(dim: int, variance) -> np.ndarray:
    """D/2 log(2 pi e variance): entropy (nats) of N(m, variance I_D), elementwise in variance."""
    variance = _to_numpy(variance)
    if np.any(variance < 0):
        raise ValueError("gaussian_entropy: variance must be >= 0")
    with np.errstate(divide="ignore"):  # variance 0 -> -inf, a point mass
        return gaussian_entropy_from_log_variance(dim, np.log(variance))


def forward_step_entropy(schedule: NoiseSchedule, dim: int) -> np.ndarray:
    """H_q(X_t | X_{t-1}) = D/2 log(2 pi e beta_t), (T,)."""
    return gaussian_entropy_from_log_variance(dim, np.log(schedule.betas))


def marginal_conditional_entropy(schedule: NoiseSchedule, dim: int, prev: bool = False) -> np.ndarray:
    """H_q(X_t | X_0) = D/2 log(2 pi e (1 - abar_t)), (T,).

    With prev=True: H_q(X_{t-1} | X_0) = D/2 log(2 pi e (1 - abar_{t-1})), which is -inf at
    t=0 (X_{-1} is X_0 itself).
    """
    abar = schedule.alphas_cumprod_prev if prev else schedule.alphas_cumprod
    with np.errstate(divide="ignore"):
        return gaussian_entropy_from_log_variance(dim, np.log(1.0 - abar))


def entropy_bounds(schedule: NoiseSchedule, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(upper, lower) bounds on H_q(X_{t-1} | X_t) per t in nats, each (T,).

    upper = D/2 log(2 pi e beta_t); lower = D/2 log(2 pi e beta-tilde_t) from
    posterior_log_variance_clipped, so lower[0] uses beta-tilde_1. upper >= lower always.
    """
    upper = forward_step_entropy(schedule, dim)
    lower = gaussian_entropy_from_log_variance(dim, schedule.posterior_log_variance_clipped)
    return upper, lower


def general_upper_bound(schedule: NoiseSchedule, dim: int) -> np.ndarray:
    """D/2 log(2 pi e beta_t / alpha_t) per t, (T,) nats: an upper bound on H_q(X_{t-1}|X_t)
    for any data (module docstring), above entropy_bounds' upper by D/2 log(1/alpha_t)."""
    dim = _check_dim(dim)
    return forward_step_entropy(schedule, dim) - 0.5 * dim * np.log(schedule.alphas)


def position_between_bounds(entropy, lower, upper) -> np.ndarray:
    """(H - lower) / (upper - lower): 0 at the lower bound (beta-tilde), 1 at the upper
    (beta); NaN where the gap is not positive and finite. All arrays broadcast together.

    For a Gaussian reverse step with log Sigma = v log beta + (1 - v) log beta-tilde (improved
    DDPM's learned_range) this is exactly v, so entropies and learned interpolation weights
    share one axis."""
    entropy, lower, upper = (np.asarray(a, dtype=np.float64) for a in (entropy, lower, upper))
    gap = upper - lower
    with np.errstate(invalid="ignore", divide="ignore"):
        position = (entropy - lower) / gap
    return np.where(np.isfinite(gap) & (gap > 0), position, np.nan)


def sohl_dickstein_lower_bound(schedule: NoiseSchedule, dim: int) -> np.ndarray:
    """H_q(X_t|X_{t-1}) + H_q(X_{t-1}|X_0) - H_q(X_t|X_0) per t, (T,) nats.

    Computed from the three conditional entropies separately (forward_step_entropy and
    marginal_conditional_entropy), so it can be compared with the closed form
    D/2 log(2 pi e beta-tilde_t). At t=0 the middle term is -inf; following the t=0
    convention the value there is D/2 log(2 pi e beta-tilde_1).
    """
    with np.errstate(invalid="ignore"):
        bound = (forward_step_entropy(schedule, dim)
                 + marginal_conditional_entropy(schedule, dim, prev=True)
                 - marginal_conditional_entropy(schedule, dim, prev=False))
    bound[0] = gaussian_entropy_from_log_variance(dim, schedule.posterior_log_variance_clipped[0])
    return bound


def learned_variance_entropy(log_variance, dim: int) -> np.ndarray:
    """Entropy of the model's reverse step N(mu_theta, Sigma_theta) per t, (T,) nats.

    log_variance: (T,) one isotropic log variance per t, giving D/2 (log(2 pi e) + log var);
    or (T, D) per-dimension log variances (diagonal Sigma), giving
    1/2 sum_d (log(2 pi e) + log var_d). numpy or torch.
    """
    dim = _check_dim(dim)
    log_variance = _to_numpy(log_variance)
    if log_variance.ndim == 1:
        return gaussian_entropy_from_log_variance(dim, log_variance)
    if log_variance.ndim == 2:
        if log_variance.shape[1] != dim:
            raise ValueError(f"log_variance has {log_variance.shape[1]} per-dimension values "
                             f"per t but dim = {dim}")
        return 0.5 * (LOG_2PI_E + log_variance).sum(axis=1)
    raise ValueError(f"log_variance must have shape (T,) or (T, D), got {log_variance.shape}")


def gaussian_marginal_entropy(schedule: NoiseSchedule, mean, cov) -> dict:
    """Entropy of the marginal X_t when the data is N(mean, cov), per t.

    X_t ~ N(sqrt(abar_t) mean, C_t), C_t = abar_t cov + (1 - abar_t) I, so
    H(X_t) = 1/2 (D log(2 pi e) + log det C_t). log det C_t is computed in float64 from
    the eigenvalues lambda_i of cov: log det C_t = sum_i log(abar_t lambda_i + 1 - abar_t)
    (C_t shares cov's eigenvectors), the same number as slogdet(C_t) at O(D^3) once
    instead of once per t.

    mean: (D,), cov: (D, D) symmetric positive semi-definite.
    Returns dict(total (T,) H(X_t), per_dim (T,) total / D, delta (T,) H(X_t) - H(X_{t-1})
    with delta[0] = H(X_0 after one step) - H(data) (+inf for a singular cov)).
    """
    mean = _to_numpy(mean)
    cov = _to_numpy(cov)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"cov must be a square (D, D) matrix, got shape {cov.shape}")
    dim = cov.shape[0]
    if mean.shape != (dim,):
        raise ValueError(f"mean must have shape ({dim},) to match cov, got {mean.shape}")
    if not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-12):
        raise ValueError("cov must be symmetric")
    eigenvalues = np.linalg.eigvalsh(cov)
    scale = max(1.0, float(np.abs(eigenvalues).max()))
    if eigenvalues.min() < -1e-10 * scale:
        raise ValueError(f"cov must be positive semi-definite (smallest eigenvalue "
                         f"{eigenvalues.min():.3g})")
    eigenvalues = np.clip(eigenvalues, 0.0, None)

    abar = schedule.alphas_cumprod[:, None]
    log_det = np.log(abar * eigenvalues[None, :] + (1.0 - abar)).sum(axis=1)
    total = 0.5 * (dim * LOG_2PI_E + log_det)
    with np.errstate(divide="ignore"):
        data_entropy = 0.5 * (dim * LOG_2PI_E + np.log(eigenvalues).sum())
    delta = np.diff(total, prepend=data_entropy)
    return {"total": total, "per_dim": total / dim, "delta": delta}
