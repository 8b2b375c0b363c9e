"""Recognising out-of-memory errors from torch (CUDA, MPS, CPU) and the host."""

from __future__ import annotations

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
