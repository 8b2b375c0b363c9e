"""A guard for code that a CUDA graph may capture: it fails on every op that needs the host
while a capture records kernels, and names the op and the Python line that issued it.

A captured step must make no host round trip. Under `CaptureGuard()` these raise
`HostRoundTrip` (on any device, so the rule is checked on the CPU, in the normal tests):

- reading a tensor back: `aten._local_scalar_dense` (.item(), float(), int(), bool(), and
  Python control flow on a tensor);
- making a tensor from Python or numpy data: `aten.lift_fresh`, `aten.lift_fresh_copy`
  (torch.tensor / as_tensor of data), `aten.scalar_tensor` (a tensor of a Python number)
  outside the autograd engine (backward formulas make their zeros with scalar_tensor on the
  gradient's own device: a fill kernel, which a capture records);
- copies across devices, `aten._to_copy` / `aten.copy_` between tensors on different
  devices or with an explicit `device=`; and converting a float64 tensor (the float64
  schedule tables live on the host; device math is float32);
- data-dependent shapes: nonzero, unique, masked_select, and indexing with a boolean mask.

Usage: `with CaptureGuard(): step(...)`; `CaptureGuard(raise_on_first=False)` collects
every problem in `.problems` instead (diagnostics, bench/gpu checks).
"""

from __future__ import annotations

import traceback
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_ROOT = Path(__file__).resolve().parent.parent
_PROJECT_DIRS = tuple(str(_ROOT / name) + "/" for name in ("core", "app", "bench", "tests"))
READ_BACK = ("aten._local_scalar_dense",)
FROM_HOST = ("aten.lift_fresh", "aten.lift_fresh_copy", "aten.scalar_tensor")
DATA_DEPENDENT = ("aten.nonzero", "aten.unique", "aten._unique", "aten.masked_select",
                  "aten.argwhere")


class HostRoundTrip(RuntimeError):
    """An op that a CUDA graph capture cannot record (see the module docstring)."""


def _project_line() -> str:
    """The innermost frame of this project's code (not torch's) that led to the op."""
    for frame in reversed(traceback.extract_stack()[:-3]):
        if frame.filename.startswith(_PROJECT_DIRS) and not frame.filename.endswith(
                "capture_guard.py"):
            return f"{Path(frame.filename).relative_to(_ROOT)}:{frame.lineno} ({frame.line})"
    return "outside the project"


def _in_backward() -> bool:
    """Called from the autograd engine (loss.backward())."""
    return any(frame.name == "_engine_run_backward" for frame in traceback.extract_stack())


def _devices(values) -> set:
    return {v.device for v in values if isinstance(v, torch.Tensor)}


class CaptureGuard(TorchDispatchMode):
    """See the module docstring. `problems`: "op at file:line (code)" strings."""

    def __init__(self, raise_on_first: bool = True):
        super().__init__()
        self.raise_on_first = raise_on_first
        self.problems: list[str] = []

    def _why(self, name: str, args, kwargs) -> str:
        if name.startswith(READ_BACK):
            return "reads a tensor back to the host"
        if name.startswith(FROM_HOST):
            if name.startswith("aten.scalar_tensor") and _in_backward():
                return ""
            return "makes a tensor from host data"
        if name.startswith(DATA_DEPENDENT):
            return "has a data-dependent output shape"
        if name.startswith("aten.index.Tensor") and len(args) > 1:
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] or ()):
                return "indexes with a boolean mask (data-dependent shape)"
        if name.startswith(("aten._to_copy", "aten.copy_")):
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            target = kwargs.get("device")
            if len(_devices(tensors)) > 1 or (
                    target is not None and tensors and torch.device(target) != tensors[0].device):
                return "copies across devices"
            if name.startswith("aten._to_copy") and tensors \
                    and tensors[0].dtype == torch.float64 and kwargs.get("dtype") is not None:
                return "converts a float64 (host) table"
        return ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        why = self._why(str(func), args, kwargs)
        if why:
            problem = f"{func} {why}, at {_project_line()}"
            self.problems.append(problem)
            if self.raise_on_first:
                raise HostRoundTrip(problem)
        return func(*args, **kwargs)
