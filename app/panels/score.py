"""The Score panel: the continuous-time view of the same model (Song & Ermon 2019; Song et
al. 2021). At the slider's timestep t, the learned score s_theta = -eps_theta/sqrt(1-abar_t)
as arrows over the plane, the exact score of Gaussian-mixture data beside it and the map
q_t|s_theta - grad log q_t|^2; under it the Fisher divergence F_t per t with its weights in
L_simple and the VLB; on the right, particles run by score-based samplers over the field,
and the likelihood readout. The numbers come from jobs of app.score_controller; this view
only draws them and sends the user's intent."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from app.widgets.likelihood_table import LikelihoodBox
from app.widgets.plots import color, make_plot, pen
from app.widgets.score_field import COMPARE_PATHS, PATH_PARTICLES, ScoreFieldView
from app.widgets.score_particles import ParticleControls
from core.score import loss_weights

PATH_FRAMES = 60             # how far back the drawn paths reach (recorded frames)
NO_2D = ("The score field, the Fisher divergence and the particles are views of the 2-D plane: "
         "choose a 2-D data set (8 Gaussians, moons, Draw…) to see them. The likelihood "
         "readout works for any data.")


class ScorePanel(QWidget):
    """Signals: time_changed(t), visibility_changed(bool), particles_requested(dict),
    particles_cancelled(), likelihood_requested(n), likelihood_cancelled(), and for tests
    field_shown(t) after a field is drawn."""

    time_changed = Signal(int)
    visibility_changed = Signal(bool)
    particles_requested = Signal(object)
    particles_cancelled = Signal()
    likelihood_requested = Signal(int)
    likelihood_cancelled = Signal()
    field_shown = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("scorePanel")
        self.source = None
        self.field_data = None
        self.particle_run = None
        self.fisher_missing = True
        self.timeSlider = QSlider(Qt.Orientation.Horizontal)
        self.timeSlider.setObjectName("scoreTimeSlider")
        self.timeSlider.setRange(0, 0)
        self.timeSlider.setToolTip("The timestep t of the field (0 = data, T−1 = noise; ←/→ "
                                   "step); the score and the error map are recomputed for it")
        self.timeLabel = QLabel("t = 0")
        self.timeLabel.setObjectName("scoreTimeLabel")
        self.timeLabel.setMinimumWidth(150)
        self.exactCheck = QCheckBox("exact score")
        self.exactCheck.setObjectName("scoreExactCheck")
        self.exactCheck.setChecked(True)
        self.exactCheck.setToolTip("Overlay the exact ∇log qₜ of Gaussian-mixture data (grey)")
        self.errorCheck = QCheckBox("error map")
        self.errorCheck.setObjectName("scoreErrorCheck")
        self.errorCheck.setChecked(True)
        self.errorCheck.setToolTip("The heat map qₜ(x)|sθ − ∇log qₜ|² (log colour scale)")
        self.followCheck = QCheckBox("follow particles")
        self.followCheck.setObjectName("scoreFollowCheck")
        self.followCheck.setChecked(True)
        self.followCheck.setToolTip("Scrubbing the particles moves t to their frame's timestep")
        self.field = ScoreFieldView("scoreFieldPlot")
        self.fisherPlot = make_plot("fisherPlot", "Fisher divergence Fₜ = E_qₜ|sθ − ∇log qₜ|² / D",
                                    "timestep t   ·   L_simple(t) = (1−ᾱₜ)·Fₜ + c,   Lₜ₋₁ = βₜ²/(2β̃ₜαₜ)·Fₜ + c",
                                    "per dimension", log_y=True)
        self.fisherPlot.setToolTip(
            "Fₜ per dimension by Monte Carlo over exact draws from qₜ (band: ±2 s.e.). It is "
            "what the losses weight per t: L_simple(t) = (1 − ᾱₜ)·Fₜ + const (denoising score "
            "matching with λ = 1 − ᾱₜ), the VLB term Lₜ₋₁ = βₜ²/(2β̃ₜαₜ)·Fₜ + const (nats/dim)")
        self.weightsLabel = QLabel()
        self.weightsLabel.setObjectName("scoreWeightsLabel")
        self.weightsLabel.setWordWrap(True)
        self.note = QLabel()
        self.note.setObjectName("scoreNote")
        self.note.setWordWrap(True)
        self.particles = ParticleControls()
        self.likelihood = LikelihoodBox()

        plot = self.fisherPlot.getPlotItem()
        self.fisher_curve = plot.plot([], [], pen=pen(0, width=2), symbol="o", symbolSize=4,
                                      symbolPen=None, symbolBrush=color(0), name="Fₜ")
        self.fisher_high = pg.PlotDataItem([], [], pen=pen(0, width=0.5, alpha=60))
        self.fisher_low = pg.PlotDataItem([], [], pen=pen(0, width=0.5, alpha=60))
        for item in (self.fisher_high, self.fisher_low):
            plot.addItem(item)
        plot.addItem(pg.FillBetweenItem(self.fisher_high, self.fisher_low,
                                        brush=pg.mkBrush(0, 114, 178, 40)))
        self.simple_curve = plot.plot([], [], pen=pen(1, width=1.5, style=Qt.PenStyle.DashLine),
                                      name="(1 − ᾱₜ)·Fₜ  (in L_simple)")
        self.vlb_curve = plot.plot([], [], pen=pen(2, width=1.5, style=Qt.PenStyle.DotLine),
                                   name="βₜ²/(2β̃ₜαₜ)·Fₜ  (in the VLB)")
        self.marker = pg.InfiniteLine(pos=0, angle=90, movable=False, pen=pen(7, width=1))
        plot.addItem(self.marker, ignoreBounds=True)
        self.marker_point = pg.ScatterPlotItem(size=9, pen=pen(7, width=1.5), brush=None)
        plot.addItem(self.marker_point)

        # the views of the plane (hidden for other data): the t row and the left column
        self.timeRow = QWidget()
        top = QHBoxLayout(self.timeRow)
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(QLabel("t"))
        top.addWidget(self.timeSlider, 1)
        top.addWidget(self.timeLabel)
        for check in (self.exactCheck, self.errorCheck, self.followCheck):
            top.addWidget(check)
        self.planeArea = QWidget()
        left = QVBoxLayout(self.planeArea)
        left.setContentsMargins(0, 0, 0, 0)
        left.addWidget(self.field, 2)
        left.addWidget(self.fisherPlot, 1)
        right = QVBoxLayout()
        right.addWidget(self.particles)
        right.addWidget(self.likelihood)
        right.addWidget(self.weightsLabel)
        right.addWidget(self.note)
        right.addStretch(1)
        body = QHBoxLayout()
        body.addWidget(self.planeArea, 3)
        body.addLayout(right, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.timeRow)
        layout.addLayout(body, 1)

        self.timeSlider.valueChanged.connect(self._on_time)
        self.exactCheck.toggled.connect(lambda _on: self._redraw_field())
        self.errorCheck.toggled.connect(lambda _on: self._redraw_field())
        self.particles.run_requested.connect(self.particles_requested)
        self.particles.cancel_requested.connect(self.particles_cancelled)
        self.particles.frame_changed.connect(self.show_frame)
        self.likelihood.run_requested.connect(self.likelihood_requested)
        self.likelihood.cancel_requested.connect(self.likelihood_cancelled)
        self.set_source(None)

    # -- visibility ------------------------------------------------------------------------
    def showEvent(self, event):  # noqa: N802
        super().showEvent(event)
        self.visibility_changed.emit(True)

    def hideEvent(self, event):  # noqa: N802
        super().hideEvent(event)
        self.visibility_changed.emit(False)

    # -- what is shown ---------------------------------------------------------------------
    def set_source(self, source) -> None:
        """An app.score_controller.ScoreSource (None: nothing to show yet)."""
        self.source = source
        kind = None if source is None else source.kind
        points = kind == "points"
        for widget in (self.timeRow, self.planeArea, self.weightsLabel, self.particles):
            widget.setVisible(points or kind is None)
        self.likelihood.set_kind(kind, bool(source and source.has_model),
                                 bool(source and source.has_mixture))
        if source is None or kind is None:
            self.note.setText("Load a data set (and train a model) to see its score.")
            self.timeSlider.setEnabled(False)
            return
        self.timeSlider.setEnabled(points)
        if source.timesteps - 1 != self.timeSlider.maximum():
            # a new T: start where the score is still structured (valueChanged tells the
            # controller)
            self.timeSlider.setRange(0, max(0, source.timesteps - 1))
            self.timeSlider.setValue(max(1, source.timesteps // 10))
        self.particles.set_limits(source.timesteps, source.has_model, source.has_mixture)
        if points:
            self.field.set_plane(source.box, source.background)
            self.fisherPlot.getPlotItem().setXRange(0, max(1, source.timesteps - 1),
                                                    padding=0.02)
        self.note.setText(self._describe(source))
        self._show_time(self.timeSlider.value())

    def _describe(self, source) -> str:
        if source.kind != "points":
            return NO_2D
        model = (f"The learned score is the EMA model's at step {source.step:,}"
                 if source.has_model else "No model yet: train one or open a checkpoint to "
                 "see the learned score")
        if source.has_mixture:
            return model + "; the exact score and qₜ are those of the Gaussian mixture."
        return (model + f". {source.dataset} is no Gaussian mixture, so there is no closed-form "
                "∇log qₜ: no exact score, error map, Fisher divergence or true likelihood.")

    def _on_time(self, t: int) -> None:
        self._show_time(t)
        self.time_changed.emit(int(t))

    def _show_time(self, t: int) -> None:
        """The label, the Fisher marker and the weights at t."""
        self.marker.setPos(t)
        source = self.source
        if source is None or getattr(source, "schedule", None) is None:
            self.timeLabel.setText(f"t = {t}")
            return
        schedule = source.schedule
        abar = float(schedule.alphas_cumprod[t])
        self.timeLabel.setText(f"t = {t} · ᾱₜ = {abar:.3g}")
        weights = loss_weights(schedule, t)
        vlb = float(weights["vlb"])
        fisher = getattr(self.field_data, "fisher", None)
        value = (f"Fₜ = {fisher.mean:.3g} ± {fisher.stderr:.1g}"
                 if fisher is not None and self.field_data.t == t else
                 "Fₜ needs a trained model and Gaussian-mixture data (the exact ∇log qₜ)"
                 if self.fisher_missing else "Fₜ: —")
        self.weightsLabel.setText(
            f"<b>Fₜ in the losses.</b> At t = {t}: {value}. Its weight in L_simple is 1 − ᾱₜ = {float(weights['simple']):.3g} "
            f"(L_simple(t) = (1 − ᾱₜ)·Fₜ + const); in the VLB term Lₜ₋₁ it is "
            + (f"βₜ²/(2β̃ₜαₜ) = {vlb:.3g} (nats/dim)." if np.isfinite(vlb) else
               "βₜ²/(2β̃ₜαₜ), which has no value at t = 0 (there L₀ is the decoder's term)."))

    def show_field(self, field) -> None:
        """An app.score_jobs.ScoreField (None clears)."""
        self.field_data = field
        self._redraw_field()
        if field is not None:
            if field.fisher is not None:
                self.marker_point.setData([field.t], [np.log10(max(field.fisher.mean, 1e-300))])
            self._show_time(self.timeSlider.value())
            self.field_shown.emit(field.t)

    def _redraw_field(self) -> None:
        self.field.show_field(self.field_data, self.exactCheck.isChecked(),
                              self.errorCheck.isChecked())

    def show_fisher(self, curve) -> None:
        """dict(t, mean, stderr, simple, vlb) of app.score_jobs.fisher_curve_task, or None."""
        if curve is None:
            for item in (self.fisher_curve, self.fisher_high, self.fisher_low, self.simple_curve,
                         self.vlb_curve):
                item.setData([], [])
            self.marker_point.clear()
            self.fisher_missing = True
            self._show_time(self.timeSlider.value())
            return
        self.fisher_missing = False
        t, mean, err = curve["t"], curve["mean"], curve["stderr"]
        self.fisher_curve.setData(t, mean)
        self.fisher_high.setData(t, mean + 2 * err)
        self.fisher_low.setData(t, np.maximum(mean - 2 * err, mean / 10))
        self.simple_curve.setData(t, curve["simple"] * mean)
        self.vlb_curve.setData(t, curve["vlb"] * mean, connect="finite")

    # -- particles -------------------------------------------------------------------------
    def show_particles(self, run) -> None:
        """An app.score_jobs.ParticleRun (None clears)."""
        self.particle_run = run
        self.field.name_particles([] if run is None else list(run.names))
        self.particles.set_frames(0 if run is None else len(run.timesteps))
        if run is None:
            self.field.show_particles([], [])
            self.particles.frameLabel.setText("Press Run to release particles from the prior.")

    def show_frame(self, index: int) -> None:
        run = self.particle_run
        if run is None or not len(run.timesteps):
            return
        index = int(np.clip(index, 0, len(run.timesteps) - 1))
        # one run: the recent paths of a few particles; ODE vs SDE: whole paths from x_T
        compare = len(run.x) > 1
        start = 0 if compare else max(0, index - PATH_FRAMES)
        shown = COMPARE_PATHS if compare else PATH_PARTICLES
        frames = [x[index] for x in run.x]
        paths = [x[start:index + 1, :shown] for x in run.x]
        self.field.show_particles(frames, paths, run.x[0, 0, :shown] if compare else None)
        t = int(run.timesteps[index])
        last = len(run.timesteps) - 1
        where = " (x_T)" if index == 0 else (" (the samples)" if index == last else "")
        self.particles.frameLabel.setText(
            f"frame {index} / {last} · t = {min(t, self.timeSlider.maximum())}{where} · paths "
            f"of {min(shown, run.x.shape[2])} of {run.x.shape[2]:,} particles")
        if self.followCheck.isChecked():
            self.timeSlider.setValue(min(t, self.timeSlider.maximum()))

    # -- job state -------------------------------------------------------------------------
    def set_busy(self, key: str, busy: bool) -> None:
        if key == "particles":
            self.particles.set_busy(busy)
        elif key == "likelihood":
            self.likelihood.set_busy(busy)

    def set_progress(self, key: str, done: int, total: int) -> None:
        if key == "particles":
            self.particles.set_progress(done, total)
        elif key == "likelihood":
            self.likelihood.set_progress(done, total)

    def show_likelihood(self, rows) -> None:
        """core.likelihood_table rows; an empty list clears the table (a new model)."""
        if not rows:
            self.likelihood.clear()
            return
        self.likelihood.show_rows(rows, None if self.source is None else self.source.step)
