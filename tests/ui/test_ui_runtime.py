"""How long things take, told before the user waits long (issue 14, A and F): the cost
warning of the settings form, "running the first step…", the measured time per step and a
warning when it makes the run far too long, Stop and Cancel that say they act after the
current step and run nothing more, the sample count per data kind, the sampling warning,
and what Start does after a run."""

from __future__ import annotations

import pytest
from tiny_configs import tiny_toy_config
from ui_helpers import gate_sampling_steps, gate_training_steps, tiny_config, train

from app import advice
from core.cost import CostEstimate


def choose(combo, value) -> None:
    index = combo.findData(value)
    assert index >= 0, value
    combo.setCurrentIndex(index)


def test_a_preset_far_too_big_for_the_cpu_is_flagged_in_the_form_without_blocking_start(
        window, qtbot):
    experiment = window.experiment
    warning = experiment.costWarning
    assert not warning.isVisibleTo(experiment)            # toy-2d fits any device
    window.apply_preset("mnist-ddpm")
    choose(experiment.deviceCombo, "cpu")
    qtbot.waitUntil(lambda: "Far too big for this CPU" in warning.text(), timeout=60000)
    assert warning.isVisibleTo(experiment)
    assert "mnist-cpu preset" in warning.text()           # the fix is in the text
    assert "20,000 steps" in warning.text()
    assert window.controls.startButton.isEnabled()        # a warning, not a refusal
    window.apply_preset("mnist-cpu")
    choose(experiment.deviceCombo, "cpu")
    qtbot.waitUntil(lambda: not warning.isVisibleTo(experiment), timeout=60000)
    assert window.session.cost is not None and window.session.cost.device_type == "cpu"


def test_first_step_estimate_warning_and_stop_after_the_step_in_flight(
        window, qtbot, monkeypatch):
    gate = gate_training_steps(monkeypatch)
    controls = window.controls
    window.experiment.set_config(tiny_toy_config(1_000_000), preset=None)
    qtbot.waitUntil(lambda: controls.startButton.isEnabled(), timeout=5000)
    controls.startButton.click()
    qtbot.waitUntil(lambda: gate.entered == 1, timeout=30000)
    # the first step is in flight: the window says so instead of an empty ETA
    qtbot.waitUntil(lambda: "running the first step…" in controls.trainProgress.format(),
                    timeout=10000)
    assert window.loss_panel.summary.text().startswith("Training: the first curves appear")
    assert not controls.runEstimate.isVisible()
    qtbot.wait(300)                        # a slow step (the gate holds it)
    gate.release()
    qtbot.waitUntil(lambda: gate.entered == 2, timeout=10000)
    # after one step: seconds per step and the whole run's time, and a warning, because a
    # million such steps take far longer than SLOW_RUN_SECONDS
    qtbot.waitUntil(lambda: controls.runEstimate.isVisible(), timeout=10000)
    assert "per step, about" in controls.runEstimate.text()
    assert "for 1,000,000 steps" in controls.runEstimate.text()
    qtbot.waitUntil(lambda: window.banner.kind == "warning", timeout=10000)
    assert window.banner.text().startswith("This run needs about")
    assert "Stop keeps the weights" in window.banner.text()
    # Stop during a long step: said at once, acted on after the step, nothing runs after it
    trainer = window.session.trainer
    done_before_stop = trainer.step
    controls.stopButton.click()
    assert controls.trainProgress.format() == "stopping after this step…"
    assert not controls.stopButton.isEnabled() and not controls.pauseButton.isEnabled()
    assert not controls.startButton.isEnabled()
    assert window.session.state == "stopping"
    assert "Stopping after the current step" in window.statusBar().currentMessage()
    with qtbot.waitSignal(window.training_finished, timeout=30000) as finished:
        gate.release()
    assert finished.args == ["stopped"]
    assert trainer.step == done_before_stop + 1          # the step in flight, no other
    assert gate.entered == 2
    assert controls.trainProgress.format().startswith("stopped at step")


def test_cancel_says_it_acts_after_the_step_and_takes_no_other(window, qtbot, monkeypatch):
    assert train(window, qtbot, tiny_config(steps=10)) == "finished"
    gate = gate_sampling_steps(monkeypatch)
    panel = window.trajectory_panel
    panel.sampleStepsSpin.setValue(20)
    with qtbot.waitSignal(window.sampling_finished, timeout=30000) as finished:
        panel.sampleButton.click()
        qtbot.waitUntil(lambda: gate.entered == 1, timeout=10000)
        panel.cancelButton.click()
        assert panel.sampleProgress.format().startswith("cancelling after this step…")
        assert not panel.cancelButton.isEnabled()
        assert "Cancelling after the current" in window.statusBar().currentMessage()
        gate.release()
    assert finished.args == ["stopped"]
    assert gate.entered == 1
    assert panel.sampleProgress.format() == "%v / %m steps"
    assert panel.sampleButton.isEnabled()


def test_the_sample_count_follows_the_data_kind_unless_the_user_chose_one(window, qtbot):
    panel, experiment = window.trajectory_panel, window.experiment
    assert panel.countSpin.value() == advice.POINT_SAMPLES == 500
    with qtbot.waitSignal(window.dataset_ready, timeout=30000):
        choose(experiment.datasetCombo, "digits")
    assert panel.countSpin.value() == advice.IMAGE_SAMPLES == 36
    with qtbot.waitSignal(window.dataset_ready, timeout=30000):
        choose(experiment.datasetCombo, "8gaussians")
    assert panel.countSpin.value() == 500
    panel.countSpin.setValue(100)                        # the user's choice stays
    with qtbot.waitSignal(window.dataset_ready, timeout=30000):
        choose(experiment.datasetCombo, "digits")
    assert panel.countSpin.value() == 100


def test_settings_of_an_earlier_launch_keep_their_count_only_when_it_was_chosen(window):
    panel = window.trajectory_panel
    panel.set_params({"n": 500})                  # the old default for every data kind
    assert not panel._count_user_set
    panel.set_params({"n": 64})
    assert panel._count_user_set and panel.countSpin.value() == 64


def test_a_sampling_request_far_too_big_is_flagged_before_sampling(window, qtbot):
    assert train(window, qtbot, tiny_config(steps=10)) == "finished"
    panel = window.trajectory_panel
    qtbot.waitUntil(lambda: window.session.sampling_cost is not None, timeout=30000)
    assert not panel.sampleWarning.isVisibleTo(panel)       # a tiny MLP: quick
    # a model as costly as a 1 GFLOP network on a 1 GFLOP/s device
    window.session.set_sampling_cost(CostEstimate("cpu", 1, 10**9, 64, 1e9))
    panel.countSpin.setValue(500)
    panel.sampleStepsSpin.setValue(20)
    assert panel.sampleWarning.isVisibleTo(panel)
    assert "500 samples × 20 steps" in panel.sampleWarning.text()
    assert "Fewer samples (e.g. 36)" in panel.sampleWarning.text()
    panel.countSpin.setValue(1)
    panel.sampleStepsSpin.setValue(1)
    assert not panel.sampleWarning.isVisibleTo(panel)


@pytest.mark.parametrize("steps", [30])
def test_start_says_what_it_will_do_after_a_run(window, qtbot, steps):
    start = window.controls.startButton
    assert start.text() == "Start"
    assert train(window, qtbot, tiny_config(steps=steps)) == "finished"
    assert start.text() == f"Train {steps} more"
    assert f"trains {steps} more (to {2 * steps})" in start.toolTip()
    window.experiment.trainStepsSpin.setValue(steps + 20)
    assert start.text() == f"Continue to {steps + 20}"
    window.experiment.trainStepsSpin.setValue(steps)
    with qtbot.waitSignal(window.training_finished, timeout=30000):
        start.click()
    assert window.session.trainer.step == 2 * steps
    window.experiment.timestepsSpin.setValue(25)           # another model
    assert start.text() == "Start new…"
