"""Gaussian KL and likelihoods against torch.distributions and hand-written formulas."""

import math

import torch
from torch.distributions import Normal, kl_divergence

from core.distributions import (
    approx_standard_normal_cdf,
    discretized_gaussian_log_likelihood,
    gaussian_log_likelihood,
    normal_kl,
)


def test_normal_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    lv1, lv2 = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    expected = kl_divergence(Normal(m1, (0.5 * lv1).exp()), Normal(m2, (0.5 * lv2).exp()))
    assert torch.allclose(normal_kl(m1, lv1, m2, lv2), expected, rtol=1e-10, atol=1e-12)
    # against a standard normal given as floats
    expected_std = kl_divergence(Normal(m1, (0.5 * lv1).exp()), Normal(0.0, 1.0))
    assert torch.allclose(normal_kl(m1, lv1, 0.0, 0.0), expected_std, rtol=1e-10)


def test_approx_cdf_is_close_to_exact():
    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    exact = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    assert (approx_standard_normal_cdf(x) - exact).abs().max() < 1e-3


def test_discretized_likelihood_sums_to_one_over_256_bins():
    bins = torch.arange(256, dtype=torch.float64) * 2 / 255 - 1
    for mean, log_scale in [(0.0, -3.0), (0.9, -1.0), (-0.99, -5.0), (0.3, 1.0), (2.5, -2.0)]:
        means = torch.full_like(bins, mean)
        log_scales = torch.full_like(bins, log_scale)
        total = discretized_gaussian_log_likelihood(bins, means, log_scales).exp().sum()
        assert abs(total.item() - 1.0) < 1e-9, (mean, log_scale, total.item())


def test_discretized_likelihood_interior_bin_is_cdf_difference():
    x, mean, sigma = torch.tensor([0.2], dtype=torch.float64), 0.1, 0.05

    def cdf(z):  # the tanh approximation, written out
        return 0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))

    lo, hi = (0.2 - 1 / 255 - mean) / sigma, (0.2 + 1 / 255 - mean) / sigma
    got = discretized_gaussian_log_likelihood(
        x, torch.full_like(x, mean), torch.full_like(x, math.log(sigma)))
    assert math.isclose(got.item(), math.log(cdf(hi) - cdf(lo)), rel_tol=1e-10)


def test_gaussian_log_likelihood_matches_normal_log_prob():
    g = torch.Generator().manual_seed(1)
    x, m, ls = (torch.randn(30, generator=g, dtype=torch.float64) for _ in range(3))
    assert torch.allclose(gaussian_log_likelihood(x, m, ls), Normal(m, ls.exp()).log_prob(x))
