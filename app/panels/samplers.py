"""The Samplers panel, the sampler lab in the window: pick samplers (the registry,
core.samplers), network-evaluation budgets, a spacing (core.spacing), the ε to sample with
(the trained model's EMA weights and/or the exact ε of Gaussian-mixture data), the number of
samples and a seed; Run scores every sampler at every budget from one x_T (core.lab, run by
app.lab in the background). The plot shows a score against NFE (solid: the model, dashed:
the exact ε, so solver error and model error show apart; dotted: the data-vs-data floor);
clicking a point, or a row of the runtime table, shows that run's samples beside the truth.

Emits run_requested(LabSettings, sources) and cancel_requested(); error(str) and
message(str) for the window."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.lab_runs import SOURCE_LABELS, exact_available, samples_for_display
from app.widgets.lab_plot import QualityPlot, default_score, score_choices
from app.widgets.lab_samples import SamplesView
from app.widgets.lab_table import RuntimeTable, write_lab_csv
from app.widgets.spinboxes import limited_spin
from core.lab import LabSettings
from core.samplers import get_sampler, samplers
from core.spacing import DEFAULT_SPACING, SPACINGS

DEFAULT_NFE = "1,2,3,5,8,10,15,20,30,50,100,250"
DEFAULT_SAMPLERS = ("ddim", "dpmpp_2m", "unipc", "heun")
POINT_SAMPLES, IMAGE_SAMPLES = 1000, 256
MAX_NFE = 100_000
ROW_HEIGHT = 18


def parse_nfe(text: str) -> list[int]:
    """Sorted distinct budgets from "1,2,5" (ValueError naming what is wrong)."""
    values = []
    for part in text.replace(";", ",").split(","):
        if part.strip():
            try:
                value = int(part)
            except ValueError:
                raise ValueError(f"NFE: {part.strip()!r} is not a whole number") from None
            if not 1 <= value <= MAX_NFE:
                raise ValueError(f"NFE: {value} is outside 1..{MAX_NFE:,}")
            values.append(value)
    if not values:
        raise ValueError("NFE: give at least one budget, e.g. 5,10,20")
    return sorted(set(values))


class SamplersPanel(QWidget):
    run_requested = Signal(object, object)     # core.lab.LabSettings, ("model", "exact")
    cancel_requested = Signal()
    error = Signal(str)
    message = Signal(str)

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.setObjectName("samplersPanel")
        self.session = session
        self.result = None
        self.selected = None
        self._busy = False
        self._cancelling = False
        self._kind: str | None = None
        self._build_controls()
        self.quality = QualityPlot(self)
        self.samplesView = SamplesView()
        self.samplesView.clear_run("samples: run the lab, then click a point")
        self.table = RuntimeTable()
        self._layout()
        self.quality.point_clicked.connect(self.show_point)
        self.table.point_chosen.connect(self.show_point)
        self.scoreCombo.currentIndexChanged.connect(self._redraw)
        self.samplerList.itemChanged.connect(self._update_run_button)
        for check in (self.modelCheck, self.exactCheck):
            check.toggled.connect(self._update_run_button)
        self.runButton.clicked.connect(self._request)
        self.cancelButton.clicked.connect(self._cancel)
        self.csvButton.clicked.connect(self._export_dialog)
        session.dataset_changed.connect(self._update_sources)
        session.trainer_changed.connect(self._update_sources)
        self._update_sources()

    # -- construction ----------------------------------------------------------------------
    def _build_controls(self) -> None:
        self.samplerList = QListWidget()
        self.samplerList.setObjectName("labSamplerList")
        self.samplerList.setToolTip("The samplers to compare (every registered one); each "
                                    "runs at every NFE budget")
        self.samplerList.setFlow(QListView.Flow.LeftToRight)
        self.samplerList.setWrapping(True)
        self.samplerList.setResizeMode(QListView.ResizeMode.Adjust)
        self.samplerList.setSpacing(1)
        self.samplerList.setFixedHeight(3 * (ROW_HEIGHT + 2) + 6)
        for spec in samplers():
            item = QListWidgetItem(spec.label)
            item.setData(Qt.ItemDataRole.UserRole, spec.name)
            item.setToolTip(spec.description)
            item.setSizeHint(QSize(item.sizeHint().width(), ROW_HEIGHT))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if spec.name in DEFAULT_SAMPLERS
                               else Qt.CheckState.Unchecked)
            self.samplerList.addItem(item)
        self.nfeEdit = QLineEdit(DEFAULT_NFE)
        self.nfeEdit.setObjectName("labNfeEdit")
        self.nfeEdit.setToolTip("Network-evaluation budgets, comma-separated: each sampler "
                                "takes the most steps whose network calls fit a budget (Heun "
                                "and DPM-Solver-2 call the network twice a step); RK45 picks "
                                "its own steps at five tolerances instead")
        self.spacingCombo = QComboBox()
        self.spacingCombo.setObjectName("labSpacingCombo")
        for name, spec in SPACINGS.items():
            self.spacingCombo.addItem(spec.label, name)
        self.spacingCombo.setCurrentIndex(self.spacingCombo.findData(DEFAULT_SPACING))
        self.spacingCombo.setToolTip("Which timesteps the steps visit (core.spacing); which "
                                     "solver wins at 10–20 NFE can change with it")
        self.modelCheck = QCheckBox(f"trained {SOURCE_LABELS['model']} (EMA)")
        self.modelCheck.setObjectName("labModelCheck")
        self.modelCheck.setToolTip("Sample with the trained network's ε (a snapshot of its "
                                   "EMA weights; training goes on): the sampler's error plus "
                                   "the model's")
        self.exactCheck = QCheckBox(SOURCE_LABELS["exact"])
        self.exactCheck.setObjectName("labExactCheck")
        self.exactCheck.setToolTip("Sample with the exact ε of Gaussian-mixture data (known "
                                   "in closed form, core.exact): the sampler's own "
                                   "discretisation error alone, drawn dashed")
        for check in (self.modelCheck, self.exactCheck):
            check.setChecked(True)
        self.sourceNote = QLabel()
        self.sourceNote.setObjectName("labSourceNote")
        self.sourceNote.setWordWrap(True)
        self.sourceNote.setStyleSheet("QLabel#labSourceNote { color: #555555; }")
        self.sourceNote.setToolTip("Which ε sources can run, and why not")
        self.countSpin = limited_spin("labCountSpin", "sampling.n")
        self.countSpin.setValue(POINT_SAMPLES)
        self.countSpin.setToolTip(f"Samples per run ({POINT_SAMPLES} for 2-D points, "
                                  f"{IMAGE_SAMPLES} for images by default); the scores' noise "
                                  "and the data-vs-data floor shrink as it grows")
        self.seedSpin = limited_spin("labSeedSpin", "sampling.seed")
        self.seedSpin.setToolTip("Seed of x_T (shared by every run) and of the samplers' "
                                 "noise")
        self.runButton = QPushButton("Run")
        self.runButton.setObjectName("samplersRunButton")
        self.runButton.setToolTip("Run every chosen sampler at every budget in the "
                                  "background and score the samples")
        self.cancelButton = QPushButton("Cancel")
        self.cancelButton.setObjectName("samplersCancelButton")
        self.cancelButton.setToolTip("Stop after the current run; the runs finished so far are shown")
        self.cancelButton.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setObjectName("samplersProgress")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m runs")
        self.progress.setToolTip("Runs done of the lab (sampler × NFE × ε)")
        self.requestError = QLabel()
        self.requestError.setObjectName("labRequestError")
        self.requestError.setWordWrap(True)
        self.requestError.setStyleSheet("QLabel#labRequestError { color: #a40000; }")
        self.requestError.hide()
        self.scoreCombo = QComboBox()
        self.scoreCombo.setObjectName("labScoreCombo")
        self.scoreCombo.setToolTip("The score the plot and the table show")
        self.scoreCombo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.csvButton = QPushButton("Table CSV…")
        self.csvButton.setObjectName("labCsvButton")
        self.csvButton.setToolTip("Every run with every score, its NFE, steps and seconds, as "
                                  "compare-samplers --csv writes them (File ▸ Export saves the "
                                  "plot as PNG or its curves as CSV)")
        self.csvButton.setEnabled(False)
        self.runLabel = QLabel("Run the lab: every chosen sampler at every NFE, from one x_T.")
        self.runLabel.setObjectName("labRunLabel")
        self.runLabel.setWordWrap(True)

    def _layout(self) -> None:
        # controls on top, so the plot, the samples and the table get the full width
        fields = QHBoxLayout()
        for label, widget, stretch in (("NFE", self.nfeEdit, 3), ("Spacing", self.spacingCombo, 0),
                                       ("Samples", self.countSpin, 0), ("Seed", self.seedSpin, 0)):
            fields.addWidget(QLabel(label))
            fields.addWidget(widget, stretch)
            fields.addSpacing(8)
        sources = QHBoxLayout()
        sources.addWidget(QLabel("ε from"))
        sources.addWidget(self.modelCheck)
        sources.addWidget(self.exactCheck)
        sources.addWidget(self.sourceNote, 1)
        sources.addWidget(self.requestError, 1)
        sources.addWidget(self.runButton)
        sources.addWidget(self.cancelButton)
        sources.addWidget(self.progress)
        top = QHBoxLayout()
        top.addWidget(QLabel("Score"))
        top.addWidget(self.scoreCombo)
        top.addWidget(self.runLabel, 1)
        top.addWidget(self.csvButton)
        plot_area = QWidget()
        plot_layout = QVBoxLayout(plot_area)
        plot_layout.setContentsMargins(0, 0, 0, 0)
        plot_layout.addLayout(top)
        plot_layout.addWidget(self.quality.widget, 1)
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(self.samplesView)
        bottom.addWidget(self.table)
        bottom.setSizes([530, 430])
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(plot_area)
        right.addWidget(bottom)
        right.setSizes([330, 300])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(3)
        layout.addWidget(self.samplerList)
        layout.addLayout(fields)
        layout.addLayout(sources)
        layout.addWidget(right, 1)

    # -- request ---------------------------------------------------------------------------
    def chosen_samplers(self) -> list[str]:
        return [self.samplerList.item(i).data(Qt.ItemDataRole.UserRole)
                for i in range(self.samplerList.count())
                if self.samplerList.item(i).checkState() == Qt.CheckState.Checked]

    def set_samplers(self, names) -> None:
        for i in range(self.samplerList.count()):
            item = self.samplerList.item(i)
            item.setCheckState(Qt.CheckState.Checked if item.data(Qt.ItemDataRole.UserRole)
                               in names else Qt.CheckState.Unchecked)

    def sources(self) -> tuple[str, ...]:
        """The ε sources checked and available: "model", "exact"."""
        return tuple(name for name, check in (("model", self.modelCheck),
                                              ("exact", self.exactCheck))
                     if check.isChecked() and check.isEnabled())

    def settings(self) -> LabSettings:
        """The request as core.lab.LabSettings (ValueError for a bad NFE list)."""
        return LabSettings(samplers=self.chosen_samplers(), nfe=parse_nfe(self.nfeEdit.text()),
                           spacing=self.spacingCombo.currentData(), n=self.countSpin.value(),
                           seed=self.seedSpin.value())

    def _request(self) -> None:
        try:
            settings = self.settings()
        except ValueError as exc:
            self.requestError.setText(f"⚠ {exc}")
            self.requestError.show()
            return
        self.requestError.hide()
        self.run_requested.emit(settings, self.sources())

    def _cancel(self) -> None:
        self._cancelling = True
        self.cancelButton.setEnabled(False)
        self.progress.setFormat("cancelling after this run… %v / %m")
        self.cancel_requested.emit()

    def _lab_dataset(self):
        trainer = self.session.trainer
        return getattr(trainer, "dataset", None) if trainer is not None else self.session.dataset

    def _update_sources(self, *_args) -> None:
        """Model: only with a trained model; exact ε: only for mixture data (say why not)."""
        dataset, trainer = self._lab_dataset(), self.session.trainer
        self.modelCheck.setEnabled(trainer is not None)
        self.exactCheck.setEnabled(exact_available(dataset))
        notes = []
        if trainer is None:
            notes.append("No trained model yet: press Start or open a checkpoint (the exact "
                         "ε runs without one).")
        if not exact_available(dataset):
            name = getattr(dataset, "title", "") or getattr(dataset, "name", "these data")
            notes.append(f"No exact ε for {name}: no Gaussian-mixture density is known (8 "
                         "Gaussians, 25 Gaussians, Gaussian and points drawn with a spread "
                         "have one).")
        elif trainer is not None:
            notes.append("Both use the trained model's data and diffusion.")
        self.sourceNote.setText(" ".join(notes))
        kind = getattr(dataset, "kind", None)
        if kind is not None and kind != self._kind:
            self._kind = kind
            if self.countSpin.value() in (POINT_SAMPLES, IMAGE_SAMPLES):
                self.countSpin.setValue(IMAGE_SAMPLES if kind == "image" else POINT_SAMPLES)
        self._update_run_button()

    def _update_run_button(self, *_args) -> None:
        self.runButton.setEnabled(not self._busy and bool(self.chosen_samplers())
                                  and bool(self.sources()))

    # -- progress --------------------------------------------------------------------------
    def set_busy(self, busy: bool) -> None:
        self._busy = busy
        self._cancelling = False
        self.cancelButton.setEnabled(busy)
        self._update_run_button()
        if busy:
            self.progress.setRange(0, 0)          # busy until the first progress report
            self.progress.setFormat("preparing…")

    def set_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        if not self._cancelling:
            self.progress.setFormat("preparing the scores…" if done == 0
                                    else "%v / %m runs")

    def set_finished(self, status: str) -> None:
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
        if status != "finished":
            self.progress.setFormat({"stopped": "cancelled", "failed": "failed"}.get(
                status, status) + " · %v / %m runs")

    # -- results ---------------------------------------------------------------------------
    def show_result(self, result) -> None:
        """Show a lab run (app.lab_runs.LabResult): the score combo, the plot, the table and
        the samples of its first sampler at its largest NFE."""
        self.result = result
        previous = self.scoreCombo.currentData()
        self.scoreCombo.blockSignals(True)
        self.scoreCombo.clear()
        for key, label, tip in score_choices(result):
            self.scoreCombo.addItem(label, key)
            self.scoreCombo.setItemData(self.scoreCombo.count() - 1, tip,
                                        Qt.ItemDataRole.ToolTipRole)
        for wanted in (previous, default_score(result.kind)):
            if self.scoreCombo.findData(wanted) >= 0:
                self.scoreCombo.setCurrentIndex(self.scoreCombo.findData(wanted))
                break
        self.scoreCombo.blockSignals(False)
        self.csvButton.setEnabled(True)
        self.runLabel.setText(result.title)
        self._redraw()
        if result.points:
            first = result.points[0].sampler
            self.show_point(max((p for p in result.points if p.sampler == first),
                                key=lambda p: (p.model == "model", p.nfe)))

    def score(self) -> str:
        return self.scoreCombo.currentData() or ""

    def _redraw(self, *_args) -> None:
        if self.result is None:
            return
        label = self.scoreCombo.currentText()
        self.quality.show(self.result, self.score(), label)
        self.table.show_result(self.result, self.score(), label)
        if self.selected is not None and self.selected in self.result.points:
            self.quality.select(self.selected)
            self.table.select_point(self.selected)

    def show_point(self, point) -> None:
        """Show one run's samples beside the truth; ring it in the plot, select its row."""
        if self.result is None or point is None:
            return
        self.selected = point
        result = self.result
        tolerance = "" if point.tolerance is None else f", tol {point.tolerance:g}"
        title = (f"{get_sampler(point.sampler).label.split(' (')[0]} · "
                 f"{SOURCE_LABELS[point.model]} · {point.nfe} NFE{tolerance}")
        self.samplesView.show_run(samples_for_display(point, result.kind), result.truth,
                                  result.kind, result.density, title, result.truth_title)
        self.quality.select(point)
        self.table.select_point(point)

    # -- export ----------------------------------------------------------------------------
    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the lab's table as CSV",
                                              "samplers.csv", "CSV files (*.csv)")
        if path:
            self.export_table_csv(path)

    def export_table_csv(self, path: str) -> int:
        """Write every run of the shown lab (app.widgets.lab_table.write_lab_csv); the count
        of runs written (0, with an error, when there is nothing or the file fails)."""
        if self.result is None:
            self.error.emit("There is no lab run to export yet: press Run.")
            return 0
        try:
            rows = write_lab_csv(self.result, path)
        except OSError as exc:
            self.error.emit(f"Export failed: {exc}")
            return 0
        self.message.emit(f"Saved {rows} runs to {path}")
        return rows
