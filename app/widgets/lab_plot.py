"""The Samplers panel's quality-vs-NFE plot: one curve per sampler and source (solid: the
trained model, dashed: the exact ε), log x, error bars where the score has a standard
error, the data-vs-data floor as a horizontal line; clicking a point picks that run."""

from __future__ import annotations

import functools
import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, Signal

from app.lab_runs import SOURCE_LABELS, SOURCES
from app.widgets.plots import color, make_plot, pen, set_bounds_ignored, show_in_legend
from core.samplers import get_sampler

# score key -> (axis label, tooltip, higher is better); "{features}" is the image scorer's
# feature space (core.lab.image_scorer's fd_label)
SCORES: dict[str, tuple[str, str, bool]] = {
    "knn_kl": ("k-NN KL (nats)", "KL(samples ‖ data) by the k-nearest-neighbour estimator "
               "(k = 5), ±1 s.e. error bars: sees the shape inside each mode", False),
    "moment_kl": ("moment KL per component (nats)", "Each sample goes to its nearest "
                  "mixture mean; the Gaussian KL of each component's mean and covariance, "
                  "plus the KL of the weights (mixtures only)", False),
    "energy_distance": ("energy distance", "E|X−Y| − ½E|X−X'| − ½E|Y−Y'| against fresh "
                        "true samples, ±1 s.e.; saturates early (near 10 NFE on 8 "
                        "Gaussians)", False),
    "precision": ("k-NN precision", "Share of samples inside the true data's k-NN balls "
                  "(higher is better)", True),
    "recall": ("k-NN recall", "Share of true samples inside the samples' k-NN balls "
               "(higher is better)", True),
    "mean_log_density": ("mean exact log-density (nats)", "Mean log p(x) of the samples "
                         "under the true density, ±1 s.e. It rewards samples piled on the "
                         "modes: read it with a divergence, never rank by it alone", True),
    "fd": ("FD in {features}", "Fréchet distance between Gaussians fitted to the features "
           "of samples and of held-out data images (not FID: the features come from a "
           "small network trained on this data set)", False),
    "kid": ("KID in {features}", "Kernel inception distance (cubic-kernel MMD²) in the "
            "same features, ±1 s.e. over subsets", False),
}
FLOOR_NAME = "data vs data (floor)"


class NfeAxis(pg.AxisItem):
    """A log NFE axis labelled with plain counts at 1, 2 and 5 of each decade."""

    def logTickStrings(self, values, scale, spacing):  # noqa: N802 (pyqtgraph override)
        labels = []
        for value in values:
            count = 10 ** float(value)
            digit = count / 10 ** math.floor(math.log10(count) + 1e-9)
            labels.append(f"{count:,.0f}" if count >= 1 and min(
                abs(digit - d) for d in (1, 2, 5)) < 1e-6 else "")
        return labels


def score_choices(result) -> list[tuple[str, str, str]]:
    """(key, label, tooltip) of the scores the result's runs have, in SCORES order."""
    present = {key for point in result.points for key in point.scores}
    features = next((p.scores["fd_label"] for p in result.points if "fd_label" in p.scores),
                    "the data set's own classifier features")
    return [(key, label.format(features=features), tip) for key, (label, tip, _) in
            SCORES.items() if key in present]


def default_score(kind: str) -> str:
    return "fd" if kind == "image" else "knn_kl"


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


class QualityPlot(QObject):
    """Owns `widget` (a PlotWidget named labQualityPlot). show(result, score) redraws;
    point_clicked(LabPoint) when a point is clicked; select(point) rings one."""

    point_clicked = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.widget = make_plot("labQualityPlot", x_label="network evaluations (NFE)")
        self.widget.setAxisItems({"bottom": NfeAxis("bottom")})
        self.widget.getPlotItem().getAxis("bottom").enableAutoSIPrefix(False)
        self.widget.getPlotItem().setLabel("bottom", "network evaluations (NFE)")
        self.widget.setToolTip("Each point is one run: a sampler at a number of network "
                               "evaluations, from the same x_T. Solid: the trained model; "
                               "dashed: the exact ε (the sampler's own error). Click a point "
                               "to see its samples")
        self.plot = self.widget.getPlotItem()
        # one legend entry per sampler (its colour) and one per source (its line style)
        self.styles = [pg.PlotDataItem(pen=pen("#555555", width=2, style=style), name=name)
                       for style, name in ((Qt.PenStyle.SolidLine, "trained model"),
                                           (Qt.PenStyle.DashLine, "exact ε"))]
        self.marker = pg.ScatterPlotItem(size=17, pen=pg.mkPen("#222222", width=2),
                                         brush=None, symbol="o")
        self.marker.setZValue(10)
        self.plot.addItem(self.marker)
        self.items: list = []
        self.curves: dict[tuple[str, str], pg.PlotDataItem] = {}
        self.log_y = False
        self.score = ""

    def clear(self) -> None:
        for item in self.items:
            self.plot.removeItem(item)
        self.items, self.curves = [], {}
        self.marker.clear()

    def show(self, result, score: str, label: str = "") -> None:
        """Draw `score` of every run of `result` (app.lab_runs.LabResult) against its NFE."""
        self.clear()
        for item in self.styles:
            self.plot.removeItem(item)
        self.plot.legend.clear()            # a fresh layout for the new entries
        self.score = score
        values = [p.scores.get(score) for p in result.points]
        floor = result.floor.get(score)
        shown = [v for v in values + [floor] if finite(v)]
        self.log_y = (bool(shown) and all(v > 0 for v in shown)
                      and not SCORES.get(score, ("", "", True))[2])
        self.plot.setLogMode(x=True, y=self.log_y)
        self.plot.setLabel("left", label or score)
        names = list(dict.fromkeys(result.settings.samplers))
        for index, name in enumerate(names):
            listed = False
            for source in SOURCES:
                rows = sorted((p for p in result.points if p.sampler == name
                               and p.model == source and finite(p.scores.get(score))),
                              key=lambda p: p.nfe)
                if rows:
                    item = self._curve(index, name, source, rows, score)
                    show_in_legend(self.widget, item, not listed)
                    if not listed:
                        self.plot.legend.getLabel(item).setText(get_sampler(name).label)
                    listed = True
        for item, source in zip(self.styles, SOURCES, strict=True):
            if any(p.model == source for p in result.points):
                self.plot.addItem(item)
        nfe = [p.nfe for p in result.points]
        if finite(floor) and nfe:
            line = pg.PlotDataItem([min(nfe), max(nfe)], [floor, floor], name=FLOOR_NAME,
                                   pen=pen("#7F7F7F", width=1.5, style=Qt.PenStyle.DotLine))
            self._add(line)
        # wide and low, to fit above the curves' tails at large NFE
        self.plot.legend.setColumnCount(2 if len(self.plot.legend.items) > 4 else 1)
        self.plot.enableAutoRange()

    def _curve(self, index: int, name: str, source: str, rows,
               score: str) -> pg.PlotDataItem:
        x = np.array([p.nfe for p in rows], dtype=np.float64)
        y = np.array([p.scores[score] for p in rows], dtype=np.float64)
        exact = source == "exact"
        style = Qt.PenStyle.DashLine if exact else Qt.PenStyle.SolidLine
        item = pg.PlotDataItem(
            x, y, pen=pen(index, width=2, style=style), symbol="s" if exact else "o",
            symbolSize=7, symbolPen=pg.mkPen(color(index)),
            symbolBrush=pg.mkBrush("w") if exact else pg.mkBrush(color(index)),
            name=f"{get_sampler(name).label} ({SOURCE_LABELS[source]})")
        item.sigPointsClicked.connect(functools.partial(self._on_clicked, rows))
        self._add(item)
        self.curves[(name, source)] = item
        errors = np.array([p.scores.get(f"{score}_stderr", np.nan) for p in rows])
        if np.any(np.isfinite(errors)):
            errors = np.where(np.isfinite(errors), errors, 0.0)
            top, bottom = self._error_extent(y, errors)
            bars = pg.ErrorBarItem(x=np.log10(x), y=self._view_y(y), top=top, bottom=bottom,
                                   beam=0.02, pen=pen(index, width=1, alpha=170))
            self._add(bars)
            # a bar reaching 0 on a log axis would stretch it by decades: the curves set
            # the range, and such a bar runs off the bottom
            set_bounds_ignored(self.widget, bars, True)
        return item

    def _view_y(self, y: np.ndarray) -> np.ndarray:
        return np.log10(y) if self.log_y else y

    def _error_extent(self, y: np.ndarray, errors: np.ndarray):
        """(top, bottom) of ±1 s.e. bars in view coordinates (log10 on a log axis)."""
        if not self.log_y:
            return errors, errors
        low = np.maximum(y - errors, y * 1e-3)
        return np.log10(y + errors) - np.log10(y), np.log10(y) - np.log10(low)

    def _add(self, item) -> None:
        self.plot.addItem(item)
        self.items.append(item)

    def _on_clicked(self, rows, _item, spots, *_event) -> None:
        if len(spots):
            point = rows[spots[0].index()]
            self.select(point)
            self.point_clicked.emit(point)

    def select(self, point) -> None:
        """Ring `point` (a LabPoint shown in the plot); None removes the ring."""
        value = None if point is None else point.scores.get(self.score)
        if point is None or not finite(value):
            self.marker.clear()
            return
        y = math.log10(value) if self.log_y else value
        self.marker.setData([math.log10(point.nfe)], [y])

    def view_position(self, point) -> tuple[float, float]:
        """Where `point` is drawn, in view coordinates (tests click there)."""
        value = point.scores[self.score]
        return math.log10(point.nfe), (math.log10(value) if self.log_y else value)
