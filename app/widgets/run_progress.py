"""Run / Cancel / progress behaviour shared by the Score tab's boxes: a widget with
`runButton`, `cancelButton`, `progress` (a QProgressBar) and a `cancel_requested` signal
mixes this in (before its Qt base class)."""

from __future__ import annotations

CANCELLING = "cancelling…"


class RunProgress:
    """Cancel says so and waits for the job to end; set_busy toggles the buttons and resets
    the bar; set_progress(done, total) shows a job's progress."""

    def _cancel(self) -> None:
        self.cancelButton.setEnabled(False)
        self.progress.setFormat(CANCELLING)
        self.cancel_requested.emit()

    def set_busy(self, busy: bool) -> None:
        self.runButton.setEnabled(not busy)
        self.cancelButton.setEnabled(busy)
        if busy:
            self.progress.setFormat("%p %")
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
        elif self.progress.format() == CANCELLING:
            self.progress.setFormat("cancelled")

    def set_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
