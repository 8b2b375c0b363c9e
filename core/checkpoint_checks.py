"""What each metadata field and tensor of a checkpoint may hold: known names and types,
sizes bounded by constants or by the tensors the file really holds, finite weights.

Every check raises Invalid(problem) naming the field or tensor; core.checkpoint adds the
file's name (CheckpointError). Nothing here allocates more than the file holds: the
architecture is compared on the `meta` device (shapes only, no storage).
"""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from core.config import LIMITS
from core.data.formats import MAX_CLASSES
from core.data.images import MAX_IMAGE_SIZE
from core.timestep_sampler import make_timestep_sampler
from core.training import HISTORY_KEYS

MAX_STEP = int(LIMITS["train.steps"][1])          # no run takes more optimizer steps
MAX_VECTOR_DIM = 4096                              # vector data: (D,) with D up to this
IMAGE_CHANNELS = (1, 3)
DEVICE_TYPES = ("cpu", "cuda", "mps")
MAX_PARAM_GROUPS = 16
MAX_TEXT = 4096                                    # the dataset field: a name or a path
TENSOR_PREFIXES = ("model", "ema", "optim", "rng", "sampler", "history")
RNG_NAMES = ("step", "dropout")
OPTIMIZER_KEYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step")
PROBE_ARRAYS = ("t", "loss", "vlb", "eps_norm_sq", "analytic_variance", "v_mean", "v_std",
                "log_var_mean", "log_var_std")
MAX_PROBE_TIMESTEPS = int(LIMITS["train.probe_timesteps"][1])
_CPU_RNG_BYTES = torch.Generator().get_state().numel()
_STEP_DTYPES = (torch.float32, torch.float64, torch.int64, torch.int32)   # AdamW's step count


class Invalid(ValueError):
    """A metadata field or tensor is out of bounds; the message names it."""


def shown(value, limit: int = 40) -> str:
    """repr(value), cut to `limit` characters (a 4,000-digit number stays readable)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _field(name: str, problem: str) -> Invalid:
    return Invalid(f"has an invalid {name} in its metadata: {problem}")


# ---------------------------------------------------------------------- metadata
def parse_json(metadata: dict, name: str):
    """The JSON value of metadata[name]; Invalid when absent or not JSON (too deep nesting
    and integers of more than 4,300 digits included)."""
    if name not in metadata:
        raise Invalid(f"lacks the metadata field {name!r}")
    try:
        return json.loads(metadata[name])
    except RecursionError:
        raise _field(name, "its JSON is nested too deeply") from None
    except ValueError as exc:          # JSONDecodeError, and int() refusing huge numbers
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "integer string conversion" in detail:
            detail = "an integer of more than 4,300 digits"
        raise Invalid(f"has invalid JSON in the metadata field {name!r} ({detail[:80]})") \
            from None


def check_step(step) -> int:
    if not _is_int(step) or not 0 <= step <= MAX_STEP:
        raise _field("step", f"must be an integer from 0 to {MAX_STEP:,}, got {shown(step)}")
    return step


def check_text(name: str, value) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise _field(name, f"must be a text of 1 to {MAX_TEXT:,} characters, got {shown(value)}")
    return value


def check_data(kind, shape) -> tuple[int, ...]:
    """data_kind "image" with data_shape [C, H, W] (C 1 or 3, sides up to MAX_IMAGE_SIZE),
    or "vector" with [D] (D up to MAX_VECTOR_DIM)."""
    if kind not in ("image", "vector"):
        raise _field("data_kind", f"must be 'image' or 'vector', got {shown(kind)}")
    if not isinstance(shape, list) or not all(_is_int(s) for s in shape):
        raise _field("data_shape", f"must be a list of integers, got {shown(shape)}")
    if kind == "image":
        if (len(shape) != 3 or shape[0] not in IMAGE_CHANNELS
                or not all(1 <= s <= MAX_IMAGE_SIZE for s in shape[1:])):
            raise _field("data_shape", "image data need [channels (1 or 3), height, width] "
                         f"with sides from 1 to {MAX_IMAGE_SIZE}, got {shown(shape)}")
    elif len(shape) != 1 or not 1 <= shape[0] <= MAX_VECTOR_DIM:
        raise _field("data_shape", f"vector data need [D] with D from 1 to {MAX_VECTOR_DIM}, "
                     f"got {shown(shape)}")
    return tuple(shape)


def check_num_classes(num_classes, class_conditional: bool) -> int | None:
    if num_classes is None:
        if class_conditional:
            raise _field("num_classes", "is null, but the config trains class-conditionally")
        return None
    if not _is_int(num_classes) or not 1 <= num_classes <= MAX_CLASSES:
        raise _field("num_classes", f"must be null or an integer from 1 to {MAX_CLASSES:,}, "
                     f"got {shown(num_classes)}")
    if not class_conditional:
        raise _field("num_classes", f"is {num_classes}, but the config trains unconditionally")
    return num_classes


def check_device_type(value) -> str:
    if value not in DEVICE_TYPES:
        raise _field("device_type", f"must be one of {', '.join(DEVICE_TYPES)}, "
                     f"got {shown(value)}")
    return value


def check_param_groups(groups) -> list[dict]:
    """AdamW's settings per parameter group: lr, betas, eps, weight_decay in range, flags
    true/false; other keys (from another torch version) only as plain scalars."""
    if not isinstance(groups, list) or not 1 <= len(groups) <= MAX_PARAM_GROUPS:
        raise _field("optim_param_groups", f"must be a list of 1 to {MAX_PARAM_GROUPS} "
                     f"objects, got {shown(groups)}")
    for index, group in enumerate(groups):
        where = f"optim_param_groups[{index}]"
        if not isinstance(group, dict):
            raise _field(where, f"must be an object, got {shown(group)}")
        for key, value in group.items():
            problem = _group_value_problem(key, value)
            if problem:
                raise _field(f"{where}.{key}", f"{problem}, got {shown(value)}")
    return groups


def _finite(value) -> bool:
    return _is_number(value) and math.isfinite(value)


def _group_value_problem(key: str, value) -> str:
    if key in ("lr", "initial_lr", "weight_decay"):
        return "" if _finite(value) and 0 <= value <= 1 else "must be a number from 0 to 1"
    if key == "eps":
        return "" if _finite(value) and 0 < value <= 1 else "must be a number in (0, 1]"
    if key == "betas":
        ok = (isinstance(value, list) and len(value) == 2
              and all(_finite(b) and 0 <= b < 1 for b in value))
        return "" if ok else "must be two numbers in [0, 1)"
    if key in ("amsgrad", "maximize"):
        return "" if isinstance(value, bool) else "must be true or false"
    plain = value is None or isinstance(value, bool) or _finite(value) or (
        isinstance(value, str) and len(value) <= 64)
    return "" if plain else "must be a plain number, text, true, false or null"


def check_probes(probes, num_timesteps: int) -> list[dict]:
    """probe_history: a list of {"step": int, "t": [K ints in 0..T-1], and per array key of
    PROBE_ARRAYS null or K numbers}, K up to MAX_PROBE_TIMESTEPS. Returns numpy arrays."""
    if not isinstance(probes, list):
        raise _field("probe_history", f"must be a list, got {shown(probes)}")
    out = []
    for index, probe in enumerate(probes):
        where = f"probe_history[{index}]"
        if not isinstance(probe, dict):
            raise _field(where, f"must be an object, got {shown(probe)}")
        unknown = sorted(set(probe) - {"step", *PROBE_ARRAYS})
        if unknown:
            raise _field(where, f"has unknown keys {shown(unknown)}")
        if not _is_int(probe.get("step")) or not 0 <= probe["step"] <= MAX_STEP:
            raise _field(f"{where}.step", f"must be an integer from 0 to {MAX_STEP:,}, "
                         f"got {shown(probe.get('step'))}")
        t = probe.get("t")
        if (not isinstance(t, list) or not 1 <= len(t) <= MAX_PROBE_TIMESTEPS
                or not all(_is_int(v) and 0 <= v < num_timesteps for v in t)):
            raise _field(f"{where}.t", f"must be 1 to {MAX_PROBE_TIMESTEPS} timesteps from 0 "
                         f"to {num_timesteps - 1}, got {shown(t)}")
        entry = {"step": probe["step"], "t": np.asarray(t, dtype=np.int64)}
        for key in PROBE_ARRAYS[1:]:
            values = probe.get(key)
            if values is not None and not (isinstance(values, list) and len(values) == len(t)
                                           and all(_is_number(v) for v in values)):
                raise _field(f"{where}.{key}", f"must be null or {len(t)} numbers, "
                             f"got {shown(values)}")
            entry[key] = None if values is None else np.asarray(values, dtype=np.float64)
        out.append(entry)
    return out


def check_data_box(box, dim: int) -> tuple[list[float], list[float]] | None:
    if box is None:
        return None
    ok = isinstance(box, list) and len(box) == 2 and all(
        isinstance(side, list) and len(side) == dim and all(_finite(v) for v in side)
        for side in box) and all(a <= b for a, b in zip(box[0], box[1], strict=True))
    if not ok:
        raise _field("data_box", f"expected null or two lists of {dim} finite numbers, "
                     "low <= high")
    return box[0], box[1]


# ---------------------------------------------------------------------- tensors
def group_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """{"model": {...}, "ema": {...}, ...} by the prefix before the first dot; an unknown
    prefix is refused."""
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        prefix, _, rest = name.partition(".")
        if prefix not in TENSOR_PREFIXES or not rest:
            raise Invalid(f"holds an unexpected tensor {shown(name, 80)} (known: "
                          + ", ".join(f"{p}.*" for p in TENSOR_PREFIXES) + ")")
        groups.setdefault(prefix, {})[rest] = tensor
    return groups


def check_finite(prefix: str, state: dict[str, torch.Tensor]) -> None:
    """Every floating tensor of `state` holds finite numbers only."""
    for name in sorted(state):
        tensor = state[name]
        if not tensor.is_floating_point():
            continue
        if torch.isnan(tensor).any():
            raise Invalid(f"its tensor {prefix}.{name} holds NaN")
        if torch.isinf(tensor).any():
            raise Invalid(f"its tensor {prefix}.{name} holds infinity")


def check_state(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], what: str,
                against: str = "its config, data_shape and num_classes") -> None:
    """Same names, shapes and dtypes as `expected` (a state dict, e.g. on the meta device,
    of the architecture that `against` describes)."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    common = sorted(set(expected) & set(state))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
             for k in common if state[k].shape != expected[k].shape]
    types = [f"{k} {state[k].dtype} vs {expected[k].dtype}"
             for k in common if state[k].dtype != expected[k].dtype]
    if missing or unexpected or wrong or types:
        parts = []
        if missing:
            parts.append(f"missing {few(missing)}")
        if unexpected:
            parts.append(f"unexpected {few(unexpected)}")
        if wrong:
            parts.append(f"shapes differ: {few(wrong)}")
        if types:
            parts.append(f"dtypes differ: {few(types)}")
        raise Invalid(f"its {what} weights do not match the architecture of {against} "
                      f"({'; '.join(parts)})")


def few(items: list[str], limit: int = 3) -> str:
    shown_items = ", ".join(items[:limit])
    return shown_items + (f" and {len(items) - limit} more" if len(items) > limit else "")


def check_rng(states: dict[str, torch.Tensor], device_type: str) -> None:
    """rng.step / rng.dropout: 1-D uint8 generator states; CPU ones of the CPU generator's
    size and accepted by it."""
    unknown = sorted(set(states) - set(RNG_NAMES))
    if unknown:
        raise Invalid(f"holds an unexpected generator state rng.{unknown[0]} "
                      f"(known: {', '.join('rng.' + n for n in RNG_NAMES)})")
    for name, state in sorted(states.items()):
        if state.dtype != torch.uint8 or state.ndim != 1 or state.numel() == 0:
            raise Invalid(f"its tensor rng.{name} must be a 1-D torch.uint8 generator state, "
                          f"got {state.dtype} of shape {tuple(state.shape)}")
        if device_type == "cpu":
            if state.numel() != _CPU_RNG_BYTES:
                raise Invalid(f"its tensor rng.{name} holds {state.numel()} bytes, a CPU "
                              f"generator state has {_CPU_RNG_BYTES}")
            check_generator_state(f"rng.{name}", state, "cpu")


def check_generator_state(name: str, state: torch.Tensor, device) -> None:
    """torch accepts `state` for a generator on `device` (tried on a scratch generator)."""
    try:
        torch.Generator(device=device).set_state(state)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise Invalid(f"its tensor {name} is not a valid generator state "
                      f"({str(exc).splitlines()[0][:80]})") from None


def check_history(tensors: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    """history.<key> for keys of HISTORY_KEYS: 1-D float64 of one length; the steps finite
    integers from 0 to MAX_STEP. Missing keys are empty lists (older files)."""
    unknown = sorted(set(tensors) - set(HISTORY_KEYS))
    if unknown:
        raise Invalid(f"holds an unexpected history tensor history.{unknown[0]}")
    lengths = set()
    for key, values in tensors.items():
        if values.dtype != torch.float64 or values.ndim != 1:
            raise Invalid(f"its tensor history.{key} must be 1-D float64, got {values.dtype} "
                          f"of shape {tuple(values.shape)}")
        lengths.add(values.numel())
    if len(lengths) > 1:
        raise Invalid(f"its history tensors differ in length ({sorted(lengths)})")
    steps = tensors.get("step")
    if steps is not None and steps.numel() and not bool(
            (torch.isfinite(steps) & (steps >= 0) & (steps <= MAX_STEP)
             & (steps == steps.round())).all()):
        raise Invalid(f"its tensor history.step must hold integers from 0 to {MAX_STEP:,}")
    history = {key: ([] if key not in tensors else tensors[key].cpu().tolist())
               for key in HISTORY_KEYS}
    history["step"] = [int(s) for s in history["step"]]
    return history


def check_sampler(state: dict[str, torch.Tensor], name: str, num_timesteps: int) -> None:
    """The timestep sampler's tensors: the names, shapes and dtypes a fresh sampler of the
    config has, finite, counts non-negative."""
    expected = make_timestep_sampler(name, num_timesteps, "cpu").state_dict()
    for key in sorted(set(state) | set(expected)):
        value, fresh = state.get(key), expected.get(key)
        if fresh is None:
            raise Invalid(f"holds a tensor sampler.{key} that the {name} timestep sampler "
                          "does not have")
        if value is None:
            raise Invalid(f"lacks the timestep sampler tensor sampler.{key}")
        if value.dtype != fresh.dtype or value.shape != fresh.shape:
            raise Invalid(f"its tensor sampler.{key} has {value.dtype} {tuple(value.shape)}, "
                          f"expected {fresh.dtype} {tuple(fresh.shape)}")
        if not value.is_floating_point() and bool((value < 0).any()):
            raise Invalid(f"its tensor sampler.{key} holds negative counts")
    check_finite("sampler", state)


def check_optimizer(state: dict[str, torch.Tensor], params: list[torch.Tensor]) -> None:
    """optim.<i>.<key>: i indexes the model's parameters, key one of OPTIMIZER_KEYS; the
    moments have their parameter's shape and dtype; step a finite count; all finite."""
    for name, tensor in sorted(state.items()):
        index, _, key = name.partition(".")
        if not index.isdigit() or len(index) > 9 or key not in OPTIMIZER_KEYS:
            raise Invalid(f"has a malformed optimizer tensor {shown('optim.' + name, 80)}")
        if int(index) >= len(params):
            raise Invalid(f"has optimizer state for parameter {int(index)}, but the model has "
                          f"{len(params)} parameters")
        param = params[int(index)]
        if key == "step":
            if tensor.numel() != 1 or tensor.dtype not in _STEP_DTYPES:
                raise Invalid(f"its tensor optim.{name} must be one number, got {tensor.dtype} "
                              f"of shape {tuple(tensor.shape)}")
            value = float(tensor.reshape(-1)[0])
            if not (math.isfinite(value) and 0 <= value <= MAX_STEP):
                raise Invalid(f"its tensor optim.{name} must be a count from 0 to "
                              f"{MAX_STEP:,}, got {value}")
        elif tensor.shape != param.shape or tensor.dtype != param.dtype:
            raise Invalid(f"its tensor optim.{name} has {tensor.dtype} {tuple(tensor.shape)}, "
                          f"parameter {index} is {param.dtype} {tuple(param.shape)}")
    check_finite("optim", state)
