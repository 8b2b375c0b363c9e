"""core.cost: FLOPs counted on the meta device against hand counts, and the time estimates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core import cost
from core.config import ExperimentConfig, ModelConfig, TrainConfig
from core.presets import load_preset


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(2, 8), nn.Linear(8, 2)

    def forward(self, x, t, y=None):
        return self.b(torch.relu(self.a(x)))


def test_a_two_layer_network_costs_two_flops_per_multiply_add():
    with torch.device("meta"):
        model = TwoLayers()
    # 2 * (2*8 + 8*2): biases and the relu are element-wise and not counted
    assert cost.count_forward_flops(model, (2,)) == 64


def mlp_config(hidden=8, blocks=1) -> ExperimentConfig:
    return ExperimentConfig(model=ModelConfig(kind="mlp", hidden=hidden, mlp_blocks=blocks),
                            train=TrainConfig(dataset="8gaussians", batch_size=16))


@pytest.mark.parametrize("hidden, blocks", [(8, 1), (16, 3)])
def test_the_mlp_denoiser_matches_its_hand_count(hidden, blocks):
    H, D = hidden, 2
    # time embedding 2 x Linear(H, H); input Linear(D, H); per block Linear(H, H),
    # Linear(H, 2H) for scale and shift, Linear(H, H); output Linear(H, D); skip Linear(D, D)
    expected = 2 * (2 * H * H + D * H + blocks * (H * H + 2 * H * H + H * H) + H * D + D * D)
    assert cost.forward_flops(mlp_config(hidden, blocks), (D,)) == expected


def test_a_training_step_is_three_forward_passes_per_example():
    estimate = cost.estimate(mlp_config(), (2,), device="cpu", threads=1)
    assert estimate.forward_flops == cost.forward_flops(mlp_config(), (2,))
    assert estimate.train_step_flops == 3 * 16 * estimate.forward_flops
    assert estimate.train_step_seconds() == pytest.approx(
        estimate.train_step_flops / cost.CPU_FLOPS_PER_THREAD)
    assert estimate.train_seconds(100) == pytest.approx(100 * estimate.train_step_seconds())
    # a guided step calls the network twice
    assert estimate.sample_seconds(10, 5, model_calls_per_step=2) == pytest.approx(
        2 * 10 * 5 * estimate.forward_flops / cost.CPU_FLOPS_PER_THREAD)


def test_the_cpu_throughput_follows_the_threads_and_gpus_use_their_own_figure(monkeypatch):
    monkeypatch.setattr(cost.os, "cpu_count", lambda: 8)
    assert cost.throughput("cpu", threads=2) == 2 * cost.CPU_FLOPS_PER_THREAD
    assert cost.throughput("cpu", threads=64) == 8 * cost.CPU_FLOPS_PER_THREAD
    assert cost.throughput("cuda") == cost.GPU_FLOPS["cuda"]


def test_the_mnist_presets_are_told_apart_on_one_cpu_thread():
    """mnist-ddpm is far too big for a CPU (the issue measured 8.5-10 s a step), mnist-cpu
    fits (~0.1-0.3 s a step): the estimate must say so, within its stated conservatism."""
    ddpm, small = load_preset("mnist-ddpm"), load_preset("mnist-cpu")
    big = cost.estimate(ddpm, (1, 28, 28), device="cpu", threads=1)
    little = cost.estimate(small, (1, 16, 16), device="cpu", threads=1)
    assert 2e9 < big.forward_flops < 2.5e9          # ~2.2 GFLOP per 28x28 image
    assert 5 < big.train_step_seconds() < 60
    assert little.train_seconds(small.train.steps) < 20 * 60
    assert big.train_seconds(ddpm.train.steps) > 24 * 3600


def test_flops_are_formatted_with_their_unit():
    assert cost.format_flops(2.2e9) == "2.2 GFLOP"
    assert cost.format_flops(840) == "840 FLOP"
    assert cost.format_flops(31e6) == "31 MFLOP"
