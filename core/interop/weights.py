"""Reading weight files without running their code, and checking a state dict's names and
shapes against what an architecture expects.

safetensors files are read with safetensors; .bin / .pt / .pth / .ckpt files with
torch.load(weights_only=True), which unpickles tensors and plain containers only and
refuses anything that would run code. Every problem is an InteropError naming the file and,
for a state dict that does not fit, the first key at fault.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from core.interop.errors import InteropError

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, on the CPU."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError
        raise InteropError(path, f"is not a readable safetensors file ({_first_line(exc)})") from None


def read_torch_file(path: Path) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} dict saved with torch.save, loaded with weights_only=True (never
    unpickling code). A dict holding the state dict under "state_dict", "model" or "ema"
    (common training wrappers) is refused with the key to extract."""
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError (code refused), RuntimeError (not a torch file)
        raise InteropError(path, "cannot be read as tensors with torch.load(weights_only=True) "
                                 f"({_first_line(exc)})") from None
    if not isinstance(data, dict) or not data:
        raise InteropError(path, f"holds a {type(data).__name__}, not a state dict "
                                 "(a dict of parameter names to tensors)")
    not_tensors = [key for key, value in data.items() if not torch.is_tensor(value)]
    if not_tensors:
        key = not_tensors[0]
        nested = [k for k in ("state_dict", "model", "ema", "ema_model") if k in data
                  and isinstance(data[k], dict)]
        hint = (f"; the weights seem to be under {nested[0]!r}: save that dict alone"
                if nested else "")
        raise InteropError(path, f"is not a flat state dict: entry {str(key)!r} is a "
                                 f"{type(data[key]).__name__}, not a tensor{hint}")
    return {str(key): value for key, value in data.items()}


def read_json(path: Path) -> dict:
    """A JSON object from a file; InteropError naming the file otherwise."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InteropError(path, f"cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    except (ValueError, RecursionError) as exc:
        raise InteropError(path, f"is not valid JSON ({_first_line(exc)})") from None
    if not isinstance(data, dict):
        raise InteropError(path, f"must hold a JSON object, not a {type(data).__name__}")
    return data


def check_state(expected: dict[str, torch.Size], state: dict[str, torch.Tensor],
                source) -> list[str]:
    """The names and shapes of `state` against `expected` (name -> shape).

    InteropError naming the first missing key, then the first unexpected one, then the first
    of a wrong shape (with both shapes), and how many more there are. Floating-point tensors
    of another precision are accepted; returns a note when some were (they become float32).
    """
    missing = [key for key in expected if key not in state]
    extra = sorted(key for key in state if key not in expected)
    wrong = [key for key in expected if key in state
             and tuple(state[key].shape) != tuple(expected[key])]
    if missing:
        raise InteropError(source, f"the state dict lacks the key {missing[0]!r}"
                                   f"{_more(missing)} that the architecture needs")
    if extra:
        raise InteropError(source, f"the state dict has the unexpected key {extra[0]!r}"
                                   f"{_more(extra)} that the architecture does not use")
    if wrong:
        key = wrong[0]
        raise InteropError(source, f"the tensor {key!r} has shape {tuple(state[key].shape)}, "
                                   f"the architecture needs {tuple(expected[key])}{_more(wrong)}")
    not_float = [key for key, value in state.items() if not value.is_floating_point()]
    if not_float:
        raise InteropError(source, f"the tensor {not_float[0]!r} is {state[not_float[0]].dtype}, "
                                   "not floating point")
    dtypes = sorted({str(value.dtype).replace("torch.", "") for value in state.values()
                     if value.dtype != torch.float32})
    if dtypes:
        return [f"weights stored as {', '.join(dtypes)} were converted to float32"]
    return []


def check_finite(state: dict[str, torch.Tensor], source) -> None:
    """Refuse NaN or infinite weights, naming the first such tensor."""
    for key, value in state.items():
        if not torch.isfinite(value).all():
            raise InteropError(source, f"the tensor {key!r} holds NaN or infinite values")


def _more(keys: list[str]) -> str:
    return f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
