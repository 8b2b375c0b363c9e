"""Train on from an opened model's weights (the app's "Fine-tune"): a Trainer for a data set
of the model's shape whose network and EMA copy start from the opened weights."""

from __future__ import annotations

from core.interop.errors import InteropError
from core.interop.opened import OpenedModel


def fine_tune_trainer(opened: OpenedModel, dataset: str, device=None, **train):
    """A core.training.Trainer on `dataset` (a data-set name or path) starting from
    opened.model's weights, with opened.fine_tune_config(dataset) and the train.* fields in
    `train` (e.g. steps=1000, lr=1e-4). ConfigError for settings the explorer cannot train
    (naming the field); InteropError when the data do not fit the model (their shape or
    number of classes)."""
    from core.build import dataset_from_config
    from core.training import Trainer

    config = opened.fine_tune_config(dataset)
    for key, value in train.items():
        setattr(config.train, key, value)
    config.validate()
    data = dataset_from_config(config)
    if tuple(data.shape) != tuple(opened.data_shape):
        raise InteropError(dataset, f"its items have shape {tuple(data.shape)}, the model "
                                    f"{opened.title} takes {tuple(opened.data_shape)}")
    classes = data.num_classes if config.train.class_conditional else None
    if classes != opened.num_classes:
        raise InteropError(dataset, f"has {classes} classes, the model {opened.title} "
                                    f"{opened.num_classes}")
    trainer = Trainer(config, dataset=data, device=device)
    state = opened.model.state_dict()
    trainer.model.load_state_dict(state)
    trainer.ema_model.load_state_dict(state)
    return trainer
