"""The entropy panel's data curves (app.analysis), checked against closed forms."""

from __future__ import annotations

import numpy as np

from app.analysis import compute_data_curves
from core.data import get_dataset
from core.entropy import entropy_bounds, general_upper_bound
from core.schedule import NoiseSchedule

GAUSSIAN_ENTROPY_PER_DIM = 0.5 * np.log(2 * np.pi * np.e)  # N(0, 1): 1.4189... nats


def test_mixture_curves_lie_between_the_bounds_and_end_at_standard_normal_entropy():
    schedule = NoiseSchedule.from_name("linear", 100)
    curves = compute_data_curves(get_dataset("8gaussians", num_samples=2000), schedule, seed=1)
    t = curves["t"]
    assert curves["T"] == 100 and len(t) == 40 and t[0] == 0 and t[-1] == 99
    upper, lower = entropy_bounds(schedule, 1)
    general = general_upper_bound(schedule, 1)
    slack = 4 * curves["true_entropy_err"] + 1e-9
    inner = t > 0  # at t = 0 the lower bound uses beta-tilde_1 by convention
    assert np.all(curves["true_entropy"][inner] <= general[t][inner] + slack[inner])
    assert np.all(curves["true_entropy"][inner] >= lower[t][inner] - slack[inner])
    # the ring's variance is 2.04 > 1: the truth exceeds 1/2 log(2 pi e beta_t) at mid t
    assert np.any(curves["true_entropy"][inner] > upper[t][inner] + slack[inner])
    ring = get_dataset("8gaussians", num_samples=10).mixture
    assert abs(curves["data_variance"] - (2.0 + ring.std**2)) < 1e-12  # r^2 / 2 + s^2
    last = curves["marginal_entropy"][-1]
    assert abs(last - GAUSSIAN_ENTROPY_PER_DIM) < 4 * curves["marginal_entropy_err"][-1] + 0.01


def test_gaussian_approximation_for_images_tends_to_standard_normal_entropy():
    schedule = NoiseSchedule.from_name("cosine", 50)
    curves = compute_data_curves(get_dataset("digits", image_size=8), schedule)
    assert curves["T"] == 50 and len(curves["marginal_entropy"]) == 50
    assert "true_entropy" not in curves
    # abar_{T-1} ~ 0: X_t ~ N(0, I) up to abar * (cov - I); independent float64 check
    abar = schedule.alphas_cumprod[-1]
    assert abar < 1e-3
    assert abs(curves["marginal_entropy"][-1] - GAUSSIAN_ENTROPY_PER_DIM) < 1e-3
    # H(X_t) of data with total variance < 1 grows towards N(0, I): increasing in t
    assert np.all(np.diff(curves["marginal_entropy"]) > 0)


def test_a_stop_request_abandons_the_computation():
    schedule = NoiseSchedule.from_name("linear", 100)
    assert compute_data_curves(get_dataset("8gaussians", num_samples=500), schedule,
                               should_stop=lambda: True) is None
