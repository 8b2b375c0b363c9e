"""core.metrics: the NLL bound against closed forms, sample log-likelihood with an oracle model."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from core.config import ModelConfig
from core.data import get_dataset
from core.diffusion import GaussianDiffusion
from core.metrics import nll_bound, sample_log_likelihood
from core.models import build_model
from core.schedule import NoiseSchedule, get_betas


class ZeroEps(nn.Module):
    def forward(self, x, t, y=None):
        return torch.zeros_like(x)


class GaussianOracle(nn.Module):
    """The exact E[eps | x_t] for data N(mu, s^2 I):
    sqrt(1 - abar) (x_t - sqrt(abar) mu) / (abar s^2 + 1 - abar)."""

    def __init__(self, alphas_cumprod, mu, std):
        super().__init__()
        self.abar = torch.tensor(alphas_cumprod, dtype=torch.float64)
        self.mu = torch.tensor(mu, dtype=torch.float64)
        self.var = float(std) ** 2

    def forward(self, x, t, y=None):
        abar = self.abar[t].unsqueeze(1)
        eps = (1 - abar).sqrt() * (x.double() - abar.sqrt() * self.mu) / (abar * self.var + 1 - abar)
        return eps.float()


def test_vector_bound_matches_the_closed_form_expectation_for_a_zero_model():
    """With eps_hat = 0 (fixed_small): E[L_t] = coef1^2 (1 - abar_t) / abar_t / (2 b~_t) for
    t >= 1; the decoder's mean is x_1 / sqrt(abar_0) = x0 + sqrt((1 - abar_0) / abar_0) eps
    with variance b~_1; the prior term is KL(N(sqrt(abar) x0, 1 - abar) || N(0, 1)) at T-1.
    All in nats per dimension; the estimate must agree within its standard error."""
    T = 12
    schedule = NoiseSchedule(get_betas("cosine", T))
    diffusion = GaussianDiffusion(schedule, data_kind="continuous")
    data = torch.tensor(np.random.default_rng(0).normal(0.3, 0.7, size=(400, 2)), dtype=torch.float32)
    result = nll_bound(ZeroEps(), diffusion, data, n=400, batch_size=128, seed=1)
    assert result["unit"] == "nats/dim" and result["n"] == 400
    s = schedule
    expected = 0.0
    for t in range(1, T):
        abar = s.alphas_cumprod[t]
        expected += s.posterior_mean_coef1[t] ** 2 * (1 - abar) / abar / (2 * s.posterior_variance[t])
    var0 = s.posterior_variance[1]
    expected += 0.5 * math.log(2 * math.pi * var0) + (1 - s.alphas_cumprod[0]) / s.alphas_cumprod[0] / (2 * var0)
    abar_T = s.alphas_cumprod[-1]
    x2 = float((data.double() ** 2).mean())
    prior = 0.5 * (-1 - math.log(1 - abar_T) + (1 - abar_T) + abar_T * x2)
    expected += prior
    assert result["prior_mean"] == pytest.approx(prior, rel=1e-4)
    assert abs(result["mean"] - expected) < 4 * result["stderr"]
    assert result["stderr"] < 0.05 * abs(expected)


def test_image_bound_in_bits_per_dim_over_the_requested_subset():
    model = build_model(ModelConfig(kind="unet", channels=8, channel_mult=(1,), num_res_blocks=1,
                                    attention_resolutions=()), (1, 8, 8), num_classes=3).eval()
    diffusion = GaussianDiffusion(NoiseSchedule(get_betas("linear", 8)), data_kind="image")
    images = torch.rand(9, 1, 8, 8) * 2 - 1
    first = nll_bound(model, diffusion, images, n=5, batch_size=2, num_classes=3, seed=0)
    again = nll_bound(model, diffusion, images, n=5, batch_size=5, num_classes=3, seed=0)
    assert first["unit"] == "bits/dim" and first["n"] == 5 and first["per_example"].shape == (5,)
    assert 0 < first["mean"] < 100 and math.isfinite(first["stderr"])
    assert again["n"] == 5


def test_oracle_samples_are_as_likely_as_the_data_and_a_bad_model_is_not():
    """With the exact eps of Gaussian data N(mu, s^2 I) the samples' mean log-density is the
    data's expectation -log(2 pi s^2) - 1 (2-D), up to Monte Carlo error and the small
    discretisation bias of T = 100 steps with variance beta_t."""
    dataset = get_dataset("gaussian", num_samples=2000, seed=0)
    schedule = NoiseSchedule(get_betas("linear", 100))
    diffusion = GaussianDiffusion(schedule, var_type="fixed_large", data_kind="continuous")
    std = dataset.mixture.std
    oracle = GaussianOracle(schedule.alphas_cumprod, dataset.mixture.means[0], std)
    good = sample_log_likelihood(oracle, diffusion, dataset, n=4000, seed=0)
    assert good["n"] == 4000 and good["samples_in_support"] == 1.0
    assert good["data"] == pytest.approx(float(np.mean(dataset.log_density(dataset.test.double().numpy()))))
    expected = -math.log(2 * math.pi * std ** 2) - 1
    assert good["samples"] == pytest.approx(expected, abs=0.08)
    assert good["difference"] == pytest.approx(good["samples"] - good["data"])
    # |x - mu|^2 / s^2 ~ chi^2_2, whose median is 2 log 2: median log p = -log(2 pi s^2) - log 2
    assert good["samples_median"] == pytest.approx(-math.log(2 * math.pi * std ** 2) - math.log(2),
                                                   abs=0.08)
    assert good["outlier_share"] < 0.04           # 1 % for a perfect model
    bad = sample_log_likelihood(ZeroEps(), diffusion, dataset, n=500, seed=0)
    assert bad["samples"] < expected - 1.0
    assert bad["outlier_share"] > 0.3


def test_sample_log_likelihood_needs_a_density():
    dataset = get_dataset("moons", num_samples=100, seed=0)
    with pytest.raises(ValueError, match="no closed-form density"):
        sample_log_likelihood(ZeroEps(), GaussianDiffusion(NoiseSchedule(get_betas("linear", 5)),
                                                           data_kind="continuous"), dataset, n=10)
