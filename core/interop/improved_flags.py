"""improved-diffusion / guided-diffusion flags -> the explorer's model and diffusion settings.

Flags come as a dict (a JSON file) or as the `--flag value` text pasted from those repos'
READMEs (`MODEL_FLAGS="--image_size 64 ..." DIFFUSION_FLAGS="..."` works too). Missing
flags take improved-diffusion's defaults (script_util.model_and_diffusion_defaults), or
guided-diffusion's when a flag only guided-diffusion has is given (they differ in
rescale_timesteps and rescale_learned_sigmas). The explorer adds two flags those repos fix
in code: in_channels (3) and num_classes (1000, with class_cond).

    num_channels, channel_mult (or the repo's default for image_size), num_res_blocks,
    dropout -> channels, channel_mult, num_res_blocks, dropout
    attention_resolutions "16,8" -> attention at feature-map sizes S // (S // r)
    num_heads / num_head_channels -> num_heads / num_head_channels
    use_scale_shift_norm, resblock_updown -> scale_shift_norm, resblock_updown
    rescale_timesteps -> time_scale 1000 / T (the network sees t * 1000 / T)
    diffusion_steps, noise_schedule -> timesteps, schedule (linear, cosine)
    predict_xstart -> mean_type x0 (else eps)
    learn_sigma / sigma_small -> variance_type learned_range / fixed_small (else fixed_large)
    use_kl -> loss vlb; learn_sigma -> loss hybrid with lambda_vlb 0.001 when
        rescale_learned_sigmas (their L_vlb term x T/1000), else 1/T; otherwise simple
    use_new_attention_order -> how the qkv weights are laid out (core.interop.keymap)
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from core.config import LIMITS, DiffusionConfig, ModelConfig
from core.interop.errors import InteropError

IMPROVED_DEFAULTS = {
    "image_size": 64, "num_channels": 128, "num_res_blocks": 2, "num_heads": 4,
    "num_heads_upsample": -1, "attention_resolutions": "16,8", "dropout": 0.0,
    "learn_sigma": False, "sigma_small": False, "class_cond": False, "diffusion_steps": 1000,
    "noise_schedule": "linear", "timestep_respacing": "", "use_kl": False,
    "predict_xstart": False, "rescale_timesteps": True, "rescale_learned_sigmas": True,
    "use_checkpoint": False, "use_scale_shift_norm": True,
}
GUIDED_ONLY = {"num_head_channels": -1, "channel_mult": "", "resblock_updown": False,
               "use_fp16": False, "use_new_attention_order": False}
GUIDED_DEFAULTS = {**IMPROVED_DEFAULTS, **GUIDED_ONLY, "rescale_timesteps": False,
                   "rescale_learned_sigmas": False}
EXTRA = {"in_channels": 3, "num_classes": 1000}
FLAG_TYPES = {name: type(value) for name, value in {**GUIDED_DEFAULTS, **EXTRA}.items()}
# flags of the training and sampling scripts: accepted and ignored
IGNORED = {"lr", "batch_size", "microbatch", "ema_rate", "log_interval", "save_interval",
           "resume_checkpoint", "fp16_scale_growth", "schedule_sampler", "weight_decay",
           "lr_anneal_steps", "data_dir", "num_samples", "use_ddim", "model_path",
           "clip_denoised", "iterations", "anneal_lr", "classifier_scale", "classifier_path"}
CHANNEL_MULTS = {32: (1, 2, 2, 2), 64: (1, 2, 3, 4), 128: (1, 1, 2, 3, 4),
                 256: (1, 1, 2, 2, 4, 4)}
FLAG_ORDER = ("image_size", "in_channels", "num_channels", "num_res_blocks", "channel_mult",
              "num_heads", "num_head_channels", "num_heads_upsample", "attention_resolutions",
              "dropout", "learn_sigma", "sigma_small", "class_cond", "num_classes",
              "use_scale_shift_norm", "resblock_updown", "use_new_attention_order",
              "diffusion_steps", "noise_schedule", "predict_xstart", "rescale_timesteps",
              "rescale_learned_sigmas", "use_kl", "timestep_respacing")
_TRUE, _FALSE = {"yes", "true", "t", "y", "1"}, {"no", "false", "f", "n", "0"}


@dataclass
class Flags:
    """Parsed flags: values (every flag, defaults filled in, typed), given (the names the
    user gave), guided (guided-diffusion's defaults apply), notes."""

    values: dict
    given: set = field(default_factory=set)
    guided: bool = False
    notes: list[str] = field(default_factory=list)


def parse_flags(flags, source="--model-flags") -> Flags:
    """Flags from a dict, a JSON file's path, or pasted `--flag value` text."""
    if isinstance(flags, Path) or (isinstance(flags, str) and flags.strip().endswith(".json")
                                   and "--" not in flags):
        from core.interop.weights import read_json

        path = Path(str(flags).strip()).expanduser()
        if not path.is_file():
            raise InteropError(source, f"{path} does not exist (give a JSON file of flags or the "
                                       "pasted --flag value text)")
        return parse_flags(read_json(path), path)
    raw = _split_text(flags, source) if isinstance(flags, str) else flags
    if not isinstance(raw, dict):
        raise InteropError(source, f"must be a JSON object or --flag value text, not "
                                   f"{type(raw).__name__}")
    guided = any(name in GUIDED_ONLY for name in raw)
    values = dict(GUIDED_DEFAULTS if guided else IMPROVED_DEFAULTS, **EXTRA)
    notes, given = [], set()
    for name, value in raw.items():
        name = str(name).lstrip("-")
        if name in IGNORED or name.startswith("classifier_"):
            notes.append(f"--{name} is a training or sampling flag and is ignored")
            continue
        if name not in FLAG_TYPES:
            raise InteropError(source, f"--{name} is not an improved-/guided-diffusion model or "
                                       "diffusion flag (see model_and_diffusion_defaults in "
                                       "their script_util.py)")
        values[name] = _typed(name, value, source)
        given.add(name)
    if values["timestep_respacing"]:
        notes.append(f"--timestep_respacing {values['timestep_respacing']} is a sampling choice "
                     "and is ignored (pick --steps and --spacing when sampling)")
    if values.get("use_fp16"):
        notes.append("--use_fp16 True: the weights are used in float32")
    notes.append("defaults of " + ("guided-diffusion" if guided else "improved-diffusion")
                 + " for the flags not given")
    return Flags(values, given, guided, notes)


def _split_text(text: str, source) -> dict:
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise InteropError(source, f"cannot be split into flags ({exc})") from None
    words = []
    for token in tokens:           # MODEL_FLAGS="--a 1 --b 2" as pasted from a README
        match = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=(.*)", token, re.S)
        words += shlex.split(match.group(1)) if match else [token]
    flags, i = {}, 0
    while i < len(words) and not words[i].startswith("--"):
        i += 1                     # "python scripts/image_sample.py" before the flags
    while i < len(words):
        word = words[i]
        if not word.startswith("--") or len(word) == 2:
            hint = " (a shell variable: paste its value)" if word.startswith("$") else ""
            raise InteropError(source, f"{word!r} follows no --flag{hint}")
        name, has_value, value = word[2:].partition("=")
        if not has_value:
            if i + 1 >= len(words) or words[i + 1].startswith("--"):
                raise InteropError(source, f"--{name} has no value")
            value, i = words[i + 1], i + 1
        flags[name] = value
        i += 1
    return flags


def _typed(name: str, value, source):
    kind = FLAG_TYPES[name]
    text = str(value).strip()
    if kind is bool:
        if isinstance(value, bool):
            return value
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise InteropError(source, f"--{name} {text!r}: expected True or False")
    if kind is int:
        try:
            if isinstance(value, bool):
                raise ValueError
            return int(text)
        except ValueError:
            _bad(name, text, "an integer", source)
    if kind is float:
        try:
            return float(text)
        except ValueError:
            _bad(name, text, "a number", source)
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return text


def _bad(name: str, text: str, what: str, source):
    raise InteropError(source, f"--{name} {text!r}: expected {what}")


def flags_text(values: dict) -> str:
    """The flags as one `--flag value` line, in a fixed order (for dialogs and messages)."""
    words = []
    for name in FLAG_ORDER:
        if name == "num_classes" and not values.get("class_cond"):
            continue
        if name in values and values[name] != "":
            value = values[name]
            words.append(f"--{name} {value if not isinstance(value, bool) else str(value)}")
    return " ".join(words)


@dataclass
class Mapped:
    """The explorer's settings of a flag set. heads_legacy: the qkv weights are in the
    legacy (head-major) order."""

    model: ModelConfig
    diffusion: DiffusionConfig
    data_shape: tuple[int, int, int]
    num_classes: int | None
    learn_sigma: bool
    heads_legacy: bool
    mapped: list[str]


def map_flags(flags: Flags, source="--model-flags") -> Mapped:
    """ModelConfig and DiffusionConfig of parsed flags; InteropError naming the flag."""
    v = flags.values

    def refuse(name: str, why: str):
        raise InteropError(source, f"--{name} {v[name]!r} {why}")

    size = v["image_size"]
    if size < 2:
        refuse("image_size", "must be at least 2")
    mult = _channel_mult(v, refuse)
    if v["num_channels"] < 32 or v["num_channels"] % 32:
        refuse("num_channels", "is not supported: their GroupNorm(32) needs a multiple of 32")
    if v["num_heads_upsample"] not in (-1, v["num_heads"]):
        refuse("num_heads_upsample", f"is not supported (supported: -1 or num_heads "
                                     f"{v['num_heads']}: the explorer has one head count)")
    sizes = _attention_sizes(v, len(mult), refuse)
    steps, (low, high) = v["diffusion_steps"], LIMITS["diffusion.timesteps"]
    if not low <= steps <= high:
        refuse("diffusion_steps", f"is not supported (supported: {low:g} to {high:g})")
    if v["noise_schedule"] not in ("linear", "cosine"):
        refuse("noise_schedule", "is not supported (supported: 'linear', 'cosine')")
    if not 0.0 <= v["dropout"] < 1.0:
        refuse("dropout", "must lie in [0, 1)")
    if v["in_channels"] < 1 or (v["class_cond"] and v["num_classes"] < 1):
        refuse("in_channels" if v["in_channels"] < 1 else "num_classes", "must be positive")
    learn = v["learn_sigma"]
    time_scale = 1000.0 / steps if v["rescale_timesteps"] else 1.0
    model = ModelConfig(
        kind="unet", channels=v["num_channels"], channel_mult=mult,
        num_res_blocks=v["num_res_blocks"], attention_resolutions=sizes,
        num_heads=v["num_heads"], dropout=float(v["dropout"]),
        num_head_channels=max(v.get("num_head_channels", -1), 0),
        scale_shift_norm=v["use_scale_shift_norm"], resblock_updown=v.get("resblock_updown", False),
        time_scale=time_scale)
    loss = "vlb" if v["use_kl"] else "hybrid" if learn else "simple"
    diffusion = DiffusionConfig(
        schedule=v["noise_schedule"], timesteps=steps,
        mean_type="x0" if v["predict_xstart"] else "eps",
        variance_type="learned_range" if learn else "fixed_small" if v["sigma_small"]
        else "fixed_large", loss_type=loss,
        lambda_vlb=0.001 if v["rescale_learned_sigmas"] else 1.0 / steps)
    mapped = [f"num_channels {model.channels} x channel_mult {list(mult)}, num_res_blocks "
              f"{model.num_res_blocks}, attention at sizes {list(sizes)} (and the middle)",
              (f"num_head_channels {model.num_head_channels}" if model.num_head_channels
               else f"num_heads {model.num_heads}") + ", qkv in the "
              + ("new" if v.get("use_new_attention_order") else "legacy") + " attention order",
              f"use_scale_shift_norm {v['use_scale_shift_norm']}, resblock_updown "
              f"{model.resblock_updown}, rescale_timesteps {v['rescale_timesteps']} -> time_scale "
              f"{time_scale:g}",
              f"diffusion_steps {steps}, noise_schedule {v['noise_schedule']!r} -> schedule; "
              f"mean_type {diffusion.mean_type}, variance_type {diffusion.variance_type}, loss "
              f"{loss}" + (f" (lambda_vlb {diffusion.lambda_vlb:g})" if loss == "hybrid" else "")]
    return Mapped(model, diffusion, (v["in_channels"], size, size),
                  v["num_classes"] if v["class_cond"] else None, learn,
                  not v.get("use_new_attention_order", False), mapped)


def _channel_mult(v: dict, refuse) -> tuple[int, ...]:
    text = v.get("channel_mult", "")
    if not text:
        if v["image_size"] not in CHANNEL_MULTS:
            refuse("image_size", f"has no default channel_mult (defaults exist for "
                                 f"{sorted(CHANNEL_MULTS)}); give --channel_mult")
        return CHANNEL_MULTS[v["image_size"]]
    try:
        values = [float(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        refuse("channel_mult", "must be comma-separated numbers")
    if not values or any(m != int(m) or m < 1 for m in values):
        refuse("channel_mult", "is not supported (supported: positive whole multipliers)")
    return tuple(int(m) for m in values)


def _attention_sizes(v: dict, levels: int, refuse) -> tuple[int, ...]:
    """Their attention_resolutions r become downsampling rates S // r; a rate that is not a
    power of two below 2^levels never occurs in their UNet, so it adds no attention there
    or here."""
    size, sizes = v["image_size"], []
    try:
        resolutions = [int(part) for part in str(v["attention_resolutions"]).split(",")
                       if part.strip()]
    except ValueError:
        refuse("attention_resolutions", "must be comma-separated integers")
    for resolution in resolutions:
        if resolution < 1 or resolution > size:
            refuse("attention_resolutions", f"holds {resolution}, outside 1..image_size")
        rate = size // resolution
        if rate & (rate - 1) == 0 and rate < 2 ** levels and size % rate == 0:
            sizes.append(size // rate)
    return tuple(sorted(set(sizes), reverse=True))
