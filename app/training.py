"""Start, pause, resume and stop training runs; forwards worker signals into the session.

Every signal of this class is emitted in the GUI thread (tests may wait on them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from app.widgets.status import reset_memory_peak
from app.workers import TrainWorker, WorkerThread


def set_checkpointing(trainer, enabled: bool) -> None:
    """Switch activation checkpointing of an idle trainer's networks (a memory aid: the
    weights and the numbers stay the same), and record it in its config."""
    enabled = bool(enabled)
    if trainer.config.model.checkpointing == enabled:
        return
    trainer.config.model = replace(trainer.config.model, checkpointing=enabled)
    for network in (trainer.model, trainer.ema_model):
        if hasattr(network, "set_checkpointing"):
            network.set_checkpointing(enabled)


class TrainingController(QObject):
    """Owns the training thread. `start()` runs `steps` more steps of a new or existing
    trainer; the session receives the trainer, the metric rows and the probes."""

    state_changed = Signal(str)   # "starting" | "running" | "paused" | "stopping" | final status
    progress = Signal(int, int)   # step, target step
    finished = Signal(str)        # "finished" | "stopped" | "failed"
    failed = Signal(str)          # readable message
    task_done = Signal(str, object, str)  # see TrainWorker.submit

    def __init__(self, session, parent: QObject | None = None):
        super().__init__(parent)
        self.session = session
        self._thread: WorkerThread | None = None
        self._worker: TrainWorker | None = None
        self.target_step = 0
        self.start_step = 0
        self.state = "idle"
        self.closed = False

    # -- queries -------------------------------------------------------------------------
    def is_active(self) -> bool:
        """A run is starting, running or paused (the trainer belongs to the worker)."""
        return self._thread is not None

    def threads(self) -> list[WorkerThread]:
        """The worker thread, if there is one (for the window's shutdown)."""
        return [] if self._thread is None else [self._thread]

    def thread_running(self) -> bool:
        """The worker thread has not ended yet."""
        return self._thread is not None and self._thread.is_running()

    @property
    def paused(self) -> bool:
        return self._worker is not None and self._worker.paused

    @property
    def parked(self) -> bool:
        """The pause has taken effect: no step is in flight."""
        return self._worker is not None and self._worker.parked

    # -- commands ------------------------------------------------------------------------
    def start(self, make_trainer: Callable[[], Any], steps: int, start_step: int = 0) -> None:
        """Run `make_trainer()` in the worker thread, then `steps` training steps."""
        if self.is_active():
            raise RuntimeError("a training run is already active")
        if self.closed:
            return
        reset_memory_peak()
        self.start_step = int(start_step)
        self.target_step = self.start_step + int(steps)
        worker = TrainWorker(make_trainer, steps)
        thread = WorkerThread(worker, self.parent() or self)
        worker.trainer_ready.connect(self._on_trainer_ready)
        worker.metrics.connect(self._on_metrics)
        worker.probe.connect(self._on_probe)
        worker.progress.connect(self._on_progress)
        worker.failed.connect(self._on_failed)
        worker.task_done.connect(self._on_task_done)
        thread.done.connect(self._on_done)
        self._worker, self._thread = worker, thread
        self._set_state("starting")
        thread.start()

    def pause(self) -> None:
        if self._worker is not None and self.state == "running":
            self._worker.pause()
            self._set_state("paused")

    def resume(self) -> None:
        if self._worker is not None and self.state == "paused":
            self._worker.resume()
            self._set_state("running")

    def stop(self, wait_ms: int | None = None) -> bool:
        """Ask the run to end after the current step (weights are kept). With wait_ms, block
        until the thread has ended (-1: no limit); returns whether it has."""
        if self._thread is None:
            return True
        return self._thread.stop(wait_ms)

    def request_stop(self) -> None:
        """Stop after the current step; the state says "stopping" until the run has ended
        (a step is never cut short, and nothing new starts after it)."""
        if self._thread is None:
            return
        self._thread.stop()
        if self.state in ("starting", "running", "paused"):
            self._set_state("stopping")

    def close(self) -> list[WorkerThread]:
        """Window closing: ask the run to stop, refuse new runs; returns the thread still
        running, for the caller to wait on (app.controller.ExperimentController.shutdown)."""
        self.closed = True
        if self._thread is None:
            return []
        self._thread.request_stop()
        return [self._thread]

    def submit(self, tag: str, fn: Callable[[Any], Any], must_finish: bool = False) -> bool:
        """Queue fn(trainer) between steps of the active run; False if no run is active.
        must_finish: the app's exit waits for it (a checkpoint save)."""
        if self._worker is None:
            return False
        self._worker.submit(tag, fn, must_finish=must_finish)
        return True

    # -- worker signals (queued into the GUI thread) ---------------------------------------
    def _set_state(self, state: str) -> None:
        self.state = state
        self.session.set_state(state)
        self.state_changed.emit(state)

    @Slot(object)
    def _on_trainer_ready(self, trainer) -> None:
        if trainer is not self.session.trainer:
            # a new trainer's history is empty; its rows arrive through `metrics`
            self.session.set_trainer(trainer, copy_history=False)
        if self.state == "starting":       # not after Stop: "stopping" stays
            self._set_state("paused" if self.paused else "running")

    @Slot(object)
    def _on_metrics(self, columns) -> None:
        self.session.append_metrics(columns)

    @Slot(object)
    def _on_probe(self, probe) -> None:
        self.session.add_probe(probe)

    @Slot(int)
    def _on_progress(self, step: int) -> None:
        self.progress.emit(step, self.target_step)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.failed.emit(message)

    @Slot(str, object, str)
    def _on_task_done(self, tag: str, result, message: str) -> None:
        self.task_done.emit(tag, result, message)

    @Slot(str)
    def _on_done(self, status: str) -> None:
        thread, self._thread, self._worker = self._thread, None, None
        if thread is not None:
            thread.deleteLater()
        self._set_state(status)
        self.finished.emit(status)
