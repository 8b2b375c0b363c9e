"""core.data.drawn: drawn points as data, and as a Gaussian mixture with one isotropic
component per drawn point (GaussianMixture semantics: means (K, D), std, weights (K,)),
checked against formulas written out here."""

import math

import numpy as np
import pytest
import torch

from core.data import DataError, GaussianMixture, dataset_from_points, drawn_mixture
from core.data.drawn import MAX_DRAWN_COMPONENTS

THREE = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0]])


def reference_log_density(x: np.ndarray, means: np.ndarray, std: float) -> np.ndarray:
    """log (1/K) sum_k N(x; m_k, std^2 I) in 2-D, summed in float64 without logsumexp."""
    d2 = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    density = np.exp(-d2 / (2 * std**2)).mean(axis=1) / (2 * math.pi * std**2)
    return np.log(density)


def test_spread_zero_keeps_the_points_themselves():
    data = dataset_from_points(THREE.tolist() + [[0.5, 0.5]])
    assert data.mixture is None and data.log_density is None
    together = np.sort(torch.cat([data.train, data.test]).numpy(), axis=0)
    expected = np.sort(np.vstack([THREE, [[0.5, 0.5]]]), axis=0).astype(np.float32)
    np.testing.assert_array_equal(together, expected)


def test_the_mixture_has_one_isotropic_component_per_point():
    mixture = drawn_mixture(THREE, 0.1)
    assert isinstance(mixture, GaussianMixture)
    assert mixture.means.shape == (3, 2) and mixture.dim == 2
    np.testing.assert_array_equal(mixture.means, THREE)
    assert mixture.std == 0.1
    np.testing.assert_allclose(mixture.weights, np.full(3, 1 / 3))
    x = np.random.default_rng(1).normal(size=(40, 2))
    np.testing.assert_allclose(mixture.log_prob(x), reference_log_density(x, THREE, 0.1),
                               rtol=1e-10)


def test_data_drawn_from_the_spread_follow_the_mixture():
    data = dataset_from_points(THREE, spread=0.2, num_samples=6000, seed=3)
    assert data.mixture is not None and data.mixture.std == 0.2
    assert len(data.train) + len(data.test) == 6000
    assert "exact log-density" in data.describe()
    points = torch.cat([data.train, data.test]).numpy().astype(np.float64)
    nearest = np.argmin(((points[:, None] - THREE[None]) ** 2).sum(-1), axis=1)
    # components 4 apart at std 0.2: the nearest mean is the generating one
    shares = np.bincount(nearest, minlength=3) / len(points)
    np.testing.assert_allclose(shares, 1 / 3, atol=0.03)        # ~6 sigma of a binomial
    offsets = points - THREE[nearest]
    np.testing.assert_allclose(offsets.mean(axis=0), 0.0, atol=0.02)
    np.testing.assert_allclose(offsets.std(axis=0), 0.2, rtol=0.05)
    x = points[:25]
    np.testing.assert_allclose(data.log_density(x), reference_log_density(x, THREE, 0.2),
                               rtol=1e-10)
    again = dataset_from_points(THREE, spread=0.2, num_samples=6000, seed=3)
    assert torch.equal(again.train, data.train)


def test_a_large_drawing_keeps_a_seeded_subset_of_points_as_means():
    points = np.random.default_rng(0).uniform(-2, 2, size=(MAX_DRAWN_COMPONENTS + 500, 2))
    mixture = drawn_mixture(points, 0.05, seed=7)
    assert mixture.num_components == MAX_DRAWN_COMPONENTS
    rows = {tuple(p) for p in points}
    assert all(tuple(m) in rows for m in mixture.means)
    assert len({tuple(m) for m in mixture.means}) == MAX_DRAWN_COMPONENTS
    np.testing.assert_array_equal(drawn_mixture(points, 0.05, seed=7).means, mixture.means)
    assert drawn_mixture(points, 0.05, max_components=10).num_components == 10


def test_the_exact_eps_runs_on_drawn_data():
    from core.exact import ExactEps
    from core.schedule import NoiseSchedule, get_betas

    data = dataset_from_points(THREE, spread=0.1, num_samples=200)
    schedule = NoiseSchedule(get_betas("linear", 100))
    eps = ExactEps(data.mixture, schedule)
    x = torch.zeros(5, 2)
    out = eps(x, torch.full((5,), 50))
    assert out.shape == (5, 2) and torch.isfinite(out).all()


@pytest.mark.parametrize("spread", [-0.1, float("nan"), float("inf"), "wide", True])
def test_a_bad_spread_is_refused(spread):
    with pytest.raises(DataError, match="spread"):
        dataset_from_points(THREE, spread=spread)


def test_bad_points_and_sample_counts_are_refused():
    with pytest.raises(DataError, match="num_samples"):
        dataset_from_points(THREE, spread=0.1, num_samples=1)
    with pytest.raises(DataError, match="at least 2"):
        dataset_from_points([[0.0, 0.0]], spread=0.1)
    with pytest.raises(DataError, match="finite"):
        drawn_mixture([[0.0, 0.0], [np.inf, 1.0]], 0.1)
    with pytest.raises(DataError, match="shape"):
        drawn_mixture(np.zeros((4, 3)), 0.1)
