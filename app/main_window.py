"""The main window: the experiment dock on the left, the panels in tabs, menus, status bar,
wired to the experiment controller (app.controller), which owns the session, the runs and
the jobs. The window keeps what needs a person: the dialogs. Panels never call each other.
Signals for tests (all emitted in the GUI thread): training_finished(status),
sampling_finished(status), checkpoint_loaded(path), checkpoint_saved(path),
error_shown(message), dataset_ready(name), model_described().
"""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt, Signal, Slot
from PySide6.QtWidgets import QAbstractButton, QMainWindow, QTabWidget, QVBoxLayout, QWidget

from app import APPLICATION
from app.controller import ACTIVE_STATES, ExperimentController
from app.lab_tab import add_samplers_tab
from app.menus import build_menus
from app.open_model_menu import add_open_model
from app.panels.controls import TrainControls
from app.panels.entropy import EntropyPanel
from app.panels.experiment import ExperimentPanel
from app.panels.forward import ForwardPanel
from app.panels.loss import LossPanel
from app.panels.model_tree import ModelPanel
from app.panels.schedule import SchedulePanel
from app.panels.trajectories import TrajectoryPanel
from app.panels.vlb import VlbPanel
from app.score_tab import add_score_tab
from app.settings import (
    make_settings,
    restore_layout,
    save_session,
    saved_experiment,
    saved_sampling_params,
)
from app.widgets import dialogs
from app.widgets.banner import MessageBanner
from app.widgets.dock import scrolling_dock
from app.widgets.plots import export_csv, export_png
from app.widgets.status import DeviceStatus
from app.workers import gui_garbage_collector

DEFAULT_PRESET = "toy-2d"
# Closing waits this long for the workers to end after their current step; a thread still in
# a long step then ends on its own, detached (a checkpoint save is always waited for).
CLOSE_WAIT_MS = 1000
TAB_TIPS = {
    "Loss": "Training curves: the loss, its parts and the gradient norm, per step",
    "Schedule": "The noise schedule βₜ, β̃ₜ, ᾱₜ and the SNR, with the learned variance",
    "Entropy": "Entropy of the reverse step between its bounds, and the entropy of xₜ",
    "VLB terms": "The variational bound's terms Lₜ per timestep, from the training probes",
    "Trajectories": "Sample from the model and scrub through the reverse process",
    "Forward process": "Data noised by q(xₜ | x₀) at the timestep on the slider",
    "Model": "The network's modules with their parameter counts and output shapes",
}
# the controller's signals the window re-emits as its own (tests wait on them)
RELAYED_SIGNALS = ("training_finished", "sampling_finished", "checkpoint_loaded",
                   "checkpoint_saved", "dataset_ready", "model_described")


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
        self._collector = gui_garbage_collector()   # garbage is collected in this thread only
        if self._collector is not None:
            self._collector.acquire()
        self.setObjectName("mainWindow")
        self.setWindowTitle(APPLICATION)
        self.settings = settings if settings is not None else make_settings()
        # Answer for "settings changed the model" (tests): "fresh" | "continue" | "cancel";
        # None asks with a dialog.
        self.model_change_policy: str | None = None
        self._closing = False
        self._settings_saved = False

        self.controller = ExperimentController(self, ask_model_change=self._ask_model_change)
        self.session = self.controller.session
        self.jobs = self.controller.jobs
        self.training = self.controller.training
        self.sampling = self.controller.sampling
        self._build_panels()
        self._build_docks()
        self._build_menus()
        self._build_status_bar()
        self._connect()
        self.model_files = add_open_model(self)     # File → Open model…, Fine-tune, export
        self.resize(1280, 800)
        self._restore(restore)
        self.device_status.update()

    # ------------------------------------------------------------------ construction
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
            self.tabs.setTabToolTip(self.tabs.count() - 1, TAB_TIPS[title])
        self.score_panel = add_score_tab(self)
        self.samplers_panel = add_samplers_tab(self)
        self.banner = MessageBanner()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.banner)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

    def _build_docks(self) -> None:
        self.experiment_dock = scrolling_dock("Experiment", "experimentDock", self.experiment,
                                              self.controls, self, side_name="experimentSide")
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.experiment_dock)
        for button in self.experiment_dock.findChildren(QAbstractButton):
            if button.objectName() == "qt_dockwidget_floatbutton":
                button.setToolTip("Float the settings in their own window (double-click its "
                                  "title to dock it again)")

    def _build_menus(self) -> None:
        build_menus(self)

    def _build_status_bar(self) -> None:
        self.statusBar().setObjectName("statusBar")
        self.device_status = DeviceStatus(self.statusBar(), self.controller.device_status)
        self.deviceLabel = self.device_status.device_label
        self.memoryLabel = self.device_status.memory_label

    def _connect(self) -> None:
        control = self.controller
        self.experiment.config_edited.connect(control.set_config)
        self.experiment.preset_chosen.connect(self.apply_preset)
        self.experiment.dataset_action.connect(self._on_dataset_action)
        self.controls.start_clicked.connect(self.start_training)
        self.controls.pause_clicked.connect(self.toggle_pause)
        self.controls.stop_clicked.connect(self.stop_training)
        self.controls.speed_measured.connect(control.check_speed)
        self.trajectory_panel.sample_requested.connect(self.sample)
        self.trajectory_panel.cancel_requested.connect(self.cancel_sampling)
        self.trajectory_panel.error.connect(self.show_error)
        self.trajectory_panel.message.connect(self._status_message)
        control.status.connect(self.statusBar().showMessage)
        control.error.connect(self.show_error)
        control.warning.connect(self.show_warning)
        control.cost_warning.connect(self.experiment.set_cost_warning)
        control.errors_cleared.connect(self.banner.clear)
        control.run_state_changed.connect(self._on_run_state)
        control.progress.connect(self.controls.set_progress)
        control.sampling_busy.connect(self.trajectory_panel.set_busy)
        control.sampling.progress.connect(self.trajectory_panel.set_progress)
        control.show_config.connect(self.experiment.set_config)
        control.drawn_points_ready.connect(self.experiment.select_drawn_dataset)
        control.model_failed.connect(self.model_panel.summary.setText)
        control.checkpoint_saved.connect(self.recent_files.add)
        control.checkpoint_loaded.connect(self.recent_files.add)
        for name in RELAYED_SIGNALS:
            getattr(control, name).connect(getattr(self, name))

    # ------------------------------------------------------------------ settings
    def _restore(self, restore: bool) -> None:
        cfg, preset = saved_experiment(self.settings) if restore else (None, None)
        if restore:
            restore_layout(self.settings, self, self.tabs)
            params = saved_sampling_params(self.settings)
            if params is not None:
                self.trajectory_panel.set_params(params)
        if cfg is None:
            self.apply_preset(DEFAULT_PRESET if DEFAULT_PRESET in self.experiment.preset_names()
                              else None)
        else:
            self.experiment.set_config(cfg, preset=preset)

    def save_settings(self) -> None:
        save_session(self.settings, self, self.tabs, self.session.config,
                     self.experiment.presetCombo.currentData() or "",
                     self.trajectory_panel.params())

    def apply_preset(self, name: str | None) -> None:
        """Show preset `name` (core.presets) in the experiment panel; None: the defaults."""
        self.experiment.set_config(*self.controller.preset_config(name))

    # ------------------------------------------------------------------ user intent
    def start_training(self) -> None:
        """Start a run, or continue the current trainer (asks if the settings changed it)."""
        self.controller.start_training()

    def toggle_pause(self) -> None:
        self.controller.toggle_pause()

    def stop_training(self) -> None:
        self.controller.stop_training()

    def sample(self, params: dict | None = None) -> None:
        """Sample with the EMA weights and the Trajectories panel's settings (or params)."""
        self.controller.sample(params or self.trajectory_panel.params())

    def cancel_sampling(self) -> None:
        self.controller.cancel_sampling()

    def save_checkpoint(self, path: str) -> None:
        self.controller.save_checkpoint(path)

    def load_checkpoint(self, path: str) -> None:
        self.controller.load_checkpoint(path)

    def open_path(self, path: str) -> None:
        """Open a checkpoint of ours or a model from elsewhere (File → Open recent)."""
        self.model_files.opener.open_path(path)

    def set_drawn_points(self, points, spread: float = 0.0) -> None:
        """Train on points the user drew, with a spread (a Gaussian per point) or none
        (selects them in the data-set list)."""
        self.controller.set_drawn_points(points, spread)

    @property
    def drawn_dataset(self):
        return self.controller.drawn_dataset

    @Slot(str, bool)
    def _on_run_state(self, state: str, can_start: bool) -> None:
        active = state in ACTIVE_STATES
        self.experiment.set_editable(not active)
        self.action_load.setEnabled(not active)
        self.controls.set_state(state, can_start=can_start)
        self.controls.set_start_text(*self.controller.start_text())
        self.device_status.update()

    # ------------------------------------------------------------------ dialogs
    @Slot(str)
    def _on_dataset_action(self, action: str) -> None:
        if action == "folder":
            path = dialogs.image_folder(self)
            if path:
                self.experiment.add_dataset_path(path)
        elif action == "draw":
            drawing = dialogs.drawn_points(self)
            if drawing is not None:
                self.set_drawn_points(*drawing)

    def _ask_model_change(self) -> str:
        if self.model_change_policy is not None:
            return self.model_change_policy
        return dialogs.ask_model_change(self)

    def _save_checkpoint_dialog(self) -> None:
        path = dialogs.checkpoint_path(self, save=True)
        if path:
            self.save_checkpoint(path)

    def _load_checkpoint_dialog(self) -> None:
        path = dialogs.checkpoint_path(self, save=False)
        if path:
            self.load_checkpoint(path)

    # ------------------------------------------------------------------ export
    def current_plots(self):
        import pyqtgraph as pg

        return self.tabs.currentWidget().findChildren(pg.PlotWidget)

    def _export_dialog(self, title: str, suffix: str, files: str, export) -> None:
        name = self.tabs.tabText(self.tabs.currentIndex()).lower().replace(" ", "_")
        path = dialogs.export_path(self, title, f"{name}.{suffix}", files)
        if path:
            export(path)

    def export_current_png(self, path: str) -> None:
        try:
            export_png(self.tabs.currentWidget(), path)
        except OSError as exc:
            self.show_error(f"Export failed: {exc}")
            return
        self.statusBar().showMessage(f"Saved {path}", 6000)

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

    def show_warning(self, message: str) -> None:
        """A notice above the panels that blocks nothing (e.g. a run far too long)."""
        self.banner.show_message(message, "warning")
        self.statusBar().showMessage(message.splitlines()[0][:200], 15000)

    def _status_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self, wait_ms: int = CLOSE_WAIT_MS) -> None:
        """Stop every worker (app.controller.ExperimentController.shutdown): a checkpoint
        save is finished, other threads get wait_ms to end; nothing new starts afterwards."""
        self.device_status.timer.stop()
        self.controller.shutdown(wait_ms)

    def closed_cleanly(self) -> bool:
        """The window closed, its settings were written and no checkpoint save is in
        flight: nothing is left that a fast process exit (os._exit) could cut short. A
        training, sampling or analysis thread still in a long step holds nothing a user
        would lose."""
        return self._closing and self._settings_saved and not self.controller.saves_in_flight()

    def closeEvent(self, event) -> None:  # noqa: N802
        if not self._closing:
            self._closing = True
            try:
                self.save_settings()
                self._settings_saved = True
            finally:
                self.shutdown()
                if self._collector is not None:
                    self._collector.release()
        event.accept()
