"""Models for the interop tests (a plain module: tests/ is on sys.path via conftest): a
diffusers UNet2DModel with seeded random weights written as a pipeline folder, and an
explorer checkpoint with perturbed weights."""

from __future__ import annotations

import json

import torch

# a small UNet with what the CIFAR one lacks: classes, a learned variance, scale-shift
# conditioning (diffusers then leaves the middle attention without a GroupNorm), two heads
SMALL_UNET = {
    "sample_size": 16, "in_channels": 1, "out_channels": 2, "block_out_channels": [32, 64],
    "layers_per_block": 1, "down_block_types": ["AttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "AttnUpBlock2D"], "attention_head_dim": 16,
    "resnet_time_scale_shift": "scale_shift", "num_class_embeds": 10, "norm_num_groups": 16,
}
SMALL_SCHEDULER = {"_class_name": "DDPMScheduler", "num_train_timesteps": 200,
                   "beta_schedule": "squaredcos_cap_v2", "variance_type": "learned_range",
                   "prediction_type": "v_prediction"}


def random_unet(config: dict, seed: int = 0):
    """diffusers' UNet2DModel with seeded weights; norms and biases moved off their
    initial 1 and 0, so a mapping error cannot hide behind an identity."""
    import diffusers

    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel.from_config(config).eval()
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if "norm" in name and name.endswith("weight"):
                parameter.add_(0.1 * torch.randn_like(parameter))
            elif name.endswith("bias") or "class_embedding" in name:
                parameter.add_(0.02 * torch.randn_like(parameter))
    return unet


def write_pipeline(folder, unet, unet_config: dict, scheduler_config: dict, rename=None):
    """A pipeline folder: diffusers' own save_pretrained, then the configs exactly as given
    (as published: keys missing), optionally the weights under other names."""
    import diffusers

    scheduler = diffusers.DDPMScheduler.from_config(scheduler_config)
    diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder)
    (folder / "unet" / "config.json").write_text(json.dumps(unet_config))
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler_config))
    if rename:
        from safetensors.torch import load_file, save_file

        weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
        state = load_file(str(weights))
        save_file({rename(k): v for k, v in state.items()}, str(weights), metadata={"format": "pt"})
    return folder


def make_checkpoint(path, *, class_conditional: bool = False, variance: str = "fixed_small",
                    schedule: str = "linear", mean_type: str = "eps", timesteps: int = 1000,
                    seed: int = 1, **model):
    """An explorer checkpoint of an 8x8 digits UNet (channels 32, two levels, attention at 4)
    whose EMA weights are moved off their zero-initialised start, so its output is not 0."""
    from core.checkpoint import save_checkpoint
    from core.config import DiffusionConfig, ExperimentConfig, ModelConfig, TrainConfig
    from core.training import Trainer

    settings = dict(kind="unet", channels=32, channel_mult=(1, 2), num_res_blocks=1,
                    attention_resolutions=(4,), num_heads=4)
    settings.update(model)
    config = ExperimentConfig(
        model=ModelConfig(**settings),
        diffusion=DiffusionConfig(schedule=schedule, timesteps=timesteps, mean_type=mean_type,
                                  variance_type=variance,
                                  loss_type="hybrid" if variance == "learned_range" else "simple"),
        train=TrainConfig(dataset="digits", image_size=8, steps=1, batch_size=8, device="cpu",
                          probe_every=0, class_conditional=class_conditional)).validate()
    trainer = Trainer(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in trainer.ema_model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    save_checkpoint(path, trainer)
    return path


def improved_state_dict(flags: str, seed: int = 0) -> dict:
    """An improved-/guided-diffusion state dict (their key names and qkv layout) for the
    pasted `flags`, with seeded random weights: the explorer's UNet of those flags, exported
    through core.interop's mapping (for tests of what opens it, not of the mapping itself:
    tests/test_interop_improved.py checks that against its own reference)."""
    from core.interop import improved
    from core.interop.convert import build_unet, export_weights
    from core.interop.improved_flags import map_flags, parse_flags

    mapped = map_flags(parse_flags(flags))
    generator = torch.Generator().manual_seed(seed)
    network = build_unet(mapped.model, mapped.data_shape, mapped.num_classes,
                         mapped.learn_sigma, "test")
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return export_weights(network, improved.naming(mapped.heads_legacy))
