"""The Score panel's background work as plain functions `task(progress, should_stop)`, run by
app.jobs.JobRunner off the GUI thread. Each calls core and returns plain numpy data:

- field_task: the learned score (core.score.model_score) and the exact mixture score at a
  grid of arrows, the map q_t |s_theta - grad log q_t|^2 (core.score.error_map) and F_t at
  the slider's t (core.score.fisher_divergence);
- fisher_curve_task: F_t with its standard error at evenly spaced t, and its weights in
  L_simple and the VLB (core.score.loss_weights);
- particles_task: N points from the prior run by a registered sampler (core.generate.sample),
  or the reverse SDE and the probability-flow ODE (DDIM, eta = 0) from the same x_T;
- likelihood_task: the readout rows of core.likelihood_table.

A task that sees should_stop() raises JobCancelled (the worker then reports "stopped", and
no error)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.analysis import evenly_spaced_timesteps
from core.score import error_map, exact_score, fisher_divergence, grid, loss_weights, model_score

FIELD_ARROWS = 23           # arrows per side of the grid
HEAT_PIXELS = 72            # pixels per side of the error map
FIELD_FISHER_SAMPLES = 2000
CURVE_TIMESTEPS = 30
CURVE_SAMPLES = 1500
MAX_PARTICLE_FRAMES = 200
BOX_MARGIN = 0.15           # of the data's span, around the data and the prior's +-3


class JobCancelled(Exception):
    """A task saw should_stop() and gave up (its result would be ignored anyway)."""


def check(should_stop) -> None:
    if should_stop():
        raise JobCancelled


def field_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """A square (xmin, xmax, ymin, ymax) holding the 2-D data (N, 2) and the prior's bulk
    [-3, 3]^2, with a margin: one view for every t."""
    points = np.asarray(points, dtype=np.float64)[:, :2]
    points = points[np.all(np.isfinite(points), axis=1)]
    low = np.minimum(points.min(0) if len(points) else -3.0, -3.0)
    high = np.maximum(points.max(0) if len(points) else 3.0, 3.0)
    centre, half = (low + high) / 2, float(np.max(high - low)) / 2 * (1 + BOX_MARGIN)
    return (centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half)


@dataclass
class ScoreField:
    """What the field view draws at timestep t: arrows at `points` (N, 2) of the learned
    and the exact score ((N, 2) or None), `spacing` between arrows; `heat` (P, P) the error
    map q_t |s_theta - s*|^2 over `box` (rows: y ascending), or None; `fisher` F_t at t
    (core.score.FisherEstimate) or None."""

    t: int
    box: tuple
    points: np.ndarray
    spacing: float
    learned: np.ndarray | None
    exact: np.ndarray | None
    heat: np.ndarray | None
    fisher: object


def field_task(model, diffusion, mixture, box, t: int, seed: int = 0):
    """The field at timestep t (model None: the exact score alone; mixture None: the
    learned score alone)."""
    def task(progress, should_stop):
        xs, _ys, points = grid(box, FIELD_ARROWS)
        learned = exact = heat = fisher = None
        if model is not None:
            learned = model_score(model, diffusion, points, t)
        check(should_stop)
        if mixture is not None:
            exact = exact_score(mixture, diffusion.schedule, points, t)
        if model is not None and mixture is not None:
            check(should_stop)
            _hx, _hy, pixels = grid(box, HEAT_PIXELS)
            heat = error_map(model, diffusion, mixture, pixels, t).reshape(HEAT_PIXELS,
                                                                          HEAT_PIXELS)
            check(should_stop)
            fisher = fisher_divergence(model, diffusion, mixture, t, n=FIELD_FISHER_SAMPLES,
                                       seed=seed)
        return ScoreField(int(t), tuple(box), points, float(xs[1] - xs[0]), learned, exact,
                          heat, fisher)
    return task


def fisher_curve_task(model, diffusion, mixture, seed: int = 0):
    """F_t per dimension at CURVE_TIMESTEPS evenly spaced t: dict(t, mean, stderr, simple,
    vlb) (the last two: core.score.loss_weights at those t)."""
    def task(progress, should_stop):
        timesteps = evenly_spaced_timesteps(diffusion.schedule.base.num_timesteps,
                                            CURVE_TIMESTEPS)
        means, errors = [], []
        for index, t in enumerate(timesteps):
            check(should_stop)
            estimate = fisher_divergence(model, diffusion, mixture, int(t), n=CURVE_SAMPLES,
                                         seed=seed + index)
            means.append(estimate.mean)
            errors.append(estimate.stderr)
            progress(index + 1, len(timesteps))
        weights = loss_weights(diffusion.schedule, timesteps)
        return {"t": timesteps.astype(np.float64), "mean": np.asarray(means),
                "stderr": np.asarray(errors), "simple": weights["simple"],
                "vlb": weights["vlb"], "samples": CURVE_SAMPLES}
    return task


@dataclass
class ParticleRun:
    """Recorded frames of one or two runs from the same x_T: names (labels), x (runs, S,
    N, 2) float64, timesteps (S,) int64 (frame 0 is x_T, timesteps[0] = T)."""

    names: list
    x: np.ndarray
    timesteps: np.ndarray


def particle_record_every(spec, steps: int, options: dict) -> int:
    """Record every k-th sub-step so a run keeps at most ~MAX_PARTICLE_FRAMES frames."""
    total = spec.network_calls(max(1, int(steps)), options) if not spec.adaptive else 1
    return max(1, -(-int(total) // MAX_PARTICLE_FRAMES))


def particles_task(model, diffusion, runs: list, n: int, steps: int, seed: int,
                   data_box=None, device="cpu"):
    """runs: [(label, sampler spec, options)], one or two, all started from the same x_T
    drawn from `seed`, with `steps` steps each; a run of a sampler that records fewer
    frames is held at its last frame."""
    def task(progress, should_stop):
        import torch

        from core.generate import sample

        generator = torch.Generator().manual_seed(int(seed))
        x_T = torch.randn((int(n), 2), generator=generator)
        frames, times = [], None
        for index, (_label, spec, options) in enumerate(runs):
            def part(done, total, index=index):
                progress(index * total + done, len(runs) * total)

            trajectory = sample(model, diffusion, int(n), (2,), sampler=spec.name,
                                steps=None if spec.adaptive else int(steps), options=options,
                                seed=int(seed), noise=x_T,
                                record_every=particle_record_every(spec, steps, options),
                                data_box=data_box, device=device, progress=part,
                                should_stop=should_stop)
            if not trajectory.completed:
                raise JobCancelled
            frames.append(np.asarray(trajectory.x, dtype=np.float64))
            if times is None or len(trajectory.timesteps) > len(times):
                times = np.asarray(trajectory.timesteps)
        count = len(times)
        held = [np.concatenate([f, np.repeat(f[-1:], count - len(f), axis=0)]) for f in frames]
        return ParticleRun([label for label, _spec, _options in runs], np.stack(held), times)
    return task


def likelihood_task(model, diffusion, points, mixture=None, num_classes=None, seed: int = 0,
                    device="cpu"):
    """The readout's rows (core.likelihood_table.likelihood_rows); progress in 1/1000."""
    def task(progress, should_stop):
        from core.likelihood_table import likelihood_rows

        def part(fraction):
            check(should_stop)
            progress(int(1000 * min(max(fraction, 0.0), 1.0)), 1000)

        return likelihood_rows(model, diffusion, points, mixture=mixture,
                               num_classes=num_classes, seed=seed, device=device,
                               progress=part)
    return task


def ode_entropy_task(model, diffusion, points, count: int = 20, device="cpu"):
    """H(X_t) per dimension of the model's marginals by the probability-flow ODE
    (core.likelihood.marginal_entropy_ode) from the points (N, D) at `count` timesteps;
    dict(t, entropy, stderr) per dimension."""
    def task(progress, should_stop):
        from core.likelihood import eps_function, marginal_entropy_ode

        timesteps = evenly_spaced_timesteps(diffusion.schedule.base.num_timesteps, count)

        def part(_fraction):
            check(should_stop)

        result = marginal_entropy_ode(eps_function(model, diffusion), diffusion,
                                      points.to(device), timesteps, progress=part)
        progress(1, 1)
        dims = points.shape[1]
        return {"t": np.asarray(result["timesteps"]), "entropy": result["entropy"] / dims,
                "stderr": result["stderr"] / dims}
    return task
