"""Sampling with Analytic-DPM's variance (core.analytic_dpm + core.generate), checked on
Gaussian data where the true reverse process is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_metrics import GaussianOracle

from core.analytic_dpm import analytic_diffusion, estimate_eps_norm_sq
from core.diffusion import GaussianDiffusion
from core.generate import sample
from core.schedule import NoiseSchedule, get_betas, space_timesteps

MU, STD = np.array([0.5, -1.0]), 1.5   # wider than N(0, I): fixed beta-tilde is far off


def setting(T=1000, steps=10, n_data=4000):
    schedule = NoiseSchedule(get_betas("linear", T))
    diffusion = GaussianDiffusion(schedule, var_type="fixed_small", data_kind="continuous")
    oracle = GaussianOracle(schedule.alphas_cumprod, MU, STD)
    data = torch.tensor(MU + STD * np.random.default_rng(0).standard_normal((n_data, 2)),
                        dtype=torch.float32)
    respaced = diffusion.respaced(space_timesteps(T, str(steps)))
    return diffusion, respaced, oracle, data


def test_gamma_of_the_exact_eps_is_the_closed_form():
    """E|E[eps|x_t]|^2 / D = 1 - Var(eps|x_t) = (1 - abar) / (abar s^2 + 1 - abar)."""
    _, respaced, oracle, data = setting()
    gamma = estimate_eps_norm_sq(oracle, respaced, data, seed=1)
    abar = respaced.schedule.alphas_cumprod
    exact = (1 - abar) / (abar * STD**2 + 1 - abar)
    np.testing.assert_allclose(gamma, exact, rtol=0.03)


def test_analytic_variance_is_the_true_reverse_variance_on_a_respaced_schedule():
    """For Gaussian data q(x_{s-1} | x_s) is Gaussian with variance beta~ + c^2 Var(x0|x_s),
    Var(x0|x_s) = s^2 (1 - abar) / (abar s^2 + 1 - abar), on the respaced schedule too."""
    _, respaced, oracle, data = setting()
    analytic, variance = analytic_diffusion(oracle, respaced, data, float(data.var(0).mean()))
    s = respaced.schedule
    abar = s.alphas_cumprod
    truth = s.posterior_variance + s.posterior_mean_coef1**2 * STD**2 * (1 - abar) / (abar * STD**2 + 1 - abar)
    np.testing.assert_allclose(variance[1:], truth[1:], rtol=0.05)
    assert np.array_equal(analytic.reverse_variance, variance)
    assert respaced.reverse_variance is None           # the original is untouched


def test_ten_analytic_steps_sample_the_right_spread_where_fixed_variances_do_not():
    """With the exact mean and the exact variance every reverse step is the true one, so 10
    ancestral steps give samples with the data's variance s^2 = 2.25; beta-tilde is too
    narrow for data this wide."""
    diffusion, _, oracle, data = setting()
    n = 20_000
    analytic = sample(oracle, diffusion, n, (2,), steps=10, seed=3, analytic_data=data)
    fixed = sample(oracle, diffusion, n, (2,), steps=10, seed=3)
    spread = lambda trajectory: trajectory.final.astype(np.float64).var(axis=0).mean()  # noqa: E731
    assert spread(analytic) == pytest.approx(STD**2, rel=0.04)    # s.e. of a variance: ~1 %
    assert spread(fixed) < 0.85 * STD**2
    np.testing.assert_allclose(analytic.final.mean(axis=0), MU, atol=0.05)
    assert analytic.completed and len(analytic.timesteps) == 11


def test_analytic_sampling_reports_progress_over_both_passes_and_can_stop():
    diffusion, _, oracle, data = setting(n_data=100)
    seen = []
    sample(oracle, diffusion, 10, (2,), steps=5, seed=0, analytic_data=data,
           progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (10, 10) and seen[0] == (1, 10)
    stopped = sample(oracle, diffusion, 10, (2,), steps=5, seed=0, analytic_data=data,
                     should_stop=lambda: True)
    assert not stopped.completed and stopped.x.shape[0] == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"sampler": "dpmpp_2m"}, "an option of DDPM, DDIM, not of DPM-Solver"),
    ({"analytic_data": torch.zeros(5, 3)}, "shape"),
    ({"analytic_data": torch.zeros(1, 2)}, "at least 2"),
])
def test_bad_analytic_requests_are_clear_errors(kwargs, message):
    diffusion, _, oracle, data = setting(n_data=10)
    with pytest.raises(ValueError, match=message):
        sample(oracle, diffusion, 4, (2,), steps=5, **{"analytic_data": data, **kwargs})


def test_reverse_variance_override_is_validated():
    diffusion, respaced, _, _ = setting()
    with pytest.raises(ValueError, match="shape"):
        respaced.with_reverse_variance(np.ones(3))
    with pytest.raises(ValueError, match="positive"):
        respaced.with_reverse_variance(np.r_[0.1, 0.0, np.ones(8)])
    fixed = respaced.with_reverse_variance(np.r_[0.0, np.ones(9)])
    assert fixed.reverse_variance[0] == respaced.schedule.posterior_variance[1]


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ten_analytic_ddim_steps_sample_the_right_spread(eta):
    """Bao et al.'s variance for DDIM's family (lambda^2 = eta^2 beta-tilde, the mean as DDIM
    has it): with the exact eps the 10 reverse steps are the true Gaussian ones, so the
    samples have the data's variance; plain DDIM at eta = 0 (a deterministic map of a
    wrongly started ODE at 10 steps) and eta = 0.5 do not."""
    diffusion, _, oracle, data = setting()
    n = 20_000
    options = {"eta": eta}
    analytic = sample(oracle, diffusion, n, (2,), sampler="ddim", steps=10, seed=3,
                      options=options, analytic_data=data)
    plain = sample(oracle, diffusion, n, (2,), sampler="ddim", steps=10, seed=3, options=options)
    spread = lambda trajectory: trajectory.final.astype(np.float64).var(axis=0).mean()  # noqa: E731
    assert spread(analytic) == pytest.approx(STD**2, rel=0.04)
    assert abs(spread(plain) / STD**2 - 1) > 0.06
    np.testing.assert_allclose(analytic.final.mean(axis=0), MU, atol=0.05)
    assert analytic.variance[1:-1].max() > 0.05       # noise is added, also at eta = 0


def test_the_ddim_analytic_variance_reduces_to_the_ddpm_one_at_eta_1():
    from core.analytic_dpm import analytic_dpm_variance

    schedule = NoiseSchedule(get_betas("cosine", 50))
    gamma = np.linspace(0.99, 0.2, 50)
    np.testing.assert_allclose(
        analytic_dpm_variance(schedule, gamma, lambda2=schedule.posterior_variance),
        analytic_dpm_variance(schedule, gamma), rtol=1e-12)
