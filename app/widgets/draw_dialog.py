""""Draw…": the user paints a 2-D distribution with the mouse; core.data.dataset_from_points
turns the points into a data set. The canvas spans [-EXTENT, EXTENT]^2, the scale of the toy
data sets, and the brush sprays a few points around the cursor per mouse move.

The spread s turns the drawing into a density: one Gaussian N(p, s² I) per drawn point p
(core.data.drawn), so the exact ε, the sampler lab's exact curves and the true entropies work
on it; 0 keeps the points themselves as the data (no density). The default DEFAULT_SPREAD =
0.1 is in data units, like the canvas: about the default brush radius (0.12), so the
density looks like the painted strokes, softened, and the width of the toys' own modes
(25 Gaussians: 0.1, 8 Gaussians: 0.2); a fixed value, not a fraction of the drawing's size,
so a small drawing is no blurrier than a big one."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

EXTENT = 2.5
MAX_POINTS = 50_000
DEFAULT_SPREAD = 0.1
MAX_SPREAD = 1.0


class DrawCanvas(QWidget):
    """Square canvas; left-drag sprays points, each stroke can be undone."""

    changed = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("drawCanvas")
        self.setMinimumSize(420, 420)
        self.setMouseTracking(False)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.strokes: list[list[np.ndarray]] = []
        self.brush_radius = 0.12   # in data units
        self.points_per_move = 6
        self._rng = np.random.default_rng(0)

    # coordinates: widget pixels <-> data units, y up
    def _side(self) -> float:
        return float(min(self.width(), self.height()))

    def to_data(self, pos: QPointF) -> np.ndarray:
        side = self._side()
        x = (pos.x() - (self.width() - side) / 2) / side * 2 * EXTENT - EXTENT
        y = EXTENT - (pos.y() - (self.height() - side) / 2) / side * 2 * EXTENT
        return np.array([x, y])

    def to_pixels(self, points: np.ndarray) -> np.ndarray:
        side = self._side()
        px = (points[:, 0] + EXTENT) / (2 * EXTENT) * side + (self.width() - side) / 2
        py = (EXTENT - points[:, 1]) / (2 * EXTENT) * side + (self.height() - side) / 2
        return np.stack([px, py], axis=1)

    def points(self) -> np.ndarray:
        chunks = [chunk for stroke in self.strokes for chunk in stroke]
        return np.concatenate(chunks) if chunks else np.zeros((0, 2))

    def spray(self, centre: np.ndarray) -> None:
        """Add points_per_move points uniformly in a disc of brush_radius around centre."""
        if len(self.points()) >= MAX_POINTS or not self.strokes:
            return
        n = self.points_per_move
        angle = self._rng.uniform(0, 2 * np.pi, n)
        radius = self.brush_radius * np.sqrt(self._rng.uniform(0, 1, n))
        new = centre + np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
        self.strokes[-1].append(np.clip(new, -EXTENT, EXTENT))
        self.changed.emit(len(self.points()))
        self.update()

    def clear(self) -> None:
        self.strokes.clear()
        self.changed.emit(0)
        self.update()

    def undo(self) -> None:
        if self.strokes:
            self.strokes.pop()
            self.changed.emit(len(self.points()))
            self.update()

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton:
            self.strokes.append([])
            self.spray(self.to_data(event.position()))

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if event.buttons() & Qt.MouseButton.LeftButton:
            self.spray(self.to_data(event.position()))

    def paintEvent(self, _event) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("white"))
        side = self._side()
        left, top = (self.width() - side) / 2, (self.height() - side) / 2
        painter.setPen(QPen(QColor(220, 220, 220), 1))
        for k in range(-2, 3):
            x = left + (k + EXTENT) / (2 * EXTENT) * side
            y = top + (EXTENT - k) / (2 * EXTENT) * side
            painter.drawLine(QPointF(x, top), QPointF(x, top + side))
            painter.drawLine(QPointF(left, y), QPointF(left + side, y))
        points = self.points()
        if len(points):
            painter.setPen(QPen(QColor(0, 114, 178), 3))
            pixels = self.to_pixels(points)
            painter.drawPoints([QPointF(float(x), float(y)) for x, y in pixels])
        painter.end()


class DrawDialog(QDialog):
    """Paint points; `points()` returns them as an (N, 2) float array after OK."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("drawDialog")
        self.setWindowTitle("Draw a 2-D data set")
        self.canvas = DrawCanvas(self)
        self.countLabel = QLabel("0 points")
        self.countLabel.setObjectName("drawCount")
        brush = QSlider(Qt.Orientation.Horizontal)
        brush.setObjectName("drawBrushSlider")
        brush.setRange(2, 60)
        brush.setValue(12)
        brush.valueChanged.connect(lambda v: setattr(self.canvas, "brush_radius", v / 100))
        undo = QPushButton("Undo stroke")
        undo.clicked.connect(self.canvas.undo)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.canvas.clear)
        self.spreadSpin = QDoubleSpinBox()
        self.spreadSpin.setObjectName("drawSpreadSpin")
        self.spreadSpin.setRange(0.0, MAX_SPREAD)
        self.spreadSpin.setDecimals(3)
        self.spreadSpin.setSingleStep(0.01)
        self.spreadSpin.setValue(DEFAULT_SPREAD)
        self.spreadSpin.setSpecialValueText("0 (the points)")
        self.spreadSpin.setToolTip(
            "Spread σ: the data are a Gaussian mixture with one component N(p, σ² I) per drawn "
            "point p, so their density, the exact ε and the true entropies are known "
            f"(default {DEFAULT_SPREAD}, in the canvas's units). 0: the drawn points "
            "themselves are the data, without a density")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.okButton = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.okButton.setText("Use these points")
        self.okButton.setEnabled(False)
        tools = QHBoxLayout()
        tools.addWidget(QLabel("Brush"))
        tools.addWidget(brush, 1)
        tools.addWidget(undo)
        tools.addWidget(clear)
        tools.addWidget(QLabel("Spread σ"))
        tools.addWidget(self.spreadSpin)
        tools.addWidget(self.countLabel)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Drag with the left mouse button to paint where the data "
                                "should be. Denser painting means more probability mass."))
        layout.addWidget(self.canvas, 1)
        layout.addLayout(tools)
        layout.addWidget(buttons)
        self.canvas.changed.connect(self._on_changed)

    def _on_changed(self, count: int) -> None:
        self.countLabel.setText(f"{count:,} points")
        self.okButton.setEnabled(count >= 2)

    def points(self) -> np.ndarray:
        return self.canvas.points().astype(np.float32)

    def spread(self) -> float:
        """The chosen spread σ (0: the points themselves are the data)."""
        return float(self.spreadSpin.value())
