"""A dismissable message strip above the plots: errors stay readable, never block."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton

# the style sheet (resources/style.qss) colours errors and infos; a warning is amber
WARNING_STYLE = ("QFrame#errorBanner { background: #fff4db; border-bottom: 1px solid #e8c46b; }"
                 " QLabel#errorText { color: #5c3d00; }")


class MessageBanner(QFrame):
    """Shows one message (error, warning or info) with a close button; hidden when empty."""

    dismissed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("errorBanner")
        self.label = QLabel(self)
        self.label.setObjectName("errorText")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setToolTip("The last error or notice; ✕ dismisses it")
        close = QToolButton(self)
        close.setObjectName("errorDismiss")
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.clear)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.kind = ""
        self.hide()

    def show_message(self, text: str, kind: str = "error") -> None:
        self.kind = kind
        self.setStyleSheet(WARNING_STYLE if kind == "warning" else "")
        self.setProperty("kind", kind)
        self.style().unpolish(self)
        self.style().polish(self)
        self.label.setText(text)
        self.show()

    def text(self) -> str:
        return self.label.text() if self.isVisible() or self.label.text() else ""

    def clear(self) -> None:
        self.label.setText("")
        self.kind = ""
        self.hide()
        self.dismissed.emit()
