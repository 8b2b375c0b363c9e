"""Validated experiment settings: model, diffusion and training, with a JSON round trip.

Every check names the field, the bad value and what is allowed, so a UI can show the
message next to the field and a CLI can print it on one line.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from core.data.registry import DEFAULT_DATASET
from core.options import LossType, MeanType, VarType
from core.samplers import DEFAULT_SAMPLER, all_options, get_sampler, sampler_names
from core.samplers.base import ANALYTIC, VARIANCE
from core.schedule import SCHEDULE_NAMES
from core.spacing import DEFAULT_SPACING, SPACING_NAMES
from core.timestep_sampler import TIMESTEP_SAMPLER_NAMES

SCHEDULES = SCHEDULE_NAMES
MEAN_TYPES = MeanType.names()
VARIANCE_TYPES = VarType.names()
LOSS_TYPES = LossType.names()
TIMESTEP_SAMPLERS = TIMESTEP_SAMPLER_NAMES
MODEL_KINDS = ("auto", "unet", "mlp")
DEVICES = ("auto", "cpu", "cuda", "mps")           # and "cuda:N"

# The numeric range of every bounded integer or float setting, defined once: validation
# reads it and so do the app's spin boxes. (low, high); high None means unbounded.
LIMITS: dict[str, tuple[float, float | None]] = {
    "model.channels": (8, 1024),
    "model.num_res_blocks": (1, 8),
    "model.num_heads": (1, 64),
    "model.dropout": (0.0, 0.9),
    "model.hidden": (8, 8192),
    "model.mlp_blocks": (1, 32),
    "model.num_head_channels": (0, 1024),
    "model.norm_groups": (1, 128),
    "model.norm_eps": (1e-12, 0.1),
    "model.time_freq_shift": (0.0, 16.0),
    "model.time_scale": (1e-3, 1e3),
    "diffusion.timesteps": (2, 20000),
    "diffusion.lambda_vlb": (0.0, 1000.0),
    "diffusion.sigma_min": (1e-4, 10.0),
    "diffusion.sigma_max": (0.01, 1e5),
    "train.num_samples": (16, 10_000_000),
    "train.label_dropout": (0.0, 1.0),
    "train.batch_size": (1, 65536),
    "train.lr": (0.0, 1.0),                      # lr > 0 (the low end is open)
    "train.weight_decay": (0.0, 1.0),
    "train.warmup_steps": (0, None),
    "train.grad_clip": (0.0, 1e6),
    "train.ema_decay": (0.0, 1.0),               # < 1 (1 never updates)
    "train.steps": (1, 100_000_000),
    "train.seed": (0, 2**31 - 1),
    "train.log_every": (1, None),
    "train.probe_every": (0, None),
    "train.probe_timesteps": (2, 1000),
    "train.checkpoint_every": (0, None),
    "train.micro_batch": (0, 65536),
    "sampling.n": (1, 100_000),
    "sampling.steps": (1, 20000),
    "sampling.seed": (0, 2**63 - 1),
    "sampling.guidance": (0.0, 100.0),
}


def limits(name: str) -> tuple[float, float | None]:
    """The (low, high) range of a setting named "section.field" (see LIMITS)."""
    return LIMITS[name]


class ConfigError(ValueError):
    """A setting is invalid. `field` is the dotted field name (e.g. "train.batch_size"), or
    "config" for the file or text as a whole; `source` the file it came from, if any.

    str(): "[source: ]field = value is invalid: allowed", or for the whole file
    "source: allowed" (e.g. "bad.json: not valid JSON: Expecting ... (line 1, column 2)")."""

    def __init__(self, field: str, value: Any, allowed: str, source: str | None = None):
        self.field = field
        self.value = value
        self.allowed = allowed
        self.source = source
        if field == "config" and source:
            text = allowed
        else:
            text = f"{field} = {value!r} is invalid: {allowed}"
        super().__init__(f"{source}: {text}" if source else text)

    def in_file(self, source: str) -> ConfigError:
        """The same error, naming the file it came from."""
        return ConfigError(self.field, self.value, self.allowed, source=str(source))


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(name, value, "must be one of " + ", ".join(repr(c) for c in choices))


def _check_int(name: str, value: Any) -> None:
    lo, hi = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, value, "must be an integer")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise ConfigError(name, value, f"must be {rng}")


def _check_float(name: str, value: Any, lo_open: bool = False) -> None:
    lo, hi = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(name, value, "must be a finite number")
    if value < lo or value > hi or (lo_open and value == lo):
        left = "(" if lo_open else "["
        raise ConfigError(name, value, f"must lie in {left}{lo}, {hi}]")


@dataclass
class ModelConfig:
    """Network settings. kind "auto" picks a UNet for images and an MLP for vectors."""

    kind: str = "auto"
    # UNet
    channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    # feature-map sizes with self-attention besides the middle block (which always has it);
    # empty by default so any image size works, presets name e.g. (16,) for 32x32
    attention_resolutions: tuple[int, ...] = ()
    num_heads: int = 4
    dropout: float = 0.0
    # MLP (2-D data)
    hidden: int = 128
    mlp_blocks: int = 3
    # recompute the UNet's res-block activations in the backward pass: less memory, about
    # a third more compute (the weights and the numbers do not change)
    checkpointing: bool = False
    # UNet details of networks opened from diffusers or improved-/guided-diffusion
    # (core.interop; see core.models.unet.UNet); the defaults are this explorer's own UNet
    num_head_channels: int = 0        # > 0: heads of this width instead of num_heads
    scale_shift_norm: bool = True     # False: the time embedding is added before the norm
    resblock_updown: bool = False     # resample with res blocks (guided-diffusion)
    norm_groups: int = 32             # GroupNorm groups (gcd with the width)
    norm_eps: float = 1e-5
    time_cos_first: bool = True       # sinusoids [cos, sin] (diffusers' flip_sin_to_cos)
    time_freq_shift: float = 0.0      # frequencies 10000^(-j / (half - shift))
    time_scale: float = 1.0           # the network sees t * time_scale (1000/T: rescaled t)
    downsample_padding: int = 1       # 0: pad right and bottom only (DDPM's TensorFlow code)
    middle_attention_norm: bool = True

    def validate(self) -> None:
        prefix = "model"
        _check_choice(f"{prefix}.kind", self.kind, MODEL_KINDS)
        _check_int(f"{prefix}.channels", self.channels)
        if self.channels % 8:
            raise ConfigError(f"{prefix}.channels", self.channels,
                              "must be a multiple of 8 (GroupNorm uses 8 groups or more)")
        if not isinstance(self.channel_mult, (tuple, list)) or not self.channel_mult or not all(
            isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= 16 for m in self.channel_mult
        ):
            raise ConfigError(f"{prefix}.channel_mult", self.channel_mult,
                              "must be a non-empty list of integers between 1 and 16")
        if len(self.channel_mult) > 5:
            raise ConfigError(f"{prefix}.channel_mult", self.channel_mult, "must have at most 5 levels")
        _check_int(f"{prefix}.num_res_blocks", self.num_res_blocks)
        if not isinstance(self.attention_resolutions, (tuple, list)) or not all(
                isinstance(r, int) and not isinstance(r, bool) and r >= 1
                for r in self.attention_resolutions):
            raise ConfigError(f"{prefix}.attention_resolutions", self.attention_resolutions,
                              "must be a list of positive integers (feature-map sizes)")
        _check_int(f"{prefix}.num_heads", self.num_heads)
        _check_float(f"{prefix}.dropout", self.dropout)
        _check_int(f"{prefix}.hidden", self.hidden)
        _check_int(f"{prefix}.mlp_blocks", self.mlp_blocks)
        for name in ("checkpointing", "scale_shift_norm", "resblock_updown", "time_cos_first",
                     "middle_attention_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{prefix}.{name}", getattr(self, name), "must be true or false")
        _check_int(f"{prefix}.num_head_channels", self.num_head_channels)
        _check_int(f"{prefix}.norm_groups", self.norm_groups)
        _check_float(f"{prefix}.norm_eps", self.norm_eps)
        _check_float(f"{prefix}.time_freq_shift", self.time_freq_shift)
        _check_float(f"{prefix}.time_scale", self.time_scale)
        if isinstance(self.downsample_padding, bool) or self.downsample_padding not in (0, 1):
            raise ConfigError(f"{prefix}.downsample_padding", self.downsample_padding,
                              "must be 1 (every side) or 0 (right and bottom only)")


@dataclass
class DiffusionConfig:
    """Forward process and objective. lambda_vlb weights the whole bound L_vlb (the sum over
    t, estimated as T times the sampled term) in L_hybrid = L_simple + lambda_vlb * L_vlb;
    with 0.001 and T = 1000 this is improved-diffusion's hybrid loss."""

    schedule: str = "cosine"
    timesteps: int = 1000
    mean_type: str = "eps"
    variance_type: str = "fixed_small"
    loss_type: str = "simple"
    lambda_vlb: float = 0.001
    timestep_sampler: str = "uniform"
    sigma_min: float = 0.01         # the "ve" schedule's noise levels (NCSN; core.sde.VESDE)
    sigma_max: float = 10.0

    @property
    def learns_sigma(self) -> bool:
        """The network must output the variance too (learned_range)."""
        return VarType.parse(self.variance_type, "diffusion.variance_type").learns_sigma

    def validate(self) -> None:
        prefix = "diffusion"
        _check_choice(f"{prefix}.schedule", self.schedule, SCHEDULES)
        _check_int(f"{prefix}.timesteps", self.timesteps)
        _check_choice(f"{prefix}.mean_type", self.mean_type, MEAN_TYPES)
        _check_choice(f"{prefix}.variance_type", self.variance_type, VARIANCE_TYPES)
        _check_choice(f"{prefix}.loss_type", self.loss_type, LOSS_TYPES)
        _check_float(f"{prefix}.lambda_vlb", self.lambda_vlb)
        _check_choice(f"{prefix}.timestep_sampler", self.timestep_sampler, TIMESTEP_SAMPLERS)
        _check_float(f"{prefix}.sigma_min", self.sigma_min)
        _check_float(f"{prefix}.sigma_max", self.sigma_max)
        if self.sigma_max <= self.sigma_min:
            raise ConfigError(f"{prefix}.sigma_max", self.sigma_max,
                              f"must exceed diffusion.sigma_min ({self.sigma_min})")
        if self.timestep_sampler == "loss-aware" and self.loss_type == "simple":
            raise ConfigError(f"{prefix}.timestep_sampler", self.timestep_sampler,
                              "loss-aware sampling needs loss_type 'vlb' or 'hybrid'")


@dataclass
class TrainConfig:
    """Data and optimisation. dataset is a name known to core.data or a path."""

    dataset: str = DEFAULT_DATASET
    image_size: int = 28
    grayscale: bool = True
    num_samples: int = 20000          # size of generated 2-D toy data sets
    class_conditional: bool = False
    label_dropout: float = 0.1
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    steps: int = 3000
    seed: int = 0
    device: str = "auto"
    log_every: int = 10
    probe_every: int = 250
    probe_timesteps: int = 20
    checkpoint_every: int = 0         # 0: only at the end
    # examples per forward/backward pass: the batch in chunks of micro_batch with gradient
    # accumulation (same gradient, less activation memory); 0: the whole batch at once
    micro_batch: int = 0
    compile: bool = False

    def validate(self) -> None:
        prefix = "train"
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ConfigError(f"{prefix}.dataset", self.dataset, "must name a data set or a path")
        if not isinstance(self.image_size, int) or self.image_size not in (8, 16, 28, 32, 64):
            raise ConfigError(f"{prefix}.image_size", self.image_size, "must be one of 8, 16, 28, 32, 64")
        if not isinstance(self.grayscale, bool):
            raise ConfigError(f"{prefix}.grayscale", self.grayscale, "must be true or false")
        _check_int(f"{prefix}.num_samples", self.num_samples)
        if not isinstance(self.class_conditional, bool):
            raise ConfigError(f"{prefix}.class_conditional", self.class_conditional, "must be true or false")
        _check_float(f"{prefix}.label_dropout", self.label_dropout)
        _check_int(f"{prefix}.batch_size", self.batch_size)
        _check_float(f"{prefix}.lr", self.lr, lo_open=True)
        _check_float(f"{prefix}.weight_decay", self.weight_decay)
        _check_int(f"{prefix}.warmup_steps", self.warmup_steps)
        _check_float(f"{prefix}.grad_clip", self.grad_clip)
        _check_float(f"{prefix}.ema_decay", self.ema_decay)
        if self.ema_decay == 1.0:
            raise ConfigError(f"{prefix}.ema_decay", self.ema_decay, "must be below 1 (1 never updates)")
        _check_int(f"{prefix}.steps", self.steps)
        _check_int(f"{prefix}.seed", self.seed)
        if not isinstance(self.device, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,3})?",
                                                                 self.device):
            raise ConfigError(f"{prefix}.device", self.device,
                              "must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        _check_int(f"{prefix}.log_every", self.log_every)
        _check_int(f"{prefix}.probe_every", self.probe_every)
        _check_int(f"{prefix}.probe_timesteps", self.probe_timesteps)
        _check_int(f"{prefix}.checkpoint_every", self.checkpoint_every)
        _check_int(f"{prefix}.micro_batch", self.micro_batch)
        if self.micro_batch and (isinstance(self.batch_size, int) and self.batch_size % self.micro_batch):
            raise ConfigError(f"{prefix}.micro_batch", self.micro_batch,
                              f"must divide train.batch_size ({self.batch_size}), or be 0 for the "
                              "whole batch at once")
        if not isinstance(self.compile, bool):
            raise ConfigError(f"{prefix}.compile", self.compile, "must be true or false")


@dataclass
class ExperimentConfig:
    """Everything one run needs. `validate()` raises ConfigError on the first bad field."""

    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str = "experiment"

    def validate(self) -> ExperimentConfig:
        self.model.validate()
        self.diffusion.validate()
        self.train.validate()
        if self.train.probe_timesteps > self.diffusion.timesteps:
            raise ConfigError("train.probe_timesteps", self.train.probe_timesteps,
                              f"must not exceed diffusion.timesteps ({self.diffusion.timesteps})")
        return self

    def check_trainable(self) -> ExperimentConfig:
        """validate(), then refuse settings that would train something other than they say:
        a learned variance (learned_range) with the simple loss, which gives the variance
        channels no gradient (Sigma_theta would stay at v = 0.5). Valid in a file (older
        checkpoints hold it); refused for a new run by the app's form and `train`."""
        self.validate()
        d = self.diffusion
        if d.learns_sigma and not LossType(d.loss_type).trains_variance:
            raise ConfigError("diffusion.loss_type", d.loss_type,
                              "learned range needs the hybrid or vlb loss: L_simple gives the "
                              "variance no gradient, so Σθ would stay at v = 0.5")
        return self

    # -- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        if not isinstance(data, dict):
            raise ConfigError("config", type(data).__name__, "must be a JSON object")
        unknown = set(data) - {"model", "diffusion", "train", "name"}
        if unknown:
            raise ConfigError(sorted(unknown)[0], data[sorted(unknown)[0]],
                              "unknown section; expected model, diffusion, train, name")
        return cls(
            model=_section(ModelConfig, data.get("model", {}), "model"),
            diffusion=_section(DiffusionConfig, data.get("diffusion", {}), "diffusion"),
            train=_section(TrainConfig, data.get("train", {}), "train"),
            name=str(data.get("name", "experiment")),
        )

    @classmethod
    def from_json(cls, text: str) -> ExperimentConfig:
        """Parse and check the types of a JSON config (call validate() for the ranges)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("config", text[:40], f"not valid JSON: {exc.msg} (line "
                                                   f"{exc.lineno}, column {exc.colno})") from None
        except (ValueError, RecursionError) as exc:  # an integer of > 4300 digits, deep nesting
            raise ConfigError("config", text[:40], f"not usable JSON: {type(exc).__name__}: "
                                                   f"{str(exc).split(';')[0]}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> ExperimentConfig:
        """The config in a JSON file, its types checked (validate() checks the ranges: wrap
        its error with `in_file(path)`). Every ConfigError names the file (its `source`)
        and, where one field is at fault, the field."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError("config", str(path), f"cannot be read ({why})",
                              source=str(path)) from None
        try:
            return cls.from_json(text)
        except ConfigError as exc:
            raise exc.in_file(str(path)) from None


@dataclass
class SamplingConfig:
    """One sampling request, validated against the sampler registry (core.samplers).

    sampler: a registered name; steps: reverse steps (None: the sampler's default for the
    model's T); n: samples; seed; guidance: classifier-free guidance w (needs a label);
    label: a class or None (unconditional); options: the sampler's settings by name (e.g.
    eta for DDIM; options of other samplers are kept but not used); spacing: which timesteps
    the steps visit (core.spacing).
    """

    sampler: str = DEFAULT_SAMPLER
    steps: int | None = None
    n: int = 64
    seed: int = 0
    guidance: float = 0.0
    label: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    spacing: str = DEFAULT_SPACING

    FIELDS = ("sampler", "steps", "n", "seed", "guidance", "label", "spacing")

    def validate(self, num_timesteps: int | None = None) -> SamplingConfig:
        """Check every field (steps also against the model's T when given); ConfigError
        ("sampling.<field>") otherwise. Returns self."""
        _check_choice("sampling.sampler", self.sampler, sampler_names())
        _check_choice("sampling.spacing", self.spacing, SPACING_NAMES)
        if self.steps is not None:
            _check_int("sampling.steps", self.steps)
            if num_timesteps is not None and self.steps > num_timesteps:
                raise ConfigError("sampling.steps", self.steps,
                                  f"the model has only {num_timesteps} timesteps")
        _check_int("sampling.n", self.n)
        _check_int("sampling.seed", self.seed)
        _check_float("sampling.guidance", self.guidance)
        if self.label is not None:
            if isinstance(self.label, bool) or not isinstance(self.label, int) or self.label < 0:
                raise ConfigError("sampling.label", self.label, "must be a class index >= 0")
        known = all_options()
        for name, value in self.options.items():
            if name not in known:
                raise ConfigError(f"sampling.{name}", value, "unknown sampler option; known: "
                                  + ", ".join(sorted(known)))
            try:
                known[name].check(value)
            except ValueError as exc:
                raise ConfigError(f"sampling.{name}", value,
                                  str(exc).split("is invalid: ", 1)[-1]) from None
        return self

    def sampler_options(self) -> dict[str, Any]:
        """The chosen sampler's options: the given values, else their defaults."""
        return get_sampler(self.sampler).resolve_options(self.options)

    def uses_analytic_variance(self) -> bool:
        """The chosen sampler takes the variance option and it says Analytic-DPM (sigma*^2 is
        then estimated first from a sample of the training data)."""
        return self.sampler_options().get(VARIANCE.name) == ANALYTIC

    def steps_for(self, num_timesteps: int) -> int:
        """The steps of this request for a model of T timesteps (the default when None)."""
        if self.steps is not None:
            return self.steps
        return get_sampler(self.sampler).default_steps(num_timesteps)

    def to_params(self) -> dict[str, Any]:
        """A flat dict (the app's settings): the fields and every option by name."""
        params = {name: getattr(self, name) for name in self.FIELDS}
        params.update(self.options)
        return params

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SamplingConfig:
        """From a flat dict as to_params makes; keys that are neither fields nor options of
        a registered sampler are ignored (settings of an older version). Not validated."""
        options = all_options()
        fields_ = {k: v for k, v in params.items() if k in cls.FIELDS}
        return cls(**fields_, options={k: v for k, v in params.items() if k in options})


def _section(cls: type, data: Any, prefix: str):
    if not isinstance(data, dict):
        raise ConfigError(prefix, data, "must be a JSON object")
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{prefix}.{key}", value,
                              "unknown setting; known: " + ", ".join(sorted(known)))
        default = getattr(cls(), key)
        if isinstance(default, tuple):
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{prefix}.{key}", value, "must be a list")
            value = tuple(value)
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            try:
                value = float(value)
            except OverflowError:  # an integer beyond the float range
                raise ConfigError(f"{prefix}.{key}", value, "must be a finite number") from None
        kwargs[key] = value
    return cls(**kwargs)
