"""The application's style sheet (resources/style.qss)."""

from __future__ import annotations

from importlib import resources

from PySide6.QtWidgets import QApplication


def style_sheet() -> str:
    try:
        return (resources.files("resources") / "style.qss").read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError, OSError):
        return ""


def apply_style(app: QApplication) -> None:
    app.setStyleSheet(style_sheet())
