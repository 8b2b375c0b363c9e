"""Play / Pause over a slider: a checkable button that, while checked, advances the slider
on a timer to its maximum and then unchecks itself (the Trajectories panel's playback)."""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QPushButton, QSlider, QStyle

PLAY_INTERVAL_MS = 40
PLAY_STEPS = 100        # a playback takes about this many timer ticks, whatever the length


class SliderPlayer(QObject):
    """Owns the timer; `button` (checkable) toggles playing; `stop()` pauses."""

    def __init__(self, slider: QSlider, button: QPushButton,
                 interval_ms: int = PLAY_INTERVAL_MS):
        super().__init__(slider)
        self.slider, self.button = slider, button
        self.play_icon = button.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay)
        self.pause_icon = button.style().standardIcon(QStyle.StandardPixmap.SP_MediaPause)
        button.setCheckable(True)
        button.setIcon(self.play_icon)
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._advance)
        button.toggled.connect(self._on_toggled)

    def _on_toggled(self, playing: bool) -> None:
        if playing:
            if self.slider.value() >= self.slider.maximum():
                self.slider.setValue(self.slider.minimum())
            self.button.setText("Pause")
            self.button.setIcon(self.pause_icon)
            self.timer.start()
        else:
            self.button.setText("Play")
            self.button.setIcon(self.play_icon)
            self.timer.stop()

    def stop(self) -> None:
        if self.button.isChecked():
            self.button.setChecked(False)

    def _advance(self) -> None:
        span = self.slider.maximum() - self.slider.minimum() + 1
        value = self.slider.value() + max(1, span // PLAY_STEPS)
        if value >= self.slider.maximum():
            self.slider.setValue(self.slider.maximum())
            self.stop()
        else:
            self.slider.setValue(value)
