"""The exact denoiser of Gaussian-mixture data as a network: for x0 ~ sum_k pi_k N(m_k, s^2 I)
the forward process keeps a mixture, q_t(x) = sum_k pi_k N(x; sqrt(abar) m_k, v I) with
v = abar s^2 + 1 - abar, so the ideal eps-prediction network is known in closed form:

    score(x, t) = grad log q_t(x) = sum_k w_k(x) (sqrt(abar) m_k - x) / v,
    w_k(x) = softmax_k(log pi_k - |x - sqrt(abar) m_k|^2 / (2 v)),
    eps*(x, t) = E[eps | x_t = x] = -sqrt(1 - abar) score(x, t).

`ExactEps(mixture, schedule)` is an nn.Module called like the explorer's networks,
model(x (B, D), t (B,), y=None) -> eps* (B, D), at any (also fractional) original timestep t
(abar = 1 / (1 + sigma(t)^2), sigma interpolated as core.schedule does). It computes in
float64 and returns x's dtype. Running a sampler with it gives that sampler's own
discretisation error, apart from any network's error (the sampler lab).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from core.schedule import NoiseSchedule


class ExactEps(nn.Module):
    """See the module docstring. mixture: anything with means (K, D), std and weights (K,)
    (core.data's GaussianMixture); schedule: the unrespaced NoiseSchedule (its base is used)."""

    def __init__(self, mixture, schedule: NoiseSchedule):
        super().__init__()
        self.schedule = schedule.base
        self.register_buffer("means", torch.tensor(np.asarray(mixture.means), dtype=torch.float64))
        weights = np.asarray(mixture.weights, dtype=np.float64)
        self.register_buffer("log_weights", torch.log(torch.as_tensor(weights / weights.sum())))
        self.std = float(mixture.std)
        self.num_classes = None
        self.data_ndim = 1

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """abar at original timesteps t (B,), float64 on t's device."""
        sigma = self.schedule.sigma_at(t.detach().double().cpu().numpy())
        return torch.as_tensor(1.0 / (1.0 + sigma ** 2), dtype=torch.float64, device=t.device)

    def score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """grad_x log q_t(x), (B, D) float64."""
        return self.score_abar(x, self.alpha_bar(t))

    def score_abar(self, x: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
        """grad_x log q(x) where q is the data's law after noising to abar (B,) (any value
        in (0, 1], also between or below the schedule's steps), (B, D) float64."""
        abar = abar.double().reshape(-1, 1, 1)                               # (B, 1, 1)
        var = abar * self.std ** 2 + 1.0 - abar
        centres = abar.sqrt() * self.means.to(x.device)[None]               # (B, K, D)
        diff = centres - x.double()[:, None, :]
        logits = self.log_weights.to(x.device)[None] - (diff ** 2).sum(-1) / (2 * var[..., 0])
        weights = torch.softmax(logits, dim=1)[..., None]                  # (B, K, 1)
        return (weights * diff).sum(1) / var[:, 0]

    def log_density(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log q_t(x) in nats, (B,) float64 (the score is its gradient)."""
        return self.log_density_abar(x, self.alpha_bar(t))

    def log_density_abar(self, x: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
        """log q(x) after noising to abar (B,); abar = 1: the data's own density."""
        abar = abar.double().reshape(-1, 1)
        var = abar * self.std ** 2 + 1.0 - abar                              # (B, 1)
        centres = abar.sqrt()[..., None] * self.means.to(x.device)[None]
        sq = ((x.double()[:, None, :] - centres) ** 2).sum(-1)               # (B, K)
        dim = x.shape[1]
        log_joint = (self.log_weights.to(x.device)[None] - sq / (2 * var)
                     - 0.5 * dim * (math.log(2 * math.pi) + torch.log(var)))
        return torch.logsumexp(log_joint, dim=1)

    def eps_at_sigma(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """eps*(x) at VE sigma (B,) (abar = 1 / (1 + sigma^2), exact at any sigma >= 0,
        unlike `forward`, whose timesteps clip to the schedule's range), x's dtype."""
        abar = 1.0 / (1.0 + sigma.double() ** 2)
        return (-(1.0 - abar).sqrt()[:, None] * self.score_abar(x, abar)).to(x.dtype)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y=None) -> torch.Tensor:
        abar = self.alpha_bar(t).reshape(-1, 1)
        return (-(1.0 - abar).sqrt() * self.score(x, t)).to(x.dtype)


def exact_diffusion(diffusion):
    """The diffusion the exact eps runs on beside a model's: the model's schedule read as an
    eps prediction, with the model's fixed variance (beta-tilde where the model learns it,
    since the exact eps has no variance output); the model's own diffusion when that is
    already so."""
    from core.diffusion import GaussianDiffusion
    from core.options import MeanType, VarType

    variance = (VarType.FIXED_SMALL if diffusion.var_type is VarType.LEARNED_RANGE
                else diffusion.var_type)
    if diffusion.mean_type is MeanType.EPS and variance is diffusion.var_type:
        return diffusion
    return GaussianDiffusion(diffusion.schedule, mean_type=MeanType.EPS, var_type=variance,
                             data_kind=diffusion.data_kind)
