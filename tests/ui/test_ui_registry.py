"""The app reads core's registries and limits: a sampler registered with core.samplers alone
appears in the Trajectories panel with its own option and samples end to end; the spin
boxes hold core.config.LIMITS; the data-set list is core.data's."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDoubleSpinBox
from ui_helpers import tiny_config, train

from app.panels.experiment import DRAW_ITEM, FOLDER_ITEM, ExperimentPanel
from app.panels.trajectories import TrajectoryPanel
from app.session import Session
from core.config import LIMITS, SamplingConfig
from core.data import DATASET_NAMES, dataset_label
from core.samplers import DEFAULT_SAMPLER, OptionSpec, SamplerSpec, register, samplers, unregister
from core.samplers.base import ETA, VARIANCE
from core.samplers.ddim import DDIMRun

SCALE = OptionSpec("test_scale", "scale", 1.0, "a throwaway option of the test sampler",
                   low=0.5, high=2.0, step=0.25)


@pytest.fixture
def test_sampler():
    """A DDIM variant registered for one test (its own option); yields (spec, the options
    each of its runs received)."""
    received: list[dict] = []

    def make_run(diffusion, model, **kwargs):
        received.append(dict(kwargs["options"]))
        return DDIMRun(diffusion, model, **kwargs)

    spec = SamplerSpec(name="test-scaled-ddim", label="Scaled DDIM (test)",
                       description="DDIM with a throwaway option, registered by a test",
                       deterministic=True, make_run=make_run, options=(ETA, SCALE))
    register(spec)
    try:
        yield spec, received
    finally:
        unregister(spec.name)


def test_a_registered_sampler_gets_its_combo_entry_and_option_and_samples(
        test_sampler, make_window, qtbot):
    spec, received = test_sampler
    window = make_window()  # built after the registration: the panel reads the registry then
    panel = window.trajectory_panel
    combo = panel.samplerCombo
    index = combo.findData(spec.name)
    assert index >= 0 and combo.itemText(index) == spec.label
    assert combo.itemData(index, Qt.ItemDataRole.ToolTipRole) == spec.description
    assert [combo.itemData(i) for i in range(combo.count())] == [s.name for s in samplers()]
    scale = window.findChild(QDoubleSpinBox, "sampleOption_test_scale")
    assert scale is panel.option_widgets[SCALE.name]
    assert (*scale.allowed, scale.singleStep()) == (0.5, 2.0, 0.25)
    assert scale.value() == SCALE.default
    for other in samplers():
        combo.setCurrentIndex(combo.findData(other.name))
        assert scale.isEnabled() == (other.name == spec.name), other.name
        assert panel.etaSpin.isEnabled() == (ETA in other.options), other.name
        assert panel.varianceCombo.isEnabled() == (VARIANCE in other.options), other.name
    combo.setCurrentIndex(index)
    assert scale.isEnabled() and panel.etaSpin.isEnabled() and not panel.varianceCombo.isEnabled()
    scale.setValue(1.5)
    params = panel.params()
    assert params["sampler"] == spec.name and params["test_scale"] == 1.5
    assert params == SamplingConfig.from_params(params).to_params()

    assert train(window, qtbot, tiny_config(steps=30)) == "finished"
    panel.sampleStepsSpin.setValue(10)
    panel.countSpin.setValue(100)
    with qtbot.waitSignal(window.sampling_finished, timeout=30000) as blocker:
        panel.sampleButton.click()
    assert blocker.args == ["finished"]
    assert received[-1] == {ETA.name: 0.0, SCALE.name: 1.5}
    trajectory = window.session.trajectory
    assert trajectory.completed and trajectory.x.shape == (11, 100, 2)
    assert np.all(np.isfinite(trajectory.final))
    # the settings round trip keeps the sampler and its option
    panel.set_params({**params, "sampler": DEFAULT_SAMPLER, "test_scale": 0.75})
    assert combo.currentData() == DEFAULT_SAMPLER and scale.value() == 0.75
    panel.set_params(params)
    assert panel.params() == params


def test_spin_box_ranges_are_core_limits(qtbot):
    """Each field's allowed range is core's; a typed value beyond it is not clamped but
    reaches validation (one range-width of room on each side), the arrows stay inside."""
    experiment = ExperimentPanel()
    qtbot.addWidget(experiment)
    panel = TrajectoryPanel(Session())
    qtbot.addWidget(panel)
    fields = ((experiment.timestepsSpin, "diffusion.timesteps"),
              (experiment.batchSizeSpin, "train.batch_size"),
              (experiment.trainStepsSpin, "train.steps"),
              (experiment.seedSpin, "train.seed"),
              (experiment.learningRateSpin, "train.lr"),
              (panel.sampleStepsSpin, "sampling.steps"),
              (panel.countSpin, "sampling.n"),
              (panel.guidanceSpin, "sampling.guidance"))
    for spin, setting in fields:
        low, high = LIMITS[setting]
        assert tuple(spin.allowed) == (low, high), setting
        assert spin.minimum() < low and spin.maximum() >= min(high + 1, 2**31 - 1), setting
        spin.setValue(low)
        spin.stepBy(-1)
        assert spin.value() == low, setting
        spin.setValue(high)
        spin.stepBy(3)
        assert spin.value() == high, setting
    assert tuple(experiment.timestepsSpin.allowed) == (2, 20000)
    # a seed up to 2**63 - 1 is valid, but a QSpinBox holds a C int
    low, high = LIMITS["sampling.seed"]
    assert tuple(panel.seedSpin.allowed) == (low, min(high, 2**31 - 1))
    assert panel.seedSpin.maximum() == 2**31 - 1


def test_the_data_set_list_is_core_data_sets_plus_folder_and_draw(qtbot):
    experiment = ExperimentPanel()
    qtbot.addWidget(experiment)
    combo = experiment.datasetCombo
    items = [(combo.itemData(i), combo.itemText(i)) for i in range(combo.count())
             if combo.itemData(i) is not None]  # not the separator
    assert [value for value, _ in items] == [*DATASET_NAMES, FOLDER_ITEM, DRAW_ITEM]
    for value, text in items[:len(DATASET_NAMES)]:
        assert text == dataset_label(value, detailed=True)
