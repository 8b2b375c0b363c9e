"""The variational bound per timestep, from the trainer's probes: L_t (log y) in the unit of
core.options.nll_unit for the data (bits/dim for 8-bit images, nats/dim for continuous data;
core computes bits), latest probe bold and earlier probes faded, plus the probe's per-t
training loss."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from app.widgets.plots import link_x, make_plot, pen, rename_curve
from core.options import nll_unit

HISTORY_PROBES = 4  # earlier probes drawn faded
REDRAW_MS = 100


class VlbPanel(QWidget):
    """`vlbPlot`: probe["vlb"] against probe["t"]; `probeLossPlot`: probe["loss"]."""

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.setObjectName("vlbPanel")
        self.session = session
        self.vlbPlot = make_plot("vlbPlot", "Terms of the variational bound L_t",
                                 "timestep t", "bits/dim", log_y=True)
        self.vlbPlot.setToolTip(
            "Lₜ = KL(q(xₜ₋₁|xₜ, x₀) ‖ pθ(xₜ₋₁|xₜ)) for t ≥ 1 and L₀ = −log pθ(x₀|x₁), per "
            "dimension, of the EMA model on a fixed probe batch; L_vlb = Σₜ Lₜ + L_T")
        self.probeLossPlot = make_plot("probeLossPlot", "Training loss per timestep (probe)",
                                       "timestep t", "loss", log_y=True)
        self.probeLossPlot.setToolTip("The training loss of the EMA model at each probed t, "
                                      "on the same fixed batch")
        self.note = QLabel("The bound's terms appear after the first probe of training.")
        self.note.setObjectName("vlbNote")
        self.logCheck = QCheckBox("log y (non-positive terms are left out)")
        self.logCheck.setObjectName("vlbLogCheck")
        self.logCheck.setChecked(True)
        self.logCheck.setToolTip("Logarithmic y axis; a term ≤ 0 (possible for continuous "
                                 "data's L₀, a density) is then not drawn")
        self.logCheck.toggled.connect(
            lambda on: self.vlbPlot.getPlotItem().setLogMode(y=on))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.vlbPlot, 3)
        layout.addWidget(self.probeLossPlot, 2)
        bottom = QHBoxLayout()
        bottom.addWidget(self.note, 1)
        bottom.addWidget(self.logCheck)
        layout.addLayout(bottom)
        link_x(self.vlbPlot, self.probeLossPlot)

        vlb = self.vlbPlot.getPlotItem()
        loss = self.probeLossPlot.getPlotItem()
        self.old_vlb = [vlb.plot([], [], pen=pen(0, width=1, alpha=40 + 30 * i))
                        for i in range(HISTORY_PROBES)]
        self.vlb_curve = vlb.plot([], [], pen=pen(0, width=2), symbol="o", symbolSize=4,
                                  symbolPen=None, symbolBrush="#0072B2",
                                  name="L_t (latest probe)")
        self.unit = nll_unit("image")
        self.old_loss = [loss.plot([], [], pen=pen(1, width=1, alpha=40 + 30 * i))
                         for i in range(HISTORY_PROBES)]
        self.loss_curve = loss.plot([], [], pen=pen(1, width=2), name="loss at t (latest probe)")
        self._dirty = False
        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.redraw)
        self._timer.start()
        session.probe_added.connect(self._mark_dirty)
        session.history_reset.connect(self._on_reset)
        session.dataset_changed.connect(self._on_reset)
        self._show_unit()

    def _mark_dirty(self, *_args) -> None:
        self._dirty = True

    def _on_reset(self, *_args) -> None:
        """A new model: its unit, and none of the old model's probes."""
        self._show_unit()
        self._dirty = True
        self.redraw(force=True)

    def _show_unit(self) -> None:
        self.unit = nll_unit(self.session.data_kind() or "image")
        self.vlbPlot.getPlotItem().setLabel("left", self.unit.label)
        rename_curve(self.vlbPlot, self.vlb_curve, f"L_t (latest probe, {self.unit.label})")
        for curve in [self.vlb_curve, *self.old_vlb]:
            curve.unit = self.unit.key          # the CSV's unit column (export_csv)

    def showEvent(self, event):  # noqa: N802
        super().showEvent(event)
        self.redraw()

    def redraw(self, force: bool = False) -> None:
        if not self._dirty or (not force and not self.isVisible()):
            return
        self._dirty = False
        probes = self.session.probes
        latest = probes[-1] if probes else None
        older = probes[-1 - HISTORY_PROBES:-1] if probes else []
        older = [None] * (HISTORY_PROBES - len(older)) + list(older)
        to_unit = self.unit.from_bits
        for curve_vlb, curve_loss, probe in zip(self.old_vlb, self.old_loss, older, strict=False):
            _set(curve_vlb, probe, "vlb", to_unit)
            _set(curve_loss, probe, "loss")
        _set(self.vlb_curve, latest, "vlb", to_unit)
        _set(self.loss_curve, latest, "loss")
        if latest is None:
            self.note.setText("The bound's terms appear after the first probe of training.")
        else:
            step = int(latest.get("step", 0))
            whose = (" of the opened model's weights" if step == 0
                     and self.session.model_source else "")
            self.note.setText(f"Probe at step {step}{whose}; faded: the "
                              f"{sum(p is not None for p in older)} probes before it.")


def _set(curve, probe, key: str, convert=None) -> None:
    if probe is None or probe.get(key) is None or probe.get("t") is None:
        curve.setData([], [])
        return
    values = np.asarray(probe[key], dtype=np.float64)
    curve.setData(np.asarray(probe["t"], dtype=np.float64),
                  convert(values) if convert is not None else values, connect="finite")
