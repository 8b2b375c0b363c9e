"""Point-cloud scores against independent computations: closed-form Gaussian KLs, Wishart
expectations, brute-force float64 double sums, explicit leave-one-out loops, scipy's own
densities, and limits whose values follow from the geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import digamma, i0e, i1e
from scipy.stats import multivariate_normal

from core.data.toys import EIGHT_GAUSSIANS, GaussianMixture, checkerboard
from core.quality.points import (
    data_vs_data,
    energy_distance,
    gaussian_kl,
    knn_kl,
    mean_log_density,
    moment_kl,
    precision_recall,
    score_points,
)


def gaussian_kl_closed(mean0, var0, mean1, var1, dim=2):
    """KL(N(mean0, var0 I) || N(mean1, var1 I))."""
    gap = float(np.sum((np.asarray(mean1) - np.asarray(mean0)) ** 2))
    return 0.5 * (dim * var0 / var1 + gap / var1 - dim + dim * math.log(var1 / var0))


# ---------------------------------------------------------------- knn_kl

def test_knn_kl_of_two_draws_of_one_gaussian_is_zero_within_its_error_bar():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2000, 2)), rng.standard_normal((2000, 2))
    estimate, stderr = knn_kl(x, y)
    assert 0 < stderr < 0.05
    assert abs(estimate) < 3 * stderr


@pytest.mark.parametrize("mean, std", [((1.0, 0.0), 1.5), ((0.0, -0.5), 1.0)])
def test_knn_kl_matches_the_closed_form_gaussian_kl(mean, std):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, 2))
    y = np.asarray(mean) + std * rng.standard_normal((2000, 2))
    estimate, stderr = knn_kl(x, y)
    truth = gaussian_kl_closed((0, 0), 1.0, mean, std**2)
    assert truth > 0.1
    assert abs(estimate - truth) < 4 * stderr


def test_knn_kl_error_bar_matches_the_spread_over_independent_repetitions():
    """The batch-means stderr of one run ~ the std of the estimate over 30 fresh runs."""
    estimates, stderrs = [], []
    for rep in range(30):
        rng = np.random.default_rng(100 + rep)
        x = rng.standard_normal((1000, 2))
        y = np.array([1.0, 0.0]) + 1.5 * rng.standard_normal((1000, 2))
        estimate, stderr = knn_kl(x, y, seed=rep)
        estimates.append(estimate)
        stderrs.append(stderr)
    ratio = np.mean(stderrs) / np.std(estimates, ddof=1)
    assert 0.7 < ratio < 1.4, ratio


def test_knn_kl_is_deterministic_and_infinite_for_repeated_samples():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((300, 2)), rng.standard_normal((300, 2))
    assert knn_kl(x, y, seed=3) == knn_kl(x, y, seed=3)
    collapsed = np.repeat(x[:50], 6, axis=0)          # every point six times: an atom
    assert knn_kl(collapsed, y)[0] == math.inf
    with pytest.raises(ValueError, match="independent"):
        knn_kl(x, x)
    with pytest.raises(ValueError, match="NaN"):
        knn_kl(np.vstack([x, [[np.nan, 0.0]]]), y)


# ---------------------------------------------------------------- moment_kl

SEPARATED = GaussianMixture(means=[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], std=0.5,
                            weights=[0.5, 0.3, 0.2])


def exact_moments(count, mean, std, rng):
    """count points whose sample mean is `mean` and unbiased covariance std^2 I exactly."""
    z = rng.standard_normal((count, 2))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False)).T)
    return np.asarray(mean) + std * z


def test_moment_kl_is_zero_for_an_exact_moment_match():
    rng = np.random.default_rng(0)
    counts = [500, 300, 200]                          # the true weights exactly
    x = np.vstack([exact_moments(c, m, SEPARATED.std, rng)
                   for c, m in zip(counts, SEPARATED.means, strict=True)])
    result = moment_kl(x, SEPARATED)
    assert result["counts"].tolist() == counts
    np.testing.assert_allclose(result["components"], 0.0, atol=1e-12)
    assert abs(result["weight_kl"]) < 1e-15 and abs(result["total"]) < 1e-12
    assert result["sparse"] == ()


def test_moment_kl_equals_the_closed_form_for_shifted_scaled_components():
    rng = np.random.default_rng(1)
    shifts = np.array([[0.3, 0.0], [0.0, -0.2], [0.1, 0.1]])
    scales = [1.0, 1.5, 0.7]
    counts = [400, 400, 200]
    x = np.vstack([exact_moments(c, m + d, a * SEPARATED.std, rng)
                   for c, m, d, a in zip(counts, SEPARATED.means, shifts, scales, strict=True)])
    result = moment_kl(x, SEPARATED)
    s2 = SEPARATED.std**2
    expected = [gaussian_kl_closed(d, a * a * s2, (0, 0), s2) for d, a in zip(shifts, scales, strict=True)]
    np.testing.assert_allclose(result["components"], expected, rtol=1e-10)
    w = np.array(counts) / 1000
    weight_kl = float(np.sum(w * np.log(w / SEPARATED.weights)))
    assert result["weight_kl"] == pytest.approx(weight_kl, rel=1e-12)
    assert result["total"] == pytest.approx(SEPARATED.weights @ expected + weight_kl, rel=1e-10)


def test_moment_kl_of_true_samples_averages_to_the_wishart_expectation():
    """For n true points of N(m, s^2 I) in D dims, with nu = n - 1,
    E[KL] = 1/2 [D/n + D log nu - D log 2 - sum_{i=1..D} digamma((nu - i + 1)/2)]
    (E log det of a Wishart(nu, I)); checked on the mean over 200 draws."""
    n, dim, nu = 20, 2, 19
    expected = 0.5 * (dim / n + dim * math.log(nu) - dim * math.log(2)
                      - sum(digamma((nu - i + 1) / 2) for i in range(1, dim + 1)))
    rng = np.random.default_rng(2)
    values = []
    for _ in range(200):
        x = SEPARATED.means[0] + SEPARATED.std * rng.standard_normal((n, dim))
        values.append(moment_kl(x, SEPARATED)["components"][0])
    stderr = np.std(values, ddof=1) / math.sqrt(len(values))
    assert abs(np.mean(values) - expected) < 4 * stderr


def test_moment_kl_marks_a_starved_component():
    rng = np.random.default_rng(3)
    x = np.vstack([exact_moments(500, SEPARATED.means[0], 0.5, rng),
                   exact_moments(300, SEPARATED.means[1], 0.5, rng),
                   SEPARATED.means[2] + [[0.1, 0.0], [0.0, 0.1]]])  # 2 < D + 1 points
    result = moment_kl(x, SEPARATED)
    assert result["sparse"] == (2,)
    assert result["components"][2] == math.inf and result["total"] == math.inf
    assert np.isfinite(result["components"][:2]).all()
    assert gaussian_kl(np.zeros(2), np.zeros((2, 2)), np.zeros(2), 1.0) == math.inf


# ---------------------------------------------------------------- energy distance

def brute_energy(x, y):
    """The U-statistic by explicit float64 loops over every pair."""
    def mean_distance(a, b, same):
        total, count = 0.0, 0
        for i in range(len(a)):
            for j in range(len(b)):
                if same and i == j:
                    continue
                total += math.sqrt(sum((float(p) - float(q)) ** 2 for p, q in zip(a[i], b[j], strict=True)))
                count += 1
        return total / count
    return 2 * mean_distance(x, y, False) - mean_distance(x, x, True) - mean_distance(y, y, True)


def test_energy_distance_and_its_jackknife_equal_brute_force_loops():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((25, 2))
    y = rng.standard_normal((18, 2)) + [0.5, 0.0]
    value, stderr = energy_distance(x, y)
    assert value == pytest.approx(brute_energy(x, y), rel=1e-12, abs=1e-14)
    drop_x = np.array([brute_energy(np.delete(x, i, 0), y) for i in range(len(x))])
    drop_y = np.array([brute_energy(x, np.delete(y, j, 0)) for j in range(len(y))])
    variance = ((len(x) - 1) / len(x) * np.sum((drop_x - drop_x.mean()) ** 2)
                + (len(y) - 1) / len(y) * np.sum((drop_y - drop_y.mean()) ** 2))
    assert stderr == pytest.approx(math.sqrt(variance), rel=1e-9)


def test_energy_distance_blocks_do_not_change_the_sums():
    """Sets larger than one row block (1024) give the same value as a direct formula."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((1500, 2)), rng.standard_normal((1100, 2)) * 1.2
    from scipy.spatial.distance import cdist
    n, m = len(x), len(y)
    direct = (2 * cdist(x, y).mean() - cdist(x, x).sum() / (n * (n - 1))
              - cdist(y, y).sum() / (m * (m - 1)))
    assert energy_distance(x, y)[0] == pytest.approx(direct, rel=1e-10)


def rice_mean(shift, variance):
    """E|Z| for Z ~ N(shift, variance I_2): the Rice mean sigma sqrt(pi/2) L_{1/2}(-nu^2/2s^2)."""
    sigma, nu2 = math.sqrt(variance), float(np.sum(np.square(shift)))
    x = -nu2 / (2 * variance)
    laguerre = (1 - x) * i0e(-x / 2) - x * i1e(-x / 2)    # e^{x/2} factor folded into i0e/i1e
    return sigma * math.sqrt(math.pi / 2) * laguerre


def test_energy_distance_matches_the_closed_form_for_shifted_gaussians_and_zero_for_equal():
    rng = np.random.default_rng(2)
    shift = np.array([0.6, 0.0])
    x, y = rng.standard_normal((1500, 2)), shift + rng.standard_normal((1500, 2))
    truth = 2 * rice_mean(shift, 2.0) - 2 * rice_mean(np.zeros(2), 2.0)
    value, stderr = energy_distance(x, y)
    assert truth > 5 * stderr and abs(value - truth) < 4 * stderr
    same, same_stderr = energy_distance(x, rng.standard_normal((1500, 2)))
    assert abs(same) < 3 * same_stderr and same_stderr < stderr


# ---------------------------------------------------------------- precision and recall

def brute_precision_recall(x, y, k):
    def radii(a):
        return np.array([np.sort(np.linalg.norm(a - p, axis=1))[k] for p in a])
    def share(points, centres, r):
        return np.mean([any(np.linalg.norm(p - c) <= rc for c, rc in zip(centres, r, strict=True)) for p in points])
    return share(x, y, radii(y)), share(y, x, radii(x))


def test_precision_recall_equal_a_brute_force_loop():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((60, 2)), rng.standard_normal((50, 2)) * 1.5 + 0.5
    assert precision_recall(x, y, k=3) == pytest.approx(brute_precision_recall(x, y, 3), abs=0)


def test_precision_recall_limits():
    rng = np.random.default_rng(1)
    y = rng.standard_normal((2000, 2))
    same = precision_recall(rng.standard_normal((2000, 2)), y)
    assert min(same) > 0.97
    # far off the data: no sample within any reference ball (radii < 1 here, gap ~ 40)
    precision, recall = precision_recall(rng.standard_normal((2000, 2)) + 50.0, y)
    assert precision == 0.0 and recall == 0.0


def test_recall_of_samples_on_one_of_two_modes_is_that_modes_share():
    """Reference: two unit Gaussians 40 apart, 1,500 + 500 points; samples: 2,000 points of
    mode A only. No ball of either set reaches across the gap, so recall is exactly the
    share of reference points of mode A covered by the sample balls: <= 0.75, and about
    0.75 x (the coverage of one Gaussian by another draw of itself, > 0.97 as above)."""
    rng = np.random.default_rng(2)
    mode_a = rng.standard_normal((1500, 2))
    y = np.vstack([mode_a, rng.standard_normal((500, 2)) + [40.0, 0.0]])
    x = rng.standard_normal((2000, 2))
    precision, recall = precision_recall(x, y)
    covered_a = precision_recall(mode_a, x)[0]        # share of mode A inside the sample balls
    assert recall == pytest.approx(covered_a * 1500 / 2000, abs=1e-12)
    assert 0.97 * 0.75 < recall <= 0.75
    assert precision > 0.97


# ---------------------------------------------------------------- mean log-density

def test_mean_log_density_against_scipy_densities_and_the_entropy():
    rng = np.random.default_rng(0)
    x, _ = EIGHT_GAUSSIANS.sample(3000, rng)
    mean, stderr, fraction = mean_log_density(x, EIGHT_GAUSSIANS.log_prob)
    densities = sum(w * multivariate_normal(m, EIGHT_GAUSSIANS.std**2 * np.eye(2)).pdf(x)
                    for m, w in zip(EIGHT_GAUSSIANS.means, EIGHT_GAUSSIANS.weights, strict=True))
    assert mean == pytest.approx(np.log(densities).mean(), rel=1e-10)
    assert fraction == 1.0
    # well-separated components: H = log K + D/2 log(2 pi e s^2) up to ~1e-4 of overlap
    entropy = math.log(8) + math.log(2 * math.pi * math.e * EIGHT_GAUSSIANS.std**2)
    assert abs(mean + entropy) < 4 * stderr


def test_mean_log_density_counts_nonfinite_and_off_support_samples():
    rng = np.random.default_rng(1)
    board = checkerboard(400, rng)
    x = np.vstack([board.points, [[np.nan, 0.0], [0.5, 1.5], [9.0, 9.0]]])  # 3 not counted
    mean, _, fraction = mean_log_density(x, board.log_density)
    assert fraction == pytest.approx(400 / 403)
    assert mean == pytest.approx(-math.log(8))
    assert all(math.isnan(v) for v in mean_log_density([[np.nan, 0.0]], board.log_density)[:2])


# ---------------------------------------------------------------- the floor

def test_data_vs_data_floor_on_eight_gaussians():
    floor = data_vs_data(EIGHT_GAUSSIANS, 2000, seed=0)
    estimate, stderr = floor["knn_kl"]
    assert abs(estimate) < 4 * stderr
    value, stderr = floor["energy_distance"]
    assert abs(value) < 4 * stderr
    assert floor["precision"] > 0.95 and floor["recall"] > 0.95
    moments = floor["moment_kl"]
    # E[KL] ~ (D + D(D+1)/2) / (2 n_k) per component + (K - 1) / (2 n) for the weights
    assert 0 < moments["total"] < 4 * (5 / (2 * 250) + 7 / 4000)
    assert floor["mean_log_density"][2] == 1.0 and floor["finite_fraction"] == 1.0
    assert data_vs_data(EIGHT_GAUSSIANS, 500, seed=1)["knn_kl"] == \
        data_vs_data(EIGHT_GAUSSIANS, 500, seed=1)["knn_kl"]


def test_data_vs_data_takes_a_toy_generator_and_score_points_drops_nonfinite_rows():
    floor = data_vs_data(checkerboard, 800, seed=2)
    assert floor["moment_kl"] is None and floor["mean_log_density"] is None
    assert floor["precision"] > 0.9
    rng = np.random.default_rng(3)
    x, _ = EIGHT_GAUSSIANS.sample(600, rng)
    y, _ = EIGHT_GAUSSIANS.sample(600, rng)
    broken = np.vstack([x, np.full((150, 2), np.nan)])
    scores = score_points(broken, y, mixture=EIGHT_GAUSSIANS)
    assert scores["finite_fraction"] == pytest.approx(600 / 750)
    assert scores["knn_kl"] == knn_kl(x, y)
    assert scores["mean_log_density"][2] == pytest.approx(600 / 750)
