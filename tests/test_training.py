"""core.training, core.timestep_sampler, core.ema: the loop, its control, probe, sampler, NaN stop."""

import math

import numpy as np
import pytest
import torch

from core.config import ConfigError, ExperimentConfig
from core.data import Dataset
from core.ema import EMA, effective_decay, make_ema
from core.timestep_sampler import LossAwareSampler, UniformSampler
from core.training import HISTORY_KEYS, Trainer, TrainingDiverged, resolve_device


def toy_dataset(n=400, seed=0, labelled=True):
    """Four Gaussian blobs in 2-D; label = blob index (a function of the point's quadrant)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    centres = np.array([[1.5, 1.5], [-1.5, 1.5], [-1.5, -1.5], [1.5, -1.5]])
    points = centres[labels] + 0.1 * rng.standard_normal((n, 2))
    cut = n * 9 // 10
    x = torch.tensor(points, dtype=torch.float32)
    y = torch.tensor(labels, dtype=torch.long)
    return Dataset(name="blobs", kind="vector", train=x[:cut], test=x[cut:],
                   train_labels=y[:cut] if labelled else None,
                   test_labels=y[cut:] if labelled else None,
                   num_classes=4 if labelled else None, shape=(2,))


def tiny_config(model=None, diffusion=None, train=None) -> ExperimentConfig:
    data = {
        "model": {"kind": "mlp", "hidden": 32, "mlp_blocks": 1, **(model or {})},
        "diffusion": {"schedule": "linear", "timesteps": 20, **(diffusion or {})},
        "train": {"batch_size": 64, "lr": 3e-3, "warmup_steps": 5, "steps": 40, "device": "cpu",
                  "log_every": 5, "probe_every": 0, "probe_timesteps": 4, "ema_decay": 0.9,
                  **(train or {})},
    }
    return ExperimentConfig.from_dict(data).validate()


def weights_of(trainer):
    state = {f"model.{k}": v.clone() for k, v in trainer.model.state_dict().items()}
    state.update({f"ema.{k}": v.clone() for k, v in trainer.ema_model.state_dict().items()})
    for i, entry in trainer.optimizer.state_dict()["state"].items():
        state.update({f"optim.{i}.{k}": v.clone() for k, v in entry.items()})
    return state


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ---------------------------------------------------------------------- the loop
def test_loss_falls_and_history_has_one_row_per_step():
    trainer = Trainer(tiny_config(train={"steps": 150}), dataset=toy_dataset())
    delivered = []
    assert trainer.run(on_metrics=delivered.extend) == "finished"
    assert trainer.step == 150
    assert [row["step"] for row in delivered] == list(range(1, 151))
    assert set(HISTORY_KEYS) <= set(delivered[0])
    for key in HISTORY_KEYS:
        assert len(trainer.history[key]) == 150
    losses = np.array(trainer.history["loss"])
    assert losses[-20:].mean() < 0.6 * losses[:10].mean()
    assert all(row["samples_per_sec"] > 0 for row in delivered)


def test_metrics_arrive_every_log_every_steps():
    trainer = Trainer(tiny_config(train={"log_every": 4}), dataset=toy_dataset())
    batches = []
    trainer.run(10, on_metrics=lambda rows: batches.append([r["step"] for r in rows]))
    assert batches == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]


def test_warmup_learning_rate_in_history():
    trainer = Trainer(tiny_config(train={"warmup_steps": 4, "lr": 0.01}), dataset=toy_dataset())
    trainer.run(6)
    assert trainer.history["lr"] == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01])


def test_loss_quarters_with_batch_of_one():
    """With one example per step exactly one quarter of [0, T) is non-empty and its mean is
    the loss; the other three are NaN (as improved-diffusion's per-quartile logs)."""
    trainer = Trainer(tiny_config(train={"batch_size": 1}), dataset=toy_dataset())
    trainer.run(30)
    seen = set()
    for i in range(30):
        quarters = [trainer.history[f"loss_q{q}"][i] for q in range(4)]
        finite = [q for q, v in enumerate(quarters) if math.isfinite(v)]
        assert len(finite) == 1
        assert quarters[finite[0]] == pytest.approx(trainer.history["loss"][i], rel=1e-6)
        seen.add(finite[0])
    assert len(seen) > 1


def test_should_stop_is_polled_before_every_step():
    trainer = Trainer(tiny_config(), dataset=toy_dataset())
    polls = []

    def should_stop():
        polls.append(trainer.step)
        return len(polls) == 7

    rows = []
    assert trainer.run(100, on_metrics=rows.extend, should_stop=should_stop) == "stopped"
    assert polls == [0, 1, 2, 3, 4, 5, 6]
    assert trainer.step == 6
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert trainer.run(4) == "finished" and trainer.step == 10


def test_a_stop_is_not_kept_waiting_by_a_probe_that_falls_due():
    trainer = Trainer(tiny_config(train={"probe_every": 5}), dataset=toy_dataset())
    stop = {"now": False}

    def should_stop():
        return stop["now"]

    def on_metrics(rows):
        stop["now"] = any(r["step"] == 5 for r in rows)   # Stop pressed during step 5

    assert trainer.run(20, on_metrics=on_metrics, should_stop=should_stop) == "stopped"
    assert trainer.step == 5 and trainer.probe_history == []
    stop["now"] = False
    assert trainer.run(1) == "finished"
    assert [p["step"] for p in trainer.probe_history] == [6]    # taken after the next step


def test_every_rank_polls_should_stop_the_same_number_of_times():
    """Under DDP should_stop is a collective (core.distributed.any_rank): if rank 0 polled
    once more than rank 1 before its probe, both would wait for ever (the CLI's 2-process
    run hung at the first probe)."""
    def polls_of(rank):
        trainer = Trainer(tiny_config(train={"probe_every": 3}), dataset=toy_dataset())
        trainer.rank = rank
        polls = []
        trainer.run(10, should_stop=lambda: polls.append(trainer.step) or False)
        return polls, len(trainer.probe_history)

    polls_0, probes_0 = polls_of(0)
    polls_1, probes_1 = polls_of(1)
    assert (probes_0, probes_1) == (3, 0)
    assert polls_1 == polls_0


def test_run_without_steps_goes_to_the_configured_total():
    trainer = Trainer(tiny_config(train={"steps": 12}), dataset=toy_dataset())
    trainer.run(5)
    trainer.run()
    assert trainer.step == 12


def test_same_seed_same_run_other_seed_other_run():
    def losses(seed):
        trainer = Trainer(tiny_config(train={"seed": seed}), dataset=toy_dataset())
        trainer.run(8)
        return trainer.history["loss"]

    assert losses(3) == losses(3)
    assert losses(3) != losses(4)


def test_unavailable_or_unknown_device_is_a_clear_error():
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="train.device"):
        resolve_device("tpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")


def test_class_conditional_needs_labels():
    config = tiny_config(train={"class_conditional": True})
    with pytest.raises(ConfigError, match="no class labels"):
        Trainer(config, dataset=toy_dataset(labelled=False))


# ---------------------------------------------------------------------- label dropout
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_label_dropout_replaces_labels_by_the_null_class(p):
    trainer = Trainer(tiny_config(train={"class_conditional": True, "label_dropout": p,
                                         "batch_size": 500}), dataset=toy_dataset())
    x0, kwargs, _, _, _ = trainer._draw_batch()
    y = kwargs["y"]
    null = y == trainer.num_classes
    # the kept labels are the true ones: the blob index is a function of the quadrant
    quadrant = torch.where(x0[:, 0] > 0, torch.where(x0[:, 1] > 0, 0, 3),
                           torch.where(x0[:, 1] > 0, 1, 2))
    assert torch.equal(y[~null], quadrant[~null])
    fraction = null.float().mean().item()
    assert abs(fraction - p) < 0.07


# ---------------------------------------------------------------------- probe
def test_probe_at_initialisation_matches_closed_form():
    """The networks' output layers start at zero, so eps_hat = 0. Then the probe's loss is
    mean(eps^2) and, for t >= 1, the VLB term is KL(N(mu~, b~) || N(mu, b~)) with
    mu~ - mu = coef1 (x0 - x_t / sqrt(abar)) = -coef1 sqrt((1 - abar) / abar) eps."""
    trainer = Trainer(tiny_config(train={"probe_timesteps": 5}), dataset=toy_dataset())
    probe = trainer.probe()
    T = 20
    expected_t = np.round(np.linspace(0, T - 1, 5)).astype(int)
    assert probe["t"].tolist() == expected_t.tolist()
    assert probe["v_mean"] is None and probe["log_var_std"] is None
    x0, noise, _ = trainer._probe_batch
    eps2 = noise.double().pow(2).mean().item()
    assert probe["loss"] == pytest.approx([eps2] * 5, rel=1e-5)
    s = trainer.diffusion.schedule
    for k, t in enumerate(expected_t):
        if t == 0:
            continue
        coef1, abar, var = s.posterior_mean_coef1[t], s.alphas_cumprod[t], s.posterior_variance[t]
        kl_nats = coef1 ** 2 * (1 - abar) / abar * eps2 / (2 * var)
        assert probe["vlb"][k] == pytest.approx(kl_nats / math.log(2), rel=1e-3)
    assert trainer.probe_history[-1] is probe


def test_probe_learned_range_fields_at_initialisation():
    """Zero output -> v = (0 + 1) / 2 everywhere, log Sigma = (log beta + log beta~) / 2."""
    config = tiny_config(diffusion={"variance_type": "learned_range", "loss_type": "hybrid"},
                         train={"probe_timesteps": 6})
    trainer = Trainer(config, dataset=toy_dataset())
    probe = trainer.probe()
    s = trainer.diffusion.schedule
    t = probe["t"]
    assert probe["v_mean"] == pytest.approx([0.5] * 6)
    assert probe["v_std"] == pytest.approx([0.0] * 6, abs=1e-7)
    expected = 0.5 * (np.log(s.betas[t]) + s.posterior_log_variance_clipped[t])
    assert probe["log_var_mean"] == pytest.approx(expected, rel=1e-5)
    assert all(len(probe[k]) == 6 for k in ("loss", "vlb", "v_mean", "v_std", "log_var_mean", "log_var_std"))


def test_probe_analytic_dpm_at_initialisation_matches_closed_form():
    """eps_hat = 0, so Gamma_t = 0. Independently of Bao et al.'s form: Var(x_{t-1}|x_t) =
    beta~ + c_t^2 Var(x0|x_t), and x0 = (x_t - sqrt(1-abar) eps) / sqrt(abar) gives
    E Var(x0|x_t) = (1-abar)/abar (1 - Gamma), capped by the data variance."""
    dataset = toy_dataset()
    trainer = Trainer(tiny_config(train={"probe_timesteps": 6}), dataset=dataset)
    data_var = dataset.train.double().var(dim=0).mean().item()
    assert trainer.data_variance == pytest.approx(data_var, rel=1e-9)
    probe = trainer.probe()
    s, t = trainer.diffusion.schedule, probe["t"]
    assert probe["eps_norm_sq"] == pytest.approx([0.0] * 6, abs=1e-12)
    c2 = (s.betas[t] * np.sqrt(s.alphas_cumprod_prev[t]) / (1 - s.alphas_cumprod[t])) ** 2
    spread = np.minimum((1 - s.alphas_cumprod[t]) / s.alphas_cumprod[t], data_var)
    assert probe["analytic_variance"] == pytest.approx(s.posterior_variance[t] + c2 * spread, rel=1e-9)


def test_probe_eps_norm_uses_the_eps_implied_by_an_x0_model():
    """An x0-predicting network that outputs 0 implies eps = x_t / sqrt(1 - abar); Gamma_t
    is the control-variate mean mean(f - b (c - 1)), f = |eps_hat|^2/D, c = |eps|^2/D."""
    trainer = Trainer(tiny_config(diffusion={"mean_type": "x0"}, train={"probe_timesteps": 4}),
                      dataset=toy_dataset())
    probe = trainer.probe()
    x0, noise, _ = trainer._probe_batch
    s = trainer.diffusion.schedule
    for k, t in enumerate(probe["t"]):
        abar = s.alphas_cumprod[t]
        x_t = np.sqrt(abar) * x0.double().numpy() + np.sqrt(1 - abar) * noise.double().numpy()
        f = np.mean(x_t**2, axis=1) / (1 - abar)
        c = np.mean(noise.double().numpy() ** 2, axis=1)
        b = np.cov(f, c, bias=True)[0, 1] / np.var(c)
        assert probe["eps_norm_sq"][k] == pytest.approx(np.mean(f - b * (c - 1)), rel=1e-5)


class _ExactGaussianEps(torch.nn.Module):
    """E[eps | x_t] for data N(m, s^2 I): the ideal eps-network, in float64 internally."""

    def __init__(self, schedule, mean, std):
        super().__init__()
        self.abar = torch.tensor(schedule.alphas_cumprod)
        self.mean, self.var0 = torch.tensor(mean), std**2

    def forward(self, x, t):
        abar = self.abar[t].unsqueeze(1)
        var = abar * self.var0 + 1 - abar
        x0 = self.mean + abar.sqrt() * self.var0 / var * (x.double() - abar.sqrt() * self.mean)
        return ((x.double() - abar.sqrt() * x0) / (1 - abar).sqrt()).to(x.dtype)


def test_probe_analytic_dpm_with_the_exact_eps_recovers_the_true_reverse_variance():
    """For Gaussian data the true q(x_{t-1}|x_t) has the closed-form variance
    v_t = 1 / (1/sigma_{t-1}^2 + alpha_t/beta_t), sigma_s^2 = abar_s s^2 + 1 - abar_s."""
    mean, std, n = np.array([0.5, -1.0]), 0.3, 20_000
    rng = np.random.default_rng(7)
    x = torch.tensor(mean + std * rng.standard_normal((n, 2)), dtype=torch.float32)
    dataset = Dataset(name="gauss", kind="vector", train=x[:18_000], test=x[18_000:],
                      train_labels=None, test_labels=None, num_classes=None, shape=(2,))
    trainer = Trainer(tiny_config(train={"probe_timesteps": 8}), dataset=dataset)
    s = trainer.diffusion.schedule
    trainer.ema_model = _ExactGaussianEps(s, mean, std)
    probe = trainer.probe()
    assert trainer._probe_batch[0].shape[0] == 2000
    t = probe["t"]
    abar, abar_prev, beta = s.alphas_cumprod[t], s.alphas_cumprod_prev[t], s.betas[t]
    var_prev = abar_prev * std**2 + 1 - abar_prev
    truth = 1 / (1 / var_prev + (1 - beta) / beta)
    # Gamma_t is a mean over 2,000 draws (relative error ~2.2%); sigma*^2 moves by
    # beta^2 / (alpha (1 - abar)) per unit of Gamma.
    gamma = (1 - abar) / (abar * std**2 + 1 - abar)  # E|E[eps|x]|^2/D = 1 - Var(eps|x_t)
    assert probe["eps_norm_sq"] == pytest.approx(gamma, rel=0.1)
    tol = 5 * 0.025 * gamma * beta**2 / ((1 - beta) * (1 - abar))
    assert np.all(np.abs(probe["analytic_variance"] - truth) <= tol + 1e-12)
    # The control variate makes the part above beta-tilde (what places sigma*^2 between the
    # bounds) accurate where it is tiny: at large t, 1 - Gamma_t ~ 1e-3 here.
    excess = truth - s.posterior_variance[t]
    late = t >= 10
    assert np.all(np.abs(probe["analytic_variance"] - truth)[late] <= 0.05 * excess[late])


def test_probe_runs_periodically_and_on_request():
    trainer = Trainer(tiny_config(train={"probe_every": 5}), dataset=toy_dataset())
    probes = []
    trainer.run(12, on_probe=probes.append)
    assert [p["step"] for p in probes] == [5, 10]
    trainer.request_probe()
    trainer.run(1, on_probe=probes.append)
    assert [p["step"] for p in probes] == [5, 10, 13]


def test_probe_uses_the_ema_model_and_a_fixed_batch():
    trainer = Trainer(tiny_config(), dataset=toy_dataset())
    trainer.run(20)
    first, second = trainer.probe(), trainer.probe()
    assert np.array_equal(first["loss"], second["loss"])      # fixed batch and noise
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(1.0)                                          # the live model is not probed
    assert np.array_equal(trainer.probe()["loss"], first["loss"])


# ---------------------------------------------------------------------- EMA
def test_ema_update_is_the_weighted_average():
    model = torch.nn.Linear(3, 2)
    average = make_ema(model)
    before = [p.detach().clone() for p in average.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0).add_(1.0)
    EMA(average, model).update(0.75)
    for old, new, live in zip(before, average.parameters(), model.parameters(), strict=True):
        assert torch.allclose(new, 0.75 * old + 0.25 * live.detach())
    assert not any(p.requires_grad for p in average.parameters())
    assert effective_decay(0.999, 0) == pytest.approx(0.1)
    assert effective_decay(0.999, 10**6) == 0.999


def test_ema_snapshot_is_a_frozen_independent_copy():
    trainer = Trainer(tiny_config(), dataset=toy_dataset())
    trainer.run(5)
    snapshot = trainer.ema_snapshot()
    saved = {k: v.clone() for k, v in snapshot.state_dict().items()}
    assert all(torch.equal(saved[k], v) for k, v in trainer.ema_model.state_dict().items())
    trainer.run(5)
    assert all(torch.equal(saved[k], v) for k, v in snapshot.state_dict().items())
    assert not any(torch.equal(saved[k], v) for k, v in trainer.ema_model.state_dict().items()
                   if k.endswith("weight") and "out" in k)
    assert not snapshot.training and not any(p.requires_grad for p in snapshot.parameters())


# ---------------------------------------------------------------------- timestep samplers
def test_uniform_sampler_weights_are_one():
    t, w = UniformSampler(10).sample(1000, torch.Generator().manual_seed(0))
    assert t.min() >= 0 and t.max() <= 9 and torch.all(w == 1)
    assert len(torch.unique(t)) == 10


def test_loss_aware_sampler_is_uniform_until_every_t_has_ten_losses():
    sampler = LossAwareSampler(4)
    for _ in range(9):
        sampler.update(torch.arange(4), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    sampler.update(torch.tensor([0, 1, 2]), torch.tensor([1.0, 2.0, 3.0]))
    assert torch.allclose(sampler.probabilities(), torch.full((4,), 0.25))
    sampler.update(torch.tensor([3]), torch.tensor([4.0]))
    assert not torch.allclose(sampler.probabilities(), torch.full((4,), 0.25))


def test_loss_aware_probabilities_match_improved_ddpm_formula():
    T = 5
    sampler = LossAwareSampler(T)
    rng = np.random.default_rng(0)
    history = rng.uniform(0.1, 3.0, size=(T, 12))          # 12 > 10: only the last 10 count
    for k in range(12):                                      # one loss per t per batch, in order
        sampler.update(torch.arange(T), torch.tensor(history[:, k], dtype=torch.float32))
    kept = history[:, -10:]
    w = np.sqrt((kept ** 2).mean(axis=1))
    expected = w / w.sum() * (1 - 0.001) + 0.001 / T
    assert sampler.probabilities().double().numpy() == pytest.approx(expected, rel=1e-5)


def test_loss_aware_keeps_the_last_ten_losses_of_a_batch_in_batch_order():
    sampler = LossAwareSampler(3)
    t = torch.tensor([1] * 15 + [0] * 10 + [2] * 10)
    losses = torch.cat([torch.arange(15.0), torch.ones(10), torch.ones(10)])
    sampler.update(t, losses)
    assert sorted(sampler.history[1].tolist()) == list(np.arange(5.0, 15.0))
    assert sampler.count.tolist() == [10, 15, 10]


def test_loss_aware_draws_follow_p_and_weights_are_inverse():
    T = 4
    sampler = LossAwareSampler(T)
    for _ in range(10):
        sampler.update(torch.arange(T), torch.tensor([1.0, 1.0, 2.0, 4.0]))
    p = sampler.probabilities().double().numpy()
    t, w = sampler.sample(40000, torch.Generator().manual_seed(1))
    freq = np.bincount(t.numpy(), minlength=T) / 40000
    assert freq == pytest.approx(p, abs=0.01)
    assert w.double().numpy() == pytest.approx(1 / (T * p[t.numpy()]), rel=1e-5)


def test_trainer_with_loss_aware_sampling_records_every_loss():
    config = tiny_config(diffusion={"variance_type": "learned_range", "loss_type": "vlb",
                                    "timestep_sampler": "loss-aware"})
    trainer = Trainer(config, dataset=toy_dataset())
    trainer.run(10)
    assert isinstance(trainer.timestep_sampler, LossAwareSampler)
    assert int(trainer.timestep_sampler.count.sum()) == 10 * 64
    assert all(math.isfinite(v) for v in trainer.history["loss"])


# ---------------------------------------------------------------------- divergence
def test_nan_in_the_batch_stops_training_and_keeps_the_last_good_weights():
    trainer = Trainer(tiny_config(), dataset=toy_dataset())
    trainer.run(5)
    good = weights_of(trainer)
    clean = trainer._train_x.clone()
    trainer._train_x[:] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"step 6: the loss is nan.*step 5") as info:
        trainer.run(10)
    assert info.value.step == 6 and info.value.good_step == 5
    assert trainer.step == 5 and len(trainer.history["loss"]) == 5
    assert_same_state(weights_of(trainer), good)
    trainer._train_x.copy_(clean)                         # fixed data: training goes on
    trainer.run(3)
    assert trainer.step == 8


def test_non_finite_gradient_norm_is_reported(monkeypatch):
    trainer = Trainer(tiny_config(), dataset=toy_dataset())
    trainer.run(2)
    good = weights_of(trainer)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda *a, **k: torch.tensor(float("inf")))
    with pytest.raises(TrainingDiverged, match="gradient norm is inf"):
        trainer.run(1)
    assert_same_state(weights_of(trainer), good)


def test_deferred_checks_roll_back_to_the_last_read_step():
    """The CUDA path reads metrics every log_every steps; a NaN in between rolls back."""
    trainer = Trainer(tiny_config(train={"log_every": 5}), dataset=toy_dataset())
    trainer._deferred_checks = True
    trainer.run(10)
    good = weights_of(trainer)
    generators = trainer.generator_states()
    trainer.run(2)
    trainer._train_x[:] = float("nan")
    with pytest.raises(TrainingDiverged, match="step 13: the loss is nan.*step 12"):
        trainer.run(5)
    # the last read was at step 12 (end of the previous run), so we are back there
    assert trainer.step == 12
    trainer2 = Trainer(tiny_config(train={"log_every": 5}), dataset=toy_dataset())
    trainer2._deferred_checks = True
    trainer2.run(10)
    assert_same_state(weights_of(trainer2), good)
    assert torch.equal(trainer2.generator_states()["step"], generators["step"])
    trainer2.run(2)
    assert_same_state(weights_of(trainer), weights_of(trainer2))
    assert len(trainer.history["loss"]) == 12


# ---------------------------------------------------------------------- presets
def test_presets_load_validate_and_build():
    from core.models import build_model
    from core.presets import list_presets, load_preset

    names = list_presets()
    assert {"toy-2d", "mnist-ddpm", "mnist-improved", "digits"} <= set(names)
    shapes = {"8gaussians": (2,), "mnist": (1, 28, 28), "digits": (1, 8, 8)}
    for name in names:
        config = load_preset(name)
        classes = 10 if config.train.class_conditional else None
        learn_sigma = config.diffusion.variance_type == "learned_range"
        build_model(config.model, shapes[config.train.dataset], classes, learn_sigma)
    ddpm, improved = load_preset("mnist-ddpm").diffusion, load_preset("mnist-improved").diffusion
    assert (ddpm.schedule, ddpm.mean_type, ddpm.variance_type, ddpm.loss_type) == (
        "linear", "eps", "fixed_small", "simple")
    assert (improved.schedule, improved.variance_type, improved.loss_type) == (
        "cosine", "learned_range", "hybrid")
    with pytest.raises(ConfigError, match="unknown preset"):
        load_preset("nope")
