"""Turn exceptions from core code into messages a user can read and act on."""

from __future__ import annotations

OOM_ADVICE = ("Out of memory. Try a smaller batch size or a smaller model size, "
              "or train on another device.")


# torch's CPU allocator: "can't allocate memory" (POSIX, "Cannot allocate memory" is ENOMEM),
# "not enough memory" (Windows); CUDA/MPS/C10: "out of memory"
_OOM_PHRASES = ("out of memory", "can't allocate memory", "cannot allocate memory",
                "not enough memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's CUDA/MPS/CPU out-of-memory errors and for a host MemoryError."""
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    text = str(exc).lower()
    return name == "OutOfMemoryError" or any(phrase in text for phrase in _OOM_PHRASES)


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
    if name in ("TrainingDiverged", "ConfigError", "DataError", "CheckpointError"):
        # core's messages already name the field or file, the problem and what to try
        return prefix + str(exc)
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return prefix + f"{exc.strerror or exc}{where}"
    return prefix + f"{name}: {exc}"
