"""The training probe: per-t diagnostics of a model on a fixed batch (fixed x0, noise and
labels, so successive probes differ only by the weights).

At K evenly spaced t: the mean-channel MSE against the target (eps, x0 or v), the VLB term
L_t in bits/dim, Analytic-DPM's Gamma_t = E|eps_theta(x_t, t)|^2 / D with its sigma*^2
(Bao et al. 2022, clipped to its possible range with the data's per-dimension variance),
and for a learned Sigma_theta the mean and std of its interpolation weight v and of
log Sigma_theta over every entry of the batch.
"""

from __future__ import annotations

import numpy as np
import torch

from core.analytic_dpm import analytic_dpm_variance, eps_norm_sq_estimate
from core.diffusion import GaussianDiffusion, mean_flat

PROBE_BATCH = 64  # the smallest probe batch; low-dimensional data get more (probe_batch_size)
PROBE_ELEMENTS = 2**15
PROBE_BATCH_MAX = 2048


def probe_batch_size(dim: int) -> int:
    """Probe examples for data of `dim` dimensions: PROBE_ELEMENTS // dim, within
    [PROBE_BATCH, PROBE_BATCH_MAX] (2-D toys: 2048, so Gamma_t is precise; images: 64)."""
    return int(min(max(PROBE_ELEMENTS // max(int(dim), 1), PROBE_BATCH), PROBE_BATCH_MAX))


def probe_timesteps(num_timesteps: int, count: int) -> np.ndarray:
    """`count` evenly spaced t in [0, T-1], rounded and unique (int64)."""
    return np.unique(np.round(np.linspace(0, num_timesteps - 1, count)).astype(np.int64))


@torch.no_grad()
def probe_model(model, diffusion: GaussianDiffusion, x0: torch.Tensor, noise: torch.Tensor,
                y: torch.Tensor | None, timesteps: np.ndarray, data_variance: float) -> dict:
    """Diagnostics of `model` at `timesteps` on the batch x0 (B, ...) with noise (B, ...)
    and labels y (B,) or None.

    Returns float64 numpy (K,) arrays: t, loss, vlb, eps_norm_sq (Gamma_t),
    analytic_variance (sigma*^2); v_mean, v_std, log_var_mean, log_var_std for a learned
    Sigma_theta, else None.
    """
    kwargs = {} if y is None else {"y": y}
    learned = diffusion.learns_sigma
    stats = []
    for step in timesteps.tolist():
        t = torch.full((x0.shape[0],), step, dtype=torch.long, device=x0.device)
        x_t = diffusion.q_sample(x0, t, noise)
        out = diffusion.run_model(model, x_t, t, kwargs)
        mean_channels = out[:, : x0.shape[1]]
        target = diffusion.target_from_x0_eps(x0, noise, t)
        terms = diffusion.vlb_terms(None, x0, x_t, t, model_output=out)
        pmv = terms["p_mean_variance"]
        row = [mean_flat((target - mean_channels) ** 2).mean(), terms["output"].mean(),
               eps_norm_sq_estimate(pmv["pred_eps"], noise)]
        if learned:
            v, log_var = pmv["v_frac"], pmv["log_variance"]
            row += [v.mean(), v.std(), log_var.mean(), log_var.std()]
        stats.append(torch.stack(row))
    values = torch.stack(stats).double().cpu().numpy()
    result = {"t": timesteps, "loss": values[:, 0], "vlb": values[:, 1],
              "eps_norm_sq": values[:, 2],
              "analytic_variance": analytic_dpm_variance(
                  diffusion.schedule, values[:, 2], timesteps, data_variance),
              "v_mean": None, "v_std": None, "log_var_mean": None, "log_var_std": None}
    if learned:
        result.update(v_mean=values[:, 3], v_std=values[:, 4],
                      log_var_mean=values[:, 5], log_var_std=values[:, 6])
    return result
