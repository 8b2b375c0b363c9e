"""The score / SDE lab's core, each piece against an independent computation: the exact
mixture score against autograd of log q_t; the SDEs' native forms against their marginals
by simulation; the probability-flow ODE against the closed-form Gaussian map; Hutchinson
against the exact trace; the ODE likelihood against the true log q_0; the entropy along the
ODE against core.mixture's; the Langevin, predictor-corrector and reverse-SDE samplers
reaching the mixture with the exact score; the Fisher divergence and its link to L_simple;
the VE process as NCSN's denoising score matching; the `likelihood` command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from core.build import diffusion_from_config
from core.data.toys import GAUSSIAN
from core.exact import ExactEps
from core.generate import sample
from core.lab import point_scorer
from core.likelihood import _probes, eps_function, flow, marginal_entropy_ode
from core.mixture import MixtureReverseProcess
from core.presets import load_preset
from core.schedule import NoiseSchedule
from core.score import fisher_divergence, loss_weights
from core.sde import VESDE, VPSDE, process_of


class Scaled(torch.nn.Module):
    """The exact eps times (1 + delta): a model whose error is known."""

    def __init__(self, exact, delta):
        super().__init__()
        self.exact, self.delta = exact, delta

    def forward(self, x, t, y=None):
        return (1.0 + self.delta) * self.exact(x, t)


# ---------------------------------------------------------------------- score and SDEs
def test_exact_score_is_the_gradient_of_the_log_density(ring):
    data, diffusion, exact = ring
    x = torch.randn(64, 2, dtype=torch.float64) * 2
    for abar in (1.0, 0.9, 0.3, 1e-3):
        a = torch.full((64,), abar, dtype=torch.float64)
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(exact.log_density_abar(xg, a).sum(), xg)
        assert torch.allclose(exact.score_abar(x, a), grad, rtol=1e-10, atol=1e-10)


def test_vp_map_reproduces_the_discrete_chain_and_song_s_linear_betas():
    schedule = NoiseSchedule.from_name("linear", 1000)
    vp = VPSDE(schedule)
    assert np.allclose(vp.alpha_bar(vp.t_of_index(np.arange(1000))), schedule.alphas_cumprod,
                       rtol=1e-12)
    # beta(t) = -T log(1 - beta_i): Song et al.'s beta_min = 0.1, beta_max = 20 at the ends
    assert abs(vp.beta(0.0005) - 0.1) < 1e-4 and abs(vp.beta(1.0) - 20.0) < 0.21


@pytest.mark.parametrize("name", ["linear", "ve"])
def test_native_sde_simulated_by_euler_maruyama_matches_the_marginals(name):
    """Simulate dx_n = a(t) x_n dt + g(t) dw from t_a with tiny steps: the mean and variance
    at t_b must be native_transition's (a, q), which are the closed-form marginals'."""
    schedule = NoiseSchedule.from_name(name, 100)
    process = process_of(schedule)
    t_a, t_b, steps, n = 0.2, 0.7, 4000, 40000
    rng = np.random.default_rng(0)
    x = np.full(n, 1.5)
    h = (t_b - t_a) / steps
    for i in range(steps):
        t = t_a + (i + 0.5) * h
        x = x + process.native_drift(t) * x * h + math.sqrt(process.native_g2(t) * h) * rng.standard_normal(n)
    a, q = process.native_transition(t_a, t_b)
    assert abs(x.mean() - 1.5 * a) < 4 * math.sqrt(q / n) + 1e-3
    assert abs(x.var() / q - 1) < 4 * math.sqrt(2 / n) + 2e-3
    if name == "linear":       # the VP transition is q(x_t | x_0)'s ratio of abars
        abar_a, abar_b = process.alpha_bar(t_a), process.alpha_bar(t_b)
        assert np.isclose(a ** 2, abar_b / abar_a) and np.isclose(q, 1 - abar_b / abar_a)
    else:
        assert isinstance(process, VESDE)
        assert np.isclose(q, process.sigma(t_b) ** 2 - process.sigma(t_a) ** 2)


def test_ve_schedule_has_geometric_levels_and_its_loss_is_ncsn_denoising_score_matching():
    from core.diffusion import GaussianDiffusion

    schedule = NoiseSchedule.from_name("ve", 50, sigma_min=0.01, sigma_max=8.0)
    sigmas = 0.01 * 800 ** (np.arange(50) / 49)
    assert np.allclose(schedule.sigmas, sigmas, rtol=1e-9)
    diffusion = GaussianDiffusion(schedule, data_kind="continuous")
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    model = lambda x, t: net(torch.cat([x, t.float()[:, None] / 50], 1))  # noqa: E731
    x0, z = torch.randn(256, 2), torch.randn(256, 2)
    t = torch.randint(0, 50, (256,))
    mse = diffusion.training_losses(model, x0, t, noise=z)["mse"]
    # NCSN: x~ = x0 + sigma z, s = -eps(x~ / sqrt(1 + sigma^2)) / sigma,
    # loss = 1/2 sigma^2 |s + z / sigma|^2 (lambda = sigma^2), summed over D
    s = torch.as_tensor(sigmas, dtype=torch.float32)[t][:, None]
    x_tilde = x0 + s * z
    score = -model(x_tilde / torch.sqrt(1 + s ** 2), t) / s
    ncsn = 0.5 * s[:, 0] ** 2 * ((score + z / s) ** 2).sum(1)
    assert torch.allclose(mse, ncsn, rtol=1e-4, atol=1e-6)    # mean over D = 2 = half the sum


# ---------------------------------------------------------------------- the ODE
def test_probability_flow_ode_maps_noise_to_the_data_gaussian_in_closed_form():
    """For x0 ~ N(mu, s^2 I) the flow in x~ is affine: x~(sigma) = mu + sqrt(s^2 + sigma^2)
    / sqrt(s^2 + sigma_T^2) (x~_T - mu); the run ends with Tweedie's x0 at sigma_0."""
    config = load_preset("toy-2d")
    diffusion = diffusion_from_config(config, "vector")
    exact = ExactEps(GAUSSIAN, diffusion.schedule)
    noise = torch.randn(500, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = sample(exact, diffusion, 500, (2,), sampler="rk45", noise=noise,
                 options={"rtol": 1e-9, "atol": 1e-9}, record_every=10**9).final
    sig = diffusion.schedule.sigmas
    s, mu = GAUSSIAN.std, np.asarray(GAUSSIAN.means[0])
    x_T = noise.numpy() * math.sqrt(1 + sig[-1] ** 2)
    x_lo = mu + math.sqrt(s ** 2 + sig[0] ** 2) / math.sqrt(s ** 2 + sig[-1] ** 2) * (x_T - mu)
    expected = mu + s ** 2 / (s ** 2 + sig[0] ** 2) * (x_lo - mu)
    assert np.abs(out - expected).max() < 1e-6


def test_hutchinson_is_unbiased_for_the_trace():
    """v^T J v over many Rademacher probes against the exact trace of d eps / d x at a
    point, J from autograd column by column (an independent computation)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.Tanh(), torch.nn.Linear(32, 6)).double()
    x = torch.randn(1, 6, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda y: net(y)[0], x)[:, 0, :]   # (6, 6)
    probes = _probes("hutchinson", 20000, (1, 6), torch.Generator().manual_seed(1))
    estimates = torch.einsum("ki,ij,kj->k", probes, jac, probes)
    error = estimates.std() / math.sqrt(len(estimates))
    assert abs(estimates.mean() - torch.trace(jac)) < 4 * error
    assert torch.equal(_probes("exact", 0, (1, 6), None), torch.eye(6, dtype=torch.float64))


def test_ode_likelihood_with_the_exact_score_equals_the_true_density(ring):
    data, diffusion, exact = ring
    x0 = torch.as_tensor(data.mixture.sample(300, np.random.default_rng(5))[0])
    truth = exact.log_density_abar(x0, torch.ones(300)).numpy()
    result = flow(eps_function(exact, diffusion), diffusion, x0, trace="exact",
                  rtol=1e-6, atol=1e-6)
    assert np.abs(result.log_likelihood - truth).max() / 2 < 0.01      # nats/dim, each point
    assert abs((result.log_likelihood - truth).mean()) / 2 < 1e-3
    hutch = flow(eps_function(exact, diffusion), diffusion, x0[:100], trace="hutchinson",
                 probes=8, rtol=1e-6, atol=1e-6, generator=torch.Generator().manual_seed(0))
    spread = math.sqrt((hutch.stderr ** 2).sum()) / 100
    assert abs((hutch.log_likelihood - truth[:100]).mean()) < 4 * spread + 1e-3


def test_entropy_along_the_ode_matches_the_mixture_entropy(ring):
    data, diffusion, exact = ring
    x0 = torch.as_tensor(data.mixture.sample(1500, np.random.default_rng(7))[0])
    steps = [5, 40, 99]
    ode = marginal_entropy_ode(eps_function(exact, diffusion), diffusion, x0, steps,
                               rtol=1e-6, atol=1e-6)
    mixture = MixtureReverseProcess(data.mixture, diffusion.schedule)
    for i, t in enumerate(steps):
        truth = mixture.marginal_entropy(t, 20000, np.random.default_rng(1))
        assert abs(ode["entropy"][i] - float(truth.value)) < 4 * math.hypot(
            ode["stderr"][i], float(truth.stderr)), t


# ---------------------------------------------------------------------- samplers
@pytest.mark.parametrize("sampler, steps, options, bound", [
    ("langevin", 100, {"langevin_steps": 10, "langevin_step": 0.2}, 0.05),
    ("pc", 100, {"snr": 0.16, "corrector_steps": 1}, 0.05),
    ("reverse_sde", 100, {}, 0.05),
])
def test_score_samplers_with_the_exact_score_reach_the_mixture(ring, sampler, steps, options,
                                                              bound):
    """Per-component moment KL (core.quality) of 2000 samples below `bound` (the data's own
    floor at this n is ~0.01); NCSN's annealed Langevin at K = 10, eps / sigma_L^2 = 0.2."""
    data, diffusion, exact = ring
    score, floor = point_scorer(data, 2000)
    out = sample(exact, diffusion, 2000, (2,), sampler=sampler, steps=steps, options=options,
                 seed=3, record_every=10**9).final
    scores = score(out)
    assert scores["moment_kl"] < bound, scores
    assert scores["knn_kl"] < floor["knn_kl"] + 0.05, scores


# ---------------------------------------------------------------------- Fisher divergence
def test_fisher_divergence_of_a_scaled_exact_score_and_its_weight_in_l_simple():
    """Single Gaussian N(mu, s^2 I): s* = -(x - sqrt(abar) mu) / v with v = abar s^2 + 1 -
    abar, so a model eps (1 + delta) eps* has F_t = delta^2 E|s*|^2 / D = delta^2 / v; and
    L_simple(t) of that model minus the exact one's is (1 - abar_t) F_t."""
    config = load_preset("toy-2d")
    diffusion = diffusion_from_config(config, "vector")
    exact = ExactEps(GAUSSIAN, diffusion.schedule)
    delta = 0.2
    model = Scaled(exact, delta)
    assert fisher_divergence(exact, diffusion, GAUSSIAN, 30, n=500).mean < 1e-12
    for t in (3, 30, 80):
        abar = diffusion.schedule.alphas_cumprod[t]
        v = abar * GAUSSIAN.std ** 2 + 1 - abar
        est = fisher_divergence(model, diffusion, GAUSSIAN, t, n=20000, seed=1)
        assert abs(est.mean - delta ** 2 / v) < 4 * est.stderr, (t, est)
        x0 = torch.as_tensor(GAUSSIAN.sample(20000, np.random.default_rng(2))[0], dtype=torch.float32)
        tt, z = torch.full((20000,), t), torch.randn(20000, 2, generator=torch.Generator().manual_seed(3))
        gap = (diffusion.training_losses(model, x0, tt, noise=z)["mse"]
               - diffusion.training_losses(exact, x0, tt, noise=z)["mse"]).double()
        weight = loss_weights(diffusion.schedule, t)["simple"]
        assert abs(gap.mean() - weight * delta ** 2 / v) < 4 * gap.std() / math.sqrt(20000) + 1e-6
    assert np.isnan(loss_weights(diffusion.schedule, 0)["vlb"])


# ---------------------------------------------------------------------- the command
def test_likelihood_command_with_the_exact_score_writes_per_point_nats(tmp_path, capsys):
    from core.cli import main

    npy, out = tmp_path / "ll.npy", tmp_path / "ll.json"
    code = main(["likelihood", "--preset", "toy-2d", "--exact", "--data", "50", "--rtol", "1e-6",
                 "--atol", "1e-6", "--npy", str(npy), "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["trace"] == "exact" and report["n"] == 50 and report["dims"] == 2
    assert abs(report["gap_nats_per_dim"]) < 0.01
    per_point = np.load(npy)
    assert per_point.shape == (50,) and np.isclose(per_point.mean(), report["log_likelihood"])
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 3)))
    code = main(["likelihood", "--preset", "toy-2d", "--exact", "--points", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "--points" in err and "(N, 2)" in err
