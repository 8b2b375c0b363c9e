"""What a run will cost before it starts: the floating-point operations of one training step
and of one sampling step for a config, a conservative throughput for the device, and the
seconds they imply.

An order-of-magnitude guide for warnings ("this preset needs hours on this CPU"), not a
benchmark: the first steps of a run measure the real rate.

FLOPs are counted by torch.utils.flop_counter.FlopCounterMode on the network built on the
meta device (shapes only: no memory, no arithmetic). It counts matrix products,
convolutions and attention, a multiply-add as 2 FLOPs; element-wise work (norms,
activations, the diffusion's own arithmetic) is not counted, and the throughput constants
absorb it. The backward pass costs about twice the forward, so a training step costs

    train_step_flops = TRAIN_PASSES * batch_size * forward_flops      (TRAIN_PASSES = 3)

and one reverse step of n samples n * model_calls_per_step * forward_flops (a guided step
calls the network twice: core.sampling.GuidedModel).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from core.build import model_from_config
from core.config import ExperimentConfig

TRAIN_PASSES = 3
# Sustained FLOP/s, kept low on purpose (a warning should not promise too much). Measured on
# a busy 2-core x86 machine with one torch thread: 22-50 GFLOP/s for the presets' UNets
# (mnist-cpu 22, mnist-ddpm 41, digits 42), 8 for the tiny toy MLP, whose steps are all
# overhead. GPUs: a fraction of a consumer card's fp32/bf16 peak; small models reach less,
# but there they take milliseconds anyway.
CPU_FLOPS_PER_THREAD = 20e9
GPU_FLOPS = {"cuda": 10e12, "mps": 1e12}


def count_forward_flops(model: nn.Module, data_shape: Sequence[int],
                        num_classes: int | None = None) -> int:
    """FLOPs of model(x, t[, y]) for one example of shape data_shape, counted on whatever
    device the model lives on (use the meta device: nothing is computed)."""
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    x = torch.zeros((1, *(int(s) for s in data_shape)), device=device)
    t = torch.zeros((1,), dtype=torch.long, device=device)
    kwargs = {}
    if num_classes is not None:
        kwargs["y"] = torch.zeros((1,), dtype=torch.long, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, t, **kwargs)
    return int(counter.get_total_flops())


def forward_flops(config: ExperimentConfig, data_shape: Sequence[int],
                  num_classes: int | None = None) -> int:
    """FLOPs of one forward pass of the config's network for one example (meta device)."""
    with torch.device("meta"):
        model = model_from_config(config, tuple(int(s) for s in data_shape), num_classes)
    return count_forward_flops(model, data_shape, num_classes)


def throughput(device: torch.device | str, threads: int | None = None) -> float:
    """Conservative sustained FLOP/s of `device`: per torch thread on a CPU (`threads`
    defaults to torch's current count, at most the cores), a fixed figure on a GPU."""
    device = torch.device(device)
    if device.type in GPU_FLOPS:
        return GPU_FLOPS[device.type]
    threads = torch.get_num_threads() if threads is None else int(threads)
    threads = max(1, min(threads, os.cpu_count() or 1))
    return CPU_FLOPS_PER_THREAD * threads


@dataclass(frozen=True)
class CostEstimate:
    """The cost of a config on a device. forward_flops: one example, one network call;
    batch_size: the training batch; flops_per_second: throughput()."""

    device_type: str
    threads: int
    forward_flops: int
    batch_size: int
    flops_per_second: float

    @property
    def train_step_flops(self) -> int:
        return TRAIN_PASSES * self.batch_size * self.forward_flops

    def train_step_seconds(self) -> float:
        """Estimated seconds of one training step."""
        return self.train_step_flops / self.flops_per_second

    def train_seconds(self, steps: int) -> float:
        """Estimated seconds of `steps` training steps."""
        return steps * self.train_step_seconds()

    def sample_step_flops(self, n: int, model_calls_per_step: int = 1) -> int:
        """FLOPs of one reverse step for n samples."""
        return int(n) * int(model_calls_per_step) * self.forward_flops

    def sample_seconds(self, n: int, steps: int, model_calls_per_step: int = 1) -> float:
        """Estimated seconds to draw n samples with `steps` reverse steps."""
        return steps * self.sample_step_flops(n, model_calls_per_step) / self.flops_per_second


def estimate(config: ExperimentConfig, data_shape: Sequence[int],
             num_classes: int | None = None, device: torch.device | str = "cpu",
             threads: int | None = None) -> CostEstimate:
    """The CostEstimate of training and sampling `config` on `device` (see the module
    docstring); threads: the CPU's torch threads (default: torch's current count)."""
    device = torch.device(device)
    speed = throughput(device, threads)
    used = 0 if device.type != "cpu" else max(1, round(speed / CPU_FLOPS_PER_THREAD))
    return CostEstimate(device_type=device.type, threads=used,
                        forward_flops=forward_flops(config, data_shape, num_classes),
                        batch_size=int(config.train.batch_size), flops_per_second=speed)


def format_flops(flops: float) -> str:
    """1.2 GFLOP, 31 MFLOP, 840 FLOP: three significant digits at most."""
    for unit, scale in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if flops >= scale:
            value = flops / scale
            return f"{value:.3g} {unit}"
    return f"{int(flops)} FLOP" if math.isfinite(flops) else "? FLOP"
