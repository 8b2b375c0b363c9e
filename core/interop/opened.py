"""What opening a model gives: the explorer's network and diffusion, and what was recognised.

Whatever the format (the explorer's checkpoint, a diffusers folder, an improved-diffusion
state dict), the network is called like every model here, model(x, t, y=None): x (B, C, S, S)
in [-1, 1], t (B,) int64 timesteps of the model's own T, y (B,) labels or None (the null
class) -> (B, C, S, S) in the mean type's terms (eps, x0 or v), or (B, 2C, S, S) with the
variance channels v of the learned range appended along dim 1.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from torch import nn

from core.config import ExperimentConfig, ModelConfig, TrainConfig
from core.diffusion import GaussianDiffusion

# format names (OpenedModel.format)
EXPLORER = "diffusion-explorer checkpoint"
DIFFUSERS_PIPELINE = "diffusers pipeline"
DIFFUSERS_UNET = "diffusers UNet2DModel"
IMPROVED = "improved-diffusion state dict"
FORMATS = (EXPLORER, DIFFUSERS_PIPELINE, DIFFUSERS_UNET, IMPROVED)


@dataclass
class OpenedModel:
    """A model opened from any supported format.

    model: the network (frozen, eval mode, on the device asked for); diffusion: its
    GaussianDiffusion (unrespaced, T steps); config: the explorer's settings of both (model
    and diffusion sections exact; train holds defaults with the image size, colour and class
    conditioning of the model, its data set "" for models from elsewhere: see
    fine_tune_config); data_shape (C, S, S) or (D,); num_classes (None: unconditional);
    format: one of FORMATS; path; mapped: what was read as what, one line each; notes:
    settings that were ignored or mean something else here; flags: the improved-diffusion
    flags used (with flags_guessed when they came from tensor shapes); checkpoint: the
    core.checkpoint.Checkpoint for the explorer's own files; data_box: the x0 clamp of
    vector data (own checkpoints), else None.

    Iterating gives (model, diffusion), so `model, diffusion = open_model(path)` works.
    """

    model: nn.Module
    diffusion: GaussianDiffusion
    config: ExperimentConfig
    data_shape: tuple[int, ...]
    num_classes: int | None
    format: str
    path: str
    mapped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    flags: dict | None = None
    flags_guessed: bool = False
    checkpoint: object = None
    data_box: tuple | None = None

    def __iter__(self):
        return iter((self.model, self.diffusion))

    @property
    def data_kind(self) -> str:
        """"image" for (C, H, W) data, "vector" for (D,)."""
        return "image" if len(self.data_shape) == 3 else "vector"

    @property
    def title(self) -> str:
        """A short name for window titles and reports: the file or folder name."""
        from pathlib import Path

        return Path(self.path).name or self.path

    def fine_tune_config(self, dataset: str) -> ExperimentConfig:
        """The config to train on from these weights with `dataset` (a data-set name or
        path): this model's model and diffusion sections, the train section's defaults with
        the model's image size, colour and class conditioning. Validated: ConfigError names
        the field that the explorer cannot train (e.g. train.image_size 256, or
        model.channel_mult with six levels)."""
        config = copy.deepcopy(self.config)
        config.train.dataset = dataset
        config.validate()
        return config


def experiment_config(model: ModelConfig, diffusion, data_shape: tuple[int, ...],
                      num_classes: int | None, name: str) -> ExperimentConfig:
    """An ExperimentConfig for a model from elsewhere: the given model and diffusion
    sections; train defaults with image_size (when the explorer trains at that size),
    grayscale and class_conditional of the model, and no data set (""); the probe looks at
    no more timesteps than there are. Not validated."""
    train = TrainConfig(dataset="", class_conditional=num_classes is not None)
    train.probe_timesteps = min(train.probe_timesteps, diffusion.timesteps)
    if len(data_shape) == 3:
        train.grayscale = data_shape[0] == 1
        train.image_size = data_shape[-1]
    return ExperimentConfig(model=model, diffusion=diffusion, train=train, name=name)
