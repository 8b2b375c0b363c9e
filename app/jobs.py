"""Short background tasks (load a data set, describe a model, load a checkpoint, compute
entropy curves) run off the GUI thread; for each job name only the newest result is used.

Jobs submitted with serial=True (the CPU-heavy analyses) run one thread per name: a new
request stops the running one and waits for it to end, and of a burst of requests only the
last one runs, so rapid edits never stack threads whose work cannot be interrupted at once.
Other jobs (data loading, saving) start at once; a save is never dropped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from app.workers import TaskWorker, WorkerThread


class _Job(QObject):
    """GUI-thread relay between one TaskWorker and the callbacks (queued delivery)."""

    def __init__(self, runner: JobRunner, name: str, generation: int,
                 on_result: Callable[[Any], None], on_error: Callable[[str], None] | None,
                 on_progress: Callable[[int, int], None] | None = None):
        super().__init__(runner)
        self.runner, self.name, self.generation = runner, name, generation
        self.on_result, self.on_error, self.on_progress = on_result, on_error, on_progress
        self.thread: WorkerThread | None = None

    def current(self) -> bool:
        return self.runner.generation(self.name) == self.generation

    @Slot(object)
    def result(self, value) -> None:
        if self.current():
            self.on_result(value)

    @Slot(str)
    def failed(self, message: str) -> None:
        if self.current():
            if self.on_error is not None:
                self.on_error(message)
            else:
                self.runner.failed.emit(message)

    @Slot(int, int)
    def progress(self, done: int, total: int) -> None:
        if self.on_progress is not None and self.current():
            self.on_progress(done, total)

    @Slot(str)
    def done(self, status: str) -> None:
        self.runner._finish(self, status)


class JobRunner(QObject):
    """`submit(name, fn, on_result)` runs fn(progress, should_stop) in its own thread.
    job_finished(name, status) follows the end of every job's thread (status "finished",
    "stopped" or "failed"; `busy(name)` tells whether another of that name runs or waits)."""

    failed = Signal(str)
    busy_changed = Signal(bool)
    job_finished = Signal(str, str)

    def __init__(self, parent: QObject):
        super().__init__(parent)
        self._generations: dict[str, int] = {}
        self._jobs: list[_Job] = []
        self._pending: dict[str, tuple] = {}  # name -> the request that waits for its turn
        self.closed = False

    def generation(self, name: str) -> int:
        return self._generations.get(name, 0)

    def busy(self, name: str | None = None) -> bool:
        return (any(name is None or job.name == name for job in self._jobs)
                or (name in self._pending if name is not None else bool(self._pending)))

    def threads(self) -> list[WorkerThread]:
        """The jobs' threads (for the window's shutdown)."""
        return [job.thread for job in self._jobs if job.thread is not None]

    def any_thread_running(self) -> bool:
        """A job's thread has not ended yet (used before a fast process exit)."""
        return any(job.thread is not None and job.thread.is_running() for job in self._jobs)

    def running(self, name: str) -> int:
        """How many jobs named `name` are running (at most 1 for serial jobs)."""
        return sum(job.name == name for job in self._jobs)

    def submit(self, name: str, fn: Callable, on_result: Callable[[Any], None],
               on_error: Callable[[str], None] | None = None, action: str = "",
               serial: bool = False, must_finish: bool = False,
               path: str | None = None,
               on_progress: Callable[[int, int], None] | None = None) -> None:
        """Start `fn(progress, should_stop)`; an older job of the same name is told to stop
        and its result, if any, is ignored. With serial=True, while that job is still
        ending this request waits (replacing any request already waiting). must_finish: the
        app's exit waits for it (a checkpoint save); path: the file it reads or writes,
        named in its error messages; on_progress(done, total): the task's progress calls
        (throttled, GUI thread). Ignored after `close()`."""
        if self.closed:
            return
        generation = self.generation(name) + 1
        self._generations[name] = generation
        running = [job for job in self._jobs if job.name == name]
        for job in running:
            if job.thread is not None:
                job.thread.stop()
        if running and serial:
            self._pending[name] = (generation, fn, on_result, on_error, action, must_finish,
                                   path, on_progress)
            return
        self._start(name, generation, fn, on_result, on_error, action, must_finish, path,
                    on_progress)

    def cancel(self, name: str) -> bool:
        """Stop the jobs named `name` (after their current step) and drop a waiting request;
        their results are ignored. True if one was running or waiting."""
        self._generations[name] = self.generation(name) + 1
        waiting = self._pending.pop(name, None) is not None
        running = [job for job in self._jobs if job.name == name]
        for job in running:
            if job.thread is not None:
                job.thread.stop()
        return waiting or bool(running)

    def _start(self, name: str, generation: int, fn: Callable, on_result, on_error,
               action: str, must_finish: bool = False, path: str | None = None,
               on_progress: Callable[[int, int], None] | None = None) -> None:
        job = _Job(self, name, generation, on_result, on_error, on_progress)
        worker = TaskWorker(fn, action=action, must_finish=must_finish, path=path)
        worker.result.connect(job.result)
        worker.failed.connect(job.failed)
        worker.progress.connect(job.progress)
        job.thread = WorkerThread(worker, self.parent())
        job.thread.done.connect(job.done)
        was_busy = bool(self._jobs)
        self._jobs.append(job)
        job.thread.start()
        if not was_busy:
            self.busy_changed.emit(True)

    def _finish(self, job: _Job, status: str = "") -> None:
        if job in self._jobs:
            self._jobs.remove(job)
        if job.thread is not None:
            job.thread.deleteLater()
            job.thread = None
        job.deleteLater()
        pending = self._pending.pop(job.name, None)
        if pending is not None and not self.closed:
            self._start(job.name, *pending)
        elif not self._jobs:
            self.busy_changed.emit(False)
        self.job_finished.emit(job.name, status)

    def close(self) -> list[WorkerThread]:
        """Window closing: ask every job to stop, start no new one; returns the threads
        still running, for the caller to wait on (ExperimentController.shutdown)."""
        self.closed = True
        self._pending.clear()
        threads = [job.thread for job in self._jobs if job.thread is not None]
        for thread in threads:
            thread.request_stop()
        return threads
