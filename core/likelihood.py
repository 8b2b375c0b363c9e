"""Exact likelihood by the probability-flow ODE (Song et al. 2021, section 4.3; Chen et al.
2018's instantaneous change of variables; Grathwohl et al. 2019's Hutchinson estimator).

In the VE view x~ = x / sqrt(abar) = x0 + sigma eps, the probability-flow ODE of every
process here is dx~/dsigma = eps_theta(x~ / sqrt(1 + sigma^2), sigma) (Karras et al. 2022,
eq. 4 with sigma(t) = t), integrated in u = log sigma: dx~/du = sigma eps. Along it,

    d log p_sigma(x~(u)) / du = -sigma tr(d eps / d x~),

so for a data point x0 (x~ = x0 at sigma_lo, the data's law blurred by sigma_lo ~ 1e-3),

    log p_0(x0) = log N(x_T; 0, I) + D log alpha_T + int_{u_lo}^{u_T} sigma tr(d eps / d x~) du,

with x_T = alpha_T x~(u_T) (alpha = 1 / sqrt(1 + sigma^2); the D log alpha_T is the change
of variables x~ -> x at the top). sigma_lo = sigma(t_eps) of core.sde (t_eps = 1e-5 for VP;
sigma_min for VE); sigma_T the schedule's last level.

The trace: exact (D vector-Jacobian products, one per basis vector: 2-D data) or
Hutchinson's tr(J) = E[v^T J v] with K Rademacher probes v, each held fixed over the whole
solve (so each probe gives an unbiased estimate of the whole integral); the estimate is
their mean and its error bar their standard deviation / sqrt(K). All K probes and the D
basis vectors run as one batch of K B copies of x~ (one network call per evaluation).

The solver: torchdiffeq's dopri5 where installed, else scipy's RK45, in float64; network
calls counted. Units: nats per point (log_likelihood), nats/dim and, for 8-bit images in
[-1, 1] with uniform dequantisation x = (k + U) / 128 - 1, bits/dim = -log p / (D ln 2) + 7
(log2 of the 128 bins per unit length).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from core.sde import process_of

LN2 = math.log(2.0)


@dataclass
class FlowResult:
    """Per point: log_likelihood (N,) nats (mean over probes), stderr (N,) (probe spread; 0
    for the exact trace), and at each requested sigma (in `sigmas`) the log-density of the
    model's marginal at the ODE's point there, log_p_at (N, len(sigmas)), in x's (VP) scaling.
    nfe: network evaluations (per batch, summed); dims D; trace "exact" or "hutchinson"."""

    log_likelihood: np.ndarray
    stderr: np.ndarray
    log_p_at: np.ndarray
    sigmas: np.ndarray
    nfe: int
    dims: int
    trace: str
    probes: int


def eps_function(model, diffusion, model_kwargs: dict | None = None):
    """(x (B, ...), sigma (B,) VE sigma) -> eps (B, ...): the model's eps at any sigma.
    Networks see the schedule's (clipped) fractional timestep of sigma and x = alpha x0 +
    s eps with alpha = 1 / sqrt(1 + sigma^2), s = sigma alpha (GaussianDiffusion.predict_at,
    so x0- and v-models work too); a model with `eps_at_sigma` (core.exact) is exact at
    every sigma."""
    exact = getattr(model, "eps_at_sigma", None)
    if exact is not None:
        return exact
    base = diffusion.schedule.base
    kwargs = dict(model_kwargs or {})
    params = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
    model_dtype = params[0].dtype if params else torch.float32

    def eps(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        given, x = x.dtype, x.to(model_dtype)
        s = sigma.detach().double().cpu().numpy()
        t_model = torch.as_tensor(base.timestep_at(np.maximum(s, 1e-300)), dtype=torch.float32,
                                  device=x.device)
        view = (-1,) + (1,) * (x.ndim - 1)
        alpha = (1.0 / torch.sqrt(1.0 + sigma ** 2)).to(x.dtype).reshape(view)
        labels = {k: (v.repeat(x.shape[0] // v.shape[0]) if torch.is_tensor(v) else v)
                  for k, v in kwargs.items()}
        _, out = diffusion.predict_at(model, x, t_model, alpha, (sigma.to(x.dtype).reshape(view)
                                                                  * alpha), labels)
        return out.to(given)

    return eps


def _probes(trace: str, k: int, shape, generator) -> torch.Tensor:
    """(K, *shape[1:]) probe vectors: basis vectors (exact) or Rademacher signs."""
    dims = int(np.prod(shape[1:]))
    if trace == "exact":
        return torch.eye(dims, dtype=torch.float64).reshape(dims, *shape[1:])
    signs = torch.randint(0, 2, (k, *shape[1:]), generator=generator).double()
    return 2.0 * signs - 1.0


def flow(eps, diffusion, x0: torch.Tensor, *, trace: str = "exact", probes: int = 4,
         rtol: float = 1e-5, atol: float = 1e-5, sigmas_out=(), generator=None,
         dtype=torch.float64, progress: Callable[[float], None] | None = None) -> FlowResult:
    """Solve the probability-flow ODE with the log-density change from each x0 (B, ...)
    (one batch) up to sigma_T; see the module docstring. `eps` from eps_function.
    sigmas_out: VE sigmas (within [sigma_lo, sigma_T]) at which to report log p there."""
    process = process_of(diffusion.schedule)
    s_lo = float(process.sigma(process.t_eps)) if process.t_eps > 0 else float(process.sigma(0.0))
    s_hi = float(diffusion.schedule.base.sigmas[-1])
    batch, shape = x0.shape[0], tuple(x0.shape)
    dims = int(np.prod(shape[1:]))
    v = _probes(trace, probes, shape, generator).to(x0.device, dtype)       # (K, ...)
    k = v.shape[0]
    v_rep = v.repeat_interleave(batch, dim=0)                               # (K B, ...)
    counter = {"nfe": 0}
    u_lo, u_hi = math.log(s_lo), math.log(s_hi)

    def rate(u: float, state: torch.Tensor) -> torch.Tensor:
        sigma = math.exp(u)
        x = state[: batch * dims].reshape(shape)
        with torch.enable_grad():
            x_rep = x.detach().repeat(k, *([1] * (x.ndim - 1))).requires_grad_(True)
            alpha = 1.0 / math.sqrt(1.0 + sigma * sigma)
            s = torch.full((x_rep.shape[0],), sigma, dtype=dtype, device=x.device)
            out = eps(x_rep * alpha, s).to(dtype)
            counter["nfe"] += 1
            (grad,) = torch.autograd.grad((out * v_rep).sum(), x_rep)
        dtrace = sigma * (grad * v_rep).flatten(1).sum(1).reshape(k, batch).T   # (B, K)
        if progress is not None:
            progress((u - u_lo) / (u_hi - u_lo))
        return torch.cat([(sigma * out[:batch]).detach().flatten(), dtrace.flatten()])

    start = torch.cat([x0.to(dtype).flatten(), torch.zeros(batch * k, dtype=dtype,
                                                           device=x0.device)])
    outs = sorted(float(s) for s in sigmas_out)
    out_u = [math.log(min(max(s, s_lo), s_hi)) for s in outs]
    grid = sorted({u_lo, u_hi, *out_u})
    states = _solve(rate, start, grid, rtol, atol)                      # (len(grid), n)
    delta = states[:, batch * dims:].reshape(len(grid), batch, k)
    x_top = states[-1, : batch * dims].reshape(batch, dims) / math.sqrt(1.0 + s_hi ** 2)
    prior = (-0.5 * (x_top ** 2).sum(1) - 0.5 * dims * math.log(2 * math.pi)
             - 0.5 * dims * math.log(1.0 + s_hi ** 2))                  # + D log alpha_T
    combine = (lambda d: d.sum(-1)) if trace == "exact" else (lambda d: d.mean(-1))
    log_lik = prior + combine(delta[-1])
    per_probe = prior[:, None] + delta[-1]
    stderr = (torch.zeros(batch, dtype=dtype) if trace == "exact" or k < 2
              else per_probe.std(dim=1) / math.sqrt(k))
    at = [prior + combine(delta[-1] - delta[grid.index(u)]) + 0.5 * dims * math.log(1.0 + s ** 2)
          for u, s in zip(out_u, outs, strict=True)]                      # - D log alpha_s
    log_p_at = (torch.stack(at, 1) if at else torch.zeros(batch, 0, dtype=dtype))
    return FlowResult(log_lik.cpu().numpy(), stderr.cpu().numpy(), log_p_at.cpu().numpy(),
                      np.asarray(outs), counter["nfe"], dims, trace, k)


def _solve(rate, start: torch.Tensor, grid: list[float], rtol: float, atol: float):
    """The states at the points of `grid` (increasing u), float64 (len(grid), n)."""
    if importlib.util.find_spec("torchdiffeq") is not None:
        from torchdiffeq import odeint

        times = torch.tensor(grid, dtype=torch.float64)
        with torch.no_grad():
            return odeint(lambda u, y: rate(float(u), y), start, times, rtol=rtol, atol=atol,
                          method="dopri5")
    from scipy.integrate import solve_ivp

    device = start.device

    def f(u, y):
        return rate(u, torch.from_numpy(y).to(device)).cpu().numpy()

    result = solve_ivp(f, (grid[0], grid[-1]), start.cpu().numpy(), method="RK45",
                       t_eval=grid, rtol=rtol, atol=atol)
    if not result.success:
        raise RuntimeError(f"the ODE solver failed: {result.message}")
    return torch.from_numpy(result.y.T.copy())


def dequantize(x: torch.Tensor, generator=None) -> torch.Tensor:
    """8-bit images in [-1, 1] (k / 127.5 - 1) -> (k + U) / 128 - 1, U ~ U[0, 1)."""
    k = torch.round((x.double() + 1.0) * 127.5).clamp(0, 255)
    u = torch.rand(x.shape, generator=generator, dtype=torch.float64)
    return ((k + u.to(x.device)) / 128.0 - 1.0).to(x.dtype)


def bits_per_dim(log_likelihood, dims: int) -> np.ndarray:
    """Dequantised image log-likelihood (nats) -> bits/dim of the 8-bit data."""
    return -np.asarray(log_likelihood) / (dims * LN2) + 7.0


def marginal_entropy_ode(eps, diffusion, x0: torch.Tensor, timesteps, *, batch_size: int = 500,
                         **flow_options) -> dict:
    """H(X_t) = -E log p_t(x_t) in nats (total over D) at integer timesteps of the
    unrespaced schedule, a third way: the points x0 (N, D) ~ data flow up the
    probability-flow ODE, and log p_t at the flow's point at sigma_t comes from the same
    change of variables (FlowResult.log_p_at). With the exact score the flow carries the
    data's law to q_t, so this is H(q_t); with a model it is the model's. Returns
    dict(timesteps, entropy (len,), stderr (len,) over the points)."""
    timesteps = [int(t) for t in timesteps]
    sigmas = diffusion.schedule.base.sigmas[timesteps]
    order = np.argsort(sigmas)
    parts = [flow(eps, diffusion, x0[start:start + batch_size], sigmas_out=sigmas[order],
                  **flow_options).log_p_at for start in range(0, len(x0), batch_size)]
    log_p = np.concatenate(parts)[:, np.argsort(order)]                  # (N, len)
    return {"timesteps": timesteps, "entropy": -log_p.mean(0),
            "stderr": log_p.std(0, ddof=1) / math.sqrt(len(log_p))}
