"""Sampling trajectories: sampler settings and Sample/Cancel; the recorded x_t beside the
predicted x0, as an image grid or as points over the faint true data; a slider that scrubs
the recorded steps, play/pause, arrow keys, trails for 2-D points, GIF and PNG-strip export.
The trajectory comes from core.generate.sample (run by the sampling controller).

The sample count defaults to app.advice.POINT_SAMPLES for 2-D points and IMAGE_SAMPLES for
images, chosen when the data kind changes unless the user set a count; `sampleWarning` says
when a request would take far too long on the model's device (app.advice, core.cost)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from app import advice
from app.sampling import analytic_variance_chosen
from app.widgets.frame_view import FrameView, KeyStepper, inside_box, points_range
from app.widgets.images import tile_images
from app.widgets.player import SliderPlayer
from app.widgets.sampler_options import option_value, option_widget, set_option_value
from app.widgets.shortcuts import CANCEL_SAMPLE_KEYS, SAMPLE_KEYS, shortcut_text
from app.widgets.spinboxes import CheckedDoubleSpinBox, limited_double_spin, limited_spin
from app.widgets.trajectory_export import export_gif, export_png_strip
from core.config import SamplingConfig
from core.samplers import DEFAULT_SAMPLER, all_options, get_sampler, samplers
from core.samplers.base import ETA, VARIANCE
from core.spacing import DEFAULT_SPACING, SPACINGS

TRAIL_FRAMES = 8
MAX_TRAIL_POINTS = 50       # more paths than this are a tangle
MAX_BACKGROUND_POINTS = 3000


class TrajectoryPanel(QWidget):
    """Emits `sample_requested(dict)` / `cancel_requested()`; shows session.trajectory."""

    sample_requested = Signal(object)
    cancel_requested = Signal()
    error = Signal(str)      # a readable message for the window's banner
    message = Signal(str)    # a status-bar message

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.setObjectName("trajectoryPanel")
        self.session = session
        self.trajectory = None
        self._analytic_run = False  # the last request estimates sigma*^2 first
        self._cancelling = False    # Cancel was pressed: the current step still ends
        self.frames_left: np.ndarray | None = None
        self.frames_right: np.ndarray | None = None

        self.samplerCombo = QComboBox()
        self.samplerCombo.setObjectName("samplerCombo")
        self.samplerCombo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.samplerCombo.setMinimumContentsLength(16)
        for spec in samplers():
            self.samplerCombo.addItem(spec.label, spec.name)
            self.samplerCombo.setItemData(self.samplerCombo.count() - 1, spec.description,
                                          Qt.ItemDataRole.ToolTipRole)
        # one widget per sampler option (core.samplers), enabled for the samplers taking it
        self.option_specs = all_options()
        self.option_widgets = {name: option_widget(spec)
                               for name, spec in self.option_specs.items()}
        self.varianceCombo = self.option_widgets.get(VARIANCE.name)
        self.etaSpin = self.option_widgets.get(ETA.name)
        self.sampleStepsSpin = limited_spin("sampleStepsSpin", "sampling.steps")
        self.sampleStepsSpin.setValue(100)
        self.sampleStepsSpin.setToolTip(
            "Reverse steps S: all T training steps, or a subsequence of them chosen by the "
            "spacing when S < T (Nichol & Dhariwal 2021); the cost grows with S")
        self.spacingCombo = QComboBox()
        self.spacingCombo.setObjectName("spacingCombo")
        for name, spec in SPACINGS.items():
            self.spacingCombo.addItem(spec.label, name)
        self.spacingCombo.setToolTip(
            "Which S of the T timesteps the steps visit (core.spacing): uniform with both "
            "ends, diffusers' linspace / leading / trailing, DDIM's quadratic, Karras σ "
            "(ρ = 7) or uniform in log-SNR; adaptive samplers choose their own")
        self.guidanceSpin = limited_double_spin(CheckedDoubleSpinBox(), "sampling.guidance")
        self.guidanceSpin.setObjectName("guidanceSpin")
        self.guidanceSpin.setSingleStep(0.5)
        self.guidanceSpin.setToolTip(
            "Classifier-free guidance w (class-conditional models): ε̂ = (1 + w) εθ(xₜ, y) − "
            "w εθ(xₜ, ∅); 0 samples the class without guidance")
        self.classCombo = QComboBox()
        self.classCombo.setObjectName("sampleClassCombo")
        self.classCombo.setToolTip("The class y to sample (class-conditional models); "
                                   "unconditional feeds the null class ∅")
        self.countSpin = limited_spin("sampleCountSpin", "sampling.n")
        self.countSpin.setToolTip(
            f"How many samples to draw at once ({advice.POINT_SAMPLES} for 2-D points and "
            f"{advice.IMAGE_SAMPLES} for images unless you set a count); the time grows "
            "with it")
        self._count_user_set = False
        self._count_kind: str | None = None
        self._set_count(advice.POINT_SAMPLES)
        self.countSpin.valueChanged.connect(self._on_count_edited)
        self.seedSpin = limited_spin("sampleSeedSpin", "sampling.seed")
        self.seedSpin.setToolTip("Seed of the sampling noise (x_T and each step's noise): "
                                 "the same seed gives the same samples")
        self.sampleButton = QPushButton("Sample")
        self.sampleButton.setObjectName("sampleButton")
        self.sampleButton.setToolTip("Draw samples with the EMA weights, also while training "
                                     f"runs ({shortcut_text(SAMPLE_KEYS)})")
        self.cancelButton = QPushButton("Cancel")
        self.cancelButton.setObjectName("cancelSampleButton")
        self.cancelButton.setToolTip("Stop sampling after the current step; the steps so far "
                                     f"are not shown ({shortcut_text(CANCEL_SAMPLE_KEYS)})")
        self.cancelButton.setEnabled(False)
        self.sampleProgress = QProgressBar()
        self.sampleProgress.setObjectName("sampleProgress")
        self.sampleProgress.setRange(0, 1)
        self.sampleProgress.setValue(0)
        self.sampleProgress.setFormat("%v / %m steps")
        self.sampleProgress.setToolTip("Reverse steps done of the request")
        self.sampleWarning = QLabel()
        self.sampleWarning.setObjectName("sampleWarning")
        self.sampleWarning.setWordWrap(True)
        self.sampleWarning.setStyleSheet("QLabel#sampleWarning { color: #5c3d00; background: "
                                         "#fff4db; padding: 2px 6px; }")
        self.sampleWarning.setToolTip("An estimate from the network's FLOPs and a "
                                      "conservative speed for its device (core.cost)")
        self.sampleWarning.hide()

        self.trajectoryView = FrameView("trajectoryView", ("xₜ", "predicted x₀"))
        self.trajectorySlider = QSlider(Qt.Orientation.Horizontal)
        self.trajectorySlider.setObjectName("trajectorySlider")
        self.trajectorySlider.setRange(0, 0)
        self.trajectorySlider.setEnabled(False)
        self.trajectorySlider.setToolTip("The recorded reverse steps: 0 is x_T (pure noise), "
                                         "the last is the sample x₀ (←/→ step, Home/End jump)")
        self.playButton = QPushButton("Play")
        self.playButton.setObjectName("playButton")
        self.playButton.setEnabled(False)
        self.playButton.setToolTip("Play the recorded steps from x_T to x₀ (Space on the view)")
        self.frameLabel = QLabel("No trajectory yet: train a model, then press Sample.")
        self.frameLabel.setObjectName("frameLabel")
        self.trailsCheck = QCheckBox("trails")
        self.trailsCheck.setObjectName("trailsCheck")
        self.trailsCheck.setToolTip(f"Each point's path over the last {TRAIL_FRAMES} recorded "
                                    f"steps, for the first {MAX_TRAIL_POINTS} points (more are "
                                    "a tangle)")
        self.gifButton = QPushButton("GIF…")
        self.gifButton.setObjectName("exportGifButton")
        self.gifButton.setToolTip("Export the trajectory as an animated GIF")
        self.stripButton = QPushButton("PNG strip…")
        self.stripButton.setObjectName("exportStripButton")
        self.stripButton.setToolTip("Export evenly spaced frames side by side as one PNG")
        for button in (self.gifButton, self.stripButton):
            button.setEnabled(False)

        # two rows, so any set of sampler options fits the window: the sampler, its
        # options (only those it takes are shown) and the steps; then what to draw
        self.option_labels = {name: QLabel(spec.label) for name, spec in self.option_specs.items()}
        first = ([("Sampler", self.samplerCombo)]
                 + [(self.option_labels[name], self.option_widgets[name])
                    for name, spec in self.option_specs.items() if spec.kind == "choice"]
                 + [("Steps", self.sampleStepsSpin), ("Spacing", self.spacingCombo)]
                 + [(self.option_labels[name], self.option_widgets[name])
                    for name, spec in self.option_specs.items() if spec.kind != "choice"])
        second = [("Guidance", self.guidanceSpin), ("Class", self.classCombo),
                  ("Samples", self.countSpin), ("Seed", self.seedSpin)]
        controls = QVBoxLayout()
        controls.setSpacing(2)
        for pairs, buttons in ((first, False), (second, True)):
            grid = QGridLayout()
            grid.setHorizontalSpacing(6)
            grid.setVerticalSpacing(2)
            for col, (label, widget) in enumerate(pairs):
                grid.addWidget(label if isinstance(label, QLabel) else QLabel(label), 0, col)
                grid.addWidget(widget, 1, col)
            if buttons:
                grid.addWidget(self.sampleButton, 1, len(pairs))
                grid.addWidget(self.cancelButton, 1, len(pairs) + 1)
                grid.addWidget(self.sampleProgress, 0, len(pairs), 1, 2)
            row = QHBoxLayout()
            row.addLayout(grid)
            row.addStretch(1)
            controls.addLayout(row)
        scrub = QHBoxLayout()
        scrub.addWidget(self.playButton)
        scrub.addWidget(self.trajectorySlider, 1)
        scrub.addWidget(self.trailsCheck)
        scrub.addWidget(self.gifButton)
        scrub.addWidget(self.stripButton)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(controls)
        layout.addWidget(self.sampleWarning)
        layout.addWidget(self.trajectoryView, 1)
        layout.addLayout(scrub)
        layout.addWidget(self.frameLabel)

        self._player = SliderPlayer(self.trajectorySlider, self.playButton)
        self._stepper = KeyStepper(self.trajectorySlider, self.playButton.click)
        self.trajectoryView.installEventFilter(self._stepper)
        self.trajectorySlider.valueChanged.connect(self.show_frame)
        self.trailsCheck.toggled.connect(lambda _on: self.show_frame(self.trajectorySlider.value()))
        self.sampleButton.clicked.connect(self._request)
        self.gifButton.clicked.connect(lambda: self._export_dialog(
            "Export trajectory as GIF", "trajectory.gif", "GIF animations (*.gif)",
            self.export_gif))
        self.stripButton.clicked.connect(lambda: self._export_dialog(
            "Export trajectory as a PNG strip", "trajectory.png", "PNG images (*.png)",
            self.export_png_strip))
        self.cancelButton.clicked.connect(self._cancel)
        self.samplerCombo.currentIndexChanged.connect(self._sampler_changed)
        self.classCombo.currentIndexChanged.connect(self._class_changed)
        session.trajectory_changed.connect(self.show_trajectory)
        session.dataset_changed.connect(self.set_dataset)
        session.trainer_changed.connect(self._on_trainer)
        session.sampling_cost_changed.connect(self._update_warning)
        for spin in (self.sampleStepsSpin, self.countSpin, self.guidanceSpin):
            spin.valueChanged.connect(self._update_warning)
        self._sampler_changed()
        self.set_class_names(None)

    # -- settings ------------------------------------------------------------------------
    def params(self) -> dict:
        """The request as a flat dict (SamplingConfig.to_params: the fields and every
        option by name); the app keeps it in its settings."""
        label = self.classCombo.currentData()
        return SamplingConfig(
            sampler=self.samplerCombo.currentData(), steps=self.sampleStepsSpin.value(),
            n=self.countSpin.value(), seed=self.seedSpin.value(),
            guidance=self.guidanceSpin.value(),
            label=None if label is None or label < 0 else int(label),
            spacing=self.spacingCombo.currentData(),
            options={name: option_value(widget)
                     for name, widget in self.option_widgets.items()}).to_params()

    def set_params(self, params: dict) -> None:
        """Show a dict as params() makes it: a missing sampler or option shows its default,
        a missing number keeps its field; unknown keys and values are ignored."""
        config = SamplingConfig.from_params(params)
        index = self.samplerCombo.findData(params.get("sampler", DEFAULT_SAMPLER))
        if index >= 0:
            self.samplerCombo.setCurrentIndex(index)
        index = self.spacingCombo.findData(params.get("spacing", DEFAULT_SPACING))
        self.spacingCombo.setCurrentIndex(max(index, 0))
        for name, widget in self.option_widgets.items():
            set_option_value(widget, config.options.get(name, self.option_specs[name].default))
        for key, spin in (("steps", self.sampleStepsSpin), ("guidance", self.guidanceSpin),
                          ("n", self.countSpin), ("seed", self.seedSpin)):
            if key in params:
                try:
                    value = type(spin.value())(params[key])
                except (TypeError, ValueError, OverflowError):
                    continue
                if spin is self.countSpin:
                    # a default count of earlier launches is no choice of the user's
                    self._set_count(value)
                    self._count_user_set = value not in (advice.POINT_SAMPLES,
                                                         advice.IMAGE_SAMPLES)
                else:
                    spin.setValue(value)

    def set_class_names(self, names) -> None:
        self.classCombo.clear()
        self.classCombo.addItem("unconditional", -1)
        for index, name in enumerate(names or []):
            self.classCombo.addItem(f"{index}: {name}", index)
        conditional = bool(names)
        self.classCombo.setEnabled(conditional)
        self._class_changed()

    def _class_changed(self, *_args) -> None:
        """Guidance mixes the chosen class with the null class: only with a class."""
        label = self.classCombo.currentData()
        self.guidanceSpin.setEnabled(self.classCombo.isEnabled() and label is not None
                                     and label >= 0)

    def _on_trainer(self, trainer) -> None:
        classes = getattr(trainer, "num_classes", None) if trainer is not None else None
        if classes:
            dataset = getattr(trainer, "dataset", None)
            names = getattr(dataset, "class_names", None) or [str(i) for i in range(classes)]
            self.set_class_names(list(names)[:classes])
        else:
            self.set_class_names(None)

    def _sampler_changed(self) -> None:
        spec = get_sampler(self.samplerCombo.currentData())
        self.samplerCombo.setToolTip(spec.description)
        for name, widget in self.option_widgets.items():
            taken = name in spec.option_names()
            widget.setEnabled(taken)
            widget.setVisible(taken)
            self.option_labels[name].setVisible(taken)
        self.spacingCombo.setEnabled(not spec.adaptive)
        self._update_warning()

    def _set_count(self, value: int) -> None:
        self._setting_count = True
        try:
            self.countSpin.setValue(value)
        finally:
            self._setting_count = False

    def _on_count_edited(self, _value: int) -> None:
        if not getattr(self, "_setting_count", False):
            self._count_user_set = True

    def _update_warning(self, *_args) -> None:
        """The cost of the request on the trained model's device, when it is far too big."""
        text = advice.request_warning(self.session, self.params())
        self.sampleWarning.setText(f"⚠ {text}" if text else "")
        self.sampleWarning.setVisible(bool(text))

    def _cancel(self) -> None:
        self._cancelling = True
        self.cancelButton.setEnabled(False)
        self.sampleProgress.setFormat("cancelling after this step… %v / %m")
        self.cancel_requested.emit()

    def _request(self) -> None:
        params = self.params()
        self._analytic_run = analytic_variance_chosen(params)
        self.sample_requested.emit(params)

    def set_busy(self, busy: bool) -> None:
        self.sampleButton.setEnabled(not busy)
        self.cancelButton.setEnabled(busy)
        self._cancelling = False
        self.sampleProgress.setFormat("%v / %m steps")
        if busy:
            self.sampleProgress.setRange(0, 1)
            self.sampleProgress.setValue(0)

    def set_progress(self, done: int, total: int) -> None:
        """An Analytic-DPM run reports 2S steps: S estimating sigma*^2, then S sampling."""
        self.sampleProgress.setRange(0, max(1, total))
        self.sampleProgress.setValue(done)
        if self._cancelling:
            return                      # the format says "cancelling after this step…"
        estimating = self._analytic_run and done < total // 2
        self.sampleProgress.setFormat("estimating σ*²: %v / %m" if estimating else "%v / %m steps")

    # -- data ------------------------------------------------------------------------------
    def set_dataset(self, dataset) -> None:
        kind = None if dataset is None else dataset.kind
        if kind is not None and kind != self._count_kind:
            self._count_kind = kind
            if not self._count_user_set:
                self._set_count(advice.IMAGE_SAMPLES if kind == "image"
                                else advice.POINT_SAMPLES)
        if dataset is None or dataset.kind != "vector" or dataset.shape[0] != 2:
            self.trajectoryView.set_background(None)
            return
        points = dataset.train[:MAX_BACKGROUND_POINTS].detach().cpu().numpy()
        self.trajectoryView.set_background(points)

    # -- trajectory --------------------------------------------------------------------------
    def show_trajectory(self, trajectory) -> None:
        self.stop_playing()
        self.trajectory = trajectory
        if trajectory is None:
            # a new model: nothing of the old one's samples stays on screen
            self.frames_left = self.frames_right = None
            self.trajectorySlider.setRange(0, 0)
            for widget in (self.trajectorySlider, self.playButton, self.gifButton,
                           self.stripButton):
                widget.setEnabled(False)
            self.trajectoryView.clear()
            self.trailsCheck.setText("trails")
            self.frameLabel.setText("No trajectory of this model yet: press Sample.")
            return
        x, pred = np.asarray(trajectory.x), np.asarray(trajectory.pred_x0)
        images = trajectory.kind == "image"
        self.trajectoryView.set_mode("images" if images else "points")
        if images:
            self.frames_left = np.stack([tile_images(frame) for frame in x])
            self.frames_right = np.stack([tile_images(frame) for frame in pred])
        else:
            self.frames_left = x[..., :2].astype(np.float64)
            self.frames_right = pred[..., :2].astype(np.float64)
            self._fit_points_range()
            count = self.frames_left.shape[1]
            self.trailsCheck.setText(f"trails ({min(count, MAX_TRAIL_POINTS)} of {count:,} "
                                     "points)")
        count = len(self.frames_left)
        self.trajectorySlider.blockSignals(True)
        self.trajectorySlider.setRange(0, count - 1)
        self.trajectorySlider.setValue(count - 1)
        self.trajectorySlider.blockSignals(False)
        for widget in (self.trajectorySlider, self.playButton, self.gifButton, self.stripButton):
            widget.setEnabled(True)
        self.trailsCheck.setEnabled(not images)
        self.show_frame(count - 1)
        if images:
            self.trajectoryView.fit_images()

    def _fit_points_range(self) -> None:
        """One fixed view for all frames that holds every point of every frame (x_t and the
        predicted x0) and the data; only far outliers are left out, and the frame label
        counts them (app.widgets.frame_view.points_range)."""
        dataset = self.session.dataset
        data = None
        if dataset is not None and dataset.kind == "vector":
            data = dataset.train[:MAX_BACKGROUND_POINTS].detach().cpu().numpy()[:, :2]
        lo, hi, _left_out = points_range([self.frames_left, self.frames_right], data)
        self.trajectoryView.set_range(lo, hi)

    def frame_count(self) -> int:
        return 0 if self.frames_left is None or self.trajectory is None else len(self.frames_left)

    def show_frame(self, index: int) -> None:
        if self.frame_count() == 0:
            return
        index = int(np.clip(index, 0, self.frame_count() - 1))
        left, right = self.frames_left[index], self.frames_right[index]
        if index == 0:
            right = None  # x_T: the model has not predicted anything yet
        view = self.trajectoryView
        if view.mode == "images":
            view.show_images(left, right)
        else:
            view.show_points(left, right)
            self._show_trails(index)
        t = int(np.asarray(self.trajectory.timesteps)[index])
        last = self.frame_count() - 1
        where = "x_T, pure noise" if index == 0 else ("the sample x₀" if index == last else "")
        outside = ""
        if view.mode == "points":
            count = int(np.sum(~inside_box(left, *view.view_box)))
            outside = f" · {count} far outliers outside the view" if count else ""
        self.frameLabel.setText(f"frame {index} / {last} · t = {t}" + (f" ({where})" if where else "")
                                + outside + " · ←/→ step, Space play")

    def _show_trails(self, index: int) -> None:
        if not self.trailsCheck.isChecked() or index == 0:
            self.trajectoryView.trails.setData([], [])
            return
        start = max(0, index - TRAIL_FRAMES)
        window = self.frames_left[start: index + 1, :MAX_TRAIL_POINTS]  # (L, N, 2)
        paths = np.transpose(window, (1, 0, 2))  # (N, L, 2)
        connect = np.ones(paths.shape[:2], dtype=bool)
        connect[:, -1] = False
        self.trajectoryView.trails.setData(paths[..., 0].ravel(), paths[..., 1].ravel(),
                                           connect=connect.ravel())

    def stop_playing(self) -> None:
        self._player.stop()

    # -- export ----------------------------------------------------------------------------
    def _export_dialog(self, title: str, name: str, files: str, export) -> None:
        path, _ = QFileDialog.getSaveFileName(self, title, name, files)
        if path:
            self._export(export, path)

    def _export(self, export, path: str) -> None:
        try:
            frames = export(path)
        except (OSError, ValueError) as exc:
            self.error.emit(f"Export failed: {exc}")
            return
        self.message.emit(f"Saved {frames} frames to {path}")

    def export_gif(self, path: str) -> int:
        """Animated GIF of the trajectory (app.widgets.trajectory_export); the frame count."""
        return export_gif(self, path)

    def export_png_strip(self, path: str) -> int:
        """Evenly spaced frames of x_t side by side, each labelled with its t; the count."""
        return export_png_strip(self, path)

