"""Questions the window asks a person (modal dialogs)."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

CHECKPOINT_FILES = "Checkpoints (*.safetensors);;All files (*)"


def ask_model_change(parent: QWidget) -> str:
    """The settings describe another model than the trained one: "fresh" (start a new
    run), "continue" (keep training the current model with its own settings) or "cancel"."""
    box = QMessageBox(QMessageBox.Icon.Question, "Settings changed",
                      "The settings now describe a different model, diffusion, data set "
                      "or device than the one trained so far.", parent=parent)
    box.setInformativeText("Start a fresh run with the new settings (the current weights "
                           "are dropped; save a checkpoint first to keep them), or keep "
                           "training the current model with its own settings?")
    fresh = box.addButton("Start fresh", QMessageBox.ButtonRole.AcceptRole)
    keep = box.addButton("Keep training current", QMessageBox.ButtonRole.ActionRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    if box.clickedButton() is fresh:
        return "fresh"
    if box.clickedButton() is keep:
        return "continue"
    return "cancel"


def checkpoint_path(parent: QWidget, save: bool) -> str:
    """A checkpoint file to save to (save=True) or to open; "" when cancelled."""
    if save:
        return QFileDialog.getSaveFileName(parent, "Save checkpoint", "checkpoint.safetensors",
                                           CHECKPOINT_FILES)[0]
    return QFileDialog.getOpenFileName(parent, "Open checkpoint", "", CHECKPOINT_FILES)[0]


def drawn_points(parent: QWidget):
    """(points, spread) the user paints in the draw dialog (points (N, 2), N >= 2; spread
    as app.widgets.draw_dialog describes it), or None."""
    from app.widgets.draw_dialog import DrawDialog

    dialog = DrawDialog(parent)
    points = dialog.points() if dialog.exec() else None
    if points is None or len(points) < 2:
        return None
    return points, dialog.spread()


def image_folder(parent: QWidget) -> str:
    """A folder of pictures to train on; "" when cancelled."""
    return QFileDialog.getExistingDirectory(parent, "Open image folder")


def export_path(parent: QWidget, title: str, name: str, files: str) -> str:
    """A file to export to, suggested as `name`; "" when cancelled."""
    return QFileDialog.getSaveFileName(parent, title, name, files)[0]
