"""Samplers driven by exact eps oracles, whose answers are known in closed form."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from core.diffusion import GaussianDiffusion
from core.sampling import GuidedModel, StepRecord, ddim_sample, ddpm_sample, p_sample
from core.schedule import NoiseSchedule, get_betas, space_timesteps


class PointOracle(nn.Module):
    """Exact eps for data that is the single point x*: eps = (x_t - sqrt(abar) x*) / sqrt(1-abar).

    abar is taken from the ORIGINAL schedule at the timestep the model receives.
    """

    def __init__(self, original_abar, point):
        super().__init__()
        self.abar = torch.tensor(original_abar, dtype=torch.float64)
        self.point = point

    def forward(self, x, t):
        abar = self.abar[t].reshape(-1, *([1] * (x.ndim - 1)))
        return ((x.double() - abar.sqrt() * self.point) / (1 - abar).sqrt()).float()


class GaussianOracle(nn.Module):
    """Exact E[eps | x_t] for data N(mu, s^2 I): x_t ~ N(sqrt(abar) mu, abar s^2 + 1 - abar),
    so E[eps | x_t] = sqrt(1 - abar) (x_t - sqrt(abar) mu) / (abar s^2 + 1 - abar)."""

    def __init__(self, original_abar, mu, s):
        super().__init__()
        self.abar = torch.tensor(original_abar, dtype=torch.float64)
        self.mu, self.s = mu, s

    def forward(self, x, t):
        abar = self.abar[t][:, None]
        scale = (1 - abar).sqrt() / (abar * self.s ** 2 + 1 - abar)
        return (scale * (x.double() - abar.sqrt() * self.mu)).float()


def schedule_and_abar(name, T):
    betas = get_betas(name, T)
    return NoiseSchedule(betas), np.cumprod(1 - betas)


def test_ddim_eta0_with_point_oracle_returns_the_point():
    schedule, abar = schedule_and_abar("linear", 100)
    point = torch.tensor([[0.3, -0.7], [0.9, 0.1]]).reshape(1, 2, 2, 1)
    diffusion = GaussianDiffusion(schedule)
    records = list(ddim_sample(diffusion, PointOracle(abar, point), (3, 2, 2, 1),
                               generator=torch.Generator().manual_seed(0)))
    assert [r.t for r in records] == list(range(99, -1, -1))
    assert all(isinstance(r, StepRecord) and r.variance == 0.0 for r in records)
    assert torch.allclose(records[-1].x, point.expand(3, 2, 2, 1), atol=1e-4)


def test_respaced_ddim_still_hits_the_point():
    schedule, abar = schedule_and_abar("cosine", 200)
    point = torch.tensor([[0.5, -0.25]])
    diffusion = GaussianDiffusion(schedule, data_kind="continuous").respaced(
        space_timesteps(200, "ddim10"))
    records = list(ddim_sample(diffusion, PointOracle(abar, point), (4, 2),
                               generator=torch.Generator().manual_seed(1)))
    assert len(records) == 10
    assert torch.allclose(records[-1].x, point.expand(4, 2), atol=1e-4)


def test_ddpm_with_gaussian_oracle_gives_the_data_mean_and_variance():
    # For data N(mu, I) the true reverse variance is exactly beta_t ("fixed_large"), so
    # the chain reproduces the data distribution up to the missing noise at t=0.
    T = 100
    schedule, abar = schedule_and_abar("linear", T)
    mu = torch.tensor([0.5, -1.0], dtype=torch.float64)
    diffusion = GaussianDiffusion(schedule, var_type="fixed_large", data_kind="continuous")
    n = 20_000
    *_, last = ddpm_sample(diffusion, GaussianOracle(abar, mu, 1.0), (n, 2),
                           generator=torch.Generator().manual_seed(0))
    x = last.x.double()
    assert torch.allclose(x.mean(0), mu, atol=4 / math.sqrt(n))
    assert torch.allclose(x.var(0), torch.ones(2, dtype=torch.float64), atol=0.05)


def test_ddpm_fixed_small_variance_matches_the_linear_gaussian_recursion():
    # Same oracle, data N(mu, s^2), variance beta-tilde: x_{t-1} = A_t x_t + b_t + sqrt(tilde) z,
    # so Var recurses as V <- A_t^2 V + tilde_t from V_T = 1; the mean is exactly mu.
    T, s = 50, 0.5
    betas = get_betas("cosine", T)
    schedule, abar = NoiseSchedule(betas), np.cumprod(1 - betas)
    abar_prev = np.append(1.0, abar[:-1])
    expected_var = 1.0
    for t in reversed(range(T)):
        gain = s * s * math.sqrt(abar[t]) / (abar[t] * s * s + 1 - abar[t])  # dE[x0|x_t]/dx_t
        coef_x0 = betas[t] * math.sqrt(abar_prev[t]) / (1 - abar[t])
        coef_xt = (1 - abar_prev[t]) * math.sqrt(1 - betas[t]) / (1 - abar[t])
        tilde = betas[t] * (1 - abar_prev[t]) / (1 - abar[t])
        expected_var = (coef_xt + coef_x0 * gain) ** 2 * expected_var + tilde
    diffusion = GaussianDiffusion(schedule, var_type="fixed_small", data_kind="continuous")
    n = 20_000
    *_, last = ddpm_sample(diffusion, GaussianOracle(abar, 0.2, s), (n, 1),
                           generator=torch.Generator().manual_seed(2))
    assert abs(last.x.double().mean().item() - 0.2) < 4 * math.sqrt(expected_var / n)
    assert last.x.double().var().item() == pytest.approx(expected_var, rel=0.05)
    assert 0.5 * s * s < expected_var < s * s  # the test distinguishes variance choices


def test_sampling_is_reproducible_and_noise_free_at_t0():
    schedule, abar = schedule_and_abar("linear", 20)
    diffusion = GaussianDiffusion(schedule, data_kind="continuous")
    model = GaussianOracle(abar, 0.0, 0.7)

    def run(seed):
        return list(ddpm_sample(diffusion, model, (5, 2), generator=torch.Generator().manual_seed(seed)))

    first, again, other = run(3), run(3), run(4)
    assert all(torch.equal(a.x, b.x) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[-1].x, other[-1].x)
    assert first[-1].t == 0 and first[-1].variance == 0.0
    assert first[0].variance == pytest.approx(schedule.posterior_variance[19], rel=1e-5)
    # at t=0 the step returns the posterior mean, which is pred_x0 itself
    assert torch.allclose(first[-1].x, first[-1].pred_x0)


def test_ddim_eta1_uses_the_posterior_variance():
    schedule, abar = schedule_and_abar("cosine", 30)
    diffusion = GaussianDiffusion(schedule, data_kind="continuous")
    records = list(ddim_sample(diffusion, GaussianOracle(abar, 0.0, 1.0), (3, 2), eta=1.0,
                               generator=torch.Generator().manual_seed(0)))
    abar_prev = np.append(1.0, abar[:-1])
    for r in records[:-1]:
        t = r.t
        tilde = (1 - abar_prev[t]) / (1 - abar[t]) * (1 - abar[t] / abar_prev[t])
        assert r.variance == pytest.approx(tilde, rel=1e-9)
    assert records[-1].variance == 0.0


def test_p_sample_accepts_a_timestep_tensor():
    schedule, abar = schedule_and_abar("linear", 10)
    diffusion = GaussianDiffusion(schedule, data_kind="continuous")
    x = torch.zeros(2, 2)
    record = p_sample(diffusion, GaussianOracle(abar, 0.0, 1.0), x, torch.tensor([4, 4]),
                      generator=torch.Generator().manual_seed(0))
    assert record.t == 4 and record.x.shape == (2, 2)


class ClassModel(nn.Module):
    """Output depends on the label so conditional and unconditional halves differ."""

    def forward(self, x, t, y=None):
        shift = y.float().reshape(-1, *([1] * (x.ndim - 1)))
        mean = x + shift
        variance = -x * shift
        return torch.cat([mean, variance], dim=1)


def test_guided_model_mixes_mean_channels_and_keeps_conditional_variance():
    base = ClassModel()
    x = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([1, 2, 3, 4])
    y = torch.tensor([0, 1, 2, 1])
    null = torch.full_like(y, 5)
    cond, uncond = base(x, t, y=y), base(x, t, y=null)
    assert torch.equal(GuidedModel(base, 0.0, 5)(x, t, y=y), cond)
    guided = GuidedModel(base, 2.0, 5)(x, t, y=y)
    assert torch.allclose(guided[:, :3], 3 * cond[:, :3] - 2 * uncond[:, :3])
    assert torch.equal(guided[:, 3:], cond[:, 3:])
