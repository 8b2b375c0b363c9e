"""Fixtures for the fault-injection suite: an isolated settings file, pre-warmed torch, and a
main-window factory (the same set-up as tests/ui, which this folder cannot see)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from window_factory import open_windows

sys.path.insert(0, str(Path(__file__).resolve().parent))  # faults_helpers


@pytest.fixture(autouse=True, scope="session")
def _isolated_settings(tmp_path_factory):
    """Any QSettings the app might create falls back to a temporary INI file."""
    from PySide6.QtCore import QSettings

    from app.settings import SETTINGS_ENV

    folder = tmp_path_factory.mktemp("faults-qsettings")
    os.environ[SETTINGS_ENV] = str(folder / "diffusion-explorer.ini")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.SystemScope, str(folder))
    yield


@pytest.fixture
def make_window(qtbot, tmp_path):
    """Factory: a shown MainWindow (own settings file) whose data set has loaded."""
    from app.__main__ import prewarm_torch

    prewarm_torch()
    yield from open_windows(qtbot, lambda count: str(tmp_path / f"settings-{count}.ini"))


@pytest.fixture
def window(make_window):
    return make_window()
