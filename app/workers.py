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

import atexit
import gc
import queue
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer, Signal, Slot

from app.errors import (
    describe_error,
    describe_training_error,
    is_out_of_memory,
    release_cached_gpu_memory,
)
from app.history import rows_to_columns
from core.device import default_threads

DEFAULT_EMIT_HZ = 20.0
# One intra-op torch thread on small CPUs (QT-NOTES section 4): core.device's rule, which the
# CLI follows too. Set in each worker thread (OpenMP keeps the count per thread).
DEFAULT_TORCH_THREADS = default_threads()


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
        self._must_finish = 0            # queued or running tasks that must not be cut short
        self._must_finish_lock = threading.Lock()
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

    def submit(self, tag: str, fn: Callable[[Any], Any], must_finish: bool = False) -> None:
        """Run fn(trainer) in the worker thread between two steps (thread-safe). A task that
        must finish (a checkpoint save) holds the app's exit until it has run."""
        if must_finish:
            with self._must_finish_lock:
                self._must_finish += 1
        self._tasks.put((tag, fn, must_finish))

    def must_finish(self) -> bool:
        """A task that must not be cut short is queued or running (thread-safe)."""
        with self._must_finish_lock:
            return self._must_finish > 0

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
            self.failed.emit(describe_training_error(exc, self.trainer))
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
                tag, fn, must_finish = self._tasks.get_nowait()
            except queue.Empty:
                return
            try:
                if self.trainer is None:
                    raise RuntimeError("the trainer could not be built")
                result, message = fn(self.trainer), ""
            except Exception as exc:  # noqa: BLE001
                result, message = None, describe_error(exc)
            finally:
                if must_finish:
                    with self._must_finish_lock:
                        self._must_finish -= 1
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
                 torch_threads: int | None = DEFAULT_TORCH_THREADS, must_finish: bool = False,
                 path: str | None = None):
        super().__init__()
        self._task = task
        self._action = action
        self._path = path                # the file the task reads or writes, for messages
        self._must_finish = threading.Event()
        if must_finish:
            self._must_finish.set()
        self._emit_interval = 1.0 / emit_hz
        self._torch_threads = torch_threads
        self._stop = threading.Event()
        self._last_progress = 0.0

    def stop(self) -> None:
        self._stop.set()

    def must_finish(self) -> bool:
        """The task must not be cut short (a checkpoint save) and has not ended yet."""
        return self._must_finish.is_set()

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
                self.failed.emit(describe_error(exc, self._action, self._path))
            status = "stopped" if self._stop.is_set() else "failed"
        finally:
            self._must_finish.clear()
            self.finished.emit(status)


class GuiGarbageCollector(QObject):
    """Python's cyclic garbage collection, run in the GUI thread only (on a timer, by
    generation as the automatic collector would), while any window is open or any worker
    thread is alive. Left automatic, a collection starts in whichever thread allocates,
    often a worker's, and frees the Qt wrappers of a closed window there: the worker then
    waits for the GIL inside a QObject destructor while the GUI thread, holding the GIL,
    waits for that object's Qt lock (a deadlock seen in the test suite). The idea of
    pyqtgraph.util.garbage_collector, with automatic collection back once nothing is open."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = 1000):
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        self.users = 0
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.collect)

    def acquire(self) -> None:
        """A window opened: automatic collection off, the timer collects."""
        self.users += 1
        gc.disable()
        self.timer.start()

    def release(self) -> None:
        """A window closed; with none open and no worker thread alive, give collection back
        to Python (later, when a detached thread ends, otherwise). No full collection here:
        with no worker thread alive a later collection cannot start in one (the deadlock
        above needs one), and a full pass cost 0.1-0.5 s on every close."""
        self.users = max(0, self.users - 1)
        self.release_if_idle()

    def release_if_idle(self) -> None:
        if self.users == 0 and not any(t.is_running() for t in list(_DETACHED)) \
                and not gc.isenabled():
            self.timer.stop()
            gc.enable()

    @Slot()
    def collect(self) -> None:
        counts = gc.get_count()
        for generation in range(3):
            if counts[generation] <= self.thresholds[generation]:
                return
            gc.collect(generation)


_COLLECTOR: list[GuiGarbageCollector] = []


def gui_garbage_collector() -> GuiGarbageCollector | None:
    """The process's GuiGarbageCollector (owned by the application), made on first use in
    the GUI thread; None before a QApplication exists."""
    app = QCoreApplication.instance()
    if not _COLLECTOR and app is not None:
        _COLLECTOR.append(GuiGarbageCollector(app))
    return _COLLECTOR[0] if _COLLECTOR else None


# Threads whose owner closed while they were still in a step (WorkerThread.detach): kept
# referenced until they end, so Qt never destroys a running thread.
_DETACHED: set[WorkerThread] = set()


def detached_threads() -> int:
    """How many detached worker threads are still running."""
    return sum(thread.is_running() for thread in list(_DETACHED))


def wait_for_detached_threads(wait_ms: int = -1) -> bool:
    """Wait for every detached worker thread to end (-1: no limit); True if all have. Runs
    at interpreter exit too, so a normal (slow) exit never destroys a running thread."""
    deadline = None if wait_ms < 0 else time.monotonic() + wait_ms / 1000
    for thread in list(_DETACHED):
        left = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
        if not thread.wait(left):
            return False
    return True


atexit.register(wait_for_detached_threads)


def shut_down(threads: list[WorkerThread], wait_ms: int = -1) -> None:
    """End `threads`, already asked to stop (request_stop): wait without limit for those
    that must finish (a checkpoint save), give the others `wait_ms` in all (-1: no limit),
    and detach any still in a long step so it ends on its own."""
    for thread in threads:
        if thread.must_finish():
            thread.wait(-1)
    deadline = None if wait_ms < 0 else time.monotonic() + wait_ms / 1000
    for thread in threads:
        left = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
        thread.wait(left)
    for thread in threads:
        thread.detach()


class WorkerThread(QObject):
    """Owns one worker and the QThread it runs in (parented, so never collected early).

    `done` is emitted in the GUI thread once the thread has ended and the worker is released.
    Closing: `request_stop()` asks the worker to stop after its current step and the thread
    to end right after (without the GUI's event loop); `wait(ms)`; `must_finish()` says
    whether it carries work that must not be cut short (a checkpoint save); `detach()` lets
    a thread still in a long step outlive the window that owned it.
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

    def request_stop(self) -> None:
        """Ask the worker to stop between steps, and the thread to end when it returns."""
        if self.worker is not None and hasattr(self.worker, "stop"):
            self.worker.stop()
        if self.thread is not None:
            # quit() before the worker returns makes the thread's event loop exit at once
            self.thread.quit()

    def wait(self, wait_ms: int = -1) -> bool:
        """Wait for the thread to end (-1: no limit); True if it has."""
        thread = self.thread
        if thread is None:
            return True
        return thread.wait() if wait_ms < 0 else thread.wait(max(0, int(wait_ms)))

    def must_finish(self) -> bool:
        """The worker carries work that must not be cut short (see TaskWorker, TrainWorker)."""
        worker = self.worker
        return (self.is_running() and worker is not None and hasattr(worker, "must_finish")
                and worker.must_finish())

    def stop(self, wait_ms: int | None = None) -> bool:
        """Ask the worker to stop; with wait_ms, also end the thread and wait (True if it
        ended)."""
        if wait_ms is None:
            if self.worker is not None and hasattr(self.worker, "stop"):
                self.worker.stop()
            return True
        self.request_stop()
        return self.wait(wait_ms)

    def detach(self) -> None:
        """Let a thread that is still running end on its own after its owner is gone: it
        loses its parent (Qt will not destroy it with the window) and stays referenced here
        until it ends. Call request_stop() first."""
        if not self.is_running():
            return
        self.setParent(None)
        self.thread.setParent(None)
        _DETACHED.add(self)
        self.done.connect(self._forget)

    @Slot(str)
    def _forget(self, _status: str) -> None:
        _DETACHED.discard(self)
        collector = gui_garbage_collector()
        if collector is not None:
            collector.release_if_idle()

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
