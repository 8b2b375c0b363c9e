"""Saving and opening checkpoints: the part of the experiment controller
(app.controller.ExperimentController) that deals with checkpoint files."""

from __future__ import annotations

import copy
import functools
import os

from app.tasks import open_checkpoint_task
from core.build import dataset_key
from core.data import DRAWN_DATASET


def drawn_key(dataset) -> tuple:
    """The session's data-set key of drawn points: the data set object itself."""
    return (DRAWN_DATASET, id(dataset))


class CheckpointActions:
    """Mixed into ExperimentController: uses its session, jobs, training controller, drawn
    data set and signals (error, status, progress, show_config, errors_cleared,
    checkpoint_saved, checkpoint_loaded)."""

    def save_checkpoint(self, path: str) -> None:
        """Save the current trainer (between steps if a run is active)."""
        from core.checkpoint import save_checkpoint

        trainer = self.session.trainer
        if trainer is None:
            self.error.emit("There is nothing to save yet: train a model or open a checkpoint.")
            return
        if self.training.is_active():
            self.training.submit(f"save:{path}", lambda tr: save_checkpoint(path, tr),
                                 must_finish=True)
            return
        self.jobs.submit("save", lambda _p, _s: save_checkpoint(path, trainer),
                         lambda _r: self._on_checkpoint_saved(path, ""),
                         on_error=lambda message: self._on_checkpoint_saved(path, message),
                         action="Saving the checkpoint", must_finish=True)

    def _on_checkpoint_saved(self, path: str, message: str) -> None:
        if message:
            self.error.emit(message)
            return
        self.status.emit(f"Saved {path}", 8000)
        self.checkpoint_saved.emit(path)

    def load_checkpoint(self, path: str) -> None:
        """Load in the background (the file is read once; the drawn points are its data only
        when it says it was trained on drawn points); on success the settings, curves and
        weights are replaced, on failure the error is shown and nothing changes."""
        if self.training.is_active():
            self.error.emit("Stop training before opening a checkpoint.")
            return
        self.status.emit(f"Opening {path}…", 0)
        self.jobs.submit("checkpoint", open_checkpoint_task(path, self.drawn_dataset),
                         functools.partial(self._on_checkpoint_loaded, path),
                         on_error=self.error.emit, action=f"Opening {os.path.basename(path)}",
                         path=path)

    def _on_checkpoint_loaded(self, path: str, trainer) -> None:
        if self.training.is_active():
            self.error.emit("The checkpoint was read, but a run started meanwhile; open it "
                            "again after stopping.")
            return
        self.session.set_trajectory(None)
        self.show_config.emit(copy.deepcopy(trainer.config), None)
        dataset = getattr(trainer, "dataset", None)
        if dataset is not None:
            key = (dataset_key(trainer.config) if trainer.config.train.dataset != DRAWN_DATASET
                   else drawn_key(dataset))
            self.session.set_dataset(dataset, key)
        self.session.set_trainer(trainer)
        self.session.set_state("stopped")
        self.progress.emit(trainer.step, max(trainer.step, trainer.config.train.steps))
        self._emit_run_state()
        self.errors_cleared.emit()
        self.status.emit(f"Opened {path} at step {trainer.step:,}.", 10000)
        self.checkpoint_loaded.emit(path)
