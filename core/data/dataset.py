"""The Dataset record every source returns, the seeded train/test split, and the two
constructors (vectors, images) that the registry and the file loaders share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from core.data.formats import MAX_CLASSES, DataError
from core.data.images import fit_to_size, set_channels, unit_to_signed
from core.data.toys import GaussianMixture

TEST_FRACTION = 0.1


@dataclass
class Dataset:
    """A train/test pair of float32 tensors and what is known about them.

    train, test: (N, *shape) float32 ("vector": shape (D,); "image": (C, H, W) in [-1, 1]).
    train_labels, test_labels: int64 (N,) class indices in [0, num_classes), or None.
    skipped: files that could not be read. log_density: (N, D) array -> (N,) float64 nats,
    exact, or None. mixture: the GaussianMixture the data was drawn from, or None.
    class_names: a name per class where known; source: file or folder the data came from;
    title: the registry's label for a named data set ("" for files and folders).
    """

    name: str
    kind: str
    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    num_classes: int | None = None
    shape: tuple[int, ...] = ()
    skipped: int = 0
    log_density: Callable[[np.ndarray], np.ndarray] | None = None
    mixture: GaussianMixture | None = None
    class_names: tuple[str, ...] | None = None
    source: str = ""
    title: str = ""

    def __post_init__(self) -> None:
        if not self.shape:
            self.shape = tuple(self.train.shape[1:])

    def describe(self) -> str:
        """One line, e.g. "MNIST 5k: 4,500 train / 500 test, 1x28x28, 10 classes"."""
        title = self.title or self.name
        parts = [f"{len(self.train):,} train / {len(self.test):,} test"]
        if self.kind == "image":
            parts.append("x".join(str(s) for s in self.shape))
        else:
            parts.append(f"{self.shape[0]}-D")
        if self.num_classes:
            parts.append(f"{self.num_classes} classes")
        if self.kind == "vector":
            parts.append("exact log-density" if self.log_density else "no closed-form density")
        if self.skipped:
            parts.append(f"{self.skipped:,} unreadable file{'s' if self.skipped != 1 else ''} skipped")
        return f"{title}: " + ", ".join(parts)

    def moments(self, limit: int = 5000) -> tuple[np.ndarray, np.ndarray]:
        """Sample mean (D,) and covariance (D, D), float64, of the first `limit` training
        examples flattened to D = prod(shape) (the unbiased 1/(N-1) estimate)."""
        count = min(limit, len(self.train))
        x = self.train[:count].reshape(count, -1).detach().cpu().numpy().astype(np.float64)
        return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def split_indices(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) index arrays: the first max(1, round(0.1 n)) entries of
    np.random.default_rng(seed).permutation(n) are the test set, the rest the training set,
    each in that shuffled order, so the first k items of a split are a uniform sample of it
    (sources such as MNIST 5k come sorted by class; scores, bounds and floors that take
    "the first n test images" must not see only zeros and ones). Needs n >= 2."""
    if n < 2:
        raise DataError(f"a data set needs at least 2 items to split into train and test, got {n}")
    n_test = max(1, round(TEST_FRACTION * n))
    order = np.random.default_rng(seed).permutation(n)
    return order[n_test:], order[:n_test]


def labels_tensor(labels: np.ndarray | None, index: np.ndarray) -> torch.Tensor | None:
    return None if labels is None else torch.from_numpy(np.ascontiguousarray(labels[index], dtype=np.int64))


def vector_dataset(name: str, points: np.ndarray, seed: int, labels=None, **extra) -> Dataset:
    train_index, test_index = split_indices(len(points), seed)
    as_tensor = lambda index: torch.from_numpy(np.ascontiguousarray(points[index], dtype=np.float32))  # noqa: E731
    return Dataset(
        name=name, kind="vector", train=as_tensor(train_index), test=as_tensor(test_index),
        train_labels=labels_tensor(labels, train_index), test_labels=labels_tensor(labels, test_index),
        **extra,
    )


def image_dataset(name: str, images: np.ndarray, max_value: float, *, size: int | None,
                   channels: int, seed: int, labels: np.ndarray | None = None,
                   num_classes: int | None = None, pad_small: bool = False, **extra) -> Dataset:
    """images: (N, C, h, w) integers in 0..max_value -> Dataset in [-1, 1]. Each split is
    converted separately to keep the float copies small. labels must be class indices
    below num_classes, itself at most MAX_CLASSES."""
    if labels is not None and num_classes is not None and (
            not 1 <= num_classes <= MAX_CLASSES or (len(labels) and (
                int(labels.min()) < 0 or int(labels.max()) >= num_classes))):
        raise DataError(f"{extra.get('source') or name}: labels must be class indices from 0 "
                        f"to {num_classes - 1:,} (at most {MAX_CLASSES:,} classes)")
    train_index, test_index = split_indices(len(images), seed)

    def convert(index: np.ndarray) -> torch.Tensor:
        unit = images[index].astype(np.float32) / np.float32(max_value)
        unit = set_channels(unit, channels)
        return unit_to_signed(fit_to_size(unit, size or unit.shape[-1], pad_small=pad_small))

    return Dataset(
        name=name, kind="image", train=convert(train_index), test=convert(test_index),
        train_labels=labels_tensor(labels, train_index), test_labels=labels_tensor(labels, test_index),
        num_classes=num_classes if labels is not None else None, **extra,
    )


DATA_BOX_MARGIN = 0.1


def data_box(train: torch.Tensor) -> tuple[list[float], list[float]]:
    """(low, high) per dimension of vector data (N, D): the training data's min and max,
    widened by DATA_BOX_MARGIN of the range on each side. Sampling clamps x0 estimates of
    vector data to it, as images are clamped to [-1, 1] (core.generate.sample)."""
    x = train.reshape(train.shape[0], -1).detach().to("cpu", torch.float64)
    low, high = x.min(dim=0).values, x.max(dim=0).values
    pad = DATA_BOX_MARGIN * (high - low)
    return (low - pad).tolist(), (high + pad).tolist()
