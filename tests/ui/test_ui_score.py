"""The Score panel: its controls, the exact field without a model, a trained model's field,
error map and Fisher curve, particles with a scrub slider, cancelling (t changes, Cancel, a
new model), and the likelihood readout against core.likelihood."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PySide6.QtCore import QObject, Qt
from ui_helpers import gate_sampling_steps, tiny_config, train

from app import score_jobs

CONTROLS = ("scorePanel", "scoreTimeSlider", "scoreTimeLabel", "scoreExactCheck",
            "scoreErrorCheck", "scoreFollowCheck", "scoreFieldPlot", "scoreFieldKey",
            "fisherPlot", "scoreWeightsLabel", "scoreNote", "particleBox", "particleModeCombo",
            "particleSamplerCombo", "particleScoreCombo", "particleCountSpin",
            "particleStepsSpin", "particleSeedSpin", "particleRunButton",
            "particleCancelButton", "particleProgress", "particleSlider", "particlePlayButton",
            "particleFrameLabel", "likelihoodBox", "likelihoodCountSpin", "likelihoodRunButton",
            "likelihoodCancelButton", "likelihoodProgress", "likelihoodTable", "likelihoodNote")


def open_score(window, qtbot):
    panel = window.score_panel
    window.tabs.setCurrentWidget(panel)
    qtbot.waitUntil(lambda: panel.field_data is not None, timeout=20000)
    return panel


def run_particles(panel, qtbot, sampler_index: int | None = None, steps: int = 10,
                  count: int = 60):
    controls = panel.particles
    if sampler_index is not None:
        controls.samplerCombo.setCurrentIndex(sampler_index)
    controls.stepsSpin.setValue(steps)
    controls.countSpin.setValue(count)
    controls.runButton.click()
    qtbot.waitUntil(lambda: panel.particle_run is not None, timeout=30000)
    qtbot.waitUntil(lambda: controls.runButton.isEnabled(), timeout=10000)


def test_named_controls_and_every_job_cancels(window, qtbot, monkeypatch):
    """t changes cancel the field job; Cancel and a new model cancel the particles."""
    check_named_controls(window)
    panel = open_score(window, qtbot)
    check_changing_t_cancels_the_field_job(panel, qtbot, monkeypatch)
    check_cancel_and_a_new_model_stop_the_particles(window, panel, qtbot, monkeypatch)


def test_without_a_model_the_exact_score_particles_and_likelihoods(window, qtbot):
    panel = open_score(window, qtbot)
    field = panel.field_data
    assert field.learned is None and field.exact is not None and field.heat is None
    assert np.isfinite(field.exact).all() and panel.field.exact.arrow_count > 400
    assert panel.field.learned.arrow_count == 0
    assert "No model yet" in panel.note.text()
    assert panel.particles.scoreCombo.currentData() is True       # exact: no model yet
    # annealed Langevin on the exact score: it reaches the ring
    run_particles(panel, qtbot, sampler_index=0, steps=10)
    run = panel.particle_run
    assert run.x.shape[0] == 1 and run.x.shape[2:] == (60, 2) and np.isfinite(run.x).all()
    radius = np.linalg.norm(run.x[0, -1], axis=1)
    assert abs(np.median(radius) - 2.0) < 0.3
    slider = panel.particles.slider
    assert slider.isEnabled() and slider.value() == slider.maximum()
    middle = slider.maximum() // 2
    slider.setValue(middle)
    drawn = panel.field.particles[0].data
    assert np.allclose(np.stack([drawn["x"], drawn["y"]], 1), run.x[0, middle])
    frame_t = int(run.timesteps[middle])
    assert panel.timeSlider.value() == frame_t                   # the field follows
    assert f"t = {frame_t}" in panel.particles.frameLabel.text()
    qtbot.waitUntil(lambda: panel.field_data.t == frame_t, timeout=10000)
    # ODE vs SDE from the same x_T: two runs, identical first frames
    panel.particles.modeCombo.setCurrentIndex(1)
    panel.particle_run = None
    run_particles(panel, qtbot, steps=10)
    run = panel.particle_run
    assert run.x.shape[0] == 2 and np.array_equal(run.x[0, 0], run.x[1, 0])
    assert not np.allclose(run.x[0, -1], run.x[1, -1])
    check_likelihood_readout_matches_core_likelihood(window, panel, qtbot)


def test_a_trained_model_shows_its_score_error_map_and_fisher_curve(window, qtbot):
    panel = window.score_panel
    window.tabs.setCurrentWidget(panel)            # visible while training: EMA snapshots
    steps = []
    panel.controller.source_changed.connect(lambda source: steps.append(source.step))
    assert train(window, qtbot, tiny_config(steps=120)) == "finished"
    final = window.session.trainer.step
    qtbot.waitUntil(lambda: steps[-1] == final, timeout=10000)
    assert any(step is not None and step < final for step in steps)   # taken mid-run
    qtbot.waitUntil(lambda: panel.field_data is not None and panel.field_data.heat is not None,
                    timeout=20000)
    qtbot.waitUntil(lambda: panel.fisher_curve.yData is not None
                    and len(panel.fisher_curve.yData) > 5, timeout=20000)
    field = panel.field_data
    assert np.isfinite(field.learned).all() and np.isfinite(field.heat).all()
    assert (field.heat >= 0).all() and field.heat.max() > 0
    assert panel.field.learned.arrow_count > 400 and panel.field.heat.image is not None
    assert np.isfinite(panel.field.heat.image).all()
    assert field.fisher is not None and field.fisher.mean > 0
    mean = panel.fisher_curve.yData
    assert np.isfinite(mean).all() and (mean > 0).all()
    text = panel.weightsLabel.text()
    assert "1 − ᾱₜ" in text and "βₜ²/(2β̃ₜαₜ)" in text and "Fₜ = " in text
    assert f"step {window.session.trainer.step:,}" in panel.note.text()
    assert panel.particles.scoreCombo.currentData() is False       # learned, now there is one
    run_particles(panel, qtbot, sampler_index=2, steps=10)          # reverse SDE
    assert np.isfinite(panel.particle_run.x).all()
    check_entropy_panel_gets_the_model_s_ode_entropy(window, qtbot)


def check_entropy_panel_gets_the_model_s_ode_entropy(window, qtbot):
    """The Entropy panel's button: H(X_t) of the model by the probability-flow ODE, drawn
    on the system-entropy plot with error bars (its agreement with the truth for the exact
    score is tests/test_score_sde.py's)."""
    entropy = window.entropy_panel
    qtbot.mouseClick(entropy.odeButton, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: entropy.ode_curve.yData is not None
                    and len(entropy.ode_curve.yData) > 5, timeout=30000)
    values = entropy.ode_curve.yData
    assert len(values) == 20 and np.isfinite(values).all()
    assert np.isfinite(entropy.ode_error.opts["height"]).all()
    assert "by the ODE (step" in entropy.ode_curve.name()


def check_named_controls(window):
    tabs = window.tabs
    assert tabs.tabText(tabs.indexOf(window.score_panel)) == "Score"
    assert tabs.tabToolTip(tabs.indexOf(window.score_panel))
    for name in CONTROLS:
        found = window.findChildren(QObject, name)
        assert len(found) == 1, (name, found)
    for name in window.score_panel.particles.option_widgets:
        assert window.findChildren(QObject, f"particleOption_{name}")


def check_changing_t_cancels_the_field_job(panel, qtbot, monkeypatch):
    controller = panel.controller
    first, second = 3, 7
    entered, release, stopped = threading.Event(), threading.Event(), []
    real = score_jobs.field_task

    def gated(model, diffusion, mixture, box, t, *args):
        task = real(model, diffusion, mixture, box, t, *args)

        def run(progress, should_stop):
            if t == first:
                entered.set()
                release.wait(20)
                stopped.append(should_stop())
            return task(progress, should_stop)
        return run

    monkeypatch.setattr(score_jobs, "field_task", gated)
    shown = []
    panel.field_shown.connect(shown.append)
    panel.timeSlider.setValue(first)
    qtbot.waitUntil(entered.is_set, timeout=10000)
    generation = controller.jobs.generation("score-field")
    panel.timeSlider.setValue(second)
    qtbot.waitUntil(lambda: controller.jobs.generation("score-field") > generation,
                    timeout=5000)
    release.set()
    qtbot.waitUntil(lambda: bool(shown) and shown[-1] == second, timeout=10000)
    assert stopped == [True] and first not in shown


def check_cancel_and_a_new_model_stop_the_particles(window, panel, qtbot, monkeypatch):
    gate = gate_sampling_steps(monkeypatch)
    controls = panel.particles
    controls.stepsSpin.setValue(5)
    controls.runButton.click()
    qtbot.waitUntil(lambda: gate.entered >= 1, timeout=10000)
    assert controls.cancelButton.isEnabled() and not controls.runButton.isEnabled()
    controls.cancelButton.click()
    gate.release(5)
    qtbot.waitUntil(lambda: controls.runButton.isEnabled(), timeout=10000)
    assert panel.particle_run is None and controls.progress.format() == "cancelled"
    # a new model (here: none) cancels a run in flight as well
    controls.runButton.click()
    qtbot.waitUntil(lambda: gate.entered >= 2, timeout=10000)
    window.session.set_trainer(None)
    gate.release(20)
    qtbot.waitUntil(lambda: controls.runButton.isEnabled(), timeout=10000)
    assert panel.particle_run is None


def check_likelihood_readout_matches_core_likelihood(window, panel, qtbot):
    from core.exact import ExactEps
    from core.likelihood import eps_function, flow

    count = 40
    box = panel.likelihood
    box.countSpin.setValue(count)
    box.runButton.click()
    qtbot.waitUntil(lambda: len(box.rows) == 2, timeout=30000)
    rows = {row.key: row for row in box.rows}
    dataset = window.session.dataset
    diffusion = panel.controller._parts()[1]
    points = dataset.test[:count].double()
    exact = ExactEps(dataset.mixture, diffusion.schedule)
    result = flow(eps_function(exact, diffusion), diffusion, points, trace="exact")
    truth = exact.log_density_abar(points, torch.ones(count)).numpy()
    assert rows["ode_exact"].nll == pytest.approx(-result.log_likelihood.mean() / 2, abs=1e-6)
    assert rows["truth"].nll == pytest.approx(-truth.mean() / 2, abs=1e-9)
    assert abs(rows["ode_exact"].nll - rows["truth"].nll) < 0.01
    table = box.table
    assert table.rowCount() == 2 and table.item(0, 0).text() == "ODE (exact score)"
    assert float(table.item(0, 1).text()) == pytest.approx(rows["ode_exact"].nll, abs=1e-4)
    assert "model's rows need a trained model" in box.note.text()
