"""Where a command's model comes from: a checkpoint's EMA network (`--checkpoint CKPT`), a
model trained elsewhere at the same flag (a diffusers pipeline or UNet folder, an
improved-diffusion .pt with `--model-flags`; core.interop), or, for a preset whose data are
a Gaussian mixture, the mixture's exact eps (`--preset NAME --exact`, core.exact: no
training, the sampler's own error alone). Shared by `sample`, `compare-samplers`,
`evaluate` and later commands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.cli.common import UsageError


@dataclass
class ModelSource:
    """model (eval mode), diffusion (unrespaced), data_shape, num_classes, data_box (the x0
    clamp of vector data or None), title (for pictures and reports), dataset() -> the data
    set it models (built on demand; for a model from elsewhere the one --dataset names),
    exact (the model is a mixture's exact eps), step (a checkpoint's training steps)."""

    model: object
    diffusion: object
    data_shape: tuple[int, ...]
    num_classes: int | None
    data_box: tuple | None
    title: str
    dataset: object
    exact: bool = False
    step: int | None = None          # training steps of a checkpoint (None: trained elsewhere)


def add_source(parser, what: str = "sample") -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--checkpoint", help=f"the model to {what} from: a checkpoint (its EMA "
                       "weights), a diffusers pipeline or UNet2DModel folder, or an "
                       "improved-/guided-diffusion .pt (with --model-flags)")
    group.add_argument("--preset", help="with --exact: a preset whose data are a Gaussian "
                       "mixture (e.g. toy-2d), sampled with the mixture's exact eps")
    parser.add_argument("--exact", action="store_true",
                        help="use the exact eps of the preset's mixture data instead of a "
                             "trained network (needs --preset)")
    add_foreign_flags(parser)


def add_foreign_flags(parser) -> None:
    """--model-flags and --dataset: for models trained elsewhere (core.interop)."""
    parser.add_argument("--model-flags", help="for an improved-/guided-diffusion .pt: its flags "
                        "as the pasted '--image_size 64 --num_channels 128 ...' text or a JSON "
                        "file (default: NAME.flags.json or flags.json beside the .pt)")
    parser.add_argument("--dataset", help="for a model trained elsewhere: the data it models (a "
                        "data-set name or a folder of images / CIFAR batches), where a command "
                        "needs data (evaluate, Analytic-DPM's variance, the labs' scores)")


def load_source(args, device) -> ModelSource:
    """The model of --checkpoint, or of --preset with --exact (UsageError naming the flag
    when the combination or the preset does not fit)."""
    if getattr(args, "preset", None) is not None:
        if not args.exact:
            raise UsageError("--preset needs --exact (there is no trained network in a "
                             "preset); give --checkpoint to sample a trained model")
        return _exact_source(args.preset, device)
    if getattr(args, "exact", False):
        raise UsageError("--exact needs --preset NAME (a preset with Gaussian-mixture data)")
    from core.interop import detect_format
    from core.interop.opened import EXPLORER

    if detect_format(args.checkpoint) != EXPLORER:
        return _foreign_source(args, device)
    from core.checkpoint import load_checkpoint
    from core.cli.common import training_data

    for flag, value in (("--model-flags", getattr(args, "model_flags", None)),
                        ("--dataset", getattr(args, "dataset", None))):
        if value is not None:
            raise UsageError(f"{flag} is for models trained elsewhere; {args.checkpoint} is a "
                             "checkpoint of this explorer, which knows its own settings and data")
    checkpoint = load_checkpoint(args.checkpoint)
    return ModelSource(
        model=checkpoint.build_model(ema=True, device=device),
        diffusion=checkpoint.build_diffusion(), data_shape=tuple(checkpoint.data_shape),
        num_classes=checkpoint.num_classes, data_box=checkpoint.data_box,
        title=Path(args.checkpoint).name,
        dataset=lambda: training_data(args.checkpoint, checkpoint), step=checkpoint.step)


def _foreign_source(args, device) -> ModelSource:
    """A diffusers folder or an improved-diffusion .pt (core.interop.open_model)."""
    from core.interop import open_model

    opened = open_model(args.checkpoint, flags=getattr(args, "model_flags", None), device=device)
    return ModelSource(model=opened.model, diffusion=opened.diffusion,
                       data_shape=opened.data_shape, num_classes=opened.num_classes,
                       data_box=None, title=opened.title,
                       dataset=lambda: _named_data(getattr(args, "dataset", None), opened))


def _named_data(name: str | None, opened):
    """The --dataset of a model from elsewhere, at the model's image size and colour."""
    from core.data import get_dataset

    if name is None:
        raise UsageError(f"--dataset: {opened.title} was trained elsewhere, so name the data it "
                         "models (a data-set name or a folder of images or CIFAR batches)")
    channels, size = opened.data_shape[0], opened.data_shape[-1]
    data = get_dataset(name, image_size=size, grayscale=channels == 1)
    if tuple(data.shape) != tuple(opened.data_shape):
        raise UsageError(f"--dataset {name}: its items have shape {tuple(data.shape)}, the model "
                         f"takes {tuple(opened.data_shape)}")
    return data


def _exact_source(preset: str, device) -> ModelSource:
    from core.build import dataset_from_config, diffusion_from_config
    from core.exact import ExactEps
    from core.presets import load_preset
    from core.training import data_box

    config = load_preset(preset)
    data = dataset_from_config(config)
    if data.mixture is None:
        raise UsageError(f"--preset {preset}: its data ({config.train.dataset}) are not a "
                         "Gaussian mixture, so there is no exact eps; use --checkpoint")
    diffusion = diffusion_from_config(config, data.kind)
    model = ExactEps(data.mixture, diffusion.schedule).to(device).eval()
    return ModelSource(model=model, diffusion=diffusion, data_shape=tuple(data.shape),
                       num_classes=None, data_box=data_box(data.train),
                       title=f"{preset} (exact eps)", dataset=lambda: data, exact=True)


def load_noise(flag: str, path: str, shape: tuple[int, ...]):
    """An initial x_T from a .npy file (never unpickled), checked against `shape`."""
    import torch

    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{flag} {path}: cannot be read as a .npy array ({exc})") from None
    if tuple(array.shape) != tuple(shape):
        raise UsageError(f"{flag} {path}: holds an array of shape {tuple(array.shape)}, "
                         f"expected {tuple(shape)} (--n samples of the model's data shape)")
    if not np.issubdtype(array.dtype, np.floating) or not np.all(np.isfinite(array)):
        raise UsageError(f"{flag} {path}: must hold finite floating-point numbers")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
