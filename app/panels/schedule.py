"""The noise schedule: beta_t and beta-tilde_t (log y) with, between them, the learned
Sigma_theta(t) and the Analytic-DPM variance sigma*^2(t) from the trainer's probes
(core.training) and, for Gaussian-mixture data, the true E Var q(x_{t-1}|x_t) (app.analysis);
the same variances divided by beta_t with alpha-bar; and the SNR. Redrawn at once when the
schedule or T changes."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from app.widgets.plots import color, link_x, make_plot, pen, show_in_legend


def positive_or_nan(values: np.ndarray) -> np.ndarray:
    """Values for a log axis: non-positive entries (beta-tilde_0 = 0) are left out."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(values > 0, values, np.nan)


def probe_learned_variance(probe: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(t, Sigma_theta mean, band low/high) from a probe's log-variance statistics, or None
    when the variance is not learned. The probe reports log Sigma_theta as mean +- std over
    its batch; the band is exp(mean -+ std)."""
    mean, std = probe.get("log_var_mean"), probe.get("log_var_std")
    if mean is None or probe.get("t") is None:
        return None
    mean = np.asarray(mean, dtype=np.float64)
    std = np.zeros_like(mean) if std is None else np.asarray(std, dtype=np.float64)
    t = np.asarray(probe["t"], dtype=np.float64)
    return t, np.exp(mean), np.stack([np.exp(mean - std), np.exp(mean + std)])


class SchedulePanel(QWidget):
    """`schedulePlot` (beta, beta-tilde, Sigma_theta), `scheduleRatioPlot`, `snrPlot`."""

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.setObjectName("schedulePanel")
        self.session = session
        self.schedulePlot = make_plot("schedulePlot", "Variances of the reverse step",
                                      "timestep t", "variance", log_y=True)
        self.ratioPlot = make_plot("scheduleRatioPlot", "β̃ₜ / βₜ and ᾱₜ", "timestep t", "")
        self.snrPlot = make_plot("snrPlot", "Signal-to-noise ratio ᾱₜ / (1 − ᾱₜ)",
                                 "timestep t", "SNR", log_y=True)
        self.schedulePlot.setToolTip(
            "Variances of the reverse step p(xₜ₋₁|xₜ): its bounds βₜ and β̃ₜ = (1 − ᾱₜ₋₁)/"
            "(1 − ᾱₜ) βₜ, the learned Σθ = exp(v log βₜ + (1 − v) log β̃ₜ), Analytic-DPM's "
            "σ*², and for Gaussian mixtures the true E Var q(xₜ₋₁|xₜ)")
        self.ratioPlot.setToolTip("The same variances divided by βₜ (β̃ₜ/βₜ → 1 at large t), "
                                  "and ᾱₜ = Πₛ≤ₜ (1 − βₛ), the signal kept in xₜ")
        self.snrPlot.setToolTip("Signal-to-noise ratio of xₜ: SNR(t) = ᾱₜ / (1 − ᾱₜ)")
        self.note = QLabel()
        self.note.setObjectName("scheduleNote")
        self.note.setWordWrap(True)
        layout = QGridLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.schedulePlot, 0, 0, 2, 1)
        layout.addWidget(self.ratioPlot, 0, 1)
        layout.addWidget(self.snrPlot, 1, 1)
        layout.addWidget(self.note, 2, 0, 1, 2)
        layout.setColumnStretch(0, 3)
        layout.setColumnStretch(1, 2)

        plot = self.schedulePlot.getPlotItem()
        plot.legend.setOffset((-8, -8))  # bottom right: the variances rise to the top right
        self.beta_curve = plot.plot([], [], pen=pen(1, width=2), name="βₜ (upper: fixed large)")
        self.beta_tilde_curve = plot.plot([], [], pen=pen(0, width=2),
                                          name="β̃ₜ (lower: fixed small)")
        self.band_low = pg.PlotDataItem([], [], pen=pen(2, width=0.5, alpha=120))
        self.band_high = pg.PlotDataItem([], [], pen=pen(2, width=0.5, alpha=120))
        band_brush = pg.mkColor(color(2))
        band_brush.setAlpha(60)
        self.band = pg.FillBetweenItem(self.band_low, self.band_high, brush=band_brush)
        plot.addItem(self.band_low)
        plot.addItem(self.band_high)
        plot.addItem(self.band)
        self.sigma_curve = plot.plot([], [], pen=pen(2, width=2), symbol="o", symbolSize=5,
                                     symbolBrush=color(2), symbolPen=None,
                                     name="Σθ(t) learned (probe mean ± std)")
        self.analytic_curve = plot.plot([], [], pen=pen(3, width=1.5), symbol="d", symbolSize=6,
                                        symbolBrush=color(3), symbolPen=None,
                                        name="Analytic-DPM σ*²(t) from ε̂θ (probe)")
        self.true_curve = plot.plot([], [], pen=pen(7, width=1.5), symbol="x", symbolSize=6,
                                    symbolPen=pen(7, width=1),
                                    name="true E Var q(xₜ₋₁|xₜ) (mixture)")
        ratio = self.ratioPlot.getPlotItem()
        ratio.legend.setOffset((-8, 70))  # below the ratios near 1, above alpha-bar's tail
        self.ratioPlot.setTitle("Variances / βₜ, and ᾱₜ", size="10pt")
        self.ratio_curve = ratio.plot([], [], pen=pen(0, width=2), name="β̃ₜ / βₜ")
        self.alpha_bar_curve = ratio.plot([], [], pen=pen(4, width=2), name="ᾱₜ")
        self.sigma_ratio = ratio.plot([], [], pen=pen(2, width=2), symbol="o", symbolSize=4,
                                      symbolBrush=color(2), symbolPen=None, name="Σθ / βₜ")
        self.analytic_ratio = ratio.plot([], [], pen=pen(3, width=1.5), symbol="d", symbolSize=5,
                                         symbolBrush=color(3), symbolPen=None,
                                         name="σ*² / βₜ")
        self.true_ratio = ratio.plot([], [], pen=pen(7, width=1.5), symbol="x", symbolSize=5,
                                     symbolPen=pen(7, width=1), name="true / βₜ")
        ratio.addItem(pg.InfiniteLine(pos=1.0, angle=0, movable=False, pen=pen(1, width=1.5)),
                      ignoreBounds=True)
        self.snr_curve = self.snrPlot.getPlotItem().plot([], [], pen=pen(5, width=2),
                                                          name="SNR(t)")
        link_x(self.schedulePlot, self.ratioPlot, self.snrPlot)

        for item, owner in ((self.analytic_curve, self.schedulePlot),
                            (self.true_curve, self.schedulePlot),
                            (self.sigma_ratio, self.ratioPlot),
                            (self.analytic_ratio, self.ratioPlot),
                            (self.true_ratio, self.ratioPlot)):
            show_in_legend(owner, item, False)

        session.schedule_changed.connect(self.show_schedule)
        session.probe_added.connect(self.show_probe)
        session.history_reset.connect(self._on_reset)
        session.config_changed.connect(self._on_config)
        session.data_curves_changed.connect(self.show_data_curves)
        if session.schedule is not None:
            self.show_schedule(session.schedule)

    def show_schedule(self, schedule) -> None:
        t = np.arange(schedule.num_timesteps, dtype=np.float64)
        self.beta_curve.setData(t, schedule.betas)
        self.beta_tilde_curve.setData(t, positive_or_nan(schedule.posterior_variance),
                                      connect="finite")
        self.ratio_curve.setData(t, schedule.posterior_variance / schedule.betas)
        self.alpha_bar_curve.setData(t, schedule.alphas_cumprod)
        self.snr_curve.setData(t, positive_or_nan(schedule.snr), connect="finite")
        self._clear_learned()
        self.show_data_curves(self.session.data_curves)
        self._show_latest_probe()

    def show_data_curves(self, curves: dict | None) -> None:
        """The true expected reverse variance of Gaussian-mixture data, if the curves have it
        and belong to the schedule shown."""
        schedule = self.session.schedule
        true = None if curves is None else curves.get("true_variance")
        visible = (true is not None and schedule is not None
                   and curves.get("T") == schedule.num_timesteps)
        show_in_legend(self.schedulePlot, self.true_curve, visible)
        show_in_legend(self.ratioPlot, self.true_ratio, visible)
        if not visible:
            self.true_curve.setData([], [])
            self.true_ratio.setData([], [])
            return
        t = np.asarray(curves["t"], dtype=np.int64)
        true = np.asarray(true, dtype=np.float64)
        self.true_curve.setData(t.astype(np.float64), true)
        self.true_ratio.setData(t.astype(np.float64), true / schedule.betas[t])

    def _on_config(self, cfg) -> None:
        learned = cfg.diffusion.learns_sigma
        self.sigma_curve.setVisible(learned)
        self.band.setVisible(learned)
        show_in_legend(self.schedulePlot, self.sigma_curve, learned)
        if learned:
            self.note.setText("Σθ(t) appears between β̃ₜ and βₜ after the first probe of "
                              "training (every probe_every steps).")
        else:
            self.note.setText("The variance is fixed; choose “learned range” with the hybrid "
                              "or vlb loss to see the model's Σθ(t) between β̃ₜ and βₜ.")

    def _on_reset(self) -> None:
        self._clear_learned()
        self._show_latest_probe()

    def _clear_learned(self) -> None:
        for item in (self.sigma_curve, self.band_low, self.band_high, self.analytic_curve,
                     self.sigma_ratio, self.analytic_ratio):
            item.setData([], [])
        show_in_legend(self.schedulePlot, self.analytic_curve, False)
        show_in_legend(self.ratioPlot, self.sigma_ratio, False)
        show_in_legend(self.ratioPlot, self.analytic_ratio, False)

    def _show_latest_probe(self) -> None:
        if self.session.probes:
            self.show_probe(self.session.probes[-1])

    def show_probe(self, probe: dict) -> None:
        schedule = self.session.schedule
        if schedule is None or probe.get("t") is None or not self.session.probes_fit_shown_schedule():
            return
        t = np.asarray(probe["t"], dtype=np.int64)
        if t.size == 0 or t.max() >= schedule.num_timesteps:
            return
        betas = schedule.betas[t]
        notes = []
        analytic = probe.get("analytic_variance")
        if analytic is not None:
            analytic = np.asarray(analytic, dtype=np.float64)
            self.analytic_curve.setData(t.astype(np.float64), positive_or_nan(analytic),
                                        connect="finite")
            self.analytic_ratio.setData(t.astype(np.float64), analytic / betas)
            show_in_legend(self.schedulePlot, self.analytic_curve, True)
            show_in_legend(self.ratioPlot, self.analytic_ratio, True)
            notes.append("σ*²(t): Analytic-DPM's optimal variance from the network's ε "
                         "predictions on the probe batch (Bao et al. 2022), clipped to "
                         "[β̃ₜ, β̃ₜ + c²ₜ Var x₀]")
        learned = probe_learned_variance(probe)
        if learned is not None:
            tf, sigma, band = learned
            self.band_low.setData(tf, band[0])
            self.band_high.setData(tf, band[1])
            self.sigma_curve.setData(tf, sigma)
            self.sigma_ratio.setData(tf, sigma / betas)
            show_in_legend(self.ratioPlot, self.sigma_ratio, True)
            notes.insert(0, "Σθ(t): mean ± std of the learned variance over the probe batch")
        if notes:
            self.note.setText(f"Probe at step {int(probe.get('step', 0))}. " + "; ".join(notes)
                              + ".")
