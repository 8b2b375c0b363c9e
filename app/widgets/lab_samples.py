"""The Samplers panel's view of one run: its samples beside the truth (fresh true samples,
or data images), 2-D points over the contours of the true density where it is known, or
image grids (app.widgets.frame_view.FrameView with contour lines added)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QTransform

from app.widgets.frame_view import FrameView, inside_box, points_range
from app.widgets.images import tile_images

CONTOUR_PEN = pg.mkPen(90, 90, 90, 150, width=1)


class SamplesView(FrameView):
    """show_run(samples, truth, kind, density, title, truth_title); clear_run()."""

    def __init__(self, parent=None):
        super().__init__("labSamplesView", ("samples", "truth"), parent)
        self.widgets[0].setToolTip("The samples of the chosen run (a point of the plot or a "
                                   "row of the table), all from the same x_T")
        self.widgets[1].setToolTip("The truth: fresh samples of the data's density (a "
                                   "mixture), held-out data, or data images. Grey lines: "
                                   "the true density's contours around 50, 90 and 99 % of "
                                   "its probability")
        self.contours: list[tuple[pg.PlotItem, pg.IsocurveItem]] = []
        self.left_out = 0

    def clear_run(self, message: str = "samples") -> None:
        self.clear()
        self._set_contours(None)
        self.left.setTitle(message, size="9pt")
        self.right.setTitle("truth", size="9pt")

    def show_run(self, samples: np.ndarray, truth: np.ndarray, kind: str, density,
                 title: str, truth_title: str) -> None:
        """samples and truth as app.lab_runs gives them: points (N, 2) or uint8 images
        (N, H, W, C); density an app.lab_runs.DensityGrid or None."""
        self.left.setTitle(title, size="9pt")
        self.right.setTitle(truth_title, size="9pt")
        if kind == "image":
            self.set_mode("images")
            self._set_contours(None)
            self.show_images(tile_images(samples), tile_images(truth))
            self.fit_images()
            return
        self.set_mode("points")
        self._set_contours(density)
        self.show_points(samples, truth)
        data = None if density is None else np.stack([density.low, density.high])
        lo, hi, _ = points_range([samples], np.concatenate([truth] + ([data] if data is not
                                                                       None else [])))
        self.set_range(lo, hi)
        self.left_out = int(np.sum(~inside_box(samples, lo, hi)))

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        """Keep the whole view box in sight: an aspect-locked view resized narrower would
        otherwise cut its sides."""
        super().resizeEvent(event)
        if self.mode == "points" and np.all(np.isfinite(self.view_box)):
            self.set_range(*self.view_box)

    def _set_contours(self, density) -> None:
        for plot, item in self.contours:
            plot.removeItem(item)
        self.contours = []
        if density is None:
            return
        size = density.log_density.shape
        step = (density.high - density.low) / (np.array(size[::-1]) - 1)
        transform = QTransform()
        transform.translate(float(density.low[0]), float(density.low[1]))
        transform.scale(float(step[0]), float(step[1]))
        for plot in (self.left, self.right):
            for level in density.levels:
                item = pg.IsocurveItem(density.log_density, level, pen=CONTOUR_PEN)
                item.setTransform(transform)
                item.setZValue(-1)
                plot.addItem(item)
                self.contours.append((plot, item))
