"""Start / Pause-Resume / Stop and the training progress bar (steps/s and ETA)."""

from __future__ import annotations

import math
import time

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QProgressBar,
    QPushButton,
    QStyle,
    QVBoxLayout,
    QWidget,
)


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "–"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class RateMeter:
    """Steps per second over a sliding window of (time, step) samples."""

    def __init__(self, window_s: float = 3.0):
        self.window_s = window_s
        self.samples: list[tuple[float, int]] = []

    def reset(self) -> None:
        self.samples.clear()

    def add(self, step: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self.samples.append((now, step))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window_s:
            self.samples.pop(0)
        return self.rate()

    def rate(self) -> float:
        if len(self.samples) < 2:
            return float("nan")
        (t0, s0), (t1, s1) = self.samples[0], self.samples[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else float("nan")


class TrainControls(QWidget):
    """Buttons and progress; the main window connects them to the training controller."""

    start_clicked = Signal()
    pause_clicked = Signal()
    stop_clicked = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("trainControls")
        icon = self.style().standardIcon
        self.play_icon = icon(QStyle.StandardPixmap.SP_MediaPlay)
        self.pause_icon = icon(QStyle.StandardPixmap.SP_MediaPause)
        self.startButton = QPushButton(self.play_icon, "Start")
        self.startButton.setObjectName("startButton")
        self.startButton.setToolTip("Train with these settings (continues a stopped run)")
        self.pauseButton = QPushButton(self.pause_icon, "Pause")
        self.pauseButton.setObjectName("pauseButton")
        self.pauseButton.setCheckable(True)
        self.stopButton = QPushButton(icon(QStyle.StandardPixmap.SP_MediaStop), "Stop")
        self.stopButton.setObjectName("stopButton")
        self.stopButton.setToolTip("End the run and keep the weights")
        self.trainProgress = QProgressBar()
        self.trainProgress.setObjectName("trainProgress")
        self.trainProgress.setRange(0, 1)
        self.trainProgress.setValue(0)
        self.trainProgress.setFormat("idle")
        self.trainProgress.setTextVisible(True)

        buttons = QHBoxLayout()
        buttons.setSpacing(4)
        buttons.addWidget(self.startButton)
        buttons.addWidget(self.pauseButton)
        buttons.addWidget(self.stopButton)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 0, 6, 6)
        layout.addLayout(buttons)
        layout.addWidget(self.trainProgress)

        self.startButton.clicked.connect(self.start_clicked)
        self.pauseButton.clicked.connect(self.pause_clicked)
        self.stopButton.clicked.connect(self.stop_clicked)
        self.meter = RateMeter()
        self.state = "idle"
        self.set_state("idle", can_start=True)

    def set_state(self, state: str, can_start: bool) -> None:
        """Enable the buttons for `state` ("idle", "running", "paused", "stopped", ...)."""
        active = state in ("running", "paused", "starting")
        self.startButton.setEnabled(can_start and not active)
        self.pauseButton.setEnabled(state in ("running", "paused"))
        self.stopButton.setEnabled(active)
        self.pauseButton.blockSignals(True)
        self.pauseButton.setChecked(state == "paused")
        self.pauseButton.blockSignals(False)
        self.pauseButton.setText("Resume" if state == "paused" else "Pause")
        self.pauseButton.setIcon(self.play_icon if state == "paused" else self.pause_icon)
        if state == "running" and self.state == "paused":
            self.meter.reset()  # the pause must not drag the rate down
        if state == "starting":
            self.meter.reset()
            self.trainProgress.setFormat("starting…")
        elif state == "paused":
            self.trainProgress.setFormat("paused at step %v / %m")
        elif state in ("stopped", "finished", "failed"):
            self.trainProgress.setFormat(f"{state} at step %v / %m")
        self.state = state

    def set_progress(self, step: int, target: int, start_step: int = 0) -> None:
        """Show step/target, steps per second and the time left to `target`."""
        self.trainProgress.setRange(0, max(1, target))
        self.trainProgress.setValue(min(step, max(1, target)))
        rate = self.meter.add(step)
        if self.state not in ("running", "starting"):
            return
        text = "%v / %m"
        if math.isfinite(rate) and rate > 0:
            eta = (target - step) / rate
            text += f" · {rate:,.1f} steps/s · ETA {format_duration(eta)}"
        self.trainProgress.setFormat(text)
