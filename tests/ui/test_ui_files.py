"""File menu: checkpoints (save, load, corrupt), recent files, plot export; the drawn data set."""

from __future__ import annotations

import csv

import numpy as np
import pyqtgraph as pg
from PIL import Image
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication
from ui_helpers import tiny_config, train


def test_save_then_load_checkpoint_restores_settings_curves_and_weights(window, qtbot, tmp_path):
    cfg = tiny_config(steps=40)
    assert train(window, qtbot, cfg) == "finished"
    path = str(tmp_path / "run.safetensors")
    with qtbot.waitSignal(window.checkpoint_saved, timeout=20000):
        window.save_checkpoint(path)
    saved_loss = list(window.session.trainer.history["loss"])
    # change settings and start over, then load the checkpoint back
    window.experiment.timestepsSpin.setValue(64)
    window.session.set_trainer(None)
    assert len(window.session.history) == 0
    with qtbot.waitSignal(window.checkpoint_loaded, timeout=20000):
        window.load_checkpoint(path)
    assert window.experiment.timestepsSpin.value() == 20
    assert window.session.trainer.step == 40
    np.testing.assert_allclose(window.session.history.column("loss"), saved_loss)
    assert [a.toolTip() for a in window.recent_menu.actions()][0].endswith("run.safetensors")
    # Start continues the loaded run
    window.experiment.trainStepsSpin.setValue(50)
    with qtbot.waitSignal(window.training_finished, timeout=20000):
        window.controls.startButton.click()
    assert window.session.trainer.step == 50


def test_corrupt_checkpoint_shows_an_error_and_keeps_state(window, qtbot, tmp_path):
    assert train(window, qtbot, tiny_config(steps=20)) == "finished"
    trainer, config = window.session.trainer, window.session.config.to_json()
    rows = len(window.session.history)
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x00\x01 this is not a checkpoint" * 50)
    with qtbot.waitSignal(window.error_shown, timeout=20000) as shown:
        window.load_checkpoint(str(bad))
    assert "corrupt.safetensors" in shown.args[0]
    assert window.banner.isVisible()
    assert window.session.trainer is trainer
    assert window.session.config.to_json() == config
    assert len(window.session.history) == rows
    assert window.controls.startButton.isEnabled()


def test_export_plots_as_png_and_csv(window, qtbot, tmp_path):
    window.tabs.setCurrentWidget(window.schedule_panel)
    png, table = tmp_path / "schedule.png", tmp_path / "schedule.csv"
    window.export_current_png(str(png))
    with Image.open(png) as image:
        assert image.width > 200 and image.height > 200
    rows = window.export_current_csv(str(table))
    with open(table, newline="", encoding="utf-8") as handle:
        read = list(csv.DictReader(handle))
    assert len(read) == rows > 0
    T = window.session.config.diffusion.timesteps
    betas = [r for r in read if r["plot"] == "schedulePlot" and r["curve"].startswith("βₜ")]
    assert len(betas) == T
    np.testing.assert_allclose([float(r["y"]) for r in betas], window.session.schedule.betas)


def _drag(widget, points):
    def send(kind, pos, button, buttons):
        event = QMouseEvent(kind, QPointF(*pos), QPointF(*pos), button, buttons,
                            Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(widget, event)

    left = Qt.MouseButton.LeftButton
    send(QEvent.Type.MouseButtonPress, points[0], left, left)
    for pos in points[1:]:
        send(QEvent.Type.MouseMove, pos, Qt.MouseButton.NoButton, left)
    send(QEvent.Type.MouseButtonRelease, points[-1], left, Qt.MouseButton.NoButton)


def test_drawn_points_become_the_training_data(window, qtbot):
    from app.widgets.draw_dialog import DrawDialog

    dialog = DrawDialog(window)
    qtbot.addWidget(dialog)
    dialog.resize(500, 560)
    dialog.show()
    canvas = dialog.canvas
    _drag(canvas, [(100 + 5 * i, 100 + 2 * i) for i in range(40)])
    points = dialog.points()
    assert points.shape == (40 * canvas.points_per_move, 2)  # press + 39 moves
    # the stroke went right and down on screen: x grows, y (data, up) shrinks
    assert points[-10:, 0].mean() > points[:10, 0].mean()
    assert points[-10:, 1].mean() < points[:10, 1].mean()
    assert dialog.okButton.isEnabled()
    dialog.accept()
    with qtbot.waitSignal(window.dataset_ready, timeout=10000):
        window.set_drawn_points(points)
    assert window.session.dataset.name == "drawn"
    assert window.experiment.dataset_value() == "drawn"
    cfg = window.experiment.validate()
    cfg.train.steps, cfg.train.log_every, cfg.train.batch_size = 20, 1, 32
    cfg.diffusion.timesteps = 20
    assert train(window, qtbot, cfg) == "finished"
    assert window.session.trainer.dataset is window.session.dataset


def test_forward_process_slider_diffuses_the_data(window, qtbot):
    window.tabs.setCurrentWidget(window.forward_panel)
    slider = window.forward_panel.forwardSlider
    assert slider.maximum() == window.session.config.diffusion.timesteps - 1
    points = window.forward_panel.points
    slider.setValue(0)
    near_data = np.column_stack(points.getData())
    slider.setValue(slider.maximum())
    noised = np.column_stack(points.getData())
    # at t = T-1 the cloud is close to N(0, I): its spread differs from the data's ring
    data = window.forward_panel.x0.numpy()
    assert np.abs(near_data - data).mean() < 0.2
    assert abs(noised.std() - 1.0) < 0.15 and abs(near_data.std() - 1.0) > 0.2


def test_model_tree_lists_modules_with_parameter_counts(window, qtbot):
    window.tabs.setCurrentWidget(window.model_panel)
    tree = window.model_panel.modelTree
    qtbot.waitUntil(lambda: tree.topLevelItemCount() == 1, timeout=20000)
    root = tree.topLevelItem(0)
    assert root.text(1) == "MLPDenoiser"
    total = int(root.text(2).replace(",", ""))
    children = sum(int(root.child(i).text(2).replace(",", "")) for i in range(root.childCount()))
    assert total == children > 0
    assert root.text(3) == "2"


def test_loss_plot_exports_csv_after_training(window, qtbot, tmp_path):
    assert train(window, qtbot, tiny_config(steps=25)) == "finished"
    window.tabs.setCurrentWidget(window.loss_panel)
    window.loss_panel.redraw(force=True)
    path = tmp_path / "loss.csv"
    window.export_current_csv(str(path))
    with open(path, newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    # the simple loss: the total is L_simple itself and is drawn once, as L_simple
    assert not [r for r in table if r["curve"].startswith("total loss")]
    rows = [r for r in table if r["curve"] == "L_simple (MSE) (raw)"]
    assert [int(float(r["x"])) for r in rows] == list(range(1, 26))
    assert {r["y_unit"] for r in rows} == {""}
    # 2-D points are continuous data: L_vlb in nats per dimension (core.options.nll_unit)
    vlb = [r for r in table if r["curve"] == "L_vlb (nats/dim) (raw)"]
    assert len(vlb) == 25 and {r["y_unit"] for r in vlb} == {"nats_per_dim"}
    history = window.session.trainer.history["vlb"]
    np.testing.assert_allclose([float(r["y"]) for r in vlb], np.log(2) * np.array(history))
    assert isinstance(window.findChild(pg.PlotWidget, "lossPlot"), pg.PlotWidget)


def counting_loads(monkeypatch, fail_with=None) -> list:
    """Count core.checkpoint.load_checkpoint calls (the app's open job imports it then);
    with fail_with, every call raises it."""
    import core.checkpoint

    calls, real = [], core.checkpoint.load_checkpoint

    def load(path, *args, **kwargs):
        calls.append(str(path))
        if fail_with is not None:
            raise fail_with
        return real(path, *args, **kwargs)

    monkeypatch.setattr(core.checkpoint, "load_checkpoint", load)
    return calls


def draw_points(window, qtbot, count: int = 300):
    points = np.random.default_rng(1).normal(size=(count, 2)) * 0.5 + 1.0
    with qtbot.waitSignal(window.dataset_ready, timeout=10000):
        window.set_drawn_points(points)
    return window.session.dataset


def test_a_bad_file_is_read_once_and_its_first_error_shown_even_with_drawn_points(
        window, qtbot, tmp_path, monkeypatch):
    draw_points(window, qtbot)
    calls = counting_loads(monkeypatch)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with qtbot.waitSignal(window.error_shown, timeout=20000) as shown:
        window.load_checkpoint(str(empty))
    assert calls == [str(empty)]
    assert shown.args[0] == f"Opening empty.safetensors failed: checkpoint {empty}: is empty (0 bytes)"
    qtbot.waitUntil(lambda: not window.jobs.busy("checkpoint"), timeout=10000)
    assert calls == [str(empty)]


def test_drawn_points_are_used_only_for_a_file_trained_on_drawn_points(
        window, qtbot, tmp_path, make_window):
    toy = str(tmp_path / "toy.safetensors")
    assert train(window, qtbot, tiny_config(steps=5)) == "finished"
    with qtbot.waitSignal(window.checkpoint_saved, timeout=20000):
        window.save_checkpoint(toy)
    drawn = draw_points(window, qtbot)
    cfg = window.experiment.validate()
    cfg.train.steps, cfg.train.log_every, cfg.train.batch_size = 5, 1, 32
    cfg.diffusion.timesteps, cfg.train.probe_every = 20, 0
    window.model_change_policy = "fresh"
    assert train(window, qtbot, cfg) == "finished"
    on_drawn = str(tmp_path / "drawn.safetensors")
    with qtbot.waitSignal(window.checkpoint_saved, timeout=20000):
        window.save_checkpoint(on_drawn)
    with qtbot.waitSignal(window.checkpoint_loaded, timeout=20000):
        window.load_checkpoint(toy)                  # its own data, though points are drawn
    assert window.session.trainer.dataset.name == "8gaussians"
    with qtbot.waitSignal(window.checkpoint_loaded, timeout=20000):
        window.load_checkpoint(on_drawn)
    assert window.session.trainer.dataset is drawn
    # a window without drawn points says what the file needs
    other = make_window()
    with qtbot.waitSignal(other.error_shown, timeout=20000) as shown:
        other.load_checkpoint(on_drawn)
    assert on_drawn in shown.args[0] and "was trained on drawn points" in shown.args[0]
    assert "Draw…" in shown.args[0]


def test_out_of_memory_while_opening_names_the_file_and_what_to_do(
        window, qtbot, tmp_path, monkeypatch):
    import torch

    path = str(tmp_path / "big.safetensors")
    counting_loads(monkeypatch, torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to "
                                                            "allocate 20.00 GiB"))
    with qtbot.waitSignal(window.error_shown, timeout=20000) as shown:
        window.load_checkpoint(path)
    message = shown.args[0]
    assert message.startswith(f"Opening big.safetensors failed: Out of memory while opening {path}")
    assert "The file is unchanged" in message and "Close other programs" in message
    assert "batch size" not in message
