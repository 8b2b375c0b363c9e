"""diffusers' scheduler_config.json <-> the explorer's diffusion settings (DiffusionConfig).

A scheduler config fixes the forward process and what the network predicts:

    num_train_timesteps -> timesteps T
    beta_schedule, beta_start, beta_end, trained_betas -> schedule: diffusers' betas (computed
        here in float64 by diffusers' formulas) must equal one of the explorer's schedules
        (core.schedule.SCHEDULES) at T, to 1e-6 relative:
          "linear" from 0.1/T to 20/T            = linear (Ho et al.; 1e-4 .. 0.02 at T=1000)
          "scaled_linear" from 0.1/T to 20/T     = quadratic
          "squaredcos_cap_v2"                    = cosine (Nichol & Dhariwal)
          trained_betas equal to any schedule    = that schedule
    prediction_type "epsilon" / "sample" / "v_prediction" -> mean_type eps / x0 / v
    variance_type "fixed_small(_log)" / "fixed_large(_log)" / "learned_range"
        -> variance_type fixed_small / fixed_large / learned_range (with the hybrid loss)
        (one step differs: at t = 0 the explorer's fixed_large is beta-tilde_1, as
        improved-diffusion's, where diffusers' DDPMScheduler takes beta_0)

Anything else that shapes the model (another schedule or endpoints, "learned" variance,
rescale_betas_zero_snr) is refused naming the key and value. Settings that only steer
sampling (clip_sample, thresholding, timestep_spacing, steps_offset, set_alpha_to_one) are
reported as notes: the explorer's samplers take their own (images are clipped to [-1, 1]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from core.config import LIMITS, DiffusionConfig
from core.interop.errors import InteropError
from core.schedule import MAX_BETA, SCHEDULE_NAMES, get_betas

SCHEDULER_DEFAULTS = {
    "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02,
    "beta_schedule": "linear", "trained_betas": None, "variance_type": "fixed_small",
    "clip_sample": True, "clip_sample_range": 1.0, "prediction_type": "epsilon",
    "thresholding": False, "timestep_spacing": "leading", "steps_offset": 0,
    "rescale_betas_zero_snr": False,
}
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")
PREDICTIONS = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
VARIANCES = {"fixed_small": "fixed_small", "fixed_small_log": "fixed_small",
             "fixed_large": "fixed_large", "fixed_large_log": "fixed_large",
             "learned_range": "learned_range"}
# what an export writes for the explorer's own names
_EXPORT_PREDICTION = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
# diffusers' DDIM with this spacing visits exactly the explorer's "trailing" timesteps
EXPORT_SPACING = "trailing"


@dataclass
class SchedulerSpec:
    """The diffusion settings of a scheduler config, and lines for `inspect`."""

    diffusion: DiffusionConfig
    mapped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def diffusers_betas(name: str, beta_start: float, beta_end: float, steps: int) -> np.ndarray:
    """diffusers' beta schedule `name` at T = steps, float64 (T,) (diffusers computes the
    same formulas in float32)."""
    if name == "linear":
        return np.linspace(beta_start, beta_end, steps, dtype=np.float64)
    if name == "scaled_linear":
        return np.linspace(beta_start ** 0.5, beta_end ** 0.5, steps, dtype=np.float64) ** 2
    if name == "squaredcos_cap_v2":
        def alpha_bar(s):
            return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
        return np.array([min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), MAX_BETA)
                         for i in range(steps)], dtype=np.float64)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-np.linspace(-6, 6, steps))) * (beta_end - beta_start) + beta_start
    raise ValueError(f"unknown diffusers beta schedule {name!r}")


def matching_schedule(betas: np.ndarray) -> str | None:
    """The explorer's schedule whose betas at T = len(betas) equal `betas` (1e-6 relative)."""
    steps = len(betas)
    for name in SCHEDULE_NAMES:
        try:
            ours = get_betas(name, steps)
        except ValueError:
            continue
        if ours.shape == betas.shape and np.allclose(ours, betas, rtol=1e-6, atol=1e-12):
            return name
    return None


def spec_from_scheduler(config: dict, source, learn_sigma: bool) -> SchedulerSpec:
    """The DiffusionConfig of a scheduler config; InteropError naming `source`, the key and
    its value for what the explorer cannot represent. learn_sigma: the UNet outputs 2C
    channels (which needs variance_type learned_range)."""
    get = {**SCHEDULER_DEFAULTS, **config}.get

    def refuse(key: str, why: str):
        raise InteropError(source, f"{key} {get(key)!r} {why}")

    steps = get("num_train_timesteps")
    low, high = LIMITS["diffusion.timesteps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or not low <= steps <= high:
        refuse("num_train_timesteps", f"is not supported (supported: {low:g} to {high:g})")
    if get("rescale_betas_zero_snr"):
        refuse("rescale_betas_zero_snr", "is not supported (zero terminal SNR needs beta = 1 at "
                                         "the last step; the explorer's schedules keep beta < 1)")
    name, betas = _betas(get, steps, refuse)
    schedule = matching_schedule(betas)
    if schedule is None:
        key = "trained_betas" if get("trained_betas") is not None else "beta_schedule"
        refuse(key, f"is not supported: with beta_start {get('beta_start')!r}, beta_end "
                    f"{get('beta_end')!r} and T = {steps} its betas match none of the explorer's "
                    f"schedules ({', '.join(SCHEDULE_NAMES)}); supported: 'linear' or "
                    f"'scaled_linear' from 0.1/T to 20/T, 'squaredcos_cap_v2', or "
                    f"trained_betas equal to one of those")
    prediction = get("prediction_type")
    if prediction not in PREDICTIONS:
        refuse("prediction_type", f"is not supported (supported: {', '.join(map(repr, PREDICTIONS))})")
    variance = get("variance_type") or "fixed_small"
    if variance not in VARIANCES:
        refuse("variance_type", f"is not supported (supported: {', '.join(map(repr, VARIANCES))})")
    learned = VARIANCES[variance] == "learned_range"
    if learned != learn_sigma:
        refuse("variance_type", "does not fit the UNet: " + (
            "learned_range needs out_channels = 2 x in_channels" if learned else
            "the UNet's out_channels = 2 x in_channels hold a learned variance, which needs "
            "'learned_range'"))
    diffusion = DiffusionConfig(schedule=schedule, timesteps=steps, mean_type=PREDICTIONS[prediction],
                                variance_type=VARIANCES[variance],
                                loss_type="hybrid" if learned else "simple")
    mapped = [f"num_train_timesteps -> T = {steps}; beta_schedule {name!r} -> schedule {schedule!r}",
              f"prediction_type {prediction!r} -> mean_type {diffusion.mean_type!r}; variance_type "
              f"{variance!r} -> {diffusion.variance_type!r}"]
    return SchedulerSpec(diffusion, mapped, _sampling_notes(config, get))


def _betas(get, steps: int, refuse) -> tuple[str, np.ndarray]:
    trained = get("trained_betas")
    if trained is not None:
        try:
            betas = np.asarray(trained, dtype=np.float64)
        except (TypeError, ValueError):
            refuse("trained_betas", "is not a list of numbers")
        if betas.shape != (steps,):
            refuse("trained_betas", f"must hold num_train_timesteps = {steps} numbers")
        return "trained_betas", betas
    name = get("beta_schedule")
    if name not in BETA_SCHEDULES:
        refuse("beta_schedule", f"is not supported (supported: {', '.join(map(repr, BETA_SCHEDULES[:3]))})")
    for key in ("beta_start", "beta_end"):
        value = get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            refuse(key, "must be a number between 0 and 1")
    return name, diffusers_betas(name, float(get("beta_start")), float(get("beta_end")), steps)


def _sampling_notes(config: dict, get) -> list[str]:
    notes = []
    kind = config.get("_class_name")
    if kind not in (None, "DDPMScheduler"):
        notes.append(f"scheduler {kind}: its training schedule is used; the explorer's "
                     "samplers (--sampler) take the place of its sampling rule")
    if not get("clip_sample") or get("clip_sample_range") != 1.0 or get("thresholding"):
        notes.append(f"clip_sample {get('clip_sample')!r}, clip_sample_range "
                     f"{get('clip_sample_range')!r}, thresholding {get('thresholding')!r}: the "
                     "explorer clips the x0 estimate of images to [-1, 1] when sampling")
    if "timestep_spacing" in config or "steps_offset" in config:
        notes.append(f"timestep_spacing {get('timestep_spacing')!r}, steps_offset "
                     f"{get('steps_offset')!r}: sampling choices; pick --spacing when sampling")
    return notes


def scheduler_config(diffusion: DiffusionConfig, betas: np.ndarray, version: str) -> dict:
    """A DDPMScheduler config for the explorer's diffusion settings and betas (the named
    diffusers schedule when its formula gives these betas, else trained_betas). DDIM with its
    timestep_spacing "trailing" visits the timesteps of the explorer's "trailing" spacing."""
    steps = len(betas)
    config = {"_class_name": "DDPMScheduler", "_diffusers_version": version,
              "num_train_timesteps": steps, "beta_schedule": "linear", "beta_start": 0.0001,
              "beta_end": 0.02, "trained_betas": None}
    for name, start, end in (("linear", 0.1 / steps, 20.0 / steps),
                             ("scaled_linear", 0.1 / steps, 20.0 / steps),
                             ("squaredcos_cap_v2", 0.0001, 0.02)):
        if 0 < end < 1 and np.allclose(diffusers_betas(name, start, end, steps), betas,
                                       rtol=1e-12, atol=0):
            config.update(beta_schedule=name, beta_start=start, beta_end=end)
            break
    else:
        config["trained_betas"] = [float(b) for b in betas]
    config.update(variance_type=diffusion.variance_type,
                  prediction_type=_EXPORT_PREDICTION[diffusion.mean_type],
                  clip_sample=True, clip_sample_range=1.0, thresholding=False,
                  timestep_spacing=EXPORT_SPACING, steps_offset=0, rescale_betas_zero_snr=False)
    return config
