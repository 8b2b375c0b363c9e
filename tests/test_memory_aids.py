"""The memory aids for big batches: micro-batches (gradient accumulation over chunks of the
batch) give the whole batch's gradient, activation checkpointing of the UNet's res blocks
gives the plain gradients, and both keep the step capture-safe."""

from __future__ import annotations

import pytest
import torch

from core.capture_guard import CaptureGuard
from core.config import ConfigError, ExperimentConfig
from core.data import Dataset
from core.models import build_model
from core.train_step import StepBatch
from core.training import Trainer


def image_data(classes=3):
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(30, 1, 8, 8, generator=gen) * 2 - 1
    y = torch.randint(0, classes, (30,), generator=gen)
    return Dataset(name="noise", kind="image", train=x[:24], test=x[24:], train_labels=y[:24],
                   test_labels=y[24:], num_classes=classes, shape=(1, 8, 8))


def config(micro_batch=0, checkpointing=False, dropout=0.0, **diffusion) -> ExperimentConfig:
    return ExperimentConfig.from_dict({
        "model": {"kind": "unet", "channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1,
                  "num_heads": 2, "dropout": dropout, "checkpointing": checkpointing},
        "diffusion": {"schedule": "cosine", "timesteps": 20, **diffusion},
        "train": {"batch_size": 6, "micro_batch": micro_batch, "warmup_steps": 0, "steps": 4,
                  "device": "cpu", "probe_every": 0, "probe_timesteps": 4, "image_size": 8,
                  "class_conditional": True, "grad_clip": 0.0},
    }).validate()


def one_step(trainer: Trainer, batch: StepBatch):
    """(gradients, metrics row, new weights) of one step on `batch`."""
    trainer._ema_weight.fill_(0.1)
    with trainer._model_rng():
        _raw, row = trainer.step_on(batch)
    grads = [p.grad.detach().clone() for p in trainer.model.parameters()]
    return grads, row, [p.detach().clone() for p in trainer.model.parameters()]


def a_batch(trainer: Trainer) -> StepBatch:
    x0, kwargs, t, weights, noise = trainer._draw_batch()
    return StepBatch(x0, t, weights, noise, kwargs.get("y"))


@pytest.mark.parametrize("micro_batch", [1, 2, 3])
@pytest.mark.parametrize("diffusion", [{}, {"variance_type": "learned_range", "loss_type": "hybrid",
                                            "timestep_sampler": "loss-aware"}])
def test_micro_batches_give_the_whole_batch_gradient(micro_batch, diffusion):
    data = image_data()
    whole = Trainer(config(**diffusion), dataset=data)
    parts = Trainer(config(micro_batch=micro_batch, **diffusion), dataset=data)
    for _ in range(3):                     # at a few points, as the weights move
        parts.model.load_state_dict(whole.model.state_dict())
        batch = a_batch(whole)
        batch = StepBatch(*batch[:2], torch.linspace(0.5, 1.5, 6), *batch[3:])  # unequal weights
        g_whole, row_whole, _ = one_step(whole, batch)
        g_parts, row_parts, _ = one_step(parts, batch)
        for a, b in zip(g_parts, g_whole, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(row_parts, row_whole, rtol=1e-5, atol=1e-7, equal_nan=True)
    assert any(g.abs().sum() > 0 for g in g_whole)


def test_activation_checkpointing_gives_the_plain_gradients_with_dropout():
    data = image_data()
    plain = Trainer(config(dropout=0.3), dataset=data)
    saving = Trainer(config(checkpointing=True, dropout=0.3), dataset=data)
    assert all(not getattr(m, "checkpointing", False) for m in plain.model.modules())
    assert any(getattr(m, "checkpointing", False) for m in saving.model.modules())
    batch = a_batch(plain)
    g_plain, row_plain, _ = one_step(plain, batch)
    g_saving, row_saving, _ = one_step(saving, batch)
    for a, b in zip(g_saving, g_plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(row_saving, row_plain, equal_nan=True)


def test_checkpointing_keeps_fewer_activations():
    """The saved tensors of the autograd graph shrink (what frees memory on a GPU)."""
    def saved_elements(checkpointing: bool) -> int:
        model = build_model(config(checkpointing=checkpointing).model, (1, 8, 8), None)
        total = 0

        def pack(tensor):
            nonlocal total
            total += tensor.numel()
            return tensor
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(torch.randn(16, 1, 8, 8), torch.randint(0, 20, (16,))).sum()
        return total
    assert saved_elements(True) < 0.7 * saved_elements(False)


@pytest.mark.parametrize("kwargs", [{"micro_batch": 2}, {"checkpointing": True, "dropout": 0.2}])
def test_the_memory_aids_keep_the_step_capture_safe(kwargs):
    trainer = Trainer(config(**kwargs), dataset=image_data())
    batch = a_batch(trainer)
    trainer._ema_weight.fill_(0.1)
    with trainer._model_rng(), CaptureGuard():
        trainer.step_on(batch)


def test_micro_batch_must_divide_the_batch():
    with pytest.raises(ConfigError, match=r"train.micro_batch = 4 .*must divide train.batch_size \(6\)"):
        config(micro_batch=4)
    with pytest.raises(ConfigError, match="model.checkpointing"):
        ExperimentConfig.from_dict({"model": {"checkpointing": "yes"}}).validate()


def test_the_out_of_memory_advice_names_the_batch_the_model_and_both_aids():
    from core.oom import training_oom_advice

    text = training_oom_advice(128, 35_400_000, device="cuda:0")
    for words in ("batch of 128", "35.40M parameters", "cuda:0", "train.micro_batch to 32",
                  "model.checkpointing", "train.batch_size"):
        assert words in text, words
    # an aid already in use is not offered again
    used = training_oom_advice(128, 35_400_000, micro_batch=16, checkpointing=True)
    assert "micro_batch to" not in used and "turn on model.checkpointing" not in used


# ---------------------------------------------------------------------- the CLI
def write_config(tmp_path, **diffusion):
    import json
    data = {"model": {"kind": "mlp", "hidden": 16, "mlp_blocks": 1},
            "diffusion": {"schedule": "linear", "timesteps": 10, **diffusion},
            "train": {"dataset": "8gaussians", "num_samples": 64, "batch_size": 8, "steps": 3,
                      "device": "cpu", "probe_every": 0, "probe_timesteps": 2, "log_every": 1}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path


def test_train_takes_the_memory_aids_as_flags(tmp_path):
    from core.checkpoint import load_checkpoint
    from core.cli import main

    out = tmp_path / "run.ckpt"
    assert main(["train", "--config", str(write_config(tmp_path)), "--out", str(out),
                 "--micro-batch", "4", "--checkpointing"]) == 0
    config = load_checkpoint(out).config
    assert config.train.micro_batch == 4 and config.model.checkpointing is True


def test_train_refuses_a_micro_batch_that_does_not_divide_the_batch(tmp_path, capsys):
    from core.cli import main

    code = main(["train", "--config", str(write_config(tmp_path)), "--out",
                 str(tmp_path / "x.ckpt"), "--micro-batch", "3"])
    assert code == 2 and "train.micro_batch = 3" in capsys.readouterr().err


def test_train_refuses_learned_range_with_the_simple_loss(tmp_path, capsys):
    from core.cli import main

    config = write_config(tmp_path, variance_type="learned_range", loss_type="simple")
    code = main(["train", "--config", str(config), "--out", str(tmp_path / "x.ckpt")])
    err = capsys.readouterr().err
    assert code == 2 and "diffusion.loss_type" in err and "hybrid or vlb" in err
    assert str(config) in err


def test_out_of_memory_in_training_names_the_batch_the_model_and_the_aids(tmp_path, capsys,
                                                                         monkeypatch):
    from core.cli import main

    def exhausted(self, *args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
    monkeypatch.setattr(Trainer, "run", exhausted)
    code = main(["train", "--config", str(write_config(tmp_path)), "--out",
                 str(tmp_path / "x.ckpt")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and lines[-2].startswith("error: CUDA out of memory")
    hint = lines[-1]
    assert hint.startswith("hint: out of memory on cpu with a batch of 8 examples")
    assert "M parameters" in hint and "train.micro_batch to 2" in hint
    assert "model.checkpointing" in hint
