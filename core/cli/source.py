"""Where a command's model comes from: a checkpoint's EMA network (`--checkpoint CKPT`), or,
for a preset whose data are a Gaussian mixture, the mixture's exact eps (`--preset NAME
--exact`, core.exact: no training, the sampler's own error alone). Shared by `sample`,
`compare-samplers` and later commands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.cli.common import UsageError


@dataclass
class ModelSource:
    """model (eval mode), diffusion (unrespaced), data_shape, num_classes, data_box (the x0
    clamp of vector data or None), title (for pictures and reports), dataset() -> the data
    set it models (built on demand), exact (the model is a mixture's exact eps)."""

    model: object
    diffusion: object
    data_shape: tuple[int, ...]
    num_classes: int | None
    data_box: tuple | None
    title: str
    dataset: object
    exact: bool = False


def add_source(parser, what: str = "sample") -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--checkpoint", help=f"the checkpoint to {what} from (its EMA weights)")
    group.add_argument("--preset", help="with --exact: a preset whose data are a Gaussian "
                       "mixture (e.g. toy-2d), sampled with the mixture's exact eps")
    parser.add_argument("--exact", action="store_true",
                        help="use the exact eps of the preset's mixture data instead of a "
                             "trained network (needs --preset)")


def load_source(args, device) -> ModelSource:
    """The model of --checkpoint, or of --preset with --exact (UsageError naming the flag
    when the combination or the preset does not fit)."""
    if args.preset is not None:
        if not args.exact:
            raise UsageError("--preset needs --exact (there is no trained network in a "
                             "preset); give --checkpoint to sample a trained model")
        return _exact_source(args.preset, device)
    if args.exact:
        raise UsageError("--exact needs --preset NAME (a preset with Gaussian-mixture data)")
    from core.checkpoint import load_checkpoint
    from core.cli.common import training_data

    checkpoint = load_checkpoint(args.checkpoint)
    return ModelSource(
        model=checkpoint.build_model(ema=True, device=device),
        diffusion=checkpoint.build_diffusion(), data_shape=tuple(checkpoint.data_shape),
        num_classes=checkpoint.num_classes, data_box=checkpoint.data_box,
        title=Path(args.checkpoint).name,
        dataset=lambda: training_data(args.checkpoint, checkpoint))


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
