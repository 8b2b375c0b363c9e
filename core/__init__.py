"""Diffusion Explorer's engine: noise schedules, DDPM / improved-DDPM math, entropy bounds,
models, data, training, checkpoints and sampling. Pure torch + numpy; never imports Qt."""

__version__ = "0.1.0"


def open_model(path, flags=None, device="cpu"):
    """Open any model the explorer reads as its own network and diffusion: a checkpoint of
    this explorer, a diffusers DDPM/DDIM pipeline or UNet2DModel folder, or an improved-/
    guided-diffusion .pt state dict with its `flags` (pasted `--flag value` text, a dict or
    a JSON file; default: flags.json beside the file). Nothing is downloaded.

        model, diffusion = core.open_model("ddpm-cifar10-32")
        eps = model(x, t)            # x (B, 3, 32, 32) in [-1, 1], t (B,) int64 timesteps

    Returns a core.interop.OpenedModel, which unpacks as (model, diffusion) and also holds
    the config, data_shape, num_classes and what was mapped (see core.interop). Raises
    core.interop.InteropError (a ValueError naming the file, key or flag) or
    core.checkpoint.CheckpointError."""
    from core.interop import open_model as open_any

    return open_any(path, flags=flags, device=device)
