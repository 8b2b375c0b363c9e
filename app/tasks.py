"""The controller's background jobs as plain functions `task(progress, should_stop)`, run
by app.jobs.JobRunner off the GUI thread: load a data set, describe a model and estimate
its cost, open a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

from core.build import dataset_from_config, model_from_config, model_num_classes
from core.config import ConfigError, ExperimentConfig
from core.data import DRAWN_DATASET
from core.models import describe_model


def load_dataset_task(cfg: ExperimentConfig):
    """A job that loads the data set of `cfg` (core.build.dataset_from_config)."""
    return lambda _progress, _should_stop: dataset_from_config(cfg)


def cost_estimate(cfg: ExperimentConfig, data_shape, num_classes):
    """core.cost's estimate of `cfg` on the device it names (None if that device is not
    available here: the settings form reports that itself)."""
    import torch

    from core.cost import estimate
    from core.device import resolve_device

    try:
        device = resolve_device(cfg.train.device)
    except ConfigError:
        return None
    return estimate(cfg, data_shape, num_classes, device, threads=torch.get_num_threads())


@dataclass
class ModelDescription:
    """What the model job returns: the module rows (core.models.describe_model) and the
    cost estimate (core.cost.CostEstimate or None)."""

    rows: list
    cost: object


def describe_model_task(cfg: ExperimentConfig, dataset):
    """A job that builds the model of `cfg` for `dataset`, describes it layer by layer and
    estimates what training and sampling it cost on its device."""
    def task(_progress, _should_stop):
        classes = model_num_classes(cfg, dataset)
        model = model_from_config(cfg, dataset.shape, classes)
        rows = describe_model(model, dataset.shape)
        return ModelDescription(rows, cost_estimate(cfg, dataset.shape, classes))
    return task


def trainer_cost_task(trainer):
    """A job estimating the cost of sampling from `trainer`'s model (its config, data
    shape, classes and device). Reads only settings the trainer never changes."""
    cfg, shape, classes = trainer.config, trainer.data_shape, trainer.num_classes
    device = trainer.device

    def task(_progress, _should_stop):
        import torch

        from core.cost import estimate

        return estimate(cfg, shape, classes, device, threads=torch.get_num_threads())
    return task


def open_checkpoint_task(path: str, drawn_dataset):
    """A job that reads the checkpoint at `path` once and builds its trainer: on the drawn
    points when the file says it was trained on drawn points (an error if none are drawn),
    else on the data set its settings name."""
    def task(_progress, _should_stop):
        from core.checkpoint import CheckpointError, load_checkpoint, restore_trainer
        from core.training import Trainer

        checkpoint = load_checkpoint(path)
        dataset = None
        if checkpoint.config.train.dataset == DRAWN_DATASET:
            if drawn_dataset is None:
                raise CheckpointError(path, "was trained on drawn points, and none are drawn "
                                            "now: choose “Draw…” in the data-set list, paint "
                                            "them, then open it again")
            dataset = drawn_dataset
        trainer = Trainer(checkpoint.config, dataset=dataset)
        restore_trainer(trainer, checkpoint)
        return trainer
    return task
