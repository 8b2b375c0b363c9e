"""Schedules against their formulas written out here; respacing against the original abar."""

import math

import numpy as np
import pytest
import torch

from core.schedule import NoiseSchedule, extract, get_betas, space_timesteps


def test_linear_matches_ho_et_al_endpoints_and_scaling():
    betas = get_betas("linear", 1000)
    assert betas.dtype == np.float64 and betas.shape == (1000,)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    assert np.allclose(np.diff(betas), (0.02 - 1e-4) / 999)
    short = get_betas("linear", 100)
    assert short[0] == pytest.approx(1e-3) and short[-1] == pytest.approx(0.2)


def test_cosine_matches_nichol_dhariwal_formula():
    T, s = 50, 0.008
    f = [math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2 for t in range(T + 1)]
    expected = [min(1 - f[t + 1] / f[t], 0.999) for t in range(T)]
    assert np.allclose(get_betas("cosine", T), expected, rtol=1e-12, atol=0)
    assert get_betas("cosine", T)[-1] == 0.999


def test_quadratic_and_sigmoid_formulas():
    T = 200
    lo, hi = 1e-4 * 1000 / T, 0.02 * 1000 / T
    expected_quad = [(math.sqrt(lo) + (math.sqrt(hi) - math.sqrt(lo)) * t / (T - 1)) ** 2
                     for t in range(T)]
    assert np.allclose(get_betas("quadratic", T), expected_quad, rtol=1e-12)

    def sig(z):
        return 1 / (1 + math.exp(-z))

    def abar(u):
        return (sig(3) - sig(6 * u - 3)) / (sig(3) - sig(-3))

    expected_sig = [min(1 - abar((t + 1) / T) / abar(t / T), 0.999) for t in range(T)]
    assert np.allclose(get_betas("sigmoid", T), expected_sig, rtol=1e-10)


def test_bad_schedule_name_and_betas_are_rejected():
    with pytest.raises(ValueError, match="schedule name 'nope'"):
        get_betas("nope", 10)
    with pytest.raises(ValueError, match="betas"):
        NoiseSchedule([0.1, 1.5])
    with pytest.raises(ValueError, match="timestep_map"):
        NoiseSchedule([0.1, 0.2], timestep_map=[0])


def test_small_T_linear_betas_stay_valid():
    betas = get_betas("linear", 10)
    assert np.all(betas > 0) and np.all(betas <= 0.999)
    NoiseSchedule(betas)


def test_schedule_arrays_match_definitions():
    betas = get_betas("linear", 20 * 5)
    sched = NoiseSchedule(betas)
    abar = np.cumprod(1 - betas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    assert np.allclose(sched.alphas_cumprod, abar, rtol=1e-14)
    assert np.allclose(sched.alphas_cumprod_next[:-1], abar[1:]) and sched.alphas_cumprod_next[-1] == 0
    tilde = betas * (1 - abar_prev) / (1 - abar)
    assert sched.posterior_variance[0] == 0
    assert np.allclose(sched.posterior_variance, tilde)
    assert sched.posterior_log_variance_clipped[0] == pytest.approx(math.log(tilde[1]))
    assert np.allclose(sched.posterior_log_variance_clipped[1:], np.log(tilde[1:]))
    assert np.allclose(sched.snr, abar / (1 - abar))
    assert np.allclose(sched.log_snr, np.log(abar / (1 - abar)))
    assert np.array_equal(sched.timestep_map, np.arange(100))


def test_extract_gathers_per_batch_element_and_broadcasts():
    arr = np.arange(10, dtype=np.float64) * 0.5
    t = torch.tensor([3, 0, 9])
    out = extract(arr, t, (3, 2, 4, 4))
    assert out.shape == (3, 1, 1, 1) and out.dtype == torch.float32
    assert out.flatten().tolist() == [1.5, 0.0, 4.5]


def test_space_timesteps_forms():
    assert space_timesteps(100, "ddim10") == list(range(0, 100, 10))
    assert space_timesteps(10, "10") == list(range(10))
    assert space_timesteps(100, "5") == [0, 25, 50, 74, 99]  # round(24.75 k), Python rounding
    steps = space_timesteps(300, "10,15,20")
    assert len(steps) == 45 and steps[0] == 0 and steps[-1] == 299
    assert sum(s < 100 for s in steps) == 10 and sum(100 <= s < 200 for s in steps) == 15
    assert space_timesteps(300, [10, 15, 20]) == steps
    with pytest.raises(ValueError, match="ddim7"):
        space_timesteps(10, "ddim7")
    with pytest.raises(ValueError, match="cannot keep"):
        space_timesteps(10, "20")


def test_respace_keeps_alpha_bar_subsequence_and_timestep_map():
    sched = NoiseSchedule(get_betas("cosine", 200))
    use = space_timesteps(200, "ddim20")
    fast = sched.respace(use)
    assert fast.num_timesteps == 20
    assert np.allclose(fast.alphas_cumprod, sched.alphas_cumprod[use], rtol=1e-12)
    assert np.array_equal(fast.timestep_map, np.array(use))
    # respacing composes: indices of the respaced schedule map back to original timesteps
    faster = fast.respace([0, 5, 19])
    assert np.array_equal(faster.timestep_map, np.array([use[0], use[5], use[19]]))
    assert np.allclose(faster.alphas_cumprod, sched.alphas_cumprod[[use[0], use[5], use[19]]])
    with pytest.raises(ValueError, match="use_timesteps"):
        sched.respace([0, 200])
