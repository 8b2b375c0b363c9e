"""The fast samplers against independent computations.

- Order: with the exact eps of the 8-Gaussian ring (core.exact, float64), each deterministic
  solver's result from the same x_T is compared with a converged solution of the same
  probability-flow ODE (scipy's RK45 at rtol = atol = 1e-10 down to sigma_min, then the exact
  denoiser there, which every solver's last step applies); the error must shrink as
  NFE^-order with the sampler's stated order (log-log slope within 0.3, 128-512 steps).
- Distribution: with the exact eps of Gaussian data N(mu, s^2), whose ODE has the closed form
  x~(sigma) = mu + sqrt(s^2 + sigma^2) / sqrt(s^2 + sigma_T^2) (x~_T - mu) in the VE view
  x~ = x / alpha, every ODE solver maps the prior's draws to the data distribution.
- DPM-Solver++ 2M and UniPC agree step for step with diffusers' schedulers on the same model
  outputs; RK45's network calls are counted and its error falls with its tolerance."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

import core.samplers as registry
from core.diffusion import GaussianDiffusion
from core.sampling import make_run, run_steps, sample_steps
from core.schedule import NoiseSchedule
from core.spacing import respace

MU, SD = 0.7, 0.5
SCHEDULE = NoiseSchedule.from_name("linear", 1000)
DIFFUSION = GaussianDiffusion(SCHEDULE, data_kind="continuous")


class GaussianEps(torch.nn.Module):
    """E[eps | x_t] for x0 ~ N(MU, SD^2) at any (fractional) timestep, in float64."""

    def forward(self, x, t, y=None):
        sigma = torch.as_tensor(SCHEDULE.sigma_at(t.double().cpu().numpy()), dtype=torch.float64)
        abar = (1.0 / (1.0 + sigma ** 2)).reshape(-1, *([1] * (x.ndim - 1)))
        eps = (x.double() - abar.sqrt() * MU) * (1 - abar).sqrt() / (abar * SD ** 2 + 1 - abar)
        return eps.to(x.dtype)


def exact_result(x_T: torch.Tensor) -> torch.Tensor:
    """The exact ODE state at sigma_min, then the exact denoiser there (what every solver's
    first-order last step computes from a perfect state)."""
    s_T, s_min = SCHEDULE.sigmas[-1], SCHEDULE.sigmas[0]
    x_tilde = x_T.double() * np.sqrt(1 + s_T ** 2)
    at_min = MU + np.sqrt(SD ** 2 + s_min ** 2) / np.sqrt(SD ** 2 + s_T ** 2) * (x_tilde - MU)
    return MU + SD ** 2 / (SD ** 2 + s_min ** 2) * (at_min - MU)


X_T = torch.randn(2000, 1, generator=torch.Generator().manual_seed(0))
DETERMINISTIC = [s.name for s in registry.samplers() if s.deterministic and not s.adaptive]


@pytest.fixture(scope="module")
def ring_reference():
    """(exact eps network, x_T (200, 2) float64, the converged result from x_T)."""
    from scipy.integrate import solve_ivp

    from core.data import get_dataset
    from core.exact import ExactEps

    model = ExactEps(get_dataset("8gaussians", num_samples=100).mixture, SCHEDULE)
    x_T = torch.randn(200, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s_max, s_min = SCHEDULE.sigmas[-1], SCHEDULE.sigmas[0]

    def velocity(s, y):                         # dx~/ds = eps(x~ alpha(s), s)
        x = torch.from_numpy(y).reshape(x_T.shape) / np.sqrt(1 + s * s)
        t = torch.full((x.shape[0],), float(SCHEDULE.timestep_at(s)), dtype=torch.float64)
        return model(x, t).numpy().ravel()

    solution = solve_ivp(velocity, (s_max, s_min), (x_T * np.sqrt(1 + s_max ** 2)).numpy().ravel(),
                         method="RK45", rtol=1e-10, atol=1e-10)
    assert solution.success
    x_min = torch.from_numpy(solution.y[:, -1]).reshape(x_T.shape) / np.sqrt(1 + s_min ** 2)
    abar = 1.0 / (1.0 + s_min ** 2)
    eps = model(x_min, torch.zeros(x_T.shape[0], dtype=torch.float64))
    return model, x_T, (x_min - np.sqrt(1 - abar) * eps) / np.sqrt(abar)


@pytest.mark.parametrize("sampler", DETERMINISTIC)
def test_each_solver_converges_with_its_stated_order(sampler, ring_reference):
    model, x_T, reference = ring_reference
    spec = registry.get_sampler(sampler)
    nfe, errors = [], []
    for steps in (128, 256, 512):
        records = list(sample_steps(spec, respace(DIFFUSION, steps, "logsnr"), model,
                                    x_T.shape, noise=x_T.clone(), clip_denoised=False))
        nfe.append(spec.network_calls(steps))
        errors.append((records[-1].x - reference).abs().max().item())
    slope = -np.polyfit(np.log(nfe), np.log(errors), 1)[0]
    assert abs(slope - spec.order) <= 0.3, (sampler, errors, slope)
    assert errors[-1] < 0.01


@pytest.mark.parametrize("sampler", DETERMINISTIC + ["rk45"])
def test_every_ode_solver_reaches_the_data_distribution(sampler):
    spec = registry.get_sampler(sampler)
    errors = []
    settings = ([{"rtol": 1e-3, "atol": 1e-3}, {"rtol": 1e-6, "atol": 1e-6}] if spec.adaptive
                else [16, 1000])
    perfect = exact_result(X_T)           # what an exact solver gives from these x_T
    for setting in settings:
        steps, options = (64, setting) if spec.adaptive else (setting, None)
        records = list(sample_steps(spec, respace(DIFFUSION, steps, "logsnr"), GaussianEps(),
                                    X_T.shape, noise=X_T.clone(), clip_denoised=False,
                                    options=options))
        x0 = records[-1].x.double()
        errors.append(max(abs(x0.mean().item() - perfect.mean().item()),
                          abs(x0.std().item() / perfect.std().item() - 1)))
    assert errors[1] < errors[0] and errors[1] < 0.003, errors
    # and that is the data distribution, up to the prior's mismatch at T (~MU SD / sigma_T)
    assert abs(perfect.mean().item() - MU) < 3 * SD / np.sqrt(len(X_T)) + 0.003
    assert perfect.std().item() == pytest.approx(SD * X_T.std().item(), rel=1e-3)


def test_rk45_counts_its_network_calls_and_tightens_with_the_tolerance():
    errors, calls = [], []
    reference = exact_result(X_T[:200])
    for tolerance in (1e-3, 1e-5, 1e-7):
        run = make_run("rk45", DIFFUSION, GaussianEps(), clip_denoised=False,
                       options={"rtol": tolerance, "atol": tolerance})
        final = list(run_steps(run, (200, 1), noise=X_T[:200].double()))[-1].x
        errors.append((final - reference).abs().max().item())
        calls.append(run.nfe)
    assert calls[0] < calls[1] < calls[2]                 # counted, and more when tighter
    assert errors[2] < errors[1] < errors[0] and errors[2] < 1e-5


# ---------------------------------------------------------------------- diffusers
needs_diffusers = pytest.mark.skipif(importlib.util.find_spec("diffusers") is None,
                                     reason="diffusers (a test dependency) is not installed")


def diffusers_run(scheduler, x: torch.Tensor, model) -> list[torch.Tensor]:
    out = []
    for t in scheduler.timesteps:
        x = scheduler.step(model(x, t.repeat(x.shape[0])), t, x).prev_sample
        out.append(x.clone())
    return out


@needs_diffusers
@pytest.mark.parametrize("sampler, order", [("dpmpp_2m", 2), ("unipc", 2), ("unipc_3", 3)])
@pytest.mark.parametrize("steps", [5, 8, 20])
def test_multistep_solvers_agree_step_for_step_with_diffusers(sampler, order, steps):
    from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

    cls = DPMSolverMultistepScheduler if sampler.startswith("dpm") else UniPCMultistepScheduler
    scheduler = cls(num_train_timesteps=1000, trained_betas=SCHEDULE.betas.tolist(),
                    solver_order=order, timestep_spacing="linspace")
    scheduler.set_timesteps(steps)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    expected = diffusers_run(scheduler, x.clone(), GaussianEps())
    ours = list(sample_steps(sampler, respace(DIFFUSION, steps, "linspace"), GaussianEps(),
                             x.shape, noise=x.clone(), clip_denoised=False))
    assert len(ours) == len(expected) == steps
    for k, (got, want) in enumerate(zip(ours, expected, strict=True)):
        error = ((got.x - want).abs() / (1.0 + want.abs())).max().item()
        assert error < 1e-5, (k, error)
