"""The exact Gaussian-mixture truth, the learned Sigma_theta and Analytic-DPM's sigma*^2 in the
Schedule and Entropy panels, after a real (tiny) training through the window."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from ui_helpers import tiny_config, train

from core.entropy import entropy_bounds, general_upper_bound


def named(window, plot_name: str, prefix: str):
    plot = window.findChild(pg.PlotWidget, plot_name)
    items = [c for c in plot.getPlotItem().listDataItems() if (c.name() or "").startswith(prefix)]
    assert len(items) == 1, f"{plot_name}: no single curve named {prefix!r}"
    return items[0]


def legend_names(window, plot_name: str) -> list[str]:
    legend = window.findChild(pg.PlotWidget, plot_name).getPlotItem().legend
    return [label.text for _sample, label in legend.items]


@pytest.fixture
def trained(window, qtbot):
    cfg = tiny_config(steps=100)
    cfg.diffusion.variance_type = "learned_range"
    cfg.diffusion.loss_type = "hybrid"
    assert train(window, qtbot, cfg) == "finished"
    qtbot.waitUntil(lambda: window.session.data_curves is not None
                    and window.session.data_curves.get("T") == 20, timeout=60000)
    assert [p["step"] for p in window.session.probes] == [50, 100]
    return window


def test_schedule_panel_shows_truth_analytic_and_learned_variances(trained):
    window, probe = trained, trained.session.probes[-1]
    curves, schedule = window.session.data_curves, window.session.schedule
    t = probe["t"]
    analytic = named(window, "schedulePlot", "Analytic-DPM")
    np.testing.assert_array_equal(analytic.xData, t)
    np.testing.assert_allclose(analytic.yData, probe["analytic_variance"])
    truth = named(window, "schedulePlot", "true E Var")
    np.testing.assert_array_equal(truth.xData, curves["t"])
    np.testing.assert_allclose(truth.yData, curves["true_variance"])
    ratio = named(window, "scheduleRatioPlot", "σ*² / βₜ")
    np.testing.assert_allclose(ratio.yData, probe["analytic_variance"] / schedule.betas[t])
    learned = named(window, "scheduleRatioPlot", "Σθ / βₜ")
    np.testing.assert_allclose(learned.yData, np.exp(probe["log_var_mean"]) / schedule.betas[t])
    for name in ("Analytic-DPM", "true E Var", "Σθ(t) learned"):
        assert any(text.startswith(name) for text in legend_names(window, "schedulePlot"))


def test_entropy_position_plot_puts_truth_and_learned_on_one_scale(trained):
    window, probe = trained, trained.session.probes[-1]
    curves, schedule = window.session.data_curves, window.session.schedule
    # learned_range: log Sigma = v log beta + (1 - v) log beta-tilde, so its position is E v
    learned = named(window, "entropyPositionPlot", "learned Σθ")
    inner = probe["t"] > 0
    # (up to float32 rounding of the probe's mean log Sigma, amplified by 1 / log(beta/beta~))
    t_in = probe["t"][inner]
    log_gap = np.log(schedule.betas[t_in]) - schedule.posterior_log_variance_clipped[t_in]
    tol = 1e-6 * np.abs(np.log(schedule.betas[t_in])) / log_gap
    assert np.all(np.abs(learned.yData[inner] - probe["v_mean"][inner]) <= tol)
    assert np.all(np.isnan(learned.yData[~inner]))
    # the truth: position of the core estimate, below the bound that holds for any data
    upper, lower = entropy_bounds(schedule, 1)
    t = curves["t"]
    truth = named(window, "entropyPositionPlot", "true (mixture)")
    expected = (curves["true_entropy"] - lower[t]) / (upper[t] - lower[t])
    np.testing.assert_allclose(truth.yData[t > 0], expected[t > 0], rtol=1e-9)
    general = (general_upper_bound(schedule, 1)[t] - lower[t]) / (upper[t] - lower[t])
    slack = 4 * curves["true_entropy_err"] / (upper[t] - lower[t])
    assert np.all(truth.yData[t > 0] <= general[t > 0] + slack[t > 0])
    # 8 Gaussians on a radius-2 ring (variance 2.04 > 1) exceed the plain upper bound
    assert np.nanmax(truth.yData) > 1.2
    assert "Var x₀ = 2.04" in window.entropy_panel.note.text()
    analytic = named(window, "entropyPositionPlot", "Analytic-DPM")
    assert np.all(np.isfinite(analytic.yData[inner]))


def test_a_new_schedule_clears_the_probe_curves(trained, qtbot):
    window = trained
    window.experiment.timestepsSpin.setValue(30)
    qtbot.waitUntil(lambda: window.session.schedule.num_timesteps == 30, timeout=5000)
    for plot, prefix in (("entropyPositionPlot", "learned Σθ"),
                         ("entropyPositionPlot", "Analytic-DPM"),
                         ("schedulePlot", "Analytic-DPM")):
        assert len(named(window, plot, prefix).xData or []) == 0


def test_entropy_note_hints_at_learned_range_only_when_the_variance_is_fixed(window, qtbot):
    combo = window.experiment.varianceTypeCombo
    combo.setCurrentIndex(combo.findData("fixed_small"))
    qtbot.waitUntil(lambda: "choose “learned range" in window.entropy_panel.note.text(), timeout=5000)
    # the hint says what trains it: a learned range with the simple loss learns nothing
    for note in (window.entropy_panel.note, window.schedule_panel.note):
        assert "with the hybrid or vlb loss" in note.text()
    loss = window.experiment.lossTypeCombo
    loss.setCurrentIndex(loss.findData("hybrid"))
    combo.setCurrentIndex(combo.findData("learned_range"))
    qtbot.waitUntil(lambda: "choose “learned range" not in window.entropy_panel.note.text(),
                    timeout=5000)
