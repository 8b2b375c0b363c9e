"""The keyboard shortcuts of the run's buttons, in one place: the Run menu sets them and the
buttons' tooltips name them."""

from __future__ import annotations

from PySide6.QtGui import QKeySequence

START_KEYS = "Ctrl+Return"
PAUSE_KEYS = "Ctrl+P"              # Space plays the trajectory in the Trajectories tab
STOP_KEYS = "Ctrl+."
SAMPLE_KEYS = "Ctrl+Shift+S"
CANCEL_SAMPLE_KEYS = "Ctrl+Shift+."


def shortcut_text(keys: str) -> str:
    """The shortcut as this platform writes it (Ctrl+Return; ⌘↩ on a Mac)."""
    return QKeySequence(keys).toString(QKeySequence.SequenceFormat.NativeText)
