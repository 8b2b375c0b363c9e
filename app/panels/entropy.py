"""Entropy of the reverse step, in nats per dimension: the Sohl-Dickstein bounds
H(X_t|X_{t-1}) (upper) and D/2 log(2 pi e beta-tilde_t) (lower) from core.entropy, the
learned variance's entropy from the trainer's probes, the true H(X_{t-1}|X_t) where the data
is a known Gaussian mixture, and the marginal ("system") entropy H(X_t) with its change per
step. Bounds redraw at once with the schedule; data-dependent curves arrive from a job."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from app.widgets.plots import color, finite_or_nan, make_plot, pen, show_in_legend
from core.entropy import entropy_bounds, learned_variance_entropy


class EntropyPanel(QWidget):
    """`entropyPlot` (bounds, learned, true), `marginalEntropyPlot`, `entropyDeltaPlot`."""

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.setObjectName("entropyPanel")
        self.session = session
        self.entropyPlot = make_plot("entropyPlot", "Entropy of the reverse step H(Xₜ₋₁ | Xₜ)",
                                     "timestep t", "nats / dimension")
        self.marginalPlot = make_plot("marginalEntropyPlot", "System entropy H(Xₜ)",
                                      "timestep t", "nats / dimension")
        self.deltaPlot = make_plot("entropyDeltaPlot", "Entropy produced per step",
                                   "timestep t", "Δ nats / dimension")
        self.note = QLabel()
        self.note.setObjectName("entropyNote")
        self.note.setWordWrap(True)
        layout = QGridLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.entropyPlot, 0, 0, 2, 1)
        layout.addWidget(self.marginalPlot, 0, 1)
        layout.addWidget(self.deltaPlot, 1, 1)
        layout.addWidget(self.note, 2, 0, 1, 2)
        layout.setColumnStretch(0, 3)
        layout.setColumnStretch(1, 2)

        plot = self.entropyPlot.getPlotItem()
        self.upper_curve = plot.plot([], [], pen=pen(1, width=2),
                                     name="upper bound H(Xₜ|Xₜ₋₁) = ½log(2πe βₜ)")
        self.lower_curve = plot.plot([], [], pen=pen(0, width=2),
                                     name="lower bound ½log(2πe β̃ₜ)")
        self.fill = pg.FillBetweenItem(self.upper_curve, self.lower_curve,
                                       brush=pg.mkBrush(0, 114, 178, 25))
        plot.addItem(self.fill)
        self.true_curve = plot.plot([], [], pen=pen(7, width=1.5), symbol="x", symbolSize=6,
                                    symbolPen=pen(7, width=1),
                                    name="true H(Xₜ₋₁|Xₜ) (mixture, Monte Carlo)")
        self.true_error = pg.ErrorBarItem(x=np.zeros(0), y=np.zeros(0), height=np.zeros(0),
                                          pen=pen(7, width=1))
        plot.addItem(self.true_error)
        self.learned_curve = plot.plot([], [], pen=pen(2, width=2), symbol="o", symbolSize=5,
                                       symbolPen=None, symbolBrush=color(2),
                                       name="learned Σθ: ½(log 2πe + E log Σθ)")
        marginal = self.marginalPlot.getPlotItem()
        self.marginal_curve = marginal.plot([], [], pen=pen(4, width=2), name="H(Xₜ)")
        self.delta_curve = self.deltaPlot.getPlotItem().plot(
            [], [], pen=pen(3, width=2), name="H(Xₜ) − H(Xₜ₋₁)")
        self.marginalPlot.setXLink(self.entropyPlot)
        self.deltaPlot.setXLink(self.entropyPlot)
        self.upper = np.zeros(0)
        self.lower = np.zeros(0)
        show_in_legend(self.entropyPlot, self.true_curve, False)
        show_in_legend(self.entropyPlot, self.learned_curve, False)

        session.schedule_changed.connect(self.show_schedule)
        session.probe_added.connect(self.show_probe)
        session.history_reset.connect(self._on_reset)
        session.data_curves_changed.connect(self.show_data_curves)
        if session.schedule is not None:
            self.show_schedule(session.schedule)

    def show_schedule(self, schedule) -> None:
        """Bounds per dimension (dim = 1) for every t; data curves wait for their job."""
        t = np.arange(schedule.num_timesteps, dtype=np.float64)
        self.upper, self.lower = entropy_bounds(schedule, 1)
        self.upper_curve.setData(t, self.upper)
        self.lower_curve.setData(t, self.lower)
        self.learned_curve.setData([], [])
        show_in_legend(self.entropyPlot, self.learned_curve, False)
        self.show_data_curves(None)
        if self.session.probes:
            self.show_probe(self.session.probes[-1])

    def _on_reset(self) -> None:
        self.learned_curve.setData([], [])
        show_in_legend(self.entropyPlot, self.learned_curve, False)
        if self.session.probes:
            self.show_probe(self.session.probes[-1])

    def show_probe(self, probe: dict) -> None:
        trained = self.session.training_config
        shown = self.session.config
        if probe.get("log_var_mean") is None or trained is None:
            return
        if (trained.diffusion.schedule, trained.diffusion.timesteps) != (
                shown.diffusion.schedule, shown.diffusion.timesteps):
            return
        t = np.asarray(probe["t"], dtype=np.float64)
        self.learned_curve.setData(t, learned_variance_entropy(probe["log_var_mean"], 1))
        show_in_legend(self.entropyPlot, self.learned_curve, True)

    def show_data_curves(self, curves: dict | None) -> None:
        """curves: see MainWindow._compute_data_curves; None clears the data-dependent part."""
        schedule = self.session.schedule
        if curves is None or schedule is None or curves.get("T") != schedule.num_timesteps:
            for item in (self.true_curve, self.marginal_curve, self.delta_curve):
                item.setData([], [])
            self.true_error.setData(x=np.zeros(0), y=np.zeros(0), height=np.zeros(0))
            show_in_legend(self.entropyPlot, self.true_curve, False)
            self.note.setText("Bounds per dimension from the schedule. The data's entropy "
                              "curves appear once the data set is loaded.")
            return
        t = np.asarray(curves["t"], dtype=np.float64)
        self.marginal_curve.setData(t, finite_or_nan(curves["marginal_entropy"]), connect="finite")
        self.delta_curve.setData(t, finite_or_nan(curves["marginal_entropy_delta"]),
                                 connect="finite")
        true = curves.get("true_entropy")
        show_in_legend(self.entropyPlot, self.true_curve, true is not None)
        if true is not None:
            self.true_curve.setData(t, true)
            self.true_error.setData(x=t, y=np.asarray(true),
                                    height=2 * np.asarray(curves["true_entropy_err"]))
        else:
            self.true_curve.setData([], [])
            self.true_error.setData(x=np.zeros(0), y=np.zeros(0), height=np.zeros(0))
        self.note.setText(curves.get("description", ""))
