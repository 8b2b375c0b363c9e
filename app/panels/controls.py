"""Start / Pause-Resume / Stop, the training progress bar, and the run's measured speed:
"running the first step…" until one step is done, then "~X s per step, about H:MM:SS for N
steps"; "stopping after this step…" once Stop was pressed (a step is never cut short)."""

from __future__ import annotations

import math
import time

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from app.advice import format_duration, run_estimate
from app.widgets.shortcuts import PAUSE_KEYS, START_KEYS, STOP_KEYS, shortcut_text

ACTIVE = ("starting", "running", "paused", "stopping")

__all__ = ["ACTIVE", "RateMeter", "TrainControls", "format_duration"]


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
        return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 > s0 else float("nan")


class TrainControls(QWidget):
    """Buttons and progress; the main window connects them to the experiment controller.

    `speed_measured(seconds_per_step, steps_in_run)` is emitted once per run, as soon as the
    first step has been timed (the window warns when that makes the run far too long)."""

    start_clicked = Signal()
    pause_clicked = Signal()
    stop_clicked = Signal()
    speed_measured = Signal(float, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("trainControls")
        icon = self.style().standardIcon
        self.play_icon = icon(QStyle.StandardPixmap.SP_MediaPlay)
        self.pause_icon = icon(QStyle.StandardPixmap.SP_MediaPause)
        self.startButton = QPushButton(self.play_icon, "Start")
        self.startButton.setObjectName("startButton")
        self.pauseButton = QPushButton(self.pause_icon, "Pause")
        self.pauseButton.setObjectName("pauseButton")
        self.pauseButton.setCheckable(True)
        self.pauseButton.setToolTip("Pause between two steps, keeping the run's state; "
                                    f"Resume continues it ({shortcut_text(PAUSE_KEYS)})")
        self.stopButton = QPushButton(icon(QStyle.StandardPixmap.SP_MediaStop), "Stop")
        self.stopButton.setObjectName("stopButton")
        self.stopButton.setToolTip("End the run after the current step and keep the weights "
                                   f"({shortcut_text(STOP_KEYS)})")
        self.trainProgress = QProgressBar()
        self.trainProgress.setObjectName("trainProgress")
        self.trainProgress.setRange(0, 1)
        self.trainProgress.setValue(0)
        self.trainProgress.setFormat("idle")
        self.trainProgress.setTextVisible(True)
        self.trainProgress.setToolTip("Training steps done of this run's target, and the "
                                      "time left at the recent speed")
        self.runEstimate = QLabel()
        self.runEstimate.setObjectName("runEstimate")
        self.runEstimate.setWordWrap(True)
        self.runEstimate.setToolTip("Measured on this run's own steps: seconds per step and "
                                    "the time the whole run takes at that speed")
        self.runEstimate.hide()
        self.set_start_text("Start", "Train a new model with these settings")

        buttons = QHBoxLayout()
        buttons.setSpacing(4)
        buttons.addWidget(self.startButton)
        buttons.addWidget(self.pauseButton)
        buttons.addWidget(self.stopButton)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 0, 6, 6)
        layout.addLayout(buttons)
        layout.addWidget(self.trainProgress)
        layout.addWidget(self.runEstimate)

        self.startButton.clicked.connect(self.start_clicked)
        self.pauseButton.clicked.connect(self.pause_clicked)
        self.stopButton.clicked.connect(self.stop_clicked)
        self.meter = RateMeter()
        self.state = "idle"
        self._first: tuple[float, int] | None = None   # (time, step) the run's first step began
        self._measured = False
        self.set_state("idle", can_start=True)

    def set_start_text(self, text: str, tip: str) -> None:
        """What Start does now ("Start", "Continue to 3,000", "Train 1,500 more")."""
        self.startButton.setText(text)
        self.startButton.setToolTip(f"{tip} ({shortcut_text(START_KEYS)})")

    def set_state(self, state: str, can_start: bool) -> None:
        """Enable the buttons for `state` ("idle", "starting", "running", "paused",
        "stopping", "stopped", "finished", "failed")."""
        active = state in ACTIVE
        self.startButton.setEnabled(can_start and not active)
        self.pauseButton.setEnabled(state in ("running", "paused"))
        self.stopButton.setEnabled(active and state != "stopping")
        self.pauseButton.blockSignals(True)
        self.pauseButton.setChecked(state == "paused")
        self.pauseButton.blockSignals(False)
        self.pauseButton.setText("Resume" if state == "paused" else "Pause")
        self.pauseButton.setIcon(self.play_icon if state == "paused" else self.pause_icon)
        if state == "running" and self.state == "paused":
            self.meter.reset()  # the pause must not drag the rate down
        if state == "starting":
            self.meter.reset()
            self._first, self._measured = None, False
            self.runEstimate.hide()
            self.trainProgress.setFormat("building the model and loading the data…")
        elif state == "paused":
            self.trainProgress.setFormat("paused at step %v / %m")
        elif state == "stopping":
            self.trainProgress.setFormat("stopping after this step…")
        elif state in ("stopped", "finished", "failed"):
            self.trainProgress.setFormat(f"{state} at step %v / %m")
        self.state = state

    def set_progress(self, step: int, target: int) -> None:
        """Show step/target; while running, the measured time per step and what is left."""
        self.trainProgress.setRange(0, max(1, target))
        self.trainProgress.setValue(min(step, max(1, target)))
        now = time.monotonic()
        rate = self.meter.add(step, now)
        if self.state not in ("running", "starting"):
            return
        if self._first is None:
            self._first = (now, step)
        first_time, first_step = self._first
        if step <= first_step:
            self.trainProgress.setFormat("%v / %m · running the first step…")
            return
        seconds_per_step = (now - first_time) / (step - first_step)
        if not (math.isfinite(rate) and rate > 0):
            rate = 1.0 / seconds_per_step
        self.trainProgress.setFormat(f"%v / %m · ETA {format_duration((target - step) / rate)}")
        run_steps = target - first_step
        self.runEstimate.setText(run_estimate(1.0 / rate, run_steps))
        self.runEstimate.show()
        if not self._measured:
            self._measured = True
            self.speed_measured.emit(seconds_per_step, run_steps)
