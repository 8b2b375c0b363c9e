"""Generate samples with a trained model and keep a compact trajectory for display.

`sample` runs any registered sampler (core.samplers) on a respaced schedule, optionally with
classifier-free guidance, and records x_t and the model's x0 estimate every few steps:
uint8 (S, N, H, W, C) for images, float32 (S, N, D) for vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from core.diffusion import GaussianDiffusion
from core.fast_step import step_runner
from core.samplers import DEFAULT_SAMPLER, get_sampler, samplers
from core.samplers.base import ANALYTIC, ETA, VARIANCE
from core.sampling import GuidedModel, make_run, run_steps
from core.spacing import DEFAULT_SPACING
from core.spacing import respace as respace_by


@dataclass
class Trajectory:
    """Recorded frames of one sampling run (S frames, N samples).

    timesteps: int64 (S,). Frame 0 is x_T (timesteps[0] = T); frame k >= 1 holds the x after
        the reverse step at original timestep timesteps[k]; the last frame is after t = 0.
    x, pred_x0: (S, N, H, W, C) uint8 for images, (S, N, D) float32 for vectors; pred_x0 is
        the model's x0 estimate at that step (zeros in frame 0).
    variance: float64 (S,) mean variance of the noise added at each step (1 in frame 0 for
        the prior N(0, I), 0 for the noise-free last step and for DDIM with eta = 0).
    final: float32 (N, C, H, W) in [-1, 1] or (N, D): the last x in data space.
    final_uint8: (N, H, W, C) uint8 for images, else None.
    kind: "image" or "vector". completed: False when should_stop ended the run early (then
    `final` is the last x reached, not a finished sample). labels: int64 (N,) or None.
    path: which code ran the steps, e.g. "CUDA graph" or "eager (cpu)", with the reason of
    a fallback in brackets (core.fast_step.StepRunner.describe).
    """

    timesteps: np.ndarray
    x: np.ndarray
    pred_x0: np.ndarray
    variance: np.ndarray
    final: np.ndarray
    final_uint8: np.ndarray | None
    kind: str
    completed: bool = True
    labels: np.ndarray | None = None
    path: str = ""


def images_to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8, values round((x + 1) * 127.5) clipped."""
    scaled = ((x.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()


def sample(model, diffusion: GaussianDiffusion, n: int, data_shape: Sequence[int], *,
           sampler: str = DEFAULT_SAMPLER, steps: int | None = None, eta: float = 0.0,
           options: dict | None = None, spacing: str = DEFAULT_SPACING,
           noise: torch.Tensor | None = None,
           guidance: float = 0.0, label: int | Sequence[int] | None = None,
           num_classes: int | None = None, seed: int = 0, record_every: int = 1,
           clip: bool | tuple | None = None, data_box: tuple | None = None,
           analytic_data: torch.Tensor | None = None, device="cpu",
           progress: Callable[[int, int], None] | None = None,
           should_stop: Callable[[], bool] | None = None) -> Trajectory:
    """Draw n samples of shape data_shape ((C, H, W) or (D,)) from `model` (in eval mode).

    sampler: a registered sampler (core.samplers) run on `steps` timesteps chosen by
    `spacing` (core.spacing; steps None: the sampler's default, e.g. all T for DDPM, min(50,
    T) for DDIM; adaptive samplers choose their own), with its options (`options`, and `eta`
    for DDIM's noise scale). `noise`: the initial x_T (n, *data_shape), else drawn from the
    seed (so runs of different samplers can start from the same x_T). For a class-conditional model (num_classes
    given) label picks the class (an int or one per sample; None samples unconditionally
    with the null class) and guidance w mixes (1 + w) eps(x, y) - w eps(x, null). clip
    clamps the x0 estimate: True to [-1, 1], a (low, high) pair to that box, False not at
    all; None means [-1, 1] for images and, for vectors, the training data's box `data_box`
    (Trainer.data_box, stored in checkpoints) when given, else no clamp. Without it the
    cosine schedule's last step (abar ~ 2e-9) multiplies the eps error by ~2e4 and most
    few-step samples of 2-D data diverge (docs/REPRODUCTION.md section 4). All noise
    comes from a generator seeded with `seed`. With `analytic_data` (a sample of the training
    data, (M, ...)), DDPM steps use Analytic-DPM's sigma*^2 instead of the model's variance
    (Bao et al. 2022; core.analytic_dpm): Gamma_t is first estimated with the network on that
    sample at every step of the respaced schedule (unconditionally for class-conditional
    models), which costs about as much as sampling M examples; progress then counts both
    passes. progress(i, total) follows each step;
    should_stop() is polled before each step and ends the run early (completed=False).
    record_every k keeps every k-th step, always the first (x_T) and the last.
    """
    data_shape = tuple(int(s) for s in data_shape)
    kind = "image" if len(data_shape) == 3 else "vector"
    _check_positive("n", n)
    _check_positive("record_every", record_every)
    spec = get_sampler(sampler)
    options = dict(options or {})
    if ETA.name in spec.option_names():
        options.setdefault(ETA.name, eta)
    device = torch.device(device)
    respaced = _respace(diffusion, spec, steps, spacing)
    model_kwargs, labels = _labels(label, num_classes, guidance, n, device)
    analytic_steps, stopped = 0, False
    if analytic_data is not None:
        if VARIANCE.name not in spec.option_names():
            takers = [s.label for s in samplers() if VARIANCE in s.options]
            raise ValueError(f"the Analytic-DPM variance is an option of {', '.join(takers)}, "
                             f"not of {spec.label}")
        options[VARIANCE.name] = ANALYTIC
        analytic = _analytic(model, respaced, analytic_data, data_shape, num_classes, seed,
                             device, progress, should_stop)
        stopped = analytic is None      # then the trajectory holds x_T only
        if analytic is not None:
            respaced, analytic_steps = analytic, analytic.num_timesteps
    if guidance != 0.0:
        model = GuidedModel(model, guidance, null_class=num_classes)
    if clip is None:
        clip = True if kind == "image" else (tuple(data_box) if data_box is not None else False)

    generator = torch.Generator(device=device).manual_seed(int(seed))
    shape = (n, *data_shape)
    if noise is not None:
        if tuple(noise.shape) != shape:
            raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {shape} "
                             f"(n = {n} samples of {data_shape})")
        if not torch.isfinite(noise).all():
            raise ValueError("noise holds NaN or infinity")
        x_T = noise.to(device, torch.float32)
    else:
        x_T = torch.randn(shape, generator=generator, device=device)
    # the CUDA-graph step of core.fast_step on a GPU (path "auto"), eager elsewhere
    run = make_run(spec, respaced, model, options=options, clip_denoised=clip,
                   model_kwargs=model_kwargs, device=device)
    runner = step_runner(run, shape)
    records = run_steps(run, shape, noise=x_T, generator=generator, runner=runner)

    total = run.num_steps                   # an adaptive run is one step
    timestep_map = respaced.schedule.timestep_map
    convert = images_to_uint8 if kind == "image" else (lambda x: x.float().cpu().numpy())
    frames_x, frames_x0 = [convert(x_T)], [convert(torch.zeros_like(x_T))]
    times, variances = [int(diffusion.schedule.timestep_map[-1]) + 1], [1.0]

    def keep(record) -> None:
        frames_x.append(convert(record.x))
        frames_x0.append(convert(record.pred_x0))
        # samplers with sub-steps (Langevin, predictor-corrector) take num_steps // S of
        # them per level of the respaced schedule: record the level's timestep
        times.append(int(timestep_map[record.t * len(timestep_map) // total]))
        variances.append(float(record.variance))

    x_last, done, completed, record = x_T, 0, not stopped, None
    while completed and done < total:
        if should_stop is not None and should_stop():
            completed = False
            break
        record = next(records)
        done += 1
        x_last = record.x
        if done % record_every == 0 or done == total:
            keep(record)
        if progress is not None:
            progress(analytic_steps + done, analytic_steps + total)
    records.close()
    if not completed and record is not None and done % record_every != 0:
        keep(record)                       # a stopped run still shows where it got to
    final = x_last.float().cpu()
    return Trajectory(
        timesteps=np.asarray(times, dtype=np.int64), x=np.stack(frames_x),
        pred_x0=np.stack(frames_x0), variance=np.asarray(variances, dtype=np.float64),
        final=final.numpy().astype(np.float32),
        final_uint8=images_to_uint8(final) if kind == "image" else None,
        kind=kind, completed=completed, labels=labels, path=runner.describe())


def _analytic(model, respaced: GaussianDiffusion, data: torch.Tensor, data_shape, num_classes,
               seed: int, device, progress, should_stop) -> GaussianDiffusion | None:
    """The respaced diffusion with Analytic-DPM's variance, or None when stopped."""
    from core.analytic_dpm import analytic_diffusion_from_data

    steps = respaced.num_timesteps
    return analytic_diffusion_from_data(
        model, respaced, data, data_shape=data_shape, num_classes=num_classes, seed=seed,
        device=device, should_stop=should_stop,
        progress=None if progress is None else (lambda done, _total: progress(done, 2 * steps)))


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} = {value!r} is invalid: must be a positive integer")


def _respace(diffusion: GaussianDiffusion, spec, steps: int | None,
             spacing: str) -> GaussianDiffusion:
    T = diffusion.num_timesteps
    if spec.adaptive:                 # it picks its own steps between the schedule's ends
        return diffusion
    if steps is None:
        steps = spec.default_steps(T)
    _check_positive("steps", steps)
    if steps > T:
        raise ValueError(f"steps = {steps} is invalid: the model has only {T} timesteps")
    return respace_by(diffusion, int(steps), spacing)


def _labels(label, num_classes, guidance, n, device):
    """(model_kwargs, labels as numpy or None), checked against the model's classes."""
    if num_classes is None:
        if label is not None or guidance != 0.0:
            raise ValueError("this model is unconditional: label and guidance need a "
                             "class-conditional model")
        return {}, None
    if label is None:
        if guidance != 0.0:
            raise ValueError("guidance needs a label (the class to steer towards)")
        null = torch.full((n,), num_classes, dtype=torch.long, device=device)
        return {"y": null}, None
    labels = np.broadcast_to(np.asarray(label, dtype=np.int64), (n,)) if np.ndim(label) == 0 \
        else np.asarray(label, dtype=np.int64)
    if labels.shape != (n,):
        raise ValueError(f"label must be one class or {n} classes, got {labels.shape[0]}")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise ValueError(f"label = {int(bad[0])} is invalid: classes are 0..{num_classes - 1}")
    return {"y": torch.as_tensor(labels.copy(), device=device)}, labels.copy()
