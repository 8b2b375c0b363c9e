"""Experiment settings: defaults, field validation messages, JSON round trip, bad files."""

from __future__ import annotations

import json
import math

import pytest

from core.config import (
    ConfigError,
    DiffusionConfig,
    ExperimentConfig,
    ModelConfig,
    TrainConfig,
)


def test_defaults_validate():
    config = ExperimentConfig()
    assert config.validate() is config
    ModelConfig().validate()
    DiffusionConfig().validate()
    TrainConfig().validate()


BAD_FIELDS = [
    ("model", "kind", "resnet"),
    ("model", "channels", 12),
    ("model", "channels", 0),
    ("model", "channels", 64.0),
    ("model", "channel_mult", ()),
    ("model", "channel_mult", (1, 0, 2)),
    ("model", "channel_mult", (1, 2, 2, 2, 2, 2)),
    ("model", "channel_mult", 2),
    ("model", "num_res_blocks", 0),
    ("model", "attention_resolutions", (16, 0)),
    ("model", "attention_resolutions", 16),
    ("model", "num_heads", 0),
    ("model", "dropout", 1.5),
    ("model", "dropout", math.nan),
    ("model", "hidden", True),
    ("model", "mlp_blocks", 0),
    ("diffusion", "schedule", "exponential"),
    ("diffusion", "timesteps", 1),
    ("diffusion", "timesteps", 20001),
    ("diffusion", "mean_type", "score"),
    ("diffusion", "variance_type", "learned"),
    ("diffusion", "loss_type", "l1"),
    ("diffusion", "lambda_vlb", -0.1),
    ("diffusion", "timestep_sampler", "importance"),
    ("train", "dataset", "  "),
    ("train", "image_size", 30),
    ("train", "image_size", 28.0),
    ("train", "grayscale", "yes"),
    ("train", "num_samples", 3),
    ("train", "label_dropout", 1.5),
    ("train", "batch_size", 0),
    ("train", "lr", 0.0),
    ("train", "lr", math.inf),
    ("train", "weight_decay", -1.0),
    ("train", "warmup_steps", -1),
    ("train", "grad_clip", -1.0),
    ("train", "ema_decay", 1.0),
    ("train", "ema_decay", 1.5),
    ("train", "steps", 0),
    ("train", "seed", -1),
    ("train", "device", "tpu"),
    ("train", "log_every", 0),
    ("train", "probe_every", -1),
    ("train", "probe_timesteps", 1),
    ("train", "checkpoint_every", -5),
    ("train", "compile", 1),
]


@pytest.mark.parametrize("section, name, value", BAD_FIELDS,
                         ids=[f"{s}.{n}={v!r}" for s, n, v in BAD_FIELDS])
def test_bad_field_names_field_and_value(section, name, value):
    config = ExperimentConfig()
    setattr(getattr(config, section), name, value)
    with pytest.raises(ConfigError) as info:
        config.validate()
    error = info.value
    assert error.field == f"{section}.{name}"
    assert error.value is value or error.value == value
    message = str(error)
    assert message.startswith(f"{section}.{name} = {value!r}")
    assert len(message) > len(f"{section}.{name} = {value!r} is invalid: ")   # says why


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_probe_timesteps_cannot_exceed_timesteps():
    config = ExperimentConfig()
    config.diffusion.timesteps = 10
    config.train.probe_timesteps = 20
    with pytest.raises(ConfigError, match=r"train.probe_timesteps = 20 .*diffusion.timesteps \(10\)"):
        config.validate()


def test_loss_aware_sampling_needs_a_vlb_loss():
    config = ExperimentConfig()
    config.diffusion.timestep_sampler = "loss-aware"
    with pytest.raises(ConfigError, match="diffusion.timestep_sampler"):
        config.validate()
    config.diffusion.loss_type = "hybrid"
    config.validate()


def non_default_config() -> ExperimentConfig:
    return ExperimentConfig(
        model=ModelConfig(kind="unet", channels=32, channel_mult=(1, 2, 2, 2), num_res_blocks=1,
                          attention_resolutions=(8, 4), num_heads=2, dropout=0.1, hidden=64,
                          mlp_blocks=4),
        diffusion=DiffusionConfig(schedule="linear", timesteps=500, mean_type="v",
                                  variance_type="learned_range", loss_type="hybrid",
                                  lambda_vlb=0.002, timestep_sampler="loss-aware"),
        train=TrainConfig(dataset="mnist", image_size=32, grayscale=False,
                          class_conditional=True, batch_size=64, lr=2e-4, ema_decay=0.9999,
                          steps=10, seed=7, device="cpu", compile=True),
        name="round trip",
    ).validate()


def test_json_round_trip_is_equal():
    config = non_default_config()
    text = config.to_json()
    again = ExperimentConfig.from_json(text)
    assert again == config
    assert isinstance(again.model.channel_mult, tuple)
    assert again.to_json() == text
    assert json.loads(text)["model"]["channel_mult"] == [1, 2, 2, 2]


def test_default_round_trip_and_partial_json_fills_defaults():
    assert ExperimentConfig.from_json(ExperimentConfig().to_json()) == ExperimentConfig()
    partial = ExperimentConfig.from_json('{"train": {"batch_size": 8}, "diffusion": {"lambda_vlb": 1}}')
    assert partial.train.batch_size == 8
    assert partial.diffusion.lambda_vlb == 1.0 and isinstance(partial.diffusion.lambda_vlb, float)
    assert partial.model == ModelConfig()


def test_load_reads_a_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(non_default_config().to_json(), encoding="utf-8")
    assert ExperimentConfig.load(path) == non_default_config()


def test_load_missing_file_names_the_path(tmp_path):
    path = tmp_path / "missing.json"
    with pytest.raises(ConfigError, match="missing.json"):
        ExperimentConfig.load(path)


@pytest.mark.parametrize("data, field", [
    ({"optimizer": {}}, "optimizer"),
    ({"model": {"width": 3}}, "model.width"),
    ({"train": {"batchsize": 3}}, "train.batchsize"),
    ({"diffusion": {"steps": 3}}, "diffusion.steps"),
])
def test_unknown_keys_are_rejected_with_the_key_named(data, field):
    with pytest.raises(ConfigError) as info:
        ExperimentConfig.from_json(json.dumps(data))
    assert info.value.field == field
    assert field in str(info.value)
    assert "unknown" in str(info.value)


@pytest.mark.parametrize("text", ['{"model": ', "not json", '{"a": 1,}', ""])
def test_invalid_json_raises_config_error(text):
    with pytest.raises(ConfigError, match="not valid JSON"):
        ExperimentConfig.from_json(text)


@pytest.mark.parametrize("text, field", [
    ("[1, 2]", "config"),
    ('{"model": [1]}', "model"),
    ('{"model": {"channel_mult": 2}}', "model.channel_mult"),
])
def test_wrong_json_types_raise_config_error(text, field):
    with pytest.raises(ConfigError) as info:
        ExperimentConfig.from_json(text)
    assert info.value.field == field
