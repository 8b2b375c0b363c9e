"""Worker QObjects that run core code in QThreads, and the thread life cycle around them.

Rules (docs/ARCHITECTURE.md, QT-NOTES): a worker is moved to a QThread parented to a GUI
object; `stop()`, `pause()` and `resume()` are plain thread-safe methods that set
`threading.Event`s checked between steps (a queued slot would only run after `run()`
returns); everything sent to the GUI is a numpy copy or a fresh object the worker no longer
touches, emitted at most `emit_hz` times a second. Signals here are emitted in the worker
thread: connect them only to methods of GUI-thread QObjects (queued delivery), never to
lambdas, and never `qtbot.waitSignal` on them.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.errors import describe_error, is_out_of_memory, release_cached_gpu_memory
from app.history import rows_to_columns

DEFAULT_EMIT_HZ = 20.0
# One intra-op torch thread on small CPUs (QT-NOTES section 4); leave bigger machines alone.
DEFAULT_TORCH_THREADS = 1 if (os.cpu_count() or 1) <= 4 else None


def numpy_copy(value: Any) -> Any:
    """A copy the GUI thread may keep: tensors/arrays -> numpy arrays, containers recursed."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "detach"):  # torch.Tensor
        return value.detach().cpu().numpy().copy()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        return {k: numpy_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        try:
            return np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            return [numpy_copy(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class TrainWorker(QObject):
    """Runs `Trainer.run` for `steps` steps.

    `make_trainer()` runs in the worker thread and returns the Trainer (new or existing).
    Pause blocks between steps (the trainer's state is untouched); stop ends `run` and keeps
    the weights. While it runs, the GUI thread must not touch the trainer: `submit(tag, fn)`
    queues `fn(trainer)` to run in the worker thread between steps (also while paused), and
    `task_done(tag, result, error_message)` brings the outcome back. Sampling uses this for
    `trainer.ema_snapshot()`, the File menu for saving a checkpoint.
    """

    trainer_ready = Signal(object)
    metrics = Signal(object)        # dict name -> float64 array of the new rows
    probe = Signal(object)          # probe dict, numpy copies
    progress = Signal(int)          # trainer.step
    task_done = Signal(str, object, str)  # tag, result, error message ("" if none)
    failed = Signal(str)
    finished = Signal(str)          # "finished" | "stopped" | "failed"

    def __init__(self, make_trainer: Callable[[], Any], steps: int,
                 emit_hz: float = DEFAULT_EMIT_HZ,
                 torch_threads: int | None = DEFAULT_TORCH_THREADS):
        super().__init__()
        self._make_trainer = make_trainer
        self._steps = int(steps)
        self._emit_interval = 1.0 / emit_hz
        self._torch_threads = torch_threads
        self._stop = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._parked = threading.Event()  # set while the worker waits in a pause
        self._pending_rows: list[dict] = []
        self._last_emit = 0.0
        self._last_progress = 0.0
        self.trainer = None

    # -- thread-safe controls (called from the GUI thread) ----------------------
    def stop(self) -> None:
        self._stop.set()
        self._resume.set()

    def pause(self) -> None:
        self._resume.clear()

    def resume(self) -> None:
        self._resume.set()

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    @property
    def parked(self) -> bool:
        """True once a pause has taken effect: the worker waits between two steps."""
        return self._parked.is_set()

    def submit(self, tag: str, fn: Callable[[Any], Any]) -> None:
        """Run fn(trainer) in the worker thread between two steps (thread-safe)."""
        self._tasks.put((tag, fn))

    # -- worker thread ------------------------------------------------------------
    @Slot()
    def run(self) -> None:
        status = "failed"
        try:
            if self._torch_threads:
                import torch

                torch.set_num_threads(self._torch_threads)
            self.trainer = self._make_trainer()
            self.trainer_ready.emit(self.trainer)
            if self._stop.is_set():
                status = "stopped"
            else:
                status = self.trainer.run(self._steps, on_metrics=self._on_metrics,
                                          should_stop=self._should_stop,
                                          on_probe=self._on_probe)
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the user
            traceback.print_exc()
            if is_out_of_memory(exc):
                release_cached_gpu_memory()
            self.failed.emit(describe_error(exc, "Training"))
            status = "failed"
        finally:
            self._flush_metrics()
            self._serve_tasks()
            if self.trainer is not None:
                self.progress.emit(int(self.trainer.step))
            self.finished.emit(str(status))

    def _on_metrics(self, rows) -> None:
        self._pending_rows.extend(rows)
        if time.monotonic() - self._last_emit >= self._emit_interval:
            self._flush_metrics()

    def _flush_metrics(self) -> None:
        if self._pending_rows:
            rows, self._pending_rows = self._pending_rows, []
            self.metrics.emit(rows_to_columns(rows))
        self._last_emit = time.monotonic()

    def _on_probe(self, probe: dict) -> None:
        self._flush_metrics()
        self.probe.emit(numpy_copy(dict(probe)))

    def _serve_tasks(self) -> None:
        while True:
            try:
                tag, fn = self._tasks.get_nowait()
            except queue.Empty:
                return
            try:
                if self.trainer is None:
                    raise RuntimeError("the trainer could not be built")
                result, message = fn(self.trainer), ""
            except Exception as exc:  # noqa: BLE001
                result, message = None, describe_error(exc)
            self.task_done.emit(tag, result, message)

    def _should_stop(self) -> bool:
        now = time.monotonic()
        if now - self._last_progress >= self._emit_interval:
            self._last_progress = now
            self.progress.emit(int(self.trainer.step))
        self._serve_tasks()
        if not self._resume.is_set() and not self._stop.is_set():
            self._flush_metrics()
            self._parked.set()
            while not self._resume.is_set() and not self._stop.is_set():
                self._serve_tasks()
                self._resume.wait(0.05)
            self._parked.clear()
        return self._stop.is_set()


class TaskWorker(QObject):
    """Runs `task(progress, should_stop)` once and emits its result.

    `progress(done, total)` may be called by the task at any rate; it is forwarded at most
    `emit_hz` times a second. `should_stop()` turns True after `stop()`.
    """

    progress = Signal(int, int)
    result = Signal(object)
    failed = Signal(str)
    finished = Signal(str)  # "finished" | "stopped" | "failed"

    def __init__(self, task: Callable[[Callable[[int, int], None], Callable[[], bool]], Any],
                 action: str = "", emit_hz: float = DEFAULT_EMIT_HZ,
                 torch_threads: int | None = DEFAULT_TORCH_THREADS):
        super().__init__()
        self._task = task
        self._action = action
        self._emit_interval = 1.0 / emit_hz
        self._torch_threads = torch_threads
        self._stop = threading.Event()
        self._last_progress = 0.0

    def stop(self) -> None:
        self._stop.set()

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def _progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last_progress >= self._emit_interval or done >= total:
            self._last_progress = now
            self.progress.emit(int(done), int(total))

    @Slot()
    def run(self) -> None:
        status = "failed"
        try:
            if self._torch_threads:
                import torch

                torch.set_num_threads(self._torch_threads)
            value = self._task(self._progress, self.should_stop)
            if self._stop.is_set():
                status = "stopped"
            else:
                self.result.emit(value)
                status = "finished"
        except BaseException as exc:  # noqa: BLE001
            if not self._stop.is_set():
                traceback.print_exc()
                if is_out_of_memory(exc):
                    release_cached_gpu_memory()
                self.failed.emit(describe_error(exc, self._action))
            status = "stopped" if self._stop.is_set() else "failed"
        finally:
            self.finished.emit(status)


class WorkerThread(QObject):
    """Owns one worker and the QThread it runs in (parented, so never collected early).

    `done` is emitted in the GUI thread once the thread has ended and the worker is released.
    """

    done = Signal(str)

    def __init__(self, worker: QObject, parent: QObject):
        super().__init__(parent)
        self.worker = worker
        self.thread = QThread(parent)
        self.status = ""
        worker.moveToThread(self.thread)
        self.thread.started.connect(worker.run)
        worker.finished.connect(self._on_worker_finished)

    def start(self) -> None:
        self.thread.start()

    def is_running(self) -> bool:
        return self.thread is not None and self.thread.isRunning()

    def stop(self, wait_ms: int | None = None) -> bool:
        """Ask the worker to stop; with wait_ms, also end the thread and wait (True if it
        ended)."""
        if self.worker is not None and hasattr(self.worker, "stop"):
            self.worker.stop()
        if wait_ms is None or self.thread is None:
            return True
        self.thread.quit()
        if wait_ms < 0:
            return self.thread.wait()
        return self.thread.wait(wait_ms)

    @Slot(str)
    def _on_worker_finished(self, status: str) -> None:
        self.status = status
        thread = self.thread
        if thread is not None:
            thread.quit()
            thread.wait()
            thread.setParent(None)  # Python now owns the ended thread and frees it
        self.thread = None
        self.worker = None
        self.done.emit(status)
