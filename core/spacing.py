"""Step spacings: which timesteps of a T-step schedule a sampler visits when it takes S
steps. Every spacing returns S sorted timesteps in [0, T-1] (float64; integers except for
"karras" and "logsnr", which are fractional); a sampler walks them from the largest down,
and its last step goes from the smallest to the data (abar = 1, sigma = 0).
`respace(diffusion, steps, spacing)` gives the diffusion on them.

- "uniform": improved DDPM's evenly spread steps with both ends, round(linspace(0, T-1, S))
  (core.schedule.space_timesteps; what DDPM and DDIM here always used).
- "linspace", "leading", "trailing": as diffusers' DPMSolverMultistepScheduler names them
  (Lin et al. 2024, table 2): round(linspace(0, T-1, S+1)) without 0; k * (T // (S+1)) for
  k = 1..S; round(arange(T, 0, -T/S)) - 1 (starts at T-1, never reaches 0).
- "quadratic": DDIM's quadratic spacing, round((T-1) (k/(S-1))^2), k = 0..S-1, bumped up to be
  strictly increasing (denser near the data).
- "karras": Karras et al. 2022, sigma_k = (s_max^(1/7) + k/(S-1) (s_min^(1/7) - s_max^(1/7)))^7
  between the schedule's sigma at T-1 and at 0, at the fractional t of each sigma.
- "logsnr": uniform in log-SNR = -2 log sigma between the same ends (Lu et al. 2022).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.diffusion import GaussianDiffusion
from core.schedule import NoiseSchedule, space_timesteps

KARRAS_RHO = 7.0


def uniform(schedule: NoiseSchedule, steps: int) -> np.ndarray:
    return np.asarray(space_timesteps(schedule.num_timesteps, str(steps)), dtype=np.float64)


def linspace(schedule: NoiseSchedule, steps: int) -> np.ndarray:
    T = schedule.num_timesteps
    return np.round(np.linspace(0, T - 1, steps + 1))[1:]


def leading(schedule: NoiseSchedule, steps: int) -> np.ndarray:
    ratio = schedule.num_timesteps // (steps + 1)
    if ratio < 1:
        raise ValueError(f"the leading spacing needs T >= S + 1 ({steps} steps of "
                         f"{schedule.num_timesteps})")
    return np.arange(1, steps + 1, dtype=np.float64) * ratio


def trailing(schedule: NoiseSchedule, steps: int) -> np.ndarray:
    T = schedule.num_timesteps
    return np.sort(np.round(np.arange(T, 0, -T / steps)) - 1)[-steps:]


def quadratic(schedule: NoiseSchedule, steps: int) -> np.ndarray:
    T = schedule.num_timesteps
    t = np.round((T - 1) * (np.arange(steps) / max(steps - 1, 1)) ** 2)
    for k in range(1, steps):                      # strictly increasing: no step twice
        t[k] = max(t[k], t[k - 1] + 1)
    return t


def karras(schedule: NoiseSchedule, steps: int) -> np.ndarray:
    sigmas = schedule.sigmas
    low, high = sigmas[0] ** (1 / KARRAS_RHO), sigmas[-1] ** (1 / KARRAS_RHO)
    ramp = np.linspace(0.0, 1.0, steps)
    chosen = (high + ramp * (low - high)) ** KARRAS_RHO
    return _exact_ends(schedule.timestep_at(chosen)[::-1], schedule)


def logsnr(schedule: NoiseSchedule, steps: int) -> np.ndarray:
    log_sigmas = np.log(schedule.sigmas)
    chosen = np.exp(np.linspace(log_sigmas[-1], log_sigmas[0], steps))
    return _exact_ends(schedule.timestep_at(chosen)[::-1], schedule)


def _exact_ends(t: np.ndarray, schedule: NoiseSchedule) -> np.ndarray:
    """Interpolation round-off must not move the ends off 0 and T-1."""
    t = np.clip(t, 0.0, schedule.num_timesteps - 1.0)
    t[0], t[-1] = (0.0, schedule.num_timesteps - 1.0) if len(t) > 1 else (t[0], t[0])
    return t


@dataclass(frozen=True)
class SpacingSpec:
    name: str
    label: str
    timesteps: Callable[[NoiseSchedule, int], np.ndarray]


# the registry of step spacings: one line each; config, CLI and app read it
SPACINGS: dict[str, SpacingSpec] = {spec.name: spec for spec in (
    SpacingSpec("uniform", "uniform (improved DDPM)", uniform),
    SpacingSpec("linspace", "linspace (diffusers)", linspace),
    SpacingSpec("leading", "leading (diffusers)", leading),
    SpacingSpec("trailing", "trailing (diffusers)", trailing),
    SpacingSpec("quadratic", "quadratic (DDIM)", quadratic),
    SpacingSpec("karras", "Karras σ, ρ = 7", karras),
    SpacingSpec("logsnr", "uniform in log-SNR", logsnr),
)}
SPACING_NAMES = tuple(SPACINGS)
DEFAULT_SPACING = SPACING_NAMES[0]


def timesteps(schedule: NoiseSchedule, steps: int, spacing: str = DEFAULT_SPACING) -> np.ndarray:
    """The S = `steps` timesteps of `spacing` on `schedule`, sorted, float64 (S,).
    ValueError for an unknown spacing or steps outside [1, T]."""
    spec = SPACINGS.get(spacing)
    if spec is None:
        raise ValueError(f"spacing = {spacing!r} is invalid: must be one of "
                         + ", ".join(repr(n) for n in SPACINGS))
    T = schedule.num_timesteps
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= T:
        raise ValueError(f"steps = {steps!r} is invalid: must lie in [1, {T}]")
    chosen = np.asarray(spec.timesteps(schedule, int(steps)), dtype=np.float64)
    if len(np.unique(chosen)) != len(chosen):
        raise ValueError(f"the {spacing} spacing gives repeated timesteps for {steps} of {T} "
                         "steps; choose fewer steps or another spacing")
    return chosen


def respace(diffusion: GaussianDiffusion, steps: int,
            spacing: str = DEFAULT_SPACING) -> GaussianDiffusion:
    """`diffusion` on the timesteps of `spacing` (itself when that is every timestep)."""
    chosen = timesteps(diffusion.schedule, steps, spacing)
    if len(chosen) == diffusion.num_timesteps and np.array_equal(
            chosen, np.arange(diffusion.num_timesteps)):
        return diffusion
    return diffusion.respaced(chosen)
