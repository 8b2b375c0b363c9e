"""Where the app keeps its QSettings, and the recent-files list.

`DIFFUSION_EXPLORER_SETTINGS=/path/file.ini` (or `make_settings(path)`) points the app at an
INI file instead of the user's settings; tests use it so they never touch the real ones.
"""

from __future__ import annotations

import os

from PySide6.QtCore import QSettings

from app import APPLICATION, ORGANIZATION

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
