"""Live training curves: total loss, its simple and vlb parts, the loss in each quarter of t
(as improved-diffusion logs it) and the gradient norm, raw and smoothed, optional log y."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QCheckBox, QGroupBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from app.widgets.plots import color, make_plot, pen

# history key -> legend text (what the curve is)
LOSS_CURVES = [
    ("loss", "total loss"),
    ("mse", "L_simple (MSE)"),
    ("vlb", "L_vlb (bits/dim)"),
    ("loss_q0", "loss, t ∈ [0, T/4)"),
    ("loss_q1", "loss, t ∈ [T/4, T/2)"),
    ("loss_q2", "loss, t ∈ [T/2, 3T/4)"),
    ("loss_q3", "loss, t ∈ [3T/4, T)"),
    ("grad_norm", "gradient norm"),
]
CURVE_TIPS = {
    "loss": "The objective being minimised (simple, hybrid or vlb, per the Loss setting)",
    "mse": "L_simple: mean squared error of the model's mean prediction (ε, x₀ or v)",
    "vlb": "The variational-bound term L_t at the sampled t, in bits per dimension",
    "loss_q0": "Loss of the batch items whose t fell in the first quarter of the schedule",
    "loss_q1": "Loss of the batch items whose t fell in the second quarter",
    "loss_q2": "Loss of the batch items whose t fell in the third quarter",
    "loss_q3": "Loss of the batch items whose t fell in the last quarter",
    "grad_norm": "Global gradient norm before clipping",
}
DEFAULT_VISIBLE = {"loss", "mse", "vlb", "grad_norm"}
SMOOTHING = 0.95  # exponential moving average weight of the smoothed curves
REDRAW_MS = 100


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
    """`lossPlot` with one raw (faint) and one smoothed curve per metric.

    Redraws at most every REDRAW_MS ms while visible; the session only marks it dirty.
    The checkboxes on the right, in each curve's colour, are the legend and show or hide it.
    """

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.setObjectName("lossPanel")
        self.session = session
        self.lossPlot = make_plot("lossPlot", "Training loss", "training step", "loss",
                                  log_y=True, legend=False)
        self.rawCheck = QCheckBox("raw (faint)")
        self.rawCheck.setObjectName("lossRawCheck")
        self.rawCheck.setChecked(True)
        self.smoothCheck = QCheckBox(f"smoothed (EMA {SMOOTHING})")
        self.smoothCheck.setObjectName("lossSmoothCheck")
        self.smoothCheck.setChecked(True)
        self.logCheck = QCheckBox("log y")
        self.logCheck.setObjectName("lossLogCheck")
        self.logCheck.setChecked(True)
        # off by default: the grid costs the GUI thread ~15 ms a frame while curves grow
        self.gridCheck = QCheckBox("grid")
        self.gridCheck.setObjectName("lossGridCheck")
        self.summary = QLabel("No training yet. Press Start.")
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
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.lossPlot, 1)
        layout.addWidget(side_widget)

        item = self.lossPlot.getPlotItem()
        item.showGrid(x=False, y=False)
        self.gridCheck.toggled.connect(lambda on: item.showGrid(x=on, y=on, alpha=0.2))
        item.setDownsampling(auto=True, mode="peak")
        item.setClipToView(True)
        self.raw_curves = {}
        self.smooth_curves = {}
        self._smoothed: dict[str, np.ndarray] = {}
        for index, (key, label) in enumerate(LOSS_CURVES):
            raw = item.plot([], [], pen=pen(index, width=1, alpha=70), name=f"{label} (raw)")
            smooth = item.plot([], [], pen=pen(index, width=1.5), name=f"{label} (smoothed)")
            self.raw_curves[key] = raw
            self.smooth_curves[key] = smooth
        self.logCheck.toggled.connect(lambda on: item.setLogMode(y=on))
        self.rawCheck.toggled.connect(self._apply_toggles)
        self.smoothCheck.toggled.connect(self._apply_toggles)
        self._dirty = False
        self._smoothed_len = 0
        self._x_stepping = False
        self._user_range = False
        item.getViewBox().sigRangeChangedManually.connect(self._on_user_range)
        item.autoBtn.clicked.connect(self._on_auto_button)
        self._apply_toggles()
        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.redraw)
        self._timer.start()
        session.metrics_appended.connect(self._mark_dirty)
        session.history_reset.connect(self._on_reset)
        session.state_changed.connect(self._on_state)

    def _mark_dirty(self, *_args) -> None:
        self._dirty = True

    def _on_state(self, state: str) -> None:
        """A run ended: fit the x axis to the data again (it grew in steps while running)."""
        if state in ("finished", "stopped", "failed") and not self._user_range:
            self._dirty = True
            self.redraw(force=True)
            self._x_stepping = False
            self.lossPlot.getPlotItem().enableAutoRange(x=True)

    def _on_user_range(self, *_args) -> None:
        self._user_range = True

    def _on_auto_button(self, *_args) -> None:
        self._user_range = False
        self._x_stepping = False

    def _on_reset(self) -> None:
        self._x_stepping = False
        self._user_range = False
        self.lossPlot.getPlotItem().enableAutoRange(x=True)
        self._smoothed = {}
        self._smoothed_len = 0
        self._dirty = True
        self.redraw(force=True)

    def _apply_toggles(self, *_args) -> None:
        raw_on, smooth_on = self.rawCheck.isChecked(), self.smoothCheck.isChecked()
        for key, check in self.curve_checks.items():
            self.raw_curves[key].setVisible(check.isChecked() and raw_on)
            self.smooth_curves[key].setVisible(check.isChecked() and smooth_on)
        self._dirty = True
        self.redraw()

    def visible_keys(self) -> list[str]:
        return [key for key, check in self.curve_checks.items() if check.isChecked()]

    def redraw(self, force: bool = False) -> None:
        """Copy new history into the curves (cheap) if something changed."""
        if not self._dirty or (not force and not self.isVisible()):
            return
        self._dirty = False
        history = self.session.history
        steps = history.column("step")
        n = len(steps)
        if n == 0:
            for curve in list(self.raw_curves.values()) + list(self.smooth_curves.values()):
                curve.setData([], [])
            self.summary.setText("No training yet. Press Start.")
            return
        for key in self.raw_curves:
            values = history.column(key)
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
        last_loss = history.last("loss")
        self.summary.setText(f"step {int(history.last('step'))} · loss {last_loss:.4g}")

    def _step_x_range(self, last_step: float) -> None:
        """Grow the x axis in steps of about a quarter, not at every frame: a changing range
        makes pyqtgraph redo the axis (ticks, labels) on the GUI thread each redraw."""
        view = self.lossPlot.getPlotItem().getViewBox()
        if self._user_range:
            return  # the user zoomed or panned: leave the range alone
        low, high = view.viewRange()[0]
        if self._x_stepping and 0 <= last_step <= high and high <= 1.6 * max(last_step, 8):
            return
        self._x_stepping = True
        view.setXRange(0, max(10.0, last_step * 1.25), padding=0.0)

    def showEvent(self, event):  # noqa: N802
        super().showEvent(event)
        self.redraw()
