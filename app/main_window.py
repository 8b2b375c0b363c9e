"""The main window: the experiment dock on the left, the panels in tabs, menus, status bar.

It wires user intent to the session and the controllers; panels never call each other.
Signals meant for tests (all emitted in the GUI thread): training_finished(status),
sampling_finished(status), checkpoint_loaded(path), checkpoint_saved(path),
error_shown(message), dataset_ready(name), model_described().
"""

from __future__ import annotations

import copy
import functools
import os
from dataclasses import replace

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app import APPLICATION
from app.analysis import compute_data_curves
from app.jobs import JobRunner
from app.panels.controls import TrainControls
from app.panels.entropy import EntropyPanel
from app.panels.experiment import DRAWN_DATASET, ExperimentPanel
from app.panels.forward import ForwardPanel
from app.panels.loss import LossPanel
from app.panels.model_tree import ModelPanel
from app.panels.schedule import SchedulePanel
from app.panels.trajectories import TrajectoryPanel
from app.panels.vlb import VlbPanel
from app.sampling import SamplingController
from app.session import Session, model_signature
from app.settings import add_recent_file, make_settings, recent_files
from app.training import TrainingController
from app.widgets.banner import MessageBanner
from app.widgets.plots import export_csv, export_png
from core.config import ConfigError, ExperimentConfig

DEFAULT_PRESET = "toy-2d"
CLOSE_WAIT_MS = -1  # wait for the current step: a thread destroyed while running aborts
DATA_DEBOUNCE_MS = 150
MODEL_DEBOUNCE_MS = 300
# training settings that may change between Stop and Start without a new model
CONTINUABLE_TRAIN_FIELDS = ("lr", "batch_size", "steps", "weight_decay", "warmup_steps",
                            "grad_clip", "log_every", "probe_every")


def data_key(cfg: ExperimentConfig) -> tuple:
    """What determines the data set a config trains on."""
    t = cfg.train
    return (t.dataset, t.image_size, t.grayscale, t.num_samples, t.seed)


def load_dataset_task(cfg: ExperimentConfig):
    """A job that loads the data set of `cfg` with core.data.get_dataset."""
    def task(_progress, _should_stop):
        from core.data import get_dataset

        t = cfg.train
        return get_dataset(t.dataset, image_size=t.image_size, grayscale=t.grayscale,
                           num_samples=t.num_samples, seed=t.seed)
    return task


def describe_model_task(cfg: ExperimentConfig, dataset):
    """A job that builds the model of `cfg` for `dataset` and describes it layer by layer."""
    def task(_progress, _should_stop):
        from core.models import build_model, describe_model
        from core.build import model_num_classes

        learned = cfg.diffusion.variance_type == "learned_range"
        model = build_model(cfg.model, dataset.shape, model_num_classes(cfg, dataset),
                            learn_sigma=learned)
        return describe_model(model, dataset.shape)
    return task


class MainWindow(QMainWindow):
    training_finished = Signal(str)
    sampling_finished = Signal(str)
    checkpoint_loaded = Signal(str)
    checkpoint_saved = Signal(str)
    error_shown = Signal(str)
    dataset_ready = Signal(str)
    model_described = Signal()

    def __init__(self, settings: QSettings | None = None, restore: bool = True):
        super().__init__()
        self.setObjectName("mainWindow")
        self.setWindowTitle(APPLICATION)
        self.settings = settings if settings is not None else make_settings()
        # Answer for "settings changed the model" (tests): "fresh" | "continue" | "cancel";
        # None asks with a dialog.
        self.model_change_policy: str | None = None
        self.drawn_dataset = None
        self._closing = False
        self._settings_saved = False
        self._pending_params: dict = {}
        self._snapshot_pending = False  # an EMA snapshot for sampling is queued in the run

        self.session = Session(self)
        self.jobs = JobRunner(self)
        self.training = TrainingController(self.session, self)
        self.sampling = SamplingController(self)
        self._build_panels()
        self._build_docks()
        self._build_menus()
        self._build_status_bar()
        self._connect()

        self._data_timer = self._single_shot(DATA_DEBOUNCE_MS, self._reload_data_if_needed)
        self._model_timer = self._single_shot(MODEL_DEBOUNCE_MS, self._describe_model)
        self._curves_timer = self._single_shot(DATA_DEBOUNCE_MS, self._compute_data_curves)
        self._memory_timer = QTimer(self)
        self._memory_timer.setInterval(1000)
        self._memory_timer.timeout.connect(self._update_device_status)
        self._memory_timer.start()

        self.resize(1280, 800)
        self._restore(restore)
        self._update_device_status()

    # ------------------------------------------------------------------ construction
    def _single_shot(self, ms: int, slot) -> QTimer:
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.setInterval(ms)
        timer.timeout.connect(slot)
        return timer

    def _build_panels(self) -> None:
        self.experiment = ExperimentPanel()
        self.controls = TrainControls()
        self.loss_panel = LossPanel(self.session)
        self.schedule_panel = SchedulePanel(self.session)
        self.entropy_panel = EntropyPanel(self.session)
        self.vlb_panel = VlbPanel(self.session)
        self.trajectory_panel = TrajectoryPanel(self.session)
        self.forward_panel = ForwardPanel(self.session)
        self.model_panel = ModelPanel(self.session)

        self.tabs = QTabWidget()
        self.tabs.setObjectName("panelTabs")
        self.tabs.setDocumentMode(True)
        for panel, title in ((self.loss_panel, "Loss"), (self.schedule_panel, "Schedule"),
                             (self.entropy_panel, "Entropy"), (self.vlb_panel, "VLB terms"),
                             (self.trajectory_panel, "Trajectories"),
                             (self.forward_panel, "Forward process"),
                             (self.model_panel, "Model")):
            self.tabs.addTab(panel, title)
        self.banner = MessageBanner()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.banner)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

    def _build_docks(self) -> None:
        side = QWidget()
        side.setObjectName("experimentSide")
        layout = QVBoxLayout(side)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.experiment)
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        holder = QWidget()
        holder_layout = QVBoxLayout(holder)
        holder_layout.setContentsMargins(0, 0, 0, 0)
        holder_layout.addWidget(scroll, 1)
        holder_layout.addWidget(self.controls)
        self.experiment_dock = QDockWidget("Experiment", self)
        self.experiment_dock.setObjectName("experimentDock")
        self.experiment_dock.setWidget(holder)
        self.experiment_dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.experiment_dock.setMinimumWidth(300)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.experiment_dock)

    def _build_menus(self) -> None:
        menu = self.menuBar().addMenu("&File")
        self.action_save = QAction("&Save checkpoint…", self)
        self.action_save.setShortcut(QKeySequence.StandardKey.Save)
        self.action_save.triggered.connect(self._save_checkpoint_dialog)
        self.action_load = QAction("&Open checkpoint…", self)
        self.action_load.setShortcut(QKeySequence.StandardKey.Open)
        self.action_load.triggered.connect(self._load_checkpoint_dialog)
        menu.addAction(self.action_load)
        self.recent_menu = menu.addMenu("Open &recent")
        self.recent_menu.setObjectName("recentMenu")
        menu.addAction(self.action_save)
        menu.addSeparator()
        export_png_action = QAction("Export current tab as &PNG…", self)
        export_png_action.triggered.connect(self._export_png_dialog)
        export_csv_action = QAction("Export current tab's curves as &CSV…", self)
        export_csv_action.triggered.connect(self._export_csv_dialog)
        menu.addAction(export_png_action)
        menu.addAction(export_csv_action)
        menu.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        menu.addAction(quit_action)

        view = self.menuBar().addMenu("&View")
        view.addAction(self.experiment_dock.toggleViewAction())
        for index in range(self.tabs.count()):
            action = QAction(self.tabs.tabText(index), self)
            action.setShortcut(QKeySequence(f"Ctrl+{index + 1}"))
            action.triggered.connect(functools.partial(self.tabs.setCurrentIndex, index))
            view.addAction(action)
        help_menu = self.menuBar().addMenu("&Help")
        about = QAction("&About", self)
        about.triggered.connect(self._about)
        help_menu.addAction(about)
        self._refresh_recent_menu()

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        bar.setObjectName("statusBar")
        self.deviceLabel = QLabel()
        self.deviceLabel.setObjectName("deviceLabel")
        self.memoryLabel = QLabel()
        self.memoryLabel.setObjectName("memoryLabel")
        bar.addPermanentWidget(self.memoryLabel)
        bar.addPermanentWidget(self.deviceLabel)

    def _connect(self) -> None:
        self.experiment.config_edited.connect(self._on_config_edited)
        self.experiment.preset_chosen.connect(self.apply_preset)
        self.experiment.dataset_action.connect(self._on_dataset_action)
        self.controls.start_clicked.connect(self.start_training)
        self.controls.pause_clicked.connect(self.toggle_pause)
        self.controls.stop_clicked.connect(self.stop_training)
        self.training.state_changed.connect(self._on_training_state)
        self.training.progress.connect(self._on_training_progress)
        self.training.finished.connect(self._on_training_finished)
        self.training.failed.connect(self.show_error)
        self.training.task_done.connect(self._on_training_task_done)
        self.sampling.busy_changed.connect(self.trajectory_panel.set_busy)
        self.sampling.progress.connect(self.trajectory_panel.set_progress)
        self.sampling.result.connect(self.session.set_trajectory)
        self.sampling.failed.connect(self.show_error)
        self.sampling.finished.connect(self._on_sampling_finished)
        self.trajectory_panel.sample_requested.connect(self.sample)
        self.trajectory_panel.cancel_requested.connect(self.cancel_sampling)
        self.trajectory_panel.error.connect(self.show_error)
        self.trajectory_panel.message.connect(self._status_message)
        self.jobs.failed.connect(self.show_error)
        self.session.schedule_changed.connect(lambda _s: self._curves_timer.start())

    # ------------------------------------------------------------------ settings
    def _restore(self, restore: bool) -> None:
        cfg, preset = None, None
        if restore:
            text = self.settings.value("experiment/config", "")
            if text:
                try:
                    cfg = ExperimentConfig.from_json(str(text)).validate()
                    preset = str(self.settings.value("experiment/preset", "")) or None
                except ConfigError:
                    cfg = None
            if cfg is not None and cfg.train.dataset == DRAWN_DATASET:
                cfg = None  # the drawn points are not kept between launches
            geometry = self.settings.value("window/geometry")
            if isinstance(geometry, QByteArray):
                self.restoreGeometry(geometry)
            state = self.settings.value("window/state")
            if isinstance(state, QByteArray):
                self.restoreState(state)
            tab = self.settings.value("window/tab", 0)
            try:
                self.tabs.setCurrentIndex(int(tab))
            except (TypeError, ValueError):
                pass
            sampling = self.settings.value("sampling/params", "")
            if sampling:
                import json

                try:
                    self.trajectory_panel.set_params(json.loads(str(sampling)))
                except ValueError:
                    pass
        if cfg is None:
            self.apply_preset(DEFAULT_PRESET if DEFAULT_PRESET in self.experiment.preset_names()
                              else None)
        else:
            self.experiment.set_config(cfg, preset=preset)

    def save_settings(self) -> None:
        import json

        cfg = self.session.config
        if cfg is not None:
            self.settings.setValue("experiment/config", cfg.to_json(indent=None))
            self.settings.setValue("experiment/preset", self.experiment.presetCombo.currentData() or "")
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.setValue("window/tab", self.tabs.currentIndex())
        self.settings.setValue("sampling/params", json.dumps(self.trajectory_panel.params()))
        self.settings.sync()

    def apply_preset(self, name: str | None) -> None:
        """Show preset `name` (core.presets) in the experiment panel; None: the defaults."""
        cfg = ExperimentConfig()
        if name:
            try:
                from core.presets import load_preset

                cfg = load_preset(name)
            except (ConfigError, ImportError, OSError) as exc:
                self.show_error(f"Preset {name!r} could not be loaded: {exc}")
                name = None
        self.experiment.set_config(cfg, preset=name)

    # ------------------------------------------------------------------ config and data
    @Slot(object)
    def _on_config_edited(self, cfg) -> None:
        if cfg is not None:
            self.session.set_config(cfg)
            self._data_timer.start()
            self._model_timer.start()
        self._update_start_enabled()

    def _update_start_enabled(self) -> None:
        valid = self.experiment.last_error is None
        self.controls.set_state(self._control_state(), can_start=valid)

    def _control_state(self) -> str:
        return self.training.state if self.training.is_active() else self.session.state

    def _reload_data_if_needed(self) -> None:
        cfg = self.session.config
        if cfg.train.dataset == DRAWN_DATASET:
            if self.drawn_dataset is not None and self.session.dataset is not self.drawn_dataset:
                self._on_dataset_loaded(self.drawn_dataset, (DRAWN_DATASET, id(self.drawn_dataset)))
            return
        key = data_key(cfg)
        if key == self.session.dataset_key or key == getattr(self, "_loading_key", None):
            return
        self._loading_key = key
        self.statusBar().showMessage(f"Loading data set {cfg.train.dataset}…")
        self.jobs.submit("dataset", load_dataset_task(copy.deepcopy(cfg)),
                         functools.partial(self._on_dataset_loaded, key=key),
                         on_error=self._on_dataset_error, action="Loading the data set")

    def _on_dataset_loaded(self, dataset, key) -> None:
        self._loading_key = None
        self.session.set_dataset(dataset, key)
        self.statusBar().showMessage(dataset.describe() if hasattr(dataset, "describe")
                                     else f"Data set {dataset.name} loaded", 8000)
        self._model_timer.start()
        self._curves_timer.start()
        self.dataset_ready.emit(dataset.name)

    def _on_dataset_error(self, message: str) -> None:
        self._loading_key = None
        self.show_error(message)

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
        dataset = self.session.dataset
        cfg = self.session.config
        if dataset is None or self.experiment.last_error is not None:
            return
        if self.session.dataset_key not in (data_key(cfg), (DRAWN_DATASET, id(dataset))):
            return  # the right data set is still loading; it triggers this again
        self.jobs.submit("model", describe_model_task(copy.deepcopy(cfg), dataset),
                         self._on_model_described, on_error=self._on_model_error,
                         action="Building the model",
                         serial=True)

    def _on_model_described(self, rows) -> None:
        self.session.set_model_rows(rows)
        self.model_described.emit()

    def _on_model_error(self, message: str) -> None:
        self.show_error(message)
        self.model_panel.summary.setText(message)

    @Slot(str)
    def _on_dataset_action(self, action: str) -> None:
        if action == "folder":
            path = QFileDialog.getExistingDirectory(self, "Open image folder")
            if path:
                self.experiment.add_dataset_path(path)
        elif action == "draw":
            from app.widgets.draw_dialog import DrawDialog

            dialog = DrawDialog(self)
            if dialog.exec() and len(dialog.points()) >= 2:
                self.set_drawn_points(dialog.points())

    def set_drawn_points(self, points) -> None:
        """Train on points the user drew: core.data.dataset_from_points builds the data set."""
        from core.data import dataset_from_points

        try:
            dataset = dataset_from_points(points, name=DRAWN_DATASET)
        except (ValueError, TypeError) as exc:
            self.show_error(f"The drawn points cannot be used: {exc}")
            return
        self.drawn_dataset = dataset
        self.session.dataset_key = None
        self.experiment.select_drawn_dataset(len(points))
        self._reload_data_if_needed()

    # ------------------------------------------------------------------ training
    def start_training(self) -> None:
        """Start a run, or continue the current trainer (asks if the settings changed it)."""
        if self.training.is_active():
            return
        cfg = self.experiment.validate()
        if cfg is None:
            self._update_start_enabled()
            return
        self.banner.clear()
        trainer = self.session.trainer
        if trainer is not None:
            same = (model_signature(trainer.config) == model_signature(cfg)
                    and self._same_device(trainer, cfg))
            answer = "continue" if same else self._ask_model_change()
            if answer == "cancel":
                return
            if answer == "continue":
                self._continue_training(trainer, cfg if same else None)
                return
        self._start_fresh(cfg)

    def _same_device(self, trainer, cfg) -> bool:
        from core.device import resolve_device

        try:
            return resolve_device(cfg.train.device) == trainer.device
        except ConfigError:
            return False

    def _ask_model_change(self) -> str:
        if self.model_change_policy is not None:
            return self.model_change_policy
        box = QMessageBox(QMessageBox.Icon.Question, "Settings changed",
                          "The settings now describe a different model, diffusion, data set "
                          "or device than the one trained so far.", parent=self)
        box.setInformativeText("Start a fresh run with the new settings (the current weights "
                               "are dropped; save a checkpoint first to keep them), or keep "
                               "training the current model with its own settings?")
        fresh = box.addButton("Start fresh", QMessageBox.ButtonRole.AcceptRole)
        keep = box.addButton("Keep training current", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        if box.clickedButton() is fresh:
            return "fresh"
        if box.clickedButton() is keep:
            return "continue"
        return "cancel"

    def _start_fresh(self, cfg: ExperimentConfig) -> None:
        from core.training import Trainer

        cfg = copy.deepcopy(cfg)
        dataset = None
        if cfg.train.dataset == DRAWN_DATASET:
            if self.drawn_dataset is None:
                self.show_error("There are no drawn points: choose “Draw…” in the data-set "
                                "list and paint some.")
                return
            dataset = self.drawn_dataset
        elif self.session.dataset_key == data_key(cfg):
            dataset = self.session.dataset
        self.session.set_trainer(None)
        self.session.set_trajectory(None)
        make = functools.partial(Trainer, cfg, dataset)
        self.statusBar().showMessage("Building the model and the data set…")
        self.training.start(make, cfg.train.steps, start_step=0)

    def _continue_training(self, trainer, cfg: ExperimentConfig | None) -> None:
        """Train `trainer` further; with cfg, first adopt its training settings."""
        if cfg is not None:
            train = trainer.config.train
            updates = {name: getattr(cfg.train, name) for name in CONTINUABLE_TRAIN_FIELDS
                       if name != "log_every"}
            trainer.config.train = replace(train, **updates)
            trainer.batch_size = cfg.train.batch_size
        target = trainer.config.train.steps
        steps = target - trainer.step if trainer.step < target else target
        self.statusBar().showMessage(f"Continuing from step {trainer.step:,}…")
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
        active = state in ("starting", "running", "paused")
        self.experiment.set_editable(not active)
        self.action_load.setEnabled(not active)
        self.controls.set_state(state, can_start=self.experiment.last_error is None)
        if state == "running":
            self.statusBar().showMessage("Training…")
        elif state == "paused":
            self.statusBar().showMessage("Paused: the run keeps its state; Resume continues it.")
        self._update_device_status()

    @Slot(int, int)
    def _on_training_progress(self, step: int, target: int) -> None:
        self.controls.set_progress(step, target)

    @Slot(str)
    def _on_training_finished(self, status: str) -> None:
        trainer = self.session.trainer
        step = getattr(trainer, "step", 0)
        messages = {"finished": f"Training finished at step {step:,}.",
                    "stopped": f"Stopped at step {step:,}; the weights are kept. Start "
                               "continues from them.",
                    "failed": f"Training failed at step {step:,} (see the message above)."}
        self.statusBar().showMessage(messages.get(status, status), 10000)
        self._update_start_enabled()
        self.training_finished.emit(status)

    # ------------------------------------------------------------------ sampling
    def sample(self, params: dict | None = None) -> None:
        """Sample with the EMA weights: a snapshot taken between training steps while a run
        is active, else directly."""
        params = params or self.trajectory_panel.params()
        trainer = self.session.trainer
        if self.sampling.is_active() or self._snapshot_pending:
            return
        if self.training.is_active():
            # also while the run is still starting: the worker serves the snapshot as soon
            # as its trainer exists
            self._pending_params = params
            self._snapshot_pending = True
            self.trajectory_panel.set_busy(True)
            self.training.submit("snapshot", lambda tr: tr.ema_snapshot())
            return
        if trainer is None:
            self.show_error("There is no model to sample from yet: press Start to train one, "
                            "or open a checkpoint.")
            return
        self._start_sampling(trainer, trainer.ema_snapshot(), params)

    def _start_sampling(self, trainer, model, params: dict) -> None:
        self.statusBar().showMessage("Sampling…")
        try:
            analytic = None
            if params.get("variance") == "analytic" and params.get("sampler") == "ddpm":
                from core.analytic_dpm import gamma_sample

                analytic = gamma_sample(trainer.dataset.train, seed=int(params.get("seed", 0)))
            self.sampling.start(model, trainer.diffusion, trainer.data_shape,
                                trainer.num_classes, trainer.device, params,
                                data_box=getattr(trainer, "data_box", None),
                                analytic_data=analytic)
        except Exception as exc:  # noqa: BLE001
            from app.errors import describe_error

            self.trajectory_panel.set_busy(False)
            self.show_error(describe_error(exc, "Sampling"))

    @Slot(str, object, str)
    def _on_training_task_done(self, tag: str, result, message: str) -> None:
        if tag == "snapshot":
            self._snapshot_pending = False
            if message:
                self.trajectory_panel.set_busy(False)
                self.show_error(message)
            elif self.session.trainer is not None:
                self._start_sampling(self.session.trainer, result,
                                     self._pending_params)
        elif tag.startswith("save:"):
            self._on_checkpoint_saved(tag[len("save:"):], message)

    def cancel_sampling(self) -> None:
        self.sampling.cancel()

    @Slot(str)
    def _on_sampling_finished(self, status: str) -> None:
        if status == "finished":
            trajectory = self.session.trajectory
            frames = len(trajectory.timesteps) if trajectory is not None else 0
            self.statusBar().showMessage(f"Sampled {frames} recorded steps.", 8000)
        elif status == "stopped":
            self.statusBar().showMessage("Sampling cancelled.", 5000)
        self.sampling_finished.emit(status)

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save checkpoint", "checkpoint.safetensors",
                                              "Checkpoints (*.safetensors);;All files (*)")
        if path:
            self.save_checkpoint(path)

    def save_checkpoint(self, path: str) -> None:
        """Save the current trainer (between steps if a run is active)."""
        from core.checkpoint import save_checkpoint

        trainer = self.session.trainer
        if trainer is None:
            self.show_error("There is nothing to save yet: train a model or open a checkpoint.")
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
            self.show_error(message)
            return
        self._add_recent(path)
        self.statusBar().showMessage(f"Saved {path}", 8000)
        self.checkpoint_saved.emit(path)

    def _load_checkpoint_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open checkpoint", "",
                                              "Checkpoints (*.safetensors);;All files (*)")
        if path:
            self.load_checkpoint(path)

    def load_checkpoint(self, path: str) -> None:
        """Load in the background; on success the settings, curves and weights are replaced,
        on failure an error is shown and nothing changes."""
        if self.training.is_active():
            self.show_error("Stop training before opening a checkpoint.")
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

        self.statusBar().showMessage(f"Opening {path}…")
        self.jobs.submit("checkpoint", task, functools.partial(self._on_checkpoint_loaded, path),
                         on_error=self.show_error, action=f"Opening {os.path.basename(path)}")

    def _on_checkpoint_loaded(self, path: str, trainer) -> None:
        if self.training.is_active():
            self.show_error("The checkpoint was read, but a run started meanwhile; open it "
                            "again after stopping.")
            return
        self.session.set_trajectory(None)
        self.experiment.set_config(copy.deepcopy(trainer.config), preset=None)
        dataset = getattr(trainer, "dataset", None)
        if dataset is not None:
            key = (data_key(trainer.config) if trainer.config.train.dataset != DRAWN_DATASET
                   else (DRAWN_DATASET, id(dataset)))
            self.session.set_dataset(dataset, key)
        self.session.set_trainer(trainer)
        self.session.set_state("stopped")
        self.controls.set_progress(trainer.step, max(trainer.step, trainer.config.train.steps))
        self.controls.set_state("stopped", can_start=self.experiment.last_error is None)
        self._add_recent(path)
        self.banner.clear()
        self.statusBar().showMessage(f"Opened {path} at step {trainer.step:,}.", 10000)
        self._update_device_status()
        self.checkpoint_loaded.emit(path)

    def _add_recent(self, path: str) -> None:
        add_recent_file(self.settings, path)
        self._refresh_recent_menu()

    def _refresh_recent_menu(self) -> None:
        self.recent_menu.clear()
        files = recent_files(self.settings)
        for path in files:
            action = QAction(os.path.basename(path), self)
            action.setToolTip(path)
            action.setStatusTip(path)
            action.triggered.connect(functools.partial(self.load_checkpoint, path))
            self.recent_menu.addAction(action)
        self.recent_menu.setEnabled(bool(files))

    # ------------------------------------------------------------------ export
    def current_plots(self):
        import pyqtgraph as pg

        return self.tabs.currentWidget().findChildren(pg.PlotWidget)

    def _export_png_dialog(self) -> None:
        name = self.tabs.tabText(self.tabs.currentIndex()).lower().replace(" ", "_")
        path, _ = QFileDialog.getSaveFileName(self, "Export as PNG", f"{name}.png",
                                              "PNG images (*.png)")
        if path:
            self.export_current_png(path)

    def export_current_png(self, path: str) -> None:
        try:
            export_png(self.tabs.currentWidget(), path)
        except OSError as exc:
            self.show_error(f"Export failed: {exc}")
            return
        self.statusBar().showMessage(f"Saved {path}", 6000)

    def _export_csv_dialog(self) -> None:
        name = self.tabs.tabText(self.tabs.currentIndex()).lower().replace(" ", "_")
        path, _ = QFileDialog.getSaveFileName(self, "Export curves as CSV", f"{name}.csv",
                                              "CSV files (*.csv)")
        if path:
            self.export_current_csv(path)

    def export_current_csv(self, path: str) -> int:
        plots = self.current_plots()
        if not plots:
            self.show_error("This tab has no curves to export; use PNG instead.")
            return 0
        try:
            rows = export_csv(plots, path)
        except OSError as exc:
            self.show_error(f"Export failed: {exc}")
            return 0
        self.statusBar().showMessage(f"Saved {rows:,} rows to {path}", 6000)
        return rows

    # ------------------------------------------------------------------ status and errors
    def show_error(self, message: str) -> None:
        """A readable, non-blocking message above the panels and in the status bar."""
        self.banner.show_message(message, "error")
        self.statusBar().showMessage(message.splitlines()[0][:200], 15000)
        self.error_shown.emit(message)

    def _status_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    def _update_device_status(self) -> None:
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
        name = device.type
        if device.type == "cuda":
            name = f"cuda ({torch.cuda.get_device_name(device)})"
            allocated = torch.cuda.memory_allocated(device) / 2**20
            reserved = torch.cuda.memory_reserved(device) / 2**20
            total = torch.cuda.get_device_properties(device).total_memory / 2**20
            self.memoryLabel.setText(f"GPU memory {allocated:,.0f} MiB used · "
                                     f"{reserved:,.0f} reserved / {total:,.0f} MiB")
        else:
            self.memoryLabel.setText("")
        self.deviceLabel.setText(f"Device: {name}")

    def _about(self) -> None:
        QMessageBox.about(self, APPLICATION,
                          "Diffusion Explorer: train DDPM / improved-DDPM models and watch the "
                          "schedule, the entropy bounds and the sampling trajectories live.")

    # ------------------------------------------------------------------ shutdown
    def shutdown(self, wait_ms: int = CLOSE_WAIT_MS) -> None:
        """Stop every worker and wait for its thread; nothing new starts afterwards."""
        for timer in (self._memory_timer, self._data_timer, self._model_timer,
                      self._curves_timer):
            timer.stop()
        self.jobs.stop_all(wait_ms)
        self.training.close(wait_ms)
        self.sampling.close(wait_ms)

    def closed_cleanly(self) -> bool:
        """The window closed, its settings were written and every worker thread has ended:
        nothing is left that a fast process exit (os._exit) could cut short."""
        return (self._closing and self._settings_saved and not self.jobs.any_thread_running()
                and not self.training.thread_running() and not self.sampling.thread_running())

    def closeEvent(self, event) -> None:  # noqa: N802
        if not self._closing:
            self._closing = True
            try:
                self.save_settings()
                self._settings_saved = True
            finally:
                self.shutdown()
        event.accept()
