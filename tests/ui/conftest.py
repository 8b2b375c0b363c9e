"""pytest-qt fixtures: a main window per test with its own settings file (never the user's),
and a tiny 2-D experiment that trains in about a second on one CPU thread."""

from __future__ import annotations

import os

import pytest
from window_factory import open_windows

from app.settings import SETTINGS_ENV


@pytest.fixture(autouse=True, scope="session")
def _isolated_settings(tmp_path_factory):
    """Any QSettings the app might create falls back to a temporary INI file."""
    from PySide6.QtCore import QSettings

    folder = tmp_path_factory.mktemp("qsettings")
    os.environ[SETTINGS_ENV] = str(folder / "diffusion-explorer.ini")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.SystemScope, str(folder))
    yield


@pytest.fixture(autouse=True, scope="session")
def _prewarmed_torch():
    from app.__main__ import prewarm_torch

    prewarm_torch()


@pytest.fixture
def settings_path(tmp_path):
    return str(tmp_path / "settings.ini")


@pytest.fixture
def make_window(qtbot, settings_path):
    """Factory: a shown MainWindow whose data set has loaded; closed after the test."""
    yield from open_windows(qtbot, lambda _count: settings_path)


@pytest.fixture
def window(make_window):
    return make_window()
