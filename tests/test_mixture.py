"""Exact reverse-process quantities of Gaussian-mixture data against brute-force Monte Carlo."""

from types import SimpleNamespace

import numpy as np
import pytest

from core.mixture import (
    MixtureReverseProcess,
    analytic_dpm_range,
    analytic_dpm_variance,
    mixture_data_variance,
    reverse_process_curves,
)
from core.schedule import NoiseSchedule, get_betas

RING = SimpleNamespace(
    means=np.stack([2 * np.cos(np.arange(8) * np.pi / 4), 2 * np.sin(np.arange(8) * np.pi / 4)], 1),
    std=0.2,
    weights=np.full(8, 1 / 8),
)
SCHEDULE = NoiseSchedule(get_betas("linear", 100))


def _brute_force_reverse_moments(x_t, t, n, rng):
    """Self-normalised importance sampling of q(x_{t-1} | x_t) without the closed form:
    draw x_0 from the mixture, x_{t-1} ~ q(x_{t-1}|x_0) by the forward formula, and weight
    each x_{t-1} by the forward kernel N(x_t; sqrt(alpha_t) x_{t-1}, beta_t I)."""
    k = rng.choice(8, size=n, p=RING.weights)
    x0 = RING.means[k] + RING.std * rng.standard_normal((n, 2))
    abar_prev = 1.0 if t == 0 else np.prod(1 - SCHEDULE.betas[:t])
    x_prev = np.sqrt(abar_prev) * x0 + np.sqrt(1 - abar_prev) * rng.standard_normal((n, 2))
    beta = SCHEDULE.betas[t]
    log_w = -0.5 * np.sum((x_t - np.sqrt(1 - beta) * x_prev) ** 2, axis=1) / beta
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    mean = w @ x_prev
    var = w @ np.sum((x_prev - mean) ** 2, axis=1) / 2
    return mean, var, 1.0 / np.sum(w**2)


@pytest.mark.parametrize("t", [10, 40, 80])
def test_reverse_step_matches_importance_sampling(t):
    rng = np.random.default_rng(t)
    process = MixtureReverseProcess(RING, SCHEDULE)
    x_t = process.sample_marginal(1, t, rng)
    weights, means, _ = process.reverse_step(x_t, t)
    closed_mean = np.einsum("nk,nkd->nd", weights, means)[0]
    closed_var = process.reverse_variance(x_t, t)[0]
    mean, var, ess = _brute_force_reverse_moments(x_t[0], t, 400_000, rng)
    assert ess > 2000, "too few effective samples for a meaningful comparison"
    tol = 6 * np.sqrt(closed_var / ess)
    assert np.allclose(mean, closed_mean, atol=tol)
    assert var == pytest.approx(closed_var, rel=0.1)


def test_marginal_density_integrates_to_one():
    process = MixtureReverseProcess(RING, SCHEDULE)
    grid = np.linspace(-6, 6, 301)
    xx, yy = np.meshgrid(grid, grid)
    points = np.stack([xx.ravel(), yy.ravel()], 1)
    for t in (-1, 5, 50):
        density = np.exp(process.marginal_log_density(points, t))
        assert density.sum() * (grid[1] - grid[0]) ** 2 == pytest.approx(1.0, abs=2e-3)


def test_single_gaussian_entropies_match_closed_form():
    single = SimpleNamespace(means=np.array([[0.5, -1.0]]), std=0.3, weights=np.array([1.0]))
    process = MixtureReverseProcess(single, SCHEDULE)
    rng = np.random.default_rng(0)
    for t in (0, 20, 99):
        abar = np.prod(1 - SCHEDULE.betas[: t + 1])
        var_t = abar * 0.09 + 1 - abar
        exact = np.log(2 * np.pi * np.e * var_t)  # D/2 log(2 pi e var) with D = 2
        est = process.marginal_entropy(t, 20_000, rng)
        assert est.value == pytest.approx(exact, abs=5 * est.stderr + 1e-9)
        # For one Gaussian, q(x_{t-1}|x_t) is Gaussian with variance v_t: entropy in closed form.
        abar_prev = abar / (1 - SCHEDULE.betas[t])
        var_prev = abar_prev * 0.09 + 1 - abar_prev
        beta = SCHEDULE.betas[t]
        v = 1 / (1 / var_prev + (1 - beta) / beta)
        rev = process.reverse_entropy(t, 20_000, rng)
        assert rev.value == pytest.approx(np.log(2 * np.pi * np.e * v), abs=5 * rev.stderr + 1e-9)


def test_chain_rule_entropy_matches_direct_nested_monte_carlo():
    """H(X_{t-1}|X_t) by the chain rule against -E log q(x_{t-1}|x_t) sampled directly."""
    process = MixtureReverseProcess(RING, SCHEDULE)
    rng = np.random.default_rng(1)
    t = 30
    x_t = process.sample_marginal(3000, t, rng)
    weights, means, v = process.reverse_step(x_t, t)
    k = np.array([rng.choice(8, p=w) for w in weights])
    x_prev = means[np.arange(len(k)), k] + np.sqrt(v) * rng.standard_normal((len(k), 2))
    sq = np.sum((x_prev[:, None, :] - means) ** 2, axis=-1)
    log_comp = np.log(weights + 1e-300) - 0.5 * sq / v - np.log(2 * np.pi * v)
    log_q = np.log(np.sum(np.exp(log_comp), axis=1))
    direct, direct_err = -log_q.mean(), log_q.std() / np.sqrt(len(log_q))
    chain = process.reverse_entropy(t, 40_000, rng)
    assert chain.value == pytest.approx(direct, abs=5 * np.hypot(direct_err, chain.stderr))


def test_true_entropy_lies_above_the_lower_bound():
    curves = reverse_process_curves(RING, SCHEDULE, [1, 10, 50, 99], n=4000)
    lower = 0.5 * np.log(2 * np.pi * np.e * SCHEDULE.posterior_variance[curves["t"]])
    assert np.all(curves["true_entropy"] + 4 * curves["true_entropy_err"] >= lower)
    # Per-dimension variance likewise between beta-tilde and (nearly) beta.
    assert np.all(curves["true_variance"] >= SCHEDULE.posterior_variance[curves["t"]] * 0.999)


def test_analytic_dpm_with_exact_score_equals_true_reverse_variance():
    process = MixtureReverseProcess(RING, SCHEDULE)
    rng = np.random.default_rng(2)
    gamma = np.zeros(100)
    ts = [5, 30, 70, 99]
    for t in ts:
        gamma[t] = process.eps_norm_sq(t, 100_000, rng)
    sigma2 = analytic_dpm_variance(SCHEDULE, gamma)
    for t in ts:
        truth = process.expected_reverse_variance(t, 100_000, rng)
        assert sigma2[t] == pytest.approx(float(truth.value), rel=0.02, abs=6 * float(truth.stderr))


def test_analytic_dpm_for_standard_normal_data_is_beta():
    abar = SCHEDULE.alphas_cumprod
    assert np.allclose(analytic_dpm_variance(SCHEDULE, 1 - abar), SCHEDULE.betas, rtol=1e-10)


def _quadrature_entropy(process, t, points=801):
    """-int q log q over a 2-D grid by the trapezoid rule (float64, no sampling): the grid
    reaches 10 component standard deviations beyond the farthest mean."""
    means, var = process.marginal_params(t)
    half = float(np.abs(means).max()) + 10 * np.sqrt(var)
    axis = np.linspace(-half, half, points)
    gx, gy = np.meshgrid(axis, axis, indexing="ij")
    log_q = process.marginal_log_density(np.stack([gx.ravel(), gy.ravel()], 1), t)
    integrand = (-np.exp(log_q) * log_q).reshape(points, points)
    w = np.ones(points)
    w[[0, -1]] = 0.5
    return float((axis[1] - axis[0]) ** 2 * w @ integrand @ w)


@pytest.mark.parametrize("t", [0, 3, 30, 80, 99])
def test_entropy_change_matches_quadrature(t):
    """H(X_{t-1}) - H(X_t) (paired draws, control variate) against two 2-D quadratures, and
    precise enough to place the truth inside the O(beta_t) gap between the bounds."""
    process = MixtureReverseProcess(RING, SCHEDULE)
    change = process.entropy_change(t, 4000, np.random.default_rng(t))
    exact = _quadrature_entropy(process, t - 1) - _quadrature_entropy(process, t)
    assert change.value == pytest.approx(exact, abs=5 * float(change.stderr) + 1e-7)
    assert change.stderr < 1e-3  # independent draws give ~1e-2 nats at n = 4000
    if t > 0:
        gap = np.log(SCHEDULE.betas[t] / SCHEDULE.posterior_variance[t])  # D/2 log(beta/beta~), D=2
        assert change.stderr < 0.02 * gap


def test_curves_report_consistent_entropy_change_and_truth():
    curves = reverse_process_curves(RING, SCHEDULE, [2, 40], n=2000, seed=3)
    forward = 0.5 * np.log(2 * np.pi * np.e * SCHEDULE.betas[curves["t"]])
    assert np.allclose(curves["true_entropy"], forward - curves["marginal_entropy_delta"], atol=1e-12)
    process = MixtureReverseProcess(RING, SCHEDULE)
    for i, t in enumerate(curves["t"]):
        exact = (_quadrature_entropy(process, t) - _quadrature_entropy(process, t - 1)) / 2
        err = curves["marginal_entropy_delta_err"][i]
        assert curves["marginal_entropy_delta"][i] == pytest.approx(exact, abs=5 * err + 1e-7)


def test_mixture_data_variance_matches_samples():
    process = MixtureReverseProcess(RING, SCHEDULE)
    x0 = process.sample_marginal(400_000, -1, np.random.default_rng(4))
    assert mixture_data_variance(RING) == pytest.approx(x0.var(axis=0).mean(), rel=0.01)
    assert mixture_data_variance(RING) == pytest.approx(2.0 + 0.04, rel=1e-12)  # r^2 / 2 + s^2


def test_analytic_dpm_clip_keeps_the_variance_in_its_possible_range():
    ts = np.array([0, 1, 50, 99])
    low, high = analytic_dpm_range(SCHEDULE, 2.04, ts)
    assert np.allclose(low, SCHEDULE.posterior_variance[ts])
    coef = SCHEDULE.betas[ts] * np.sqrt(SCHEDULE.alphas_cumprod_prev[ts]) / (1 - SCHEDULE.alphas_cumprod[ts])
    assert np.allclose(high, low + coef**2 * 2.04)
    # A Gamma above 1 would give a variance below beta-tilde (negative at t = 0): clipped up.
    assert np.array_equal(analytic_dpm_variance(SCHEDULE, np.full(4, 1.5), ts, 2.04), low)
    assert analytic_dpm_variance(SCHEDULE, np.full(4, 1.5), ts)[0] < 0
    # A Gamma far below zero overshoots the range: clipped down.
    assert np.array_equal(analytic_dpm_variance(SCHEDULE, np.full(4, -1e6), ts, 2.04), high)
    # Inside the range nothing changes, and a subset equals the full array at those t.
    gamma = 1 - SCHEDULE.alphas_cumprod
    full = analytic_dpm_variance(SCHEDULE, gamma)
    assert np.array_equal(analytic_dpm_variance(SCHEDULE, gamma[ts], ts), full[ts])
    with pytest.raises(ValueError):
        analytic_dpm_variance(SCHEDULE, gamma, ts)


def test_true_reverse_variance_lies_in_the_analytic_dpm_range():
    curves = reverse_process_curves(RING, SCHEDULE, [0, 5, 50, 99], n=4000, seed=5)
    low, high = analytic_dpm_range(SCHEDULE, mixture_data_variance(RING), curves["t"])
    err = 4 * curves["true_variance_err"]
    assert np.all(curves["true_variance"] >= low - err)
    assert np.all(curves["true_variance"] <= high + err)


@pytest.mark.parametrize("t", [-1, 30, 99])
def test_marginal_entropy_matches_quadrature(t):
    process = MixtureReverseProcess(RING, SCHEDULE)
    est = process.marginal_entropy(t, 4000, np.random.default_rng(11))
    assert est.value == pytest.approx(_quadrature_entropy(process, t), abs=5 * float(est.stderr) + 1e-7)
    if t == 99:  # q_t is nearly Gaussian: the control variate leaves almost no noise
        assert est.stderr < 1e-4


def test_clipped_analytic_dpm_is_exact_for_gaussian_data_and_bounded():
    """N(m, s^2 I) data: Gamma_t = (1 - abar) / (abar s^2 + 1 - abar) and the true reverse
    variance 1 / (1/sigma_{t-1}^2 + alpha/beta) in closed form; a noisy Gamma is clipped."""
    schedule = NoiseSchedule(get_betas("cosine", 200))
    s2 = 1.5**2
    t = np.arange(1, 200)
    abar, abar_prev = schedule.alphas_cumprod, schedule.alphas_cumprod_prev
    gamma = (1.0 - abar) / (abar * s2 + 1.0 - abar)
    truth = 1.0 / (1.0 / (abar_prev * s2 + 1.0 - abar_prev) + schedule.alphas / schedule.betas)
    clipped = analytic_dpm_variance(schedule, gamma, data_variance=s2)
    np.testing.assert_allclose(clipped[t], truth[t], rtol=1e-7)
    noisy = analytic_dpm_variance(schedule, gamma + np.linspace(-0.5, 0.5, 200), data_variance=s2)
    assert np.all(noisy >= schedule.posterior_variance - 1e-15)
    assert np.all(noisy <= schedule.posterior_variance + schedule.posterior_mean_coef1**2 * s2 + 1e-15)
