"""The status bar's permanent fields: the device in use and, on CUDA, its memory."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QLabel, QStatusBar


class DeviceStatus(QObject):
    """Two labels at the right of `bar` (memory, device), refreshed every second and on
    `update()` from read() -> (device text, memory text)."""

    def __init__(self, bar: QStatusBar, read: Callable[[], tuple[str, str]],
                 interval_ms: int = 1000):
        super().__init__(bar)
        self.read = read
        self.device_label = QLabel()
        self.device_label.setObjectName("deviceLabel")
        self.memory_label = QLabel()
        self.memory_label.setObjectName("memoryLabel")
        bar.addPermanentWidget(self.memory_label)
        bar.addPermanentWidget(self.device_label)
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.update)
        self.timer.start()

    def update(self) -> None:
        device, memory = self.read()
        self.device_label.setText(device)
        self.memory_label.setText(memory)
