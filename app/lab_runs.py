"""The Samplers panel's job: the sampler lab (core.lab) with the trained model's EMA weights
and/or the exact eps of Gaussian-mixture data (core.exact), every run scored against fresh
true samples (core.lab.point_scorer / image_scorer), plus what the panel shows beside the
curves: true samples (or data images) and the true log-density on a grid with the levels
that enclose 50, 90 and 99 % of the probability. A plain function of (progress,
should_stop), run off the GUI thread by app.jobs; no Qt here."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.exact import exact_diffusion
from core.lab import LabPoint, LabSettings, plan

SOURCES = ("model", "exact")          # the trained network's eps, the mixture's exact eps
SOURCE_LABELS = {"model": "model", "exact": "exact ε"}
TRUTH_POINTS = 2000
TRUTH_IMAGES = 64
DENSITY_GRID = 160
DENSITY_MASS = (0.5, 0.9, 0.99)       # contours around this much probability


@dataclass
class LabInputs:
    """What a lab run needs, gathered in the GUI thread: model (an EMA snapshot, or None
    when only the exact eps runs), diffusion (unrespaced), data_shape, dataset, device,
    data_box (the x0 clamp of vector data)."""

    model: object
    diffusion: object
    data_shape: tuple
    dataset: object
    device: object = "cpu"
    data_box: tuple | None = None


@dataclass
class DensityGrid:
    """log_density (rows: y, columns: x) on [low, high] (x, y), and the contour levels."""

    log_density: np.ndarray
    low: np.ndarray
    high: np.ndarray
    levels: tuple[float, ...]


@dataclass
class LabResult:
    """points (core.lab.LabPoint, every source), floor (the data-vs-data scores), kind
    ("vector" | "image"), truth (true points (M, 2) float64, or data images (M, H, W, C)
    uint8) and what it is (truth_title), density (2-D data with a density) and a one-line
    title of the run."""

    settings: LabSettings
    sources: tuple[str, ...]
    points: list[LabPoint]
    floor: dict
    kind: str
    truth: np.ndarray
    title: str
    timesteps: int
    truth_title: str = "truth"
    density: DensityGrid | None = field(default=None)


def exact_available(dataset) -> bool:
    """The exact eps exists: the data are a Gaussian mixture (dataset.mixture)."""
    return dataset is not None and getattr(dataset, "mixture", None) is not None


def lab_task(inputs: LabInputs, settings: LabSettings, sources: tuple[str, ...],
             cancelled=None):
    """A job running the lab for each source in `sources` ("model", "exact"); progress
    counts runs over all sources (0 while the scorer is prepared). `cancelled()` true (the
    user's Cancel) stops it between runs like the job's own stop (the window closing), and
    the runs finished so far come back."""
    def task(progress, should_stop):
        def stop() -> bool:
            return should_stop() or (cancelled is not None and cancelled())
        return run(inputs, settings, sources, progress, stop)
    return task


def run(inputs: LabInputs, settings: LabSettings, sources, progress=None,
        should_stop=None) -> LabResult | None:
    """See lab_task; None when stopped before the first run finished."""
    from core.exact import ExactEps
    from core.lab import image_scorer, point_scorer, run_lab

    dataset, diffusion = inputs.dataset, inputs.diffusion
    images = len(inputs.data_shape) == 3
    runs = plan(settings, diffusion.num_timesteps)
    _check_spacing(runs, diffusion, settings.spacing)
    total = len(runs) * len(sources)
    if progress is not None:
        progress(0, max(total, 1))
    score, floor = (image_scorer(dataset, settings.n, settings.seed) if images
                    else point_scorer(dataset, settings.n))
    points: list[LabPoint] = []
    for index, source in enumerate(sources):
        if should_stop is not None and should_stop():
            break
        if source == "exact":
            model = ExactEps(dataset.mixture, diffusion.schedule).to(inputs.device)
            process = exact_diffusion(diffusion)
        else:
            model, process = inputs.model, diffusion
        offset = index * len(runs)
        points += run_lab(model, process, inputs.data_shape, settings, score,
                          model_name=source, data_box=inputs.data_box, device=inputs.device,
                          progress=None if progress is None else
                          (lambda done, _total, offset=offset: progress(offset + done, total)),
                          should_stop=should_stop)
    if not points:
        return None
    truth = true_images(dataset) if images else true_points(dataset, settings.seed)
    density = None if images else density_grid(dataset, truth)
    truth_title = ("data images" if images else "fresh samples of the true density"
                   if exact_available(dataset) else "held-out data")
    return LabResult(settings, tuple(sources), points, floor, "image" if images else "vector",
                     truth, run_title(dataset, diffusion, settings), diffusion.num_timesteps,
                     truth_title, density)


def _check_spacing(runs, diffusion, spacing: str) -> None:
    """Refuse at once a plan whose step counts the spacing cannot make (ValueError naming
    it), instead of after the runs before it."""
    from core.spacing import timesteps

    for _name, _target, steps, _tolerance in runs:
        if steps is not None:
            timesteps(diffusion.schedule, steps, spacing)


def run_title(dataset, diffusion, settings: LabSettings) -> str:
    from core.spacing import SPACINGS

    data = getattr(dataset, "title", "") or getattr(dataset, "name", "data")
    return (f"{data}, T = {diffusion.num_timesteps}, {SPACINGS[settings.spacing].label} "
            f"spacing, n = {settings.n:,}, seed {settings.seed}")


def true_points(dataset, seed: int, count: int = TRUTH_POINTS) -> np.ndarray:
    """Fresh draws of a mixture (seeded apart from the lab's reference), else held-out data
    (the test split, then training data)."""
    mixture = getattr(dataset, "mixture", None)
    if mixture is not None:
        return mixture.sample(count, np.random.default_rng(seed + 7919))[0]
    import torch

    data = torch.cat([dataset.test, dataset.train])[:count]
    return data.reshape(len(data), -1)[:, :2].numpy().astype(np.float64)


def true_images(dataset, count: int = TRUTH_IMAGES) -> np.ndarray:
    """The first test images (then training images), (M, H, W, C) uint8."""
    import torch

    from core.generate import images_to_uint8

    return images_to_uint8(torch.cat([dataset.test[:count], dataset.train[:count]])[:count])


def samples_for_display(point: LabPoint, kind: str) -> np.ndarray:
    """A run's samples as the panel shows them: points (n, 2) float64 or the first
    TRUTH_IMAGES images (M, H, W, C) uint8."""
    if kind == "image":
        import torch

        from core.generate import images_to_uint8

        return images_to_uint8(torch.from_numpy(np.asarray(point.samples[:TRUTH_IMAGES])))
    return np.asarray(point.samples, dtype=np.float64).reshape(len(point.samples), -1)[:, :2]


def density_grid(dataset, truth: np.ndarray, size: int = DENSITY_GRID) -> DensityGrid | None:
    """The data's exact log-density (dataset.log_density) on a size x size grid around the
    true points, with the levels whose regions {log p > level} hold DENSITY_MASS of the
    probability (quantiles of log p over true samples); None without a density."""
    log_density = getattr(dataset, "log_density", None)
    if log_density is None or truth.shape[1] != 2:
        return None
    low, high = np.percentile(truth, 0.5, axis=0), np.percentile(truth, 99.5, axis=0)
    pad = 0.15 * np.maximum(high - low, 1e-3)
    low, high = low - pad, high + pad
    xs, ys = np.linspace(low[0], high[0], size), np.linspace(low[1], high[1], size)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    values = np.asarray(log_density(grid), dtype=np.float64).reshape(size, size)
    at_truth = np.asarray(log_density(truth), dtype=np.float64)
    at_truth = at_truth[np.isfinite(at_truth)]
    if len(at_truth) == 0:
        return None
    floor = float(at_truth.min()) - 50.0
    values = np.where(np.isfinite(values), values, floor)
    levels = tuple(sorted({float(np.quantile(at_truth, 1.0 - mass)) for mass in DENSITY_MASS}))
    return DensityGrid(values, low, high, levels)
