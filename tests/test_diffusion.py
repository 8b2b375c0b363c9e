"""GaussianDiffusion against independent float64 computations and closed forms."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from core.diffusion import GaussianDiffusion
from core.schedule import NoiseSchedule, get_betas


def make_diffusion(T=50, schedule="linear", **kwargs):
    return GaussianDiffusion(NoiseSchedule(get_betas(schedule, T)), **kwargs)


class ConstantOutput(nn.Module):
    """Returns a learnable tensor as the model output, so gradients per channel are visible."""

    def __init__(self, output):
        super().__init__()
        self.output = nn.Parameter(output.clone())
        self.seen_t = None

    def forward(self, x, t):
        self.seen_t = t.clone()
        return self.output + 0 * x.sum()


def test_bad_type_names_are_rejected_with_the_field_name():
    with pytest.raises(ValueError, match="var_type"):
        make_diffusion(var_type="learned")
    with pytest.raises(ValueError, match="mean_type"):
        make_diffusion(mean_type="score")


def test_q_sample_has_the_forward_marginal_mean_and_variance():
    diffusion = make_diffusion(T=100)
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x0 = torch.full((n, 1), 0.7)
    t = torch.full((n,), 40, dtype=torch.long)
    x_t = diffusion.q_sample(x0, t, torch.randn(n, 1, generator=g))
    abar = np.cumprod(1 - get_betas("linear", 100))[40]
    assert abs(x_t.mean().item() - math.sqrt(abar) * 0.7) < 5 * math.sqrt((1 - abar) / n)
    assert abs(x_t.var().item() / (1 - abar) - 1) < 0.02


@pytest.mark.parametrize("step", [0, 1, 7, 49])
def test_posterior_matches_bayes_rule_on_the_joint_gaussian(step):
    betas = get_betas("cosine", 50)
    diffusion = GaussianDiffusion(NoiseSchedule(betas))
    abar = np.cumprod(1 - betas)
    abar_prev = 1.0 if step == 0 else abar[step - 1]
    x0_value, xt_value = 0.4, -1.3
    # joint of (x_{t-1}, x_t) given x0: x_t = sqrt(alpha) x_{t-1} + sqrt(beta) e
    mu_prev, var_prev = math.sqrt(abar_prev) * x0_value, 1 - abar_prev
    mu_t = math.sqrt(1 - betas[step]) * mu_prev
    cov = math.sqrt(1 - betas[step]) * var_prev
    var_t = (1 - betas[step]) * var_prev + betas[step]
    expected_mean = mu_prev + cov / var_t * (xt_value - mu_t)
    expected_var = var_prev - cov ** 2 / var_t

    mean, var, log_var = diffusion.q_posterior_mean_variance(
        torch.tensor([[x0_value]]), torch.tensor([[xt_value]]), torch.tensor([step]))
    assert mean.item() == pytest.approx(expected_mean, rel=1e-5, abs=1e-6)
    assert var.item() == pytest.approx(expected_var, rel=1e-5, abs=1e-12)
    if step >= 1:
        assert log_var.item() == pytest.approx(math.log(expected_var), rel=1e-5)


def test_eps_x0_v_conversions_round_trip():
    diffusion = make_diffusion(T=100, schedule="cosine")
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(100, 3, generator=g)
    eps = torch.randn(100, 3, generator=g)
    t = torch.arange(100)
    x_t = diffusion.q_sample(x0, t, eps)
    abar = torch.tensor(np.cumprod(1 - get_betas("cosine", 100)), dtype=torch.float32)[:, None]
    v = diffusion.v_from_x0_eps(x0, eps, t)
    assert torch.allclose(v, abar.sqrt() * eps - (1 - abar).sqrt() * x0, atol=1e-6)
    assert torch.allclose(diffusion.x0_from_v(x_t, t, v), x0, atol=1e-5)
    assert torch.allclose(diffusion.eps_from_v(x_t, t, v), eps, atol=1e-5)
    inner = t < 90  # 1/sqrt(abar) amplifies float32 error near t = T-1
    assert torch.allclose(diffusion.x0_from_eps(x_t, t, eps)[inner], x0[inner], atol=1e-4)
    assert torch.allclose(diffusion.eps_from_x0(x_t, t, x0)[t > 0], eps[t > 0], atol=1e-3)


def test_learned_range_endpoints_are_beta_tilde_and_beta():
    betas = get_betas("linear", 50)
    diffusion = GaussianDiffusion(NoiseSchedule(betas), var_type="learned_range")
    abar = np.cumprod(1 - betas)
    tilde = betas[1:] * (1 - abar[:-1]) / (1 - abar[1:])
    t = torch.arange(50)
    x = torch.zeros(50, 2)
    for raw, expected_log in [(-1.0, np.log(np.append(tilde[0], tilde))), (1.0, np.log(betas))]:
        output = torch.cat([torch.zeros(50, 2), torch.full((50, 2), raw)], dim=1)
        out = diffusion.p_mean_variance(None, x, t, model_output=output)
        assert torch.allclose(out["log_variance"][:, 0].double(),
                              torch.tensor(expected_log), rtol=1e-5)
        assert torch.all(out["v_frac"] == (raw + 1) / 2)


def test_fixed_variances_follow_the_t0_conventions():
    betas = get_betas("linear", 50)
    abar = np.cumprod(1 - betas)
    tilde_1 = betas[1] * (1 - abar[0]) / (1 - abar[1])
    t = torch.tensor([0, 1, 30])
    x = torch.zeros(3, 2)
    large = GaussianDiffusion(NoiseSchedule(betas), var_type="fixed_large")
    out = large.p_mean_variance(None, x, t, model_output=torch.zeros(3, 2))
    assert np.allclose(out["variance"][:, 0].numpy(), [tilde_1, betas[1], betas[30]], rtol=1e-5)
    small = GaussianDiffusion(NoiseSchedule(betas), var_type="fixed_small")
    out = small.p_mean_variance(None, x, t, model_output=torch.zeros(3, 2))
    assert out["variance"][0, 0].item() == 0.0
    assert out["log_variance"][0, 0].item() == pytest.approx(math.log(tilde_1), rel=1e-5)
    assert out["v_frac"] is None


def test_model_sees_the_original_timesteps_of_a_respaced_diffusion():
    diffusion = make_diffusion(T=100).respaced([0, 10, 20, 99])
    assert diffusion.num_timesteps == 4
    model = ConstantOutput(torch.zeros(4, 2))
    diffusion.p_mean_variance(model, torch.zeros(4, 2), torch.tensor([0, 1, 2, 3]))
    assert model.seen_t.tolist() == [0, 10, 20, 99]
    assert model.seen_t.dtype == torch.long


def test_vlb_kl_term_closed_form_for_an_offset_x0_model():
    # x0-model off by delta: KL = coef1^2 delta^2 / (2 beta-tilde) nats per dim at t >= 1
    betas = get_betas("linear", 50)
    abar = np.cumprod(1 - betas)
    diffusion = GaussianDiffusion(NoiseSchedule(betas), mean_type="x0")
    x0 = torch.full((3, 4), 0.25)
    x_t = torch.full((3, 4), 0.1)
    t = torch.tensor([1, 10, 40])
    delta = 0.05
    out = diffusion.vlb_terms(None, x0, x_t, t, model_output=x0 + delta)["output"]
    for i, step in enumerate(t.tolist()):
        coef1 = betas[step] * math.sqrt(abar[step - 1]) / (1 - abar[step])
        tilde = betas[step] * (1 - abar[step - 1]) / (1 - abar[step])
        expected = coef1 ** 2 * delta ** 2 / (2 * tilde) / math.log(2)
        assert out[i].item() == pytest.approx(expected, rel=1e-3)


def test_decoder_terms_at_t0_image_and_continuous():
    betas = get_betas("linear", 50)
    abar = np.cumprod(1 - betas)
    sigma = math.sqrt(betas[1] * (1 - abar[0]) / (1 - abar[1]))  # clipped fixed_small at t=0
    x0 = torch.tensor([[0.2, -1.0]])
    x_t = torch.tensor([[0.21, -0.97]])
    t = torch.tensor([0])
    pred = torch.tensor([[0.19, -0.99]])
    # posterior mean at t=0 is pred_x0 itself (coef1 = 1, coef2 = 0)
    image = GaussianDiffusion(NoiseSchedule(betas), mean_type="x0")
    got = image.vlb_terms(None, x0, x_t, t, model_output=pred)["output"].item()

    def cdf(z):
        return 0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))

    p_inner = cdf((0.2 + 1 / 255 - 0.19) / sigma) - cdf((0.2 - 1 / 255 - 0.19) / sigma)
    p_edge = cdf((-1.0 + 1 / 255 + 0.99) / sigma)
    assert got == pytest.approx(-(math.log(p_inner) + math.log(p_edge)) / 2 / math.log(2), rel=1e-3)

    cont = GaussianDiffusion(NoiseSchedule(betas), mean_type="x0", data_kind="continuous")
    got = cont.vlb_terms(None, x0, x_t, t, model_output=pred)["output"].item()
    log_density = torch.distributions.Normal(pred.double(), sigma).log_prob(x0.double()).mean()
    assert got == pytest.approx(-log_density.item() / math.log(2), rel=1e-4)


def test_hybrid_loss_is_mse_plus_scaled_vlb_and_vlb_trains_only_variance():
    T = 50
    diffusion = make_diffusion(T=T, var_type="learned_range", loss_type="hybrid")
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 2, 2, generator=g) * 2 - 1
    noise = torch.randn(4, 3, 2, 2, generator=g)
    t = torch.tensor([0, 3, 20, 49])
    model = ConstantOutput(0.3 * torch.randn(4, 6, 2, 2, generator=g))
    losses = diffusion.training_losses(model, x0, t, noise=noise)
    assert all(losses[k].shape == (4,) for k in ("loss", "mse", "vlb"))
    expected_mse = ((model.output[:, :3] - noise) ** 2).mean(dim=(1, 2, 3))
    assert torch.allclose(losses["mse"], expected_mse)
    assert torch.allclose(losses["loss"], losses["mse"] + 0.001 * T * losses["vlb"])

    losses["vlb"].sum().backward()
    grad = model.output.grad
    assert torch.all(grad[:, :3] == 0)
    assert grad[:, 3:].abs().sum() > 0

    # the same term with a live mean (loss "vlb") does reach the mean channels
    model.output.grad = None
    vlb_diffusion = make_diffusion(T=T, var_type="learned_range", loss_type="vlb")
    vlb_losses = vlb_diffusion.training_losses(model, x0, t, noise=noise)
    assert torch.allclose(vlb_losses["loss"], losses["vlb"].detach(), rtol=1e-5)
    vlb_losses["loss"].sum().backward()
    assert model.output.grad[:, :3].abs().sum() > 0


def test_simple_loss_reports_the_vlb_of_the_same_output_without_gradient():
    diffusion = make_diffusion(T=20, mean_type="v")
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(5, 2, generator=g)
    noise = torch.randn(5, 2, generator=g)
    t = torch.tensor([0, 1, 5, 10, 19])
    model = ConstantOutput(torch.randn(5, 2, generator=g))
    losses = diffusion.training_losses(model, x0, t, noise=noise)
    x_t = diffusion.q_sample(x0, t, noise)
    v_target = diffusion.v_from_x0_eps(x0, noise, t)
    assert torch.allclose(losses["loss"], ((model.output - v_target) ** 2).mean(dim=1))
    assert not losses["vlb"].requires_grad
    expected = diffusion.vlb_terms(model, x0, x_t, t)["output"]
    assert torch.allclose(losses["vlb"], expected.detach())


def test_calc_bpd_loop_shapes_total_and_prior():
    T = 10
    betas = get_betas("linear", T)
    diffusion = GaussianDiffusion(NoiseSchedule(betas))
    x0 = torch.randint(0, 256, (2, 1, 4, 4), generator=torch.Generator().manual_seed(0)) / 127.5 - 1
    model = ConstantOutput(torch.zeros(2, 1, 4, 4))
    out = diffusion.calc_bpd_loop(model, x0, generator=torch.Generator().manual_seed(1))
    assert out["vb"].shape == (2, T) and out["xstart_mse"].shape == (2, T)
    assert out["mse"].shape == (2, T) and out["total_bpd"].shape == (2,)
    assert torch.allclose(out["total_bpd"], out["vb"].sum(dim=1) + out["prior_bpd"])
    # prior: KL(N(sqrt(abar_T) x0, 1 - abar_T) || N(0, 1)) per dim, averaged, in bits
    abar_T = np.prod(1 - betas)
    x = x0.double().numpy().reshape(2, -1)
    kl = 0.5 * (-1 - np.log(1 - abar_T) + (1 - abar_T) + abar_T * x ** 2)
    assert np.allclose(out["prior_bpd"].numpy(), kl.mean(axis=1) / math.log(2), rtol=1e-4)
    assert torch.all(torch.isfinite(out["total_bpd"]))
