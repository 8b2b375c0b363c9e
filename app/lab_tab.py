"""The Samplers tab: builds the panel (app.panels.samplers) and the lab runs behind it
(app.lab.SamplerLab) and wires them, so the main window adds it with one call."""

from __future__ import annotations

from app.lab import SamplerLab
from app.panels.samplers import SamplersPanel

TITLE = "Samplers"
TIP = ("The sampler lab: every chosen sampler at every NFE from one x_T, scored against the "
       "truth, with the trained model (solid) and the exact ε of mixture data (dashed)")


def add_samplers_tab(window) -> SamplersPanel:
    """Add the Samplers tab to `window.tabs` (at the end: the tabs before it keep their
    places and shortcuts); its runs use `window.controller`'s session, training run and
    jobs. Returns the panel (its lab is `panel.lab`)."""
    panel = SamplersPanel(window.session)
    panel.lab = SamplerLab(window.controller, panel)
    index = window.tabs.addTab(panel, TITLE)
    window.tabs.setTabToolTip(index, TIP)
    panel.error.connect(window.show_error)
    panel.message.connect(lambda text: window.statusBar().showMessage(text, 8000))
    return panel
