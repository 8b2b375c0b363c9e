"""Red team, checkpoints (issue 14): every size, field and tensor a file states is bounded by
what the file holds before anything is built from it; each refusal is one CheckpointError
naming the file and the field or tensor, and changes nothing."""

from __future__ import annotations

import json
import resource

import pytest
import torch
from checkpoint_files import rewrite
from test_training import assert_same_state, tiny_config, weights_of

import core.checkpoint as checkpoint_module
from core.checkpoint import CheckpointError, load_checkpoint, restore_trainer, save_checkpoint
from core.training import Trainer

RICH = {"model": {"dropout": 0.2},
        "diffusion": {"variance_type": "learned_range", "loss_type": "hybrid",
                      "timestep_sampler": "loss-aware"},
        "train": {"dataset": "8gaussians", "num_samples": 400, "class_conditional": True,
                  "probe_every": 4, "steps": 8}}


def rich_trainer(steps: int = 8) -> Trainer:
    """8 Gaussians with labels, learned variance, loss-aware sampler, probes: every section
    of a checkpoint is filled."""
    trainer = Trainer(tiny_config(**RICH))
    if steps:
        trainer.run(steps)
    return trainer


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "good.ckpt"
    save_checkpoint(path, rich_trainer())
    return path


def refused(good, target, metadata=None, tensors=None) -> str:
    """The one-line message of loading a rewritten copy of `good`; it names the file."""
    rewrite(good, target, change_metadata=metadata, change_tensors=tensors)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(target)
    message = str(info.value)
    assert str(target) in message and "\n" not in message
    return message


def set_field(name, text):
    def change(meta):
        meta[name] = text
    return change


def set_config(section, key, value):
    def change(meta):
        config = json.loads(meta["config"])
        config[section][key] = value
        meta["config"] = json.dumps(config)
    return change


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux


def test_the_good_file_loads(good):
    ckpt = load_checkpoint(good)
    assert ckpt.step == 8 and ckpt.num_classes == 8 and ckpt.data_shape == (2,)
    assert len(ckpt.probe_history) == 2 and ckpt.probe_history[1]["t"].dtype.kind == "i"


# ------------------------------------------------------------- 1. sizes the file states
def _both(*changes):
    def change(meta):
        for item in changes:
            item(meta)
    return change


HUGE_ARCHITECTURES = {
    "hidden 8192, 32 blocks": _both(set_config("model", "hidden", 8192),
                                    set_config("model", "mlp_blocks", 32)),
    "hidden 8192": set_config("model", "hidden", 8192),
    "32 mlp blocks": set_config("model", "mlp_blocks", 32),
    "10,000 classes": set_field("num_classes", "10000"),
    "4096-D vectors": _both(set_field("data_shape", "[4096]"), set_field("data_box", "null")),
    "UNet of 1024 channels on 512x512": _both(
        set_config("model", "kind", "unet"), set_config("model", "channels", 1024),
        set_config("model", "channel_mult", [1, 2, 4, 8, 16]),
        set_config("model", "num_res_blocks", 8),
        set_field("data_kind", "image"), set_field("data_shape", "[3, 512, 512]"),
        set_field("data_box", "null")),
}


@pytest.mark.parametrize("case", list(HUGE_ARCHITECTURES))
def test_a_huge_architecture_in_a_small_file_allocates_nothing(good, tmp_path, monkeypatch, case):
    built = []
    real = checkpoint_module.model_from_config

    def spy(*args, **kwargs):
        model = real(*args, **kwargs)
        built.append({p.device.type for p in model.parameters()})
        return model
    monkeypatch.setattr(checkpoint_module, "model_from_config", spy)
    before = peak_rss_bytes()
    message = refused(good, tmp_path / "huge.ckpt", metadata=HUGE_ARCHITECTURES[case])
    assert "do not match the architecture" in message
    assert "config, data_shape and num_classes" in message
    assert built and all(devices == {"meta"} for devices in built)   # shapes only
    assert peak_rss_bytes() - before < 300 * 2**20


@pytest.mark.parametrize("value", ["1e9", str(10**9), str(2**31), "1e30"])
def test_num_classes_beyond_the_bound_is_refused_before_any_model(good, tmp_path, monkeypatch,
                                                                  value):
    monkeypatch.setattr(checkpoint_module, "model_from_config",
                        lambda *a, **k: pytest.fail("a model was built"))
    message = refused(good, tmp_path / "classes.ckpt", metadata=set_field("num_classes", value))
    assert "num_classes" in message and "10,000" in message


def test_build_model_checks_on_the_meta_device_first(good, monkeypatch):
    ckpt = load_checkpoint(good)
    ckpt.config.model.hidden = 8192                    # as if changed after loading
    built = []
    real = checkpoint_module.model_from_config
    monkeypatch.setattr(checkpoint_module, "model_from_config",
                        lambda *a, **k: built.append(1) or real(*a, **k))
    with torch.device("cpu"), pytest.raises(CheckpointError, match="hidden|do not match") as info:
        ckpt.build_model()
    assert str(good) in str(info.value) and len(built) == 1    # the meta one only


# ------------------------------------------------------------- 3. metadata fields
JSON_FIELDS = ("config", "data_shape", "num_classes", "step", "probe_history",
               "optim_param_groups", "data_box")


@pytest.mark.parametrize("name", JSON_FIELDS)
def test_json_nested_100000_deep_names_the_field(good, tmp_path, name):
    message = refused(good, tmp_path / "deep.ckpt",
                      metadata=set_field(name, "[" * 100_000 + "]" * 100_000))
    assert repr(name) in message or f"invalid {name}" in message


@pytest.mark.parametrize("name", JSON_FIELDS)
def test_a_5000_digit_integer_names_the_field(good, tmp_path, name):
    message = refused(good, tmp_path / "digits.ckpt", metadata=set_field(name, "7" * 5000))
    assert name in message and len(message) < 400


@pytest.mark.parametrize("text", ["1e30", str(10**30), "-1", "true", '"5"', "1.5", "null",
                                  str(100_000_001)])
def test_step_out_of_range_or_of_another_type(good, tmp_path, text):
    message = refused(good, tmp_path / "step.ckpt", metadata=set_field("step", text))
    assert "invalid step" in message and "100,000,000" in message


@pytest.mark.parametrize("kind, shape", [
    ("vector", "[]"), ("vector", "[0]"), ("vector", "[-2]"), ("vector", "[2, 2]"),
    ("vector", str([10**9])), ("vector", "[2.0]"), ("vector", '"2"'), ("vector", "[true]"),
    ("image", "[3, 1000000, 1000000]"), ("image", "[4, 8, 8]"), ("image", "[2]"),
    ("audio", "[2]"), (None, "[2]"),
])
def test_data_shape_must_fit_its_kind_and_bounds(good, tmp_path, kind, shape):
    def change(meta):
        meta["data_shape"] = shape
        if kind is None:
            del meta["data_kind"]
        else:
            meta["data_kind"] = kind
    message = refused(good, tmp_path / "shape.ckpt", metadata=change)
    assert "invalid data_shape" in message or "invalid data_kind" in message


@pytest.mark.parametrize("text", ["0", "-1", '"8"', "true", "8.5", "null", "[8]"])
def test_num_classes_of_another_type_or_missing(good, tmp_path, text):
    message = refused(good, tmp_path / "classes.ckpt", metadata=set_field("num_classes", text))
    assert "invalid num_classes" in message


def test_num_classes_of_an_unconditional_config(good, tmp_path):
    message = refused(good, tmp_path / "uncond.ckpt",
                      metadata=set_config("train", "class_conditional", False))
    assert "num_classes" in message and "unconditionally" in message


@pytest.mark.parametrize("value", ["quantum", "", "CPU", "cuda:0"])
def test_device_type_must_be_a_known_name(good, tmp_path, value):
    message = refused(good, tmp_path / "device.ckpt", metadata=set_field("device_type", value))
    assert "invalid device_type" in message and "cpu, cuda, mps" in message


@pytest.mark.parametrize("text, field", [
    ("{}", "probe_history"), ("[1]", "probe_history[0]"),
    ('[{"step": -1, "t": [0]}]', "probe_history[0].step"),
    ('[{"step": 1e30, "t": [0]}]', "probe_history[0].step"),
    ('[{"step": 4, "t": [0, 1000000000]}]', "probe_history[0].t"),
    ('[{"step": 4, "t": "x"}]', "probe_history[0].t"),
    ('[{"step": 4, "t": []}]', "probe_history[0].t"),
    (json.dumps([{"step": 4, "t": [0] * 1001}]), "probe_history[0].t"),
    ('[{"step": 4, "t": [0, 1], "loss": [1.0]}]', "probe_history[0].loss"),
    ('[{"step": 4, "t": [0, 1], "vlb": ["a", "b"]}]', "probe_history[0].vlb"),
    ('[{"step": 4, "t": [0], "payload": 1}]', "probe_history[0]"),
])
def test_probe_history_entries_must_be_well_formed(good, tmp_path, text, field):
    message = refused(good, tmp_path / "probes.ckpt", metadata=set_field("probe_history", text))
    assert f"invalid {field} " in message


@pytest.mark.parametrize("groups, field", [
    ({}, "optim_param_groups"), ([], "optim_param_groups"), ([1], "optim_param_groups[0]"),
    ([{"lr": 1e30}], "optim_param_groups[0].lr"), ([{"lr": "x"}], "optim_param_groups[0].lr"),
    ([{"betas": [2, 0.9]}], "optim_param_groups[0].betas"),
    ([{"betas": [0.9]}], "optim_param_groups[0].betas"),
    ([{"eps": 0}], "optim_param_groups[0].eps"),
    ([{"weight_decay": -1}], "optim_param_groups[0].weight_decay"),
    ([{"amsgrad": 1}], "optim_param_groups[0].amsgrad"),
    ([{"future_flag": {"nested": [1, 2]}}], "optim_param_groups[0].future_flag"),
    ([{"lr": 0.001}] * 17, "optim_param_groups"),
])
def test_optimizer_groups_must_be_sane(good, tmp_path, groups, field):
    message = refused(good, tmp_path / "groups.ckpt",
                      metadata=set_field("optim_param_groups", json.dumps(groups)))
    assert f"invalid {field} " in message


@pytest.mark.parametrize("name, text, words", [
    ("dataset", "", "invalid dataset"), ("dataset", "x" * 5000, "invalid dataset"),
    ("format_version", "1" * 5000, "invalid format_version"),
    ("format_version", "x", "invalid format_version"),
    ("format_version", "-1", "invalid format_version"),
    ("config", "[]", "invalid config"), ("config", '{"model": {"channels": 1e30}}', "invalid config"),
])
def test_other_fields(good, tmp_path, name, text, words):
    message = refused(good, tmp_path / "other.ckpt", metadata=set_field(name, text))
    assert words in message and len(message) < 400


def test_a_refused_step_is_never_saved_again(good, tmp_path):
    """A file with step 10**30 cannot reach a trainer, so no save can repeat it."""
    trainer = rich_trainer(steps=0)
    bad = rewrite(good, tmp_path / "bad.ckpt", change_metadata=set_field("step", str(10**30)))
    with pytest.raises(CheckpointError, match="invalid step"):
        restore_trainer(trainer, load_checkpoint(bad))
    save_checkpoint(tmp_path / "again.ckpt", trainer)
    assert load_checkpoint(tmp_path / "again.ckpt").step == 0


# ------------------------------------------------------------- 4. non-finite weights
def poison(name, value, index=0):
    def change(tensors):
        tensor = tensors[name].clone()
        tensor.view(-1)[index] = value
        tensors[name] = tensor
    return change


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("name, value, words", [
    ("model.out.2.weight", NAN, "holds NaN"),
    ("ema.out.2.weight", NAN, "holds NaN"),
    ("ema.out.2.weight", INF, "holds infinity"),
    ("ema.input_layer.bias", -INF, "holds infinity"),
    ("model.time_embed.0.weight", NAN, "holds NaN"),
    ("optim.0.exp_avg", NAN, "holds NaN"),
    ("optim.3.exp_avg_sq", INF, "holds infinity"),
    ("optim.0.step", NAN, "optim.0.step"),
    ("sampler.history", NAN, "holds NaN"),
])
def test_non_finite_tensors_are_refused_by_name(good, tmp_path, name, value, words):
    message = refused(good, tmp_path / "nan.ckpt", tensors=poison(name, value, index=1 if
                                                                   name.endswith("bias") else 0))
    assert name in message and words in message


def test_all_nan_weights_are_refused(good, tmp_path):
    def all_nan(tensors):
        for key in [k for k in tensors if k.startswith(("model.", "ema."))]:
            tensors[key] = torch.full_like(tensors[key], NAN)
    message = refused(good, tmp_path / "allnan.ckpt", tensors=all_nan)
    assert "holds NaN" in message


# ------------------------------------------------------------- 5. generator states and other tensors
def replace(name, tensor):
    def change(tensors):
        tensors[name] = tensor
    return change


CPU_STATE = torch.Generator().get_state()


@pytest.mark.parametrize("name, tensor, words", [
    ("rng.step", CPU_STATE.float(), "rng.step"),
    ("rng.step", CPU_STATE.long(), "rng.step"),
    ("rng.dropout", CPU_STATE.to(torch.int8), "rng.dropout"),
    ("rng.step", CPU_STATE.reshape(2, -1), "rng.step"),
    ("rng.step", CPU_STATE[:100].clone(), "rng.step holds 100 bytes"),
    ("rng.step", torch.zeros(0, dtype=torch.uint8), "rng.step"),
    ("rng.step", torch.zeros_like(CPU_STATE), "not a valid generator state"),
    ("rng.extra", CPU_STATE.clone(), "rng.extra"),
])
def test_generator_states_of_the_wrong_dtype_shape_or_content(good, tmp_path, name, tensor,
                                                               words):
    message = refused(good, tmp_path / "rng.ckpt", tensors=replace(name, tensor))
    assert words in message


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64])
def test_restore_checks_generator_dtypes_and_changes_nothing(good, dtype):
    """A Checkpoint changed in memory (not through a file) is refused at restore too."""
    ckpt = load_checkpoint(good)
    ckpt.generator_states["step"] = ckpt.generator_states["step"].to(dtype)
    trainer = rich_trainer(steps=2)
    before, step = weights_of(trainer), trainer.step
    with pytest.raises(CheckpointError, match="rng.step is torch") as info:
        restore_trainer(trainer, ckpt)
    assert str(good) in str(info.value)
    assert_same_state(weights_of(trainer), before) and trainer.step == step


def test_restore_tries_generator_content_before_changing_anything(good):
    ckpt = load_checkpoint(good)
    ckpt.generator_states["step"] = torch.zeros_like(ckpt.generator_states["step"])
    trainer = rich_trainer(steps=2)
    before = weights_of(trainer)
    with pytest.raises(CheckpointError, match="rng.step is not a valid generator state"):
        restore_trainer(trainer, ckpt)
    assert_same_state(weights_of(trainer), before) and trainer.step == 2


def drop(name):
    def change(tensors):
        del tensors[name]
    return change


@pytest.mark.parametrize("change, words", [
    (replace("extra.weights", torch.zeros(3)), "unexpected tensor 'extra.weights'"),
    (replace("history.loss", torch.zeros(8, dtype=torch.float32)), "history.loss must be 1-D float64"),
    (replace("history.loss", torch.zeros(9, dtype=torch.float64)), "differ in length"),
    (replace("history.secret", torch.zeros(8, dtype=torch.float64)), "history.secret"),
    (poison("history.step", NAN), "history.step must hold integers"),
    (poison("history.step", 1e30), "history.step must hold integers"),
    (replace("optim.999.exp_avg", torch.zeros(1)), "parameter 999"),
    (replace("optim.0.exp_avg", torch.zeros(3)), "optim.0.exp_avg has"),
    (replace("optim.0.exp_avg", torch.zeros(32, 32, dtype=torch.float64)), "optim.0.exp_avg has"),
    (replace("optim.0.momentum", torch.zeros(1)), "optim.0.momentum"),
    (replace("optim.x.exp_avg", torch.zeros(1)), "optim.x.exp_avg"),
    (replace("optim.99999999999999999999.exp_avg", torch.zeros(1)), "malformed optimizer"),
    (replace("optim.0.step", torch.tensor(1e30)), "optim.0.step"),
    (replace("sampler.count", torch.full((20,), -5, dtype=torch.int64)), "negative counts"),
    (replace("sampler.history", torch.zeros(3, 3)), "sampler.history has"),
    (replace("sampler.count", torch.zeros(20, dtype=torch.float32)), "sampler.count has"),
    (drop("sampler.count"), "sampler.count"),
    (replace("model.out.2.weight", torch.zeros(4, 32, dtype=torch.float64)), "dtypes differ"),
    (replace("ema.out.2.weight", torch.zeros(4, 32, dtype=torch.int32)), "dtypes differ"),
    (replace("ema.out.2.weight", torch.zeros(4, 32, dtype=torch.float8_e4m3fn)), "dtypes differ"),
    (replace("optim.0.step", torch.zeros((), dtype=torch.bfloat16)), "optim.0.step must be one"),
    (replace("optim.0.step", torch.zeros((), dtype=torch.complex64)), "optim.0.step must be one"),
    (replace("optim.0.step", torch.zeros(3)), "optim.0.step must be one number"),
])
def test_other_tensors_are_checked_by_name(good, tmp_path, change, words):
    assert words in refused(good, tmp_path / "tensor.ckpt", tensors=change)


def test_a_refused_file_changes_no_trainer(good, tmp_path):
    trainer = rich_trainer(steps=2)
    before, history = weights_of(trainer), {k: list(v) for k, v in trainer.history.items()}
    for index, change in enumerate([poison("ema.out.2.weight", NAN),
                                    replace("rng.step", CPU_STATE.float())]):
        bad = rewrite(good, tmp_path / f"bad{index}.ckpt", change_tensors=change)
        with pytest.raises(CheckpointError):
            restore_trainer(trainer, load_checkpoint(bad))
    assert_same_state(weights_of(trainer), before)
    assert trainer.step == 2 and trainer.history == history
