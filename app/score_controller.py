"""The Score panel's controller: which model and data it shows, and its background jobs.

The model is a frozen copy of the EMA weights (Trainer.ema_snapshot), taken between two
training steps while a run is active (TrainWorker.submit, as sampling does) and renewed
every REFRESH_MS while the panel is visible and training goes on, so the view follows the
training without ever touching the live model. Without a trainer, Gaussian-mixture data
still show their exact score (with the diffusion of the shown settings).

Jobs (app.jobs.JobRunner, serial: a new request stops the running one, of a burst only the
last runs): "score-field" restarts when t or the model changes, "score-fisher" when the
model changes; "score-particles" and "score-likelihood" run on request and are cancelled by
Cancel or a new model. Results of a superseded job are dropped (JobRunner generations).
Every signal is emitted in the GUI thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal, Slot

from app import score_jobs

FIELD_DEBOUNCE_MS = 60
REFRESH_MS = 3000
SNAPSHOT_TAG = "score-snapshot"
JOB_NAMES = {"field": "score-field", "fisher": "score-fisher",
             "particles": "score-particles", "likelihood": "score-likelihood",
             "entropy": "score-entropy"}
ENTROPY_POINTS = 1000
MAX_BACKGROUND = 3000


@dataclass
class ScoreSource:
    """What the panel can show: kind "points" (2-D vector data), "other" (images, other
    vectors) or None (no data); T timesteps; whether a model (EMA snapshot at `step`) and
    an exact mixture exist; the data set's name; the view box and a sample of the data
    (2-D only)."""

    kind: str | None
    timesteps: int
    has_model: bool
    has_mixture: bool
    dataset: str
    step: int | None
    box: tuple | None = None
    background: np.ndarray | None = None
    schedule: object = None           # the unrespaced NoiseSchedule of the model


class ScoreController(QObject):
    source_changed = Signal(object)     # ScoreSource
    field_ready = Signal(object)        # app.score_jobs.ScoreField
    fisher_ready = Signal(object)       # dict of fisher_curve_task, or None (clear)
    particles_ready = Signal(object)    # app.score_jobs.ParticleRun
    likelihood_ready = Signal(object)   # list of core.likelihood_table.LikelihoodRow
    entropy_ready = Signal(object)      # dict of score_jobs.ode_entropy_task (+ step), or None
    busy = Signal(str, bool)            # "field" | "fisher" | "particles" | "likelihood"
    progress = Signal(str, int, int)
    error = Signal(str)

    def __init__(self, experiment, parent: QObject | None = None):
        super().__init__(parent)
        self.experiment = experiment
        self.session = experiment.session
        self.jobs = experiment.jobs
        self.training = experiment.training
        self.model = None            # the EMA snapshot the jobs use
        self.step: int | None = None
        self.t = 0
        self.active = False          # the panel is visible: compute the field
        self._dirty = True
        self._snapshot_pending = False
        self._plane = (None, None, None)     # (data set, its sample, the view box)
        self._field_started = 0.0
        self._field_timer = QTimer(self)
        self._field_timer.setSingleShot(True)
        self._field_timer.setInterval(FIELD_DEBOUNCE_MS)
        self._field_timer.timeout.connect(self._compute_field)
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setInterval(REFRESH_MS)
        self._refresh_timer.timeout.connect(self._refresh)
        self.session.trainer_changed.connect(self._on_trainer)
        self.session.dataset_changed.connect(self._on_data)
        self.session.schedule_changed.connect(self._on_data)
        self.training.task_done.connect(self._on_task_done)
        self.training.state_changed.connect(self._on_training_state)
        self.jobs.job_finished.connect(self._on_job_finished)

    # ------------------------------------------------------------------ what is shown
    def _parts(self):
        """(dataset, diffusion, device) of the trained model, else of the shown settings."""
        trainer = self.session.trainer
        if self._usable(trainer):
            return trainer.dataset, trainer.diffusion, getattr(trainer, "device", "cpu")
        dataset = self.session.dataset
        if dataset is None or not self.session.config_valid:
            return None, None, "cpu"
        from core.build import diffusion_from_config

        return dataset, diffusion_from_config(self.session.config, dataset.kind), "cpu"

    @staticmethod
    def _usable(trainer) -> bool:
        """A trainer the panel can read (stand-ins in tests may lack the parts)."""
        return all(hasattr(trainer, name) for name in ("dataset", "diffusion", "ema_snapshot"))

    def source(self) -> ScoreSource:
        dataset, diffusion, _device = self._parts()
        if dataset is None or diffusion is None:
            return ScoreSource(None, 0, False, False, "", None)
        points = dataset.kind == "vector" and tuple(dataset.shape) == (2,)
        mixture = getattr(dataset, "mixture", None) if points else None
        background = box = None
        if points:
            if self._plane[0] is not dataset:     # the same arrays while the data stay
                sample = dataset.train[:MAX_BACKGROUND].detach().cpu().numpy()
                self._plane = (dataset, sample.astype(np.float64),
                               score_jobs.field_box(sample))
            background, box = self._plane[1:]
        return ScoreSource("points" if points else "other",
                           diffusion.schedule.base.num_timesteps, self.model is not None,
                           mixture is not None, dataset.name, self.step, box, background,
                           diffusion.schedule.base)

    def _announce(self) -> None:
        source = self.source()
        self.t = min(self.t, max(0, source.timesteps - 1))
        self.source_changed.emit(source)
        self._dirty = True
        self._compute_all()

    # ------------------------------------------------------------------ the model
    @Slot(object)
    def _on_trainer(self, trainer) -> None:
        for name in JOB_NAMES:
            self.cancel(name)
        self.model, self.step = None, None
        self.fisher_ready.emit(None)
        self.particles_ready.emit(None)      # nothing of the old model stays on screen
        self.likelihood_ready.emit([])
        self.entropy_ready.emit(None)
        self._announce()
        self.request_snapshot()

    @Slot(object)
    def _on_data(self, *_args) -> None:
        if not self._usable(self.session.trainer):
            self._announce()

    def request_snapshot(self) -> None:
        """A fresh EMA snapshot: between two steps of an active run, else at once."""
        trainer = self.session.trainer
        if not self._usable(trainer) or self._snapshot_pending:
            return
        if self.training.is_active():
            self._snapshot_pending = True
            if not self.training.submit(SNAPSHOT_TAG, lambda tr: (tr.ema_snapshot(), tr.step)):
                self._snapshot_pending = False
            return
        self._set_model(trainer.ema_snapshot(), trainer.step)

    @Slot(str, object, str)
    def _on_task_done(self, tag: str, result, message: str) -> None:
        if tag != SNAPSHOT_TAG:
            return
        self._snapshot_pending = False
        if message:
            self.error.emit(message)
        elif result is not None and self._usable(self.session.trainer):
            self._set_model(*result)

    def _set_model(self, model, step) -> None:
        self.model, self.step = model, int(step)
        self._announce()

    @Slot(str)
    def _on_training_state(self, state: str) -> None:
        running = state in ("starting", "running", "paused")
        if running and self.active:
            self._refresh_timer.start()
        elif not running:
            self._refresh_timer.stop()
            if state in ("finished", "stopped"):
                self._snapshot_pending = False   # a request the ending run did not serve
                self.request_snapshot()          # the final weights

    def _refresh(self) -> None:
        if self.jobs.closed:
            self._refresh_timer.stop()
        elif self.active and self.training.is_active() and self.training.state == "running":
            self.request_snapshot()

    def set_active(self, visible: bool) -> None:
        """The panel was shown or hidden: compute only what someone sees."""
        self.active = visible
        if visible and self.training.is_active():
            self._refresh_timer.start()
            self.request_snapshot()
        elif not visible:
            self._refresh_timer.stop()
        if visible and self._dirty:
            self._compute_all()

    # ------------------------------------------------------------------ jobs
    def set_time(self, t: int) -> None:
        """The slider's timestep: the field job restarts (debounced)."""
        self.t = int(t)
        if not self._field_timer.isActive():    # a throttle: dragging or Play never starves it
            self._field_timer.start()

    def _compute_all(self) -> None:
        if not self.active:
            return
        self._dirty = False
        self._compute_field()
        self._compute_fisher()

    def _submit(self, key: str, task, on_result, action: str) -> None:
        self.busy.emit(key, True)
        self.jobs.submit(JOB_NAMES[key], task, on_result, on_error=self._on_error,
                         action=action, serial=True,
                         on_progress=lambda done, total: self.progress.emit(key, done, total))

    def _compute_field(self) -> None:
        if not self.active:
            self._dirty = True
            return
        dataset, diffusion, _device = self._parts()
        source = self.source()
        if source.kind != "points" or not (source.has_model or source.has_mixture):
            self.cancel("field")
            return
        mixture = dataset.mixture if source.has_mixture else None
        self._field_started = time.monotonic()
        self._submit("field", score_jobs.field_task(self.model, diffusion, mixture, source.box,
                                                    self.t), self._on_field,
                     "Computing the score field")

    def _on_field(self, field) -> None:
        """A field arrived: t changes are throttled to about the time a field takes, so a
        dragged slider or Play (the field following the particles) still shows fields
        instead of cancelling every one before it ends."""
        took_ms = 1000 * (time.monotonic() - self._field_started)
        self._field_timer.setInterval(int(max(FIELD_DEBOUNCE_MS, min(1.2 * took_ms, 1000))))
        self.field_ready.emit(field)

    def _compute_fisher(self) -> None:
        dataset, diffusion, _device = self._parts()
        if self.model is None or getattr(dataset, "mixture", None) is None \
                or self.source().kind != "points":
            self.cancel("fisher")
            self.fisher_ready.emit(None)
            return
        self._submit("fisher", score_jobs.fisher_curve_task(self.model, diffusion,
                                                            dataset.mixture),
                     self.fisher_ready.emit, "Computing the Fisher divergence")

    def run_particles(self, request: dict) -> None:
        """request: runs [(label, spec, options)], n, steps, seed, exact (use the mixture's
        exact score instead of the model)."""
        dataset, diffusion, device = self._parts()
        if dataset is None or diffusion is None:
            return
        model = self.model
        if request.get("exact") and getattr(dataset, "mixture", None) is None:
            self.error.emit(f"{dataset.name} is no Gaussian mixture: there is no exact score.")
            return
        if request.get("exact"):
            from core.exact import ExactEps

            model, device = ExactEps(dataset.mixture, diffusion.schedule).eval(), "cpu"
        if model is None:
            self.error.emit("There is no model for the particles yet: train one, open a "
                            "checkpoint, or choose the exact score.")
            return
        data_box = getattr(self.session.trainer, "data_box", None)
        self._submit("particles", score_jobs.particles_task(
            model, diffusion, request["runs"], request["n"], request["steps"],
            request["seed"], data_box=data_box, device=device), self.particles_ready.emit,
            "Running the particles")

    def run_likelihood(self, n: int, seed: int = 0) -> None:
        """The readout on the first n test points (model rows only with a model)."""
        dataset, diffusion, device = self._parts()
        if dataset is None or diffusion is None:
            return
        mixture = getattr(dataset, "mixture", None)
        if self.model is None and mixture is None:
            self.error.emit("There is no model to evaluate yet: train one or open a "
                            "checkpoint.")
            return
        points = dataset.test[:int(n)]
        if len(points) == 0:
            points = dataset.train[:int(n)]
        classes = getattr(self.session.trainer, "num_classes", None)
        self._submit("likelihood", score_jobs.likelihood_task(
            self.model, diffusion, points.double(), mixture=mixture, num_classes=classes,
            seed=seed, device=device), self.likelihood_ready.emit,
            "Computing the likelihoods")

    def run_ode_entropy(self) -> None:
        """H(X_t) of the model's marginals by the probability-flow ODE, from up to
        ENTROPY_POINTS training points (the Entropy panel draws it beside the truth)."""
        dataset, diffusion, device = self._parts()
        if self.model is None or dataset is None or dataset.kind != "vector":
            self.error.emit("H(Xₜ) by the ODE needs a trained model of vector data: train "
                            "one or open a checkpoint.")
            self.entropy_ready.emit(None)
            return
        points = dataset.train[:ENTROPY_POINTS].double()
        step = self.step
        self._submit("entropy", score_jobs.ode_entropy_task(self.model, diffusion, points,
                                                           device=device),
                     lambda result: self.entropy_ready.emit({**result, "step": step}),
                     "Computing H(Xₜ) along the ODE")

    def cancel(self, key: str) -> None:
        """Stop job `key` after its current step; its result is ignored."""
        self.jobs.cancel(JOB_NAMES[key])
        if not self.jobs.busy(JOB_NAMES[key]):
            self.busy.emit(key, False)      # else job_finished says so when it has ended

    def _on_error(self, message: str) -> None:
        self.error.emit(message)

    @Slot(str, str)
    def _on_job_finished(self, name: str, _status: str) -> None:
        for key, job in JOB_NAMES.items():
            if job == name and not self.jobs.busy(name):
                self.busy.emit(key, False)

    def close(self) -> None:
        self._field_timer.stop()
        self._refresh_timer.stop()
