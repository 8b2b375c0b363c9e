"""Recognise what a path holds and open it: the one entry point (`open_model`).

    a .safetensors file with the explorer's metadata   -> its own checkpoint (EMA weights)
    a folder with model_index.json                      -> a diffusers pipeline
    a folder with config.json                           -> a diffusers UNet2DModel
    a .pt / .pth / .bin / zip .ckpt file (or a         -> an improved-/guided-diffusion
        .safetensors without the explorer's metadata)       state dict, with its flags

Nothing is downloaded: a Hugging Face id or URL is refused with the command that fetches it.
"""

from __future__ import annotations

from pathlib import Path

from core.interop.errors import InteropError, local_path
from core.interop.opened import (
    DIFFUSERS_PIPELINE,
    DIFFUSERS_UNET,
    EXPLORER,
    IMPROVED,
    OpenedModel,
)


def detect_format(path) -> str:
    """Which format `path` holds (one of core.interop.opened.FORMATS): folders by their
    files, safetensors files by their metadata (the explorer's checkpoints carry its format
    name, whatever their suffix), torch files (.pt, .pth, .bin, a zip .ckpt) as state dicts.
    Any other file is taken for an explorer checkpoint, whose loader names its problem."""
    path = local_path(path)
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return DIFFUSERS_PIPELINE
        if (path / "config.json").is_file():
            return DIFFUSERS_UNET
        raise InteropError(path, "is a folder without model_index.json (a diffusers pipeline) or "
                                 "config.json (a diffusers UNet2DModel)")
    if path.name in ("model_index.json", "config.json"):
        return detect_format(path.parent)
    metadata = _safetensors_metadata(path)
    if metadata is not None:
        return EXPLORER if metadata.get("format") == _explorer_format() else IMPROVED
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth", ".bin") or (suffix == ".ckpt" and _is_zip(path)):
        return IMPROVED
    # anything else is taken for a checkpoint of this explorer, whose loader says what is
    # wrong with it in its own words (empty, truncated, not safetensors, ...)
    return EXPLORER


def _safetensors_metadata(path: Path) -> dict | None:
    """The metadata of a readable safetensors file, else None."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return handle.metadata() or {}
    except Exception:  # not safetensors (or unreadable): the caller decides by the name
        return None


def _explorer_format() -> str:
    from core.checkpoint import FORMAT_NAME

    return FORMAT_NAME


def _is_zip(path: Path) -> bool:
    """torch.save's files are zip archives."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def open_model(path, flags=None, device="cpu", ema: bool = True,
               guess_flags: bool = False) -> OpenedModel:
    """The model at `path` as the explorer's network and diffusion (see OpenedModel).

    flags: for an improved-diffusion state dict, its flags as a dict, a JSON file or the
    pasted `--flag value` text (None: NAME.flags.json or flags.json beside the file; with
    guess_flags=True, else, the flags read off the tensor shapes, marked as guessed).
    device: where the network goes. ema: for the explorer's checkpoints, the EMA weights
    (else the raw ones). Raises InteropError (a ValueError) for foreign files and
    core.checkpoint.CheckpointError for the explorer's own, each naming the file and, where
    one is at fault, the key, flag or tensor.
    """
    kind = detect_format(path)
    path = local_path(path)
    if path.name in ("model_index.json", "config.json"):
        path = path.parent
    if flags is not None and kind != IMPROVED:
        raise InteropError("--model-flags", f"flags are for improved-diffusion state dicts; "
                                            f"{path} is a {kind}")
    if kind == EXPLORER:
        return _open_checkpoint(path, device, ema)
    if kind == IMPROVED:
        from core.interop.improved import open_improved

        return open_improved(path, flags, device, guess=guess_flags)
    from core.interop.diffusers_folder import open_diffusers

    return open_diffusers(path, device)


def _open_checkpoint(path: Path, device, ema: bool) -> OpenedModel:
    from core.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(path)
    return OpenedModel(
        model=checkpoint.build_model(ema=ema, device=device),
        diffusion=checkpoint.build_diffusion(), config=checkpoint.config,
        data_shape=tuple(checkpoint.data_shape), num_classes=checkpoint.num_classes,
        format=EXPLORER, path=str(path),
        mapped=[f"trained here on {checkpoint.dataset_name!r} for {checkpoint.step} steps; "
                f"{'EMA' if ema else 'raw'} weights"],
        checkpoint=checkpoint, data_box=checkpoint.data_box)
