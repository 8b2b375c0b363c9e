"""A spin box for values such as learning rates that span decades (1e-5 .. 1), and spin
boxes whose ranges come from core.config.LIMITS (the one definition of every bound)."""

from __future__ import annotations

import math

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QDoubleSpinBox, QSpinBox

from core.config import limits


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


INT_SPIN_MAX = 2**31 - 1  # a QSpinBox holds a C int


def int_range(setting: str) -> tuple[int, int]:
    """The (low, high) of a "section.field" integer setting (core.config.LIMITS), cut to
    what a QSpinBox can hold (an unbounded or 64-bit high end becomes 2**31 - 1)."""
    low, high = limits(setting)
    return int(low), INT_SPIN_MAX if high is None else int(min(high, INT_SPIN_MAX))


def limited_spin(name: str, setting: str, step: int = 1) -> QSpinBox:
    """A QSpinBox named `name` whose range is that of `setting` in core.config.LIMITS."""
    spin = QSpinBox()
    spin.setObjectName(name)
    spin.setRange(*int_range(setting))
    spin.setSingleStep(step)
    return spin


def limited_double_spin(spin: QDoubleSpinBox, setting: str) -> QDoubleSpinBox:
    """Give `spin` the range of a float `setting` (core.config.LIMITS); returns it."""
    low, high = limits(setting)
    spin.setRange(float(low), float(high))
    return spin
