"""Bad settings, property-based: every configuration either validates and trains one step, or
is refused with a ConfigError that names its field (core), one `error:` line and no traceback
(CLI), or a message in the window (never an exception)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import ConfigError, DiffusionConfig, ExperimentConfig, ModelConfig, TrainConfig
from core.data import DataError
from core.training import Trainer

ROOT = Path(__file__).resolve().parents[2]
NAN, INF = float("nan"), float("inf")
HUGE_INT = 10**400               # a JSON integer too large for a float

# (valid choices, invalid choices) per field; the valid ones are kept tiny so a step is fast
SPACE = {
    "model": {
        "kind": (["auto", "auto", "unet", "mlp"], ["transformer", 3, None]),
        "channels": ([8, 16], [12, 0, 2048, "16", True]),
        "channel_mult": ([[1], [1, 2], [1, 1, 2]], [[], [0], [1] * 6, "12", [1.5], {"a": 1}]),
        "num_res_blocks": ([1], [0, 9, 1.0]),
        "attention_resolutions": ([[], [4], [8], [14]], [[-1], "8", [True], 8]),
        "num_heads": ([1, 2, 4, 3], [0, 65]),
        "dropout": ([0.0, 0.1], [-0.1, 0.95, NAN, INF, "0.1"]),
        "hidden": ([8, 16, 32], [4, 10_000, HUGE_INT]),
        "mlp_blocks": ([1, 2], [0, 33]),
    },
    "diffusion": {
        "schedule": (["linear", "cosine", "sigmoid", "quadratic"], ["exp", ""]),
        "timesteps": ([3, 10, 40], [1, 0, -5, 20_001, 2.5]),
        "mean_type": (["eps", "x0", "v"], ["score"]),
        "variance_type": (["fixed_small", "fixed_large", "learned_range"], ["learned"]),
        "loss_type": (["simple", "hybrid", "vlb"], ["l1"]),
        "lambda_vlb": ([0.0, 0.001, 1.0], [-1.0, NAN, INF, 1001.0, HUGE_INT]),
        "timestep_sampler": (["uniform", "uniform", "loss-aware"], ["importance"]),
    },
    "train": {
        "dataset": (["8gaussians", "moons", "checkerboard", "swissroll", "digits"],
                    ["", "no-such-data-set", 5, None]),
        "image_size": ([8, 16, 28], [5, 100, "8", 8.0]),
        "grayscale": ([True, False], ["yes", 1]),
        "num_samples": ([16, 100], [15, 1, -3]),
        "class_conditional": ([False, True], [1, "true"]),
        "label_dropout": ([0.0, 0.1, 1.0], [1.5, NAN]),
        "batch_size": ([1, 2, 16], [0, -1, 1.5, 70_000]),
        "lr": ([1e-3, 1.0], [0.0, -1e-3, 2.0, INF, HUGE_INT]),
        "weight_decay": ([0.0, 0.01], [-0.1, 2.0]),
        "warmup_steps": ([0, 1, 100], [-1]),
        "grad_clip": ([0.0, 1.0, 1e6], [-1.0, 1e7]),
        "ema_decay": ([0.0, 0.9, 0.999], [1.0, 1.1, -0.5]),
        "steps": ([1, 10], [0, 10**9]),
        "seed": ([0, 7, 2**31 - 1], [-1, 2**31]),
        "device": (["cpu", "auto"], ["cuda", "cuda:7", "mps", "tpu", ""]),
        "log_every": ([1, 5], [0]),
        "probe_every": ([0, 1], [-1]),
        "probe_timesteps": ([2, 3], [1, 1001]),
        "checkpoint_every": ([0, 10], [-1]),
        "compile": ([False], ["no", 1]),   # True is valid but compiles for minutes: not drawn
    },
}
FIELDS = {f"{section}.{name}" for section, cls in (("model", ModelConfig),
                                                   ("diffusion", DiffusionConfig),
                                                   ("train", TrainConfig))
          for name in (f.name for f in fields(cls))}
ALL_FIELDS = [(section, name) for section, names in SPACE.items() for name in names]
# not reachable on this machine: CUDA and MPS are refused as train.device (ConfigError)
UNAVAILABLE_DEVICES = {"cuda", "cuda:7", "mps"}
OUTCOMES = {"trained": 0, "refused": 0}


@st.composite
def config_dicts(draw, broken=st.integers(0, 2)):
    """A config as JSON data: every field valid, then `broken` of them made invalid."""
    data = {section: {name: draw(st.sampled_from(valid))
                      for name, (valid, _) in names.items()} for section, names in SPACE.items()}
    count = draw(broken)
    bad = draw(st.lists(st.sampled_from(ALL_FIELDS), min_size=count, max_size=count, unique=True))
    for section, name in bad:
        data[section][name] = draw(st.sampled_from(SPACE[section][name][1]))
    return data, [f"{section}.{name}" for section, name in bad]


def check_refusal(exc: Exception, data: dict) -> None:
    """A refusal must name what is wrong: the dotted field, or the data set it could not load."""
    message = str(exc)
    if isinstance(exc, ConfigError):
        assert exc.field in FIELDS | {"config", "preset"}, exc.field
        assert message.startswith(exc.field), message
    elif isinstance(exc, DataError):
        assert repr(data["train"]["dataset"]) in message or str(data["train"]["dataset"]) in message
    else:
        # build_model's documented ValueError for a network of the wrong kind for the data
        assert isinstance(exc, ValueError) and message.startswith("model.kind"), message
    assert "\n" not in message


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(config_dicts(broken=st.sampled_from([0, 0, 1, 2])))
def test_every_config_trains_a_step_or_is_refused_naming_the_field(drawn):
    data, broken = drawn
    try:
        config = ExperimentConfig.from_dict(json.loads(json.dumps(data))).validate()
    except ConfigError as exc:
        check_refusal(exc, data)
        OUTCOMES["refused"] += 1
        return
    assert not broken, f"{broken} were invalid but validate() accepted them"
    try:
        trainer = Trainer(config)
    except (ConfigError, DataError, ValueError) as exc:
        check_refusal(exc, data)
        OUTCOMES["refused"] += 1
        return
    assert config.train.device not in UNAVAILABLE_DEVICES
    assert trainer.run(1) == "finished"
    assert trainer.step == 1 and len(trainer.history["loss"]) == 1
    assert math.isfinite(trainer.history["loss"][0])
    OUTCOMES["trained"] += 1


def test_the_config_space_reaches_both_outcomes():
    """The property above is only worth something if many configs really trained."""
    if not any(OUTCOMES.values()):
        pytest.skip("runs after test_every_config_trains_a_step_or_is_refused_naming_the_field")
    assert OUTCOMES["trained"] >= 10 and OUTCOMES["refused"] >= 10, OUTCOMES


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(config_dicts(broken=st.integers(1, 3)))
def test_validation_names_one_of_the_broken_fields(drawn):
    """With a valid base and only some fields broken, the first complaint is about one of
    them (or about a pair that the breakage made inconsistent)."""
    data, broken = drawn
    with pytest.raises(ConfigError) as info:
        ExperimentConfig.from_dict(json.loads(json.dumps(data))).validate()
    pairs = {"train.probe_timesteps": "diffusion.timesteps",
             "diffusion.timestep_sampler": "diffusion.loss_type"}
    named = info.value.field
    assert named in broken or pairs.get(named) in broken or named in pairs, (named, broken)


JSON_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=8)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # capsys is read each time
@given(section=st.sampled_from(["model", "diffusion", "train", "extra"]),
       name=st.sampled_from([n for _, n in ALL_FIELDS] + ["unknown"]), value=JSON_JUNK)
def test_cli_prints_one_line_for_any_junk_in_a_config(tmp_path_factory, capsys, section, name, value):
    from core.cli import main

    folder = tmp_path_factory.mktemp("cli")
    data = {"model": {"kind": "mlp", "hidden": 8, "mlp_blocks": 1},
            "diffusion": {"timesteps": 2, "schedule": "linear"},
            "train": {"dataset": "no-such-data-set", "num_samples": 16, "batch_size": 2,
                      "steps": 1, "probe_timesteps": 2, "device": "cpu", "probe_every": 0}}
    data.setdefault(section, {})[name] = value
    config = folder / "config.json"
    config.write_text(json.dumps(data))
    out = folder / "out.safetensors"
    code = main(["train", "--config", str(config), "--out", str(out)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    # whatever the junk, the run never gets far: the data set does not exist
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert not out.exists()


@pytest.mark.parametrize("text, words", [
    ('{"train": {"lr": 1' + "0" * 400 + "}}", "train.lr"),
    ('{"train": {"seed": 1' + "0" * 5000 + "}}", "config"),
    ("[1, 2, 3]", "must be a JSON object"),
    ('{"train": {"batch_size": "64"}}', "train.batch_size"),
    ('{"model": {"channel_mult": {"a": 1}}}', "model.channel_mult"),
    ('{"diffusion": {"timesteps": NaN}}', "diffusion.timesteps"),
    ('{"train": {', "config.json: not valid JSON: Expecting property name enclosed in double "
                    "quotes (line 1, column 12)"),
    ("[" * 100_000 + "]" * 100_000, "config.json: not usable JSON: RecursionError"),
])
def test_cli_rejects_odd_json_with_one_line(tmp_path, capsys, text, words):
    from core.cli import main

    config = tmp_path / "config.json"
    config.write_text(text)
    code = main(["train", "--config", str(config), "--out", str(tmp_path / "o.safetensors")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith("error: ") and words in err, err
    assert err.startswith(f"error: {config}: "), err          # the file is named first


def test_cli_bad_configs_in_a_real_process_print_no_traceback(tmp_path):
    config = tmp_path / "config.json"
    config.write_text('{"train": {"lr": 1' + "0" * 400 + ', "batch_size": 0}}')
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "core", "train", "--config", str(config),
                           "--out", str(tmp_path / "o.safetensors")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: {config}: train.lr")


# ---------------------------------------------------------------------- the window
@pytest.mark.parametrize("stored", [
    '{"train": {"lr": 1' + "0" * 400 + "}}",
    '{"train": {"seed": 1' + "0" * 5000 + "}}",
    '{"model": {"channels": "many"}}',
    "[]",
    "{not json",
    "[" * 100_000 + "]" * 100_000,
])
def test_window_opens_with_defaults_when_the_stored_settings_are_junk(make_window, tmp_path, stored):
    from app.settings import make_settings

    path = str(tmp_path / "junk.ini")
    junk = make_settings(path)
    junk.setValue("experiment/config", stored)
    junk.sync()
    window = make_window(restore=True, path=path)
    assert window.experiment.validate() is not None      # a usable default experiment
    assert window.controls.startButton.isEnabled()


@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(config_dicts(broken=st.integers(0, 1)))
def test_window_trains_or_explains_every_config(window, qtbot, drawn):
    data, _ = drawn
    # 8x8 images only: the entropy-curve job of larger RGB images runs an uninterruptible
    # eigendecomposition for many seconds, and every edit starts another one
    data["train"].update(steps=2, log_every=1, image_size=8)
    try:
        config = ExperimentConfig.from_dict(json.loads(json.dumps(data)))
    except ConfigError:
        return                          # the panel only ever holds parsed configs
    errors = []
    window.error_shown.connect(errors.append)
    window.model_change_policy = "fresh"
    window.experiment.set_config(config, preset=None)
    shown = window.experiment.validate()
    if shown is None:                   # refused in the panel, the field marked
        assert window.experiment.last_error.field in FIELDS | {"config"}
        assert not window.controls.startButton.isEnabled()
    else:
        qtbot.waitUntil(lambda: window.controls.startButton.isEnabled(), timeout=10000)
        with qtbot.waitSignal(window.training_finished, timeout=60000) as done:
            window.controls.startButton.click()
        if done.args[0] == "failed":
            assert errors and "Traceback" not in errors[-1]
        else:
            assert done.args == ["finished"], errors
    window.error_shown.disconnect(errors.append)
