"""From an ExperimentConfig to the objects of a run: its data set, its diffusion, its
network. The one place that reads a config to build them (the trainer, checkpoints, the
CLI and the app all call these)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from core.config import ConfigError, ExperimentConfig
from core.data import Dataset, get_dataset
from core.diffusion import GaussianDiffusion
from core.models import build_model
from core.options import DataKind
from core.schedule import NoiseSchedule


def dataset_key(config: ExperimentConfig) -> tuple:
    """What determines the data set a config trains on (equal keys: the same data)."""
    t = config.train
    return (t.dataset, t.image_size, t.grayscale, t.num_samples, t.seed)


def dataset_from_config(config: ExperimentConfig) -> Dataset:
    """core.data.get_dataset with the config's train.dataset, image_size, grayscale,
    num_samples and seed (DataError on a bad name or file)."""
    t = config.train
    return get_dataset(t.dataset, image_size=t.image_size, grayscale=t.grayscale,
                       num_samples=t.num_samples, seed=t.seed)


def diffusion_from_config(config: ExperimentConfig, data_kind: str) -> GaussianDiffusion:
    """The GaussianDiffusion of config.diffusion on its schedule; data_kind is the data
    set's kind ("image", or "vector" / "continuous")."""
    d = config.diffusion
    schedule = schedule_from_config(d)
    return GaussianDiffusion(schedule, mean_type=d.mean_type, var_type=d.variance_type,
                             loss_type=d.loss_type, lambda_vlb=d.lambda_vlb,
                             data_kind=DataKind.of_data(data_kind))


def schedule_from_config(d) -> NoiseSchedule:
    """The NoiseSchedule of a DiffusionConfig (its schedule's own settings included)."""
    return NoiseSchedule.from_name(d.schedule, d.timesteps, sigma_min=d.sigma_min,
                                   sigma_max=d.sigma_max)


def model_num_classes(config: ExperimentConfig, dataset: Dataset) -> int | None:
    """The model's number of classes: the data set's when training class-conditionally."""
    if not config.train.class_conditional:
        return None
    if dataset.train_labels is None or not dataset.num_classes:
        raise ConfigError("train.class_conditional", True,
                          f"the data set {dataset.name!r} has no class labels; set it to false")
    return int(dataset.num_classes)


def model_from_config(config: ExperimentConfig, data_shape: Sequence[int],
                      num_classes: int | None) -> nn.Module:
    """The network of config.model for data of data_shape, with the variance channels when
    config.diffusion learns Sigma_theta (core.models.build_model)."""
    return build_model(config.model, data_shape, num_classes,
                       learn_sigma=config.diffusion.learns_sigma)
