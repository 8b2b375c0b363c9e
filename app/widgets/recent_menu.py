"""File > Open recent: the recent-files list of app.settings as a menu."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

from PySide6.QtCore import QSettings
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu

from app.settings import add_recent_file, recent_files


class RecentFiles:
    """Fills `menu` with one action per recent file (its name; the path as tooltip) that
    calls open_file(path); disabled while the list is empty."""

    def __init__(self, menu: QMenu, settings: QSettings, open_file: Callable[[str], None]):
        self.menu, self.settings, self.open_file = menu, settings, open_file
        self.refresh()

    def add(self, path: str) -> None:
        add_recent_file(self.settings, path)
        self.refresh()

    def refresh(self) -> None:
        self.menu.clear()
        files = recent_files(self.settings)
        for path in files:
            action = QAction(os.path.basename(path), self.menu)
            action.setToolTip(path)
            action.setStatusTip(path)
            action.triggered.connect(functools.partial(self.open_file, path))
            self.menu.addAction(action)
        self.menu.setEnabled(bool(files))
