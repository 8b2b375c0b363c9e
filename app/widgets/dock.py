"""The experiment dock's frame: settings that scroll above buttons that stay in view."""

from __future__ import annotations

from PySide6.QtWidgets import QDockWidget, QScrollArea, QVBoxLayout, QWidget


def scrolling_dock(title: str, object_name: str, content: QWidget, footer: QWidget,
                   parent: QWidget, side_name: str = "", min_width: int = 300) -> QDockWidget:
    """A movable, floatable (not closable) dock named object_name: `content` top-aligned
    in a frameless scroll area (on a widget named side_name), `footer` below it."""
    side = QWidget()
    side.setObjectName(side_name)
    layout = QVBoxLayout(side)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(0)
    layout.addWidget(content)
    layout.addStretch(1)
    scroll = QScrollArea()
    scroll.setWidget(side)
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QScrollArea.Shape.NoFrame)
    holder = QWidget()
    holder_layout = QVBoxLayout(holder)
    holder_layout.setContentsMargins(0, 0, 0, 0)
    holder_layout.addWidget(scroll, 1)
    holder_layout.addWidget(footer)
    dock = QDockWidget(title, parent)
    dock.setObjectName(object_name)
    dock.setWidget(holder)
    dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                     | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
    dock.setMinimumWidth(min_width)
    return dock
