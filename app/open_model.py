"""Models from elsewhere as the window's current model (File → Open model…): diffusers
pipeline and UNet2DModel folders, improved-/guided-diffusion state dicts with their flags
(core.interop); the explorer's own checkpoints take File → Open checkpoint's path.

The part of the experiment controller (app.controller) that deals with these models. It owns
no widget: the window asks a person for a state dict's flags when `flags_needed` says so
(app.open_model_menu, app.widgets.flags_dialog). Every slow step is a job of the
controller's JobRunner:

    open(path, flags)   job "open-model": core.interop.open_model, describe, module rows
      -> the Model tab describes it (Session.model_source), the settings form shows its
         model and diffusion with an image data set (the current one if it is one)
    data of its shape loaded (the form's choice; anything else is refused, naming shapes)
      -> job "opened-trainer": core.interop.fine_tune_trainer on them (the opened weights,
         step 0) becomes the session's trainer: sampling, the labs and the Score tab use it
      -> job "opened-probe": one probe of it (VLB per t, learned Sigma_theta, Analytic-DPM)
    fine_tune()         the controller's Start trains that trainer on from its weights
    export(folder)      job "export-diffusers": the current model as a diffusers folder
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, fields

from PySide6.QtCore import QObject, Signal

from app.checkpoints import drawn_key
from core.build import dataset_key
from core.config import ConfigError, TrainConfig
from core.data import DATASETS, is_vector_dataset

OPEN_JOB, FLAGS_JOB, TRAINER_JOB = "open-model", "model-flags", "opened-trainer"
PROBE_JOB, EXPORT_JOB = "opened-probe", "export-diffusers"
CLASS_BOX = "“class-conditional (labels)”"   # the settings form's check box
# what the form proposes for training on from weights trained elsewhere (a person edits it):
# a tenth of the default learning rate, a batch a CPU can take, a short run
FINE_TUNE_TRAIN = {"lr": 1e-4, "batch_size": 32, "steps": 1000}


@dataclass
class OpenedResult:
    """What the open job gives the GUI thread: the OpenedModel, its description lines
    (core.interop.describe_lines), its module rows (core.models.describe_model) and the
    path it was opened from."""

    opened: object
    lines: list
    rows: list
    path: str = ""


@dataclass
class FlagsRequest:
    """What the flags dialog needs: the state dict's path, the flags text to prefill, the
    flags a person must check (the tensors cannot show them) and where the text came from."""

    path: str
    text: str
    check: tuple
    origin: str


def shape_text(shape) -> str:
    """(3, 32, 32) -> "3-channel 32×32 images (3×32×32)"; (2,) -> "2-D points"."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        return f"{shape[0]}-D points" if len(shape) == 1 else "×".join(map(str, shape))
    colour = " (grey)" if shape[0] == 1 else " (colour)" if shape[0] == 3 else ""
    return (f"{shape[0]}-channel{colour} {shape[1]}×{shape[2]} images "
            f"({'×'.join(map(str, shape))})")


def fit_problem(opened, dataset, cfg) -> str | None:
    """Why `dataset` (loaded for the settings `cfg`) cannot feed the opened model, naming
    both shapes or class counts; None when it fits."""
    want, have = tuple(opened.data_shape), tuple(int(s) for s in dataset.shape)
    name = getattr(dataset, "title", "") or dataset.name
    model = f"The opened model {opened.title}"
    if want != have:
        advice = ("Choose an image data set in the Experiment panel (each is resized to "
                  f"{want[-1]}×{want[-1]} with {want[0]} channel{'s' if want[0] > 1 else ''})"
                  if len(want) == 3 else "Choose 2-D data")
        return (f"{model} takes {shape_text(want)}; the data set {name} gives "
                f"{shape_text(have)}. {advice}, or open another model.")
    classes = None
    if cfg.train.class_conditional and dataset.num_classes:
        classes = int(dataset.num_classes)
    if classes == opened.num_classes:
        return None
    if opened.num_classes is None:
        return f"{model} is unconditional: untick {CLASS_BOX} to use it with {name}."
    if classes is None and cfg.train.class_conditional:
        return f"{model} is conditioned on {opened.num_classes} classes; {name} has no labels."
    if classes is None:
        return (f"{model} is conditioned on {opened.num_classes} classes: tick {CLASS_BOX} "
                f"(with data of {opened.num_classes} classes).")
    return (f"{model} is conditioned on {opened.num_classes} classes; {name} has {classes}: "
            f"choose data of {opened.num_classes} classes.")


def shown_config(opened, current):
    """The settings form's view of an opened model: its model and diffusion, the train
    section's defaults at its image size and colour with FINE_TUNE_TRAIN, the current data
    set when that is an image set (else the first image set of the registry) and the
    current device."""
    cfg = copy.deepcopy(opened.config)
    dataset = current.train.dataset
    if not dataset or is_vector_dataset(dataset):
        dataset = next(name for name, spec in DATASETS.items() if spec.kind == "image")
    cfg.train.dataset = dataset
    cfg.train.device = current.train.device
    for name, value in FINE_TUNE_TRAIN.items():
        setattr(cfg.train, name, value)
    cfg.train.probe_timesteps = min(cfg.train.probe_timesteps, cfg.diffusion.timesteps)
    return cfg


def train_settings(cfg) -> dict:
    """The train section of the form's settings, but for the data set (for fine_tune_trainer)."""
    return {f.name: getattr(cfg.train, f.name) for f in fields(TrainConfig) if f.name != "dataset"}


def open_task(path: str, flags):
    def task(_progress, _should_stop):
        from core.interop import describe, describe_lines, open_model
        from core.models import describe_model

        opened = open_model(path, flags=flags, device="cpu")
        return OpenedResult(opened, describe_lines(describe(opened)),
                            describe_model(opened.model, opened.data_shape), str(path))
    return task


def flags_task(path: str):
    """The flags to prefill: a flags file beside the state dict, else the guess from its
    tensor shapes (FlagsRequest)."""
    def task(_progress, _should_stop):
        from pathlib import Path

        from core.interop import flags_beside, flags_text, guess_flags_of, parse_flags
        from core.interop.improved_flags import FLAG_ORDER

        beside = flags_beside(Path(path))
        if beside is not None:
            values = parse_flags(beside, source=beside).values
            return FlagsRequest(path, flags_text(values), (), f"from {beside.name} beside it")
        guess = guess_flags_of(path)
        check = tuple(name for name in FLAG_ORDER if name in guess.flags
                      and name not in guess.determined)
        return FlagsRequest(path, flags_text(guess.flags), check,
                            "guessed from the tensor shapes")
    return task


class ModelOpener(QObject):
    """Signals (GUI thread): flags_needed(FlagsRequest) asks for a state dict's flags;
    model_opened(title) when the Model tab shows a newly opened model (and source_opened(path)
    with the file or folder it came from, for File → Open recent); model_ready(title)
    when it is the session's trainer (on data of its shape); probed() when its VLB per t is
    in the session; exported(folder). Errors and status go to the controller's signals."""

    flags_needed = Signal(object)
    model_opened = Signal(str)
    source_opened = Signal(str)
    model_ready = Signal(str)
    probed = Signal()
    exported = Signal(str)

    def __init__(self, controller):
        super().__init__(controller)
        self.controller = controller
        self.session, self.jobs = controller.session, controller.jobs
        self.opened = None       # core.interop.OpenedModel of the current opened model
        self.lines: list[str] = []   # what was recognised (core.interop.describe_lines)
        self.trainer = None      # the trainer built from its weights (None: no data yet)
        self._trainer_key = None     # the data-set key the trainer was built on
        self._building_key = None    # ... and the one being built on now
        self._refused_key = None     # the data last refused (said once)
        self._quiet = False      # our own session changes do not forget the opened model
        self.session.trainer_changed.connect(self._on_trainer_changed)
        self.session.dataset_changed.connect(self.attach_if_ready)
        self.session.config_changed.connect(self.attach_if_ready)

    # ------------------------------------------------------------------ opening
    def open_path(self, path: str) -> None:
        """Open what `path` holds: an improved-diffusion state dict asks for its flags first
        (flags_needed), the explorer's own checkpoints open as checkpoints."""
        from core.interop import InteropError, detect_format
        from core.interop.opened import EXPLORER, IMPROVED

        try:
            kind = detect_format(path)
        except InteropError as exc:
            self.controller.error.emit(f"Opening the model failed: {exc}")
            return
        if kind == EXPLORER:
            self.controller.load_checkpoint(path)
        elif kind == IMPROVED:
            self.jobs.submit(FLAGS_JOB, flags_task(path), self.flags_needed.emit,
                             action=f"Reading {os.path.basename(path)}", path=path)
        else:
            self.open(path)

    def open(self, path: str, flags=None) -> None:
        """Open the model at `path` (flags: an improved-diffusion state dict's flags as
        text, a dict or a JSON file) in the background; on failure nothing changes."""
        if self.controller.training.is_active():
            self.controller.error.emit("Stop training before opening a model.")
            return
        self.controller.status.emit(f"Opening {path}…", 0)
        self.jobs.submit(OPEN_JOB, open_task(path, flags), self._on_opened,
                         action=f"Opening {os.path.basename(os.path.normpath(path))}", path=path)

    def _on_opened(self, result: OpenedResult) -> None:
        control = self.controller
        if control.training.is_active():
            control.error.emit("The model was read, but a run started meanwhile; open it "
                               "again after stopping.")
            return
        opened = result.opened
        self.jobs.cancel(TRAINER_JOB)
        self.jobs.cancel(PROBE_JOB)
        self.opened, self.trainer, self.lines = opened, None, list(result.lines)
        self._trainer_key = self._building_key = self._refused_key = None
        self._quietly(lambda: self.session.set_trainer(None))
        self.session.set_trajectory(None)
        self.session.set_model_source(result.lines)
        self.session.set_model_rows(result.rows)
        control.errors_cleared.emit()
        cfg = shown_config(opened, self.session.config)
        try:
            opened.fine_tune_config(cfg.train.dataset)
        except ConfigError as exc:
            control.warning.emit(f"{opened.title} is open in the Model tab, but the explorer "
                                 f"cannot train or probe it here: {exc}")
        control.show_config.emit(cfg, None)
        control.progress.emit(0, cfg.train.steps)
        control.status.emit(f"Opened {opened.title} ({opened.format}); it becomes the current "
                            f"model on data of its shape: {shape_text(opened.data_shape)}.", 15000)
        self.model_opened.emit(opened.title)
        if result.path:
            self.source_opened.emit(result.path)
        self.attach_if_ready()

    # ------------------------------------------------------------------ data
    def attach_if_ready(self, *_args) -> None:
        """Once the data of the shown settings are loaded: build the opened model's trainer
        on them if they fit (refuse them, once, naming the shapes, if not). A trainer that
        has been fine-tuned is left to the controller's own rules."""
        session, opened = self.session, self.opened
        if opened is None or self.controller.training.is_active() or not session.config_valid:
            return
        if self.trainer is not None and (self.trainer is not session.trainer
                                         or self.trainer.step > 0):
            return
        dataset, cfg = session.dataset, session.config
        if dataset is None or session.dataset_key not in (dataset_key(cfg), drawn_key(dataset)):
            return                      # the data of these settings are still loading
        key = session.dataset_key
        if key == self._building_key or (key == self._trainer_key and self.trainer is not None):
            return
        problem = fit_problem(opened, dataset, cfg)
        if problem is not None:
            if key != self._refused_key:
                self._refused_key = key
                self.controller.error.emit(problem)
            return
        self._refused_key, self._building_key = None, key
        self.controller.status.emit(f"Preparing {opened.title} on {dataset.name}…", 0)
        settings = train_settings(cfg)

        def task(_progress, _should_stop):
            from core.interop import fine_tune_trainer

            return fine_tune_trainer(opened, cfg.train.dataset, **settings)

        self.jobs.submit(TRAINER_JOB, task, lambda trainer: self._on_trainer(opened, key, trainer),
                         on_error=self._on_trainer_error, action=f"Preparing {opened.title}",
                         serial=True)

    def _on_trainer_error(self, message: str) -> None:
        self._building_key = None
        self.controller.error.emit(message)

    def _on_trainer(self, opened, key, trainer) -> None:
        if key == self._building_key:
            self._building_key = None
        if opened is not self.opened or self.controller.training.is_active():
            return
        self.trainer, self._trainer_key = trainer, key
        self._quietly(lambda: self.session.set_trainer(trainer))
        self.session.set_model_source(self.lines[:2] + [f"data here: {trainer.dataset.describe()}"]
                                      + self.lines[2:])
        self.session.set_state("stopped")
        control = self.controller
        control.progress.emit(0, trainer.config.train.steps)
        control.run_state_changed.emit(self.session.state, self.session.config_valid)
        control.status.emit(f"{opened.title} is the current model, on {trainer.dataset.name}: "
                            "computing its VLB per t (one probe)…", 0)
        self.model_ready.emit(opened.title)
        self.jobs.submit(PROBE_JOB, lambda _p, _s: trainer.probe(),
                         lambda probe: self._on_probe(trainer, probe),
                         action=f"Computing the VLB per t of {opened.title}", serial=True)

    def _on_probe(self, trainer, probe: dict) -> None:
        if trainer is not self.session.trainer or self.controller.training.is_active():
            return
        self.session.add_probe(probe)
        self.controller.status.emit(f"The VLB per t of {self.opened.title} is in the VLB "
                                    "terms tab; Fine-tune trains it on these data.", 10000)
        self.probed.emit()

    # ------------------------------------------------------------------ the session
    def _quietly(self, change) -> None:
        self._quiet = True
        try:
            change()
        finally:
            self._quiet = False

    def _on_trainer_changed(self, trainer) -> None:
        """Another model became current (a new run, a checkpoint): forget the opened one."""
        if self._quiet or (trainer is not None and trainer is self.trainer):
            return
        if self.opened is not None:
            self.jobs.cancel(TRAINER_JOB)
            self.jobs.cancel(PROBE_JOB)
            self.opened = self.trainer = self._trainer_key = self._building_key = None
            self.session.set_model_source(None)

    # ------------------------------------------------------------------ fine-tune
    def can_fine_tune(self) -> bool:
        """The opened model is the current trainer and no run is active."""
        return (self.trainer is not None and self.trainer is self.session.trainer
                and not self.controller.training.is_active())

    def fine_tune(self) -> None:
        """Train the opened model on from its weights, on the chosen data (the controller's
        Start continues its trainer)."""
        if not self.can_fine_tune():
            self.controller.error.emit(
                "There is no opened model to fine-tune: open one (File → Open model…) and "
                "choose data of its shape in the Experiment panel, or stop the run.")
            return
        self.jobs.cancel(PROBE_JOB)
        self.controller.start_training()

    # ------------------------------------------------------------------ export
    def export_source(self):
        """The current model as a core.interop OpenedModel (the opened one itself until it
        is fine-tuned; else the trainer's EMA weights); None when there is none."""
        from core.interop import OpenedModel
        from core.interop.opened import EXPLORER

        trainer = self.session.trainer
        if trainer is None or (trainer is self.trainer and trainer.step == 0):
            return self.opened
        name = trainer.config.name or "unnamed"
        return OpenedModel(model=trainer.ema_snapshot(), diffusion=trainer.diffusion,
                           config=copy.deepcopy(trainer.config),
                           data_shape=tuple(trainer.data_shape), num_classes=trainer.num_classes,
                           format=EXPLORER, path=f"the model trained here ({name}, step "
                                                 f"{trainer.step:,})",
                           data_box=getattr(trainer, "data_box", None))

    def export(self, folder: str, force: bool = False) -> None:
        """Write the current model as a diffusers pipeline folder (core.interop.export)."""
        if self.controller.training.is_active():
            self.controller.error.emit("Stop training before exporting the model.")
            return
        source = self.export_source()
        if source is None:
            self.controller.error.emit("There is no model to export: train one, or open a "
                                       "checkpoint or a model.")
            return

        def task(_progress, _should_stop):
            from core.interop import export_diffusers

            return export_diffusers(source, folder, force=force)

        self.controller.status.emit(f"Exporting to {folder}…", 0)
        self.jobs.submit(EXPORT_JOB, task, lambda files: self._on_exported(folder, files),
                         action="Exporting the model", path=folder)

    def _on_exported(self, folder: str, files) -> None:
        self.controller.status.emit(f"Exported {folder}: a diffusers DDPMPipeline folder "
                                    f"({len(files)} files).", 10000)
        self.exported.emit(folder)
