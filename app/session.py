"""The session: the state every panel observes (napari-style model layer of the app).

Panels never call each other. They read the session and listen to its signals; user intent
goes to the main window, which changes the session. Everything here lives in the GUI thread.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.history import MetricHistory
from core.build import schedule_from_config
from core.config import ExperimentConfig
from core.schedule import NoiseSchedule

# Settings that change what a trained network means: changing any of them needs a new model.
MODEL_KEYS_TRAIN = ("dataset", "image_size", "grayscale", "num_samples", "class_conditional")
# Memory aids change a step's memory and speed, never the weights' meaning: a trained model
# continues with them switched on or off (train.micro_batch is not in MODEL_KEYS_TRAIN).
MEMORY_AID_KEYS_MODEL = ("checkpointing",)


def model_signature(config: ExperimentConfig) -> tuple:
    """What identifies a model: its architecture, the diffusion it was trained for, the data
    (not the memory aids)."""
    model = {key: value for key, value in asdict(config.model).items()
             if key not in MEMORY_AID_KEYS_MODEL}
    return (
        repr(model),
        repr(asdict(config.diffusion)),
        tuple(getattr(config.train, key) for key in MODEL_KEYS_TRAIN),
    )


class Session(QObject):
    """Current settings, data set, trainer, curves, probes and the last trajectory.

    Signals (all emitted in the GUI thread):
      config_changed(ExperimentConfig)  the panel's settings, validated (config_valid
                                        turns False while the shown ones are invalid)
      schedule_changed(NoiseSchedule)   the schedule of those settings (core.schedule)
      dataset_changed(Dataset | None)
      trainer_changed(Trainer | None)   a new run or a loaded checkpoint
      history_reset()                   curves were cleared (or replaced wholesale)
      metrics_appended(int)             rows were added to `history`
      probe_added(dict)                 one probe dict (numpy arrays), see Trainer.probe
      trajectory_changed(Trajectory)
      state_changed(str)                "idle" | "starting" | "running" | "paused" |
                                        "stopping" | "stopped" | "finished" | "failed"
      model_described(list)             rows of core.models.describe_model
      model_source_changed(list | None) what an opened model from elsewhere is
                                        (core.interop.describe_lines); None: none
      data_curves_changed(dict | None)  entropy curves of the data (app.analysis)
      cost_changed(CostEstimate | None) what the shown settings cost (core.cost)
      sampling_cost_changed(...)        what sampling from the trained model costs
    """

    config_changed = Signal(object)
    schedule_changed = Signal(object)
    dataset_changed = Signal(object)
    trainer_changed = Signal(object)
    history_reset = Signal()
    metrics_appended = Signal(int)
    probe_added = Signal(object)
    trajectory_changed = Signal(object)
    state_changed = Signal(str)
    model_described = Signal(object)
    model_source_changed = Signal(object)
    data_curves_changed = Signal(object)
    cost_changed = Signal(object)
    sampling_cost_changed = Signal(object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.config: ExperimentConfig = ExperimentConfig()
        self.config_valid = True  # False while the settings form shows invalid settings
        self.schedule: NoiseSchedule | None = None
        self.dataset: Any = None
        self.dataset_key: tuple | None = None
        self.trainer: Any = None
        self.history = MetricHistory()
        self.probes: list[dict] = []
        self.trajectory: Any = None
        self.state = "idle"
        self.model_rows: list = []
        self.model_source: list[str] | None = None  # lines describing an opened model
        self.data_curves: dict | None = None
        self.cost: Any = None            # core.cost.CostEstimate of the shown settings
        self.sampling_cost: Any = None   # ... of the trained model (for sampling)

    # -- settings --------------------------------------------------------------------
    def set_config(self, config: ExperimentConfig) -> None:
        """New validated settings; recomputes the schedule only if it changed."""
        old = self.config.diffusion if self.schedule is not None else None
        self.config = config
        self.config_valid = True
        new = config.diffusion
        key = ("schedule", "timesteps", "sigma_min", "sigma_max")
        if old is None or [getattr(old, k) for k in key] != [getattr(new, k) for k in key]:
            self.schedule = schedule_from_config(new)
            self.schedule_changed.emit(self.schedule)
        self.config_changed.emit(config)

    def set_config_invalid(self) -> None:
        """The settings being edited are invalid: `config` keeps the last valid ones, which
        no new run may use until the settings are valid again."""
        self.config_valid = False

    # -- data ------------------------------------------------------------------------
    def set_dataset(self, dataset: Any, key: tuple | None) -> None:
        self.dataset = dataset
        self.dataset_key = key
        self.dataset_changed.emit(dataset)

    # -- training run ----------------------------------------------------------------
    def set_trainer(self, trainer: Any, copy_history: bool = True) -> None:
        """A new trainer replaces the curves and probes with its own history (copied only
        when asked: never while a worker thread may be appending to it)."""
        self.trainer = trainer
        self.history.clear()
        self.probes = []
        if trainer is not None and copy_history:
            history = getattr(trainer, "history", None) or {}
            columns = {k: v for k, v in history.items() if len(v)}
            if columns:
                self.history.append(columns)
            self.probes = [dict(p) for p in (getattr(trainer, "probe_history", None) or [])]
        self.trainer_changed.emit(trainer)
        self.history_reset.emit()
        for probe in self.probes:
            self.probe_added.emit(probe)

    def append_metrics(self, columns: dict) -> None:
        added = self.history.append(columns)
        if added:
            self.metrics_appended.emit(added)

    def add_probe(self, probe: dict) -> None:
        self.probes.append(probe)
        self.probe_added.emit(probe)

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)

    # -- sampling / model ------------------------------------------------------------
    def set_trajectory(self, trajectory: Any) -> None:
        self.trajectory = trajectory
        self.trajectory_changed.emit(trajectory)

    def set_model_rows(self, rows: list) -> None:
        self.model_rows = list(rows)
        self.model_described.emit(self.model_rows)

    def set_model_source(self, lines: list[str] | None) -> None:
        """The current model was opened from elsewhere (app.open_model): its description,
        one line each; None: it was not (a run or checkpoint of this app)."""
        self.model_source = list(lines) if lines is not None else None
        self.model_source_changed.emit(self.model_source)

    def set_data_curves(self, curves: dict | None) -> None:
        self.data_curves = curves
        self.data_curves_changed.emit(curves)

    def set_cost(self, cost: Any) -> None:
        self.cost = cost
        self.cost_changed.emit(cost)

    def set_sampling_cost(self, cost: Any) -> None:
        self.sampling_cost = cost
        self.sampling_cost_changed.emit(cost)

    def data_kind(self) -> str | None:
        """The kind ("image" or "vector") of the trained model's data, else of the loaded
        data set; None when neither exists. Units of likelihoods follow it
        (core.options.nll_unit)."""
        for owner in (self.trainer, self):
            dataset = getattr(owner, "dataset", None)
            if dataset is not None:
                return dataset.kind
        return None

    @property
    def training_config(self) -> ExperimentConfig | None:
        """The config the current trainer trains with (None before the first run)."""
        return getattr(self.trainer, "config", None)

    def probes_fit_shown_schedule(self) -> bool:
        """The trainer's probes belong to the schedule on screen (same schedule and T), so
        panels may draw them over it."""
        trained = self.training_config
        key = ("schedule", "timesteps", "sigma_min", "sigma_max")
        return trained is not None and all(
            getattr(trained.diffusion, k) == getattr(self.config.diffusion, k) for k in key)
