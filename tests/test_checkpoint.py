"""core.checkpoint: round trip, exact resume, atomic writes and every kind of bad file."""

import json
import os

import numpy as np
import pytest
import torch
from checkpoint_files import rewrite
from safetensors.torch import save_file
from test_training import assert_same_state, tiny_config, toy_dataset, weights_of

import core.checkpoint as checkpoint_module
from core.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    restore_trainer,
    save_checkpoint,
    trainer_from_checkpoint,
)
from core.training import HISTORY_KEYS, Trainer


def rich_config(**train):
    """Every source of randomness and state: dropout, labels, loss-aware, learned variance."""
    return tiny_config(model={"dropout": 0.2},
                       diffusion={"variance_type": "learned_range", "loss_type": "hybrid",
                                  "timestep_sampler": "loss-aware"},
                       train={"class_conditional": True, "label_dropout": 0.3, "probe_every": 4,
                              **train})


@pytest.fixture
def trained(tmp_path):
    trainer = Trainer(rich_config(), dataset=toy_dataset())
    trainer.run(8)
    path = tmp_path / "run.ckpt"
    save_checkpoint(path, trainer)
    return trainer, path


def test_round_trip_keeps_weights_config_history_and_probes(trained):
    trainer, path = trained
    ckpt = load_checkpoint(path)
    assert ckpt.format_version == FORMAT_VERSION
    assert ckpt.config == trainer.config
    assert ckpt.step == 8 and ckpt.num_classes == 4 and ckpt.data_shape == (2,)
    assert ckpt.data_kind == "vector" and ckpt.dataset_name == "blobs"
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(ckpt.model_state[key], value)
    for key, value in trainer.ema_model.state_dict().items():
        assert torch.equal(ckpt.ema_state[key], value)
    for key in HISTORY_KEYS:
        np.testing.assert_array_equal(np.array(ckpt.history[key]), np.array(trainer.history[key]))
    assert [p["step"] for p in ckpt.probe_history] == [4, 8]
    for saved, live in zip(ckpt.probe_history, trainer.probe_history, strict=True):
        for key in ("t", "loss", "vlb", "v_mean", "v_std", "log_var_mean", "log_var_std"):
            np.testing.assert_array_equal(saved[key], live[key])
    model = ckpt.build_model(ema=True)
    assert not model.training
    assert all(torch.equal(model.state_dict()[k], v) for k, v in trainer.ema_model.state_dict().items())


def test_resume_continues_exactly(trained, monkeypatch):
    trainer, path = trained
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load must not be used"))
    resumed = trainer_from_checkpoint(path, dataset=toy_dataset())
    assert resumed.step == 8
    trainer.run(4)
    resumed.run(4)
    assert trainer.history["loss"][-4:] == resumed.history["loss"][-4:]
    assert trainer.history["grad_norm"] == resumed.history["grad_norm"]
    assert_same_state(weights_of(trainer), weights_of(resumed))
    assert torch.equal(trainer.timestep_sampler.history, resumed.timestep_sampler.history)


def test_writing_is_atomic_and_leaves_no_temp_files(trained, monkeypatch):
    trainer, path = trained
    before = path.read_bytes()
    trainer.run(1)

    def broken_save(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "save_file", broken_save)
    with pytest.raises(CheckpointError, match="No space left"):
        save_checkpoint(path, trainer)
    assert path.read_bytes() == before                     # the old file is intact
    assert os.listdir(path.parent) == [path.name]          # and no temp file remains
    monkeypatch.undo()
    save_checkpoint(path, trainer)
    assert load_checkpoint(path).step == 9
    assert os.listdir(path.parent) == [path.name]


def test_saving_into_a_missing_folder_is_a_clear_error(trained, tmp_path):
    trainer, _ = trained
    with pytest.raises(CheckpointError, match="does not exist"):
        save_checkpoint(tmp_path / "nope" / "x.ckpt", trainer)


# ---------------------------------------------------------------------- bad files
def bad_files(path, tmp):
    data = path.read_bytes()

    def write(name, content):
        target = tmp / name
        target.write_bytes(content)
        return target

    def newer(meta):
        meta["format_version"] = str(FORMAT_VERSION + 1)

    def other_arch(meta):
        config = json.loads(meta["config"])
        config["model"]["hidden"] = 48
        meta["config"] = json.dumps(config)

    def flip_a_byte():
        corrupt = bytearray(data)
        corrupt[-3] ^= 0xFF                                   # inside the tensor data
        return write("flipped.ckpt", bytes(corrupt))

    def drop_ema(tensors):
        for key in [k for k in tensors if k.startswith("ema.")]:
            del tensors[key]

    return {
        "missing": (tmp / "absent.ckpt", "does not exist"),
        "empty": (write("empty.ckpt", b""), "is empty"),
        "truncated": (write("truncated.ckpt", data[: len(data) // 2]), "truncated or corrupt"),
        "garbage": (write("garbage.ckpt", os.urandom(4096)), "truncated or corrupt"),
        "text": (write("text.ckpt", b"{\"hello\": 1}\n"), "truncated or corrupt"),
        "flipped byte": (flip_a_byte(), "checksum"),
        "foreign": (_foreign(tmp / "foreign.safetensors"), "not a Diffusion Explorer checkpoint"),
        "newer": (rewrite(path, tmp / "newer.ckpt", change_metadata=newer), "newer version"),
        "architecture": (rewrite(path, tmp / "arch.ckpt", change_metadata=other_arch),
                         "do not match the architecture"),
        "no ema": (rewrite(path, tmp / "noema.ckpt", change_tensors=drop_ema), "no ema weights"),
        "folder": (tmp, "is a folder"),
    }


def _foreign(target):
    save_file({"weight": torch.zeros(3)}, str(target), metadata={"framework": "someone else"})
    return target


CASES = ["missing", "empty", "truncated", "garbage", "text", "flipped byte", "foreign", "newer",
         "architecture", "no ema", "folder"]


@pytest.mark.parametrize("case", CASES)
def test_bad_checkpoint_raises_a_clear_error_and_changes_nothing(trained, tmp_path, case):
    trainer, path = trained
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad_path, message = bad_files(path, bad_dir)[case]
    before = weights_of(trainer)
    step, history = trainer.step, dict(trainer.history)
    with pytest.raises(CheckpointError) as info:
        restore_trainer(trainer, load_checkpoint(bad_path))
    assert str(bad_path) in str(info.value)
    assert message in str(info.value)
    assert_same_state(weights_of(trainer), before)
    assert trainer.step == step and trainer.history == history


def test_restoring_into_a_trainer_with_other_settings_changes_nothing(trained, tmp_path):
    _, path = trained
    other = Trainer(tiny_config(model={"hidden": 48, "dropout": 0.2},
                                diffusion={"variance_type": "learned_range", "loss_type": "hybrid",
                                           "timestep_sampler": "loss-aware"},
                                train={"class_conditional": True}), dataset=toy_dataset())
    other.run(2)
    before = weights_of(other)
    with pytest.raises(CheckpointError, match=r"different model settings \(hidden: 32"):
        restore_trainer(other, load_checkpoint(path))
    assert_same_state(weights_of(other), before)
    assert other.step == 2


def test_resume_needs_data_of_the_same_shape(trained):
    _, path = trained
    dataset = toy_dataset()
    dataset.num_classes = 5
    with pytest.raises(CheckpointError, match="num_classes=4"):
        trainer_from_checkpoint(path, dataset=dataset)


def test_checkpoint_from_another_device_type_loads_with_fresh_generators(trained):
    trainer, path = trained
    ckpt = load_checkpoint(path)
    ckpt.device_type = "cuda"                    # as if written on a GPU
    target = Trainer(rich_config(), dataset=toy_dataset())
    restore_trainer(target, ckpt)
    assert target.step == 8
    assert_same_state(weights_of(target), weights_of(trainer))
    saved = ckpt.generator_states["step"]
    assert not torch.equal(target.generator_states()["step"], saved)
    again = Trainer(rich_config(), dataset=toy_dataset())
    again.reseed_generators(8)
    assert torch.equal(target.generator_states()["step"], again.generator_states()["step"])


def test_data_box_is_saved_and_checked_and_optional_in_older_files(trained, tmp_path):
    trainer, path = trained
    x = trainer.dataset.train.double().numpy()
    low, high = x.min(axis=0), x.max(axis=0)
    np.testing.assert_allclose(trainer.data_box[0], low - 0.1 * (high - low), rtol=1e-12)
    np.testing.assert_allclose(trainer.data_box[1], high + 0.1 * (high - low), rtol=1e-12)
    assert load_checkpoint(path).data_box == tuple(trainer.data_box)

    def drop(meta):
        del meta["data_box"]
    assert load_checkpoint(rewrite(path, tmp_path / "old.ckpt", change_metadata=drop)).data_box is None

    for bad in ([[0.0], [1.0]], [[0.0, 1.0], [1.0, 0.0]], [[0.0, "x"], [1.0, 2.0]],
                [[0.0, float("nan")], [1.0, 2.0]], {"low": 1}):
        def corrupt(meta, bad=bad):
            meta["data_box"] = json.dumps(bad)
        with pytest.raises(CheckpointError, match="invalid data_box"):
            load_checkpoint(rewrite(path, tmp_path / "bad.ckpt", change_metadata=corrupt))


def test_restoring_keeps_the_box_of_the_training_data(trained, tmp_path):
    """A trainer built on other (e.g. newly drawn) points samples within the box the model
    was trained on, which the checkpoint carries."""
    trainer, path = trained
    other = Trainer(rich_config(), dataset=toy_dataset(seed=5))
    other.data_box = ([-9.0, -9.0], [9.0, 9.0])
    restore_trainer(other, load_checkpoint(path))
    assert other.data_box == (list(trainer.data_box[0]), list(trainer.data_box[1]))
