"""Every step a CUDA graph may capture makes no host round trip, checked on the CPU with
core.capture_guard (a TorchDispatchMode that fails on reads back to the host, tensors made
from host data, copies across devices, conversions of float64 host tables and
data-dependent shapes, naming the op and the line): the training step for every mean type,
variance type and loss (with dropout, labels and label dropout, images and vectors), and
one step of every registered sampler for every variance, clip setting and guidance on/off,
both as the eager call and as the graph body on static buffers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import core.samplers as registry
from core.capture_guard import CaptureGuard, HostRoundTrip
from core.config import ExperimentConfig
from core.data import Dataset
from core.diffusion import GaussianDiffusion
from core.fast_step import step_runner
from core.models import MLPDenoiser, UNet
from core.sampling import GuidedModel, make_run
from core.schedule import NoiseSchedule, get_betas, space_timesteps
from core.train_step import StepBatch
from core.training import Trainer


# ---------------------------------------------------------------------- the guard itself
@pytest.mark.parametrize("offence, words", [
    (lambda x: x.sum().item(), "_local_scalar_dense"),
    (lambda x: float(x.mean()), "_local_scalar_dense"),
    (lambda x: bool(x.max() > 0), "_local_scalar_dense"),
    (lambda x: x + torch.tensor([1.0, 2.0]), "lift_fresh"),
    (lambda x: x * torch.as_tensor(np.array(2.0)), "lift_fresh"),
    (lambda x: x[x > 0], "boolean mask"),
    (lambda x: x.nonzero(), "nonzero"),
    (lambda x: x.unique(), "unique"),
    (lambda x: torch.ones(2, dtype=torch.float64).float(), "float64"),
    (lambda x: x * torch.scalar_tensor(3.0), "scalar_tensor"),
])
def test_the_guard_names_each_kind_of_host_round_trip_and_the_line(offence, words):
    x = torch.randn(2)
    with pytest.raises(HostRoundTrip, match=words) as info, CaptureGuard():
        offence(x)
    assert "tests/test_capture_safety.py" in str(info.value)      # the line that did it


def test_the_guard_lets_device_side_work_through():
    x, t = torch.randn(4, 3), torch.tensor([0, 2, 1, 2])
    table = torch.linspace(0.0, 1.0, 3)
    with CaptureGuard():
        y = (x * table[t].reshape(-1, 1)).clamp(-1.0, 1.0)
        y = torch.where(y > 0, y, torch.zeros_like(y)) + torch.full_like(y, 0.5)
        _ = t.float(), torch.randn(2, generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------------- training
def image_data(classes=3):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(24, 1, 8, 8, generator=gen) * 2 - 1
    y = torch.randint(0, classes, (24,), generator=gen)
    return Dataset(name="noise", kind="image", train=x[:20], test=x[20:], train_labels=y[:20],
                   test_labels=y[20:], num_classes=classes, shape=(1, 8, 8))


def vector_data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 2, generator=gen)
    return Dataset(name="points", kind="vector", train=x[:36], test=x[36:], shape=(2,))


def config(model=None, diffusion=None, train=None) -> ExperimentConfig:
    return ExperimentConfig.from_dict({
        "model": {"kind": "auto", "channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1,
                  "num_heads": 2, "hidden": 16, "mlp_blocks": 1, **(model or {})},
        "diffusion": {"schedule": "cosine", "timesteps": 20, **(diffusion or {})},
        "train": {"batch_size": 6, "warmup_steps": 0, "steps": 4, "device": "cpu",
                  "probe_every": 0, "probe_timesteps": 4, "image_size": 8, **(train or {})},
    }).validate()


def guarded_train_step(trainer: Trainer) -> None:
    """The call a graph captures (Trainer.step_on), on a batch drawn as the trainer does."""
    x0, kwargs, t, weights, noise = trainer._draw_batch()
    batch = StepBatch(x0, t, weights, noise, kwargs.get("y"))
    trainer._ema_weight.fill_(0.1)
    with trainer._model_rng(), CaptureGuard():
        raw, row = trainer.step_on(batch)
    assert raw.shape == (6,) and row.shape == (8,)


TRAIN_CASES = list(itertools.product(("eps", "x0", "v"),
                                     ("fixed_small", "fixed_large", "learned_range"),
                                     ("simple", "hybrid", "vlb")))


@pytest.mark.parametrize("mean_type, var_type, loss_type", TRAIN_CASES)
def test_the_training_step_makes_no_host_round_trip(mean_type, var_type, loss_type):
    diffusion = {"mean_type": mean_type, "variance_type": var_type, "loss_type": loss_type}
    guarded_train_step(Trainer(config(diffusion=diffusion), dataset=image_data()))


@pytest.mark.parametrize("variant", [
    dict(model={"dropout": 0.3}, train={"class_conditional": True, "label_dropout": 0.3}),
    dict(diffusion={"loss_type": "hybrid", "timestep_sampler": "loss-aware"}),
    dict(train={"grad_clip": 0.0}),
])
def test_the_training_step_with_dropout_labels_and_options_makes_no_host_round_trip(variant):
    guarded_train_step(Trainer(config(**variant), dataset=image_data()))


def test_the_training_step_on_vector_data_makes_no_host_round_trip():
    guarded_train_step(Trainer(config(diffusion={"variance_type": "learned_range",
                                                 "loss_type": "hybrid"}), dataset=vector_data()))


def test_the_timestep_samplers_draw_and_learn_on_the_device():
    trainer = Trainer(config(diffusion={"loss_type": "vlb", "timestep_sampler": "loss-aware"}),
                      dataset=image_data())
    sampler = trainer.timestep_sampler
    gen = torch.Generator().manual_seed(0)
    with CaptureGuard():
        for _ in range(30):          # past the warm-up: the loss-aware probabilities are used
            t, _weights = sampler.sample(6, gen)
            sampler.update(t, torch.rand(6))


# ---------------------------------------------------------------------- sampling
class ClassModel(torch.nn.Module):
    """A class-conditional network of either output width (for guidance)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.num_classes = inner, 3

    def forward(self, x, t, y=None):
        out = self.inner(x, t)
        return out if y is None else out + 0.01 * y.float().reshape(-1, *([1] * (x.ndim - 1)))


def diffusion_for(var_type: str, kind: str) -> GaussianDiffusion:
    d = GaussianDiffusion(NoiseSchedule(get_betas("cosine", 40)), var_type=(
        "fixed_small" if var_type == "analytic" else var_type),
        data_kind="image" if kind == "image" else "continuous")
    d = d.respaced(space_timesteps(40, "8"))
    if var_type == "analytic":                       # Analytic-DPM's fixed reverse variance
        d = d.with_reverse_variance(d.schedule.posterior_variance * 1.5 + 1e-4)
    return d


def network(kind: str, learned: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "image":
        return UNet(1, 8, 2 if learned else 1, 1, (), 8, channel_mult=(1, 2), num_heads=2).eval()
    return MLPDenoiser(2, hidden=16, num_blocks=1, learn_sigma=learned).eval()


SAMPLER_CASES = [(name, var, kind, clip, guided)
                 for name in registry.sampler_names()
                 for var in ("fixed_small", "fixed_large", "learned_range", "analytic")
                 for kind, clip in (("image", None), ("image", False), ("vector", "box"),
                                    ("vector", None))
                 for guided in (False, True)]


@pytest.mark.parametrize("sampler, var_type, kind, clip, guided", SAMPLER_CASES)
def test_every_sampler_step_makes_no_host_round_trip(sampler, var_type, kind, clip, guided):
    diffusion = diffusion_for(var_type, kind)
    model = network(kind, diffusion.learns_sigma)
    shape = (4, 1, 8, 8) if kind == "image" else (4, 2)
    kwargs = {}
    if guided:
        model = GuidedModel(ClassModel(model), 2.0, null_class=3)
        kwargs = {"y": torch.tensor([0, 1, 2, 1])}
    spec = registry.get_sampler(sampler)
    options = {option.name: option.default for option in spec.options}
    if "eta" in options:
        options["eta"] = 0.5                           # the noisy DDIM: every table in use
    box = ([-2.0, -1.5], [2.0, 1.5]) if clip == "box" else clip
    run = make_run(spec, diffusion, model, options=options, clip_denoised=box,
                   model_kwargs=kwargs)
    if not run.capturable:
        pytest.skip("an adaptive solver is never captured")
    x, noise = torch.randn(shape), torch.randn(shape)
    t = torch.full((4,), 5, dtype=torch.long)
    run.start(x)
    with torch.no_grad(), CaptureGuard():
        out = run.step(x, t, noise, run.variant(5))
        run.step(x, torch.zeros_like(t), noise, run.variant(0))     # the last step, too
    run.start(x)
    assert out.x_prev.shape == shape and torch.isfinite(out.x_prev).all()
    # the graph body: the same step on the runner's static buffers, x overwritten
    runner = step_runner(run, shape, path="eager")
    runner._static = {"x": x.clone(), "t": t.clone(), "noise": noise.clone()}
    run.start(x)
    with torch.no_grad(), CaptureGuard():
        runner._graph_body(run.variant(5))
    torch.testing.assert_close(runner._static["x"], out.x_prev)
