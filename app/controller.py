"""The experiment, without a window: the session, the training and sampling controllers, the
background jobs (data set, entropy curves, model description, checkpoints), the drawn data
set, and the start / continue / pause / stop logic.

It owns no widget. It reports through signals (all emitted in the GUI thread) and asks the
one question that needs a person (the settings now describe another model: start fresh or
keep training?) through the `ask_model_change` hook the window provides.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Callable
from dataclasses import replace

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from app.analysis import compute_data_curves
from app.errors import describe_error
from app.jobs import JobRunner
from app.sampling import SamplingController, analytic_variance_chosen
from app.session import Session, model_signature
from app.training import TrainingController
from core.build import dataset_from_config, dataset_key, model_from_config, model_num_classes
from core.config import ConfigError, ExperimentConfig
from core.data import DRAWN_DATASET
from core.models import describe_model

DATA_DEBOUNCE_MS = 150
MODEL_DEBOUNCE_MS = 300
# training settings that may change between Stop and Start without a new model
CONTINUABLE_TRAIN_FIELDS = ("lr", "batch_size", "steps", "weight_decay", "warmup_steps",
                            "grad_clip", "log_every", "probe_every")
ACTIVE_STATES = ("starting", "running", "paused")


def load_dataset_task(cfg: ExperimentConfig):
    """A job that loads the data set of `cfg` (core.build.dataset_from_config)."""
    return lambda _progress, _should_stop: dataset_from_config(cfg)


def describe_model_task(cfg: ExperimentConfig, dataset):
    """A job that builds the model of `cfg` for `dataset` and describes it layer by layer."""
    def task(_progress, _should_stop):
        model = model_from_config(cfg, dataset.shape, model_num_classes(cfg, dataset))
        return describe_model(model, dataset.shape)
    return task


def drawn_key(dataset) -> tuple:
    """The session's data-set key of drawn points: the data set object itself."""
    return (DRAWN_DATASET, id(dataset))


class ExperimentController(QObject):
    """What the window's buttons and menus ask for, and what happens in return.

    Signals: status(text, timeout_ms) for the status bar; error(message); errors_cleared();
    run_state_changed(state, can_start) whenever the Start/Pause/Stop state may have changed;
    progress(step, target); sampling_busy(bool); show_config(cfg, preset) asks the settings
    form to show a config (a loaded checkpoint's); drawn_points_ready(count); and, for
    tests, training_finished(status), sampling_finished(status), checkpoint_loaded(path),
    checkpoint_saved(path), dataset_ready(name), model_described(), model_failed(message).
    """

    status = Signal(str, int)
    error = Signal(str)
    errors_cleared = Signal()
    run_state_changed = Signal(str, bool)
    progress = Signal(int, int)
    sampling_busy = Signal(bool)
    show_config = Signal(object, object)
    drawn_points_ready = Signal(int)
    training_finished = Signal(str)
    sampling_finished = Signal(str)
    checkpoint_loaded = Signal(str)
    checkpoint_saved = Signal(str)
    dataset_ready = Signal(str)
    model_described = Signal()
    model_failed = Signal(str)

    def __init__(self, parent: QObject | None = None,
                 ask_model_change: Callable[[], str] = lambda: "cancel"):
        super().__init__(parent)
        # "fresh" | "continue" | "cancel": what Start does when the settings describe a
        # model other than the trained one (the window asks a person)
        self.ask_model_change = ask_model_change
        self.drawn_dataset = None
        self._loading_key: tuple | None = None
        self._pending_params: dict = {}
        self._snapshot_pending = False  # an EMA snapshot for sampling is queued in the run
        self.session = Session(self)
        self.jobs = JobRunner(self)
        self.training = TrainingController(self.session, self)
        self.sampling = SamplingController(self)
        self._data_timer = self._single_shot(DATA_DEBOUNCE_MS, self.reload_data_if_needed)
        self._model_timer = self._single_shot(MODEL_DEBOUNCE_MS, self._describe_model)
        self._curves_timer = self._single_shot(DATA_DEBOUNCE_MS, self._compute_data_curves)

        self.training.state_changed.connect(self._on_training_state)
        self.training.progress.connect(self.progress)
        self.training.finished.connect(self._on_training_finished)
        self.training.failed.connect(self.error)
        self.training.task_done.connect(self._on_training_task_done)
        self.sampling.busy_changed.connect(self.sampling_busy)
        self.sampling.result.connect(self.session.set_trajectory)
        self.sampling.failed.connect(self.error)
        self.sampling.finished.connect(self._on_sampling_finished)
        self.jobs.failed.connect(self.error)
        self.session.schedule_changed.connect(lambda _s: self._curves_timer.start())

    def _single_shot(self, ms: int, slot) -> QTimer:
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.setInterval(ms)
        timer.timeout.connect(slot)
        return timer

    # ------------------------------------------------------------------ settings
    @Slot(object)
    def set_config(self, cfg: ExperimentConfig | None) -> None:
        """The settings form's config, validated; None: the shown settings are invalid
        (Start stays disabled until they are valid again)."""
        if cfg is None:
            self.session.set_config_invalid()
        else:
            self.session.set_config(cfg)
            self._data_timer.start()
            self._model_timer.start()
        self._emit_run_state()

    def preset_config(self, name: str | None) -> tuple[ExperimentConfig, str | None]:
        """(config, name) of preset `name` (core.presets); the defaults and None for no
        name or a preset that cannot be loaded (reported as an error)."""
        if name:
            try:
                from core.presets import load_preset

                return load_preset(name), name
            except (ConfigError, ImportError, OSError) as exc:
                self.error.emit(f"Preset {name!r} could not be loaded: {exc}")
        return ExperimentConfig(), None

    def _control_state(self) -> str:
        return self.training.state if self.training.is_active() else self.session.state

    def _emit_run_state(self) -> None:
        self.run_state_changed.emit(self._control_state(), self.session.config_valid)

    # ------------------------------------------------------------------ data
    def reload_data_if_needed(self) -> None:
        cfg = self.session.config
        if cfg.train.dataset == DRAWN_DATASET:
            if self.drawn_dataset is not None and self.session.dataset is not self.drawn_dataset:
                self._on_dataset_loaded(self.drawn_dataset, drawn_key(self.drawn_dataset))
            return
        key = dataset_key(cfg)
        if key == self.session.dataset_key or key == self._loading_key:
            return
        self._loading_key = key
        self.status.emit(f"Loading data set {cfg.train.dataset}…", 0)
        self.jobs.submit("dataset", load_dataset_task(copy.deepcopy(cfg)),
                         functools.partial(self._on_dataset_loaded, key=key),
                         on_error=self._on_dataset_error, action="Loading the data set")

    def _on_dataset_loaded(self, dataset, key) -> None:
        self._loading_key = None
        self.session.set_dataset(dataset, key)
        self.status.emit(dataset.describe() if hasattr(dataset, "describe")
                         else f"Data set {dataset.name} loaded", 8000)
        self._model_timer.start()
        self._curves_timer.start()
        self.dataset_ready.emit(dataset.name)

    def _on_dataset_error(self, message: str) -> None:
        self._loading_key = None
        self.error.emit(message)

    def set_drawn_points(self, points) -> bool:
        """Train on points the user drew (core.data.dataset_from_points); False, with an
        error, when they cannot be used."""
        from core.data import dataset_from_points

        try:
            dataset = dataset_from_points(points, name=DRAWN_DATASET)
        except (ValueError, TypeError) as exc:
            self.error.emit(f"The drawn points cannot be used: {exc}")
            return False
        self.drawn_dataset = dataset
        self.session.dataset_key = None
        self.drawn_points_ready.emit(len(points))
        self.reload_data_if_needed()
        return True

    def _compute_data_curves(self) -> None:
        dataset, schedule = self.session.dataset, self.session.schedule
        if dataset is None or schedule is None:
            self.session.set_data_curves(None)
            return
        seed = self.session.config.train.seed
        self.jobs.submit("curves",
                         lambda _p, stop: compute_data_curves(dataset, schedule, seed, stop),
                         self.session.set_data_curves, action="Computing the entropy curves",
                         serial=True)

    def _describe_model(self) -> None:
        dataset, cfg = self.session.dataset, self.session.config
        if dataset is None or not self.session.config_valid:
            return
        if self.session.dataset_key not in (dataset_key(cfg), drawn_key(dataset)):
            return  # the right data set is still loading; it triggers this again
        self.jobs.submit("model", describe_model_task(copy.deepcopy(cfg), dataset),
                         self._on_model_described, on_error=self._on_model_error,
                         action="Building the model", serial=True)

    def _on_model_described(self, rows) -> None:
        self.session.set_model_rows(rows)
        self.model_described.emit()

    def _on_model_error(self, message: str) -> None:
        self.error.emit(message)
        self.model_failed.emit(message)

    # ------------------------------------------------------------------ training
    def start_training(self) -> None:
        """Start a run with the session's validated settings, or continue the current
        trainer (asking through `ask_model_change` when the settings changed its model)."""
        if self.training.is_active():
            return
        if not self.session.config_valid:
            self._emit_run_state()
            return
        cfg = self.session.config
        self.errors_cleared.emit()
        trainer = self.session.trainer
        if trainer is not None:
            same = (model_signature(trainer.config) == model_signature(cfg)
                    and self._same_device(trainer, cfg))
            answer = "continue" if same else self.ask_model_change()
            if answer == "cancel":
                return
            if answer == "continue":
                self._continue_training(trainer, cfg if same else None)
                return
        self._start_fresh(cfg)

    @staticmethod
    def _same_device(trainer, cfg) -> bool:
        from core.device import resolve_device

        try:
            return resolve_device(cfg.train.device) == trainer.device
        except ConfigError:
            return False

    def _start_fresh(self, cfg: ExperimentConfig) -> None:
        from core.training import Trainer

        cfg = copy.deepcopy(cfg)
        dataset = None
        if cfg.train.dataset == DRAWN_DATASET:
            if self.drawn_dataset is None:
                self.error.emit("There are no drawn points: choose “Draw…” in the data-set "
                                "list and paint some.")
                return
            dataset = self.drawn_dataset
        elif self.session.dataset_key == dataset_key(cfg):
            dataset = self.session.dataset
        self.session.set_trainer(None)
        self.session.set_trajectory(None)
        make = functools.partial(Trainer, cfg, dataset)
        self.status.emit("Building the model and the data set…", 0)
        self.training.start(make, cfg.train.steps, start_step=0)

    def _continue_training(self, trainer, cfg: ExperimentConfig | None) -> None:
        """Train `trainer` further; with cfg, first adopt its training settings."""
        if cfg is not None:
            updates = {name: getattr(cfg.train, name) for name in CONTINUABLE_TRAIN_FIELDS
                       if name != "log_every"}
            trainer.config.train = replace(trainer.config.train, **updates)
            trainer.batch_size = cfg.train.batch_size
        target = trainer.config.train.steps
        steps = target - trainer.step if trainer.step < target else target
        self.status.emit(f"Continuing from step {trainer.step:,}…", 0)
        self.training.start(lambda: trainer, steps, start_step=trainer.step)

    def toggle_pause(self) -> None:
        if self.training.state == "paused":
            self.training.resume()
        else:
            self.training.pause()

    def stop_training(self) -> None:
        self.training.stop()

    @Slot(str)
    def _on_training_state(self, state: str) -> None:
        if state == "running":
            self.status.emit("Training…", 0)
        elif state == "paused":
            self.status.emit("Paused: the run keeps its state; Resume continues it.", 0)
        self.run_state_changed.emit(state, self.session.config_valid)

    @Slot(str)
    def _on_training_finished(self, status: str) -> None:
        step = getattr(self.session.trainer, "step", 0)
        messages = {"finished": f"Training finished at step {step:,}.",
                    "stopped": f"Stopped at step {step:,}; the weights are kept. Start "
                               "continues from them.",
                    "failed": f"Training failed at step {step:,} (see the message above)."}
        self.status.emit(messages.get(status, status), 10000)
        self._emit_run_state()
        self.training_finished.emit(status)

    # ------------------------------------------------------------------ sampling
    def sample(self, params: dict) -> None:
        """Sample with the EMA weights: a snapshot taken between training steps while a run
        is active, else directly."""
        trainer = self.session.trainer
        if self.sampling.is_active() or self._snapshot_pending:
            return
        if self.training.is_active():
            # also while the run is still starting: the worker serves the snapshot as soon
            # as its trainer exists
            self._pending_params = params
            self._snapshot_pending = True
            self.sampling_busy.emit(True)
            self.training.submit("snapshot", lambda tr: tr.ema_snapshot())
            return
        if trainer is None:
            self.error.emit("There is no model to sample from yet: press Start to train one, "
                            "or open a checkpoint.")
            return
        self._start_sampling(trainer, trainer.ema_snapshot(), params)

    def _start_sampling(self, trainer, model, params: dict) -> None:
        self.status.emit("Sampling…", 0)
        try:
            analytic = None
            if analytic_variance_chosen(params):
                from core.analytic_dpm import gamma_sample

                analytic = gamma_sample(trainer.dataset.train, seed=int(params.get("seed", 0)))
            self.sampling.start(model, trainer.diffusion, trainer.data_shape,
                                trainer.num_classes, trainer.device, params,
                                data_box=getattr(trainer, "data_box", None),
                                analytic_data=analytic)
        except Exception as exc:  # noqa: BLE001
            self.sampling_busy.emit(False)
            self.error.emit(describe_error(exc, "Sampling"))

    @Slot(str, object, str)
    def _on_training_task_done(self, tag: str, result, message: str) -> None:
        if tag == "snapshot":
            self._snapshot_pending = False
            if message:
                self.sampling_busy.emit(False)
                self.error.emit(message)
            elif self.session.trainer is not None:
                self._start_sampling(self.session.trainer, result, self._pending_params)
        elif tag.startswith("save:"):
            self._on_checkpoint_saved(tag[len("save:"):], message)

    def cancel_sampling(self) -> None:
        self.sampling.cancel()

    @Slot(str)
    def _on_sampling_finished(self, status: str) -> None:
        if status == "finished":
            trajectory = self.session.trajectory
            frames = len(trajectory.timesteps) if trajectory is not None else 0
            self.status.emit(f"Sampled {frames} recorded steps.", 8000)
        elif status == "stopped":
            self.status.emit("Sampling cancelled.", 5000)
        self.sampling_finished.emit(status)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: str) -> None:
        """Save the current trainer (between steps if a run is active)."""
        from core.checkpoint import save_checkpoint

        trainer = self.session.trainer
        if trainer is None:
            self.error.emit("There is nothing to save yet: train a model or open a checkpoint.")
            return
        if self.training.is_active():
            self.training.submit(f"save:{path}", lambda tr: save_checkpoint(path, tr))
            return
        self.jobs.submit("save", lambda _p, _s: save_checkpoint(path, trainer),
                         lambda _r: self._on_checkpoint_saved(path, ""),
                         on_error=lambda message: self._on_checkpoint_saved(path, message),
                         action="Saving the checkpoint")

    def _on_checkpoint_saved(self, path: str, message: str) -> None:
        if message:
            self.error.emit(message)
            return
        self.status.emit(f"Saved {path}", 8000)
        self.checkpoint_saved.emit(path)

    def load_checkpoint(self, path: str) -> None:
        """Load in the background; on success the settings, curves and weights are replaced,
        on failure an error is shown and nothing changes."""
        if self.training.is_active():
            self.error.emit("Stop training before opening a checkpoint.")
            return
        from core.checkpoint import trainer_from_checkpoint

        drawn = self.drawn_dataset

        def task(_progress, _should_stop):
            try:
                return trainer_from_checkpoint(path)
            except Exception:
                if drawn is None:
                    raise
                return trainer_from_checkpoint(path, dataset=drawn)

        self.status.emit(f"Opening {path}…", 0)
        self.jobs.submit("checkpoint", task, functools.partial(self._on_checkpoint_loaded, path),
                         on_error=self.error.emit, action=f"Opening {os.path.basename(path)}")

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

    # ------------------------------------------------------------------ status and shutdown
    def device_status(self) -> tuple[str, str]:
        """(device, memory) texts for the status bar: the trainer's device, else the one
        the settings name; GPU memory in use on CUDA, else ""."""
        import torch

        trainer = self.session.trainer
        if trainer is not None:
            device = trainer.device
        else:
            from core.device import resolve_device

            try:
                device = resolve_device(self.session.config.train.device)
            except ConfigError:
                device = torch.device("cpu")
        if device.type != "cuda":
            return f"Device: {device.type}", ""
        allocated = torch.cuda.memory_allocated(device) / 2**20
        reserved = torch.cuda.memory_reserved(device) / 2**20
        total = torch.cuda.get_device_properties(device).total_memory / 2**20
        return (f"Device: cuda ({torch.cuda.get_device_name(device)})",
                f"GPU memory {allocated:,.0f} MiB used · {reserved:,.0f} reserved / "
                f"{total:,.0f} MiB")

    def shutdown(self, wait_ms: int = -1) -> None:
        """Stop every worker and wait for its thread; nothing new starts afterwards."""
        for timer in (self._data_timer, self._model_timer, self._curves_timer):
            timer.stop()
        self.jobs.stop_all(wait_ms)
        self.training.close(wait_ms)
        self.sampling.close(wait_ms)

    def threads_ended(self) -> bool:
        """No worker thread (job, training, sampling) is still running."""
        return (not self.jobs.any_thread_running() and not self.training.thread_running()
                and not self.sampling.thread_running())
