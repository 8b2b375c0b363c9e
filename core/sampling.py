"""The sampling loop: any registered sampler (core.samplers) as a generator of steps, on
the eager path or the CUDA-graph path (core.fast_step), and classifier-free guidance.

`sample_steps` walks the indices t = S-1, ..., 0 of a (possibly respaced) diffusion and
yields one `StepRecord` per step, so a caller can stop, throttle, or record any subset.
All randomness comes from the given torch.Generator, drawn in the same order on every path:
x_T (unless given), then z before each step that adds noise. The same seed gives the same
run. `clip_denoised=None` means: clamp pred_x0 to [-1, 1] for image diffusions, not for
continuous data. `ddpm_sample`, `ddim_sample`, `p_sample` and `ddim_step` are the two
original samplers under their old names.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

from core.device import AutocastModel
from core.diffusion import GaussianDiffusion
from core.fast_step import (
    DEFAULT_COMPILE_MODE,
    StepRunner,
    check_compile_mode,
    check_path_and_precision,
    compile_network,
    step_runner,
)
from core.samplers import DEFAULT_SAMPLER, SamplerRun, SamplerSpec, get_sampler
from core.samplers import ddim as _ddim
from core.samplers import ddpm as _ddpm
from core.samplers.base import ETA
from core.spacing import DEFAULT_SPACING, respace


class StepRecord:
    """One reverse step.

    t: index of the step in the (possibly respaced) diffusion, S-1 down to 0.
    x: the sample after this step, x_{t-1} of the papers (x_0 when t == 0), (B, ...).
    pred_x0, pred_eps: the model's estimates of x0 and eps at x_t, (B, ...).
    variance: mean of the variance of the noise added at this step (0.0 where none); a
    float, read from the device only when asked for.
    """

    __slots__ = ("t", "x", "pred_x0", "pred_eps", "_variance")

    def __init__(self, t: int, x: torch.Tensor, pred_x0: torch.Tensor, pred_eps: torch.Tensor,
                 variance):
        self.t, self.x, self.pred_x0, self.pred_eps = t, x, pred_x0, pred_eps
        self._variance = variance

    @property
    def variance(self) -> float:
        return float(self._variance)

    def __repr__(self) -> str:
        return f"StepRecord(t={self.t}, x={tuple(self.x.shape)})"


def standard_normal(shape, generator: torch.Generator | None, device,
                    dtype=torch.float32) -> torch.Tensor:
    """N(0, I) of `shape`, drawn on the generator's device and moved to `device`."""
    draw_device = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=draw_device,
                       dtype=dtype).to(device)


def make_run(sampler: str | SamplerSpec, diffusion: GaussianDiffusion, model, *,
             options: dict | None = None, clip_denoised=None, model_kwargs=None,
             device="cpu", dtype: torch.dtype = torch.float32) -> SamplerRun:
    """The sampler's run over every index of `diffusion` (respace it for fewer steps);
    dtype float64 keeps its tables in double precision (exact analysis, the lab)."""
    spec = get_sampler(sampler)
    return spec.make_run(diffusion, model, options=spec.resolve_options(options),
                         clip=clip_denoised, model_kwargs=model_kwargs, device=device,
                         dtype=dtype)


@torch.no_grad()
def sample_steps(sampler: str | SamplerSpec, diffusion: GaussianDiffusion, model, shape, *,
                 options: dict | None = None, noise=None, generator: torch.Generator | None = None,
                 device="cpu", clip_denoised=None, model_kwargs=None,
                 path: str = "auto") -> Iterator[StepRecord]:
    """Sample from x_T ~ N(0, I) (or `noise`) with a registered sampler over every index of
    `diffusion`; one StepRecord per step S-1..0, the last one's x is the sample x_0.

    path: "auto" (the CUDA graph on a CUDA device unless $DIFFUSION_EXPLORER_FAST_PATH says
    eager; eager elsewhere), "eager" or "graph" (see core.fast_step.step_runner).
    """
    device = torch.device(device)
    dtype = noise.dtype if noise is not None and noise.dtype == torch.float64 else torch.float32
    run = make_run(sampler, diffusion, model, options=options, clip_denoised=clip_denoised,
                   model_kwargs=model_kwargs, device=device, dtype=dtype)
    yield from run_steps(run, shape, noise=noise, generator=generator, path=path)


@torch.no_grad()
def run_steps(run: SamplerRun, shape, *, noise=None, generator=None, path: str = "auto",
              runner: StepRunner | None = None) -> Iterator[StepRecord]:
    """The loop of sample_steps for a prepared run (on `runner` when given)."""
    shape = tuple(int(s) for s in shape)
    x = initial_noise(shape, noise, generator, run.device)
    run.start(x)
    runner = runner if runner is not None else step_runner(run, shape, path)
    for step in reversed(range(run.num_steps)):
        z = standard_normal(shape, generator, run.device) if run.noise_steps[step] else None
        out = runner(x, step, z)
        yield StepRecord(step, out.x_prev, out.pred_x0, out.pred_eps,
                         run.record_variance(step, out))
        x = out.x_prev


def initial_noise(shape, noise, generator, device) -> torch.Tensor:
    """x_T: `noise` (checked against shape) or a draw from `generator`."""
    if noise is not None:
        if tuple(noise.shape) != tuple(shape):
            raise ValueError(f"noise shape {tuple(noise.shape)} must equal shape {tuple(shape)}")
        return noise.to(device)
    return standard_normal(shape, generator, device)


class FastSampler:
    """A sampler on a chosen path and precision (benchmarks, and sampling at full speed).

    Args: model (eval mode), diffusion (unrespaced), shape (N, ...) of the batch, sampler (a
    registered name; default core.samplers.DEFAULT_SAMPLER), steps (None: the sampler's
    default for T) on `spacing` (core.spacing), eta (DDIM), options (other sampler options), clip (None: images only),
    model_kwargs (static for the whole run, e.g. {"y": labels}), device, path "auto" |
    "eager" | "graph" | "compile" | "compile+graph" (auto: graph on CUDA), precision "fp32"
    | "bf16" | "auto" (bf16 on CUDA), compile_mode.
    Attributes: active ("graph" or "eager"), reason, run (the SamplerRun), `describe()`.
    """

    def __init__(self, model: nn.Module, diffusion: GaussianDiffusion, shape, *,
                 sampler: str | SamplerSpec | None = None, steps: int | None = None,
                 eta: float = 0.0, options: dict | None = None, clip=None,
                 model_kwargs: dict | None = None, device="cpu", path: str = "auto",
                 precision: str = "auto", compile_mode: str = DEFAULT_COMPILE_MODE,
                 spacing: str = DEFAULT_SPACING):
        spec = get_sampler(sampler if sampler is not None else DEFAULT_SAMPLER)
        if not math.isfinite(eta) or eta < 0:
            raise ValueError(f"eta = {eta!r} is invalid: must be a finite number >= 0")
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        if path == "auto":
            path = "graph" if cuda else "eager"
        check_path_and_precision(path, precision)
        check_compile_mode(path, compile_mode)
        T = diffusion.num_timesteps
        steps = spec.default_steps(T) if steps is None else steps
        if not 1 <= int(steps) <= T:
            raise ValueError(f"steps = {steps!r} is invalid: must lie in [1, {T}]")
        self.diffusion = diffusion if spec.adaptive else respace(diffusion, int(steps), spacing)
        self.shape = tuple(int(s) for s in shape)
        self.precision_used = ("bf16" if cuda else "fp32") if precision == "auto" else precision
        self.compiled = path in ("compile", "compile+graph")
        network = compile_network(model, compile_mode) if self.compiled else model
        self.model = (AutocastModel(network, self.device.type) if self.precision_used == "bf16"
                      else network)
        options = dict(options or {})
        options.setdefault(ETA.name, eta)
        self.run = make_run(spec, self.diffusion, self.model, options=options,
                            clip_denoised=clip, model_kwargs=model_kwargs, device=self.device)
        self.runner = step_runner(self.run, self.shape,
                                  "graph" if path in ("graph", "compile+graph") else "eager")

    @property
    def active(self) -> str:
        return self.runner.active

    @active.setter
    def active(self, value: str) -> None:         # tests emulate a CUDA device
        self.runner.active = value

    @property
    def reason(self) -> str:
        return self.runner.reason

    @reason.setter
    def reason(self, value: str) -> None:
        self.runner.reason = value

    @property
    def clip(self):
        return self.run.clip

    def describe(self) -> str:
        head = {"graph": "CUDA graph", "eager": f"eager ({self.device.type})"}[self.active]
        details = ["bf16 autocast" if self.precision_used == "bf16" else "fp32"]
        if self.compiled:
            details.append("compiled")
        text = f"{head}: {', '.join(details)}"
        return text + (f" [{self.reason}]" if self.reason else "")

    @torch.no_grad()
    def warm_up(self) -> None:
        """Capture the graph now, so the first real run does not pay for it."""
        self.runner.warm_up()

    @torch.no_grad()
    def records(self, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> Iterator[StepRecord]:
        """One StepRecord per step S-1..0 (copies), like sample_steps."""
        yield from run_steps(self.run, self.shape, noise=noise, generator=generator,
                             runner=self.runner)

    @torch.no_grad()
    def sample(self, noise: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """The final sample x_0 (a new tensor of `shape`)."""
        x = initial_noise(self.shape, noise, generator, self.device).to(torch.float32)
        self.run.start(x)
        for step in reversed(range(self.run.num_steps)):
            z = (standard_normal(self.shape, generator, self.device) if self.run.noise_steps[step]
                 else None)
            x = self.runner(x, step, z, copy=False).x_prev
        return x.clone()


def ddpm_sample(diffusion: GaussianDiffusion, model, shape, *, noise=None,
                generator: torch.Generator | None = None, device="cpu",
                clip_denoised=None, model_kwargs=None) -> Iterator[StepRecord]:
    """Ancestral sampling (core.samplers.ddpm), eager, one StepRecord per step T-1..0."""
    return sample_steps(_ddpm.SPEC, diffusion, model, shape, noise=noise, generator=generator,
                        device=device, clip_denoised=clip_denoised, model_kwargs=model_kwargs,
                        path="eager")


def ddim_sample(diffusion: GaussianDiffusion, model, shape, *, eta: float = 0.0, noise=None,
                generator: torch.Generator | None = None, device="cpu",
                clip_denoised=None, model_kwargs=None) -> Iterator[StepRecord]:
    """DDIM (core.samplers.ddim) over every index of `diffusion`, eager."""
    if not math.isfinite(eta) or eta < 0:
        raise ValueError(f"eta = {eta!r} is invalid: must be a finite number >= 0")
    return sample_steps(_ddim.SPEC, diffusion, model, shape, options={"eta": eta},
                        noise=noise, generator=generator, device=device,
                        clip_denoised=clip_denoised, model_kwargs=model_kwargs, path="eager")


def _one_step(spec: SamplerSpec, diffusion, model, x, t, options, clip_denoised, model_kwargs,
              generator) -> StepRecord:
    if isinstance(t, torch.Tensor) and t.ndim > 0:
        values = t.unique()
        if values.numel() != 1:
            raise ValueError("all batch elements must share one timestep t")
        t = values
    step = int(t)
    run = make_run(spec, diffusion, model, options=options, clip_denoised=clip_denoised,
                   model_kwargs=model_kwargs, device=x.device)
    z = (standard_normal(x.shape, generator, x.device, x.dtype) if run.noise_steps[step]
         else None)
    t_batch = torch.full((x.shape[0],), step, device=x.device, dtype=torch.long)
    run.start(x)
    with torch.no_grad():
        out = run.step(x, t_batch, z, run.variant(step))
    return StepRecord(step, out.x_prev, out.pred_x0, out.pred_eps, run.record_variance(step, out))


def p_sample(diffusion: GaussianDiffusion, model, x: torch.Tensor, t, *, clip_denoised=None,
             model_kwargs=None, generator: torch.Generator | None = None) -> StepRecord:
    """One ancestral step x_{t-1} ~ p_theta(x_{t-1} | x_t) from index t (an int, or a
    LongTensor (B,) holding one value)."""
    return _one_step(_ddpm.SPEC, diffusion, model, x, t, None, clip_denoised, model_kwargs,
                     generator)


def ddim_step(diffusion: GaussianDiffusion, model, x: torch.Tensor, step: int, *,
              eta: float = 0.0, clip_denoised=None, model_kwargs=None,
              generator: torch.Generator | None = None) -> StepRecord:
    """One DDIM step from index `step` to the previous index (core.samplers.ddim)."""
    return _one_step(_ddim.SPEC, diffusion, model, x, step, {"eta": eta}, clip_denoised,
                     model_kwargs, generator)


class GuidedModel(nn.Module):
    """Classifier-free guidance (Ho & Salimans 2022) around a class-conditional model.

    forward(x, t, y) runs the conditional (labels y) and unconditional (labels null_class)
    passes as one doubled batch and returns, on the mean channels,

        out = (1 + w) out_cond - w out_uncond,    w = guidance_scale,

    which is the guided eps formula for an eps model. For x0 and v models it is exactly
    the same guidance: x0 and v are affine in eps at fixed (x_t, t), and the weights
    (1 + w) and -w sum to 1, so mixing outputs equals converting the mixed eps. With a
    learned variance (2C output channels for C input channels) the variance channels come
    from the conditional half. With y None the model is called once, unguided.
    """

    def __init__(self, model, guidance_scale: float, null_class: int):
        super().__init__()
        if not math.isfinite(guidance_scale):
            raise ValueError(f"guidance_scale = {guidance_scale!r} is invalid: must be finite")
        self.model = model
        self.guidance_scale = float(guidance_scale)
        self.null_class = int(null_class)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                **kwargs) -> torch.Tensor:
        if y is None:
            return self.model(x, t, **kwargs)
        null = torch.full_like(y, self.null_class)
        both = self.model(torch.cat([x, x]), torch.cat([t, t]), y=torch.cat([y, null]), **kwargs)
        cond, uncond = both.chunk(2, dim=0)
        channels = x.shape[1]
        w = self.guidance_scale
        guided = (1.0 + w) * cond[:, :channels] - w * uncond[:, :channels]
        if cond.shape[1] == 2 * channels:
            guided = torch.cat([guided, cond[:, channels:]], dim=1)
        return guided


__all__ = ["FastSampler", "GuidedModel", "StepRecord", "ddim_sample", "ddim_step", "ddpm_sample", "make_run",
           "initial_noise", "p_sample", "run_steps", "sample_steps", "standard_normal"]
