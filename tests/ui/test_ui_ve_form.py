"""The form's VE noise range: shown only for the "ve" schedule, filled from a preset, read
into the config, and validated with the form's label."""

from app.panels.experiment import ExperimentPanel
from core.presets import load_preset


def test_the_ve_sigma_range_appears_for_the_ve_schedule_and_is_validated(qtbot):
    panel = ExperimentPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.set_config(load_preset("toy-2d"))
    assert not panel.sigmaRange.isVisible()
    panel.set_config(load_preset("toy-2d-ve"))
    assert panel.sigmaRange.isVisible()
    config = panel.validate()
    assert (config.diffusion.sigma_min, config.diffusion.sigma_max) == (0.01, 8.0)
    panel.sigmaMaxSpin.setValue(4.0)
    assert panel.validate().diffusion.sigma_max == 4.0
    panel.sigmaMaxSpin.setValue(0.005)                  # below sigma_min
    assert panel.validate() is None and "σ range" in panel.configError.text()
