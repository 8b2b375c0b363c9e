"""Helpers shared by the fault-injection tests (a plain module: tests/faults is on sys.path)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_configs import tiny_toy_config


def tiny_config(steps: int = 40, timesteps: int = 20, **train):
    """The toy-2d preset shrunk: T=20, a 32-wide MLP, one metric row per step, CPU, no probes."""
    return tiny_toy_config(steps, timesteps, probe_every=0, **{"device": "cpu", **train})


def core_trainer(steps: int = 0, **train):
    """A core Trainer on 400 points of the 8-Gaussians toy, after `steps` steps."""
    from core.data import get_dataset
    from core.training import Trainer

    cfg = tiny_config(**{"num_samples": 400, **train})
    dataset = get_dataset("8gaussians", num_samples=400, seed=0)
    trainer = Trainer(cfg, dataset=dataset)
    if steps:
        trainer.run(steps)
    return trainer


def state_of(trainer) -> dict[str, torch.Tensor]:
    """Copies of everything a checkpoint keeps that a fault could damage."""
    state = {f"model.{k}": v.detach().clone() for k, v in trainer.model.state_dict().items()}
    state.update({f"ema.{k}": v.detach().clone() for k, v in trainer.ema_model.state_dict().items()})
    for i, entry in trainer.optimizer.state_dict()["state"].items():
        state.update({f"optim.{i}.{k}": torch.as_tensor(v).clone() for k, v in entry.items()})
    return state


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} changed"


def assert_finite_weights(trainer) -> None:
    for name, tensor in {**dict(trainer.model.named_parameters()),
                         **{f"ema.{k}": v for k, v in trainer.ema_model.state_dict().items()}}.items():
        assert torch.isfinite(tensor).all(), f"{name} is not finite"


def assert_history_consistent(trainer) -> None:
    """One history row per step taken, numbered 1..step, all losses finite."""
    steps = trainer.history["step"]
    assert list(steps) == list(range(1, trainer.step + 1)), (
        f"trainer.step = {trainer.step}, history steps {steps[:3]}..{steps[-3:]} "
        f"({len(steps)} rows)")
    for key, values in trainer.history.items():
        assert len(values) == trainer.step, key
    assert np.isfinite(np.asarray(trainer.history["loss"])).all()


# ---------------------------------------------------------------------- permissions as root
_CAP_VERSION_3 = 0x20080522
_DAC_CAPS = (1, 2)   # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH: root reads and writes past chmod


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


@contextlib.contextmanager
def permissions_enforced(probe_dir):
    """Within the block, this thread obeys file modes (chmod 000, read-only folders).

    Tests run as root, whose CAP_DAC_OVERRIDE ignores modes; as root the two DAC
    capabilities are removed from this thread's effective set (capset) and given back after.
    Skips the test, with the reason, where that is impossible. `probe_dir` is scratch space
    for checking that a mode-000 file really is unreadable.
    """
    probe = Path(probe_dir) / ".permission-probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    saved = None
    try:
        if os.geteuid() == 0:
            saved = _drop_dac_capabilities()
        try:
            probe.read_bytes()
        except PermissionError:
            pass
        else:
            pytest.skip("file modes are not enforced for this process (root with "
                        "CAP_DAC_OVERRIDE that cannot be dropped), so chmod cannot make a "
                        "path unreadable")
        yield
    finally:
        if saved is not None:
            _capset(saved)
        probe.chmod(0o600)
        probe.unlink()


def _drop_dac_capabilities():
    if not sys.platform.startswith("linux"):
        pytest.skip("running as root and capabilities are Linux-only: chmod does not block root")
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc().capget(ctypes.byref(header), data) != 0:
        pytest.skip("running as root and capget failed: chmod does not block root")
    saved = [(d.effective, d.permitted, d.inheritable) for d in data]
    for cap in _DAC_CAPS:
        data[0].effective &= ~(1 << cap)
    if _libc().capset(ctypes.byref(header), data) != 0:
        pytest.skip("running as root and capset failed: chmod does not block root")
    return saved


def _capset(saved) -> None:
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    for entry, (effective, permitted, inheritable) in zip(data, saved, strict=True):
        entry.effective, entry.permitted, entry.inheritable = effective, permitted, inheritable
    if _libc().capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset could not restore the capabilities")


def _libc():
    return ctypes.CDLL(None, use_errno=True)
