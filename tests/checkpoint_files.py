"""Rewriting a checkpoint file for tests (a plain module: tests/ is on sys.path via conftest)."""

from __future__ import annotations

from safetensors import safe_open
from safetensors.torch import save_file

import core.checkpoint as checkpoint_module


def rewrite(path, target, change_metadata=None, change_tensors=None, fix_checksum=True):
    """A copy of checkpoint `path` at `target` with change_metadata(metadata dict) and
    change_tensors(tensor dict) applied and, unless fix_checksum is False, a recomputed
    (valid) checksum. Returns target."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    if change_metadata:
        change_metadata(metadata)
    if change_tensors:
        change_tensors(tensors)
    if fix_checksum:
        metadata["checksum"] = checkpoint_module._checksum(tensors)
    save_file(tensors, str(target), metadata=metadata)
    return target
