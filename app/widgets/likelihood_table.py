"""The Score panel's likelihood readout: for the current model and the first N test points,
the NLL per dimension by the VLB bound, by the probability-flow ODE with the model and, for
Gaussian-mixture data, by the ODE with the exact score and the truth -log q_0
(core.likelihood_table: the numbers of `python -m core likelihood`); Run / Cancel with
progress."""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from app.widgets.run_progress import RunProgress

COLUMNS = ("method", "NLL (nats/dim)", "± s.e.", "− truth", "bits/dim", "NFE")
GAP, BITS = 3, 4
TABLE_ROWS_SHOWN = 4
DEFAULT_POINTS = {"points": 500, "other": 16}
ROW_TIPS = {
    "vlb": "The variational bound L_vlb of the model per point (Σₜ Lₜ + L_T): an upper bound "
           "on its NLL (core.metrics.nll_bound)",
    "ode": "The model's exact NLL by the probability-flow ODE with the instantaneous change "
           "of variables (exact Jacobian trace for 2-D, Hutchinson's estimator for images)",
    "ode_exact": "The same ODE with the mixture's exact score: the truth up to the prior "
                 "mismatch at t = T and the solver tolerance",
    "truth": "−log q₀(x) of the Gaussian mixture the data were drawn from",
}


def _number(value, digits: int = 4) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


class LikelihoodBox(RunProgress, QGroupBox):
    """Emits run_requested(n) and cancel_requested(); `show_rows(rows, step)`."""

    run_requested = Signal(int)
    cancel_requested = Signal()

    def __init__(self, parent=None):
        super().__init__("Likelihood of test points", parent)
        self.setObjectName("likelihoodBox")
        self.countSpin = QSpinBox()
        self.countSpin.setObjectName("likelihoodCountSpin")
        self.countSpin.setRange(1, 20000)
        self.countSpin.setValue(DEFAULT_POINTS["points"])
        self.countSpin.setToolTip("The first N points of the test split")
        self.runButton = QPushButton("Run")
        self.runButton.setObjectName("likelihoodRunButton")
        self.runButton.setToolTip("Compute every row in the background (python -m core "
                                  "likelihood gives the same numbers)")
        self.cancelButton = QPushButton("Cancel")
        self.cancelButton.setObjectName("likelihoodCancelButton")
        self.cancelButton.setEnabled(False)
        self.cancelButton.setToolTip("Stop after the current solver step")
        self.progress = QProgressBar()
        self.progress.setObjectName("likelihoodProgress")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("likelihoodTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setToolTip("NLL per dimension of the same points (lower is better); "
                              "− truth: the row's NLL minus the true −log q₀ of the mixture "
                              "(the model's excess, ≥ 0 in expectation)")
        self.table.setSizeAdjustPolicy(QAbstractItemView.SizeAdjustPolicy.AdjustToContents)
        row_height = self.table.verticalHeader().defaultSectionSize()
        self.table.setMaximumHeight(self.table.horizontalHeader().sizeHint().height()
                                    + TABLE_ROWS_SHOWN * row_height + 6)
        self.note = QLabel()
        self.note.setObjectName("likelihoodNote")
        self.note.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(QLabel("Points"))
        top.addWidget(self.countSpin)
        top.addWidget(self.runButton)
        top.addWidget(self.cancelButton)
        top.addWidget(self.progress, 1)
        layout = QVBoxLayout(self)
        layout.setSpacing(3)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.note)
        self.runButton.clicked.connect(lambda: self.run_requested.emit(self.countSpin.value()))
        self.cancelButton.clicked.connect(self._cancel)
        self.rows = []
        self._kind = None
        self._result = ""        # what the shown rows are of
        self.set_kind("points")

    def set_kind(self, kind: str | None, has_model: bool = False,
                 has_mixture: bool = False) -> None:
        """2-D points: nats/dim; other data (images): bits/dim too, Hutchinson's trace."""
        images = kind == "other"
        self.table.setColumnHidden(BITS, not images)
        self.table.setColumnHidden(GAP, images or not has_mixture)
        if kind in DEFAULT_POINTS and kind != self._kind:
            self.countSpin.setValue(DEFAULT_POINTS[kind])
        self._kind = kind
        self.runButton.setEnabled(kind is not None and (has_model or has_mixture))
        missing = []
        if not has_model:
            missing.append("The model's rows need a trained model.")
        if kind == "points" and not has_mixture:
            missing.append("These data are no Gaussian mixture: no exact score, no truth.")
        self._help = (
            "NLL per dimension, lower is better; the VLB bounds the model's NLL from above. "
            + ("Images: uniformly dequantised, Hutchinson's trace (4 probes). " if images else "")
            + " ".join(missing))
        self.note.setText(self._result + self._help)

    def clear(self) -> None:
        self.rows = []
        self.table.setRowCount(0)
        self._result = ""
        self.note.setText(self._help)

    def show_rows(self, rows: list, step: int | None = None) -> None:
        """core.likelihood_table.LikelihoodRow list."""
        self.rows = list(rows)
        self.table.setRowCount(len(rows))
        truth = next((row.nll for row in rows if row.key == "truth"), None)
        for index, row in enumerate(rows):
            nfe = "" if row.nfe is None else f"{row.nfe:,}"
            error = _number(row.nll_stderr)
            if row.probe_stderr:
                error += f" (probes {row.probe_stderr:.1g})"
            gap = "" if truth is None or row.key == "truth" else f"{row.nll - truth:+.4f}"
            cells = (row.label, _number(row.nll), error, gap,
                     "" if row.bits is None else _number(row.bits), nfe)
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(ROW_TIPS.get(row.key, ""))
                if column:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                          | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(index, column, item)
        self.table.resizeRowsToContents()
        count = len(rows[0].log_likelihood) if rows else 0
        where = f", the EMA model at step {step:,}" if step is not None else ""
        self.progress.setFormat("done")
        self._result = f"{count:,} test points{where}. "
        self.note.setText(self._result + self._help)
