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


def training_oom_advice(batch_size: int, parameters: int, micro_batch: int = 0,
                        checkpointing: bool = False, device: str = "") -> str:
    """What to do when training ran out of memory, naming what was in memory (the batch,
    the model's size) and the two aids that keep the batch: micro-batches (gradient
    accumulation, train.micro_batch) and activation checkpointing (model.checkpointing)."""
    where = f" on {device}" if device else ""
    text = (f"out of memory{where} with a batch of {batch_size:,} examples and a model of "
            f"{parameters / 1e6:.2f}M parameters. ")
    aids = []
    if not micro_batch or micro_batch >= batch_size:
        smaller = max(1, batch_size // 4)
        aids.append(f"set train.micro_batch to {smaller} (the same gradient from chunks of "
                    f"{smaller} examples: about a quarter of the activation memory)")
    if not checkpointing:
        aids.append("turn on model.checkpointing (res-block activations recomputed in the "
                    "backward pass: much less memory for ~30 % more compute)")
    aids.append("or lower train.batch_size or the model size (model.channels, model.hidden)")
    return text + "Try: " + "; ".join(aids) + "."
