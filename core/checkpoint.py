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
loading raises CheckpointError naming the file and the field or tensor, before anything is
changed or built: core.checkpoint_checks bounds every metadata field, compares the
architecture with the stored tensors on the meta device and refuses non-finite weights.
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

import core.checkpoint_checks as checks
from core.atomic_write import AtomicWriteError, write_atomically
from core.build import diffusion_from_config, model_from_config
from core.checkpoint_checks import Invalid
from core.config import ConfigError, ExperimentConfig
from core.diffusion import GaussianDiffusion
from core.training import HISTORY_KEYS, Trainer

FORMAT_NAME = "diffusion-explorer-checkpoint"
FORMAT_VERSION = 1
_OPTIMIZER_FLAGS = {"params", "fused", "foreach", "capturable", "differentiable", "decoupled_weight_decay"}


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
        """The network with the EMA (or raw) weights, frozen, in eval mode on `device`.
        The state is checked against the architecture on the meta device first, so nothing
        is allocated for a config that does not fit the weights."""
        state = self.ema_state if ema else self.model_state
        meta = {"config": self.config, "data_shape": self.data_shape,
                "num_classes": self.num_classes}
        try:
            _check_matches(self.path, _meta_model(meta).state_dict(), state,
                           "ema" if ema else "model")
            model = _build_model(self.config, self.data_shape, self.num_classes)
        except Invalid as exc:
            raise CheckpointError(self.path, str(exc)) from None
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
    """Read and check a checkpoint file; CheckpointError names any problem.

    Every metadata field and tensor is checked (core.checkpoint_checks) before anything is
    built from it: the architecture its config describes is compared with the stored
    tensors on the `meta` device, so a config or num_classes that does not fit the file
    allocates nothing; weights must be finite."""
    path = Path(path)
    metadata, tensors = _read_file(path)
    try:
        meta = _parse_metadata(metadata)
        if metadata.get("checksum") != _checksum(tensors):
            raise Invalid("is corrupt: its tensor data do not match the checksum written with it")
        groups = checks.group_tensors(tensors)
        for prefix in ("model", "ema"):
            if not groups.get(prefix):
                raise Invalid(f"holds no {prefix} weights ('{prefix}.*' tensors)")
        architecture = _meta_model(meta)
        checks.check_state(architecture.state_dict(), groups["model"], "model")
        checks.check_state(architecture.state_dict(), groups["ema"], "ema")
        config = meta["config"]
        checks.check_finite("model", groups["model"])
        checks.check_finite("ema", groups["ema"])
        checks.check_optimizer(groups.get("optim", {}), list(architecture.parameters()))
        checks.check_rng(groups.get("rng", {}), meta["device_type"])
        checks.check_sampler(groups.get("sampler", {}), config.diffusion.timestep_sampler,
                             config.diffusion.timesteps)
        history = checks.check_history(groups.get("history", {}))
    except Invalid as exc:
        raise CheckpointError(path, str(exc)) from None
    on_device = {prefix: {k: v.to(device) for k, v in group.items()}
                 for prefix, group in groups.items() if prefix in ("model", "ema", "sampler")}
    return Checkpoint(
        path=str(path), format_version=meta["format_version"], config=config,
        step=meta["step"], dataset_name=meta["dataset"], data_kind=meta["data_kind"],
        data_shape=meta["data_shape"], num_classes=meta["num_classes"],
        model_state=on_device["model"], ema_state=on_device["ema"],
        optimizer_state=_optimizer_state(groups.get("optim", {}), meta["optim_param_groups"],
                                         device),
        generator_states=dict(groups.get("rng", {})),
        sampler_state=on_device.get("sampler", {}), device_type=meta["device_type"],
        history=history, probe_history=meta["probe_history"], data_box=meta["data_box"],
    )


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
    text = metadata.get("format_version", "")
    try:
        version = int(text) if len(text) <= 9 else None
    except ValueError:
        version = None
    if version is None:
        raise CheckpointError(path, f"has an invalid format_version {checks.shown(text)}")
    if version > FORMAT_VERSION:
        raise CheckpointError(path, f"was written by a newer version (format {version}; this "
                                    f"version reads up to {FORMAT_VERSION}); update the program")
    if version < 1:
        raise CheckpointError(path, f"has an invalid format_version {version}")


def _parse_metadata(metadata: dict) -> dict:
    """Every metadata field, parsed and checked (Invalid names the field)."""
    try:
        config = ExperimentConfig.from_dict(checks.parse_json(metadata, "config")).validate()
    except ConfigError as exc:
        raise Invalid(f"holds an invalid config ({exc})") from None
    data_shape = checks.check_data(metadata.get("data_kind"),
                                   checks.parse_json(metadata, "data_shape"))
    box = checks.parse_json(metadata, "data_box") if "data_box" in metadata else None
    return {
        "format_version": int(metadata["format_version"]), "config": config,
        "step": checks.check_step(checks.parse_json(metadata, "step")),
        "dataset": checks.check_text("dataset", metadata.get("dataset", config.train.dataset)),
        "data_kind": metadata["data_kind"], "data_shape": data_shape,
        "num_classes": checks.check_num_classes(checks.parse_json(metadata, "num_classes"),
                                                config.train.class_conditional),
        "optim_param_groups": checks.check_param_groups(
            checks.parse_json(metadata, "optim_param_groups")),
        "device_type": checks.check_device_type(metadata.get("device_type", "cpu")),
        "probe_history": checks.check_probes(checks.parse_json(metadata, "probe_history"),
                                             config.diffusion.timesteps),
        "data_box": checks.check_data_box(box, math.prod(data_shape)),  # absent in older files
    }


def _optimizer_state(tensors: dict[str, torch.Tensor], groups: list, device) -> dict:
    """torch's optimizer state dict from the checked optim.<i>.<key> tensors; the moments on
    `device`, the step counts on the CPU (as torch keeps them)."""
    state: dict[int, dict] = {}
    for name, tensor in tensors.items():
        index, _, key = name.partition(".")
        state.setdefault(int(index), {})[key] = tensor if key == "step" else tensor.to(device)
    for group in groups:
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    return {"state": state, "param_groups": groups}


def _meta_model(meta: dict) -> nn.Module:
    """The architecture of the checked metadata on the meta device: shapes, no storage."""
    with torch.device("meta"):
        return _build_model(meta["config"], meta["data_shape"], meta["num_classes"])


def _build_model(config, data_shape, num_classes) -> nn.Module:
    try:
        return model_from_config(config, data_shape, num_classes)
    except (ConfigError, ValueError) as exc:
        raise Invalid(f"describes a model that cannot be built ({exc})") from None


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
            raise CheckpointError(path, f"was trained with different {section} settings "
                                        f"({checks.few(diffs)})")
    if tuple(checkpoint.data_shape) != tuple(trainer.data_shape):
        raise CheckpointError(path, f"was trained on data of shape {tuple(checkpoint.data_shape)}, "
                                    f"the data set has shape {tuple(trainer.data_shape)}")
    if checkpoint.num_classes != trainer.num_classes:
        raise CheckpointError(path, f"was trained with num_classes={checkpoint.num_classes}, "
                                    f"this trainer has {trainer.num_classes}")
    _check_matches(path, trainer.model.state_dict(), checkpoint.model_state, "model",
                   "this trainer")
    _check_matches(path, trainer.ema_model.state_dict(), checkpoint.ema_state, "ema",
                   "this trainer")
    optimizer_state = _checked_optimizer_state(path, trainer, checkpoint.optimizer_state)
    sampler_state = trainer.timestep_sampler.state_dict()
    for key, value in sampler_state.items():
        saved = checkpoint.sampler_state.get(key)
        if saved is None or saved.shape != value.shape or saved.dtype != value.dtype:
            raise CheckpointError(path, f"lacks or mis-sizes the timestep sampler state {key!r} "
                                        f"(expected {value.dtype} {tuple(value.shape)})")
    # generator states are rank 0's: other ranks, or another device type, re-seed instead
    same_device = checkpoint.device_type == trainer.device.type and trainer.world_size == 1
    if same_device:
        _check_generator_states(path, trainer, checkpoint.generator_states)

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


def _check_matches(path, expected: dict, state: dict, what: str,
                   against: str = "its config, data_shape and num_classes") -> None:
    try:
        checks.check_state(expected, state, what, against)
    except Invalid as exc:
        raise CheckpointError(path, str(exc)) from None


def _check_generator_states(path, trainer: Trainer, saved: dict[str, torch.Tensor]) -> None:
    """Each generator state of the trainer is in the file as uint8 of the same shape, and
    torch accepts it on the trainer's device (tried on a scratch generator)."""
    for key, value in trainer.generator_states().items():
        state = saved.get(key)
        if state is None:
            raise CheckpointError(path, f"lacks the random generator state rng.{key}")
        if state.dtype != torch.uint8 or state.shape != value.shape:
            raise CheckpointError(path, f"its tensor rng.{key} is {state.dtype} of shape "
                                        f"{tuple(state.shape)}; a generator state on "
                                        f"{trainer.device.type} is torch.uint8 of shape "
                                        f"{tuple(value.shape)}")
        try:
            checks.check_generator_state(f"rng.{key}", state, trainer.device)
        except Invalid as exc:
            raise CheckpointError(path, str(exc)) from None


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
            if key in entry and (entry[key].shape != params[index].shape
                                 or entry[key].dtype != params[index].dtype):
                raise CheckpointError(path, f"optimizer state {key} of parameter {index} is "
                                            f"{entry[key].dtype} {tuple(entry[key].shape)}, the "
                                            f"parameter {params[index].dtype} "
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

