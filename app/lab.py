"""The sampler lab's runs for the Samplers panel: gathers what a run needs (the trained
model's EMA snapshot, taken between training steps while a run is active, like sampling
does; the trainer's data, diffusion and device, or without a trained model the shown
settings' for the exact eps alone), runs app.lab_runs in the experiment controller's job
runner (so closing the window stops it like any job) and reports back. Every signal here
is emitted in the GUI thread."""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Signal, Slot

from app.lab_runs import LabInputs, exact_available, lab_task

JOB = "sampler-lab"
SNAPSHOT_TAG = "lab-snapshot"


class SamplerLab(QObject):
    """`run(settings, sources)`, `cancel()`. Signals: busy_changed(bool), progress(done,
    total), result(app.lab_runs.LabResult), finished(status: "finished" | "stopped" |
    "failed"), status(text, timeout_ms). Errors go to the controller's `error` signal."""

    busy_changed = Signal(bool)
    progress = Signal(int, int)
    result = Signal(object)
    finished = Signal(str)
    status = Signal(str, int)

    def __init__(self, controller, panel=None):
        super().__init__(controller)
        self.controller = controller
        self.session, self.jobs = controller.session, controller.jobs
        self.busy = False
        self._pending = None            # (settings, sources) waiting for the EMA snapshot
        self._cancelled = False
        self._failed = False
        self._stop = threading.Event()   # Cancel: the job ends after its current run
        controller.training.task_done.connect(self._on_task_done)
        self.jobs.job_finished.connect(self._on_job_finished)
        self.status.connect(controller.status)
        if panel is not None:
            self.attach(panel)

    def attach(self, panel) -> None:
        """Wire a Samplers panel: its intent to run() / cancel(), the outcome back to it."""
        panel.run_requested.connect(self.run)
        panel.cancel_requested.connect(self.cancel)
        self.busy_changed.connect(panel.set_busy)
        self.progress.connect(panel.set_progress)
        self.result.connect(panel.show_result)
        self.finished.connect(panel.set_finished)

    # ------------------------------------------------------------------ requests
    @Slot(object, object)
    def run(self, settings, sources) -> None:
        """Run the lab (core.lab.LabSettings) for the sources ("model", "exact")."""
        if self.busy:
            return
        sources = tuple(sources)
        trainer = self.session.trainer
        if "model" in sources and trainer is None and not self.controller.training.is_active():
            self.controller.error.emit("There is no trained model for the lab yet: press "
                                       "Start to train one, or open a checkpoint (the exact ε "
                                       "runs without one).")
            return
        self._set_busy(True)
        self._cancelled = self._failed = False
        if "model" in sources and self.controller.training.is_active():
            self._pending = (settings, sources)
            self.controller.training.submit(SNAPSHOT_TAG, lambda tr: tr.ema_snapshot())
            return
        self._start(settings, sources, trainer.ema_snapshot() if "model" in sources else None)

    def cancel(self) -> None:
        """Stop after the current run (a run is never cut short); the runs finished so far
        are shown (a result with what was done, then finished("stopped"))."""
        if not self.busy:
            return
        self._cancelled = True
        self.status.emit("Cancelling the sampler lab after the current run…", 0)
        if self._pending is not None:
            return                      # the snapshot arrives, is dropped, and we finish
        self._stop.set()                # not jobs.cancel: that would drop the result

    # ------------------------------------------------------------------ the job
    def _start(self, settings, sources, model) -> None:
        try:
            inputs = self._inputs(model)
        except ValueError as exc:
            self._end("failed", str(exc))
            return
        if "exact" in sources and not exact_available(inputs.dataset):
            self._end("failed", "The exact ε needs data with a Gaussian-mixture density.")
            return
        self.status.emit("Running the sampler lab…", 0)
        self._stop = threading.Event()
        self.jobs.submit(JOB, lab_task(inputs, settings, sources, self._stop.is_set),
                         self._on_result,
                         on_error=self._on_error, action="Running the sampler lab",
                         on_progress=self.progress.emit)

    def _inputs(self, model) -> LabInputs:
        """The trainer's diffusion, data and device; without one the shown settings' (the
        exact eps alone)."""
        trainer = self.session.trainer
        if trainer is not None:
            return LabInputs(model, trainer.diffusion, tuple(trainer.data_shape),
                             trainer.dataset, trainer.device, getattr(trainer, "data_box", None))
        dataset = self.session.dataset
        if dataset is None or not self.session.config_valid:
            raise ValueError("The data set is not loaded yet, or the settings are invalid.")
        from core.build import diffusion_from_config
        from core.training import data_box

        diffusion = diffusion_from_config(self.session.config, dataset.kind)
        box = data_box(dataset.train) if dataset.kind == "vector" else None
        return LabInputs(None, diffusion, tuple(dataset.shape), dataset, "cpu", box)

    @Slot(str, object, str)
    def _on_task_done(self, tag: str, result, message: str) -> None:
        if tag != SNAPSHOT_TAG or self._pending is None:
            return
        (settings, sources), self._pending = self._pending, None
        if self._cancelled:
            self._end("stopped")
        elif message:
            self._end("failed", message)
        else:
            self._start(settings, sources, result)

    def _on_result(self, result) -> None:
        if result is not None:         # None: no run finished (app.lab_runs.run)
            self.result.emit(result)

    def _on_error(self, message: str) -> None:
        self._failed = True
        self.controller.error.emit(message)

    @Slot(str, str)
    def _on_job_finished(self, name: str, status: str) -> None:
        if name != JOB or self.jobs.busy(JOB) or not self.busy:
            return
        self._end("stopped" if self._cancelled else "failed" if self._failed else status)

    def _end(self, status: str, message: str = "") -> None:
        if message:
            self.controller.error.emit(message)
        texts = {"finished": "The sampler lab finished.", "stopped": "Sampler lab cancelled.",
                 "failed": "The sampler lab failed (see the message above)."}
        self.status.emit(texts.get(status, status), 8000)
        self._set_busy(False)
        self.finished.emit(status)

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        self.busy_changed.emit(busy)
