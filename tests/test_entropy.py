"""Entropy bounds and Gaussian entropies against direct float64 computations."""

import math

import numpy as np
import pytest
import torch

from core.entropy import (
    entropy_bounds,
    forward_step_entropy,
    gaussian_entropy,
    gaussian_marginal_entropy,
    general_upper_bound,
    learned_variance_entropy,
    marginal_conditional_entropy,
    position_between_bounds,
    sohl_dickstein_lower_bound,
)
from core.schedule import NoiseSchedule, get_betas


@pytest.mark.parametrize("name", ["linear", "cosine", "sigmoid", "quadratic"])
def test_bounds_are_ordered_and_match_beta_and_beta_tilde(name):
    T, D = 60, 3
    betas = get_betas(name, T)
    abar = np.cumprod(1 - betas)
    tilde = betas[1:] * (1 - abar[:-1]) / (1 - abar[1:])
    upper, lower = entropy_bounds(NoiseSchedule(betas), D)
    assert upper.shape == lower.shape == (T,)
    assert np.all(upper >= lower)
    assert np.allclose(upper, [D / 2 * math.log(2 * math.pi * math.e * b) for b in betas])
    assert np.allclose(lower[1:], [D / 2 * math.log(2 * math.pi * math.e * v) for v in tilde])
    assert lower[0] == pytest.approx(lower[1])  # t=0 uses beta-tilde_1


def test_three_entropy_formula_equals_the_closed_form_lower_bound():
    schedule = NoiseSchedule(get_betas("cosine", 40))
    D = 5
    three = sohl_dickstein_lower_bound(schedule, D)
    _, lower = entropy_bounds(schedule, D)
    assert np.allclose(three[1:], lower[1:], rtol=1e-10)
    assert three[0] == pytest.approx(lower[0])
    # the pieces on their own
    abar = schedule.alphas_cumprod
    assert np.allclose(marginal_conditional_entropy(schedule, D),
                       D / 2 * np.log(2 * np.pi * np.e * (1 - abar)))
    assert np.allclose(marginal_conditional_entropy(schedule, D, prev=True)[1:],
                       D / 2 * np.log(2 * np.pi * np.e * (1 - abar[:-1])))
    assert marginal_conditional_entropy(schedule, D, prev=True)[0] == -np.inf
    assert np.allclose(forward_step_entropy(schedule, D),
                       D / 2 * np.log(2 * np.pi * np.e * schedule.betas))


def test_gaussian_entropy_matches_torch_distributions():
    cov = torch.eye(4, dtype=torch.float64) * 0.3
    expected = torch.distributions.MultivariateNormal(torch.zeros(4, dtype=torch.float64), cov).entropy()
    assert gaussian_entropy(4, 0.3) == pytest.approx(expected.item(), rel=1e-12)
    assert gaussian_entropy(2, 0.0) == -np.inf
    with pytest.raises(ValueError, match="dim"):
        gaussian_entropy(0, 1.0)


def test_learned_variance_entropy_isotropic_and_per_dimension():
    log_var = np.array([-3.0, -1.0, 0.5])
    assert np.allclose(learned_variance_entropy(log_var, 2), log_var + math.log(2 * math.pi * math.e))
    per_dim = torch.tensor([[-1.0, -2.0], [0.0, 0.3], [1.0, -4.0]])
    expected = [sum(0.5 * math.log(2 * math.pi * math.e * math.exp(v)) for v in row)
                for row in per_dim.tolist()]
    assert np.allclose(learned_variance_entropy(per_dim, 2), expected)
    with pytest.raises(ValueError, match="dim"):
        learned_variance_entropy(per_dim, 3)


def test_gaussian_marginal_entropy_matches_slogdet_per_t():
    schedule = NoiseSchedule(get_betas("linear", 30))
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 3))
    cov = a @ a.T + 0.05 * np.eye(3)
    mean = np.array([1.0, -2.0, 0.5])
    out = gaussian_marginal_entropy(schedule, mean, cov)
    expected = []
    for abar in schedule.alphas_cumprod:
        cov_t = abar * cov + (1 - abar) * np.eye(3)
        expected.append(0.5 * (3 * math.log(2 * math.pi * math.e) + np.linalg.slogdet(cov_t)[1]))
    expected = np.array(expected)
    assert np.allclose(out["total"], expected, rtol=1e-12)
    assert np.allclose(out["per_dim"], expected / 3)
    data_entropy = 0.5 * (3 * math.log(2 * math.pi * math.e) + np.linalg.slogdet(cov)[1])
    assert out["delta"][0] == pytest.approx(expected[0] - data_entropy)
    assert np.allclose(out["delta"][1:], np.diff(expected))
    # noise pushes H(X_t) towards the entropy of N(0, I)
    assert out["total"][-1] == pytest.approx(1.5 * math.log(2 * math.pi * math.e), abs=1e-2)


def test_gaussian_marginal_entropy_rejects_bad_covariances():
    schedule = NoiseSchedule(get_betas("linear", 10))
    with pytest.raises(ValueError, match="positive semi-definite"):
        gaussian_marginal_entropy(schedule, np.zeros(2), np.diag([1.0, -1.0]))
    with pytest.raises(ValueError, match="mean"):
        gaussian_marginal_entropy(schedule, np.zeros(3), np.eye(2))


def test_plain_upper_bound_fails_for_wide_data_but_the_general_one_holds():
    """1-D Gaussian data N(0, s^2): q(x_{t-1}|x_t) is Gaussian with variance
    v_t = 1 / (1/sigma_{t-1}^2 + alpha_t/beta_t), sigma_s^2 = abar_s s^2 + 1 - abar_s (closed form)."""
    schedule = NoiseSchedule(get_betas("linear", 200))
    t = np.arange(1, 200)
    for s2, exceeds in ((9.0, True), (0.25, False)):
        abar_prev = schedule.alphas_cumprod_prev[t]
        var_prev = abar_prev * s2 + 1 - abar_prev
        truth = 0.5 * np.log(2 * np.pi * np.e / (1 / var_prev + schedule.alphas[t] / schedule.betas[t]))
        upper, _ = entropy_bounds(schedule, 1)
        assert np.any(truth > upper[t]) == exceeds
        assert np.all(truth <= general_upper_bound(schedule, 1)[t])
    expected = 0.5 * np.log(2 * np.pi * np.e * schedule.betas / schedule.alphas)
    assert np.allclose(general_upper_bound(schedule, 3), 3 * expected, rtol=1e-12)


def test_position_between_bounds_is_the_learned_interpolation_weight():
    schedule = NoiseSchedule(get_betas("cosine", 50))
    upper, lower = entropy_bounds(schedule, 1)
    v = np.linspace(-0.2, 1.3, 50)
    log_var = v * np.log(schedule.betas) + (1 - v) * schedule.posterior_log_variance_clipped
    position = position_between_bounds(learned_variance_entropy(log_var, 1), lower, upper)
    assert np.allclose(position[1:], v[1:], atol=1e-9)
    assert np.isnan(position_between_bounds(1.0, 2.0, 2.0))
    assert np.isnan(position_between_bounds(1.0, -np.inf, 0.0))
