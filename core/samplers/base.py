"""What a sampler is: a registry entry (`SamplerSpec`) and, per run, a `SamplerRun` whose
`step` is the one reverse update, written once as a function of device tensors. The eager
loop (core.sampling) calls it; the CUDA-graph path (core.fast_step) captures the same call.

A step must be capture-safe: it reads per-step values from device tables indexed by the
LongTensor t (never a Python number that changes between steps), makes no tensor from host
data, never reads a tensor back to the host (.item(), float(), bool(), .tolist()) and uses no
data-dependent shapes. Host-side facts about a step (does it draw noise, what variance to
record) come from numpy tables built once per run.

Shapes: x, noise, pred_x0, pred_eps (B, ...) as the sample; t (B,) int64 step indices into
the run's (possibly respaced) diffusion, all equal within a step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

from core.diffusion import GaussianDiffusion
from core.options import DataKind


@dataclass(frozen=True)
class OptionSpec:
    """A sampler setting the UI, the CLI and configs offer: kind "float" (low..high, step;
    scale "log" for tolerances spanning decades) or "choice" (`choices`: (value, label)
    pairs). Samplers that share an option use the same OptionSpec object."""

    name: str
    label: str
    default: Any
    help: str
    kind: str = "float"
    low: float = 0.0
    high: float = 1.0
    step: float = 0.1
    choices: tuple[tuple[str, str], ...] = ()
    scale: str = "linear"

    def check(self, value) -> Any:
        """The value as this option stores it; ValueError naming the option otherwise."""
        if self.kind == "choice":
            allowed = [v for v, _ in self.choices]
            if value not in allowed:
                raise ValueError(f"{self.name} = {value!r} is invalid: must be one of "
                                 + ", ".join(repr(v) for v in allowed))
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or not self.low <= value <= self.high:
            raise ValueError(f"{self.name} = {value!r} is invalid: must be a number from "
                             f"{self.low:g} to {self.high:g}")
        return float(value)


ETA = OptionSpec("eta", "η", 0.0, "DDIM noise scale η: 0 deterministic, 1 DDPM's posterior "
                 "variance β̃ (Song et al. 2021, eq. 16)", low=0.0, high=1.0)
ANALYTIC = "analytic"        # the VARIANCE choice that means Analytic-DPM's sigma*^2
VARIANCE = OptionSpec(
    "variance", "Variance", "model",
    "The variance of each ancestral step: the model's own (fixed β̃/β or learned Σθ), or "
    "Analytic-DPM's optimal σ*² (Bao et al. 2022), estimated first from the network's ε on "
    "a sample of the training data",
    kind="choice", choices=(("model", "as trained"), (ANALYTIC, "Analytic-DPM")))


class StepOutput(NamedTuple):
    """What one step returns: x_prev (the sample after the step), pred_x0 and pred_eps (the
    model's estimates at x_t, after clipping), variance (a 0-d tensor: the mean variance of
    the noise this step adds, for the record)."""

    x_prev: torch.Tensor
    pred_x0: torch.Tensor
    pred_eps: torch.Tensor
    variance: torch.Tensor


def resolve_clip(clip, diffusion: GaussianDiffusion, device: torch.device):
    """The x0 clamp for p_mean_variance, made once per run: None -> [-1, 1] for images and
    none for vectors; True -> (-1.0, 1.0); a (low, high) box -> float32 device tensors (so a
    step never copies it from the host). ValueError for a box that is not a pair."""
    if clip is None:
        clip = diffusion.data_kind is DataKind.IMAGE
    if isinstance(clip, (tuple, list)):
        if len(clip) != 2:
            raise ValueError(f"a clip box must be a (low, high) pair, got {len(clip)} items")
        return tuple(torch.as_tensor(np.asarray(bound, dtype=np.float32), device=device)
                     for bound in clip)
    return (-1.0, 1.0) if bool(clip) else False


class SamplerRun:
    """One sampling run of a sampler on `diffusion` (respaced to the run's steps).

    Subclasses set `noise_steps` (numpy bool (S,): step index t draws z ~ N(0, I) before its
    step) and implement `step(x, t, noise)`, which must add no noise at an index whose
    noise_steps is False whatever `noise` holds (the graph path passes its noise buffer at
    every step; gate it with a per-step table). `record_variance` may be overridden. Tables
    go on `device` once, in __init__ (see `table`).
    """

    def __init__(self, diffusion: GaussianDiffusion, model, *, options: dict,
                 clip=None, model_kwargs: dict | None = None, device="cpu",
                 dtype: torch.dtype = torch.float32):
        self.diffusion = diffusion
        self.dtype = dtype
        self.model = model
        self.options = dict(options)
        self.device = torch.device(device)
        self.clip = resolve_clip(clip, diffusion, self.device)
        self.model_kwargs = dict(model_kwargs or {})
        self.num_steps = diffusion.num_timesteps
        self.noise_steps = np.zeros(self.num_steps, dtype=bool)
        diffusion.device_tables(self.device, dtype)   # before any capture

    def table(self, values) -> torch.Tensor:
        """A device tensor of per-step values (S,) in the run's dtype (float32; float64 for
        exact analysis), indexed by t in `step`."""
        # a copy: numpy calls a reversed 1-element view contiguous, torch refuses its stride
        return torch.as_tensor(np.array(values, dtype=np.float64), dtype=self.dtype,
                               device=self.device)

    # -- points between the steps (continuous-time solvers) ---------------------------------
    def grid_sigmas(self) -> np.ndarray:
        """VE sigmas (sqrt((1 - abar) / abar)) of the run's steps by index, float64 (S,);
        the data after index 0 is sigma 0."""
        return self.diffusion.schedule.sigmas

    def point_tables(self, ve_sigmas) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Device tables (alpha, sigma, t_model), float32 of ve_sigmas' shape, of points of
        the forward process given by their VE sigma: alpha = 1 / sqrt(1 + s^2), sigma =
        s alpha (x = alpha x0 + sigma eps), t_model the (fractional) original timestep the
        network sees there (the unrespaced schedule's interpolation; 0 for the data)."""
        s = np.asarray(ve_sigmas, dtype=np.float64)
        alpha = 1.0 / np.sqrt(1.0 + s ** 2)
        base = self.diffusion.schedule.base
        t_model = np.where(s > 0, base.timestep_at(np.maximum(s, 1e-30)), 0.0)
        return self.table(alpha), self.table(s * alpha), self.table(t_model)

    def predict(self, x: torch.Tensor, index: torch.Tensor, tables) -> tuple:
        """(x0, eps) of the model at x, at the points tables[..][index] (index (B,) or
        (B, ...) as the tables allow), with this run's labels and clamp."""
        alpha, sigma, t_model = (table[index] for table in tables)
        view = (-1,) + (1,) * (x.ndim - 1)
        return self.diffusion.predict_at(self.model, x, t_model, alpha.reshape(view),
                                         sigma.reshape(view), self.model_kwargs, self.clip)

    def start(self, x: torch.Tensor) -> None:
        """Called once before the first step of a run from x_T, outside any capture: reset
        per-run state (multistep solvers' history buffers, in place)."""

    def model_output(self, x: torch.Tensor, t: torch.Tensor) -> dict:
        """diffusion.p_mean_variance with this run's model, labels and clamp."""
        return self.diffusion.p_mean_variance(self.model, x, t, self.model_kwargs,
                                              clip_denoised=self.clip)

    capturable = True    # the same op sequence at every step of a variant (one CUDA graph)

    def step(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None,
             variant=0) -> StepOutput:
        raise NotImplementedError

    def variant(self, step: int):
        """Which form of the update step index `step` takes (host side; e.g. a first-order
        last step): steps of one variant share one captured graph."""
        return 0

    def state_tensors(self) -> list[torch.Tensor]:
        """Tensors the steps update in place besides x (multistep history)."""
        return []

    def record_variance(self, step: int, output: StepOutput):
        """The variance a StepRecord shows for step index `step` (a float, or a 0-d tensor
        read only when the record is)."""
        return output.variance if self.noise_steps[step] else 0.0


@dataclass(frozen=True)
class SamplerSpec:
    """A registry entry.

    name: what configs, checkpoints of settings and the CLI use; label: the UI's text;
    description: a tooltip; deterministic: no noise after x_T with the default options;
    options: the OptionSpecs it takes; model_calls_per_step: network evaluations per step
    (the NFE of a run is this times the steps); needs_learned_variance: only for models with
    a learned Sigma_theta; default_steps(T): the step count when none is given; adaptive:
    the sampler picks its own steps (an adaptive ODE solver: no spacing, no step count, its
    network calls counted as it runs, not capturable as one graph);
    make_run(diffusion, model, options=..., clip=..., model_kwargs=..., device=...) ->
    SamplerRun on the respaced diffusion (and dtype=... for float64 analysis); nfe(steps): the network calls of a run when
    they are not steps x model_calls_per_step (see network_calls); order: the global order
    of a deterministic solver of the probability-flow ODE (its error shrinks as h^order,
    tests/test_solver_orders.py measures it), None for stochastic samplers;
    calls_per_step(options): network calls per step where an option sets them (Langevin,
    predictor-corrector); the run then takes steps x that many sub-steps.
    """

    name: str
    label: str
    description: str
    deterministic: bool
    make_run: Callable[..., SamplerRun]
    options: tuple[OptionSpec, ...] = ()
    model_calls_per_step: int = 1
    needs_learned_variance: bool = False
    default_steps: Callable[[int], int] = field(default=lambda T: T)
    adaptive: bool = False
    nfe: Callable[[int], int] | None = None
    order: int | None = None
    calls_per_step: Callable[[dict], int] | None = None

    def network_calls(self, steps: int, options: dict | None = None) -> int:
        """Network evaluations of a run of `steps` steps (`nfe(steps)` where a sampler
        differs from steps x model_calls_per_step, e.g. a cheaper last step;
        steps x calls_per_step(options) where an option sets it, e.g. Langevin's K steps
        per noise level; options default as resolve_options gives them)."""
        if self.calls_per_step is not None:
            return steps * self.calls_per_step(self.resolve_options(options))
        return self.nfe(steps) if self.nfe is not None else steps * self.model_calls_per_step

    def option_names(self) -> tuple[str, ...]:
        return tuple(option.name for option in self.options)

    def resolve_options(self, given: dict | None) -> dict:
        """Every option of this sampler: the given value (checked) or its default. Options
        of other samplers are ignored (a form holds all of them)."""
        given = given or {}
        return {option.name: option.check(given[option.name]) if given.get(option.name)
                is not None else option.default for option in self.options}
