"""The score view of an eps-model (Song & Ermon 2019; Song et al. 2021): every trained
eps-network is a score model,

    s_theta(x, t) = grad log p_t(x) ~ -eps_theta(x, t) / sqrt(1 - abar_t),

and for Gaussian-mixture data the true score grad log q_t is known in closed form
(core.exact). This module gives both on points and grids, and the Fisher divergence per t,

    F_t = E_{x ~ q_t} |s_theta(x, t) - grad log q_t(x)|^2 / D        (per dimension),

by Monte Carlo over exact draws from q_t. Its link to the losses: eps_theta - eps* =
-sqrt(1 - abar_t) (s_theta - s*) and E[eps | x_t] = eps*, so per dimension

    L_simple(t) = E|eps_theta - eps|^2 / D = (1 - abar_t) F_t + E|eps* - eps|^2 / D,
    L_{t-1} (VLB, fixed variance sigma_t^2, nats/dim) = beta_t^2 / (2 sigma_t^2 alpha_t) F_t + c_t,

i.e. L_simple is denoising score matching with lambda(t) = 1 - abar_t (= sigma^2 in the VE
view), and the bound weights F_t by beta_t^2 / (2 sigma_t^2 alpha_t) (`loss_weights`).
Shapes: points (N, D) float; t an (integer) timestep of the unrespaced schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from core.exact import ExactEps


@dataclass(frozen=True)
class FisherEstimate:
    """F_t per dimension: mean and standard error over n draws from q_t."""

    t: int
    mean: float
    stderr: float
    n: int


@torch.no_grad()
def model_score(model, diffusion, points, t: int, model_kwargs=None) -> np.ndarray:
    """s_theta at (N, D) points and timestep t: -eps / sqrt(1 - abar_t), float64 (N, D)
    (x0- and v-models through their eps; learned variance channels ignored)."""
    schedule = diffusion.schedule.base
    x = torch.as_tensor(np.asarray(points), dtype=torch.float32)
    params = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
    if params:
        x = x.to(params[0].device)
    abar = float(schedule.alphas_cumprod[t])
    view = (-1,) + (1,) * (x.ndim - 1)
    alpha = torch.full((len(x),), math.sqrt(abar), device=x.device).reshape(view)
    sigma = torch.full((len(x),), math.sqrt(1.0 - abar), device=x.device).reshape(view)
    t_model = torch.full((len(x),), float(t), device=x.device)
    _, eps = diffusion.predict_at(model, x, t_model, alpha, sigma, model_kwargs or {})
    return (-eps.double() / math.sqrt(1.0 - abar)).cpu().numpy()


def exact_score(mixture, schedule, points, t: int) -> np.ndarray:
    """grad log q_t at (N, D) points (closed form, core.exact), float64 (N, D)."""
    exact = ExactEps(mixture, schedule)
    abar = torch.full((len(points),), float(schedule.base.alphas_cumprod[t]), dtype=torch.float64)
    return exact.score_abar(torch.as_tensor(np.asarray(points, dtype=np.float64)), abar).numpy()


def exact_density(mixture, schedule, points, t: int) -> np.ndarray:
    """q_t at (N, D) points, float64 (N,)."""
    exact = ExactEps(mixture, schedule)
    abar = torch.full((len(points),), float(schedule.base.alphas_cumprod[t]), dtype=torch.float64)
    x = torch.as_tensor(np.asarray(points, dtype=np.float64))
    return torch.exp(exact.log_density_abar(x, abar)).numpy()


def grid(box, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xs (size,), ys (size,), points (size * size, 2)) of a square grid over box =
    (xmin, xmax, ymin, ymax); points run x fastest (row j = ys[j])."""
    xmin, xmax, ymin, ymax = box
    xs, ys = np.linspace(xmin, xmax, size), np.linspace(ymin, ymax, size)
    gx, gy = np.meshgrid(xs, ys)
    return xs, ys, np.stack([gx.ravel(), gy.ravel()], axis=1)


def error_map(model, diffusion, mixture, points, t: int, model_kwargs=None) -> np.ndarray:
    """q_t(x) |s_theta(x) - grad log q_t(x)|^2 at (N, D) points, (N,): where the learned
    score is wrong, weighted by how much mass is there (its integral is D F_t)."""
    learned = model_score(model, diffusion, points, t, model_kwargs)
    true = exact_score(mixture, diffusion.schedule, points, t)
    return exact_density(mixture, diffusion.schedule, points, t) * ((learned - true) ** 2).sum(1)


def fisher_divergence(model, diffusion, mixture, t: int, n: int = 4000, seed: int = 0,
                      model_kwargs=None) -> FisherEstimate:
    """F_t (module docstring) from n exact draws x ~ q_t: mean and standard error."""
    rng = np.random.default_rng(seed)
    abar = float(diffusion.schedule.base.alphas_cumprod[t])
    x0 = mixture.sample(n, rng)[0]
    x = math.sqrt(abar) * x0 + math.sqrt(1.0 - abar) * rng.standard_normal(x0.shape)
    learned = model_score(model, diffusion, x, t, model_kwargs)
    true = exact_score(mixture, diffusion.schedule, x, t)
    values = ((learned - true) ** 2).sum(1) / x.shape[1]
    return FisherEstimate(int(t), float(values.mean()),
                          float(values.std(ddof=1) / math.sqrt(n)), int(n))


def loss_weights(schedule, t) -> dict:
    """The weights that turn F_t into the losses' model-dependent parts (per dimension):
    dict(simple = 1 - abar_t, vlb = beta_t^2 / (2 beta-tilde_t alpha_t) (the VLB's weight
    with the fixed posterior variance beta-tilde; at t = 0 the decoder term has no such
    form: NaN there)). t: int or array of timesteps."""
    s = schedule.base
    t = np.asarray(t)
    tilde = s.posterior_variance[t]
    with np.errstate(divide="ignore", invalid="ignore"):
        vlb = np.where(t > 0, s.betas[t] ** 2 / (2.0 * tilde * s.alphas[t]), np.nan)
    return {"simple": 1.0 - s.alphas_cumprod[t], "vlb": vlb}
