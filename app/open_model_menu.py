"""The window's side of models from elsewhere: File → Open model… (a .pt or a file of a
diffusers folder), Open model folder…, Export model as diffusers folder…, Run → Fine-tune
the opened model, the flags dialog for a state dict, and Start saying "Fine-tune" while the
opened weights are untrained here. The work is app.open_model.ModelOpener's; the main window
adds all of it with one call."""

from __future__ import annotations

import os

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMessageBox

from app.open_model import ModelOpener
from app.widgets.flags_dialog import FlagsDialog

MODEL_FILES = ("Models (*.pt *.pth *.bin *.ckpt *.safetensors model_index.json config.json);;"
               "All files (*)")
OPEN_MODEL_KEYS = "Ctrl+Shift+O"


def _action(window, text: str, slot, tip: str, name: str) -> QAction:
    action = QAction(text, window)
    action.setObjectName(name)
    action.setToolTip(tip)
    action.setStatusTip(tip)
    action.triggered.connect(slot)
    return action


class OpenModelMenu:
    """Holds the actions and the open flags dialog (`dialog`, for tests) of one window."""

    def __init__(self, window):
        self.window = window
        self.opener = ModelOpener(window.controller)
        self.dialog: FlagsDialog | None = None
        self.open_action = _action(
            window, "Open &model…", self.open_file_dialog,
            "A diffusers folder (choose its model_index.json or config.json) or an "
            "improved-/guided-diffusion state dict (.pt, asks for its flags)", "openModelAction")
        self.open_action.setShortcut(QKeySequence(OPEN_MODEL_KEYS))
        self.folder_action = _action(
            window, "Open model &folder…", self.open_folder_dialog,
            "A diffusers DDPM/DDIM pipeline folder or a UNet2DModel folder", "openFolderAction")
        self.export_action = _action(
            window, "E&xport model as diffusers folder…", self.export_dialog,
            "The current model (EMA weights) as a folder that diffusers' DDPMPipeline and "
            "DDIMPipeline load", "exportDiffusersAction")
        self.fine_tune_action = _action(
            window, "&Fine-tune the opened model", self.opener.fine_tune,
            "Train the opened model on from its weights, on the data chosen in the "
            "Experiment panel", "fineTuneAction")
        file_menu = window.file_menu
        file_menu.insertAction(window.recent_menu.menuAction(), self.open_action)
        file_menu.insertAction(window.recent_menu.menuAction(), self.folder_action)
        after_save = file_menu.actions().index(window.action_save) + 1
        file_menu.insertAction(file_menu.actions()[after_save], self.export_action)
        run_actions = window.run_menu.actions()
        window.run_menu.insertAction(run_actions[1] if len(run_actions) > 1 else None,
                                     self.fine_tune_action)
        self.opener.flags_needed.connect(self.ask_flags)
        self.opener.source_opened.connect(window.recent_files.add)
        self.opener.model_ready.connect(self.update)
        window.controller.run_state_changed.connect(self.update)
        window.session.trainer_changed.connect(self.update)
        self.update()

    # ------------------------------------------------------------------ dialogs
    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open a model", "", MODEL_FILES)
        if path:
            self.opener.open_path(path)

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self.window, "Open a diffusers model folder")
        if path:
            self.opener.open_path(path)

    def export_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self.window, "Export as a diffusers folder (choose or make an empty folder)")
        if not folder:
            return
        force = False
        if os.path.isdir(folder) and os.listdir(folder):
            answer = QMessageBox.question(
                self.window, "Export into a folder that is not empty",
                f"{folder} is not empty. Write the pipeline into it (its files of the same "
                "names are replaced)?")
            if answer != QMessageBox.StandardButton.Yes:
                return
            force = True
        self.opener.export(folder, force=force)

    def ask_flags(self, request) -> None:
        """The flags dialog for a state dict (window-modal, not blocking: tests drive it)."""
        if self.dialog is not None:
            self.dialog.close()
        dialog = FlagsDialog(request.path, request.text, request.check, request.origin,
                             self.window)
        dialog.accepted.connect(lambda: self.opener.open(request.path, dialog.flags()))
        dialog.finished.connect(lambda _result: self._forget_dialog(dialog))
        self.dialog = dialog
        dialog.open()

    def _forget_dialog(self, dialog) -> None:
        if self.dialog is dialog:
            self.dialog = None
        dialog.deleteLater()

    # ------------------------------------------------------------------ state
    def update(self, *_args) -> None:
        """Actions enabled for the run state; Start says "Fine-tune" while the opened
        weights are the current, untrained model and the settings still describe it."""
        window, opener = self.window, self.opener
        active = window.controller.training.is_active()
        for action in (self.open_action, self.folder_action, self.export_action):
            action.setEnabled(not active)
        can = opener.can_fine_tune()
        self.fine_tune_action.setEnabled(can)
        text, _tip = window.controller.start_text()
        if can and opener.trainer.step == 0 and not text.startswith("Start"):
            window.controls.set_start_text(
                "Fine-tune", f"Train {opener.opened.title} on from its opened weights on the "
                             "data chosen above")


def add_open_model(window) -> OpenModelMenu:
    """Add the model actions to `window`'s File and Run menus (after its own wiring, so
    Start's text is set after the window's). Returns the holder (`.opener`, `.dialog`)."""
    return OpenModelMenu(window)
