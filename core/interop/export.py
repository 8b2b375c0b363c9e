"""Write a model as a diffusers pipeline folder that DDPMPipeline and DDIMPipeline load.

    DIR/unet/diffusion_pytorch_model.safetensors   the weights in diffusers' names (float32)
    DIR/unet/config.json                           UNet2DModel config (core.interop.diffusers_unet)
    DIR/unet/explorer_config.json                  the explorer's settings of the run, and that
                                                   the class embedding's last row is the null
                                                   class (diffusers ignores this file)
    DIR/scheduler/scheduler_config.json            DDPMScheduler: T, betas, prediction and
                                                   variance type; timestep_spacing "trailing"
    DIR/model_index.json                           DDPMPipeline: unet + scheduler, written last

Every file is written atomically (core.atomic_write) and model_index.json last, so an
interrupted export never leaves a folder that loads as a pipeline. With the same initial
noise, diffusers' DDIMPipeline (eta 0, use_clipped_model_output=True, its "trailing"
timesteps) and the explorer's DDIM on the "trailing" spacing give the same images.
Refused with the reason: vector data (an MLP: UNet2DModel holds image UNets only) and UNet
options diffusers lacks (core.interop.diffusers_unet.unet_config).
"""

from __future__ import annotations

import json
from pathlib import Path

from core.atomic_write import AtomicWriteError, write_atomically
from core.interop import diffusers_unet
from core.interop.convert import export_weights
from core.interop.diffusers_folder import SIDECAR, SIDECAR_FORMAT, WEIGHTS
from core.interop.diffusers_scheduler import scheduler_config
from core.interop.errors import InteropError
from core.interop.opened import OpenedModel

DIFFUSERS_VERSION = "0.30.0"   # written when diffusers is not installed (it reads older configs)


class ExportWriteError(OSError):
    """Writing the folder failed at run time (disk full, permissions): not a usage mistake."""


def export_diffusers(opened: OpenedModel, folder, force: bool = False) -> list[Path]:
    """Write `opened` as a DDPMPipeline folder at `folder` (which must not exist or be empty,
    unless force). Returns the files written. InteropError (nothing written) when the model
    cannot be a UNet2DModel or the folder is unsuitable; ExportWriteError when writing fails."""
    folder = Path(folder)
    source = opened.path
    if opened.data_kind != "image":
        raise InteropError(source, f"is a model of {opened.data_shape[0]}-D vectors (an MLP): "
                                   "diffusers' UNet2DModel holds image UNets only")
    if not hasattr(opened.model, "input_blocks"):
        raise InteropError(source, f"its network ({type(opened.model).__name__}) is not the "
                                   "explorer's UNet, which is what exports")
    _check_folder(folder, force)
    version = _diffusers_version()
    spec = diffusers_unet.UNetSpec(opened.config.model, opened.data_shape, opened.num_classes,
                                   opened.config.diffusion.learns_sigma, True)
    unet = diffusers_unet.unet_config(spec, opened.model, version, source)
    weights = export_weights(opened.model, diffusers_unet.naming(null_class_row=True))
    scheduler = scheduler_config(opened.config.diffusion, opened.diffusion.schedule.betas, version)
    sidecar = {"format": SIDECAR_FORMAT, "null_class_row": opened.num_classes is not None,
               "config": opened.config.to_dict(), "exported_from": str(source),
               "exported_format": opened.format}
    index = {"_class_name": "DDPMPipeline", "_diffusers_version": version,
             "scheduler": ["diffusers", "DDPMScheduler"], "unet": ["diffusers", "UNet2DModel"]}
    from safetensors.torch import save_file

    files = [
        (folder / "unet" / f"{WEIGHTS}.safetensors",
         lambda temp: save_file(weights, str(temp), metadata={"format": "pt"})),
        (folder / "unet" / SIDECAR, _json_writer(sidecar)),
        (folder / "unet" / "config.json", _json_writer(unet)),
        (folder / "scheduler" / "scheduler_config.json", _json_writer(scheduler)),
        (folder / "model_index.json", _json_writer(index)),
    ]
    for path, write in files:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, write, errors=(ValueError, RuntimeError))
        except (AtomicWriteError, OSError) as exc:
            problem = getattr(exc, "problem", None) or exc.strerror or str(exc)
            raise ExportWriteError(f"{path}: cannot be written ({problem}); the export is "
                                   "incomplete (model_index.json is written last)") from None
    return [path for path, _ in files]


def _check_folder(folder: Path, force: bool) -> None:
    parent = folder.parent if str(folder.parent) else Path(".")
    if not parent.is_dir():
        raise InteropError(folder, f"cannot be created: the folder {parent} does not exist")
    if folder.exists() and not folder.is_dir():
        raise InteropError(folder, "exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise InteropError(folder, "exists and is not empty; pass --force to write into it")


def _json_writer(data: dict):
    text = json.dumps(data, indent=2) + "\n"
    return lambda temp: Path(temp).write_text(text, encoding="utf-8")


def _diffusers_version() -> str:
    try:
        from importlib.metadata import version

        return version("diffusers")
    except Exception:  # not installed: any recent version reads these files
        return DIFFUSERS_VERSION
