"""Data-dependent reference curves for the entropy panel, computed by core in a job.

Gaussian-mixture toys (dataset.mixture) get the exact curves of core.mixture
(Monte Carlo over the closed-form marginals). Other data get H(X_t) of a Gaussian with the
data's mean and covariance (core.entropy.gaussian_marginal_entropy): an upper bound on the
true H(X_t), since a Gaussian has the largest entropy for a given covariance.
"""

from __future__ import annotations

import numpy as np

from core.entropy import gaussian_marginal_entropy
from core.mixture import mixture_data_variance, reverse_process_curves

MIXTURE_TIMESTEPS = 40
MIXTURE_SAMPLES = 2000
MIXTURE_CHUNK = 4  # timesteps per core call, so a stop request is seen within a fraction of a second
MIXTURE_KEYS = ("true_variance", "true_variance_err", "true_entropy", "true_entropy_err",
                "marginal_entropy", "marginal_entropy_err", "marginal_entropy_delta",
                "marginal_entropy_delta_err", "t")
MAX_GAUSSIAN_DIM = 4096  # the covariance of larger data would need too much memory


def evenly_spaced_timesteps(num_timesteps: int, count: int) -> np.ndarray:
    """Up to `count` distinct timesteps spread over [0, T-1], always including both ends."""
    return np.unique(np.round(np.linspace(0, num_timesteps - 1, count)).astype(np.int64))


def compute_data_curves(dataset, schedule, seed: int = 0, should_stop=None) -> dict | None:
    """dict(T, t, marginal_entropy, marginal_entropy_delta[, true_entropy, true_entropy_err,
    true_variance, true_variance_err, data_variance], description), all per dimension;
    None if nothing can be computed."""
    T = schedule.num_timesteps
    mixture = getattr(dataset, "mixture", None)
    if mixture is not None:
        ts = evenly_spaced_timesteps(T, MIXTURE_TIMESTEPS)
        parts = []
        for index, start in enumerate(range(0, len(ts), MIXTURE_CHUNK)):
            if should_stop is not None and should_stop():
                return None
            parts.append(reverse_process_curves(mixture, schedule, ts[start:start + MIXTURE_CHUNK],
                                                n=MIXTURE_SAMPLES, seed=seed + index))
        curves = {key: np.concatenate([np.atleast_1d(p[key]) for p in parts])
                  for key in MIXTURE_KEYS}
        variance = mixture_data_variance(mixture)
        beyond = (" Above 1 the truth exceeds ½log(2πe βₜ): that bound assumes H(Xₜ) ≥ H(Xₜ₋₁), "
                  f"which fails for data wider than N(0, I) (here Var x₀ = {variance:.2f} per "
                  "dimension); the dashed ½log(2πe βₜ/αₜ) holds for any data."
                  if variance > 1 else "")
        curves.update(T=T, data_variance=variance, description=(
            "True H(Xₜ₋₁|Xₜ), E Var q(xₜ₋₁|xₜ) and H(Xₜ) of the exact Gaussian-mixture data "
            f"(Monte Carlo, {MIXTURE_SAMPLES} paired draws per t with a control variate; "
            "error bars ±1 s.e.). The learned Σθ and the Analytic-DPM σ*² (from the "
            "network's ε) should approach the truth as training goes on." + beyond))
        return curves
    dim = int(np.prod(dataset.shape))
    if dim > MAX_GAUSSIAN_DIM:
        return None
    mean, cov = dataset.moments()
    if should_stop is not None and should_stop():
        return None
    marginal = gaussian_marginal_entropy(schedule, mean, cov)
    return {
        "T": T,
        "t": np.arange(T),
        "marginal_entropy": marginal["per_dim"],
        "marginal_entropy_delta": marginal["delta"] / dim,
        "description": (
            "H(Xₜ) of a Gaussian with the data's mean and covariance: an upper bound on the "
            "true system entropy (no closed form for this data set). It rises to the "
            "entropy of N(0, I), ½log(2πe) ≈ 1.419 nats per dimension."),
    }
