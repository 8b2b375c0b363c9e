"""Live training curves: the loss, its simple and vlb parts and the loss in each quarter of t
(as improved-diffusion logs it) on `lossPlot`, the gradient norm on its own `gradPlot` below
(another quantity, another axis), raw and smoothed, optional log y.

With the simple loss the total is L_simple itself: it is not drawn twice (its legend entry
says "= L_simple"). L_vlb is shown in the unit of core.options.nll_unit for the data (bits/dim
for 8-bit images, nats/dim for continuous data). The y range follows the smoothed curves, so
a few raw spikes do not stretch the log axis over decades."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QCheckBox, QGroupBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from app.widgets.plots import color, make_plot, pen, set_bounds_ignored
from core.options import LossType, nll_unit

# history key -> legend text (what the curve is); "vlb" gets its unit appended
LOSS_CURVES = [
    ("loss", "total loss"),
    ("mse", "L_simple (MSE)"),
    ("vlb", "L_vlb"),
    ("loss_q0", "loss, t ∈ [0, T/4)"),
    ("loss_q1", "loss, t ∈ [T/4, T/2)"),
    ("loss_q2", "loss, t ∈ [T/2, 3T/4)"),
    ("loss_q3", "loss, t ∈ [3T/4, T)"),
    ("grad_norm", "gradient norm (lower plot)"),
]
CURVE_TIPS = {
    "loss": "The objective being minimised: L_simple, L_hybrid = L_simple + λ·L_vlb, or "
            "L_vlb, per the Loss setting",
    "mse": "L_simple = ‖ε − εθ(xₜ, t)‖² averaged over the batch (or the x₀ / v target)",
    "vlb": "The bound's term Lₜ = KL(q(xₜ₋₁|xₜ, x₀) ‖ pθ(xₜ₋₁|xₜ)) at the sampled t "
           "(−log pθ(x₀|x₁) at t = 0), per dimension",
    "loss_q0": "Loss of the batch items whose t fell in the first quarter of the schedule",
    "loss_q1": "Loss of the batch items whose t fell in the second quarter",
    "loss_q2": "Loss of the batch items whose t fell in the third quarter",
    "loss_q3": "Loss of the batch items whose t fell in the last quarter",
    "grad_norm": "Global gradient norm ‖∇θ L‖₂ before clipping, on its own plot below",
}
DEFAULT_VISIBLE = {"loss", "mse", "vlb", "grad_norm"}
SMOOTHING = 0.95  # exponential moving average weight of the smoothed curves
REDRAW_MS = 100
EMPTY_X_RANGE = 10.0


def ema_smooth(values: np.ndarray, weight: float, start: float | None = None) -> np.ndarray:
    """Exponential moving average for display, skipping NaNs (TensorBoard-style smoothing)."""
    out = np.empty_like(values)
    last = start
    for i, v in enumerate(values):
        if np.isfinite(v):
            last = v if last is None or not np.isfinite(last) else weight * last + (1 - weight) * v
        out[i] = np.nan if last is None else last
    return out


class LossPanel(QWidget):
    """`lossPlot` and `gradPlot` with one raw (faint) and one smoothed curve per metric.

    Redraws at most every REDRAW_MS ms while visible; the session only marks it dirty.
    The checkboxes on the right, in each curve's colour, are the legend and show or hide it.
    """

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.setObjectName("lossPanel")
        self.session = session
        self.lossPlot = make_plot("lossPlot", "Training loss", "", "loss", log_y=True,
                                  legend=False)
        self.lossPlot.setToolTip("The training loss and its parts per step: faint raw values, "
                                 "bold their moving average; the y range follows the "
                                 "smoothed curves")
        self.gradPlot = make_plot("gradPlot", "", "training step", "‖∇θ L‖₂", log_y=True,
                                  legend=False)
        self.gradPlot.setToolTip("The global gradient norm ‖∇θ L‖₂ before clipping (clipped "
                                 "to grad_clip for the update)")
        self.gradPlot.setXLink(self.lossPlot)
        self.gradPlot.setMaximumHeight(170)
        self.rawCheck = QCheckBox("raw (faint)")
        self.rawCheck.setObjectName("lossRawCheck")
        self.rawCheck.setChecked(True)
        self.rawCheck.setToolTip("Draw every logged step's value, faintly")
        self.smoothCheck = QCheckBox(f"smoothed (EMA {SMOOTHING})")
        self.smoothCheck.setObjectName("lossSmoothCheck")
        self.smoothCheck.setChecked(True)
        self.smoothCheck.setToolTip(f"Draw the moving average s ← {SMOOTHING}·s + "
                                    f"{1 - SMOOTHING:.2f}·value; the y range follows it")
        self.logCheck = QCheckBox("log y")
        self.logCheck.setObjectName("lossLogCheck")
        self.logCheck.setChecked(True)
        self.logCheck.setToolTip("Logarithmic y axes (losses fall over decades)")
        # off by default: the grid costs the GUI thread ~15 ms a frame while curves grow
        self.gridCheck = QCheckBox("grid")
        self.gridCheck.setObjectName("lossGridCheck")
        self.gridCheck.setToolTip("Grid lines on the plots")
        self.summary = QLabel()
        self.summary.setObjectName("lossSummary")
        self.summary.setWordWrap(True)

        curves_box = QGroupBox("Curves")
        curves_layout = QVBoxLayout(curves_box)
        curves_layout.setSpacing(2)
        self.curve_checks: dict[str, QCheckBox] = {}
        for index, (key, label) in enumerate(LOSS_CURVES):
            check = QCheckBox(label)
            check.setObjectName(f"lossCurveCheck_{key}")
            check.setStyleSheet(f"QCheckBox {{ color: {color(index)}; }}")
            check.setToolTip(CURVE_TIPS[key])
            check.setChecked(key in DEFAULT_VISIBLE)
            check.toggled.connect(self._apply_toggles)
            curves_layout.addWidget(check)
            self.curve_checks[key] = check
        view_box = QGroupBox("Display")
        view_layout = QVBoxLayout(view_box)
        view_layout.setSpacing(2)
        for check in (self.rawCheck, self.smoothCheck, self.logCheck, self.gridCheck):
            view_layout.addWidget(check)
        side = QVBoxLayout()
        side.addWidget(curves_box)
        side.addWidget(view_box)
        side.addWidget(self.summary)
        side.addStretch(1)
        side_widget = QWidget()
        side_widget.setLayout(side)
        side_widget.setFixedWidth(250)
        plots = QVBoxLayout()
        plots.setSpacing(0)
        plots.addWidget(self.lossPlot, 3)
        plots.addWidget(self.gradPlot, 1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(plots, 1)
        layout.addWidget(side_widget)

        self.raw_curves = {}
        self.smooth_curves = {}
        self._smoothed: dict[str, np.ndarray] = {}
        for plot in (self.lossPlot, self.gradPlot):
            item = plot.getPlotItem()
            item.showGrid(x=False, y=False)
            item.setDownsampling(auto=True, mode="peak")
            item.setClipToView(True)
        for index, (key, label) in enumerate(LOSS_CURVES):
            item = self._plot_of(key).getPlotItem()
            style = Qt.PenStyle.DashLine if key == "loss" else Qt.PenStyle.SolidLine
            self.raw_curves[key] = item.plot([], [], pen=pen(index, width=1, alpha=70),
                                             name=f"{label} (raw)")
            self.smooth_curves[key] = item.plot([], [], pen=pen(index, width=1.5, style=style),
                                                name=f"{label} (smoothed)")
        # the hybrid total nearly equals L_simple: its raw values go under L_simple's, its
        # smoothed curve dashed over it, so both stay visible
        self.raw_curves["loss"].setZValue(-1)
        self.smooth_curves["loss"].setZValue(1)
        self.gridCheck.toggled.connect(self._show_grid)
        self.logCheck.toggled.connect(self._log_y)
        self.rawCheck.toggled.connect(self._apply_toggles)
        self.smoothCheck.toggled.connect(self._apply_toggles)
        self._dirty = False
        self._x_stepping = False
        self._user_range = False
        self._unit = nll_unit("image")
        self._total_is_simple = False
        view = self.lossPlot.getPlotItem().getViewBox()
        view.sigRangeChangedManually.connect(self._on_user_range)
        self.lossPlot.getPlotItem().autoBtn.clicked.connect(self._on_auto_button)
        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.redraw)
        self._timer.start()
        session.metrics_appended.connect(self._mark_dirty)
        session.history_reset.connect(self._on_reset)
        session.state_changed.connect(self._on_state)
        for signal in (session.trainer_changed, session.dataset_changed, session.config_changed):
            signal.connect(self._update_labels)
        self._update_labels()
        self._apply_toggles()

    def _plot_of(self, key: str):
        return self.gradPlot if key == "grad_norm" else self.lossPlot

    def _show_grid(self, on: bool) -> None:
        for plot in (self.lossPlot, self.gradPlot):
            plot.getPlotItem().showGrid(x=on, y=on, alpha=0.2)

    def _log_y(self, on: bool) -> None:
        for plot in (self.lossPlot, self.gradPlot):
            plot.getPlotItem().setLogMode(y=on)

    def _mark_dirty(self, *_args) -> None:
        self._dirty = True

    def _update_labels(self, *_args) -> None:
        """The L_vlb unit of the data (core.options.nll_unit) and whether the total loss is
        L_simple itself (the loss of the trained model, else of the settings)."""
        config = self.session.training_config or self.session.config
        unit = nll_unit(self.session.data_kind() or "image")
        if unit != self._unit:
            self._unit = unit
            self._smoothed.pop("vlb", None)        # smoothed in the old unit
        simple = LossType(config.diffusion.loss_type) is LossType.SIMPLE
        vlb_label = f"L_vlb ({self._unit.label})"
        self.curve_checks["vlb"].setText(vlb_label)
        for curve, kind in ((self.raw_curves["vlb"], "raw"), (self.smooth_curves["vlb"],
                                                                "smoothed")):
            curve.opts["name"] = f"{vlb_label} ({kind})"
            curve.unit = self._unit.key          # the CSV's unit column (export_csv)
        total = self.curve_checks["loss"]
        total.setText("total loss (= L_simple)" if simple else "total loss")
        total.setEnabled(not simple)
        total.setToolTip(("With the simple loss the total is L_simple itself: drawn once, as "
                          "L_simple. ") * simple + CURVE_TIPS["loss"])
        if simple != self._total_is_simple:
            self._total_is_simple = simple
            self._apply_toggles()
        self._dirty = True

    def _on_state(self, state: str) -> None:
        """A run ended: fit the x axis to the data again (it grew in steps while running)."""
        if state in ("finished", "stopped", "failed") and not self._user_range:
            self._dirty = True
            self.redraw(force=True)
            self._x_stepping = False
            self.lossPlot.getPlotItem().enableAutoRange(x=True)
        elif not len(self.session.history):
            self._show_summary()

    def _on_user_range(self, *_args) -> None:
        self._user_range = True

    def _on_auto_button(self, *_args) -> None:
        self._user_range = False
        self._x_stepping = False

    def _on_reset(self) -> None:
        """A new model (or a loaded one): its own curves only, from a fresh x range."""
        self._x_stepping = False
        self._user_range = False
        item = self.lossPlot.getPlotItem()
        item.setXRange(0, EMPTY_X_RANGE, padding=0.0)
        item.enableAutoRange(x=True)
        self._smoothed = {}
        self._update_labels()
        self._dirty = True
        self.redraw(force=True)

    def _apply_toggles(self, *_args) -> None:
        raw_on, smooth_on = self.rawCheck.isChecked(), self.smoothCheck.isChecked()
        for key, check in self.curve_checks.items():
            shown = check.isChecked() and not (key == "loss" and self._total_is_simple)
            self.raw_curves[key].setVisible(shown and raw_on)
            self.smooth_curves[key].setVisible(shown and smooth_on)
            # the y range follows the smoothed curves when they are drawn (raw spikes of
            # L_vlb would stretch a log axis over decades)
            set_bounds_ignored(self._plot_of(key), self.raw_curves[key], smooth_on)
        self._dirty = True
        self.redraw()

    def visible_keys(self) -> list[str]:
        return [key for key, check in self.curve_checks.items() if check.isChecked()]

    def _values(self, key: str) -> np.ndarray:
        values = self.session.history.column(key)
        return self._unit.from_bits(values) if key == "vlb" else values

    def _show_summary(self) -> None:
        history, state = self.session.history, self.session.state
        if len(history):
            self.summary.setText(f"step {int(history.last('step'))} · loss "
                                 f"{history.last('loss'):.4g}")
        elif state == "starting":
            self.summary.setText("Building the model and loading the data…")
        elif state in ("running", "paused", "stopping"):
            every = getattr(self.session.training_config, "train", None)
            every = every.log_every if every is not None else 1
            self.summary.setText(f"Training: the first curves appear after {every:,} "
                                 f"step{'s' * (every != 1)} (the first step can take a while).")
        else:
            self.summary.setText("No training yet. Press Start.")

    def redraw(self, force: bool = False) -> None:
        """Copy new history into the curves (cheap) if something changed."""
        if not self._dirty or (not force and not self.isVisible()):
            return
        self._dirty = False
        steps = self.session.history.column("step")
        if len(steps) == 0:
            for curve in list(self.raw_curves.values()) + list(self.smooth_curves.values()):
                curve.setData([], [])
            self._show_summary()
            return
        for key in self.raw_curves:
            values = self._values(key)
            previous = self._smoothed.get(key, np.empty(0))
            start = previous[-1] if len(previous) else None
            new = ema_smooth(values[len(previous):], SMOOTHING, start)
            self._smoothed[key] = np.concatenate([previous, new]) if len(previous) else new
            # hidden curves are not touched: every setData costs the GUI thread time
            raw, smooth = self.raw_curves[key], self.smooth_curves[key]
            if raw.isVisible():
                raw.setData(steps, values, connect="finite")
            elif raw.xData is not None and len(raw.xData):
                raw.setData([], [])
            if smooth.isVisible():
                smooth.setData(steps, self._smoothed[key], connect="finite")
            elif smooth.xData is not None and len(smooth.xData):
                smooth.setData([], [])
        self._step_x_range(float(steps[-1]))
        self._show_summary()

    def _step_x_range(self, last_step: float) -> None:
        """Grow the x axis in steps of about a quarter, not at every frame: a changing range
        makes pyqtgraph redo the axis (ticks, labels) on the GUI thread each redraw."""
        view = self.lossPlot.getPlotItem().getViewBox()
        if self._user_range or self.session.state not in ("starting", "running", "paused",
                                                          "stopping"):
            return  # the user zoomed or panned, or no run grows the curves: leave it
        low, high = view.viewRange()[0]
        if self._x_stepping and 0 <= last_step <= high and high <= 1.6 * max(last_step, 8):
            return
        self._x_stepping = True
        view.setXRange(0, max(EMPTY_X_RANGE, last_step * 1.25), padding=0.0)

    def showEvent(self, event):  # noqa: N802
        super().showEvent(event)
        self.redraw()
