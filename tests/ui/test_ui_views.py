"""What the panels show (issue 14, C-F): a new model clears every view of the old one; one
rule for likelihood units; a readable Loss panel; decade labels on log axes; trails for a
subset; a points view that holds the data."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from tiny_configs import tiny_toy_config
from ui_helpers import gate_training_steps, tiny_config, train

from app.panels.loss import LossPanel
from app.session import Session
from app.widgets.frame_view import points_range


def sample(window, qtbot, steps=10, count=200) -> None:
    panel = window.trajectory_panel
    panel.sampleStepsSpin.setValue(steps)
    panel.countSpin.setValue(count)
    with qtbot.waitSignal(window.sampling_finished, timeout=30000) as done:
        panel.sampleButton.click()
    assert done.args == ["finished"]


def named(plot: pg.PlotWidget, prefix: str):
    items = [c for c in plot.getPlotItem().listDataItems() if (c.name() or "").startswith(prefix)]
    assert len(items) == 1, prefix
    return items[0]


def empty(curve) -> bool:
    return curve.xData is None or len(curve.xData) == 0


def assert_no_trajectory(panel) -> None:
    view = panel.trajectoryView
    assert panel.frame_count() == 0 and not panel.trajectorySlider.isEnabled()
    assert len(view.points[0].data) == 0 and len(view.points[1].data) == 0
    assert empty(view.trails)
    assert panel.frameLabel.text().startswith("No trajectory of this model yet")


def test_a_new_run_clears_every_view_of_the_old_model(window, qtbot, monkeypatch):
    cfg = tiny_config(steps=100)
    cfg.diffusion.variance_type, cfg.diffusion.loss_type = "learned_range", "hybrid"
    assert train(window, qtbot, cfg) == "finished"
    sample(window, qtbot)
    panel = window.trajectory_panel
    assert panel.frame_count() == 11 and "frame 10 / 10" in panel.frameLabel.text()
    schedule = window.schedule_panel
    assert not empty(schedule.sigma_curve) and not empty(schedule.analytic_curve)
    window.tabs.setCurrentWidget(window.loss_panel)
    loss_view = window.loss_panel.lossPlot.getPlotItem().getViewBox()
    qtbot.waitUntil(lambda: loss_view.viewRange()[0][1] >= 100, timeout=5000)
    # another model (T changes); the new run is held in its first step
    gate = gate_training_steps(monkeypatch)
    window.model_change_policy = "fresh"
    window.experiment.timestepsSpin.setValue(30)
    window.controls.startButton.click()
    qtbot.waitUntil(lambda: gate.entered == 1, timeout=30000)
    assert_no_trajectory(panel)
    loss = window.loss_panel
    assert loss.summary.text().startswith("Training: the first curves appear after 1 step")
    assert all(empty(c) for c in loss.raw_curves.values())
    assert loss_view.viewRange()[0][1] <= 20                  # the old x range is gone
    for curve in (schedule.sigma_curve, schedule.analytic_curve,
                  window.entropy_panel.learned_curve, window.entropy_panel.analytic_curve,
                  window.vlb_panel.vlb_curve, *window.vlb_panel.old_vlb):
        assert empty(curve)
    with qtbot.waitSignal(window.training_finished, timeout=30000):
        window.controls.stopButton.click()
        gate.release(2)


def test_opening_a_checkpoint_clears_the_old_trajectory(window, qtbot, tmp_path):
    assert train(window, qtbot, tiny_config(steps=20)) == "finished"
    path = str(tmp_path / "run.safetensors")
    with qtbot.waitSignal(window.checkpoint_saved, timeout=20000):
        window.save_checkpoint(path)
    sample(window, qtbot)
    assert window.trajectory_panel.frame_count() == 11
    with qtbot.waitSignal(window.checkpoint_loaded, timeout=20000):
        window.load_checkpoint(path)
    assert_no_trajectory(window.trajectory_panel)


def test_likelihoods_are_nats_for_points_and_bits_for_images_everywhere(window, qtbot):
    assert train(window, qtbot, tiny_config(steps=50)) == "finished"
    probe = window.session.probes[-1]
    vlb = window.vlb_panel
    vlb.redraw(force=True)
    assert vlb.vlbPlot.getPlotItem().getAxis("left").labelText == "nats/dim"
    latest = named(vlb.vlbPlot, "L_t (latest probe, nats/dim)")
    np.testing.assert_allclose(latest.yData, np.log(2) * probe["vlb"])   # core gives bits
    assert latest.unit == "nats_per_dim"
    assert window.loss_panel.curve_checks["vlb"].text() == "L_vlb (nats/dim)"
    # 8-bit images: bits per dimension, as the papers report them
    from core.presets import load_preset

    cfg = load_preset("digits")
    cfg.model.channels, cfg.model.channel_mult = 16, (1,)
    cfg.model.num_res_blocks, cfg.model.attention_resolutions = 1, ()
    cfg.diffusion.timesteps = 20
    cfg.train.steps, cfg.train.batch_size, cfg.train.log_every = 10, 16, 1
    cfg.train.probe_every, cfg.train.probe_timesteps = 10, 5
    window.model_change_policy = "fresh"
    window.experiment.set_config(cfg, preset=None)
    qtbot.waitUntil(lambda: window.session.dataset.name == "digits", timeout=30000)
    assert train(window, qtbot, cfg) == "finished"
    vlb.redraw(force=True)
    assert vlb.vlbPlot.getPlotItem().getAxis("left").labelText == "bits/dim"
    latest = named(vlb.vlbPlot, "L_t (latest probe, bits/dim)")
    np.testing.assert_allclose(latest.yData, window.session.probes[-1]["vlb"])
    assert window.loss_panel.curve_checks["vlb"].text() == "L_vlb (bits/dim)"


def metrics(steps: int = 200) -> dict:
    step = np.arange(1, steps + 1, dtype=np.float64)
    decay = 0.5 * np.exp(-step / 100) + 0.1
    vlb = np.full(steps, 0.3)
    vlb[49], vlb[59] = 1e-6, 1e3            # two raw spikes of L_vlb
    return {"step": step, "loss": decay, "mse": decay, "vlb": vlb,
            "grad_norm": np.full(steps, 5.0)}


def test_the_loss_panel_draws_each_quantity_once_on_its_own_axis(qtbot):
    session = Session()
    session.set_config(tiny_toy_config(200))            # the simple loss
    panel = LossPanel(session)
    qtbot.addWidget(panel)
    panel.resize(900, 600)
    panel.show()
    session.append_metrics(metrics())
    panel.redraw(force=True)
    # total loss = L_simple: said in its legend entry, drawn once
    total = panel.curve_checks["loss"]
    assert total.text() == "total loss (= L_simple)" and not total.isEnabled()
    assert not panel.raw_curves["loss"].isVisible() and empty(panel.raw_curves["loss"])
    assert not empty(panel.raw_curves["mse"])
    # the gradient norm has its own plot and axis
    grad = panel.raw_curves["grad_norm"]
    assert grad in panel.gradPlot.getPlotItem().listDataItems()
    assert grad not in panel.lossPlot.getPlotItem().listDataItems()
    # the y range follows the smoothed curves: the raw spikes 1e-6 and 1e3 do not stretch it
    view = panel.lossPlot.getPlotItem().getViewBox()
    # (log10 units: the smoothed curves span about 0.17 .. 50)
    qtbot.waitUntil(lambda: -3 < view.viewRange()[1][0] < np.log10(0.16), timeout=5000)
    assert np.log10(50) < view.viewRange()[1][1] < 2.5
    # without the smoothed curves the raw ones set the range again
    panel.smoothCheck.setChecked(False)
    qtbot.waitUntil(lambda: view.viewRange()[1][0] < -5, timeout=5000)
    # the hybrid loss: the total is its own curve
    cfg = tiny_toy_config(200)
    cfg.diffusion.loss_type = "hybrid"
    session.set_config(cfg)
    assert total.text() == "total loss" and total.isEnabled()
    panel.smoothCheck.setChecked(True)
    panel.redraw(force=True)
    assert panel.raw_curves["loss"].isVisible() and not empty(panel.raw_curves["loss"])


def test_log_axes_label_decades_not_every_minor_tick(window):
    window.tabs.setCurrentWidget(window.schedule_panel)
    axis = window.schedule_panel.schedulePlot.getPlotItem().getAxis("left")
    low, high = -5.0, -1.0                        # four decades of variance, in log10
    axis.setRange(low, high)
    levels = axis.tickValues(low, high, 400)
    minor = [values for spacing, values in levels if spacing is None]
    assert minor and minor[0], "the log axis has minor ticks"
    labels = dict(zip(minor[0], axis.tickStrings(minor[0], 1.0, None), strict=True))
    assert all(text == "" for value, text in labels.items() if abs(value - round(value)) > 1e-6)
    assert all(text for value, text in labels.items() if abs(value - round(value)) < 1e-6)
    decades = [values for spacing, values in levels if spacing is not None and values]
    assert decades and all(axis.tickStrings(values, 1.0, 1.0) for values in decades)
    assert all(s for s in axis.tickStrings(decades[0], 1.0, 1.0))
    # less than two decades in view: 1, 2 and 5 of each decade are labelled
    axis.setRange(-2.3, -1.1)
    values = [-2 + np.log10(m) for m in range(1, 10)]
    texts = axis.tickStrings(values, 1.0, None)
    assert [bool(t) for t in texts] == [m in (1, 2, 5) for m in range(1, 10)]
    # an empty plot's range 10^0..10^1 holds no decade tick strictly inside: its 2 and 5
    # are labelled (counting the range's ends as decades left the axis without a number)
    axis.setRange(0.0, 1.0)
    inside = [values for spacing, values in axis.tickValues(0.0, 1.0, 400) if spacing is None]
    assert [t for t in axis.tickStrings(inside[0], 1.0, None) if t] == ["2", "5"]


def test_trails_for_a_subset_and_a_view_that_holds_every_point(window, qtbot):
    assert train(window, qtbot, tiny_config(steps=40)) == "finished"
    sample(window, qtbot, steps=20, count=500)
    panel = window.trajectory_panel
    assert panel.trailsCheck.text() == "trails (50 of 500 points)"
    panel.trailsCheck.setChecked(True)
    panel.show_frame(12)
    assert len(panel.trajectoryView.trails.xData) == 50 * 9      # 8 steps back and this one
    lo, hi = panel.trajectoryView.view_box
    every = np.concatenate([panel.frames_left.reshape(-1, 2), panel.frames_right.reshape(-1, 2)])
    assert np.all(every.min(axis=0) >= lo) and np.all(every.max(axis=0) <= hi)
    assert "outside the view" not in panel.frameLabel.text()


def test_a_far_outlier_is_left_out_of_the_view_and_counted():
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(3, 400, 2))
    frames[2, 7] = (1e6, -1e6)                 # one diverged point
    lo, hi, left_out = points_range([frames])
    assert left_out == 1
    assert np.all(hi < 50) and np.all(lo > -50)
    assert np.all(frames[:2].reshape(-1, 2) >= lo) and np.all(frames[:2].reshape(-1, 2) <= hi)
