"""The window: launch, names, validation, schedule/entropy redraw, settings persistence."""

from __future__ import annotations

import sys

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QPushButton, QWidget

from core.config import LIMITS

NAMES = ["mainWindow", "presetCombo", "datasetCombo", "scheduleCombo", "timestepsSpin",
         "meanTypeCombo", "varianceTypeCombo", "lossTypeCombo", "learningRateSpin",
         "batchSizeSpin", "trainStepsSpin", "deviceCombo", "seedSpin", "startButton",
         "pauseButton", "stopButton", "trainProgress", "configError", "lossPlot",
         "schedulePlot", "entropyPlot", "vlbPlot", "samplerCombo", "sampleStepsSpin", "etaSpin",
         "guidanceSpin", "sampleButton", "sampleProgress", "trajectorySlider", "playButton",
         "trajectoryView", "forwardSlider", "forwardView", "modelTree"]


def curve(plot: pg.PlotWidget, prefix: str):
    items = [c for c in plot.getPlotItem().listDataItems() if (c.name() or "").startswith(prefix)]
    assert len(items) == 1, f"{prefix!r}: {[c.name() for c in plot.getPlotItem().listDataItems()]}"
    return items[0]


def test_launch_has_every_named_widget_and_the_2d_default(window):
    assert window.objectName() == "mainWindow"
    for name in NAMES[1:]:
        assert window.findChild(QWidget, name) is not None, name
    for name in ("lossPlot", "schedulePlot", "entropyPlot", "vlbPlot"):
        assert isinstance(window.findChild(QWidget, name), pg.PlotWidget), name
    assert window.experiment.presetCombo.currentData() == "toy-2d"
    assert window.session.config.train.dataset == "8gaussians"
    assert window.session.dataset.kind == "vector"
    assert window.findChild(QPushButton, "startButton").isEnabled()
    assert not window.findChild(QPushButton, "stopButton").isEnabled()
    assert window.deviceLabel.text().startswith("Device:")


def test_invalid_settings_disable_start_and_name_the_field(window, qtbot):
    start = window.findChild(QPushButton, "startButton")
    error = window.findChild(QLabel, "configError")
    window.experiment.learningRateSpin.setValue(0.0)  # lr > 0: the open end of its range
    assert not start.isEnabled() and not window.session.config_valid
    # the form's label, not the config field (app.field_labels)
    assert error.isVisible() and error.text() == "⚠ Learning rate: must lie in (0.0, 1.0]"
    assert "train.lr" not in error.text()
    assert window.experiment.learningRateSpin.property("invalid") is True
    window.experiment.learningRateSpin.setValue(1e-3)
    assert start.isEnabled() and not error.isVisible() and window.session.config_valid
    # numbers outside core.config.LIMITS reach validation and are reported, never clamped
    window.experiment.timestepsSpin.setValue(1)
    assert window.experiment.timestepsSpin.value() == 1
    assert not start.isEnabled() and error.text() == "⚠ Steps T: must be between 2 and 20000"
    window.experiment.timestepsSpin.setValue(LIMITS["diffusion.timesteps"][0])
    window.experiment.batchSizeSpin.setValue(0)
    assert not start.isEnabled() and error.text().startswith("⚠ Batch size: must be between 1")
    window.experiment.batchSizeSpin.setValue(32)
    assert start.isEnabled()
    # two invalid settings: the first in validation order stays named until it is fixed
    cfg = window.experiment.validate()
    cfg.diffusion.lambda_vlb = -1.0  # a setting without a field of its own (presets, files)
    window.experiment.set_config(cfg)
    assert not start.isEnabled() and error.text().startswith("⚠ Loss: must lie in [0.0, 1000")
    window.experiment.learningRateSpin.setValue(0.0)  # still invalid; first error stays named
    assert not start.isEnabled() and error.text().startswith("⚠ Loss:")
    cfg.diffusion.lambda_vlb, cfg.train.lr = 0.001, 0.0
    window.experiment.set_config(cfg)
    assert not start.isEnabled() and error.text().startswith("⚠ Learning rate")
    window.start_training()  # Start refuses invalid settings
    assert not window.training.is_active()
    window.experiment.learningRateSpin.setValue(1e-3)
    assert start.isEnabled() and error.text() == ""


def test_a_typed_negative_learning_rate_is_reported_not_clamped(window, qtbot):
    spin = window.experiment.learningRateSpin
    spin.setFocus()
    spin.lineEdit().selectAll()
    qtbot.keyClicks(spin.lineEdit(), "-1")
    qtbot.keyClick(spin.lineEdit(), Qt.Key.Key_Return)
    assert spin.value() == -1.0
    error = window.experiment.configError
    assert error.text() == "⚠ Learning rate: must lie in (0.0, 1.0]"
    assert not window.controls.startButton.isEnabled()
    label = window.experiment._error_labels[spin]
    assert label.text() == "-1.0: must lie in (0.0, 1.0]"


def test_learned_range_with_the_simple_loss_is_refused_under_the_loss_field(window, qtbot):
    experiment = window.experiment
    loss, variance = experiment.lossTypeCombo, experiment.varianceTypeCombo
    loss.setCurrentIndex(loss.findData("simple"))
    variance.setCurrentIndex(variance.findData("learned_range"))
    assert not window.controls.startButton.isEnabled()
    assert experiment.configError.text().startswith(
        "⚠ Loss: learned range needs the hybrid or vlb loss")
    below_loss = experiment._error_labels[loss]
    assert below_loss.isVisibleTo(experiment) and "hybrid or vlb" in below_loss.text()
    assert loss.property("invalid") is True
    loss.setCurrentIndex(loss.findData("hybrid"))
    assert window.controls.startButton.isEnabled() and experiment.configError.text() == ""


def test_changing_T_redraws_schedule_and_entropy_with_T_points(window):
    for T, schedule in ((37, "cosine"), (250, "linear")):
        window.experiment.scheduleCombo.setCurrentIndex(
            window.experiment.scheduleCombo.findData(schedule))
        window.experiment.timestepsSpin.setValue(T)
        schedule_plot = window.findChild(pg.PlotWidget, "schedulePlot")
        for name in ("βₜ", "β̃ₜ"):
            x, y = curve(schedule_plot, name).xData, curve(schedule_plot, name).yData
            assert len(x) == T and len(y) == T
        assert np.array_equal(curve(schedule_plot, "βₜ").xData, np.arange(T))
        entropy_plot = window.findChild(pg.PlotWidget, "entropyPlot")
        upper = curve(entropy_plot, "upper bound").yData
        lower = curve(entropy_plot, "lower bound").yData
        assert len(upper) == T and len(lower) == T
        assert np.all(upper >= lower)
        # per dimension: upper = 1/2 log(2 pi e beta_t), checked in float64 from the plot's betas
        betas = curve(schedule_plot, "βₜ").yData
        np.testing.assert_allclose(upper, 0.5 * np.log(2 * np.pi * np.e * betas), rtol=1e-12)


def test_settings_and_layout_persist_between_launches(make_window, settings_path, qtbot):
    first = make_window(restore=True, path=settings_path)
    first.experiment.timestepsSpin.setValue(55)
    first.tabs.setCurrentIndex(2)
    first.trajectory_panel.sampleStepsSpin.setValue(33)
    first.close()
    second = make_window(restore=True, path=settings_path)
    assert second.experiment.timestepsSpin.value() == 55
    assert second.session.config.diffusion.timesteps == 55
    assert second.tabs.currentIndex() == 2
    assert second.trajectory_panel.sampleStepsSpin.value() == 33


def test_preset_choice_fills_the_form(window):
    combo = window.experiment.presetCombo
    assert "mnist-ddpm" in window.experiment.preset_names()
    window.apply_preset("digits")
    assert window.experiment.varianceTypeCombo.currentData() == "learned_range"
    assert window.session.config.train.dataset == "digits"
    assert combo.currentData() == "digits"


def test_void_qt_calls_do_not_leak_none_references(qtbot):
    """Canary for the PySide6 6.12.0 bug that decremented None's refcount on every void call."""
    label = QLabel()
    qtbot.addWidget(label)
    before = sys.getrefcount(None)
    for i in range(500):
        label.setText(str(i))
        label.setObjectName("canary")
    after = sys.getrefcount(None)
    assert after >= before - 5
