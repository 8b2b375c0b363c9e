"""The score field's plot: over the 2-D plane at one timestep, the error map
q_t(x) |s_theta - grad log q_t|^2 as a heat map on a log colour scale (with its colour bar),
the exact and the learned score as arrows (app.widgets.quiver), the data faintly, and the
particles of a sampler run with the paths of a few of them."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from app.widgets.plots import color, make_plot
from app.widgets.quiver import QuiverItem, reference_norm

HEAT_DECADES = 3.0          # the colour scale spans this many decades below the maximum
PATH_PARTICLES = 10         # particles whose recent path is drawn (more are a tangle)
COMPARE_PATHS = 6           # ODE vs SDE: whole paths of this many particles from x_T
LEARNED_COLOR = color(0)
EXACT_COLOR = (40, 40, 40, 150)
PARTICLE_COLORS = ("#6A3D9A", "#1B7837")   # one per run (ODE vs SDE: two)
HEAT_MAP = pg.ColorMap([0.0, 0.35, 0.7, 1.0],
                       [(255, 255, 255), (255, 236, 179), (244, 162, 97), (174, 32, 18)])


def log_heat(values: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """(log10 of the map with a floor, (low, high) colour levels): the top HEAT_DECADES
    decades below the largest finite value."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values) & (values > 0)]
    high = float(np.log10(finite.max())) if len(finite) else 0.0
    low = high - HEAT_DECADES
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log10(np.where(np.isfinite(values) & (values > 0), values, 10.0 ** low))
    return np.maximum(logs, low), (low, high)


class ScoreFieldView(QWidget):
    """A key line (`key`, objectName scoreFieldKey) over the plot `plot_widget` (objectName
    scoreFieldPlot): `show_field(field, exact, heat)`, `show_particles(frames, paths)`,
    `set_plane(box, background)`. Tests read `learned.arrow_count`, `exact.arrow_count` and
    `heat.image`."""

    def __init__(self, object_name: str = "scoreFieldPlot", parent=None):
        super().__init__(parent)
        # a key above the plot: a legend inside would hide part of the field
        self.key = QLabel()
        self.key.setObjectName("scoreFieldKey")
        self.key.setWordWrap(True)
        self.plot_widget = make_plot(object_name, "", "x₁", "x₂", legend=False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.key)
        layout.addWidget(self.plot_widget, 1)
        plot = self.plot = self.plot_widget.getPlotItem()
        plot.showGrid(x=True, y=True, alpha=0.15)
        plot.setAspectLocked(True)
        plot.hideButtons()
        self.particle_names: list = []
        self.heat = pg.ImageItem()
        self.heat.setZValue(-20)
        plot.addItem(self.heat)
        self.color_bar = pg.ColorBarItem(values=(-4, 0), colorMap=HEAT_MAP, width=12,
                                         interactive=False, colorMapMenu=False,
                                         label="log₁₀ qₜ|sθ − ∇log qₜ|²")
        self.color_bar.setImageItem(self.heat, insert_in=plot)
        self.background = pg.ScatterPlotItem(size=3, pen=None, brush=pg.mkBrush(120, 120, 120, 45))
        self.background.setZValue(-10)
        plot.addItem(self.background)
        self.exact = QuiverItem(EXACT_COLOR, width=2.2, name="exact score")
        self.learned = QuiverItem(LEARNED_COLOR, width=1.3, name="learned score")
        plot.addItem(self.exact)
        plot.addItem(self.learned)
        self.paths = [pg.PlotCurveItem(pen=pg.mkPen(c, width=1)) for c in PARTICLE_COLORS]
        self.particles = [pg.ScatterPlotItem(size=4, pen=None, brush=pg.mkBrush(c))
                          for c in PARTICLE_COLORS]
        for path, points in zip(self.paths, self.particles, strict=True):
            plot.addItem(path)
            plot.addItem(points)
        self.starts = pg.ScatterPlotItem(size=9, pen=pg.mkPen("#000000", width=1.5), brush=None)
        plot.addItem(self.starts)
        self.box = None
        self._background = None
        self.plot_widget.setToolTip(
            "The score at the slider's t: learned sθ(x, t) = −ε̂θ(x, t)/√(1−ᾱₜ) (blue) and, for "
            "Gaussian-mixture data, the exact ∇log qₜ (grey). Arrow length ∝ |s| up to the "
            "field's 90th percentile (longer ones are clipped to one grid spacing); the "
            "direction is exact. Heat map: qₜ(x)|sθ − ∇log qₜ|², where the learned score is "
            "wrong weighted by how much data is there (its integral is D·Fₜ), log scale "
            f"over {HEAT_DECADES:g} decades.")

    def set_plane(self, box: tuple | None, background: np.ndarray | None) -> None:
        """The view box (xmin, xmax, ymin, ymax) for every t, and the faint data."""
        if box is not None and tuple(float(v) for v in box) != self.box:
            # only a new plane resets the view (a snapshot every few seconds must not)
            self.box = tuple(float(v) for v in box)
            self.plot.setRange(xRange=self.box[:2], yRange=self.box[2:], padding=0.0)
        if background is self._background:
            return
        self._background = background
        if background is None:
            self.background.clear()
        else:
            self.background.setData(pos=np.asarray(background)[:, :2])

    def show_field(self, field, show_exact: bool = True, show_heat: bool = True) -> None:
        """Draw an app.score_jobs.ScoreField (None: clear it)."""
        if field is None:
            self.learned.clear_arrows()
            self.exact.clear_arrows()
            self.heat.clear()
            self.color_bar.hide()
            self.show_key(False, False)
            return
        self.show_key(field.learned is not None, field.exact is not None and show_exact)
        reference = reference_norm(field.exact if field.exact is not None else field.learned)
        spacing = 0.92 * field.spacing
        for item, vectors, shown in ((self.learned, field.learned, True),
                                     (self.exact, field.exact, show_exact)):
            if vectors is None or not shown:
                item.clear_arrows()
            else:
                item.set_arrows(field.points, vectors, spacing, reference)
        if field.heat is None or not show_heat:
            self.heat.clear()
            self.color_bar.hide()
            return
        logs, levels = log_heat(field.heat)
        xmin, xmax, ymin, ymax = field.box
        pixels = logs.shape[0]
        step_x, step_y = (xmax - xmin) / (pixels - 1), (ymax - ymin) / (pixels - 1)
        self.heat.setImage(logs, autoLevels=False)
        # pixel centres on the grid points
        self.heat.setRect(QRectF(xmin - step_x / 2, ymin - step_y / 2, xmax - xmin + step_x,
                                 ymax - ymin + step_y))
        self.color_bar.setLevels(levels)
        self.color_bar.show()

    def show_particles(self, frames: list, paths: list, starts=None) -> None:
        """frames: per run an (N, 2) array (or None); paths: per run (L, M, 2), the last L
        positions of the first M particles; starts: (M, 2) points ringed (the shared x_T
        of compared runs) or None."""
        if starts is None:
            self.starts.clear()
        else:
            self.starts.setData(pos=np.asarray(starts))
        for index, (points, path) in enumerate(zip(self.particles, self.paths, strict=True)):
            frame = frames[index] if index < len(frames) else None
            if frame is None:
                points.clear()
                path.setData([], [])
                continue
            points.setData(pos=frame)
            walk = paths[index] if index < len(paths) else None
            if walk is None or len(walk) < 2:
                path.setData([], [])
                continue
            # ODE vs SDE: the smooth ODE paths drawn bold over the SDE's jitter
            compare = len(frames) > 1
            path.setPen(pg.mkPen(PARTICLE_COLORS[index], width=2.4 if compare and index else 1.0))
            path.setOpacity(0.5 if compare and not index else 0.85)
            lines = np.transpose(walk, (1, 0, 2))                     # (M, L, 2)
            connect = np.ones(lines.shape[:2], dtype=bool)
            connect[:, -1] = False
            path.setData(lines[..., 0].ravel(), lines[..., 1].ravel(), connect=connect.ravel())

    def name_particles(self, names: list) -> None:
        """The particle runs' names for the key (empty list: none)."""
        self.particle_names = list(names)
        self.show_key()

    def show_key(self, learned: bool = True, exact: bool = True) -> None:
        """The title line that says what each colour is."""
        grey = "#505050"
        parts = ([f'<span style="color:{LEARNED_COLOR}">➔ learned sθ</span>'] if learned else [])
        parts += [f'<span style="color:{grey}">➔ exact ∇log qₜ</span>'] if exact else []
        parts += [f'<span style="color:{c}">● {name}</span>'
                  for c, name in zip(PARTICLE_COLORS, self.particle_names, strict=False)]
        self.key.setText("&nbsp;&nbsp; ".join(parts))
