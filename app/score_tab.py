"""The Score tab: builds the panel (app.panels.score) and its controller
(app.score_controller) and wires them, so the main window adds it with one call."""

from __future__ import annotations

from app.panels.score import ScorePanel
from app.score_controller import ScoreController

TITLE = "Score"
TIP = ("The learned score sθ = −ε̂θ/√(1−ᾱₜ) over the plane with the exact one, the Fisher "
       "divergence per t, particles by Langevin, predictor-corrector, the reverse SDE or the "
       "ODE, and exact likelihoods by the probability-flow ODE")


def add_score_tab(window) -> ScorePanel:
    """Add the Score tab to `window.tabs`, its controller working on `window.controller`'s
    session and jobs; errors go to `window.show_error`. Returns the panel (its controller is
    `panel.controller`)."""
    panel = ScorePanel()
    controller = ScoreController(window.controller, window.controller)
    panel.controller = controller
    window.tabs.addTab(panel, TITLE)
    window.tabs.setTabToolTip(window.tabs.count() - 1, TIP)
    panel.time_changed.connect(controller.set_time)
    panel.visibility_changed.connect(controller.set_active)
    panel.particles_requested.connect(controller.run_particles)
    panel.particles_cancelled.connect(lambda: controller.cancel("particles"))
    panel.likelihood_requested.connect(controller.run_likelihood)
    panel.likelihood_cancelled.connect(lambda: controller.cancel("likelihood"))
    controller.source_changed.connect(panel.set_source)
    controller.field_ready.connect(panel.show_field)
    controller.fisher_ready.connect(panel.show_fisher)
    controller.particles_ready.connect(panel.show_particles)
    controller.likelihood_ready.connect(panel.show_likelihood)
    controller.busy.connect(panel.set_busy)
    controller.progress.connect(panel.set_progress)
    controller.error.connect(window.show_error)
    window.entropy_panel.ode_entropy_requested.connect(controller.run_ode_entropy)
    controller.entropy_ready.connect(window.entropy_panel.show_ode_entropy)
    controller.source_changed.emit(controller.source())
    return panel
