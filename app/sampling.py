"""Runs core.generate.sample in its own thread on a frozen copy of the EMA weights, so
sampling works while training goes on. Every signal here is emitted in the GUI thread."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal, Slot

from app.workers import TaskWorker, WorkerThread
from core.config import SamplingConfig

MAX_RECORDED_FRAMES = 200


def request_for(params: dict, num_timesteps: int, num_classes: int | None) -> SamplingConfig:
    """The validated SamplingConfig of the panel's params for a model of T timesteps: steps
    above T are cut to T, and the class and guidance are dropped for an unconditional model
    (guidance mixes a class with the null class: without a class it is 0). ConfigError for
    anything else out of range."""
    config = SamplingConfig.from_params(params)
    if config.steps is not None:
        config.steps = min(int(config.steps), num_timesteps)
    if not num_classes:
        config.label = None
    if config.label is None:
        config.guidance = 0.0
    return config.validate(num_timesteps)


def analytic_variance_chosen(params: dict) -> bool:
    """The request samples with Analytic-DPM's variance (the "variance" option of the
    samplers that take it), which first estimates sigma*^2 from a sample of the data."""
    try:
        return SamplingConfig.from_params(params).uses_analytic_variance()
    except ValueError:
        return False


def record_every_for(steps: int, max_frames: int = MAX_RECORDED_FRAMES) -> int:
    """Record every k-th step so a trajectory holds at most ~max_frames frames."""
    return max(1, -(-int(steps) // max_frames))


class SamplingController(QObject):
    """`start(model, diffusion, data_shape, num_classes, device, params)`; `cancel()`."""

    busy_changed = Signal(bool)
    progress = Signal(int, int)
    finished = Signal(str)      # "finished" | "stopped" | "failed"
    failed = Signal(str)
    result = Signal(object)     # core.generate.Trajectory

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._thread: WorkerThread | None = None
        self.closed = False

    def is_active(self) -> bool:
        return self._thread is not None

    def threads(self) -> list[WorkerThread]:
        """The worker thread, if there is one (for the window's shutdown)."""
        return [] if self._thread is None else [self._thread]

    def thread_running(self) -> bool:
        """The worker thread has not ended yet."""
        return self._thread is not None and self._thread.is_running()

    def start(self, model, diffusion, data_shape, num_classes, device, params: dict,
              data_box=None, analytic_data=None) -> None:
        """Sample in a worker thread with the request in `params` (request_for; ConfigError
        when it is invalid); data_box (vector data) bounds the x0 estimates; analytic_data
        (a sample of the training data) switches the steps to Analytic-DPM's variance
        (core.generate.sample)."""
        if self.is_active():
            raise RuntimeError("sampling is already running")
        if self.closed:
            return
        from core.generate import sample

        config = request_for(params, diffusion.num_timesteps, num_classes)
        steps = config.steps_for(diffusion.num_timesteps)
        kwargs = dict(sampler=config.sampler, steps=steps, options=config.sampler_options(),
                      spacing=config.spacing,
                      guidance=float(config.guidance), label=config.label,
                      num_classes=num_classes, seed=config.seed,
                      record_every=record_every_for(steps), data_box=data_box,
                      analytic_data=analytic_data, device=device)
        count = config.n

        def task(progress, should_stop):
            return sample(model, diffusion, count, tuple(data_shape), progress=progress,
                          should_stop=should_stop, **kwargs)

        worker = TaskWorker(task, action="Sampling")
        worker.progress.connect(self._on_progress)
        worker.result.connect(self._on_result)
        worker.failed.connect(self._on_failed)
        self._thread = WorkerThread(worker, self.parent() or self)
        self._thread.done.connect(self._on_done)
        self.busy_changed.emit(True)
        self._thread.start()

    def close(self) -> list[WorkerThread]:
        """Window closing: cancel, refuse new work; returns the thread still running, for
        the caller to wait on (app.controller.ExperimentController.shutdown)."""
        self.closed = True
        if self._thread is None:
            return []
        self._thread.request_stop()
        return [self._thread]

    def cancel(self, wait_ms: int | None = None) -> bool:
        if self._thread is None:
            return True
        return self._thread.stop(wait_ms)

    @Slot(int, int)
    def _on_progress(self, done: int, total: int) -> None:
        self.progress.emit(done, total)

    @Slot(object)
    def _on_result(self, trajectory) -> None:
        self.result.emit(trajectory)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.failed.emit(message)

    @Slot(str)
    def _on_done(self, status: str) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.deleteLater()
        self.busy_changed.emit(False)
        self.finished.emit(status)
