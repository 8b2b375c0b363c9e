"""Models trained here, written as diffusers pipeline folders: diffusers' own
DDPMPipeline / DDIMPipeline load them, diffusers' DDIM and the explorer's DDIM draw the same
images from the same noise, opening the export gives back the very same model, and what
diffusers' UNet2DModel cannot hold is refused with the reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.config import ModelConfig
from core.generate import sample
from core.interop import InteropError, open_model
from core.interop.convert import build_unet
from core.interop.export import export_diffusers
from core.interop.opened import OpenedModel, experiment_config

diffusers = pytest.importorskip("diffusers")

from interop_models import make_checkpoint  # noqa: E402


@pytest.mark.parametrize("schedule, mean_type", [("linear", "eps"), ("sigmoid", "v")])
def test_diffusers_ddim_and_the_explorers_ddim_draw_the_same_images(tmp_path, schedule, mean_type):
    checkpoint = make_checkpoint(tmp_path / "run.safetensors", schedule=schedule,
                                 mean_type=mean_type)
    opened = open_model(checkpoint)
    export_diffusers(opened, tmp_path / "pipe")
    assert isinstance(diffusers.DDPMPipeline.from_pretrained(tmp_path / "pipe").unet,
                      diffusers.UNet2DModel)
    pipe = diffusers.DDIMPipeline.from_pretrained(tmp_path / "pipe")
    pipe.set_progress_bar_config(disable=True)
    n = 4
    theirs = pipe(batch_size=n, generator=torch.Generator().manual_seed(7), eta=0.0,
                  num_inference_steps=50, use_clipped_model_output=True, output_type="np").images
    noise = torch.randn((n, 1, 8, 8), generator=torch.Generator().manual_seed(7))
    ours = sample(opened.model, opened.diffusion, n, opened.data_shape, sampler="ddim", steps=50,
                  spacing="trailing", noise=noise, options={"eta": 0.0}, record_every=10**9)
    ours_images = np.clip(ours.final / 2 + 0.5, 0, 1).transpose(0, 2, 3, 1)
    assert theirs.shape == ours_images.shape == (n, 8, 8, 1)
    assert np.abs(theirs - ours_images).max() < 1e-4
    assert theirs.std() > 0.05                      # not a trivially constant image


@pytest.mark.parametrize("schedule", ["linear", "cosine", "quadratic", "sigmoid"])
def test_every_schedule_leaves_and_comes_back_unchanged(schedule):
    """Named diffusers schedules where their formula gives the explorer's betas, else
    trained_betas; either way the scheduler config reads back as the same schedule."""
    from core.config import DiffusionConfig
    from core.interop.diffusers_scheduler import scheduler_config, spec_from_scheduler
    from core.schedule import get_betas

    betas = get_betas(schedule, 500)
    config = scheduler_config(DiffusionConfig(schedule=schedule, timesteps=500), betas, "0.30.0")
    named = {"linear": "linear", "cosine": "squaredcos_cap_v2", "quadratic": "scaled_linear"}
    assert (config["trained_betas"] is None) == (schedule in named)
    if schedule in named:
        assert config["beta_schedule"] == named[schedule]
        scheduler = diffusers.DDPMScheduler.from_config(config)
        np.testing.assert_allclose(scheduler.betas.numpy(), betas, rtol=1e-5)
    assert spec_from_scheduler(config, "s", learn_sigma=False).diffusion.schedule == schedule


def test_the_round_trip_out_and_in_is_exact(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "run.safetensors", class_conditional=True,
                                 variance="learned_range")
    opened = open_model(checkpoint)
    export_diffusers(opened, tmp_path / "pipe")
    back = open_model(tmp_path / "pipe")
    ours, theirs = opened.model.state_dict(), back.model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)
    assert back.config == opened.config and back.num_classes == 10
    assert back.diffusion.num_timesteps == opened.diffusion.num_timesteps
    np.testing.assert_array_equal(back.diffusion.schedule.betas, opened.diffusion.schedule.betas)

    # diffusers' own UNet2DModel on the exported folder computes the same function,
    # the null class (label 10 there) included
    unet = diffusers.UNet2DModel.from_pretrained(tmp_path / "pipe" / "unet").eval()
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    t, y = torch.tensor([0, 400, 999]), torch.tensor([0, 9, 10])
    with torch.no_grad():
        reference = unet(x, t, class_labels=y).sample
        assert (opened.model(x, t, y) - reference).abs().max() < 1e-5
        assert torch.equal(opened.model(x, t), opened.model(x, t, torch.full((3,), 10)))

    pipe = diffusers.DDPMPipeline.from_pretrained(tmp_path / "pipe")
    assert pipe.scheduler.config.variance_type == "learned_range"


def test_a_learned_variance_export_runs_in_diffusers_ddpm(tmp_path):
    opened = open_model(make_checkpoint(tmp_path / "run.safetensors", variance="learned_range",
                                        timesteps=20))
    export_diffusers(opened, tmp_path / "pipe")
    pipe = diffusers.DDPMPipeline.from_pretrained(tmp_path / "pipe")
    pipe.set_progress_bar_config(disable=True)
    images = pipe(batch_size=2, generator=torch.Generator().manual_seed(0),
                  num_inference_steps=20, output_type="np").images
    assert images.shape == (2, 8, 8, 1) and np.isfinite(images).all()


def opened_unet(tmp_path, **options) -> OpenedModel:
    """An OpenedModel of the explorer's UNet with the given ModelConfig options (8x8, grey)."""
    from core.config import DiffusionConfig
    from core.diffusion import GaussianDiffusion
    from core.schedule import NoiseSchedule, get_betas

    settings = dict(kind="unet", channels=32, channel_mult=(1, 2), num_res_blocks=1,
                    attention_resolutions=(4,), num_heads=4)
    settings.update(options)
    model_config = ModelConfig(**settings)
    model = build_unet(model_config, (1, 8, 8), None, False, "test")
    diffusion = GaussianDiffusion(NoiseSchedule(get_betas("linear", 100)))
    config = experiment_config(model_config, DiffusionConfig(timesteps=100, schedule="linear"),
                               (1, 8, 8), None, "test")
    return OpenedModel(model=model, diffusion=diffusion, config=config, data_shape=(1, 8, 8),
                       num_classes=None, format="test", path=str(tmp_path / "model"))


@pytest.mark.parametrize("options, words", [
    ({"time_scale": 0.25}, "model.time_scale 0.25 (rescaled timesteps) cannot be exported"),
    ({"resblock_updown": True}, "model.resblock_updown true cannot be exported"),
    ({"channels": 8}, "GroupNorms use [8, 16, 32] groups"),
    ({"attention_resolutions": (8, 4), "num_heads": 4}, "attention heads of widths [8, 16]"),
])
def test_options_diffusers_lacks_are_refused_with_the_reason(tmp_path, options, words):
    with pytest.raises(InteropError) as info:
        export_diffusers(opened_unet(tmp_path, **options), tmp_path / "pipe")
    assert words in str(info.value)
    assert not (tmp_path / "pipe").exists()


def test_an_mlp_for_points_is_refused_and_nothing_is_written(tmp_path):
    from tiny_configs import tiny_toy_config

    from core.checkpoint import save_checkpoint
    from core.training import Trainer

    save_checkpoint(tmp_path / "toy.safetensors", Trainer(tiny_toy_config(steps=1)))
    with pytest.raises(InteropError, match="an MLP.*UNet2DModel holds image UNets only"):
        export_diffusers(open_model(tmp_path / "toy.safetensors"), tmp_path / "pipe")
    assert not (tmp_path / "pipe").exists()


def test_a_non_empty_folder_is_kept_unless_forced(tmp_path):
    opened = opened_unet(tmp_path)
    (tmp_path / "pipe").mkdir()
    (tmp_path / "pipe" / "mine.txt").write_text("keep")
    with pytest.raises(InteropError, match="exists and is not empty; pass --force"):
        export_diffusers(opened, tmp_path / "pipe")
    assert sorted(p.name for p in (tmp_path / "pipe").iterdir()) == ["mine.txt"]
    export_diffusers(opened, tmp_path / "pipe", force=True)
    assert (tmp_path / "pipe" / "model_index.json").is_file()


def test_an_opened_export_fine_tunes_from_its_weights(tmp_path):
    from core.interop.fine_tune import fine_tune_trainer

    export_diffusers(open_model(make_checkpoint(tmp_path / "run.safetensors")), tmp_path / "pipe")
    opened = open_model(tmp_path / "pipe")
    trainer = fine_tune_trainer(opened, "digits", device="cpu", steps=1, batch_size=8)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 700])
    with torch.no_grad():
        assert torch.equal(trainer.ema_model(x, t), opened.model(x, t))
    assert trainer.run(1) == "finished" and trainer.step == 1
    with pytest.raises(InteropError, match=r"items have shape \(1, 16, 16\)"):
        fine_tune_trainer(opened, "digits", device="cpu", image_size=16)
