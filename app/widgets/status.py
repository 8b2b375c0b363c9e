"""The status bar's permanent fields: which code path ran training and sampling (and why a
faster one was not used), the device in use and, on CUDA, its memory now and at its peak."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QLabel, QStatusBar


@dataclass
class StatusTexts:
    """device: "Device: cpu"; memory: the CUDA figure ("" elsewhere); path: which code ran
    the steps (short); path_details: the same with the reasons of any fallback."""

    device: str
    memory: str = ""
    path: str = ""
    path_details: str = ""


class DeviceStatus(QObject):
    """Three labels at the right of `bar` (path, memory, device), refreshed every second and
    on `update()` from read() -> StatusTexts."""

    def __init__(self, bar: QStatusBar, read: Callable[[], StatusTexts],
                 interval_ms: int = 1000):
        super().__init__(bar)
        self.read = read
        self.path_label = QLabel()
        self.path_label.setObjectName("pathLabel")
        self.device_label = QLabel()
        self.device_label.setObjectName("deviceLabel")
        self.device_label.setToolTip("Where training and sampling run")
        self.memory_label = QLabel()
        self.memory_label.setObjectName("memoryLabel")
        self.memory_label.setToolTip(
            "GPU memory held by PyTorch: in use now (peak since the run started) · reserved "
            "by its cache / the card's total")
        bar.addPermanentWidget(self.path_label)
        bar.addPermanentWidget(self.memory_label)
        bar.addPermanentWidget(self.device_label)
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.update)
        self.timer.start()

    def update(self) -> None:
        texts = self.read()
        self.device_label.setText(texts.device)
        self.memory_label.setText(texts.memory)
        self.path_label.setText(texts.path)
        self.path_label.setToolTip(texts.path_details)


def path_texts(training: str, sampling: str) -> tuple[str, str]:
    """(short, details) of the paths that ran: e.g. "Training: eager (cpu, fp32) ·
    Sampling: eager (cpu)"; a fallback's reason (in brackets in core's describe(): core.fast_step,
    core.fast_train) is cut from the short text, which says "fallback" instead, and kept in
    the details. Empty parts are left out."""
    short, details = [], []
    for name, text in (("Training", training), ("Sampling", sampling)):
        if not text:
            continue
        head, bracket, reason = text.partition(" [")
        short.append(f"{name}: {head}" + (" (fallback ⚠)" if bracket else ""))
        details.append(f"{name} ran on: {head}"
                       + (f"\n  why not faster: {reason.removesuffix(']')}" if bracket else ""))
    return " · ".join(short), "\n".join(details)


def memory_text(device) -> str:
    """GPU memory in use now and at its peak (torch.cuda.max_memory_allocated), reserved and
    total, for a CUDA device; "" for any other."""
    import torch

    if device.type != "cuda":
        return ""
    allocated = torch.cuda.memory_allocated(device) / 2**20
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    reserved = torch.cuda.memory_reserved(device) / 2**20
    total = torch.cuda.get_device_properties(device).total_memory / 2**20
    return (f"GPU memory {allocated:,.0f} MiB used (peak {peak:,.0f}) · {reserved:,.0f} "
            f"reserved / {total:,.0f} MiB")


def reset_memory_peak() -> None:
    """Start a new peak of GPU memory (a run starts); nothing when CUDA is not in use yet."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(index)


def device_texts(trainer, device_setting: str, trajectory=None) -> StatusTexts:
    """The status bar's texts: the trainer's device, else the one the settings name; GPU
    memory on CUDA; the paths of the trainer's steps (core.fast_train.describe_training_path)
    and of the last sampling run (`trajectory.path`, core.generate.Trajectory)."""
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
    training = ""
    if trainer is not None and hasattr(trainer, "config"):
        from core.fast_train import describe_training_path

        try:
            training = describe_training_path(trainer)
        except Exception:  # noqa: BLE001 - a status text never breaks the window
            training = ""
    sampling = getattr(trajectory, "path", "") if trajectory is not None else ""
    path, details = path_texts(training, sampling)
    name = f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else device.type
    return StatusTexts(f"Device: {name}", memory_text(device), path, details)
