"""The experiment panel: every setting of a run, validated by core.config as the user types
(ExperimentConfig.check_trainable: also the combinations that would train nothing).

An invalid setting is named inline under its field and in `configError` by the form's label
(app.field_labels), and the panel reports `None` instead of a config (the main window then
disables Start). `costWarning` says when the settings are far too big for their device; it
never blocks Start.
"""

from __future__ import annotations

import copy
from dataclasses import replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from app.field_labels import FIELD_LABELS, FIELD_TIPS, readable_error
from app.panels.experiment_fields import (
    MODEL_SIZES,
    PRESET_SIZE,
    available_devices,
    choices,
    combo,
    micro_batch_spin,
    set_combo_value,
    sized_model,
    spin,
)
from app.widgets.spinboxes import ScientificSpinBox, limited_double_spin
from core.config import ConfigError, DiffusionConfig, ExperimentConfig
from core.data import DATASET_NAMES, DRAWN_DATASET, dataset_label, is_vector_dataset
from core.options import LossType, MeanType, VarType
from core.schedule import SCHEDULES

FOLDER_ITEM = "@folder"
DRAW_ITEM = "@draw"


class ExperimentPanel(QWidget):
    """Settings form. Emits `config_edited(ExperimentConfig | None)` after every edit."""

    config_edited = Signal(object)
    preset_chosen = Signal(str)
    dataset_action = Signal(str)  # "folder" | "draw": the window opens the dialog

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("experimentPanel")
        self._base = ExperimentConfig()
        self._updating = False
        self._last_dataset_index = 0
        self._error_labels: dict[QWidget, QLabel] = {}
        self._forms: dict[QWidget, QFormLayout] = {}
        self.last_error: ConfigError | None = None

        self.presetCombo = QComboBox()
        self.presetCombo.setObjectName("presetCombo")
        self.datasetCombo = combo("datasetCombo", [])
        self.classConditionalCheck = QCheckBox("class-conditional (labels)")
        self.classConditionalCheck.setObjectName("classConditionalCheck")
        self.modelSizeCombo = combo("modelSizeCombo",
                                     [(name, name) for name in MODEL_SIZES])
        self.scheduleCombo = combo("scheduleCombo",
                                    [(name, spec.label) for name, spec in SCHEDULES.items()])
        self.timestepsSpin = spin("timestepsSpin", "diffusion.timesteps", 10)
        self.sigmaMinSpin = limited_double_spin(ScientificSpinBox(), "diffusion.sigma_min")
        self.sigmaMinSpin.setObjectName("sigmaMinSpin")
        self.sigmaMaxSpin = limited_double_spin(ScientificSpinBox(), "diffusion.sigma_max")
        self.sigmaMaxSpin.setObjectName("sigmaMaxSpin")
        self.sigmaRange = QWidget()
        sigma_row = QHBoxLayout(self.sigmaRange)
        sigma_row.setContentsMargins(0, 0, 0, 0)
        for text, box in (("min", self.sigmaMinSpin), ("max", self.sigmaMaxSpin)):
            sigma_row.addWidget(QLabel(text))
            sigma_row.addWidget(box, 1)
        self.meanTypeCombo = combo("meanTypeCombo", choices(MeanType))
        self.varianceTypeCombo = combo("varianceTypeCombo", choices(VarType))
        self.lossTypeCombo = combo("lossTypeCombo", choices(LossType))
        self.learningRateSpin = limited_double_spin(ScientificSpinBox(), "train.lr")
        self.learningRateSpin.setObjectName("learningRateSpin")
        self.batchSizeSpin = spin("batchSizeSpin", "train.batch_size", 16)
        self.trainStepsSpin = spin("trainStepsSpin", "train.steps", 100)
        self.deviceCombo = combo("deviceCombo", available_devices())
        self.seedSpin = spin("seedSpin", "train.seed")
        # memory aids: they change how much memory a step needs, never the weights' meaning
        self.microBatchSpin = micro_batch_spin()
        self.checkpointingCheck = QCheckBox("recompute UNet activations")
        self.checkpointingCheck.setObjectName("checkpointingCheck")
        self.configError = QLabel()
        self.configError.setObjectName("configError")
        self.configError.setWordWrap(True)
        self.configError.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.costWarning = QLabel()
        self.costWarning.setObjectName("costWarning")
        self.costWarning.setWordWrap(True)
        self.costWarning.setStyleSheet(
            "QLabel#costWarning { color: #5c3d00; background: #fff4db; border: 1px solid "
            "#e8c46b; border-radius: 3px; padding: 4px 6px; }")
        self.costWarning.setToolTip("An estimate from the network's FLOPs per step and a "
                                    "conservative speed for the device (core.cost); the "
                                    "progress bar measures the real speed once a run starts")
        for field, widget in (("preset", self.presetCombo), ("train.dataset", self.datasetCombo),
                              ("train.class_conditional", self.classConditionalCheck),
                              ("model", self.modelSizeCombo),
                              ("diffusion.schedule", self.scheduleCombo),
                              ("diffusion.timesteps", self.timestepsSpin),
                              ("diffusion.sigma_min", self.sigmaMinSpin),
                              ("diffusion.sigma_max", self.sigmaMaxSpin),
                              ("diffusion.mean_type", self.meanTypeCombo),
                              ("diffusion.variance_type", self.varianceTypeCombo),
                              ("diffusion.loss_type", self.lossTypeCombo),
                              ("train.lr", self.learningRateSpin),
                              ("train.batch_size", self.batchSizeSpin),
                              ("train.steps", self.trainStepsSpin),
                              ("train.device", self.deviceCombo), ("train.seed", self.seedSpin),
                              ("train.micro_batch", self.microBatchSpin),
                              ("model.checkpointing", self.checkpointingCheck)):
            widget.setToolTip(FIELD_TIPS[field])
            widget.setProperty("tip", FIELD_TIPS[field])

        self._fill_presets()
        self._fill_datasets()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(6)
        preset_form = self._group(layout, None)
        preset_form.addRow("Preset", self.presetCombo)
        data_form = self._group(layout, "Data")
        self._row(data_form, "train.dataset", self.datasetCombo)
        data_form.addRow("", self.classConditionalCheck)
        model_form = self._group(layout, "Model and diffusion")
        self._row(model_form, "model", self.modelSizeCombo)
        self._row(model_form, "diffusion.schedule", self.scheduleCombo)
        self._row(model_form, "diffusion.timesteps", self.timestepsSpin)
        self._row(model_form, "diffusion.sigma_min", self.sigmaRange)
        self._row(model_form, "diffusion.mean_type", self.meanTypeCombo)
        self._row(model_form, "diffusion.variance_type", self.varianceTypeCombo)
        self._row(model_form, "diffusion.loss_type", self.lossTypeCombo)
        train_form = self._group(layout, "Training")
        self._row(train_form, "train.lr", self.learningRateSpin)
        self._row(train_form, "train.batch_size", self.batchSizeSpin)
        self._row(train_form, "train.steps", self.trainStepsSpin)
        self._row(train_form, "train.device", self.deviceCombo)
        self._row(train_form, "train.seed", self.seedSpin)
        memory_form = self._group(layout, "Memory aids")
        self._row(memory_form, "train.micro_batch", self.microBatchSpin)
        self._row(memory_form, "model.checkpointing", self.checkpointingCheck)
        layout.addWidget(self.costWarning)
        layout.addWidget(self.configError)
        self.configError.hide()
        self.costWarning.hide()

        self._field_widgets = {
            "train.dataset": self.datasetCombo, "train.image_size": self.datasetCombo,
            "train.grayscale": self.datasetCombo, "train.num_samples": self.datasetCombo,
            "train.class_conditional": self.classConditionalCheck,
            "diffusion.schedule": self.scheduleCombo, "diffusion.timesteps": self.timestepsSpin,
            "diffusion.sigma_min": self.sigmaRange, "diffusion.sigma_max": self.sigmaRange,
            "diffusion.mean_type": self.meanTypeCombo,
            "diffusion.variance_type": self.varianceTypeCombo,
            "diffusion.loss_type": self.lossTypeCombo, "diffusion.lambda_vlb": self.lossTypeCombo,
            "diffusion.timestep_sampler": self.lossTypeCombo,
            "train.lr": self.learningRateSpin, "train.batch_size": self.batchSizeSpin,
            "train.steps": self.trainStepsSpin, "train.device": self.deviceCombo,
            "train.seed": self.seedSpin, "train.micro_batch": self.microBatchSpin,
            "model.checkpointing": self.checkpointingCheck,
        }

        for box in (self.scheduleCombo, self.meanTypeCombo, self.varianceTypeCombo,
                    self.lossTypeCombo, self.deviceCombo, self.modelSizeCombo):
            box.currentIndexChanged.connect(self._on_edit)
        for field in (self.timestepsSpin, self.batchSizeSpin, self.trainStepsSpin, self.seedSpin,
                      self.microBatchSpin, self.learningRateSpin, self.sigmaMinSpin,
                      self.sigmaMaxSpin):
            field.valueChanged.connect(self._on_edit)
        for check in (self.classConditionalCheck, self.checkpointingCheck):
            check.toggled.connect(self._on_edit)
        self.datasetCombo.currentIndexChanged.connect(self._on_dataset_index)
        self.presetCombo.activated.connect(self._on_preset_activated)

    # -- layout helpers ---------------------------------------------------------------
    def _group(self, layout: QVBoxLayout, title: str | None) -> QFormLayout:
        box = QGroupBox(title) if title else QWidget()
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setContentsMargins(6, 4 if title else 0, 6, 4)
        form.setVerticalSpacing(4)
        layout.addWidget(box)
        return form

    def _row(self, form: QFormLayout, field: str, widget: QWidget) -> None:
        """A row labelled as app.field_labels names `field`, with an error line below."""
        form.addRow(FIELD_LABELS[field], widget)
        error = QLabel()
        error.setObjectName("fieldError")
        error.setWordWrap(True)
        form.addRow("", error)
        form.setRowVisible(error, False)
        self._error_labels[widget] = error
        self._forms[widget] = form

    def _fill_presets(self) -> None:
        try:
            from core.presets import list_presets
            names = list_presets()
        except (ImportError, OSError):
            names = []
        self.presetCombo.clear()
        for name in names:
            self.presetCombo.addItem(name, name)
        self.presetCombo.addItem("custom", "")

    def _fill_datasets(self) -> None:
        self.datasetCombo.clear()
        for name in DATASET_NAMES:
            self.datasetCombo.addItem(dataset_label(name, detailed=True), name)
        self.datasetCombo.insertSeparator(self.datasetCombo.count())
        self.datasetCombo.addItem("Open image folder…", FOLDER_ITEM)
        self.datasetCombo.addItem("Draw…", DRAW_ITEM)

    # -- public API -------------------------------------------------------------------
    def preset_names(self) -> list[str]:
        return [self.presetCombo.itemData(i) for i in range(self.presetCombo.count())
                if self.presetCombo.itemData(i)]

    def set_config(self, cfg: ExperimentConfig, preset: str | None = None) -> None:
        """Show `cfg` in the widgets (emits one config_edited afterwards)."""
        self._updating = True
        try:
            self._base = copy.deepcopy(cfg)
            if preset is not None:
                set_combo_value(self.presetCombo, preset)
            else:
                set_combo_value(self.presetCombo, "")
            self._select_dataset(cfg.train.dataset)
            self.classConditionalCheck.setChecked(bool(cfg.train.class_conditional))
            self._select_model_size(cfg)
            set_combo_value(self.scheduleCombo, cfg.diffusion.schedule)
            self.timestepsSpin.setValue(int(cfg.diffusion.timesteps))
            self.sigmaMinSpin.setValue(float(cfg.diffusion.sigma_min))
            self.sigmaMaxSpin.setValue(float(cfg.diffusion.sigma_max))
            set_combo_value(self.meanTypeCombo, cfg.diffusion.mean_type)
            set_combo_value(self.varianceTypeCombo, cfg.diffusion.variance_type)
            set_combo_value(self.lossTypeCombo, cfg.diffusion.loss_type)
            self.learningRateSpin.setValue(float(cfg.train.lr))
            self.batchSizeSpin.setValue(int(cfg.train.batch_size))
            self.trainStepsSpin.setValue(int(cfg.train.steps))
            if not set_combo_value(self.deviceCombo, cfg.train.device):
                set_combo_value(self.deviceCombo, "auto")
            self.seedSpin.setValue(int(cfg.train.seed))
            self.microBatchSpin.setValue(int(cfg.train.micro_batch))
            self.checkpointingCheck.setChecked(bool(cfg.model.checkpointing))
        finally:
            self._updating = False
        self._on_edit()

    def current_config(self) -> ExperimentConfig:
        """The settings as shown (not validated)."""
        base = copy.deepcopy(self._base)
        size = self.modelSizeCombo.currentData()
        vector_data = is_vector_dataset(self.dataset_value())
        if size == PRESET_SIZE or size is None:
            model = base.model
            if (model.kind == "mlp") != vector_data and model.kind != "auto":
                # the preset's network is for the other kind of data: let core pick
                model = replace(model, kind="auto")
        else:
            model = sized_model(size, base.model, vector_data, base.train.image_size)
        model = replace(model, checkpointing=self.checkpointingCheck.isChecked())
        timesteps = self.timestepsSpin.value()
        diffusion = replace(base.diffusion,
                            schedule=self.scheduleCombo.currentData(),
                            timesteps=timesteps,
                            sigma_min=float(self.sigmaMinSpin.value()),
                            sigma_max=float(self.sigmaMaxSpin.value()),
                            mean_type=self.meanTypeCombo.currentData(),
                            variance_type=self.varianceTypeCombo.currentData(),
                            loss_type=self.lossTypeCombo.currentData())
        if LossType(diffusion.loss_type) is LossType.SIMPLE:
            # L_simple has no per-t bound to weight timesteps by: sample them uniformly
            diffusion = replace(diffusion, timestep_sampler=DiffusionConfig().timestep_sampler)
        train = replace(base.train,
                        dataset=self.dataset_value(),
                        class_conditional=self.classConditionalCheck.isChecked(),
                        lr=float(self.learningRateSpin.value()),
                        batch_size=self.batchSizeSpin.value(),
                        steps=self.trainStepsSpin.value(),
                        device=self.deviceCombo.currentData(),
                        seed=self.seedSpin.value(),
                        micro_batch=self.microBatchSpin.value())
        if train.probe_timesteps > timesteps:
            # the probe looks at most at every timestep
            train = replace(train, probe_timesteps=timesteps)
        return ExperimentConfig(model=model, diffusion=diffusion, train=train, name=base.name)

    def validate(self) -> ExperimentConfig | None:
        """Validate the shown settings; marks the bad field. Returns the config or None."""
        cfg = self.current_config()
        self._clear_errors()
        try:
            if cfg.train.dataset in (FOLDER_ITEM, DRAW_ITEM):
                raise ConfigError("train.dataset", cfg.train.dataset,
                                  "choose a data set, an image folder or draw points")
            cfg.check_trainable()
        except ConfigError as exc:
            self.last_error = exc
            self._show_error(exc)
            return None
        self.last_error = None
        return cfg

    def dataset_value(self) -> str:
        return str(self.datasetCombo.currentData() or "")

    def add_dataset_path(self, path: str) -> None:
        """Add an image folder to the data-set list and select it."""
        index = self.datasetCombo.findData(path)
        if index < 0:
            index = self.datasetCombo.count() - 3  # before the separator
            self.datasetCombo.insertItem(index + 1, f"Folder: {path}", path)
            index += 1
        self.datasetCombo.setCurrentIndex(index)

    def select_drawn_dataset(self, count: int) -> None:
        index = self.datasetCombo.findData(DRAWN_DATASET)
        label = f"{dataset_label(DRAWN_DATASET)} ({count})"
        if index < 0:
            index = self.datasetCombo.count() - 3
            self.datasetCombo.insertItem(index + 1, label, DRAWN_DATASET)
            index += 1
        else:
            self.datasetCombo.setItemText(index, label)
        self.datasetCombo.setCurrentIndex(index)

    def set_editable(self, editable: bool) -> None:
        """Lock the settings while a run is in progress (Start after Stop unlocks them)."""
        for child in self.findChildren(QGroupBox):
            child.setEnabled(editable)
        self.presetCombo.setEnabled(editable)

    @property
    def error_text(self) -> str:
        return self.configError.text()

    def set_cost_warning(self, text: str) -> None:
        """Show (or, with "", hide) the warning that the settings are far too big for their
        device (app.advice.training_warning). It never disables Start."""
        self.costWarning.setText(f"⚠ {text}" if text else "")
        self.costWarning.setVisible(bool(text))

    # -- internals ---------------------------------------------------------------------
    def _select_dataset(self, name: str) -> None:
        if not set_combo_value(self.datasetCombo, name):
            if name == DRAWN_DATASET:
                self.select_drawn_dataset(0)
            else:
                self.add_dataset_path(name)
        self._last_dataset_index = self.datasetCombo.currentIndex()

    def _select_model_size(self, cfg: ExperimentConfig) -> None:
        model = cfg.model
        vector_data = is_vector_dataset(cfg.train.dataset)
        for name in MODEL_SIZES:
            if sized_model(name, model, vector_data, cfg.train.image_size) == model:
                set_combo_value(self.modelSizeCombo, name)
                return
        index = self.modelSizeCombo.findData(PRESET_SIZE)
        label = (f"preset ({model.hidden} hidden, {model.mlp_blocks} blocks)" if vector_data
                 else f"preset ({model.channels} ch, {len(model.channel_mult)} levels)")
        if index < 0:
            self.modelSizeCombo.addItem(label, PRESET_SIZE)
            index = self.modelSizeCombo.count() - 1
        else:
            self.modelSizeCombo.setItemText(index, label)
        self.modelSizeCombo.setCurrentIndex(index)

    def _on_dataset_index(self, index: int) -> None:
        value = self.datasetCombo.itemData(index)
        if value in (FOLDER_ITEM, DRAW_ITEM):
            # the dialog decides; until then the previous data set stays selected
            self.datasetCombo.blockSignals(True)
            self.datasetCombo.setCurrentIndex(self._last_dataset_index)
            self.datasetCombo.blockSignals(False)
            if not self._updating:
                self.dataset_action.emit("folder" if value == FOLDER_ITEM else "draw")
            return
        self._last_dataset_index = index
        self._on_edit()

    def _on_preset_activated(self, index: int) -> None:
        name = self.presetCombo.itemData(index)
        if name:
            self.preset_chosen.emit(name)

    def _on_edit(self, *_args) -> None:
        if self._updating:
            return
        spec = SCHEDULES.get(self.scheduleCombo.currentData())
        self._forms[self.sigmaRange].setRowVisible(
            self.sigmaRange, spec is not None and spec.process == "ve")
        cfg = self.validate()
        self.config_edited.emit(cfg)

    def _clear_errors(self) -> None:
        self.configError.clear()
        self.configError.hide()
        for widget, label in self._error_labels.items():
            label.clear()
            self._forms[widget].setRowVisible(label, False)
            if widget.property("invalid"):
                widget.setProperty("invalid", False)
                widget.setToolTip(widget.property("tip"))
                widget.style().unpolish(widget)
                widget.style().polish(widget)

    def _show_error(self, exc: ConfigError) -> None:
        self.configError.setText(f"⚠ {readable_error(exc)}")
        self.configError.show()
        widget = self._field_widgets.get(exc.field)
        if widget is None and exc.field.startswith("model."):
            widget = self.modelSizeCombo
        if widget is not None:
            label = self._error_labels[widget]
            label.setText(f"{exc.value!r}: {exc.allowed}")
            self._forms[widget].setRowVisible(label, True)
            widget.setProperty("invalid", True)
            widget.style().unpolish(widget)
            widget.style().polish(widget)
            widget.setToolTip(f"{readable_error(exc)}\n\n{widget.property('tip')}")
