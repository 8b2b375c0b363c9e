"""The UNet options that models from elsewhere need keep the explorer's machinery working:
a training step and a sampler step make no host round trip (so CUDA graphs capture them),
activation checkpointing gives the same gradients, and a checkpoint holding them loads back
the same network. The defaults build exactly the UNet they always built."""

from __future__ import annotations

import torch

from core.capture_guard import CaptureGuard
from core.checkpoint import load_checkpoint, save_checkpoint
from core.config import ExperimentConfig, ModelConfig
from core.data import Dataset
from core.models import UNet, build_model
from core.samplers import get_sampler
from core.sampling import make_run
from core.train_step import StepBatch
from core.training import Trainer

OPTIONS = {"num_head_channels": 8, "scale_shift_norm": False, "resblock_updown": True,
           "norm_groups": 8, "norm_eps": 1e-6, "time_cos_first": False, "time_freq_shift": 1.0,
           "time_scale": 0.5, "downsample_padding": 0, "middle_attention_norm": False}


def images() -> Dataset:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(24, 1, 8, 8, generator=gen) * 2 - 1
    y = torch.randint(0, 3, (24,), generator=gen)
    return Dataset(name="noise", kind="image", train=x[:20], test=x[20:], train_labels=y[:20],
                   test_labels=y[20:], num_classes=3, shape=(1, 8, 8))


def config(**model) -> ExperimentConfig:
    return ExperimentConfig.from_dict({
        "model": {"kind": "unet", "channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1,
                  "attention_resolutions": [4], **model},
        "diffusion": {"schedule": "linear", "timesteps": 20, "variance_type": "learned_range",
                      "loss_type": "hybrid"},
        "train": {"batch_size": 6, "warmup_steps": 0, "steps": 2, "device": "cpu",
                  "probe_every": 0, "probe_timesteps": 4, "image_size": 8,
                  "class_conditional": True},
    }).validate()


def test_defaults_build_the_unet_they_always_built():
    torch.manual_seed(0)
    plain = UNet(1, 16, 2, 1, (4,), 8, channel_mult=(1, 2), num_classes=3)
    torch.manual_seed(0)
    built = build_model(ModelConfig(kind="unet", channels=16, channel_mult=(1, 2),
                                    num_res_blocks=1, attention_resolutions=(4,)),
                        (1, 8, 8), 3, learn_sigma=True)
    assert plain.state_dict().keys() == built.state_dict().keys()
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([0, 19])
    assert torch.equal(plain(x, t), built(x, t))


def test_a_training_and_a_sampler_step_with_every_option_stay_on_the_device():
    trainer = Trainer(config(**OPTIONS), dataset=images())
    x0, kwargs, t, weights, noise = trainer._draw_batch()
    trainer._ema_weight.fill_(0.1)
    with trainer._model_rng(), CaptureGuard():
        raw, _ = trainer.step_on(StepBatch(x0, t, weights, noise, kwargs.get("y")))
    assert torch.isfinite(raw).all()

    run = make_run(get_sampler("ddim"), trainer.diffusion, trainer.ema_model.eval(),
                   options={"eta": 0.5}, clip_denoised=True)
    x = torch.randn(4, 1, 8, 8)
    run.start(x)
    with torch.no_grad(), CaptureGuard():
        out = run.step(x, torch.full((4,), 7), torch.randn(4, 1, 8, 8), run.variant(7))
    assert torch.isfinite(out.x_prev).all()


def test_checkpointing_gives_the_same_gradients_with_every_option():
    model = build_model(config(**OPTIONS).model, (1, 8, 8), 3, learn_sigma=True)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 17])
    grads = []
    for enabled in (False, True):
        model.set_checkpointing(enabled).zero_grad()
        model(x, t).square().mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads, strict=True))


def test_a_checkpoint_keeps_the_options(tmp_path):
    trainer = Trainer(config(**OPTIONS), dataset=images())
    assert trainer.run(1) == "finished"
    save_checkpoint(tmp_path / "run.safetensors", trainer)
    loaded = load_checkpoint(tmp_path / "run.safetensors")
    assert loaded.config.model == trainer.config.model
    model = loaded.build_model(ema=True)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([1, 12])
    with torch.no_grad():
        assert torch.equal(model(x, t), trainer.ema_model.eval()(x, t))
