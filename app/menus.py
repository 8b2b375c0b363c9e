"""The main window's menus: File (checkpoints, recent files, export), Run (Start, Pause, Stop,
Sample and Cancel with their shortcuts, which the buttons' tooltips name too), View (the
settings dock, the tabs) and Help (About: the version and the papers)."""

from __future__ import annotations

import functools
from importlib import metadata

from PySide6.QtCore import QEvent, QObject
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QAbstractButton, QMainWindow, QMessageBox

from app import APPLICATION
from app.widgets.recent_menu import RecentFiles
from app.widgets.shortcuts import (
    CANCEL_SAMPLE_KEYS,
    PAUSE_KEYS,
    SAMPLE_KEYS,
    START_KEYS,
    STOP_KEYS,
)

DISTRIBUTION = "diffusion-explorer"
PAPERS = (
    ("Sohl-Dickstein, Weiss, Maheswaranathan, Ganguli (2015)",
     "Deep Unsupervised Learning using Nonequilibrium Thermodynamics",
     "https://arxiv.org/abs/1503.03585"),
    ("Ho, Jain, Abbeel (2020)", "Denoising Diffusion Probabilistic Models",
     "https://arxiv.org/abs/2006.11239"),
    ("Song, Meng, Ermon (2021)", "Denoising Diffusion Implicit Models (DDIM)",
     "https://arxiv.org/abs/2010.02502"),
    ("Nichol, Dhariwal (2021)", "Improved Denoising Diffusion Probabilistic Models",
     "https://arxiv.org/abs/2102.09672"),
    ("Bao, Li, Zhu, Zhang (2022)", "Analytic-DPM: an Analytic Estimate of the Optimal Reverse "
     "Variance in Diffusion Probabilistic Models", "https://arxiv.org/abs/2201.06503"),
)


def app_version() -> str:
    """The installed version of the diffusion-explorer distribution."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def about_text() -> str:
    """The About box: what the app is, its version, and the papers it implements."""
    papers = "".join(f'<li>{authors}: <a href="{url}">{title}</a></li>'
                     for authors, title, url in PAPERS)
    return (f"<h3>{APPLICATION} {app_version()}</h3>"
            "<p>Train DDPM / improved-DDPM models and watch the schedule, the entropy bounds, "
            "the variational bound and the sampling trajectories live.</p>"
            f"<p>The papers it follows:</p><ul>{papers}</ul>")


class EnabledFollower(QObject):
    """Keeps an action enabled exactly when its button is."""

    def __init__(self, button: QAbstractButton, action: QAction):
        super().__init__(action)
        self.button, self.action = button, action
        action.setEnabled(button.isEnabled())
        button.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt override)
        if event.type() == QEvent.Type.EnabledChange:
            self.action.setEnabled(self.button.isEnabled())
        return False


def button_action(window: QMainWindow, text: str, button: QAbstractButton, keys: str) -> QAction:
    """A menu action with a shortcut that clicks `button` and is enabled when it is."""
    action = QAction(text, window)
    action.setShortcut(QKeySequence(keys))
    action.setToolTip(button.toolTip())
    action.triggered.connect(button.click)
    EnabledFollower(button, action)
    return action


def _action(window: QMainWindow, text: str, slot, shortcut=None) -> QAction:
    action = QAction(text, window)
    if shortcut is not None:
        action.setShortcut(shortcut)
    action.triggered.connect(slot)
    return action


def build_menus(window) -> None:
    """File, Run, View and Help of `window` (a MainWindow): sets window.action_save,
    action_load, recent_menu, recent_files, run_actions, file_menu and run_menu."""
    keys = QKeySequence.StandardKey
    menu = window.file_menu = window.menuBar().addMenu("&File")
    window.action_save = _action(window, "&Save checkpoint…", window._save_checkpoint_dialog,
                                 keys.Save)
    window.action_load = _action(window, "&Open checkpoint…", window._load_checkpoint_dialog,
                                 keys.Open)
    menu.addAction(window.action_load)
    window.recent_menu = menu.addMenu("Open &recent")
    window.recent_menu.setObjectName("recentMenu")
    window.recent_files = RecentFiles(window.recent_menu, window.settings, window.open_path)
    menu.addAction(window.action_save)
    menu.addSeparator()
    menu.addAction(_action(window, "Export current tab as &PNG…", functools.partial(
        window._export_dialog, "Export as PNG", "png", "PNG images (*.png)",
        window.export_current_png)))
    menu.addAction(_action(window, "Export current tab's curves as &CSV…", functools.partial(
        window._export_dialog, "Export curves as CSV", "csv", "CSV files (*.csv)",
        window.export_current_csv)))
    menu.addSeparator()
    menu.addAction(_action(window, "&Quit", window.close, keys.Quit))

    run = window.run_menu = window.menuBar().addMenu("&Run")
    controls, panel = window.controls, window.trajectory_panel
    window.run_actions = {
        "start": button_action(window, "&Start / continue training", controls.startButton,
                               START_KEYS),
        "pause": button_action(window, "&Pause / resume", controls.pauseButton, PAUSE_KEYS),
        "stop": button_action(window, "S&top after this step", controls.stopButton, STOP_KEYS),
        "sample": button_action(window, "S&ample", panel.sampleButton, SAMPLE_KEYS),
        "cancel": button_action(window, "&Cancel sampling", panel.cancelButton,
                                CANCEL_SAMPLE_KEYS),
    }
    for name, action in window.run_actions.items():
        if name == "sample":
            run.addSeparator()
        run.addAction(action)

    view = window.menuBar().addMenu("&View")
    view.addAction(window.experiment_dock.toggleViewAction())
    for index in range(window.tabs.count()):
        view.addAction(_action(window, window.tabs.tabText(index),
                               functools.partial(window.tabs.setCurrentIndex, index),
                               QKeySequence(f"Ctrl+{index + 1}")))
    window.menuBar().addMenu("&Help").addAction(
        _action(window, "&About", lambda: QMessageBox.about(window, APPLICATION, about_text())))
