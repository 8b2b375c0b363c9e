"""Open a diffusers folder: a DDPM/DDIM pipeline (model_index.json, unet/, scheduler/) or a
bare UNet2DModel folder (config.json + weights).

Weights: diffusion_pytorch_model.safetensors (read with safetensors), else .bin (torch.load
with weights_only=True), sharded ones through their .index.json, a variant such as .fp16
when it is the only one. A bare UNet folder takes the scheduler of the pipeline around it
when there is one, else diffusers' DDPMScheduler defaults (said in the notes). A folder
this explorer exported holds explorer_config.json beside the UNet's config: it says that
the class embedding's last row is the null class and restores the exported settings.
"""

from __future__ import annotations

from pathlib import Path

from core.build import diffusion_from_config
from core.config import ConfigError, ExperimentConfig
from core.interop import diffusers_unet
from core.interop.convert import load_weights, same_network
from core.interop.diffusers_scheduler import spec_from_scheduler
from core.interop.errors import InteropError
from core.interop.opened import (
    DIFFUSERS_PIPELINE,
    DIFFUSERS_UNET,
    OpenedModel,
    experiment_config,
)
from core.interop.weights import read_json, read_safetensors, read_torch_file

WEIGHTS = "diffusion_pytorch_model"
SIDECAR = "explorer_config.json"
SIDECAR_FORMAT = "diffusion-explorer-export"


def is_diffusers_folder(folder: Path) -> bool:
    return (folder / "model_index.json").is_file() or (folder / "config.json").is_file()


def open_diffusers(folder: Path, device="cpu") -> OpenedModel:
    """The pipeline or UNet folder as an OpenedModel (InteropError naming the file, key and
    value of anything the explorer cannot represent; nothing is built before the checks)."""
    kind, unet_dir, scheduler_file, notes = _layout(folder)
    config_file = unet_dir / "config.json"
    sidecar = _sidecar(unet_dir, notes)
    spec = diffusers_unet.spec_from_config(read_json(config_file), config_file,
                                           null_class_row=bool(sidecar.get("null_class_row")))
    if scheduler_file is not None:
        scheduler = spec_from_scheduler(read_json(scheduler_file), scheduler_file, spec.learn_sigma)
    else:
        scheduler = spec_from_scheduler({}, folder, spec.learn_sigma)
        notes.append("no scheduler config: diffusers' DDPMScheduler defaults (linear betas "
                     "1e-4 .. 0.02, T = 1000, epsilon, fixed_small)")
    state, weights_file, weight_notes = read_unet_weights(unet_dir)
    model, dtype_notes = load_weights(
        spec.model, spec.data_shape, spec.num_classes, spec.learn_sigma, state,
        diffusers_unet.naming(state.keys(), spec.null_class_row), weights_file, device)
    config = experiment_config(spec.model, scheduler.diffusion, spec.data_shape,
                               spec.num_classes, folder.resolve().name)
    config = _restored(config, sidecar, spec, notes)
    return OpenedModel(
        model=model, diffusion=diffusion_from_config(config, "image"), config=config,
        data_shape=spec.data_shape, num_classes=spec.num_classes, format=kind, path=str(folder),
        mapped=spec.mapped + scheduler.mapped,
        notes=notes + spec.notes + scheduler.notes + weight_notes + dtype_notes)


def _layout(folder: Path) -> tuple[str, Path, Path | None, list[str]]:
    """(format, the UNet's folder, the scheduler config or None, notes)."""
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        if not (folder / "config.json").is_file():
            raise InteropError(folder, "is neither a diffusers pipeline folder (model_index.json) "
                                       "nor a UNet2DModel folder (config.json)")
        around = folder.parent / "scheduler" / "scheduler_config.json"
        if (folder.parent / "model_index.json").is_file() and around.is_file():
            return DIFFUSERS_UNET, folder, around, [f"scheduler from {around}"]
        return DIFFUSERS_UNET, folder, None, []
    index = read_json(index_file)
    for key, value in index.items():
        if key.startswith("_") or key in ("unet", "scheduler") or value in (None, [None, None]):
            continue
        raise InteropError(index_file, f"component {key!r} ({_class_of(value)}) is not supported: "
                                       "the explorer opens pixel-space pipelines made of a "
                                       "UNet2DModel and a scheduler (DDPMPipeline, DDIMPipeline)")
    if _class_of(index.get("unet")) != "UNet2DModel":
        raise InteropError(index_file, f"unet {index.get('unet')!r} is not supported (supported: "
                                       "['diffusers', 'UNet2DModel'])")
    unet_dir = folder / "unet"
    if not (unet_dir / "config.json").is_file():
        raise InteropError(unet_dir / "config.json", "is missing (the pipeline's UNet config)")
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    if "scheduler" in index and not scheduler_file.is_file():
        raise InteropError(scheduler_file, "is missing (the pipeline's scheduler config)")
    notes = [] if index.get("_class_name") in ("DDPMPipeline", "DDIMPipeline") else [
        f"pipeline {index.get('_class_name')!r}: its UNet and scheduler are used"]
    return DIFFUSERS_PIPELINE, unet_dir, scheduler_file if scheduler_file.is_file() else None, notes


def _class_of(value) -> str:
    return str(value[1]) if isinstance(value, (list, tuple)) and len(value) == 2 else repr(value)


def read_unet_weights(unet_dir: Path) -> tuple[dict, Path, list[str]]:
    """(state dict, the file it came from, notes) of a UNet folder."""
    for suffix, reader in ((".safetensors", read_safetensors), (".bin", read_torch_file)):
        single = unet_dir / f"{WEIGHTS}{suffix}"
        if single.is_file():
            return reader(single), single, []
        index_file = unet_dir / f"{WEIGHTS}{suffix}.index.json"
        if index_file.is_file():
            return _sharded(index_file, reader), index_file, []
    variants = sorted(p for p in unet_dir.glob(f"{WEIGHTS}.*.safetensors")) + sorted(
        p for p in unet_dir.glob(f"{WEIGHTS}.*.bin"))
    if len(variants) == 1:
        reader = read_safetensors if variants[0].suffix == ".safetensors" else read_torch_file
        return reader(variants[0]), variants[0], [f"weights from the variant {variants[0].name}"]
    found = ", ".join(p.name for p in variants) or "none"
    raise InteropError(unet_dir, f"holds no single weights file {WEIGHTS}.safetensors or "
                                 f"{WEIGHTS}.bin (variants found: {found})")


def _sharded(index_file: Path, reader) -> dict:
    weight_map = read_json(index_file).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise InteropError(index_file, "has no weight_map")
    state = {}
    for shard in sorted(set(map(str, weight_map.values()))):
        path = index_file.parent / shard
        if Path(shard).name != shard or not path.is_file():
            raise InteropError(index_file, f"names the shard {shard!r}, which is not in its folder")
        state.update(reader(path))
    return state


def _sidecar(unet_dir: Path, notes: list[str]) -> dict:
    path = unet_dir / SIDECAR
    if not path.is_file():
        return {}
    data = read_json(path)
    if data.get("format") != SIDECAR_FORMAT:
        notes.append(f"{path.name} is not an explorer export record and is ignored")
        return {}
    return data


def _restored(config: ExperimentConfig, sidecar: dict, spec, notes: list[str]) -> ExperimentConfig:
    """The exported settings when they describe the same network and diffusion."""
    if "config" not in sidecar:
        return config
    try:
        saved = ExperimentConfig.from_dict(sidecar["config"])
    except ConfigError as exc:
        notes.append(f"{SIDECAR} holds unusable settings ({exc}); they are ignored")
        return config
    same_diffusion = all(getattr(saved.diffusion, key) == getattr(config.diffusion, key) for key
                         in ("schedule", "timesteps", "mean_type", "variance_type"))
    if not same_diffusion or not same_network(saved.model, config.model, spec.data_shape,
                                              spec.num_classes, spec.learn_sigma):
        notes.append(f"{SIDECAR} describes another model than config.json (edited after the "
                     "export?); config.json wins")
        return config
    notes.append(f"settings of the exported run restored from {SIDECAR}")
    return saved
