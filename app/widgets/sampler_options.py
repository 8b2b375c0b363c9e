"""A form field for a sampler option (core.samplers.OptionSpec), built from the option alone:
a CheckedDoubleSpinBox over [low, high] for kind "float" (a ScientificSpinBox for scale "log":
tolerances spanning decades), a QComboBox of its (value, label) choices for kind "choice"."""

from __future__ import annotations

import math

from PySide6.QtWidgets import QComboBox, QWidget

from app.widgets.spinboxes import CheckedDoubleSpinBox, ScientificSpinBox, allow_typing_beyond
from core.samplers import OptionSpec

# the object names tests and screenshots already use; other options get a generic one
OBJECT_NAMES = {"eta": "etaSpin", "variance": "sampleVarianceCombo"}


def object_name(option: OptionSpec) -> str:
    return OBJECT_NAMES.get(option.name, f"sampleOption_{option.name}")


def option_widget(option: OptionSpec) -> QWidget:
    """The field of `option`, showing its default, with its help as the tooltip."""
    if option.kind == "choice":
        widget = QComboBox()
        for value, label in option.choices:
            widget.addItem(label, value)
    elif getattr(option, "scale", "linear") == "log":
        # values spanning decades (tolerances): %g text, the arrows step 1, 2, 5 per decade
        widget = ScientificSpinBox()
        allow_typing_beyond(widget, float(option.low), float(option.high))
    else:
        widget = CheckedDoubleSpinBox()   # a typed value out of range reaches validation
        allow_typing_beyond(widget, float(option.low), float(option.high))
        widget.setSingleStep(float(option.step))
        if option.step > 0:  # enough decimals to show one step
            widget.setDecimals(max(2, math.ceil(-math.log10(option.step))))
    widget.setObjectName(object_name(option))
    widget.setToolTip(option.help)
    set_option_value(widget, option.default)
    return widget


def option_value(widget: QWidget):
    """The value an option field shows (a choice's value, or a float)."""
    if isinstance(widget, QComboBox):
        return widget.currentData()
    return float(widget.value())


def set_option_value(widget: QWidget, value) -> None:
    """Show `value`; an unknown choice or a non-number is ignored."""
    if isinstance(widget, QComboBox):
        index = widget.findData(value)
        if index >= 0:
            widget.setCurrentIndex(index)
        return
    try:
        widget.setValue(float(value))
    except (TypeError, ValueError):
        pass
