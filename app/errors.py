"""Turn exceptions from core code into messages a user can read and act on."""

from __future__ import annotations

from core.oom import is_out_of_memory

__all__ = ["OOM_ADVICE", "describe_error", "is_out_of_memory", "release_cached_gpu_memory"]

OOM_ADVICE = ("Out of memory. Try a smaller batch size or a smaller model size, "
              "or train on another device.")


def release_cached_gpu_memory() -> None:
    """After an out-of-memory error: hand torch's cached blocks back so a retry can fit."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort only
        pass


def describe_error(exc: BaseException, action: str = "") -> str:
    """One readable paragraph: what failed, why, and what to try.

    `action` names what the user was doing ("Training", "Loading checkpoint").
    """
    prefix = f"{action} failed: " if action else ""
    name = type(exc).__name__
    if is_out_of_memory(exc):
        return prefix + OOM_ADVICE
    if name in ("TrainingDiverged", "ConfigError", "DataError", "CheckpointError",
                "CheckpointWriteError"):
        # core's messages already name the field or file, the problem and what to try
        return prefix + str(exc)
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return prefix + f"{exc.strerror or exc}{where}"
    return prefix + f"{name}: {exc}"
