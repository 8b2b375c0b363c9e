"""Devices and precision: which device a setting names, the bf16 autocast wrapper around a
network, and the RNG state of a device. Training, sampling and the fast path share them."""

from __future__ import annotations

import os

import torch
from torch import nn

from core.config import ConfigError

DEVICE_CHOICES = "must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
SMALL_CPU_CORES = 4          # up to this many cores: one intra-op thread (see default_threads)
MAX_THREADS = 256


def default_threads(cores: int | None = None) -> int | None:
    """The intra-op thread count for torch on this machine: 1 on small CPUs (<= 4 cores),
    where more threads make small models many times slower (QT-NOTES section 4: 2 threads
    made a small model 10-70x slower on a busy 2-core machine); None (torch's default, one per
    core) on bigger ones. The app and the CLI both use this rule."""
    cores = os.cpu_count() if cores is None else cores
    return 1 if (cores or 1) <= SMALL_CPU_CORES else None


def configure_threads(requested: int | None = None) -> int:
    """Set torch's intra-op threads: `requested` (1..MAX_THREADS, else ValueError naming
    the limit) or default_threads(); returns the count in effect."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) \
                or not 1 <= requested <= MAX_THREADS:
            raise ValueError(f"threads = {requested!r} is invalid: must be an integer from 1 "
                             f"to {MAX_THREADS}")
        torch.set_num_threads(requested)
    elif default_threads() is not None:
        torch.set_num_threads(default_threads())
    return torch.get_num_threads()


def resolve_device(name: str | torch.device | None) -> torch.device:
    """"auto" (CUDA, then MPS, then CPU) or an explicit device, which must be available;
    ConfigError("train.device", ...) otherwise."""
    if isinstance(name, torch.device):
        name = str(name)
    if name is None or name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError("train.device", name, DEVICE_CHOICES) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device", name,
                              f"CUDA is not available here (torch {torch.__version__}, "
                              f"{'built without CUDA' if torch.version.cuda is None else 'no GPU found'}); "
                              f"use 'cpu' or 'auto'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError("train.device", name,
                              f"only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif device.type == "mps":
        if not mps_available():
            raise ConfigError("train.device", name,
                              "MPS (Apple GPU) is not available here; use 'cpu' or 'auto'")
    elif device.type != "cpu":
        raise ConfigError("train.device", name, DEVICE_CHOICES)
    return device


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


class AutocastModel(nn.Module):
    """Runs `model` under autocast (bf16 on CUDA) and returns float32, so the diffusion math
    around the network stays in full precision."""

    def __init__(self, model: nn.Module, device_type: str, dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self.model = model
        self.device_type = device_type
        self.dtype = dtype

    def forward(self, x, t, y=None):
        with torch.autocast(self.device_type, dtype=self.dtype):
            out = self.model(x, t, y=y)
        return out.float()


def unwrap_autocast(model: nn.Module) -> nn.Module:
    """The network inside any AutocastModel wrappers."""
    while isinstance(model, AutocastModel):
        model = model.model
    return model


def get_rng_state(device: torch.device) -> torch.Tensor:
    """The global RNG state of the device's type (CUDA: of that device)."""
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    if device.type == "mps":
        return torch.mps.get_rng_state()
    return torch.get_rng_state()


def set_rng_state(device: torch.device, state: torch.Tensor) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    elif device.type == "mps":
        torch.mps.set_rng_state(state)
    else:
        torch.set_rng_state(state)
