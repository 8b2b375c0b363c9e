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
from collections.abc import Callable
from dataclasses import replace

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from app import advice
from app.analysis import compute_data_curves
from app.checkpoints import CheckpointActions, drawn_key
from app.errors import describe_error
from app.jobs import JobRunner
from app.sampling import SamplingController, analytic_variance_chosen
from app.session import Session, model_signature
from app.tasks import (
    describe_model_task,
    load_dataset_task,
    trainer_cost_task,
)
from app.training import TrainingController, set_checkpointing
from app.widgets.status import device_texts
from app.workers import shut_down
from core.build import dataset_key
from core.config import ConfigError, ExperimentConfig
from core.data import DRAWN_DATASET

DATA_DEBOUNCE_MS = 150
MODEL_DEBOUNCE_MS = 300
# training settings that may change between Stop and Start without a new model
CONTINUABLE_TRAIN_FIELDS = ("lr", "batch_size", "steps", "weight_decay", "warmup_steps",
                            "grad_clip", "log_every", "probe_every", "micro_batch")
ACTIVE_STATES = ("starting", "running", "paused", "stopping")


class ExperimentController(CheckpointActions, QObject):
    """What the window's buttons and menus ask for, and what happens in return (saving and
    opening checkpoints: app.checkpoints.CheckpointActions).

    Signals: status(text, timeout_ms) for the status bar; error(message); warning(message)
    (a notice that blocks nothing: a run far too long for the device); errors_cleared();
    cost_warning(text) for the settings form ("" when the settings fit the device);
    run_state_changed(state, can_start) whenever the Start/Pause/Stop state may have changed;
    progress(step, target); sampling_busy(bool); show_config(cfg, preset) asks the settings
    form to show a config (a loaded checkpoint's); drawn_points_ready(count); and, for
    tests, training_finished(status), sampling_finished(status), checkpoint_loaded(path),
    checkpoint_saved(path), dataset_ready(name), model_described(), model_failed(message).
    """

    status = Signal(str, int)
    error = Signal(str)
    warning = Signal(str)
    cost_warning = Signal(str)
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
        self._snapshot_cancelled = False  # ... and Cancel was pressed meanwhile
        self.preset_names = _preset_names()
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
        self.session.trainer_changed.connect(self._estimate_sampling_cost)

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

    def set_drawn_points(self, points, spread: float = 0.0) -> bool:
        """Train on points the user drew (core.data.dataset_from_points: with a spread > 0
        a Gaussian per point, train.num_samples draws of it); False, with an error, when
        they cannot be used."""
        from core.data import dataset_from_points

        try:
            dataset = dataset_from_points(points, name=DRAWN_DATASET, spread=spread,
                                          num_samples=self.session.config.train.num_samples)
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

    def _on_model_described(self, description) -> None:
        self.session.set_model_rows(description.rows)
        self.session.set_cost(description.cost)
        self.cost_warning.emit(self.training_cost_warning())
        self.model_described.emit()

    def training_cost_warning(self) -> str:
        """The settings form's warning when the shown settings are far too big for their
        device ("" otherwise), from the estimate of the last model job (core.cost)."""
        return advice.settings_warning(self.session, self.preset_names)

    def _estimate_sampling_cost(self, trainer) -> None:
        self.session.set_sampling_cost(None)
        if all(hasattr(trainer, name) for name in ("config", "data_shape", "num_classes",
                                                   "device")):
            self.jobs.submit("sampling-cost", trainer_cost_task(trainer),
                             self.session.set_sampling_cost, on_error=lambda _message: None,
                             action="Estimating the sampling cost", serial=True)

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
            same = self._same_model(trainer, cfg)
            answer = "continue" if same else self.ask_model_change()
            if answer == "cancel":
                return
            if answer == "continue":
                self._continue_training(trainer, cfg if same else None)
                return
        self._start_fresh(cfg)

    @staticmethod
    def _same_model(trainer, cfg) -> bool:
        """The settings describe the trainer's model on the trainer's device."""
        from core.device import resolve_device

        if model_signature(trainer.config) != model_signature(cfg):
            return False
        try:
            return resolve_device(cfg.train.device) == trainer.device
        except ConfigError:
            return False

    def start_text(self) -> tuple[str, str]:
        """(button text, tooltip) saying what Start does now: a new run, continuing to the
        target, another full run of `steps` after a finished one, or a new model."""
        trainer, cfg = self.session.trainer, self.session.config
        if trainer is None or self.training.is_active():
            return "Start", "Train a new model with these settings"
        if not self._same_model(trainer, cfg):
            return "Start new…", ("These settings describe another model than the trained "
                                  "one: Start asks whether to train a new model")
        target = cfg.train.steps
        if trainer.step < target:
            return (f"Continue to {target:,}",
                    f"Train the current model on from step {trainer.step:,} to {target:,}")
        return (f"Train {target:,} more",
                f"The run reached {trainer.step:,} steps: Start trains {target:,} more (to "
                f"{trainer.step + target:,}); raise Train steps to stop at another step")

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
            set_checkpointing(trainer, cfg.model.checkpointing)
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
        """End the run after the current step (never cut short); the controls say
        "stopping after this step…" until it has ended."""
        if self.training.is_active():
            self.training.request_stop()
            self.status.emit("Stopping after the current step…", 0)

    def check_speed(self, seconds_per_step: float, steps: int) -> None:
        """The first steps of a run were timed: warn when the run would take far too long."""
        text = advice.measured_warning(self.session.trainer, seconds_per_step, steps,
                                       self.preset_names)
        if text:
            self.warning.emit(text)

    @Slot(str)
    def _on_training_state(self, state: str) -> None:
        if state == "running":
            self.status.emit("Training… (the first step can take a while on a CPU)", 0)
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
        self._warn_if_sampling_is_slow(params)
        if self.training.is_active():
            # also while the run is still starting: the worker serves the snapshot as soon
            # as its trainer exists
            self._pending_params = params
            self._snapshot_pending = True
            self._snapshot_cancelled = False
            self.sampling_busy.emit(True)
            self.training.submit("snapshot", lambda tr: tr.ema_snapshot())
            return
        if trainer is None:
            self.error.emit("There is no model to sample from yet: press Start to train one, "
                            "or open a checkpoint.")
            return
        self._start_sampling(trainer, trainer.ema_snapshot(), params)

    def _warn_if_sampling_is_slow(self, params: dict) -> None:
        text = advice.request_warning(self.session, params)
        if text:
            self.status.emit(text, 15000)

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
            if self._snapshot_cancelled:
                self.sampling_busy.emit(False)
                self._on_sampling_finished("stopped")
            elif message:
                self.sampling_busy.emit(False)
                self.error.emit(message)
            elif self.session.trainer is not None:
                self._start_sampling(self.session.trainer, result, self._pending_params)
        elif tag.startswith("save:"):
            self._on_checkpoint_saved(tag[len("save:"):], message)

    def cancel_sampling(self) -> None:
        """Cancel after the current sampling step (a step is never cut short)."""
        if self._snapshot_pending:
            self._snapshot_cancelled = True
        elif self.sampling.is_active():
            self.sampling.cancel()
            self.status.emit("Cancelling after the current sampling step…", 0)

    @Slot(str)
    def _on_sampling_finished(self, status: str) -> None:
        if status == "finished":
            trajectory = self.session.trajectory
            frames = len(trajectory.timesteps) if trajectory is not None else 0
            self.status.emit(f"Sampled {frames} recorded steps.", 8000)
        elif status == "stopped":
            self.status.emit("Sampling cancelled.", 5000)
        self.sampling_finished.emit(status)

    # ------------------------------------------------------------------ status and shutdown
    def device_status(self):
        """The status bar's texts (app.widgets.status.device_texts)."""
        return device_texts(self.session.trainer, self.session.config.train.device,
                            self.session.trajectory)

    def shutdown(self, wait_ms: int = -1) -> None:
        """Stop every worker; nothing new starts afterwards. A thread carrying a checkpoint
        save (being written, or queued behind a training step) is waited for without limit,
        so nothing is lost; the other threads get `wait_ms` in all (-1: no limit) to end
        after their current step, and any still in a long step then finishes on its own,
        detached from the window (app.workers.WorkerThread.detach)."""
        for timer in (self._data_timer, self._model_timer, self._curves_timer):
            timer.stop()
        shut_down(self.jobs.close() + self.training.close() + self.sampling.close(), wait_ms)

    def _threads(self) -> list:
        return self.jobs.threads() + self.training.threads() + self.sampling.threads()

    def saves_in_flight(self) -> bool:
        """A checkpoint save is being written or is queued (a fast exit would cut it off)."""
        return any(thread.must_finish() for thread in self._threads())

    def threads_ended(self) -> bool:
        """No worker thread (job, training, sampling) is still running."""
        return not any(thread.is_running() for thread in self._threads())


def _preset_names() -> list[str]:
    try:
        from core.presets import list_presets

        return list(list_presets())
    except (ImportError, OSError):
        return []
