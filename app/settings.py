"""Where the app keeps its QSettings: the recent-files list, and what one launch leaves for
the next (the settings, the window's layout, the sampling settings).

`DIFFUSION_EXPLORER_SETTINGS=/path/file.ini` (or `make_settings(path)`) points the app at an
INI file instead of the user's settings; tests use it so they never touch the real ones.
"""

from __future__ import annotations

import json
import os

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import QMainWindow, QTabWidget

from app import APPLICATION, ORGANIZATION
from core.config import ConfigError, ExperimentConfig
from core.data import DRAWN_DATASET

SETTINGS_ENV = "DIFFUSION_EXPLORER_SETTINGS"
MAX_RECENT_FILES = 8


def make_settings(path: str | None = None) -> QSettings:
    """The app's settings: an INI file at `path` or $DIFFUSION_EXPLORER_SETTINGS, else the
    platform's user settings for (ORGANIZATION, APPLICATION)."""
    path = path or os.environ.get(SETTINGS_ENV)
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings(ORGANIZATION, APPLICATION)


def recent_files(settings: QSettings) -> list[str]:
    value = settings.value("recentFiles", [])
    if isinstance(value, str):  # QSettings returns a bare string for a one-element list
        value = [value]
    return [str(v) for v in (value or []) if v]


def add_recent_file(settings: QSettings, path: str) -> list[str]:
    """Put `path` first in the recent-files list (no duplicates, at most MAX_RECENT_FILES)."""
    path = os.path.abspath(path)
    files = [path] + [f for f in recent_files(settings) if f != path]
    files = files[:MAX_RECENT_FILES]
    settings.setValue("recentFiles", files)
    return files


def saved_experiment(settings: QSettings) -> tuple[ExperimentConfig | None, str | None]:
    """(config, preset) of the last session, or (None, None) when there is none, it no
    longer validates, or it trained on drawn points (those are not kept between launches)."""
    text = settings.value("experiment/config", "")
    if not text:
        return None, None
    try:
        cfg = ExperimentConfig.from_json(str(text)).validate()
    except ConfigError:
        return None, None
    if cfg.train.dataset == DRAWN_DATASET:
        return None, None
    return cfg, str(settings.value("experiment/preset", "")) or None


def saved_sampling_params(settings: QSettings) -> dict | None:
    """The Trajectories panel's last settings (its params() dict), if readable."""
    text = settings.value("sampling/params", "")
    try:
        return json.loads(str(text)) if text else None
    except ValueError:
        return None


def restore_layout(settings: QSettings, window: QMainWindow, tabs: QTabWidget) -> None:
    """The window's geometry, its docks and toolbars, and the chosen tab."""
    geometry = settings.value("window/geometry")
    if isinstance(geometry, QByteArray):
        window.restoreGeometry(geometry)
    state = settings.value("window/state")
    if isinstance(state, QByteArray):
        window.restoreState(state)
    try:
        tabs.setCurrentIndex(int(settings.value("window/tab", 0)))
    except (TypeError, ValueError):
        pass


def save_session(settings: QSettings, window: QMainWindow, tabs: QTabWidget,
                 cfg: ExperimentConfig, preset: str, sampling_params: dict) -> None:
    """Write what the next launch restores (see the functions above) to disk."""
    settings.setValue("experiment/config", cfg.to_json(indent=None))
    settings.setValue("experiment/preset", preset)
    settings.setValue("window/geometry", window.saveGeometry())
    settings.setValue("window/state", window.saveState())
    settings.setValue("window/tab", tabs.currentIndex())
    settings.setValue("sampling/params", json.dumps(sampling_params))
    settings.sync()
