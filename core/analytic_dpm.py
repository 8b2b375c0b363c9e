"""Analytic-DPM (Bao et al. 2022): the optimal variance of a Gaussian reverse step, from
the score the eps-network already estimates, and the range that must contain it.

Shapes: the variance functions take and return float64 numpy arrays over timesteps, (T,)
for the whole schedule or (K,) at given zero-based timesteps. `estimate_eps_norm_sq` and
`analytic_diffusion` run a network (torch) on a sample of the data to get Gamma_t for every
step of a (possibly respaced) diffusion, and give the diffusion that samples with sigma*^2.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .diffusion import GaussianDiffusion, mean_flat
from .schedule import NoiseSchedule


def _gamma_from_samples(f: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """mean(f - b (c - 1)), b = Cov(f, c) / Var(c): the control-variate mean of f (B,)
    given c (B,) with known mean 1 (float64 scalar)."""
    if f.shape[0] < 2:
        return f.mean()
    fc, cc = f - f.mean(), c - c.mean()
    c_var = (cc * cc).mean()
    b = torch.where(c_var > 0, (fc * cc).mean() / c_var.clamp_min(1e-30), torch.zeros_like(c_var))
    return (f - b * (c - 1.0)).mean()


def eps_norm_sq_estimate(eps_hat: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Gamma_t = E|eps_hat|^2 / D from a batch (B, ...), with the forward noise as control
    variate: f = |eps_hat|^2 / D and c = |eps|^2 / D per example, E c = 1 exactly, so

        Gamma_t ~ mean(f - b (c - 1)),  b = Cov(f, c) / Var(c) over the batch.

    At large t, eps_hat ~ E[eps | x_t] ~ eps, and f - c has almost no variance: the plain
    mean's ~2 % relative error (2-D data, 2,000 examples) would swamp 1 - Gamma_t, which is
    ~1e-4 there and is all that Analytic-DPM's variance depends on. Returns a float64
    scalar on eps_hat's device."""
    return _gamma_from_samples(mean_flat(eps_hat.double() ** 2), mean_flat(noise.double() ** 2))


def per_dimension_variance(x: torch.Tensor) -> float:
    """tr Cov(x_0) / D of a sample x (N, ...), N >= 2: each dimension's unbiased variance,
    averaged over the dimensions, in float64 (the data term of analytic_dpm_range)."""
    return float(x.reshape(x.shape[0], -1).detach().double().var(dim=0).mean())


def gamma_sample(train: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A random subset of the training data for estimate_eps_norm_sq: 2^17 / D examples,
    within [128, 4096] (4,096 for 2-D toys, 167 for MNIST), or all of them if fewer. With
    the control variate that is plenty: the estimate's error is set by how far eps_hat is
    from the forward noise, not by D."""
    dim = max(1, int(np.prod(train.shape[1:])))
    count = min(train.shape[0], int(np.clip(2**17 // dim, 128, 4096)))
    order = torch.randperm(train.shape[0], generator=torch.Generator().manual_seed(int(seed)))
    return train[order[:count].to(train.device)]


@torch.no_grad()
def estimate_eps_norm_sq(model, diffusion: GaussianDiffusion, x0: torch.Tensor, *,
                         batch_size: int = 512, seed: int = 0, model_kwargs: dict | None = None,
                         should_stop: Callable[[], bool] | None = None,
                         progress: Callable[[int, int], None] | None = None) -> np.ndarray | None:
    """Gamma_t = E|eps_theta(x_t, t)|^2 / D at every index t of `diffusion` (respaced or not),
    over x_t = q_sample(x0, t, eps) for the given data sample x0 (N, ...) with fresh noise
    (a generator seeded with `seed`, one draw per t), in batches of `batch_size`, with the
    forward noise as control variate (eps_norm_sq_estimate). The eps is the one implied by
    the mean channels (any mean type). Returns (S,) float64, or None when should_stop()
    turned true (polled once per t). progress(done, S) follows each t."""
    device = x0.device
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    gammas = np.zeros(diffusion.num_timesteps)
    for step in range(diffusion.num_timesteps):
        if should_stop is not None and should_stop():
            return None
        noise = torch.randn(x0.shape, generator=generator).to(device=device, dtype=x0.dtype)
        f_parts, c_parts = [], []
        for start in range(0, x0.shape[0], batch_size):
            x = x0[start:start + batch_size]
            eps = noise[start:start + batch_size]
            t = torch.full((x.shape[0],), step, dtype=torch.long, device=device)
            kwargs = {k: v[start:start + batch_size] for k, v in (model_kwargs or {}).items()}
            out = diffusion.p_mean_variance(model, diffusion.q_sample(x, t, eps), t, kwargs)
            f_parts.append(mean_flat(out["pred_eps"].double() ** 2))
            c_parts.append(mean_flat(eps.double() ** 2))
        gammas[step] = float(_gamma_from_samples(torch.cat(f_parts), torch.cat(c_parts)))
        if progress is not None:
            progress(step + 1, diffusion.num_timesteps)
    return gammas


def analytic_diffusion_from_data(model, diffusion: GaussianDiffusion, data, *, data_shape=None,
                                 num_classes: int | None = None, seed: int = 0, device="cpu",
                                 should_stop: Callable[[], bool] | None = None,
                                 progress: Callable[[int, int], None] | None = None
                                 ) -> GaussianDiffusion | None:
    """analytic_diffusion for a data sample as the callers have it (e.g. gamma_sample of the
    training set): moved to `device` as float32, checked against `data_shape` (examples of
    that shape, at least 2; ValueError otherwise), data_variance = its per-dimension variance,
    and class-conditional models (num_classes given) run unconditionally (the null class).
    Returns the diffusion with sigma*^2, or None when stopped."""
    data = torch.as_tensor(data).to(device=device, dtype=torch.float32)
    if data_shape is not None and tuple(data.shape[1:]) != tuple(data_shape):
        raise ValueError(f"the Analytic-DPM data sample has examples of shape "
                         f"{tuple(data.shape[1:])}, the model's are {tuple(data_shape)}")
    if data.shape[0] < 2:
        raise ValueError("the Analytic-DPM variance needs a sample of at least 2 data examples")
    data_variance = per_dimension_variance(data)
    kwargs = ({"y": torch.full((data.shape[0],), num_classes, dtype=torch.long, device=device)}
              if num_classes is not None else None)
    result = analytic_diffusion(model, diffusion, data, data_variance, model_kwargs=kwargs,
                                seed=seed, should_stop=should_stop, progress=progress)
    return None if result is None else result[0]


def analytic_diffusion(model, diffusion: GaussianDiffusion, x0: torch.Tensor,
                       data_variance: float, **kwargs) -> tuple[GaussianDiffusion, np.ndarray] | None:
    """(the diffusion whose reverse steps use Analytic-DPM's clipped sigma*^2 (S,), that
    sigma*^2) for `diffusion` (respaced or not) and data sample x0; kwargs go to
    estimate_eps_norm_sq. None when stopped. Sampling with it needs no retraining (Bao et
    al. 2022); on a respaced schedule beta-tilde and c_t are the respaced ones."""
    gamma = estimate_eps_norm_sq(model, diffusion, x0, **kwargs)
    if gamma is None:
        return None
    variance = analytic_dpm_variance(diffusion.schedule, gamma, data_variance=data_variance)
    analytic = diffusion.with_reverse_variance(variance)
    # DDIM's variant needs Gamma_t itself (its lambda is eta^2 beta-tilde, not beta-tilde)
    analytic.eps_norm_sq, analytic.data_variance = gamma, float(data_variance)
    return analytic, variance


def analytic_dpm_range(schedule: NoiseSchedule, data_variance: float,
                       timesteps=None, lambda2=None) -> tuple[np.ndarray, np.ndarray]:
    """The interval that holds the optimal reverse variance, per dimension: (low, high).

    Under q_lambda(x_{t-1} | x_t, x_0) = N(c_t x_0 + c'_t x_t, lambda_t^2 I) the law of total
    variance gives Var(x_{t-1} | x_t) = lambda_t^2 + c_t^2 Var(x_0 | x_t), and
    0 <= E Var(x_0|x_t) <= Var(x_0), so sigma*_t^2 lies in [lambda_t^2, lambda_t^2 +
    c_t^2 Var(x_0)], with Var(x_0) the per-dimension data variance tr Cov(x_0) / D and
    c_t = sqrt(abar_{t-1}) - sqrt(bbar_{t-1} - lambda_t^2) sqrt(abar_t / bbar_t) (for
    lambda^2 = beta-tilde, the default, c_t = posterior_mean_coef1). (Bao et al. 2022,
    Theorem 2, state it with (b - a)^2 / 4 for data in [a, b]; the data-variance form also
    holds for unbounded data.) Arrays are (T,), or (K,) at the given timesteps.
    """
    ts = np.arange(schedule.num_timesteps) if timesteps is None else np.asarray(timesteps)
    lam2, coef = _lambda2_and_coef(schedule, ts, lambda2)
    return lam2, lam2 + coef ** 2 * float(data_variance)


def _lambda2_and_coef(schedule: NoiseSchedule, ts: np.ndarray, lambda2):
    """(lambda_t^2, c_t) at ts: lambda^2 = beta-tilde unless given (K,)."""
    if lambda2 is None:
        return schedule.posterior_variance[ts], schedule.posterior_mean_coef1[ts]
    lam2 = np.asarray(lambda2, dtype=np.float64)
    abar, abar_prev = schedule.alphas_cumprod[ts], schedule.alphas_cumprod_prev[ts]
    coef = np.sqrt(abar_prev) - np.sqrt(np.maximum(1.0 - abar_prev - lam2, 0.0)) * np.sqrt(
        abar / (1.0 - abar))
    return lam2, coef


def analytic_dpm_variance(schedule: NoiseSchedule, eps_norm_sq, timesteps=None,
                          data_variance: float | None = None, lambda2=None) -> np.ndarray:
    """Analytic-DPM's optimal reverse variance (Bao et al. 2022, Theorem 1).

    For the family q_lambda(x_{t-1} | x_t, x_0) with variance lambda_t^2 (DDPM:
    lambda^2 = beta-tilde, the default; DDIM with noise scale eta: lambda^2 = eta^2
    beta-tilde, pass it as `lambda2`), bbar_t = 1 - abar_t and Gamma_t = E|eps_theta(x_t, t)|^2
    / D (an estimate of bbar_t E|grad log q_t|^2 / D):

        sigma*_t^2 = lambda_t^2 + (sqrt(bbar_t / alpha_t) - sqrt(bbar_{t-1} - lambda_t^2))^2
                     * (1 - Gamma_t)

    `eps_norm_sq` is (T,), or (K,) at `timesteps`; returns the same shape, float64. With the
    exact E[eps|x_t] this equals the expected per-dimension variance of the true reverse
    step (tested); for N(0, I) data (Gamma_t = 1 - abar_t) and the DDPM lambda it equals
    beta_t. A network's Gamma_t carries Monte Carlo and model error, and at the last steps
    of a cosine or respaced schedule the raw formula can leave the possible range (even go
    negative): given `data_variance` (tr Cov(x_0) / D), the result is clipped to
    analytic_dpm_range, as Bao et al. clip theirs.
    """
    ts = np.arange(schedule.num_timesteps) if timesteps is None else np.asarray(timesteps)
    gamma = np.asarray(eps_norm_sq, dtype=np.float64)
    if gamma.shape != ts.shape:
        raise ValueError(f"eps_norm_sq has shape {gamma.shape}, expected {ts.shape}")
    lam2, _ = _lambda2_and_coef(schedule, ts, lambda2)
    bbar = 1.0 - schedule.alphas_cumprod[ts]
    bbar_prev = 1.0 - schedule.alphas_cumprod_prev[ts]
    gap = np.sqrt(bbar / schedule.alphas[ts]) - np.sqrt(np.maximum(bbar_prev - lam2, 0.0))
    sigma2 = lam2 + gap**2 * (1.0 - gamma)
    if data_variance is not None:
        low, high = analytic_dpm_range(schedule, data_variance, ts, lambda2)
        sigma2 = np.clip(sigma2, low, high)
    return sigma2
