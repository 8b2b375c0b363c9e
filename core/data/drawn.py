"""Data sets from points the user draws (the app's "Draw…").

With spread 0 the points themselves are the data (no density). With a spread s > 0 the
drawing defines a density: the Gaussian mixture with one isotropic component N(p_i, s^2 I)
per drawn point p_i, equal weights (core.data.toys.GaussianMixture semantics), and the
training data are `num_samples` draws from it. The data set then carries the mixture and
its exact log-density, so everything built on mixtures works on a drawing: the exact eps
(core.exact), the sampler lab's exact curves, the true entropies (core.mixture).

A drawing of more than MAX_DRAWN_COMPONENTS points keeps that many of them as the
mixture's means (a seeded choice without replacement): a mixture's exact eps costs time
and memory in proportion to its components, and a few thousand sprayed points overlap
at any useful spread anyway.
"""

from __future__ import annotations

import numpy as np

from core.data.dataset import Dataset, vector_dataset
from core.data.formats import DataError
from core.data.registry import DRAWN_DATASET, dataset_label
from core.data.toys import GaussianMixture, as_points

MAX_DRAWN_COMPONENTS = 2000
DEFAULT_DRAWN_SAMPLES = 20000


def drawn_mixture(points, spread: float, seed: int = 0,
                  max_components: int = MAX_DRAWN_COMPONENTS) -> GaussianMixture:
    """The mixture sum_i (1/K) N(p_i, spread^2 I) over the drawn points p_i (N, 2), at most
    `max_components` of them (a seeded subset when there are more). DataError for a spread
    that is not a positive finite number."""
    array = _checked(points, "points")
    try:
        value = float(spread)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(spread, bool) or not (np.isfinite(value) and value > 0):
        raise DataError(f"spread: must be a positive finite number, got {spread!r}")
    if len(array) > max_components:
        keep = np.random.default_rng(seed).choice(len(array), size=max_components, replace=False)
        array = array[np.sort(keep)]
    return GaussianMixture(means=array, std=value,
                           weights=np.full(len(array), 1.0 / len(array)))


def dataset_from_points(points, name: str = DRAWN_DATASET, *, seed: int = 0,
                        spread: float = 0.0,
                        num_samples: int = DEFAULT_DRAWN_SAMPLES) -> Dataset:
    """A vector data set from drawn points (N, 2), N >= 2, all finite, in the given
    coordinates (no standardisation), without labels. spread 0: the points are the data (no
    density); spread > 0: `num_samples` draws (seeded) of drawn_mixture(points, spread), with
    the mixture and its exact log-density."""
    array = _checked(points, name)
    title = dataset_label(DRAWN_DATASET) if name == DRAWN_DATASET else ""
    if not spread:
        return vector_dataset(name, array, seed, source=DRAWN_DATASET, title=title)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise DataError(f"num_samples: must be an integer >= 2, got {num_samples!r}")
    mixture = drawn_mixture(array, spread, seed)
    samples, _components = mixture.sample(num_samples, np.random.default_rng(seed))
    return vector_dataset(name, samples, seed, source=DRAWN_DATASET, title=title,
                          log_density=mixture.log_prob, mixture=mixture)


def _checked(points, field: str) -> np.ndarray:
    array = as_points(points, 2, field=field)
    if len(array) < 2:
        raise DataError(f"{field}: need at least 2 points, got {len(array)}")
    if not np.all(np.isfinite(array)):
        raise DataError(f"{field}: points must be finite (found NaN or infinity)")
    return array
