"""core.exact: the exact eps network of Gaussian-mixture data against autograd of its own
log-density and against core.mixture's numpy posterior (an independent implementation)."""

import numpy as np
import pytest
import torch

from core.data import get_dataset
from core.exact import ExactEps
from core.mixture import MixtureReverseProcess
from core.schedule import NoiseSchedule

SCHEDULE = NoiseSchedule.from_name("cosine", 200)
RING = get_dataset("8gaussians", num_samples=100).mixture


@pytest.mark.parametrize("t", [0, 3, 50, 120, 199])
def test_the_exact_eps_equals_the_numpy_posterior_at_integer_timesteps(t):
    model = ExactEps(RING, SCHEDULE)
    x = np.random.default_rng(t).normal(size=(300, 2)) * 1.7
    got = model(torch.from_numpy(x), torch.full((300,), t)).numpy()
    want = MixtureReverseProcess(RING, SCHEDULE).optimal_eps(x, t)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("t", [0.0, 7.3, 88.5, 198.9])
def test_the_score_is_the_gradient_of_the_log_density(t):
    model = ExactEps(RING, SCHEDULE)
    x = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2
    x.requires_grad_(True)
    times = torch.full((64,), t, dtype=torch.float64)
    grad, = torch.autograd.grad(model.log_density(x, times).sum(), x)
    torch.testing.assert_close(model.score(x.detach(), times), grad, rtol=1e-9, atol=1e-12)
    # and the density integrates to 1 over the plane (a grid with step 0.05)
    axis = torch.arange(-6, 6, 0.05, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    mass = torch.exp(model.log_density(grid, torch.full((len(grid),), t))).sum() * 0.05 ** 2
    assert mass.item() == pytest.approx(1.0, abs=1e-3)


def test_fractional_timesteps_interpolate_sigma_as_the_schedule_does():
    model = ExactEps(RING, SCHEDULE)
    abar = model.alpha_bar(torch.tensor([10.0, 10.5, 11.0], dtype=torch.float64)).numpy()
    np.testing.assert_allclose(abar[[0, 2]], SCHEDULE.alphas_cumprod[[10, 11]], rtol=1e-12)
    sigma = np.sqrt((1 - abar) / abar)
    assert sigma[1] == pytest.approx(np.sqrt(sigma[0] * sigma[2]), rel=1e-12)   # log-linear
