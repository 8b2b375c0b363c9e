"""Spin boxes whose allowed ranges come from core.config.LIMITS (the one definition of every
bound), and one for values such as learning rates that span decades (1e-5 .. 1).

A typed value is never silently clamped to the allowed range: the field accepts numbers one
range-width beyond it, so a typed -1 reaches validation, which names the field and what is
allowed ("Learning rate: must lie in (0.0, 1.0]"). The arrows stay within the allowed range.
"""

from __future__ import annotations

import math

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QDoubleSpinBox, QSpinBox

from core.config import limits

INT_SPIN_MAX = 2**31 - 1  # a QSpinBox holds a C int
INT_SPIN_MIN = -(2**31)


class CheckedSpinBox(QSpinBox):
    """An integer field: `allowed` is the valid range; typing may go beyond it (see the
    module docstring), the arrows may not."""

    allowed: tuple[int, int] = (0, INT_SPIN_MAX)

    def stepBy(self, steps: int) -> None:  # noqa: N802 (Qt override)
        low, high = self.allowed
        self.setValue(min(max(self.value() + steps * self.singleStep(), low), high))


class CheckedDoubleSpinBox(QDoubleSpinBox):
    """A float field with the same rule as CheckedSpinBox."""

    allowed: tuple[float, float] = (0.0, 1.0)

    def stepBy(self, steps: int) -> None:  # noqa: N802
        low, high = self.allowed
        self.setValue(min(max(self.value() + steps * self.singleStep(), low), high))


class ScientificSpinBox(CheckedDoubleSpinBox):
    """Shows and parses values in %g notation; the arrows step 1, 2, 5 per decade."""

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
        low, high = self.allowed
        value = self.value()
        if value <= 0:
            self.setValue(min(max(1e-4, low), high) if steps > 0 else max(low, 0.0))
            return
        # 1, 2, 5 per decade, like a plot's tick labels
        exponent = math.floor(math.log10(value))
        mantissa = value / 10**exponent
        ladder = [1.0, 2.0, 5.0]
        index = min(range(3), key=lambda i: abs(ladder[i] - mantissa)) + 3 * exponent
        index += steps
        new_exponent, rung = divmod(index, 3)
        self.setValue(min(max(ladder[rung] * 10**new_exponent, low), high))


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def int_range(setting: str) -> tuple[int, int]:
    """The allowed (low, high) of a "section.field" integer setting (core.config.LIMITS),
    cut to what a QSpinBox can hold (an unbounded or 64-bit high end becomes 2**31 - 1)."""
    low, high = limits(setting)
    return int(low), INT_SPIN_MAX if high is None else int(min(high, INT_SPIN_MAX))


def limited_spin(name: str, setting: str, step: int = 1,
                 spin: CheckedSpinBox | None = None) -> CheckedSpinBox:
    """An integer field named `name` for `setting` (core.config.LIMITS): `allowed` is its
    range, and typing may go one range-width beyond it so validation can report it. `spin`:
    a CheckedSpinBox (subclass) to set up instead of a new one."""
    spin = CheckedSpinBox() if spin is None else spin
    spin.setObjectName(name)
    low, high = int_range(setting)
    spin.allowed = (low, high)
    span = max(1, high - low)
    spin.setRange(max(INT_SPIN_MIN, low - span), min(INT_SPIN_MAX, high + span))
    spin.setSingleStep(step)
    return spin


def limited_double_spin(spin: CheckedDoubleSpinBox, setting: str) -> CheckedDoubleSpinBox:
    """Give `spin` the allowed range of a float `setting` (core.config.LIMITS) and a typing
    range one range-width wider; returns it."""
    low, high = (float(v) for v in limits(setting))
    allow_typing_beyond(spin, low, high)
    return spin


def allow_typing_beyond(spin: CheckedDoubleSpinBox, low: float, high: float) -> None:
    """`allowed` = (low, high); the field's own range one range-width wider on each side."""
    spin.allowed = (low, high)
    span = max(high - low, 1.0)
    spin.setRange(low - span, high + span)
