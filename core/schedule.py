"""Noise schedules: beta_t, the derived alpha-bar arrays, and timestep respacing.

Conventions (docs/ARCHITECTURE.md): timesteps are zero-based, t in {0..T-1}, and index t
holds beta_{t+1} of the papers. All arrays are float64 numpy of shape (T,). The forward
process is

    q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)
    q(x_t | x_0)     = N(sqrt(abar_t) x_0, (1 - abar_t) I),   abar_t = prod_{s<=t} (1 - beta_s)
    q(x_{t-1} | x_t, x_0) = N(coef1_t x_0 + coef2_t x_t, beta-tilde_t I),
        beta-tilde_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)

with abar_{-1} = 1, so beta-tilde_0 = 0; its log is clipped to log(beta-tilde_1) as in
the improved-DDPM reference code.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

MAX_BETA = 0.999


def _linear_endpoints(num_timesteps: int) -> tuple[float, float]:
    """(beta_start, beta_end) of Ho et al. at T=1000, both scaled by 1000/T."""
    scale = 1000.0 / num_timesteps
    return scale * 1e-4, scale * 0.02


def _betas_from_alpha_bar(alpha_bar, num_timesteps: int) -> np.ndarray:
    """beta_t = 1 - abar(t+1/T) / abar(t/T) for a continuous abar on [0, 1], clipped at 0.999."""
    steps = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
    abar = alpha_bar(steps)
    return np.minimum(1.0 - abar[1:] / abar[:-1], MAX_BETA)


def linear_betas(num_timesteps: int) -> np.ndarray:
    """Ho et al.: beta linear from 1e-4 to 0.02 at T=1000, both ends scaled by 1000/T."""
    start, end = _linear_endpoints(num_timesteps)
    return np.linspace(start, end, num_timesteps, dtype=np.float64)


def quadratic_betas(num_timesteps: int) -> np.ndarray:
    """sqrt(beta) linear between the square roots of the linear schedule's ends."""
    start, end = _linear_endpoints(num_timesteps)
    return np.linspace(math.sqrt(start), math.sqrt(end), num_timesteps, dtype=np.float64) ** 2


def cosine_betas(num_timesteps: int) -> np.ndarray:
    """Nichol & Dhariwal: abar(s) = cos^2(((s + 0.008) / 1.008) pi/2), s = t/T."""
    offset = 0.008
    return _betas_from_alpha_bar(
        lambda s: np.cos((s + offset) / (1 + offset) * math.pi / 2) ** 2, num_timesteps)


def sigmoid_betas(num_timesteps: int) -> np.ndarray:
    """Jabri et al. 2022: abar(s) = (sigmoid(3) - sigmoid(6 s - 3)) / (sigmoid(3) - sigmoid(-3))."""
    start, end = -3.0, 3.0

    def sigmoid(z):
        return 1.0 / (1.0 + np.exp(-z))

    return _betas_from_alpha_bar(
        lambda s: (sigmoid(end) - sigmoid(s * (end - start) + start))
        / (sigmoid(end) - sigmoid(start)), num_timesteps)


def ve_betas(num_timesteps: int, sigma_min: float = 0.01, sigma_max: float = 10.0) -> np.ndarray:
    """The variance-exploding process of Song & Ermon (NCSN) in DDPM's variables: noise
    levels sigma_i = sigma_min (sigma_max / sigma_min)^(i / (T-1)) (geometric), x~_i = x_0 +
    sigma_i z. Scaled, x_i = x~_i / sqrt(1 + sigma_i^2) is exactly a DDPM chain with
    abar_i = 1 / (1 + sigma_i^2), so beta_i = 1 - abar_i / abar_{i-1} (abar_{-1} = 1): the
    model sees x~ times c_in = 1 / sqrt(1 + sigma^2) (Karras et al. 2022's input scaling)
    and eps-prediction with L_simple is denoising score matching with lambda(sigma) =
    sigma^2 (s = -eps / sigma; see core/sde.py)."""
    if num_timesteps == 1:
        sigmas = np.array([float(sigma_max)])
    else:
        sigmas = sigma_min * (sigma_max / sigma_min) ** (np.arange(num_timesteps) / (num_timesteps - 1))
    abar = 1.0 / (1.0 + sigmas ** 2)
    return 1.0 - abar / np.append(1.0, abar[:-1])


@dataclass(frozen=True)
class ScheduleSpec:
    """A beta schedule: its name (configs, checkpoints), UI label and betas(T, **params)
    -> (T,); params: the config fields (diffusion.<name>) it reads; process: "vp" (the
    DDPM chain, core.sde.VPSDE) or "ve" (variance exploding, core.sde.VESDE)."""

    name: str
    label: str
    betas: Callable[..., np.ndarray]
    params: tuple[str, ...] = ()
    process: str = "vp"


# The registry of beta schedules: one line per schedule; config, CLI and app read it.
SCHEDULES: dict[str, ScheduleSpec] = {spec.name: spec for spec in (
    ScheduleSpec("linear", "linear (Ho et al.)", linear_betas),
    ScheduleSpec("cosine", "cosine (Nichol & Dhariwal)", cosine_betas),
    ScheduleSpec("sigmoid", "sigmoid (Jabri et al.)", sigmoid_betas),
    ScheduleSpec("quadratic", "quadratic", quadratic_betas),
    ScheduleSpec("ve", "VE geometric σ (Song & Ermon)", ve_betas,
                 params=("sigma_min", "sigma_max"), process="ve"),
)}
SCHEDULE_NAMES = tuple(SCHEDULES)


def get_betas(name: str, num_timesteps: int, **params) -> np.ndarray:
    """The beta schedule `name` with `num_timesteps` steps: float64 array of shape (T,);
    params: the schedule's own settings (its ScheduleSpec.params; others are ignored).

    - "linear": Ho et al., beta linear from 1e-4 to 0.02 at T=1000; both ends scaled by
      1000/T so any T gives a similar total noise. For T < 50 the scaled end exceeds 0.999
      and such betas are clipped at 0.999.
    - "quadratic": sqrt(beta) linear between the square roots of the linear schedule's ends
      (same 1000/T scaling and clipping).
    - "cosine": Nichol & Dhariwal, abar(s) = cos^2(((s + 0.008) / 1.008) * pi/2) for
      s = t/T, beta_t = 1 - abar((t+1)/T) / abar(t/T), clipped at 0.999.
    - "sigmoid": Jabri et al. 2022 (as in denoising-diffusion-pytorch), abar(s) =
      (sigmoid(3) - sigmoid(6 s - 3)) / (sigmoid(3) - sigmoid(-3)); beta from abar as above.
    - "ve": Song & Ermon's geometric noise levels sigma_min..sigma_max (ve_betas).
    """
    if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, (int, np.integer)):
        raise ValueError(f"num_timesteps must be an integer, got {num_timesteps!r}")
    num_timesteps = int(num_timesteps)
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
    spec = SCHEDULES.get(name)
    if spec is None:
        raise ValueError(
            f"schedule name {name!r} is unknown; choose one of {', '.join(SCHEDULE_NAMES)}"
        )
    own = {key: float(value) for key, value in params.items() if key in spec.params}
    return np.minimum(spec.betas(num_timesteps, **own), MAX_BETA)


def extract(arr: np.ndarray, t: torch.Tensor, shape: Sequence[int],
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Gather arr[t] per batch element: tensor (B, 1, ..., 1) broadcastable to `shape`.

    `arr` is a (T,) numpy array, `t` a LongTensor (B,) on the target device. The gather runs
    on t's device (in `dtype`, so float64-less devices work).
    """
    values = torch.from_numpy(np.asarray(arr)).to(dtype=dtype).to(t.device)[t]
    return values.reshape(values.shape + (1,) * (len(shape) - 1))


class NoiseSchedule:
    """All per-timestep arrays derived from betas (float64 numpy, shape (T,)).

    Attributes: betas, alphas, alphas_cumprod (abar_t), alphas_cumprod_prev (abar_{t-1},
    1 at t=0), alphas_cumprod_next (abar_{t+1}, 0 at t=T-1), sqrt_alphas_cumprod,
    sqrt_one_minus_alphas_cumprod, log_one_minus_alphas_cumprod, sqrt_recip_alphas_cumprod,
    sqrt_recipm1_alphas_cumprod (sqrt(1/abar - 1)), posterior_variance (beta-tilde_t, 0 at
    t=0), posterior_log_variance_clipped (log beta-tilde with t=0 set to log beta-tilde_1;
    for T=1 it is log beta_0), posterior_mean_coef1 (on x_0), posterior_mean_coef2 (on x_t),
    snr (abar / (1 - abar)), log_snr; num_timesteps; timestep_map (int64 (T,), the original
    timestep of each index; identity unless respaced; float64 where a spacing chose
    fractional timesteps, core.spacing); base (the unrespaced schedule).
    """

    process: tuple = ("vp",)    # ("ve", sigma_min, sigma_max) for the VE schedule (from_name)

    def __init__(self, betas, timestep_map=None, base: NoiseSchedule | None = None):
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size == 0:
            raise ValueError(f"betas must be a non-empty 1-D array, got shape {betas.shape}")
        if not np.all(np.isfinite(betas)) or np.any(betas <= 0) or np.any(betas >= 1):
            raise ValueError("betas must all lie in the open interval (0, 1)")
        self.betas = betas
        self.num_timesteps = int(betas.shape[0])
        if timestep_map is None:
            timestep_map = np.arange(self.num_timesteps, dtype=np.int64)
        timestep_map = np.asarray(timestep_map, dtype=np.float64)
        if np.all(timestep_map == np.round(timestep_map)):
            timestep_map = timestep_map.astype(np.int64)     # fractional only for karras/logsnr
        if timestep_map.shape != betas.shape:
            raise ValueError(
                f"timestep_map must have shape {betas.shape} like betas, got {timestep_map.shape}"
            )
        self.timestep_map = timestep_map
        # the unrespaced schedule this one visits a subset of (itself when not respaced):
        # its sigma_at / timestep_at place points between the kept steps
        self.base = base if base is not None else self

        self.alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(self.alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.alphas_cumprod_next = np.append(self.alphas_cumprod[1:], 0.0)

        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1.0)

        one_minus_abar = 1.0 - self.alphas_cumprod
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / one_minus_abar
        if self.num_timesteps > 1:
            first_log = np.log(self.posterior_variance[1])
        else:
            first_log = np.log(betas[0])
        self.posterior_log_variance_clipped = np.append(
            first_log, np.log(self.posterior_variance[1:])
        )
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / one_minus_abar
        self.posterior_mean_coef2 = (
            (1.0 - self.alphas_cumprod_prev) * np.sqrt(self.alphas) / one_minus_abar
        )
        self.snr = self.alphas_cumprod / one_minus_abar
        self.log_snr = np.log(self.alphas_cumprod) - np.log(one_minus_abar)

    @classmethod
    def from_name(cls, name: str, num_timesteps: int, **params) -> NoiseSchedule:
        """NoiseSchedule(get_betas(name, num_timesteps, **params)), knowing its process:
        `process` is ("vp",) or, for "ve", ("ve", sigma_min, sigma_max) (core.sde reads it;
        respaced schedules read their base's)."""
        schedule = cls(get_betas(name, num_timesteps, **params))
        spec = SCHEDULES[name]
        if spec.process == "ve":
            defaults = inspect.signature(spec.betas).parameters
            schedule.process = ("ve", *(float(params.get(key, defaults[key].default))
                                        for key in spec.params))
        return schedule

    def respace(self, use_timesteps) -> NoiseSchedule:
        """The schedule that visits only `use_timesteps` (indices into this schedule).

        Keeps abar at the kept steps: new beta_i = 1 - abar_{k_i} / abar_{k_{i-1}} (abar before
        the first kept step is 1), as improved DDPM's respacing does. The new timestep_map
        maps each new index to the original (unrespaced) timestep, so respacing composes.
        Fractional timesteps (core.spacing's karras and logsnr) take abar = 1 / (1 + sigma^2)
        with log sigma interpolated linearly in t (`sigma_at`); their timestep_map is float.
        """
        values = np.unique(np.asarray(list(use_timesteps), dtype=np.float64))
        if values.size == 0:
            raise ValueError("use_timesteps must contain at least one timestep")
        if values[0] < 0 or values[-1] > self.num_timesteps - 1:
            raise ValueError(
                f"use_timesteps must lie in [0, {self.num_timesteps - 1}], "
                f"got {values[0]:g}..{values[-1]:g}"
            )
        if np.all(values == np.round(values)):
            steps = values.astype(np.int64)
            kept_abar, kept_map = self.alphas_cumprod[steps], self.timestep_map[steps]
        else:
            if self.base is not self:
                raise ValueError("fractional timesteps respace an unrespaced schedule only")
            kept_abar = 1.0 / (1.0 + self.sigma_at(values) ** 2)
            kept_map = values
        previous_abar = np.append(1.0, kept_abar[:-1])
        new_betas = 1.0 - kept_abar / previous_abar
        return NoiseSchedule(new_betas, timestep_map=kept_map, base=self.base)

    @property
    def sigmas(self) -> np.ndarray:
        """sigma_t = sqrt((1 - abar_t) / abar_t): the noise scale of x_t / sqrt(abar_t) (the
        variance-exploding view of Karras et al. 2022), float64 (T,), increasing in t."""
        return np.sqrt((1.0 - self.alphas_cumprod) / self.alphas_cumprod)

    def sigma_at(self, t) -> np.ndarray:
        """sigma at (possibly fractional) timesteps t in [0, T-1]: log sigma interpolated
        linearly between the integer timesteps (as k-diffusion and diffusers do)."""
        return np.exp(np.interp(np.asarray(t, dtype=np.float64), np.arange(self.num_timesteps),
                                np.log(self.sigmas)))

    def timestep_at(self, sigma) -> np.ndarray:
        """The inverse of sigma_at: the fractional timestep of each sigma (clipped to the
        schedule's range [sigma_0, sigma_{T-1}])."""
        return np.interp(np.log(np.asarray(sigma, dtype=np.float64)), np.log(self.sigmas),
                         np.arange(self.num_timesteps, dtype=np.float64))

    def __repr__(self) -> str:
        return (f"NoiseSchedule(T={self.num_timesteps}, beta {self.betas[0]:.3g}.."
                f"{self.betas[-1]:.3g})")


def space_timesteps(num_timesteps: int, section_counts) -> list[int]:
    """Which timesteps of a T-step schedule to keep for fast sampling (improved DDPM).

    `section_counts` is one of
    - "ddimN": the stride-s steps range(0, T, s) for the stride that gives exactly N steps
      (as DDIM's "uniform" skip); a ValueError if no stride gives N;
    - an int string "250" or an int: that many steps spread evenly over [0, T-1];
    - "10,15,20" or a list [10, 15, 20]: T is split into that many equal sections and the
      i-th section keeps section_counts[i] evenly spread steps.
    Returns the sorted list of kept timesteps (zero-based).
    """
    if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, (int, np.integer)) \
            or num_timesteps < 1:
        raise ValueError(f"num_timesteps must be a positive integer, got {num_timesteps!r}")
    if isinstance(section_counts, str):
        text = section_counts.strip()
        stride_spec = re.fullmatch(r"ddim(.*)", text)       # DDIM's "uniform" skip
        if stride_spec:
            try:
                desired = int(stride_spec.group(1))
            except ValueError:
                raise ValueError(
                    f"section_counts {section_counts!r}: expected 'ddimN' with an integer N"
                ) from None
            for stride in range(1, num_timesteps + 1):
                if len(range(0, num_timesteps, stride)) == desired:
                    return list(range(0, num_timesteps, stride))
            raise ValueError(
                f"section_counts {section_counts!r}: no integer stride gives exactly "
                f"{desired} steps out of {num_timesteps}"
            )
        try:
            counts = [int(part) for part in text.split(",")]
        except ValueError:
            raise ValueError(
                f"section_counts {section_counts!r}: expected 'ddimN', an integer or "
                "comma-separated integers"
            ) from None
    elif isinstance(section_counts, (int, np.integer)) and not isinstance(section_counts, bool):
        counts = [int(section_counts)]
    else:
        counts = [int(c) for c in section_counts]
    if not counts or any(c < 1 for c in counts):
        raise ValueError(f"section_counts {section_counts!r}: every count must be >= 1")
    if len(counts) > num_timesteps:
        raise ValueError(
            f"section_counts {section_counts!r}: {len(counts)} sections exceed {num_timesteps} steps"
        )

    size_per_section, extra = divmod(num_timesteps, len(counts))
    start = 0
    kept: list[int] = []
    for i, count in enumerate(counts):
        size = size_per_section + (1 if i < extra else 0)
        if count > size:
            raise ValueError(
                f"section_counts {section_counts!r}: section {i} has {size} steps, "
                f"cannot keep {count}"
            )
        stride = 1.0 if count <= 1 else (size - 1) / (count - 1)
        position = 0.0
        for _ in range(count):
            kept.append(start + round(position))
            position += stride
        start += size
    return sorted(set(kept))
