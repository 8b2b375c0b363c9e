"""The flags of an improved-/guided-diffusion state dict: a text box prefilled with the
`--flag value` text, one flag a line (from a flags file beside the .pt, or guessed from its
tensor shapes),
the flags the tensors cannot show highlighted to check, and OK checking the text with
core.interop's parser (an error names the flag, inline; the dialog stays open)."""

from __future__ import annotations

import re

from PySide6.QtGui import QColor, QFont, QSyntaxHighlighter, QTextCharFormat
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

CHECK_BACKGROUND = "#ffe08a"
FLAG = re.compile(r"--([A-Za-z_]+)(?:[ =]+(?!--)(\S+))?")


class CheckHighlighter(QSyntaxHighlighter):
    """Marks `--name value` of the flags to check."""

    def __init__(self, document, names):
        super().__init__(document)
        self.names = set(names)
        self.marked = QTextCharFormat()
        self.marked.setBackground(QColor(CHECK_BACKGROUND))
        self.marked.setFontWeight(QFont.Weight.Bold)

    def highlightBlock(self, text: str) -> None:  # noqa: N802 (Qt override)
        for match in FLAG.finditer(text):
            if match.group(1) in self.names:
                self.setFormat(match.start(), match.end() - match.start(), self.marked)


def one_per_line(text: str) -> str:
    """'--a 1 --b 2' -> '--a 1\n--b 2' (the parser takes either)."""
    return re.sub(r"\s+(?=--[A-Za-z_])", "\n", text.strip())


def check_flags(text: str) -> str | None:
    """Why `text` is not a usable flag set (the parser's message, naming the flag); None
    when it maps onto the explorer's settings."""
    from core.interop import InteropError, parse_flags
    from core.interop.improved_flags import map_flags

    if not text.strip():
        return "Give the flags the model was trained with (e.g. --image_size 32 …)."
    try:
        map_flags(parse_flags(text, source="flags"), source="flags")
    except InteropError as exc:
        return str(exc)
    return None


class FlagsDialog(QDialog):
    """`flagsDialog`: `flagsEdit` (the text), `flagsCheckNote` (which flags to check),
    `flagsError` (why OK was refused), `flagsOkButton`, `flagsCancelButton`. After OK,
    `flags()` is the accepted text."""

    def __init__(self, path: str, text: str, check=(), origin: str = "",
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("flagsDialog")
        self.setWindowTitle("Flags of the state dict")
        self.path = path
        intro = QLabel(
            f"<b>{path}</b> is an improved-/guided-diffusion state dict: give the flags it "
            "was trained with, as the <code>--flag value</code> text of those repositories' "
            "READMEs (MODEL_FLAGS and DIFFUSION_FLAGS may be pasted as they are).")
        intro.setWordWrap(True)
        self.flagsEdit = QPlainTextEdit(one_per_line(text))
        self.flagsEdit.setObjectName("flagsEdit")
        self.flagsEdit.setToolTip("One --flag value per flag; flags left out take the "
                                  "repository's defaults")
        self.flagsEdit.setMinimumSize(560, 320)
        check = [name for name in check if f"--{name} " in f"{text} "]   # only those shown
        self.highlighter = CheckHighlighter(self.flagsEdit.document(), check)
        if check:
            note = ("Check the highlighted flags: " + ", ".join(check) + " — the tensors "
                    "cannot show them, so their values are the repository's defaults or a "
                    "guess" + (f" ({origin})." if origin else "."))
        else:
            note = f"The flags {origin}." if origin else ""
        self.flagsCheckNote = QLabel(note)
        self.flagsCheckNote.setObjectName("flagsCheckNote")
        self.flagsCheckNote.setWordWrap(True)
        if check:
            self.flagsCheckNote.setStyleSheet(
                f"QLabel#flagsCheckNote {{ background: {CHECK_BACKGROUND}; padding: 4px; "
                "border-radius: 3px; }")
        self.flagsError = QLabel()
        self.flagsError.setObjectName("flagsError")
        self.flagsError.setWordWrap(True)
        self.flagsError.setStyleSheet("QLabel#flagsError { color: #b00020; }")
        self.flagsError.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        self.flagsOkButton = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.flagsOkButton.setObjectName("flagsOkButton")
        self.flagsOkButton.setText("Open")
        self.flagsCancelButton = buttons.button(QDialogButtonBox.StandardButton.Cancel)
        self.flagsCancelButton.setObjectName("flagsCancelButton")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.flagsEdit, 1)
        layout.addWidget(self.flagsCheckNote)
        layout.addWidget(self.flagsError)
        layout.addWidget(buttons)
        self.flagsCheckNote.setVisible(bool(note))

    def flags(self) -> str:
        return self.flagsEdit.toPlainText().strip()

    def accept(self) -> None:
        """Close only with flags the explorer can map; else say why, naming the flag."""
        problem = check_flags(self.flags())
        if problem is not None:
            self.flagsError.setText(f"⚠ {problem}")
            self.flagsError.show()
            return
        self.flagsError.hide()
        super().accept()
