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
        self.device_label.setToolTip("Where training and sampling run")
        self.memory_label = QLabel()
        self.memory_label.setObjectName("memoryLabel")
        self.memory_label.setToolTip("GPU memory held by PyTorch: in use · reserved by its "
                                     "cache / the card's total")
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


def device_texts(trainer, device_setting: str) -> tuple[str, str]:
    """(device, memory) texts for the status bar: the trainer's device, else the one the
    settings name; GPU memory in use on CUDA, else ""."""
    import torch

    from core.config import ConfigError
    from core.device import resolve_device

    if trainer is not None:
        device = trainer.device
    else:
        try:
            device = resolve_device(device_setting)
        except ConfigError:
            device = torch.device("cpu")
    if device.type != "cuda":
        return f"Device: {device.type}", ""
    allocated = torch.cuda.memory_allocated(device) / 2**20
    reserved = torch.cuda.memory_reserved(device) / 2**20
    total = torch.cuda.get_device_properties(device).total_memory / 2**20
    return (f"Device: cuda ({torch.cuda.get_device_name(device)})",
            f"GPU memory {allocated:,.0f} MiB used · {reserved:,.0f} reserved / "
            f"{total:,.0f} MiB")
