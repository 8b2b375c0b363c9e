"""The Trajectories panel's view: x_t beside the predicted x0, as 2-D points over the faint
true data or as an image grid (FrameView), and the keys that scrub it (KeyStepper)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QHBoxLayout, QSlider, QWidget

from app.widgets.images import for_image_item
from app.widgets.plots import color

OUTLIER_SPANS = 2.0   # points further than this many robust spans out are left out of view


def points_range(frames, data=None) -> tuple[np.ndarray, np.ndarray, int]:
    """(low, high, left_out) of one view that holds every finite 2-D point of `frames`
    (arrays (..., 2)) and `data`: their min and max, except far outliers (a diverging few
    beyond OUTLIER_SPANS times the middle 99.8 % span), which are left out and counted."""
    parts = [np.asarray(f, dtype=np.float64).reshape(-1, 2) for f in frames if f is not None]
    if data is not None:
        parts.append(np.asarray(data, dtype=np.float64).reshape(-1, 2))
    points = np.concatenate(parts) if parts else np.zeros((0, 2))
    points = points[np.all(np.isfinite(points), axis=1)]
    if len(points) == 0:
        return np.full(2, -1.0), np.full(2, 1.0), 0
    low, high = points.min(axis=0), points.max(axis=0)
    core_low, core_high = np.percentile(points, 0.1, axis=0), np.percentile(points, 99.9, axis=0)
    span = np.maximum(core_high - core_low, 1e-6)
    low = np.maximum(low, core_low - OUTLIER_SPANS * span)
    high = np.minimum(high, core_high + OUTLIER_SPANS * span)
    left_out = int(np.sum(np.any((points < low) | (points > high), axis=1)))
    return low, high, left_out


def inside_box(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Which rows of points (N, 2) lie in the box [lo, hi] (NaN rows count as inside)."""
    finite = np.all(np.isfinite(points), axis=1)
    return ~finite | np.all((points >= lo) & (points <= hi), axis=1)


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
        tips = ("xₜ: the samples at the chosen recorded step of the reverse process, from "
                "x_T ~ N(0, I) to x₀",
                "predicted x₀: the network's estimate at that step, "
                "x̂₀ = (xₜ − √(1 − ᾱₜ) ε̂θ(xₜ, t)) / √ᾱₜ")
        for widget, title, tip in zip(self.widgets, titles, tips, strict=True):
            widget.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            widget.setToolTip(tip)
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
        self.view_box = (np.full(2, -np.inf), np.full(2, np.inf))   # the points' fixed view

    def clear(self) -> None:
        """Remove the frame shown (x_t, predicted x0, trails); the data stay."""
        for item in self.points + self.images:
            item.clear()
        self.trails.setData([], [])

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
        self.view_box = (np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64))
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
