"""Training through the window: live loss curve, pause/resume/stop, continue, errors."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import torch
from ui_helpers import tiny_config, train

from core.presets import load_preset


def loss_curve(window, name: str = "L_simple (MSE) (raw)"):
    plot = window.findChild(pg.PlotWidget, "lossPlot")
    return [c for c in plot.getPlotItem().listDataItems() if c.name() == name][0]


def test_train_2d_preset_puts_every_logged_step_on_the_loss_plot(window, qtbot):
    cfg = load_preset("toy-2d")  # the first-launch default, shortened
    steps = 200
    cfg.train.steps = steps
    cfg.train.log_every = 1
    cfg.train.batch_size = 32
    cfg.train.probe_every = 100
    assert train(window, qtbot, cfg) == "finished"
    trainer = window.session.trainer
    assert trainer.step == steps
    curve = loss_curve(window)
    qtbot.waitUntil(lambda: curve.xData is not None and len(curve.xData) == steps, timeout=5000)
    np.testing.assert_array_equal(curve.xData, np.arange(1, steps + 1))
    np.testing.assert_allclose(curve.yData, trainer.history["mse"])
    assert window.controls.trainProgress.value() == steps
    # the probes (steps 100 and 200) reached the VLB panel
    vlb = window.findChild(pg.PlotWidget, "vlbPlot")
    window.tabs.setCurrentWidget(window.vlb_panel)
    latest = [c for c in vlb.getPlotItem().listDataItems()
              if c.name() == "L_t (latest probe, nats/dim)"][0]
    qtbot.waitUntil(lambda: latest.xData is not None and len(latest.xData) > 0, timeout=5000)
    assert [p["step"] for p in window.session.probes] == [100, 200]
    np.testing.assert_array_equal(latest.xData, trainer.probe_history[-1]["t"])


def test_pause_keeps_state_resume_continues_stop_keeps_weights(window, qtbot):
    cfg = tiny_config(steps=1_000_000)
    window.experiment.set_config(cfg, preset=None)
    window.controls.startButton.click()
    qtbot.waitUntil(lambda: window.training.state == "running"
                    and window.session.trainer is not None and window.session.trainer.step > 5,
                    timeout=30000)
    assert not window.experiment.timestepsSpin.isEnabled()  # locked while training
    window.controls.pauseButton.click()
    assert window.training.state == "paused"
    assert window.controls.pauseButton.text() == "Resume"
    qtbot.waitUntil(lambda: window.training.parked, timeout=10000)  # the step in flight ended
    trainer = window.session.trainer
    paused_at = trainer.step
    weights = [p.detach().clone() for p in trainer.model.parameters()]
    qtbot.wait(400)
    assert trainer.step == paused_at
    assert all(torch.equal(a, b) for a, b in zip(weights, trainer.model.parameters(), strict=True))
    window.controls.pauseButton.click()
    assert window.training.state == "running"
    qtbot.waitUntil(lambda: trainer.step > paused_at + 5, timeout=30000)
    with qtbot.waitSignal(window.training_finished, timeout=30000) as blocker:
        window.controls.stopButton.click()
    assert blocker.args == ["stopped"]
    stopped_at = trainer.step
    assert window.session.trainer is trainer
    assert len(window.session.history) == stopped_at  # log_every=1: one row per step
    assert window.experiment.timestepsSpin.isEnabled()
    # Start after Stop continues the same trainer (only the step budget changed)
    window.experiment.trainStepsSpin.setValue(stopped_at + 25)
    with qtbot.waitSignal(window.training_finished, timeout=30000) as blocker:
        window.controls.startButton.click()
    assert blocker.args == ["finished"]
    assert window.session.trainer is trainer
    assert trainer.step == stopped_at + 25
    np.testing.assert_array_equal(window.session.history.column("step"),
                                  np.arange(1, stopped_at + 26))


def test_start_after_a_model_change_asks_and_can_start_fresh(window, qtbot):
    assert train(window, qtbot, tiny_config(steps=30)) == "finished"
    first = window.session.trainer
    window.experiment.timestepsSpin.setValue(30)  # another diffusion: the model changed
    window.model_change_policy = "cancel"
    window.controls.startButton.click()
    assert not window.training.is_active() and window.session.trainer is first
    window.model_change_policy = "fresh"
    with qtbot.waitSignal(window.training_finished, timeout=30000):
        window.controls.startButton.click()
    assert window.session.trainer is not first
    assert window.session.trainer.config.diffusion.timesteps == 30
    assert window.session.trainer.step == 30
    assert len(window.session.history) == 30


class _FailingTrainer:
    """Stands in for core.training.Trainer: `run` raises the given exception."""

    def __init__(self, exc, config):
        self.exc, self.config, self.step = exc, config, 7
        self.history, self.probe_history, self.device = {}, [], torch.device("cpu")

    def run(self, *args, **kwargs):
        raise self.exc


def test_divergence_and_out_of_memory_are_readable_and_keep_the_window_working(window, qtbot):
    from core.training import TrainingDiverged

    cfg = window.session.config
    cases = [(TrainingDiverged(8, "loss", float("nan"), 7), "diverged"),
             (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"),
              "smaller batch size")]
    for exc, expected in cases:
        with qtbot.waitSignal(window.error_shown, timeout=10000) as shown:
            window.training.start(lambda exc=exc: _FailingTrainer(exc, cfg), 10)
        assert expected in shown.args[0]
        qtbot.waitUntil(lambda: not window.training.is_active(), timeout=10000)
        assert window.banner.isVisible() and expected in window.banner.label.text()
        assert window.controls.startButton.isEnabled()
    # and a real run still works afterwards
    window.session.set_trainer(None)
    assert train(window, qtbot, tiny_config(steps=20)) == "finished"
    assert not window.banner.isVisible()


def test_a_missing_image_folder_is_reported_and_state_is_kept(window, qtbot, tmp_path):
    before = window.session.dataset
    missing = str(tmp_path / "no-such-folder")
    with qtbot.waitSignal(window.error_shown, timeout=20000) as shown:
        window.experiment.add_dataset_path(missing)
    assert "no-such-folder" in shown.args[0]
    assert window.session.dataset is before
    assert window.banner.isVisible()
