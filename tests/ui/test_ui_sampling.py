"""Sampling: the trajectory slider, frames, keys, play, exports, sampling during training."""

from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtCore import Qt
from ui_helpers import tiny_config, train

from app.widgets.images import qimage_to_array


def sample(window, qtbot, steps: int = 20, count: int = 200, timeout: int = 30000) -> str:
    panel = window.trajectory_panel
    window.tabs.setCurrentWidget(panel)
    panel.sampleStepsSpin.setValue(steps)
    panel.countSpin.setValue(count)
    with qtbot.waitSignal(window.sampling_finished, timeout=timeout) as blocker:
        panel.sampleButton.click()
    return blocker.args[0]


def pixels(widget) -> np.ndarray:
    return qimage_to_array(widget.grab().toImage())


def test_slider_scrubs_every_recorded_step_and_changes_the_view(window, qtbot):
    assert train(window, qtbot, tiny_config(steps=60)) == "finished"
    assert sample(window, qtbot, steps=20) == "finished"
    trajectory = window.session.trajectory
    slider = window.trajectory_panel.trajectorySlider
    assert len(trajectory.timesteps) == 21  # x_T plus one frame per step
    assert slider.minimum() == 0 and slider.maximum() == len(trajectory.timesteps) - 1
    view = window.trajectory_panel.trajectoryView
    last = pixels(view)
    slider.setValue(0)
    first = pixels(view)
    assert first.shape == last.shape and not np.array_equal(first, last)
    assert "t = 20" in window.trajectory_panel.frameLabel.text()
    # arrow keys on the view step the slider
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Right)
    qtbot.keyClick(view, Qt.Key.Key_Right)
    assert slider.value() == 2
    qtbot.keyClick(view, Qt.Key.Key_Left)
    assert slider.value() == 1
    qtbot.keyClick(view, Qt.Key.Key_End)
    assert slider.value() == slider.maximum()
    # trails draw paths through the recorded frames
    window.trajectory_panel.trailsCheck.setChecked(True)
    slider.setValue(10)
    trails = view.trails
    assert trails.xData is not None and len(trails.xData) > 0
    # play runs to the last frame and stops
    slider.setValue(0)
    window.trajectory_panel.playButton.click()
    qtbot.waitUntil(lambda: slider.value() == slider.maximum(), timeout=10000)
    qtbot.waitUntil(lambda: not window.trajectory_panel.playButton.isChecked(), timeout=2000)


def test_gif_and_png_strip_export(window, qtbot, tmp_path):
    assert train(window, qtbot, tiny_config(steps=30)) == "finished"
    assert sample(window, qtbot, steps=10, count=100) == "finished"
    panel = window.trajectory_panel
    gif, strip = tmp_path / "t.gif", tmp_path / "t.png"
    frames = panel.export_gif(str(gif))
    assert frames == 11
    with Image.open(gif) as image:
        assert image.n_frames == 11
    assert panel.export_png_strip(str(strip)) >= 2
    with Image.open(strip) as image:
        assert image.width > image.height


def test_sampling_while_training_uses_an_ema_snapshot(window, qtbot):
    window.experiment.set_config(tiny_config(steps=1_000_000), preset=None)
    window.controls.startButton.click()
    qtbot.waitUntil(lambda: window.training.state == "running", timeout=30000)
    assert sample(window, qtbot, steps=10, count=50) == "finished"
    assert window.training.state == "running"  # training went on meanwhile
    assert window.session.trajectory.x.shape == (11, 50, 2)
    with qtbot.waitSignal(window.training_finished, timeout=30000):
        window.controls.stopButton.click()


def test_cancel_sampling(window, qtbot):
    assert train(window, qtbot, tiny_config(steps=10, timesteps=2000)) == "finished"
    panel = window.trajectory_panel
    panel.sampleStepsSpin.setValue(2000)
    panel.countSpin.setValue(2000)
    with qtbot.waitSignal(window.sampling_finished, timeout=30000) as blocker:
        panel.sampleButton.click()
        qtbot.waitUntil(lambda: panel.sampleProgress.value() > 0, timeout=20000)
        panel.cancelButton.click()
    assert blocker.args == ["stopped"]
    assert panel.sampleButton.isEnabled()


def test_sampling_without_a_model_explains_what_to_do(window, qtbot):
    with qtbot.waitSignal(window.error_shown, timeout=2000) as shown:
        window.trajectory_panel.sampleButton.click()
    assert "Start" in shown.args[0]


def test_class_conditional_images_sample_the_chosen_class_with_guidance(window, qtbot):
    from core.presets import load_preset

    cfg = load_preset("digits")  # 8x8 digits, class-conditional, learned variance
    cfg.model.channels, cfg.model.channel_mult = 16, (1,)
    cfg.model.num_res_blocks, cfg.model.attention_resolutions = 1, ()
    cfg.diffusion.timesteps = 20
    cfg.train.steps, cfg.train.batch_size, cfg.train.log_every = 10, 16, 1
    cfg.train.probe_every, cfg.train.probe_timesteps = 10, 5
    window.experiment.set_config(cfg, preset=None)
    qtbot.waitUntil(lambda: window.session.dataset.name == "digits", timeout=30000)
    assert train(window, qtbot, cfg) == "finished"
    panel = window.trajectory_panel
    assert panel.classCombo.isEnabled() and panel.classCombo.count() == 11  # + unconditional
    panel.classCombo.setCurrentIndex(panel.classCombo.findData(3))
    panel.guidanceSpin.setValue(1.5)
    panel.samplerCombo.setCurrentIndex(panel.samplerCombo.findData("ddim"))
    assert sample(window, qtbot, steps=5, count=4) == "finished"
    trajectory = window.session.trajectory
    assert trajectory.kind == "image" and trajectory.x.shape == (6, 4, 8, 8, 1)
    assert list(trajectory.labels) == [3, 3, 3, 3]
    view = panel.trajectoryView
    assert view.mode == "images" and view.images[0].image.shape == (2 * 9 + 1, 2 * 9 + 1)


def test_analytic_dpm_variance_from_the_trajectories_panel(window, qtbot):
    """The Variance choice reaches the sampler: same seed, other step variances; the progress
    counts the Gamma_t pass and the sampling pass; a sampler without it has no such choice."""
    assert train(window, qtbot, tiny_config(steps=60)) == "finished"
    panel = window.trajectory_panel
    panel.seedSpin.setValue(4)
    assert sample(window, qtbot, steps=10) == "finished"
    trained = window.session.trajectory
    panel.varianceCombo.setCurrentIndex(panel.varianceCombo.findData("analytic"))
    assert panel.params()["variance"] == "analytic"
    assert sample(window, qtbot, steps=10) == "finished"
    analytic = window.session.trajectory
    assert analytic.completed and len(analytic.timesteps) == 11
    np.testing.assert_array_equal(analytic.x[0], trained.x[0])          # the same x_T
    assert not np.allclose(analytic.variance[1:-1], trained.variance[1:-1])
    assert panel.sampleProgress.maximum() == 20
    panel.set_progress(3, 20)
    assert panel.sampleProgress.format().startswith("estimating σ*²")
    panel.set_progress(15, 20)
    assert panel.sampleProgress.format() == "%v / %m steps"
    # a sampler without the variance option has no such choice (core.samplers decides)
    from core.samplers import samplers
    from core.samplers.base import VARIANCE

    other = next(spec.name for spec in samplers() if VARIANCE not in spec.options)
    panel.samplerCombo.setCurrentIndex(panel.samplerCombo.findData(other))
    assert not panel.varianceCombo.isEnabled() and not panel.varianceCombo.isVisible()
