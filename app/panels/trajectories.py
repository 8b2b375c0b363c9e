"""Sampling trajectories: sampler settings and Sample/Cancel; the recorded x_t beside the
predicted x0, as an image grid or as points over the faint true data; a slider that scrubs
the recorded steps, play/pause, arrow keys, trails for 2-D points, GIF and PNG-strip export.
The trajectory comes from core.generate.sample (run by the sampling controller)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PIL import Image, ImageDraw
from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from app.widgets.images import for_image_item, qimage_to_array, tile_images
from app.widgets.plots import color

TRAIL_FRAMES = 8
MAX_TRAIL_POINTS = 150
MAX_BACKGROUND_POINTS = 3000
PLAY_INTERVAL_MS = 40
GIF_MAX_FRAMES = 80
STRIP_FRAMES = 8
GIF_MAX_SIDE = 720
STRIP_SIDE = 320


def _points_view(plot: pg.PlotItem) -> None:
    plot.setAspectLocked(True)
    plot.showGrid(x=True, y=True, alpha=0.15)
    plot.hideButtons()


def _image_view(plot: pg.PlotItem) -> None:
    plot.setAspectLocked(True)
    plot.invertY(True)
    plot.hideAxis("left")
    plot.hideAxis("bottom")
    plot.hideButtons()


class FrameView(QWidget):
    """Two equal views side by side: a frame's x_t and its predicted x0 (one widget, so
    grab() captures both and it takes the keyboard focus for the arrow keys)."""

    def __init__(self, object_name: str, titles: tuple[str, str], parent=None):
        super().__init__(parent)
        self.setObjectName(object_name)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.widgets = [pg.PlotWidget(), pg.PlotWidget()]
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        for widget, title in zip(self.widgets, titles, strict=True):
            widget.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            widget.getPlotItem().setTitle(title, size="11pt")
            layout.addWidget(widget, 1)
        self.left, self.right = (w.getPlotItem() for w in self.widgets)
        for plot in (self.left, self.right):
            _points_view(plot)
        grey = pg.mkBrush(120, 120, 120, 40)
        self.background = [pg.ScatterPlotItem(size=3, pen=None, brush=grey) for _ in range(2)]
        brushes = [pg.mkBrush(color(0)), pg.mkBrush(color(1))]
        self.points = [pg.ScatterPlotItem(size=4, pen=None, brush=b) for b in brushes]
        self.trails = pg.PlotCurveItem(pen=pg.mkPen(0, 114, 178, 60, width=1))
        self.images = [pg.ImageItem(), pg.ImageItem()]
        for plot, bg, pts, img in zip((self.left, self.right), self.background, self.points,
                                      self.images, strict=True):
            plot.addItem(img)
            plot.addItem(bg)
            plot.addItem(pts)
        self.left.addItem(self.trails)
        self.mode = "points"

    def mousePressEvent(self, event) -> None:  # noqa: N802
        self.setFocus()
        super().mousePressEvent(event)

    def set_mode(self, mode: str) -> None:
        """"points" (2-D scatter) or "images" (a tiled grid)."""
        self.mode = mode
        images = mode == "images"
        for plot in (self.left, self.right):
            if images:
                _image_view(plot)
            else:
                plot.invertY(False)
                plot.showAxis("left")
                plot.showAxis("bottom")
                _points_view(plot)
        for item in self.images:
            item.setVisible(images)
        for item in self.background + self.points + [self.trails]:
            item.setVisible(not images)

    def set_background(self, points: np.ndarray | None) -> None:
        for item in self.background:
            if points is None:
                item.clear()
            else:
                item.setData(pos=points)

    def show_points(self, left: np.ndarray, right: np.ndarray | None) -> None:
        self.points[0].setData(pos=left)
        if right is None:
            self.points[1].clear()
        else:
            self.points[1].setData(pos=right)

    def show_images(self, left: np.ndarray, right: np.ndarray | None) -> None:
        self.images[0].setImage(for_image_item(left), levels=(0, 255), autoLevels=False)
        if right is None:
            self.images[1].clear()
        else:
            self.images[1].setImage(for_image_item(right), levels=(0, 255), autoLevels=False)

    def set_range(self, lo: np.ndarray, hi: np.ndarray) -> None:
        for plot in (self.left, self.right):
            plot.setRange(xRange=(float(lo[0]), float(hi[0])),
                          yRange=(float(lo[1]), float(hi[1])), padding=0.02)

    def fit_images(self) -> None:
        for plot in (self.left, self.right):
            plot.autoRange(padding=0.01)


class KeyStepper(QObject):
    """Arrow keys step the slider, Home/End jump, Space plays, on the watched view."""

    def __init__(self, slider: QSlider, toggle_play):
        super().__init__(slider)
        self.slider = slider
        self.toggle_play = toggle_play

    def eventFilter(self, watched, event) -> bool:  # noqa: N802
        if event.type() != QEvent.Type.KeyPress:
            return False
        key = event.key()
        if key in (Qt.Key.Key_Left, Qt.Key.Key_Down):
            self.slider.setValue(self.slider.value() - 1)
        elif key in (Qt.Key.Key_Right, Qt.Key.Key_Up):
            self.slider.setValue(self.slider.value() + 1)
        elif key == Qt.Key.Key_Home:
            self.slider.setValue(self.slider.minimum())
        elif key == Qt.Key.Key_End:
            self.slider.setValue(self.slider.maximum())
        elif key == Qt.Key.Key_Space:
            self.toggle_play()
        else:
            return False
        return True


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
        self.frames_left: np.ndarray | None = None
        self.frames_right: np.ndarray | None = None

        self.samplerCombo = QComboBox()
        self.samplerCombo.setObjectName("samplerCombo")
        self.samplerCombo.addItem("DDPM", "ddpm")
        self.samplerCombo.addItem("DDIM", "ddim")
        self.samplerCombo.setToolTip("DDPM: ancestral sampling, noise added at every step. "
                                     "DDIM: deterministic for η = 0.")
        self.varianceCombo = QComboBox()
        self.varianceCombo.setObjectName("sampleVarianceCombo")
        self.varianceCombo.addItem("as trained", "model")
        self.varianceCombo.addItem("Analytic-DPM", "analytic")
        self.varianceCombo.setToolTip(
            "The variance of each DDPM step: the model's own (fixed β̃/β or learned Σθ), or "
            "Analytic-DPM's optimal σ*² (Bao et al. 2022), estimated first from the network's "
            "ε on a sample of the training data. Lowest NLL bound with few steps in our toy runs.")
        self.sampleStepsSpin = QSpinBox()
        self.sampleStepsSpin.setObjectName("sampleStepsSpin")
        self.sampleStepsSpin.setRange(1, 20000)
        self.sampleStepsSpin.setValue(100)
        self.sampleStepsSpin.setToolTip("Reverse steps (a respaced subsequence when below T)")
        self.etaSpin = QDoubleSpinBox()
        self.etaSpin.setObjectName("etaSpin")
        self.etaSpin.setRange(0.0, 1.0)
        self.etaSpin.setSingleStep(0.1)
        self.etaSpin.setToolTip("DDIM η: 0 deterministic, 1 like DDPM")
        self.guidanceSpin = QDoubleSpinBox()
        self.guidanceSpin.setObjectName("guidanceSpin")
        self.guidanceSpin.setRange(0.0, 20.0)
        self.guidanceSpin.setSingleStep(0.5)
        self.guidanceSpin.setToolTip("Classifier-free guidance scale (class-conditional models)")
        self.classCombo = QComboBox()
        self.classCombo.setObjectName("sampleClassCombo")
        self.countSpin = QSpinBox()
        self.countSpin.setObjectName("sampleCountSpin")
        self.countSpin.setRange(1, 5000)
        self.countSpin.setValue(500)
        self.seedSpin = QSpinBox()
        self.seedSpin.setObjectName("sampleSeedSpin")
        self.seedSpin.setRange(0, 2**31 - 1)
        self.sampleButton = QPushButton("Sample")
        self.sampleButton.setObjectName("sampleButton")
        self.cancelButton = QPushButton("Cancel")
        self.cancelButton.setObjectName("cancelSampleButton")
        self.cancelButton.setEnabled(False)
        self.sampleProgress = QProgressBar()
        self.sampleProgress.setObjectName("sampleProgress")
        self.sampleProgress.setRange(0, 1)
        self.sampleProgress.setValue(0)
        self.sampleProgress.setFormat("%v / %m steps")

        self.trajectoryView = FrameView("trajectoryView", ("xₜ", "predicted x₀"))
        self.trajectorySlider = QSlider(Qt.Orientation.Horizontal)
        self.trajectorySlider.setObjectName("trajectorySlider")
        self.trajectorySlider.setRange(0, 0)
        self.trajectorySlider.setEnabled(False)
        self.play_icon = self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay)
        self.pause_icon = self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPause)
        self.playButton = QPushButton(self.play_icon, "Play")
        self.playButton.setObjectName("playButton")
        self.playButton.setCheckable(True)
        self.playButton.setEnabled(False)
        self.frameLabel = QLabel("No trajectory yet: train a model, then press Sample.")
        self.frameLabel.setObjectName("frameLabel")
        self.trailsCheck = QCheckBox("trails")
        self.trailsCheck.setObjectName("trailsCheck")
        self.gifButton = QPushButton("GIF…")
        self.gifButton.setObjectName("exportGifButton")
        self.gifButton.setToolTip("Export the trajectory as an animated GIF")
        self.stripButton = QPushButton("PNG strip…")
        self.stripButton.setObjectName("exportStripButton")
        self.stripButton.setToolTip("Export evenly spaced frames side by side as one PNG")
        for button in (self.gifButton, self.stripButton):
            button.setEnabled(False)

        controls = QGridLayout()
        controls.setHorizontalSpacing(6)
        controls.setVerticalSpacing(2)
        pairs = [("Sampler", self.samplerCombo), ("Variance", self.varianceCombo),
                 ("Steps", self.sampleStepsSpin),
                 ("η", self.etaSpin), ("Guidance", self.guidanceSpin),
                 ("Class", self.classCombo), ("Samples", self.countSpin),
                 ("Seed", self.seedSpin)]
        for col, (label, widget) in enumerate(pairs):
            controls.addWidget(QLabel(label), 0, col)
            controls.addWidget(widget, 1, col)
        controls.addWidget(self.sampleButton, 1, len(pairs))
        controls.addWidget(self.cancelButton, 1, len(pairs) + 1)
        controls.addWidget(self.sampleProgress, 0, len(pairs), 1, 2)
        scrub = QHBoxLayout()
        scrub.addWidget(self.playButton)
        scrub.addWidget(self.trajectorySlider, 1)
        scrub.addWidget(self.trailsCheck)
        scrub.addWidget(self.gifButton)
        scrub.addWidget(self.stripButton)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(controls)
        layout.addWidget(self.trajectoryView, 1)
        layout.addLayout(scrub)
        layout.addWidget(self.frameLabel)

        self._play_timer = QTimer(self)
        self._play_timer.setInterval(PLAY_INTERVAL_MS)
        self._play_timer.timeout.connect(self._advance)
        self._stepper = KeyStepper(self.trajectorySlider, self.playButton.click)
        self.trajectoryView.installEventFilter(self._stepper)
        self.trajectorySlider.valueChanged.connect(self.show_frame)
        self.playButton.toggled.connect(self._on_play)
        self.trailsCheck.toggled.connect(lambda _on: self.show_frame(self.trajectorySlider.value()))
        self.sampleButton.clicked.connect(self._request)
        self.gifButton.clicked.connect(self._export_gif_dialog)
        self.stripButton.clicked.connect(self._export_strip_dialog)
        self.cancelButton.clicked.connect(self.cancel_requested)
        self.samplerCombo.currentIndexChanged.connect(self._sampler_changed)
        self.classCombo.currentIndexChanged.connect(self._class_changed)
        session.trajectory_changed.connect(self.show_trajectory)
        session.dataset_changed.connect(self.set_dataset)
        session.trainer_changed.connect(self._on_trainer)
        self._sampler_changed()
        self.set_class_names(None)

    # -- settings ------------------------------------------------------------------------
    def params(self) -> dict:
        label = self.classCombo.currentData()
        return {"sampler": self.samplerCombo.currentData(),
                "variance": self.varianceCombo.currentData(),
                "steps": self.sampleStepsSpin.value(), "eta": self.etaSpin.value(),
                "guidance": self.guidanceSpin.value(),
                "label": None if label is None or label < 0 else int(label),
                "n": self.countSpin.value(), "seed": self.seedSpin.value()}

    def set_params(self, params: dict) -> None:
        index = self.samplerCombo.findData(params.get("sampler", "ddpm"))
        if index >= 0:
            self.samplerCombo.setCurrentIndex(index)
        index = self.varianceCombo.findData(params.get("variance", "model"))
        if index >= 0:
            self.varianceCombo.setCurrentIndex(index)
        for key, spin in (("steps", self.sampleStepsSpin), ("eta", self.etaSpin),
                          ("guidance", self.guidanceSpin), ("n", self.countSpin),
                          ("seed", self.seedSpin)):
            if key in params:
                try:
                    spin.setValue(type(spin.value())(params[key]))
                except (TypeError, ValueError):
                    pass

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
        ddim = self.samplerCombo.currentData() == "ddim"
        self.etaSpin.setEnabled(ddim)
        self.varianceCombo.setEnabled(not ddim)  # DDIM sets its noise through eta

    def _request(self) -> None:
        params = self.params()
        self._analytic_run = params["variance"] == "analytic" and params["sampler"] == "ddpm"
        self.sample_requested.emit(params)

    def set_busy(self, busy: bool) -> None:
        self.sampleButton.setEnabled(not busy)
        self.cancelButton.setEnabled(busy)
        if busy:
            self.sampleProgress.setRange(0, 1)
            self.sampleProgress.setValue(0)

    def set_progress(self, done: int, total: int) -> None:
        """An Analytic-DPM run reports 2S steps: S estimating sigma*^2, then S sampling."""
        self.sampleProgress.setRange(0, max(1, total))
        self.sampleProgress.setValue(done)
        estimating = self._analytic_run and done < total // 2
        self.sampleProgress.setFormat("estimating σ*²: %v / %m" if estimating else "%v / %m steps")

    # -- data ------------------------------------------------------------------------------
    def set_dataset(self, dataset) -> None:
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
            self.trajectorySlider.setRange(0, 0)
            for widget in (self.trajectorySlider, self.playButton, self.gifButton,
                           self.stripButton):
                widget.setEnabled(False)
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
        """One fixed view for all frames: the data, the noise x_T and the final samples
        (the middle 99 % of them, so a few stray points do not shrink the picture)."""
        frames = np.concatenate([self.frames_left[0], self.frames_left[-1]])
        frames = frames[np.all(np.isfinite(frames), axis=1)]
        lo, hi = np.percentile(frames, 0.5, axis=0), np.percentile(frames, 99.5, axis=0)
        dataset = self.session.dataset
        if dataset is not None and dataset.kind == "vector":
            data = dataset.train[:MAX_BACKGROUND_POINTS].detach().cpu().numpy()[:, :2]
            lo, hi = np.minimum(lo, data.min(axis=0)), np.maximum(hi, data.max(axis=0))
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
        self.frameLabel.setText(f"frame {index} / {last} · t = {t}" + (f" ({where})" if where else "")
                                + " · ←/→ step, Space play")

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

    # -- playback --------------------------------------------------------------------------
    def _on_play(self, playing: bool) -> None:
        if playing:
            if self.trajectorySlider.value() >= self.trajectorySlider.maximum():
                self.trajectorySlider.setValue(0)
            self.playButton.setText("Pause")
            self.playButton.setIcon(self.pause_icon)
            self._play_timer.start()
        else:
            self.playButton.setText("Play")
            self.playButton.setIcon(self.play_icon)
            self._play_timer.stop()

    def stop_playing(self) -> None:
        if self.playButton.isChecked():
            self.playButton.setChecked(False)

    def _advance(self) -> None:
        step = max(1, self.frame_count() // 100)
        value = self.trajectorySlider.value() + step
        if value >= self.trajectorySlider.maximum():
            self.trajectorySlider.setValue(self.trajectorySlider.maximum())
            self.stop_playing()
        else:
            self.trajectorySlider.setValue(value)

    # -- export ----------------------------------------------------------------------------
    def _export_gif_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export trajectory as GIF", "trajectory.gif",
                                              "GIF animations (*.gif)")
        if path:
            self._export(self.export_gif, path)

    def _export_strip_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export trajectory as a PNG strip",
                                              "trajectory.png", "PNG images (*.png)")
        if path:
            self._export(self.export_png_strip, path)

    def _export(self, export, path: str) -> None:
        try:
            frames = export(path)
        except (OSError, ValueError) as exc:
            self.error.emit(f"Export failed: {exc}")
            return
        self.message.emit(f"Saved {frames} frames to {path}")

    def _grab_frames(self, indices, widget, max_side: int) -> list[tuple[int, Image.Image]]:
        """(t, picture of `widget`) at each frame index, scaled to at most max_side pixels."""
        current = self.trajectorySlider.value()
        frames = []
        try:
            for index in indices:
                self.show_frame(int(index))
                image = Image.fromarray(qimage_to_array(widget.grab().toImage()))
                image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
                t = int(np.asarray(self.trajectory.timesteps)[int(index)])
                frames.append((t, image))
        finally:
            self.show_frame(current)
        return frames

    def export_gif(self, path: str) -> int:
        """Animated GIF of the trajectory (at most GIF_MAX_FRAMES frames); returns the count."""
        if self.frame_count() == 0:
            raise ValueError("there is no trajectory to export; press Sample first")
        indices = np.unique(np.linspace(0, self.frame_count() - 1,
                                        min(GIF_MAX_FRAMES, self.frame_count())).round().astype(int))
        frames = [image.convert("P", palette=Image.Palette.ADAPTIVE)
                  for _, image in self._grab_frames(indices, self.trajectoryView, GIF_MAX_SIDE)]
        durations = [60] * (len(frames) - 1) + [1500]
        frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:],
                       duration=durations, loop=0)
        return len(frames)

    def export_png_strip(self, path: str) -> int:
        """Evenly spaced frames of x_t side by side, each labelled with its t."""
        if self.frame_count() == 0:
            raise ValueError("there is no trajectory to export; press Sample first")
        indices = np.unique(np.linspace(0, self.frame_count() - 1,
                                        min(STRIP_FRAMES, self.frame_count())).round().astype(int))
        frames = self._grab_frames(indices, self.trajectoryView.widgets[0], STRIP_SIDE)
        width = sum(image.width for _, image in frames)
        height = max(image.height for _, image in frames) + 22
        strip = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(strip)
        left = 0
        for t, image in frames:
            strip.paste(image, (left, 22))
            draw.text((left + 6, 4), f"t = {t}", fill=(0, 0, 0))
            left += image.width
        strip.save(path, format="PNG")
        return len(frames)
