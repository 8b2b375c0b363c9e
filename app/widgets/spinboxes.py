"""A spin box for values such as learning rates that span decades (1e-5 .. 1)."""

from __future__ import annotations

import math

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QDoubleSpinBox


class ScientificSpinBox(QDoubleSpinBox):
    """Shows and parses values in %g notation; the arrows multiply or divide by ~2."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setDecimals(12)
        self.setKeyboardTracking(False)

    def textFromValue(self, value: float) -> str:  # noqa: N802 (Qt override)
        return f"{value:.4g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        stripped = text.strip()
        if not stripped:
            return QValidator.State.Intermediate, text, pos
        try:
            float(stripped)
        except ValueError:
            partial = stripped.rstrip("eE+-.")
            ok = not partial or _is_float(partial)
            state = QValidator.State.Intermediate if ok else QValidator.State.Invalid
            return state, text, pos
        return QValidator.State.Acceptable, text, pos

    def stepBy(self, steps: int) -> None:  # noqa: N802
        value = self.value()
        if value <= 0:
            self.setValue(1e-4 if steps > 0 else 0.0)
            return
        # 1, 2, 5 per decade, like a plot's tick labels
        exponent = math.floor(math.log10(value))
        mantissa = value / 10**exponent
        ladder = [1.0, 2.0, 5.0]
        index = min(range(3), key=lambda i: abs(ladder[i] - mantissa)) + 3 * exponent
        index += steps
        new_exponent, rung = divmod(index, 3)
        self.setValue(ladder[rung] * 10**new_exponent)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
