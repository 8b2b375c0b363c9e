"""The experiment form's building blocks: the model sizes it offers (UI choices, not math),
the devices torch can use here, and small constructors of its combo boxes and spin boxes
(ranges from core.config.LIMITS)."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QComboBox, QSpinBox

from app.widgets.spinboxes import CheckedSpinBox, limited_spin
from core.config import ModelConfig

# Architecture sizes offered in the panel (UI choices, not math). For images the levels are
# cut to what the image size allows and attention sits at the lowest `attention_levels`
# feature-map sizes, both taken from core.models.feature_map_sizes.
MODEL_SIZES: dict[str, dict] = {
    "tiny": dict(channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_levels=0,
                 num_heads=1, hidden=64, mlp_blocks=2),
    "small": dict(channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, attention_levels=1,
                  num_heads=2, hidden=128, mlp_blocks=3),
    "medium": dict(channels=64, channel_mult=(1, 2, 2), num_res_blocks=2, attention_levels=1,
                   num_heads=4, hidden=256, mlp_blocks=4),
    "large": dict(channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2, attention_levels=2,
                  num_heads=4, hidden=512, mlp_blocks=6),
}
PRESET_SIZE = "@preset"


def sized_model(size: str, base: ModelConfig, vector_data: bool, image_size: int) -> ModelConfig:
    """The ModelConfig of `size` for the data: an MLP for vectors, a UNet that fits
    image_size (fewer levels where the image is too small) for images."""
    from core.models import ArchitectureError, feature_map_sizes

    spec = dict(MODEL_SIZES[size])
    attention_levels = spec.pop("attention_levels")
    mult = tuple(spec.pop("channel_mult"))
    attention: tuple[int, ...] = ()
    if not vector_data:
        while len(mult) > 1:
            try:
                sizes = feature_map_sizes(image_size, mult)
                break
            except ArchitectureError:
                mult = mult[:-1]
        else:
            sizes = [image_size]
        attention = tuple(sizes[len(sizes) - attention_levels:]) if attention_levels else ()
    return replace(base, kind="auto", channel_mult=mult, attention_resolutions=attention, **spec)


def available_devices() -> list[tuple[str, str]]:
    """(value, label) for "auto" and each device torch can use here."""
    import torch

    devices = [("auto", "auto"), ("cpu", "CPU")]
    if torch.cuda.is_available():
        devices.append(("cuda", f"CUDA ({torch.cuda.get_device_name(0)})"))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append(("mps", "Apple MPS"))
    return devices


def choices(choice) -> list[tuple[str, str]]:
    """(value, label) of every member of a core.options enum."""
    return [(member.value, member.label) for member in choice]


def combo(name: str, items: list[tuple[str, str]]) -> QComboBox:
    combo = QComboBox()
    combo.setObjectName(name)
    for value, label in items:
        combo.addItem(label, value)
    return combo


def spin(name: str, setting: str, step: int = 1) -> QSpinBox:
    """An integer field with the range of `setting` in core.config.LIMITS."""
    spin = limited_spin(name, setting, step)
    spin.setGroupSeparatorShown(True)
    return spin


def set_combo_value(combo: QComboBox, value) -> bool:
    index = combo.findData(value)
    if index >= 0:
        combo.setCurrentIndex(index)
        return True
    return False


WHOLE_BATCH = "whole batch"


class MicroBatchSpin(CheckedSpinBox):
    """train.micro_batch: 0 reads "whole batch" (no accumulation); typing it works too."""

    def textFromValue(self, value: int) -> str:  # noqa: N802 (Qt override)
        return WHOLE_BATCH if value == 0 else super().textFromValue(value)

    def valueFromText(self, text: str) -> int:  # noqa: N802
        return 0 if text.strip().lower() == WHOLE_BATCH else super().valueFromText(text)

    def validate(self, text: str, pos: int):
        typed = text.strip().lower()
        if typed and WHOLE_BATCH.startswith(typed) and not typed.lstrip("-").isdigit():
            state = (QValidator.State.Acceptable if typed == WHOLE_BATCH
                     else QValidator.State.Intermediate)
            return state, text, pos
        return super().validate(text, pos)


def micro_batch_spin() -> MicroBatchSpin:
    spin = limited_spin("microBatchSpin", "train.micro_batch", spin=MicroBatchSpin())
    spin.setGroupSeparatorShown(True)
    return spin
