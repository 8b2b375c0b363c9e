"""Help in the window itself (issue 14, F): a tooltip on every control and plot, shortcuts
for the run's buttons shown in their tooltips and the Run menu, an About box with the
version and the papers."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSlider,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QScrollBar,
    QTabBar,
    QTreeView,
    QWidget,
)
from ui_helpers import tiny_config

from app.menus import PAPERS, about_text, app_version
from app.widgets.shortcuts import (
    PAUSE_KEYS,
    SAMPLE_KEYS,
    START_KEYS,
    STOP_KEYS,
    shortcut_text,
)

INTERACTIVE = (QAbstractButton, QComboBox, QAbstractSpinBox, QAbstractSlider, QLineEdit,
               QTreeView, pg.PlotWidget)


def tooltip_of(widget: QWidget) -> str:
    """A spin box's text field shows its spin box's tooltip (Qt passes it up)."""
    if widget.objectName() == "qt_spinbox_lineedit":
        return widget.parentWidget().toolTip()
    return widget.toolTip()


def test_every_visible_control_and_plot_says_what_it_is(window, qtbot):
    missing, seen = [], 0
    for index in range(window.tabs.count()):
        window.tabs.setCurrentIndex(index)
        qtbot.waitUntil(lambda i=index: window.tabs.currentIndex() == i, timeout=1000)
        for widget in window.findChildren(QWidget):
            if not isinstance(widget, INTERACTIVE) or isinstance(widget, QScrollBar) \
                    or not widget.isVisible():
                continue
            seen += 1
            if not tooltip_of(widget).strip():
                missing.append(f"{window.tabs.tabText(index)}: {type(widget).__name__} "
                               f"{widget.objectName()!r}")
    assert seen > 60
    assert missing == []
    bar = window.tabs.findChild(QTabBar)
    assert all(bar.tabToolTip(i) for i in range(bar.count()))


def test_formulas_are_in_the_tooltips_where_there_is_one(window):
    experiment, panel = window.experiment, window.trajectory_panel
    assert "√ᾱₜ x₀ + √(1 − ᾱₜ) ε" in experiment.timestepsSpin.toolTip()
    assert "exp(v log βₜ + (1 − v) log β̃ₜ)" in experiment.varianceTypeCombo.toolTip()
    assert "‖ε − εθ(xₜ, t)‖²" in experiment.lossTypeCombo.toolTip()
    assert "(1 + w) εθ(xₜ, y) − w εθ(xₜ, ∅)" in panel.guidanceSpin.toolTip()
    assert "ᾱₜ / (1 − ᾱₜ)" in window.schedule_panel.snrPlot.toolTip()


def test_run_buttons_have_shortcuts_in_their_tooltips_and_the_run_menu(window, qtbot):
    controls, panel = window.controls, window.trajectory_panel
    for button, keys in ((controls.startButton, START_KEYS), (controls.pauseButton, PAUSE_KEYS),
                         (controls.stopButton, STOP_KEYS), (panel.sampleButton, SAMPLE_KEYS)):
        assert f"({shortcut_text(keys)})" in button.toolTip(), button.objectName()
    actions = window.run_actions
    assert {name: action.shortcut().toString() for name, action in actions.items()} == {
        "start": "Ctrl+Return", "pause": "Ctrl+P", "stop": "Ctrl+.",
        "sample": "Ctrl+Shift+S", "cancel": "Ctrl+Shift+."}
    run_menu = [m for m in window.menuBar().actions() if m.text() == "&Run"][0].menu()
    assert set(actions.values()) <= set(run_menu.actions())
    # the actions follow their buttons: Stop only while a run is active
    assert actions["start"].isEnabled() and not actions["stop"].isEnabled()
    window.experiment.set_config(tiny_config(steps=1_000_000), preset=None)
    window.activateWindow()
    qtbot.waitUntil(lambda: controls.startButton.isEnabled(), timeout=5000)
    qtbot.keyClick(window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.training.state == "running", timeout=30000)
    assert actions["stop"].isEnabled() and not actions["start"].isEnabled()
    with qtbot.waitSignal(window.training_finished, timeout=30000) as done:
        qtbot.keyClick(window, Qt.Key.Key_Period, Qt.KeyboardModifier.ControlModifier)
    assert done.args == ["stopped"]


def test_about_names_the_version_and_the_papers():
    text = about_text()
    assert app_version() in text and app_version()[0].isdigit()
    for url in ("https://arxiv.org/abs/2006.11239", "https://arxiv.org/abs/2102.09672",
                "https://arxiv.org/abs/1503.03585", "https://arxiv.org/abs/2010.02502",
                "https://arxiv.org/abs/2201.06503"):
        assert f'href="{url}"' in text
    assert len(PAPERS) == 5
