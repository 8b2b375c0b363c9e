"""The Samplers panel's table: one row per run (sampler × NFE × source) with the network
calls it made, its steps, its wall time and the chosen score; selecting a row picks that
run. `write_lab_csv` writes every run with every score, as `compare-samplers --csv` does."""

from __future__ import annotations

import csv
import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from app.lab_runs import SOURCE_LABELS

COLUMNS = ("Sampler", "ε", "NFE", "Wall s", "Score")
TIPS = ("The sampler (core.samplers)", "The trained model's ε (its EMA weights) or the exact ε "
        "of the mixture data", "Network evaluations the run made (counted for adaptive "
        "RK45, whose row also gives its tolerance); the cell's tooltip gives the steps",
        "Wall-clock seconds of the run, sampling only (not the scoring), "
        "measured in this run on this device", "The score the plot shows")
CSV_KEYS = ("sampler", "model", "target_nfe", "nfe", "steps", "tolerance", "seconds")


class _Number(QTableWidgetItem):
    """A cell that sorts by its number (NaN and missing last)."""

    def __init__(self, value, text: str):
        super().__init__(text)
        self.value = value if isinstance(value, (int, float)) and math.isfinite(value) \
            else math.inf
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other) -> bool:
        return self.value < getattr(other, "value", math.inf)


def score_text(value) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.4g}"


class RuntimeTable(QTableWidget):
    """show(result, score, label); point_chosen(LabPoint) when a row is selected."""

    point_chosen = Signal(object)

    def __init__(self, parent=None):
        super().__init__(0, len(COLUMNS), parent)
        self.setObjectName("labRuntimeTable")
        self.setHorizontalHeaderLabels(list(COLUMNS))
        for column, tip in enumerate(TIPS):
            self.horizontalHeaderItem(column).setToolTip(tip)
        self.setToolTip("Runtime and score of every run; click a row to see its samples, "
                        "a header to sort")
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(20)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        font = self.font()
        font.setPointSizeF(font.pointSizeF() * 0.9)
        self.setFont(font)
        self.points: list = []
        self.itemSelectionChanged.connect(self._on_selection)

    def show_result(self, result, score: str, label: str = "") -> None:
        from core.samplers import get_sampler

        self.setSortingEnabled(False)
        self.blockSignals(True)
        self.clearContents()
        self.points = list(result.points)
        self.setRowCount(len(self.points))
        self.horizontalHeaderItem(len(COLUMNS) - 1).setText((label or score).split(" (")[0])
        for row, point in enumerate(self.points):
            name = QTableWidgetItem(get_sampler(point.sampler).label.split(" (")[0])
            name.setToolTip(get_sampler(point.sampler).label)
            name.setData(Qt.ItemDataRole.UserRole, row)
            nfe = (f"{point.nfe} (tol {point.tolerance:g})" if point.tolerance is not None
                   else str(point.nfe))
            calls = _Number(point.nfe, nfe)
            calls.setToolTip("adaptive steps" if point.steps is None
                             else f"{point.steps} steps")
            cells = (name, QTableWidgetItem(SOURCE_LABELS.get(point.model, point.model)), calls,
                     _Number(point.seconds, f"{point.seconds:.3f}"),
                     _Number(point.scores.get(score), score_text(point.scores.get(score))))
            for column, cell in enumerate(cells):
                self.setItem(row, column, cell)
        self.blockSignals(False)
        self.setSortingEnabled(True)

    def select_point(self, point) -> None:
        """Select the row of `point` without emitting point_chosen."""
        self.blockSignals(True)
        self.clearSelection()
        for row in range(self.rowCount()):
            item = self.item(row, 0)
            if item is not None and self.points[item.data(Qt.ItemDataRole.UserRole)] is point:
                self.selectRow(row)
                self.scrollToItem(item)
                break
        self.blockSignals(False)

    def _on_selection(self) -> None:
        rows = {index.row() for index in self.selectedIndexes()}
        if len(rows) == 1:
            item = self.item(rows.pop(), 0)
            self.point_chosen.emit(self.points[item.data(Qt.ItemDataRole.UserRole)])


def write_lab_csv(result, path: str) -> int:
    """One row per run: sampler, model ("model" | "exact"), target_nfe, nfe, steps,
    tolerance, seconds, then every score (sorted by name); the data-vs-data floor as a row
    with sampler "floor". Returns the number of runs written."""
    scores = sorted({key for point in result.points for key in point.scores}
                    | set(result.floor))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(CSV_KEYS) + scores)
        for point in result.points:
            fixed = (point.sampler, point.model, point.target, point.nfe, point.steps,
                     point.tolerance, round(point.seconds, 6))
            writer.writerow([_cell(v) for v in fixed]
                            + [_cell(point.scores.get(key)) for key in scores])
        writer.writerow(["floor", "data", "", "", "", "", ""]
                        + [_cell(result.floor.get(key)) for key in scores])
    return len(result.points)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)
