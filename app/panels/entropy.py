"""Entropy of the reverse step, in nats per dimension: the Sohl-Dickstein bounds
H(X_t|X_{t-1}) (upper) and D/2 log(2 pi e beta-tilde_t) (lower) from core.entropy with the
bound that holds for any data, the learned variance's entropy and the Analytic-DPM
variance's entropy from the trainer's probes, the true H(X_{t-1}|X_t) where the data is a
known Gaussian mixture, and the marginal ("system") entropy H(X_t) with its change per
step. A second plot puts every curve on one scale, its position between the bounds
(0 = beta-tilde, 1 = beta), where the differences are visible at every t. Bounds redraw at
once with the schedule; data-dependent curves arrive from a job."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QPushButton, QWidget

from app.widgets.plots import (
    color,
    finite_or_nan,
    link_x,
    make_plot,
    pen,
    rename_curve,
    show_in_legend,
)
from core.entropy import (
    entropy_bounds,
    general_upper_bound,
    learned_variance_entropy,
    position_between_bounds,
)
from core.options import VarType


def _empty_error_bars() -> dict:
    return {"x": np.zeros(0), "y": np.zeros(0), "height": np.zeros(0)}


class EntropyPanel(QWidget):
    """`entropyPlot` (bounds, learned, Analytic-DPM, true), `entropyPositionPlot` (the same
    entropies as positions between the bounds), `marginalEntropyPlot` (H(X_t): exact or a
    Gaussian bound from the data, and the model's by the probability-flow ODE on request:
    `odeEntropyButton` emits `ode_entropy_requested`), `entropyDeltaPlot`."""

    ode_entropy_requested = Signal()

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.setObjectName("entropyPanel")
        self.session = session
        self.entropyPlot = make_plot("entropyPlot", "Entropy of the reverse step H(Xₜ₋₁ | Xₜ)",
                                     "timestep t", "nats / dimension")
        self.positionPlot = make_plot(
            "entropyPositionPlot", "Where it lies between the bounds: (H − lower) / (upper − lower)",
            "timestep t", "0 = β̃ₜ bound, 1 = βₜ bound")
        self.marginalPlot = make_plot("marginalEntropyPlot", "System entropy H(Xₜ)",
                                      "timestep t", "nats / dimension")
        self.deltaPlot = make_plot("entropyDeltaPlot", "Entropy produced per step",
                                   "timestep t", "Δ nats / dimension")
        self.entropyPlot.setToolTip(
            "Entropy per dimension of the reverse step: between Sohl-Dickstein et al.'s bounds "
            "½log(2πe β̃ₜ) ≤ H(Xₜ₋₁|Xₜ) ≤ H(Xₜ|Xₜ₋₁) = ½log(2πe βₜ) (the upper one for data of "
            "variance ≤ 1), the learned and Analytic-DPM variances' ½log(2πe Σ), the truth "
            "for Gaussian mixtures")
        self.positionPlot.setToolTip("Each entropy's position between the bounds: (H − lower) "
                                     "/ (upper − lower); for a learned range this is E v")
        self.marginalPlot.setToolTip("The entropy of xₜ itself, per dimension: exact for "
                                     "Gaussian mixtures, else that of a Gaussian with the "
                                     "data's covariance (an upper bound)")
        self.deltaPlot.setToolTip("Entropy produced by one forward step: H(Xₜ) − H(Xₜ₋₁)")
        self.note = QLabel()
        self.note.setObjectName("entropyNote")
        self.note.setWordWrap(True)
        layout = QGridLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.entropyPlot, 0, 0)
        layout.addWidget(self.positionPlot, 1, 0)
        layout.addWidget(self.marginalPlot, 0, 1)
        layout.addWidget(self.deltaPlot, 1, 1)
        self.odeButton = QPushButton("H(Xₜ) of the model by the ODE")
        self.odeButton.setObjectName("odeEntropyButton")
        self.odeButton.setToolTip(
            "The system entropy a third way: training points flow up the model's probability-"
            "flow ODE and H(Xₜ) = −E log pₜ(xₜ) comes from the instantaneous change of "
            "variables (core.likelihood); with the exact score it equals the truth")
        self.odeButton.clicked.connect(self.ode_entropy_requested)
        row = QHBoxLayout()
        row.addWidget(self.note, 1)
        row.addWidget(self.odeButton, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(row, 2, 0, 1, 2)
        layout.setColumnStretch(0, 3)
        layout.setColumnStretch(1, 2)

        plot = self.entropyPlot.getPlotItem()
        plot.legend.setOffset((-8, -8))  # bottom right: the curves rise to the top right
        self.upper_curve = plot.plot([], [], pen=pen(1, width=2),
                                     name="upper bound H(Xₜ|Xₜ₋₁) = ½log(2πe βₜ)")
        self.lower_curve = plot.plot([], [], pen=pen(0, width=2),
                                     name="lower bound ½log(2πe β̃ₜ)")
        self.fill = pg.FillBetweenItem(self.upper_curve, self.lower_curve,
                                       brush=pg.mkBrush(0, 114, 178, 25))
        plot.addItem(self.fill)
        # ignoreBounds: at the last cosine step (alpha ~ 1e-3) this bound jumps by several
        # nats and would squash every other curve; it still shows where it fits the view
        self.general_curve = pg.PlotDataItem(
            [], [], pen=pen(1, width=1, style=Qt.PenStyle.DashLine),
            name="bound for any data ½log(2πe βₜ/αₜ)")
        plot.addItem(self.general_curve, ignoreBounds=True)
        self.true_curve = plot.plot([], [], pen=pen(7, width=1.5), symbol="x", symbolSize=6,
                                    symbolPen=pen(7, width=1),
                                    name="true H(Xₜ₋₁|Xₜ) (mixture, Monte Carlo)")
        self.true_error = pg.ErrorBarItem(**_empty_error_bars(), pen=pen(7, width=1))
        plot.addItem(self.true_error)
        self.learned_curve = plot.plot([], [], pen=pen(2, width=2), symbol="o", symbolSize=5,
                                       symbolPen=None, symbolBrush=color(2),
                                       name="learned Σθ: ½(log 2πe + E log Σθ)")
        self.analytic_curve = plot.plot([], [], pen=pen(3, width=1.5), symbol="d", symbolSize=6,
                                        symbolPen=None, symbolBrush=color(3),
                                        name="Analytic-DPM σ*² from ε̂θ: ½log(2πe σ*²)")

        position = self.positionPlot.getPlotItem()
        position.legend.setOffset((8, 8))  # top left: every curve starts below 1 at small t
        for level, index in ((0.0, 0), (1.0, 1)):
            position.addItem(pg.InfiniteLine(pos=level, angle=0, movable=False,
                                             pen=pen(index, width=1.5)), ignoreBounds=True)
        self.true_position = position.plot([], [], pen=pen(7, width=1.5), symbol="x",
                                           symbolSize=6, symbolPen=pen(7, width=1),
                                           name="true (mixture)")
        self.true_position_error = pg.ErrorBarItem(**_empty_error_bars(), pen=pen(7, width=1))
        position.addItem(self.true_position_error)
        self.learned_position = position.plot([], [], pen=pen(2, width=2), symbol="o",
                                              symbolSize=5, symbolPen=None,
                                              symbolBrush=color(2), name="learned Σθ")
        self.analytic_position = position.plot([], [], pen=pen(3, width=1.5), symbol="d",
                                               symbolSize=6, symbolPen=None,
                                               symbolBrush=color(3), name="Analytic-DPM σ*²")

        marginal = self.marginalPlot.getPlotItem()
        self.marginal_curve = marginal.plot([], [], pen=pen(4, width=2), name="H(Xₜ)")
        self.ode_curve = marginal.plot([], [], pen=None, symbol="s", symbolSize=6,
                                       symbolPen=None, symbolBrush=color(5),
                                       name="H(Xₜ) of the model by the ODE")
        self.ode_error = pg.ErrorBarItem(**_empty_error_bars(), pen=pen(5, width=1))
        marginal.addItem(self.ode_error)
        show_in_legend(self.marginalPlot, self.ode_curve, False)
        self.delta_curve = self.deltaPlot.getPlotItem().plot(
            [], [], pen=pen(3, width=2), name="H(Xₜ) − H(Xₜ₋₁)")
        link_x(self.entropyPlot, self.positionPlot, self.marginalPlot, self.deltaPlot)
        self.upper = np.zeros(0)
        self.lower = np.zeros(0)
        for item in (self.true_curve, self.learned_curve, self.analytic_curve):
            show_in_legend(self.entropyPlot, item, False)
        for item in (self.true_position, self.learned_position, self.analytic_position):
            show_in_legend(self.positionPlot, item, False)

        session.schedule_changed.connect(self.show_schedule)
        session.probe_added.connect(self.show_probe)
        session.history_reset.connect(self._on_reset)
        session.data_curves_changed.connect(self.show_data_curves)
        session.config_changed.connect(lambda _cfg: self._show_note())
        self._note = ""
        if session.schedule is not None:
            self.show_schedule(session.schedule)

    def show_schedule(self, schedule) -> None:
        """Bounds per dimension (dim = 1) for every t; data curves wait for their job."""
        t = np.arange(schedule.num_timesteps, dtype=np.float64)
        self.upper, self.lower = entropy_bounds(schedule, 1)
        self.upper_curve.setData(t, self.upper)
        self.lower_curve.setData(t, self.lower)
        self.general_curve.setData(t, general_upper_bound(schedule, 1))
        self._clear_probe_curves()
        self.show_data_curves(None)
        if self.session.probes:
            self.show_probe(self.session.probes[-1])

    def _on_reset(self) -> None:
        self._clear_probe_curves()
        if self.session.probes:
            self.show_probe(self.session.probes[-1])

    def _clear_probe_curves(self) -> None:
        for item, position in ((self.learned_curve, self.learned_position),
                               (self.analytic_curve, self.analytic_position)):
            item.setData([], [])
            position.setData([], [])
            show_in_legend(self.entropyPlot, item, False)
            show_in_legend(self.positionPlot, position, False)

    def _position(self, t: np.ndarray, entropy) -> np.ndarray:
        """Position between the bounds at integer timesteps t (NaN at t = 0: no gap there)."""
        position = position_between_bounds(entropy, self.lower[t], self.upper[t])
        return np.where(t > 0, position, np.nan)

    def _show_pair(self, curve, position, t: np.ndarray, entropy) -> None:
        curve.setData(t.astype(np.float64), entropy)
        position.setData(t.astype(np.float64), self._position(t, entropy), connect="finite")
        show_in_legend(self.entropyPlot, curve, True)
        show_in_legend(self.positionPlot, position, True)

    def show_probe(self, probe: dict) -> None:
        if probe.get("t") is None or not self.session.probes_fit_shown_schedule():
            return
        t = np.asarray(probe["t"], dtype=np.int64)
        if t.size == 0 or t.max() >= len(self.upper):
            return
        if probe.get("log_var_mean") is not None:
            self._show_pair(self.learned_curve, self.learned_position, t,
                            learned_variance_entropy(probe["log_var_mean"], 1))
        analytic = probe.get("analytic_variance")
        if analytic is not None:
            with np.errstate(divide="ignore"):
                log_var = np.log(np.asarray(analytic, dtype=np.float64))
            self._show_pair(self.analytic_curve, self.analytic_position, t,
                            finite_or_nan(learned_variance_entropy(log_var, 1)))

    def show_data_curves(self, curves: dict | None) -> None:
        """curves: see MainWindow._compute_data_curves; None clears the data-dependent part."""
        schedule = self.session.schedule
        if curves is None or schedule is None or curves.get("T") != schedule.num_timesteps:
            for item in (self.true_curve, self.true_position, self.marginal_curve,
                         self.delta_curve):
                item.setData([], [])
            for bars in (self.true_error, self.true_position_error):
                bars.setData(**_empty_error_bars())
            show_in_legend(self.entropyPlot, self.true_curve, False)
            show_in_legend(self.positionPlot, self.true_position, False)
            self._show_note("Bounds per dimension from the schedule. The data's entropy "
                            "curves appear once the data set is loaded.")
            return
        t = np.asarray(curves["t"], dtype=np.float64)
        self.marginal_curve.setData(t, finite_or_nan(curves["marginal_entropy"]), connect="finite")
        self.delta_curve.setData(t, finite_or_nan(curves["marginal_entropy_delta"]),
                                 connect="finite")
        true = curves.get("true_entropy")
        show_in_legend(self.entropyPlot, self.true_curve, true is not None)
        show_in_legend(self.positionPlot, self.true_position, true is not None)
        if true is not None:
            true = np.asarray(true, dtype=np.float64)
            err = np.asarray(curves["true_entropy_err"], dtype=np.float64)
            self.true_curve.setData(t, true)
            self.true_error.setData(x=t, y=true, height=2 * err)
            ti = t.astype(np.int64)
            position = self._position(ti, true)
            gap = self.upper[ti] - self.lower[ti]
            shown = np.isfinite(position)
            self.true_position.setData(t, position, connect="finite")
            self.true_position_error.setData(x=t[shown], y=position[shown],
                                             height=2 * err[shown] / gap[shown])
        else:
            for item in (self.true_curve, self.true_position):
                item.setData([], [])
            for bars in (self.true_error, self.true_position_error):
                bars.setData(**_empty_error_bars())
        self._show_note(curves.get("description", ""))

    def show_ode_entropy(self, result: dict | None) -> None:
        """H(X_t) per dimension of the model by the ODE: dict(t, entropy, stderr, step), or
        None to clear (a new model)."""
        if result is None:
            self.ode_curve.setData([], [])
            self.ode_error.setData(**_empty_error_bars())
            show_in_legend(self.marginalPlot, self.ode_curve, False)
            return
        t = np.asarray(result["t"], dtype=np.float64)
        entropy = np.asarray(result["entropy"], dtype=np.float64)
        self.ode_curve.setData(t, entropy)
        self.ode_error.setData(x=t, y=entropy, height=2 * np.asarray(result["stderr"]))
        show_in_legend(self.marginalPlot, self.ode_curve, True)
        rename_curve(self.marginalPlot, self.ode_curve,
                     f"H(Xₜ) of the model by the ODE (step {result['step']})")

    def _show_note(self, text: str | None = None) -> None:
        """The data curves' description, plus a hint when the variance is not learned."""
        if text is not None:
            self._note = text
        config = self.session.config
        hint = ("" if config is None or config.diffusion.learns_sigma else
                f" The variance is fixed: choose “{VarType.LEARNED_RANGE.label}” with the hybrid "
                "or vlb loss to see a learned variance's entropy; σ*² appears after the first "
                "probe of training either way.")
        self.note.setText(self._note + hint)
