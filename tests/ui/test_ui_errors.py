"""Readable error messages (app.errors): what failed, why, what to try."""

from __future__ import annotations

import torch

from app.errors import describe_error, is_out_of_memory
from core.checkpoint import CheckpointError
from core.config import ConfigError
from core.training import TrainingDiverged


def test_out_of_memory_advises_a_smaller_batch_or_model():
    for exc in (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
                RuntimeError("MPS backend out of memory"), MemoryError()):
        assert is_out_of_memory(exc)
        text = describe_error(exc, "Training")
        assert text.startswith("Training failed:")
        assert "smaller batch size" in text and "smaller model" in text
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_core_messages_keep_their_field_file_and_advice():
    diverged = describe_error(TrainingDiverged(12, "loss", float("nan"), 11), "Training")
    assert "step 12" in diverged and "step 11" in diverged and "train.lr" in diverged
    # a setting of the form is named by the form's label, a file's setting by its field
    config = describe_error(ConfigError("train.lr", 0.0, "must lie in (0.0, 1.0]"))
    assert config == "Learning rate: must lie in (0.0, 1.0]"
    timesteps = describe_error(ConfigError("diffusion.timesteps", 1, "must be between 2 and "
                                                                      "20000"), "Training")
    assert timesteps == "Training failed: Steps T: must be between 2 and 20000"
    assert describe_error(ConfigError("sampling.n", 0, "must be between 1 and 100000")) \
        == "Samples: must be between 1 and 100000"
    in_file = ConfigError("train.lr", 0.0, "must lie in (0.0, 1.0]").in_file("run.json")
    assert describe_error(in_file) == "run.json: train.lr = 0.0 is invalid: must lie in (0.0, 1.0]"
    checkpoint = describe_error(CheckpointError("/tmp/x.safetensors", "is not a checkpoint"),
                                "Opening x.safetensors")
    assert "/tmp/x.safetensors" in checkpoint and checkpoint.startswith("Opening")


def test_other_errors_name_their_type():
    assert describe_error(ValueError("bad"), "Sampling") == "Sampling failed: ValueError: bad"
    missing = describe_error(FileNotFoundError(2, "No such file or directory", "/nope"))
    assert "/nope" in missing and "No such file" in missing
