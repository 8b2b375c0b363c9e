"""Checkpoints: one safetensors file holding everything needed to sample or resume.

Tensors: "model.<name>" and "ema.<name>" (state dicts of the bare network), "optim.<i>.<key>"
(AdamW state of parameter i: exp_avg, exp_avg_sq, step), "rng.<name>" (generator states as
uint8), "sampler.<name>" (loss-aware timestep sampler), "history.<key>" (float64, one entry
per step). Metadata (strings): format, format_version, config (JSON), step, dataset,
data_kind, data_shape, num_classes, optim_param_groups, probe_history (all JSON), device_type,
and checksum (BLAKE2b of every tensor's name, dtype, shape and bytes), so a flipped byte is
caught too. Loading never unpickles: safetensors and json only.

Writing is atomic (core.atomic_write): a temp file in a hidden folder beside the target,
fsync, os.replace, fsync of the folder, so a crash leaves either the old file or the new
one, and nothing a killed save leaves behind looks like a checkpoint. A failed write (disk full,
...) raises CheckpointError saying whether the previous file is unchanged. Every problem on
loading raises CheckpointError naming the file, before anything is changed.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from core.atomic_write import AtomicWriteError, write_atomically
from core.build import diffusion_from_config, model_from_config
from core.config import ConfigError, ExperimentConfig
from core.diffusion import GaussianDiffusion
from core.training import HISTORY_KEYS, Trainer

FORMAT_NAME = "diffusion-explorer-checkpoint"
FORMAT_VERSION = 1
_OPTIMIZER_FLAGS = {"params", "fused", "foreach", "capturable", "differentiable", "decoupled_weight_decay"}
_PROBE_ARRAYS = ("t", "loss", "vlb", "eps_norm_sq", "analytic_variance", "v_mean", "v_std",
                 "log_var_mean", "log_var_std")


class CheckpointError(Exception):
    """A checkpoint cannot be written or read; the message names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"checkpoint {self.path}: {problem}")


class CheckpointWriteError(CheckpointError):
    """Writing failed at run time (disk full, file too large, I/O error): not a usage
    mistake. The message says whether the previous file is unchanged."""


@dataclass
class Checkpoint:
    """The contents of a checkpoint file, tensors on the device it was loaded to."""

    path: str
    format_version: int
    config: ExperimentConfig
    step: int
    dataset_name: str
    data_kind: str                       # "image" or "vector"
    data_shape: tuple[int, ...]
    num_classes: int | None
    model_state: dict[str, torch.Tensor]
    ema_state: dict[str, torch.Tensor]
    optimizer_state: dict                # torch's format: {"state": {i: {...}}, "param_groups": [...]}
    generator_states: dict[str, torch.Tensor]
    sampler_state: dict[str, torch.Tensor]
    device_type: str = "cpu"
    history: dict[str, list[float]] = field(default_factory=dict)
    probe_history: list[dict] = field(default_factory=list)
    data_box: tuple[list[float], list[float]] | None = None  # vector data: x0 clamp for sampling

    def build_diffusion(self) -> GaussianDiffusion:
        """The diffusion the model was trained with."""
        return diffusion_from_config(self.config, self.data_kind)

    def build_model(self, ema: bool = True, device="cpu") -> nn.Module:
        """The network with the EMA (or raw) weights, frozen, in eval mode on `device`."""
        model = _empty_model(self)
        state = self.ema_state if ema else self.model_state
        _check_state_matches(self.path, model.state_dict(), state, "ema" if ema else "model")
        model.load_state_dict(state)
        model.requires_grad_(False)
        return model.to(device).eval()


# ---------------------------------------------------------------------- saving
def save_checkpoint(path, trainer: Trainer) -> None:
    """Write `trainer`'s full state to `path` atomically (see module docstring)."""
    path = Path(path)
    tensors = {}
    tensors.update(_prefixed("model", trainer.model.state_dict()))
    tensors.update(_prefixed("ema", trainer.ema_model.state_dict()))
    optim = trainer.optimizer.state_dict()
    for index, state in optim["state"].items():
        for key, value in state.items():
            if not torch.is_tensor(value):
                value = torch.tensor(value)
            tensors[f"optim.{index}.{key}"] = _cpu_copy(value)
    tensors.update(_prefixed("rng", trainer.generator_states()))
    tensors.update(_prefixed("sampler", trainer.timestep_sampler.state_dict()))
    for key in HISTORY_KEYS:
        tensors[f"history.{key}"] = torch.tensor(trainer.history[key], dtype=torch.float64)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items()
               if k not in _OPTIMIZER_FLAGS} for group in optim["param_groups"]]
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "config": trainer.config.to_json(indent=None),
        "step": str(trainer.step),
        "dataset": str(trainer.dataset.name),
        "data_kind": "image" if trainer.is_image else "vector",
        "data_shape": json.dumps(list(trainer.data_shape)),
        "num_classes": json.dumps(trainer.num_classes),
        "optim_param_groups": json.dumps(groups),
        "probe_history": json.dumps([_probe_to_json(p) for p in trainer.probe_history]),
        "data_box": json.dumps(getattr(trainer, "data_box", None)),
        "device_type": trainer.device.type,
        "torch_version": torch.__version__,
    }
    metadata["checksum"] = _checksum(tensors)
    _write_atomically(path, tensors, metadata)


def _prefixed(prefix: str, state: dict) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{key}": _cpu_copy(value) for key, value in state.items()}


def _cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU copy that shares memory with nothing (safetensors refuses aliases)."""
    return tensor.detach().to("cpu", copy=True).contiguous()


def _write_atomically(path: Path, tensors: dict, metadata: dict) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise CheckpointError(path, f"cannot be written: the folder {directory} does not exist")
    if path.is_dir():
        raise CheckpointError(path, "cannot be written: it is a folder")
    try:
        write_atomically(path, lambda temp: save_file(tensors, str(temp), metadata=metadata),
                         errors=(SafetensorError,))
    except AtomicWriteError as exc:
        kept = ("the previous checkpoint there is unchanged" if exc.existed
                else "no checkpoint was written")
        raise CheckpointWriteError(path, f"cannot be written ({exc.problem}); {kept}") from None


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _probe_to_json(probe: dict) -> dict:
    out = {}
    for key, value in probe.items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


# ---------------------------------------------------------------------- loading
def load_checkpoint(path, device="cpu") -> Checkpoint:
    """Read and check a checkpoint file; CheckpointError names any problem."""
    path = Path(path)
    metadata, tensors = _read_file(path)
    meta = _parse_metadata(path, metadata)
    if metadata.get("checksum") != _checksum(tensors):
        raise CheckpointError(path, "is corrupt: its tensor data do not match the checksum "
                                    "written with it")
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        prefix, _, rest = name.partition(".")
        groups.setdefault(prefix, {})[rest] = tensor.to(device)
    for prefix in ("model", "ema"):
        if not groups.get(prefix):
            raise CheckpointError(path, f"holds no {prefix} weights ('{prefix}.*' tensors)")
    checkpoint = Checkpoint(
        path=str(path), format_version=meta["format_version"], config=meta["config"],
        step=meta["step"], dataset_name=meta["dataset"], data_kind=meta["data_kind"],
        data_shape=meta["data_shape"], num_classes=meta["num_classes"],
        model_state=groups["model"], ema_state=groups["ema"],
        optimizer_state=_optimizer_state(path, groups.get("optim", {}), meta["optim_param_groups"]),
        generator_states={k: v.cpu() for k, v in groups.get("rng", {}).items()},
        sampler_state=groups.get("sampler", {}), device_type=meta["device_type"],
        history=_history(groups.get("history", {})), probe_history=meta["probe_history"],
        data_box=meta["data_box"],
    )
    expected = _empty_model(checkpoint).state_dict()
    _check_state_matches(path, expected, checkpoint.model_state, "model")
    _check_state_matches(path, expected, checkpoint.ema_state, "ema")
    return checkpoint


def _read_file(path: Path):
    if not path.exists():
        raise CheckpointError(path, "does not exist")
    if path.is_dir():
        raise CheckpointError(path, "is a folder, not a checkpoint file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:  # safetensors reports EACCES as "No such file"
            handle.read(1)
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read ({exc.strerror or exc})") from None
    if size == 0:
        raise CheckpointError(path, "is empty (0 bytes)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != FORMAT_NAME:
                raise CheckpointError(path, "is a safetensors file but not a Diffusion Explorer "
                                            "checkpoint (its metadata lack format="
                                            f"{FORMAT_NAME!r})")
            _check_version(path, metadata)
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except CheckpointError:
        raise
    except PermissionError as exc:
        raise CheckpointError(path, f"cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # safetensors raises its own SafetensorError and others
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(path, f"is not a readable safetensors file; it may be truncated or "
                                    f"corrupt ({detail})") from None
    return metadata, tensors


def _check_version(path: Path, metadata: dict) -> None:
    try:
        version = int(metadata.get("format_version", ""))
    except ValueError:
        raise CheckpointError(path, f"has an invalid format_version "
                                    f"{metadata.get('format_version')!r}") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(path, f"was written by a newer version (format {version}; this "
                                    f"version reads up to {FORMAT_VERSION}); update the program")
    if version < 1:
        raise CheckpointError(path, f"has an invalid format_version {version}")


def _parse_metadata(path: Path, metadata: dict) -> dict:
    def field_json(name):
        if name not in metadata:
            raise CheckpointError(path, f"lacks the metadata field {name!r}")
        try:
            return json.loads(metadata[name])
        except json.JSONDecodeError:
            raise CheckpointError(path, f"has invalid JSON in the metadata field {name!r}") from None

    try:
        config = ExperimentConfig.from_dict(field_json("config")).validate()
    except ConfigError as exc:
        raise CheckpointError(path, f"holds an invalid config ({exc})") from None
    data_shape = field_json("data_shape")
    num_classes = field_json("num_classes")
    step = field_json("step")
    if not (isinstance(data_shape, list) and data_shape and all(isinstance(s, int) and s > 0 for s in data_shape)):
        raise CheckpointError(path, f"has an invalid data_shape {data_shape!r}")
    if num_classes is not None and not (isinstance(num_classes, int) and num_classes > 0):
        raise CheckpointError(path, f"has an invalid num_classes {num_classes!r}")
    if not isinstance(step, int) or step < 0:
        raise CheckpointError(path, f"has an invalid step {step!r}")
    data_kind = metadata.get("data_kind")
    if data_kind not in ("image", "vector"):
        raise CheckpointError(path, f"has an invalid data_kind {data_kind!r}")
    probes = field_json("probe_history")
    groups = field_json("optim_param_groups")
    if not isinstance(probes, list) or not isinstance(groups, list):
        raise CheckpointError(path, "has malformed probe_history or optim_param_groups metadata")
    data_box = field_json("data_box") if "data_box" in metadata else None  # absent in older files
    if data_box is not None and not _valid_box(data_box, math.prod(data_shape)):
        raise CheckpointError(path, "has an invalid data_box (expected null or two lists of "
                              f"{math.prod(data_shape)} finite numbers, low <= high)")
    return {
        "data_box": None if data_box is None else (data_box[0], data_box[1]),
        "format_version": int(metadata["format_version"]), "config": config, "step": step,
        "dataset": metadata.get("dataset", config.train.dataset), "data_kind": data_kind,
        "data_shape": tuple(data_shape), "num_classes": num_classes,
        "optim_param_groups": groups, "device_type": metadata.get("device_type", "cpu"),
        "probe_history": [_probe_from_json(p) for p in probes],
    }


def _valid_box(box, dim: int) -> bool:
    if not (isinstance(box, list) and len(box) == 2):
        return False
    low, high = box
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  for side in (low, high) if isinstance(side, list) for v in side)
    return (isinstance(low, list) and isinstance(high, list) and len(low) == len(high) == dim
            and numbers and all(a <= b for a, b in zip(low, high, strict=True)))


def _probe_from_json(probe: dict) -> dict:
    out = dict(probe)
    for key in _PROBE_ARRAYS:
        if out.get(key) is not None:
            out[key] = np.asarray(out[key], dtype=np.int64 if key == "t" else np.float64)
    return out


def _optimizer_state(path: Path, tensors: dict[str, torch.Tensor], groups: list) -> dict:
    state: dict[int, dict] = {}
    for name, tensor in tensors.items():
        index, _, key = name.partition(".")
        if not index.isdigit() or not key:
            raise CheckpointError(path, f"has a malformed optimizer tensor 'optim.{name}'")
        state.setdefault(int(index), {})[key] = tensor.cpu() if key == "step" else tensor
    for group in groups:
        if not isinstance(group, dict):
            raise CheckpointError(path, "has malformed optim_param_groups metadata")
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    return {"state": state, "param_groups": groups}


def _history(tensors: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    history = {}
    for key in HISTORY_KEYS:
        values = tensors.get(key)
        history[key] = [] if values is None else values.double().cpu().tolist()
    history["step"] = [int(s) for s in history["step"]]
    return history


def _empty_model(checkpoint: Checkpoint) -> nn.Module:
    """The checkpoint's architecture with uninitialised weights."""
    try:
        return model_from_config(checkpoint.config, checkpoint.data_shape,
                                 checkpoint.num_classes)
    except (ConfigError, ValueError) as exc:
        raise CheckpointError(checkpoint.path, f"describes a model that cannot be built ({exc})") from None


def _check_state_matches(path, expected: dict, state: dict, what: str) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
             for k in sorted(set(expected) & set(state)) if state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {_few(unexpected)}")
        if wrong:
            parts.append(f"shapes differ: {_few(wrong)}")
        raise CheckpointError(path, f"its {what} weights do not match the architecture in its "
                                    f"config ({'; '.join(parts)})")


def _few(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# ---------------------------------------------------------------------- resuming
def restore_trainer(trainer: Trainer, checkpoint: Checkpoint) -> None:
    """Put the checkpoint's state into `trainer` (same model and diffusion settings).

    Everything is checked first, so on CheckpointError the trainer is unchanged. The
    generators are restored when the checkpoint was written on the same device type and
    the trainer runs alone (exact resume); otherwise (another device type, or several DDP
    ranks, which need different streams) they are re-seeded from the seed, rank and step.
    """
    path = checkpoint.path
    for section in ("model", "diffusion"):
        ours, theirs = getattr(trainer.config, section), getattr(checkpoint.config, section)
        if ours != theirs:
            diffs = [f"{k}: {getattr(theirs, k)!r} in the file, {getattr(ours, k)!r} here"
                     for k in vars(ours) if getattr(ours, k) != getattr(theirs, k)]
            raise CheckpointError(path, f"was trained with different {section} settings ({_few(diffs)})")
    if tuple(checkpoint.data_shape) != tuple(trainer.data_shape):
        raise CheckpointError(path, f"was trained on data of shape {tuple(checkpoint.data_shape)}, "
                                    f"the data set has shape {tuple(trainer.data_shape)}")
    if checkpoint.num_classes != trainer.num_classes:
        raise CheckpointError(path, f"was trained with num_classes={checkpoint.num_classes}, "
                                    f"this trainer has {trainer.num_classes}")
    _check_state_matches(path, trainer.model.state_dict(), checkpoint.model_state, "model")
    _check_state_matches(path, trainer.ema_model.state_dict(), checkpoint.ema_state, "ema")
    optimizer_state = _checked_optimizer_state(path, trainer, checkpoint.optimizer_state)
    sampler_state = trainer.timestep_sampler.state_dict()
    for key, value in sampler_state.items():
        saved = checkpoint.sampler_state.get(key)
        if saved is None or saved.shape != value.shape:
            raise CheckpointError(path, f"lacks or mis-sizes the timestep sampler state {key!r}")
    # generator states are rank 0's: other ranks, or another device type, re-seed instead
    same_device = checkpoint.device_type == trainer.device.type and trainer.world_size == 1
    current = trainer.generator_states()
    if same_device and any(key not in checkpoint.generator_states
                           or checkpoint.generator_states[key].shape != value.shape
                           for key, value in current.items()):
        raise CheckpointError(path, "lacks or mis-sizes the random generator states")

    trainer.model.load_state_dict(checkpoint.model_state)
    with trainer._ema_lock:
        trainer.ema_model.load_state_dict(checkpoint.ema_state)
    trainer.optimizer.load_state_dict(optimizer_state)
    trainer.timestep_sampler.load_state_dict(
        {k: checkpoint.sampler_state[k] for k in sampler_state})
    if same_device:
        trainer.set_generator_states(checkpoint.generator_states)
    else:
        trainer.reseed_generators(checkpoint.step)
    trainer.step = checkpoint.step
    trainer.history = {key: list(checkpoint.history.get(key, [])) for key in HISTORY_KEYS}
    trainer.probe_history = list(checkpoint.probe_history)
    if checkpoint.data_box is not None:  # the box of the data the model was trained on
        trainer.data_box = (list(checkpoint.data_box[0]), list(checkpoint.data_box[1]))


def _checked_optimizer_state(path, trainer: Trainer, saved: dict) -> dict:
    params = list(trainer.model.parameters())
    current_groups = trainer.optimizer.state_dict()["param_groups"]
    groups = saved.get("param_groups", [])
    if len(groups) != len(current_groups):
        raise CheckpointError(path, f"has {len(groups)} optimizer parameter groups, expected "
                                    f"{len(current_groups)}")
    merged_groups = []
    for ours, theirs in zip(current_groups, groups, strict=True):
        merged = dict(ours)
        merged.update({k: v for k, v in theirs.items() if k in ours and k not in _OPTIMIZER_FLAGS})
        merged_groups.append(merged)
    state = saved.get("state", {})
    for index, entry in state.items():
        if index >= len(params):
            raise CheckpointError(path, f"has optimizer state for parameter {index}, but the "
                                        f"model has {len(params)} parameters")
        for key in ("exp_avg", "exp_avg_sq"):
            if key in entry and entry[key].shape != params[index].shape:
                raise CheckpointError(path, f"optimizer state {key} of parameter {index} has shape "
                                            f"{tuple(entry[key].shape)}, the parameter "
                                            f"{tuple(params[index].shape)}")
        if not {"exp_avg", "exp_avg_sq", "step"} <= set(entry):
            raise CheckpointError(path, f"optimizer state of parameter {index} is incomplete")
    return {"state": state, "param_groups": merged_groups}


def trainer_from_checkpoint(path, device=None, dataset=None) -> Trainer:
    """A Trainer in the checkpoint's exact state (its data set is rebuilt unless given)."""
    checkpoint = load_checkpoint(path)
    trainer = Trainer(checkpoint.config, dataset=dataset, device=device)
    restore_trainer(trainer, checkpoint)
    return trainer

