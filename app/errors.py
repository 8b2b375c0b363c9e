"""Turn exceptions from core code into messages a user can read and act on."""

from __future__ import annotations

import os

from app.field_labels import FIELD_LABELS, readable_error
from core.oom import is_out_of_memory, training_oom_advice

__all__ = ["OOM_ADVICE", "describe_error", "describe_training_error", "is_out_of_memory",
           "release_cached_gpu_memory"]

OOM_ADVICE = ("Out of memory. Try the memory aids of the form (Micro-batch: the same "
              "gradient from smaller chunks of the batch; Checkpointing: the UNet's "
              "activations recomputed instead of kept), a smaller batch size or a smaller "
              "model size, or train on another device.")
# the settings core.oom's advice names, as the form labels them
OOM_FIELDS = ("train.micro_batch", "model.checkpointing", "train.batch_size")
# what to do depends on what ran out of memory
OOM_ADVICE_BY_ACTION = {
    "Sampling": ("Out of memory. Draw fewer samples at once (the Samples field), or use a "
                 "smaller model size or a smaller batch size for the next run."),
}


def release_cached_gpu_memory() -> None:
    """After an out-of-memory error: hand torch's cached blocks back so a retry can fit."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort only
        pass


def out_of_memory_opening(path: str) -> str:
    """Advice for an out-of-memory error while a file is opened: the file is named and left
    as it was; the model, its optimizer state and its training data did not fit."""
    return (f"Out of memory while opening {path}: its model, optimizer state and training "
            "data did not fit in the device's memory. The file is unchanged. Close other "
            "programs or runs that use this memory (on a GPU: other CUDA processes) and open "
            "it again, or open it on a machine with more memory.")


def training_out_of_memory(trainer) -> str:
    """What to do when `trainer` ran out of memory, naming its batch, its model's size and
    the two memory aids by the form's labels (core.oom.training_oom_advice)."""
    cfg = trainer.config
    parameters = sum(p.numel() for p in trainer.model.parameters())
    text = training_oom_advice(cfg.train.batch_size, parameters, cfg.train.micro_batch,
                               cfg.model.checkpointing, str(trainer.device))
    for field in OOM_FIELDS:
        text = text.replace(field, f"“{FIELD_LABELS[field]}”")
    text = text.replace("the model size (model.channels, model.hidden)",
                        f"the “{FIELD_LABELS['model']}”")
    return text[:1].upper() + text[1:]


def describe_training_error(exc: BaseException, trainer=None) -> str:
    """describe_error for training; an out-of-memory error of a built trainer names the
    batch, the model size and the memory aids."""
    if trainer is not None and is_out_of_memory(exc):
        try:
            return "Training failed: " + training_out_of_memory(trainer)
        except Exception:  # noqa: BLE001 - advice only: fall back to the general text
            pass
    return describe_error(exc, "Training")


def describe_error(exc: BaseException, action: str = "", path: str | None = None) -> str:
    """One readable paragraph: what failed, why, and what to try.

    `action` names what the user was doing ("Training", "Sampling",
    "Opening run.safetensors"); `path` the file involved, if any (named in the advice for an
    out-of-memory error). A ConfigError of a form setting names the form's label.
    """
    prefix = f"{action} failed: " if action else ""
    name = type(exc).__name__
    if is_out_of_memory(exc):
        if path is not None:
            return prefix + out_of_memory_opening(path)
        return prefix + OOM_ADVICE_BY_ACTION.get(action, OOM_ADVICE)
    if name == "ConfigError":
        return prefix + readable_error(exc)
    if name in ("TrainingDiverged", "DataError", "CheckpointError", "CheckpointWriteError",
                "InteropError", "ExportWriteError"):
        # core's messages already name the field or file, the problem and what to try
        return prefix + str(exc)
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return prefix + f"{exc.strerror or exc}{where}"
    if path is not None and os.path.basename(path) not in str(exc):
        return prefix + f"{name}: {exc} ({path})"
    return prefix + f"{name}: {exc}"
