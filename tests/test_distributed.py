"""Data-parallel training: per-rank shards, and two gloo processes under torchrun on the CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_training import tiny_config, toy_dataset

from core import distributed
from core.checkpoint import load_checkpoint
from core.cli import TEST_DUMP_ENV
from core.training import Trainer

ROOT = Path(__file__).resolve().parent.parent


def test_each_rank_trains_on_its_own_shard(monkeypatch):
    monkeypatch.setattr(distributed, "rank_and_world", lambda: (1, 3))
    monkeypatch.setattr(distributed, "wrap_ddp", lambda model, device: model)
    dataset = toy_dataset(n=100)
    trainer = Trainer(tiny_config(train={"class_conditional": True}), dataset=dataset)
    assert trainer.rank == 1 and trainer.world_size == 3
    assert torch.equal(trainer._train_x, dataset.train[1::3])
    assert torch.equal(trainer._train_y, dataset.train_labels[1::3])


def test_generators_differ_between_ranks(monkeypatch):
    monkeypatch.setattr(distributed, "wrap_ddp", lambda model, device: model)
    states = []
    for rank in (0, 1):
        monkeypatch.setattr(distributed, "rank_and_world", lambda rank=rank: (rank, 2))
        states.append(Trainer(tiny_config(), dataset=toy_dataset()).generator_states()["step"])
    assert not torch.equal(states[0], states[1])


@pytest.mark.slow
def test_two_gloo_processes_keep_identical_weights_and_the_checkpoint_loads(tmp_path):
    config = {
        "model": {"kind": "mlp", "hidden": 16, "mlp_blocks": 1},
        "diffusion": {"schedule": "linear", "timesteps": 10, "variance_type": "learned_range",
                      "loss_type": "hybrid", "timestep_sampler": "loss-aware"},
        "train": {"dataset": "8gaussians", "num_samples": 400, "batch_size": 16, "steps": 12,
                  "device": "cpu", "log_every": 4, "probe_every": 6, "probe_timesteps": 3},
    }
    config_path = tmp_path / "ddp.json"
    config_path.write_text(json.dumps(config))
    ckpt = tmp_path / "ddp.ckpt"
    env = {**os.environ, TEST_DUMP_ENV: str(tmp_path), "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "core", "train", "--config", str(config_path), "--out", str(ckpt),
         "--device", "cpu"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world size 2" in result.stderr
    rank0 = load_file(str(tmp_path / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "rank1.safetensors"))
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    checkpoint = load_checkpoint(ckpt)
    assert checkpoint.step == 12
    assert all(torch.equal(checkpoint.model_state[k], rank0[k]) for k in rank0)
    assert not any(k.startswith("module.") for k in checkpoint.model_state)   # unwrapped
    model = checkpoint.build_model(ema=False)
    out_weight = [k for k in rank0 if k.startswith("out.") and k.endswith("weight")][-1]
    assert model.state_dict()[out_weight].abs().sum() > 0                     # it trained
