"""diffusers folders opened as the explorer's own UNet: the network's output equals
diffusers' UNet2DModel on the same (x, t) (the reference is diffusers itself, built from a
config with seeded random weights; nothing is downloaded), the scheduler config becomes the
diffusion settings, and what the explorer cannot represent is refused naming key and value."""

from __future__ import annotations

import json

import pytest
import torch

from core.interop import DOWNLOAD_HINT, InteropError, describe, open_model
from core.interop.diffusers_scheduler import spec_from_scheduler
from core.interop.diffusers_unet import spec_from_config
from core.schedule import get_betas

diffusers = pytest.importorskip("diffusers")

from interop_models import (  # noqa: E402  (after the skip: it imports diffusers)
    SMALL_SCHEDULER,
    SMALL_UNET,
    random_unet,
    write_pipeline,
)

# google/ddpm-cifar10-32's unet/config.json and scheduler/scheduler_config.json as published
CIFAR10_UNET = {
    "_class_name": "UNet2DModel", "_diffusers_version": "0.0.4", "act_fn": "silu",
    "attention_head_dim": None, "block_out_channels": [128, 256, 256, 256],
    "center_input_sample": False,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1, "in_channels": 3,
    "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-06, "norm_num_groups": 32,
    "out_channels": 3, "sample_size": 32, "time_embedding_type": "positional",
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
}
CIFAR10_SCHEDULER = {
    "_class_name": "DDPMScheduler", "_diffusers_version": "0.1.1", "beta_end": 0.02,
    "beta_schedule": "linear", "beta_start": 0.0001, "clip_sample": True,
    "num_train_timesteps": 1000, "trained_betas": None, "variance_type": "fixed_small",
}
# the CIFAR-10 model's options (additive time, sines first, shifted frequencies, TF-style
# padding, eps 1e-6, one head) at a size where float64 runs are cheap
SMALL_DDPM_STYLE = {**{k: CIFAR10_UNET[k] for k in (
    "attention_head_dim", "downsample_padding", "flip_sin_to_cos", "freq_shift", "norm_eps")},
    "sample_size": 8, "in_channels": 3, "out_channels": 3, "block_out_channels": [32, 64, 64],
    "layers_per_block": 2, "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 32}
DEPRECATED = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def deprecated_names(key: str) -> str:
    """Attention weights named as diffusers saved them before 0.14 (the hub's DDPM files)."""
    for new, old in DEPRECATED.items():
        key = key.replace(f".{new}.", f".{old}.")
    return key


def test_cifar10_configuration_gives_diffusers_eps(tmp_path):
    reference = random_unet(CIFAR10_UNET)
    folder = write_pipeline(tmp_path / "ddpm-cifar10-32", reference, CIFAR10_UNET,
                            CIFAR10_SCHEDULER, rename=deprecated_names)
    opened = open_model(folder)
    model, diffusion = opened
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([7, 999])
    with torch.no_grad():
        theirs = reference(x, t).sample
        ours = model(x, t)
    assert ours.shape == (2, 3, 32, 32)
    assert (ours - theirs).abs().max() < 1e-5
    config = opened.config
    assert (config.diffusion.schedule, config.diffusion.timesteps, config.diffusion.mean_type,
            config.diffusion.variance_type) == ("linear", 1000, "eps", "fixed_small")
    assert (config.model.channels, config.model.channel_mult, config.model.num_res_blocks,
            config.model.attention_resolutions) == (128, (1, 2, 2, 2), 2, (16,))
    assert diffusion.num_timesteps == 1000 and opened.num_classes is None
    assert torch.equal(torch.as_tensor(diffusion.schedule.betas),
                       torch.as_tensor(get_betas("linear", 1000)))


def test_class_embedding_learned_variance_and_scale_shift(tmp_path):
    reference = random_unet(SMALL_UNET, seed=3)
    folder = write_pipeline(tmp_path / "small", reference, SMALL_UNET, SMALL_SCHEDULER)
    opened = open_model(folder)
    assert opened.num_classes == 10 and opened.data_shape == (1, 16, 16)
    assert not opened.config.model.middle_attention_norm
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    t, y = torch.tensor([0, 100, 199]), torch.tensor([0, 4, 9])
    with torch.no_grad():
        theirs = reference(x, t, class_labels=y).sample
        ours = opened.model(x, t, y)
    assert ours.shape == (3, 2, 16, 16)              # [v-prediction, variance v]
    assert (ours - theirs).abs().max() < 1e-5
    d = opened.config.diffusion
    assert (d.schedule, d.timesteps, d.mean_type, d.variance_type, d.loss_type) == (
        "cosine", 200, "v", "learned_range", "hybrid")
    null_row = opened.model.label_embed.weight[10]
    assert torch.equal(null_row, torch.zeros_like(null_row))


@pytest.mark.parametrize("config", [SMALL_UNET, SMALL_DDPM_STYLE], ids=["scale-shift", "ddpm"])
def test_float64_outputs_agree_to_rounding(tmp_path, config):
    """The same function, not an approximation: in float64 the two agree to 1e-10."""
    reference = random_unet(config, seed=5)
    scheduler = SMALL_SCHEDULER if config["out_channels"] == 2 else CIFAR10_SCHEDULER
    folder = write_pipeline(tmp_path / "f64", reference, config, scheduler, rename=deprecated_names)
    model = open_model(folder).model.double()
    size, channels = config["sample_size"], config["in_channels"]
    x = torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(6),
                    dtype=torch.float64)
    t = torch.tensor([0, 123])
    kwargs = {"class_labels": torch.tensor([2, 7])} if "num_class_embeds" in config else {}
    with torch.no_grad():
        theirs = reference.double()(x, t, **kwargs).sample
        ours = model(x, t, *kwargs.values())
    assert (ours - theirs).abs().max() < 1e-10


def test_weights_in_a_bin_file_load_without_running_code(tmp_path):
    reference = random_unet(SMALL_UNET, seed=4)
    folder = write_pipeline(tmp_path / "bin", reference, SMALL_UNET, SMALL_SCHEDULER)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    torch.save(reference.state_dict(), folder / "unet" / "diffusion_pytorch_model.bin")
    opened = open_model(folder / "unet")            # the bare UNet folder inside a pipeline
    x, t, y = torch.randn(1, 1, 16, 16), torch.tensor([5]), torch.tensor([3])
    with torch.no_grad():
        assert (opened.model(x, t, y) - reference(x, t, class_labels=y).sample).abs().max() < 1e-5
    assert opened.config.diffusion.timesteps == 200   # the scheduler of the pipeline around it

    torch.save({"weights": Unpicklable()}, folder / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(InteropError, match="weights_only"):
        open_model(folder)


class Unpicklable:
    """An object torch.load(weights_only=True) must refuse to rebuild."""


@pytest.mark.parametrize("change, words", [
    (lambda s: s.pop("conv_in.weight"), "lacks the key 'conv_in.weight'"),
    (lambda s: s.update(extra=torch.zeros(1)), "unexpected key 'extra'"),
    (lambda s: s.update({"conv_out.bias": torch.zeros(5)}), "'conv_out.bias' has shape (5,)"),
    (lambda s: s["conv_out.bias"].fill_(float("nan")), "'conv_out.bias' holds NaN"),
])
def test_malformed_weights_are_refused_naming_the_key(tmp_path, change, words):
    from safetensors.torch import load_file, save_file

    folder = write_pipeline(tmp_path / "bad", random_unet(SMALL_UNET), SMALL_UNET, SMALL_SCHEDULER)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    change(state)
    save_file(state, str(weights))
    with pytest.raises(InteropError, match="diffusion_pytorch_model.safetensors") as info:
        open_model(folder)
    assert words in str(info.value)


@pytest.mark.parametrize("key, value, words", [
    ("beta_schedule", "sigmoid", "beta_schedule 'sigmoid' is not supported"),
    ("beta_start", 0.00085, "beta_schedule 'linear' is not supported: with beta_start 0.00085"),
    ("beta_schedule", "exponential", "beta_schedule 'exponential' is not supported (supported:"),
    ("prediction_type", "flow", "prediction_type 'flow' is not supported"),
    ("variance_type", "learned", "variance_type 'learned' is not supported"),
    ("variance_type", "learned_range", "variance_type 'learned_range' does not fit the UNet"),
    ("rescale_betas_zero_snr", True, "rescale_betas_zero_snr True is not supported"),
    ("num_train_timesteps", 1, "num_train_timesteps 1 is not supported"),
    ("trained_betas", [0.01] * 1000, "trained_betas [0.01,"),
])
def test_unrepresentable_scheduler_settings_are_refused(key, value, words):
    with pytest.raises(InteropError) as info:
        spec_from_scheduler({**CIFAR10_SCHEDULER, key: value},
                            "scheduler/scheduler_config.json", learn_sigma=False)
    message = str(info.value)
    assert message.startswith("scheduler/scheduler_config.json: ") and words in message


def test_scheduler_schedules_that_equal_the_explorers_are_mapped():
    for config, name in (({"beta_schedule": "squaredcos_cap_v2"}, "cosine"),
                         ({"beta_schedule": "scaled_linear", "beta_start": 0.0001 * 4,
                           "beta_end": 0.02 * 4, "num_train_timesteps": 250}, "quadratic"),
                         ({"trained_betas": get_betas("sigmoid", 1000).tolist()}, "sigmoid")):
        spec = spec_from_scheduler(config, "s", learn_sigma=False)
        assert spec.diffusion.schedule == name


@pytest.mark.parametrize("key, value, words", [
    ("time_embedding_type", "fourier", "time_embedding_type 'fourier' is not supported"),
    ("down_block_types", ["SkipDownBlock2D", "DownBlock2D"], "holds 'SkipDownBlock2D'"),
    ("up_block_types", ["UpBlock2D", "UpBlock2D"], "up_block_types ['UpBlock2D', 'UpBlock2D'] "
                                                   "does not mirror"),
    ("mid_block_scale_factor", 2, "mid_block_scale_factor 2 is not supported"),
    ("out_channels", 3, "out_channels 3 is not supported"),
    ("block_out_channels", [32, 48], "block_out_channels [32, 48] is not supported"),
    ("attn_norm_num_groups", 8, "attn_norm_num_groups 8 is not supported"),
    ("class_embed_type", "timestep", "class_embed_type 'timestep' is not supported"),
    ("center_input_sample", True, "center_input_sample True is not supported"),
    ("sample_size", None, "sample_size None is not supported"),
    ("attention_head_dim", 24, "attention_head_dim 24 does not divide"),
    ("resnet_time_scale_shift", "spatial", "resnet_time_scale_shift 'spatial' is not supported"),
    ("_class_name", "UNet2DConditionModel", "_class_name 'UNet2DConditionModel' is not supported"),
])
def test_unrepresentable_unet_settings_are_refused(key, value, words):
    with pytest.raises(InteropError) as info:
        spec_from_config({**SMALL_UNET, key: value}, "unet/config.json")
    assert str(info.value).startswith("unet/config.json: ") and words in str(info.value)


def test_a_latent_pipeline_is_refused_naming_the_component(tmp_path):
    folder = write_pipeline(tmp_path / "ldm", random_unet(SMALL_UNET), SMALL_UNET, SMALL_SCHEDULER)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "vqvae": ["diffusers", "VQModel"]}))
    with pytest.raises(InteropError, match=r"model_index.json: component 'vqvae' \(VQModel\)"):
        open_model(folder)


@pytest.mark.parametrize("path", ["google/ddpm-cifar10-32",
                                  "https://huggingface.co/google/ddpm-cifar10-32"])
def test_a_path_that_is_not_local_is_never_downloaded(path, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InteropError) as info:
        open_model(path)
    assert DOWNLOAD_HINT in str(info.value) and str(info.value).startswith(path)
    assert list(tmp_path.iterdir()) == []


def test_a_weights_file_alone_points_to_its_folder(tmp_path):
    folder = write_pipeline(tmp_path / "p", random_unet(SMALL_UNET), SMALL_UNET, SMALL_SCHEDULER)
    with pytest.raises(InteropError, match="holds diffusers UNet2DModel weights; give the folder"):
        open_model(folder / "unet" / "diffusion_pytorch_model.safetensors")
    assert open_model(folder / "unet" / "config.json").num_classes == 10


def test_a_schedule_shorter_than_the_probe_can_be_fine_tuned(tmp_path):
    """T = 10 < the probe's default 20 timesteps: the opened settings probe 10 and validate."""
    scheduler = {**SMALL_SCHEDULER, "num_train_timesteps": 10}
    folder = write_pipeline(tmp_path / "short", random_unet(SMALL_UNET), SMALL_UNET, scheduler)
    opened = open_model(folder)
    config = opened.fine_tune_config("digits")
    assert config.train.probe_timesteps == 10
    assert describe(opened)["fine_tune"].startswith("yes")
