"""The sampler lab: every chosen sampler at every chosen number of network evaluations (NFE),
all from the same initial noise x_T, each result scored, with its wall time and its counted
network calls. Run it once with the trained network and once with the exact eps of mixture
data (core.exact): the first curve holds the sampler's error plus the model's, the second
the sampler's discretisation error alone.

A fixed-step sampler at a target NFE takes the most steps whose network calls fit
(SamplerSpec.network_calls); an adaptive one (RK45) runs once per tolerance of
ADAPTIVE_TOLERANCES and reports the NFE it counted. `score` maps the final samples (n, ...)
to a dict of numbers (core.quality's metrics for points or images, see `point_scorer`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

import core.samplers as registry
from core.diffusion import GaussianDiffusion
from core.generate import sample
from core.spacing import DEFAULT_SPACING

NFE_LADDER = (1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 100, 250)
ADAPTIVE_TOLERANCES = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)


@dataclass
class LabSettings:
    """samplers: registered names; nfe: target network calls (the ladder NFE_LADDER and T
    by default); spacing (core.spacing); n samples; seed (x_T and the samplers' noise)."""

    samplers: Sequence[str]
    nfe: Sequence[int] = NFE_LADDER
    spacing: str = DEFAULT_SPACING
    n: int = 2000
    seed: int = 0


@dataclass
class LabPoint:
    """One sampler at one NFE: steps (None for adaptive runs), nfe (the network calls the
    run made), the target it was planned for, tolerance (adaptive runs), seconds (wall time),
    scores, samples (float32 (n, ...) in data space), model ("model" or "exact")."""

    sampler: str
    target: int
    nfe: int
    steps: int | None
    seconds: float
    scores: dict
    samples: np.ndarray = field(repr=False)
    model: str = "model"
    tolerance: float | None = None


def steps_for(spec, nfe: int, num_timesteps: int) -> int | None:
    """The most steps (at most T) whose network calls do not exceed `nfe`; None if none do."""
    best = None
    for steps in range(1, num_timesteps + 1):
        if spec.network_calls(steps) > nfe:
            break
        best = steps
    return best


def plan(settings: LabSettings, num_timesteps: int) -> list[tuple[str, int, int | None, float | None]]:
    """(sampler, target NFE, steps, tolerance) of every run, in order; targets that a fixed
    sampler cannot meet, or that repeat its step count, are left out."""
    runs = []
    for name in settings.samplers:
        spec = registry.get_sampler(name)
        if spec.adaptive:
            runs += [(name, 0, None, tol) for tol in ADAPTIVE_TOLERANCES]
            continue
        seen = set()
        for target in sorted(set(settings.nfe)):
            steps = steps_for(spec, target, num_timesteps)
            if steps is not None and steps not in seen:
                seen.add(steps)
                runs.append((name, target, steps, None))
    return runs


def run_lab(model, diffusion: GaussianDiffusion, data_shape: Sequence[int], settings: LabSettings,
            score: Callable[[np.ndarray], dict], *, model_name: str = "model",
            data_box=None, device="cpu", progress: Callable[[int, int], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> list[LabPoint]:
    """Every run of plan(settings) from one x_T (drawn from settings.seed), scored. Stops
    between runs when should_stop() says so (the points so far are returned)."""
    shape = (settings.n, *[int(s) for s in data_shape])
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(settings.seed))
    runs = plan(settings, diffusion.num_timesteps)
    points = []
    for index, (name, target, steps, tolerance) in enumerate(runs):
        if should_stop is not None and should_stop():
            break
        spec = registry.get_sampler(name)
        options = {"rtol": tolerance, "atol": tolerance} if spec.adaptive else None
        calls = _CallCounter(model)
        start = time.perf_counter()
        trajectory = sample(calls, diffusion, settings.n, data_shape, sampler=name, steps=steps,
                            options=options, spacing=settings.spacing, noise=x_T,
                            seed=settings.seed, record_every=10**9, data_box=data_box,
                            device=device)
        seconds = time.perf_counter() - start
        samples = trajectory.final
        # adaptive runs count their calls; a fixed run's calls are known (and counted on the
        # eager path: a replayed CUDA graph calls no Python)
        nfe = calls.count if spec.adaptive else spec.network_calls(steps)
        points.append(LabPoint(name, target or nfe, nfe, steps, seconds, score(samples),
                               samples, model_name, tolerance))
        if progress is not None:
            progress(index + 1, len(runs))
    return points


class _CallCounter(torch.nn.Module):
    """The model, counting its calls (one per batch evaluation: the NFE)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.count = model, 0

    def forward(self, *args, **kwargs):
        self.count += 1
        return self.model(*args, **kwargs)


def point_scorer(dataset, n: int, reference_n: int = 4000, seed: int = 12345,
                 k: int = 5) -> tuple[Callable[[np.ndarray], dict], dict]:
    """(score(samples) -> dict, floor) for vector data: k-NN KL with its error bar, the
    energy distance, k-NN precision and recall against `reference_n` fresh true samples (a
    mixture's, or the held-out data), the per-component moment KL and the mean exact
    log-density where the data are a mixture with a density. `floor`: the same scores of
    `n` other true samples (what a perfect sampler gets with the lab's n: the estimators'
    bias depends on n)."""
    from core.quality import (
        energy_distance,
        knn_kl,
        mean_log_density,
        moment_kl,
        precision_recall,
    )

    rng = np.random.default_rng(seed)
    mixture = dataset.mixture
    if mixture is not None:
        reference = mixture.sample(reference_n, rng)[0]
    else:
        reference = dataset.test.numpy().astype(np.float64)

    def score(samples: np.ndarray) -> dict:
        samples = np.asarray(samples, dtype=np.float64)
        finite = np.all(np.isfinite(samples), axis=1)
        with np.errstate(all="ignore"):
            return _scores(samples, finite)

    def _scores(samples: np.ndarray, finite: np.ndarray) -> dict:
        kept = samples[finite]
        out = {"finite_fraction": float(finite.mean())}
        if len(kept) < k + 2:
            return out
        out["knn_kl"], out["knn_kl_stderr"] = knn_kl(kept, reference, k=k)
        out["energy_distance"], out["energy_distance_stderr"] = energy_distance(kept, reference)
        out["precision"], out["recall"] = precision_recall(kept, reference, k=k)
        if mixture is not None:
            out["moment_kl"] = moment_kl(kept, mixture)["total"]
        if dataset.log_density is not None:
            mean, stderr, _ = mean_log_density(kept, dataset.log_density)
            out["mean_log_density"], out["mean_log_density_stderr"] = mean, stderr
        return out

    fresh = (mixture.sample(n, np.random.default_rng(seed + 1))[0] if mixture is not None
             else dataset.train.numpy()[:n].astype(np.float64))
    return score, score(fresh)


def image_scorer(dataset, n: int, seed: int = 0, cache_dir=None
                 ) -> tuple[Callable[[np.ndarray], dict], dict]:
    """(score(samples) -> dict, floor) for image data: the Frechet distance and KID in the
    features of a small network trained on the data set itself (core.quality; labelled
    "FD in <data set>-classifier features", not FID). Reference: the test split when it
    holds n images, else training images n.. (at least 500 either way when there are that
    many). `floor`: training images 0..n-1, disjoint from the reference, scored the same way.
    Samples are float (n, C, H, W) in [-1, 1]; non-finite ones are dropped and counted."""
    from core.quality import feature_extractor, frechet_distance, kid

    extractor = feature_extractor(dataset, cache_dir=cache_dir)
    train, size = dataset.train.numpy(), max(n, 500)
    pool = dataset.test.numpy() if len(dataset.test) >= n else train[n:]
    reference = extractor(pool[:size])
    subsets = 10

    def score(samples: np.ndarray) -> dict:
        samples = np.asarray(samples, dtype=np.float32)
        finite = np.all(np.isfinite(samples.reshape(len(samples), -1)), axis=1)
        out = {"finite_fraction": float(finite.mean()), "fd_label": extractor.label}
        kept = samples[finite]
        if len(kept) < 2 * subsets:
            return out
        features = extractor(np.clip(kept, -1.0, 1.0))
        out["fd"] = frechet_distance(features, reference)
        out["kid"], out["kid_stderr"] = kid(features, reference, subsets=subsets, seed=seed)
        return out

    return score, score(train[:n])
