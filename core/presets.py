"""Named experiment presets: JSON files in `resources/presets/`, read via importlib.resources."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from core.config import ConfigError, ExperimentConfig


def _preset_dir():
    """resources/presets via importlib.resources; the source tree's folder when "resources"
    resolves to a namespace package (an editable install made before resources/__init__.py)."""
    try:
        folder = resources.files("resources") / "presets"
        if folder.is_dir():
            return folder
    except (ModuleNotFoundError, NotADirectoryError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "resources" / "presets"


def list_presets() -> list[str]:
    """Names of the shipped presets (file stems), sorted."""
    return sorted(entry.name[: -len(".json")] for entry in _preset_dir().iterdir()
                  if entry.name.endswith(".json"))


def load_preset(name: str) -> ExperimentConfig:
    """The validated ExperimentConfig of preset `name`; ConfigError names the preset otherwise."""
    names = list_presets()
    if name not in names:
        raise ConfigError("preset", name, "unknown preset; choose one of " + ", ".join(names))
    text = (_preset_dir() / f"{name}.json").read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError("preset", name, f"is not valid JSON ({exc.msg})") from None
    return ExperimentConfig.from_dict(data).validate()
