"""The Trajectories panel's view: x_t beside the predicted x0, as 2-D points over the faint
true data or as an image grid (FrameView), and the keys that scrub it (KeyStepper)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QHBoxLayout, QSlider, QWidget

from app.widgets.images import for_image_item
from app.widgets.plots import color


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
