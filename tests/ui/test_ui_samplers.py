"""The Samplers panel (the sampler lab in the window, issue 16): its controls, a run with the
exact ε on the toy preset, clicking a point, Cancel, the CSV exports, a run with the model
while training goes on, drawn data with a spread, and the Trajectories panel's samplers and
spacings."""

from __future__ import annotations

import csv

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QWidget
from ui_helpers import gate_sampling_steps, tiny_config, train

from app.widgets.lab_plot import FLOOR_NAME
from core.samplers import sampler_names
from core.spacing import SPACING_NAMES

CONTROLS = ("labSamplerList", "labNfeEdit", "labSpacingCombo", "labModelCheck", "labExactCheck",
            "labSourceNote", "labCountSpin", "labSeedSpin", "samplersRunButton",
            "samplersCancelButton", "samplersProgress", "labScoreCombo", "labCsvButton",
            "labQualityPlot", "labSamplesView", "labRuntimeTable", "labRunLabel")


def lab_panel(window):
    panel = window.findChild(QWidget, "samplersPanel")
    window.tabs.setCurrentWidget(panel)
    return panel


def run_lab(panel, qtbot, samplers=("ddim", "euler"), nfe="2,5,10", n=200,
            timeout=60000) -> str:
    panel.set_samplers(samplers)
    panel.nfeEdit.setText(nfe)
    panel.countSpin.setValue(n)
    with qtbot.waitSignal(panel.lab.finished, timeout=timeout) as blocker:
        panel.runButton.click()
    return blocker.args[0]


def test_the_panel_has_named_controls_and_offers_the_exact_eps_only_for_mixtures(window,
                                                                                 qtbot):
    from app.widgets.draw_dialog import DEFAULT_SPREAD, DrawDialog

    panel = lab_panel(window)
    assert window.tabs.tabText(window.tabs.indexOf(panel)) == "Samplers"
    for name in CONTROLS:
        assert panel.findChild(QWidget, name) is not None, name
    items = [panel.samplerList.item(i) for i in range(panel.samplerList.count())]
    assert [item.data(Qt.ItemDataRole.UserRole) for item in items] == list(sampler_names())
    assert all(item.flags() & Qt.ItemFlag.ItemIsUserCheckable for item in items)
    spacings = [panel.spacingCombo.itemData(i) for i in range(panel.spacingCombo.count())]
    assert spacings == list(SPACING_NAMES)
    assert panel.nfeEdit.text() == "1,2,3,5,8,10,15,20,30,50,100,250"
    # 8 Gaussians have the exact eps; there is no trained model yet, and the note says so
    assert panel.exactCheck.isEnabled() and not panel.modelCheck.isEnabled()
    assert "No trained model" in panel.sourceNote.text()
    assert panel.sources() == ("exact",) and panel.runButton.isEnabled()
    panel.nfeEdit.setText("5, ten")
    panel.runButton.click()
    assert panel.requestError.isVisible() and "'ten'" in panel.requestError.text()
    # data without a mixture have no exact eps, and the note says why
    cfg = tiny_config()
    cfg.train.dataset = "moons"
    with qtbot.waitSignal(window.dataset_ready, timeout=20000):
        window.experiment.set_config(cfg, preset=None)
    assert not panel.exactCheck.isEnabled()
    assert "No exact ε for Two moons: no Gaussian-mixture density" in panel.sourceNote.text()
    assert not panel.runButton.isEnabled()          # no source can run
    # drawn points with a spread are a mixture (one Gaussian per point); spread 0 is not
    dialog = DrawDialog(window)
    qtbot.addWidget(dialog)
    assert dialog.spreadSpin.value() == DEFAULT_SPREAD == dialog.spread()
    points = np.random.default_rng(0).uniform(-1.5, 1.5, size=(300, 2))
    with qtbot.waitSignal(window.dataset_ready, timeout=10000):
        window.set_drawn_points(points, DEFAULT_SPREAD)
    dataset = window.session.dataset
    assert dataset.mixture is not None and dataset.mixture.std == DEFAULT_SPREAD
    assert dataset.mixture.num_components == 300
    assert panel.exactCheck.isEnabled()
    with qtbot.waitSignal(window.dataset_ready, timeout=10000):
        window.set_drawn_points(points, 0.0)              # the points themselves
    assert window.session.dataset.mixture is None and not panel.exactCheck.isEnabled()


def test_an_exact_run_draws_finite_curves_and_a_click_shows_its_samples(window, qtbot,
                                                                       tmp_path):
    panel = lab_panel(window)
    assert run_lab(panel, qtbot) == "finished"
    result = panel.result
    assert {(p.sampler, p.model) for p in result.points} == {("ddim", "exact"),
                                                             ("euler", "exact")}
    assert panel.score() == "knn_kl"
    for key in (("ddim", "exact"), ("euler", "exact")):
        curve = panel.quality.curves[key]
        assert list(curve.xData) == [2, 5, 10]
        assert np.all(np.isfinite(curve.yData))
        assert curve.opts["pen"].style() == Qt.PenStyle.DashLine       # exact eps: dashed
    names = [item.name() for item in panel.quality.plot.listDataItems()
             if hasattr(item, "xData")]
    assert FLOOR_NAME in names
    assert panel.table.rowCount() == len(result.points) == 6
    # a click on a point shows that run's samples beside the truth
    point = next(p for p in result.points if p.sampler == "euler" and p.nfe == 5)
    plot = panel.quality.widget
    view = panel.quality.plot.getViewBox()
    scene_pos = view.mapViewToScene(QPointF(*panel.quality.view_position(point)))
    qtbot.mouseClick(plot.viewport(), Qt.MouseButton.LeftButton,
                     pos=plot.mapFromScene(scene_pos))
    qtbot.waitUntil(lambda: panel.selected is point, timeout=3000)
    shown = panel.samplesView.points[0].getData()
    assert len(shown[0]) == 200
    assert "Euler" in panel.samplesView.left.titleLabel.text
    assert len(panel.samplesView.contours) > 0                   # the true density's lines
    # a row of the table picks its run too
    other = next(row for row in range(panel.table.rowCount())
                 if panel.table.points[panel.table.item(row, 0).data(
                     Qt.ItemDataRole.UserRole)] is not point)
    panel.table.selectRow(other)
    assert panel.selected is not point
    # the score combo switches what the plot shows
    panel.scoreCombo.setCurrentIndex(panel.scoreCombo.findData("energy_distance"))
    assert panel.quality.score == "energy_distance"
    # the table CSV holds every run with every score, the File menu's CSV the curves
    path = tmp_path / "lab.csv"
    assert panel.export_table_csv(str(path)) == 6
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 7 and rows[-1]["sampler"] == "floor"
    assert {row["nfe"] for row in rows[:-1]} == {"2", "5", "10"}
    assert all(float(row["knn_kl"]) == float(row["knn_kl"]) for row in rows)
    curves = tmp_path / "curves.csv"
    assert window.export_current_csv(str(curves)) == 2 * 3 + 2


def test_cancel_stops_the_lab_after_the_current_run(window, qtbot, monkeypatch):
    panel = lab_panel(window)
    gate = gate_sampling_steps(monkeypatch)
    panel.set_samplers(["ddim"])
    panel.nfeEdit.setText("2,5,10,20")
    panel.countSpin.setValue(200)
    panel.runButton.click()
    qtbot.waitUntil(lambda: gate.entered >= 1, timeout=30000)
    assert panel.cancelButton.isEnabled() and not panel.runButton.isEnabled()
    with qtbot.waitSignal(panel.lab.finished, timeout=30000) as blocker:
        panel.cancelButton.click()
        gate.release(1000)
    assert blocker.args[0] == "stopped"
    assert "cancelled" in panel.progress.format()
    # the run under way when Cancel came finished and is kept; no later run started
    assert panel.result is not None
    assert [(p.sampler, p.nfe) for p in panel.result.points] == [("ddim", 2)]
    assert panel.runButton.isEnabled() and not panel.cancelButton.isEnabled()


def test_the_model_and_the_exact_eps_run_while_training_goes_on(window, qtbot):
    panel = lab_panel(window)
    window.experiment.set_config(tiny_config(steps=1_000_000), preset=None)
    window.controls.startButton.click()
    qtbot.waitUntil(lambda: window.training.state == "running"
                    and panel.modelCheck.isEnabled(), timeout=30000)
    assert panel.sources() == ("model", "exact")
    assert run_lab(panel, qtbot, samplers=("dpmpp_2m",), nfe="3,10") == "finished"
    assert window.training.state == "running"
    models = {p.model for p in panel.result.points}
    assert models == {"model", "exact"}
    # a barely trained model piles samples on the clamp box's edge: k-NN KL is infinite
    # there (the table says so); the energy distance is finite
    panel.scoreCombo.setCurrentIndex(panel.scoreCombo.findData("energy_distance"))
    solid = panel.quality.curves[("dpmpp_2m", "model")]
    assert list(solid.xData) == [3, 10] and np.all(np.isfinite(solid.yData))
    assert solid.opts["pen"].style() == Qt.PenStyle.SolidLine
    with qtbot.waitSignal(window.training_finished, timeout=30000):
        window.stop_training()


def test_trajectories_offer_every_sampler_and_spacing(window, qtbot, monkeypatch):
    import core.generate

    panel = window.trajectory_panel
    samplers = [panel.samplerCombo.itemData(i) for i in range(panel.samplerCombo.count())]
    assert samplers == list(sampler_names())
    spacings = [panel.spacingCombo.itemData(i) for i in range(panel.spacingCombo.count())]
    assert spacings == list(SPACING_NAMES) and panel.spacingCombo.toolTip()
    panel.set_params({"sampler": "ddim", "spacing": "karras"})
    assert panel.params()["spacing"] == "karras"
    panel.set_params({"sampler": "rk45"})
    assert not panel.spacingCombo.isEnabled()            # an adaptive solver picks its steps
    # the chosen spacing reaches core.generate.sample
    seen = []
    real = core.generate.sample
    monkeypatch.setattr(core.generate, "sample",
                        lambda *a, **k: seen.append(k["spacing"]) or real(*a, **k))
    assert train(window, qtbot, tiny_config(steps=20)) == "finished"
    panel.set_params({"sampler": "ddim", "steps": 8, "n": 50, "spacing": "quadratic"})
    with qtbot.waitSignal(window.sampling_finished, timeout=30000) as blocker:
        panel.sampleButton.click()
    assert blocker.args[0] == "finished" and seen == ["quadratic"]
