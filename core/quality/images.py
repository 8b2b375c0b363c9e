"""Scores of image samples in the features of the data set's own network
(core.quality.features): the Fréchet distance and a KID-style kernel MMD.

They are the formulas of FID (Heusel et al. 2017) and KID (Bińkowski et al. 2018), but in
a 64-wide feature space of a small network trained on the data set itself, not in
Inception-v3's 2048 features: the numbers are comparable between samplers and step counts
on the same data set and extractor, never with published FID/KID values. Their labels say
so: "FD in digits-classifier features", "KID in digits-classifier features".

Features are float64 arrays (N, F); both scores are in squared feature units.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg

from core.quality.features import FeatureExtractor

# |imag| of sqrtm(C_a C_b) above this share of its largest |real| entry is not rounding
IMAGINARY_TOLERANCE = 1e-6


def fd_label(extractor: FeatureExtractor) -> str:
    return f"FD in {extractor.label}"


def kid_label(extractor: FeatureExtractor) -> str:
    return f"KID in {extractor.label}"


def _features(x, name: str) -> np.ndarray:
    array = np.asarray(x, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"{name}: expected features of shape (N, F), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: the features hold NaN or infinity")
    return array


def _pair(features_a, features_b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _features(features_a, "features_a"), _features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"features of different widths: {a.shape[1]} and {b.shape[1]}")
    return a, b


def frechet_distance_gaussians(mean_a, cov_a, mean_b, cov_b) -> float:
    """The squared 2-Wasserstein (Fréchet) distance between N(mean_a, cov_a) and
    N(mean_b, cov_b), means (F,), covariances (F, F) symmetric positive semi-definite:

        FD = |mean_a - mean_b|^2 + tr(cov_a + cov_b - 2 (cov_a cov_b)^{1/2}),

    in float64, the square root by scipy.linalg.sqrtm. The product's eigenvalues are real
    and >= 0, so the root's imaginary part is rounding: it is dropped when below
    IMAGINARY_TOLERANCE x its largest real entry, else ArithmeticError. A singular product
    whose root is not finite is retried with 1e-6 added to both diagonals (as pytorch-fid
    does)."""
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    cov_a, cov_b = np.atleast_2d(cov_a).astype(np.float64), np.atleast_2d(cov_b).astype(np.float64)
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():
        offset = 1e-6 * np.eye(len(cov_a))
        root = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    if np.iscomplexobj(root):
        largest_imag = float(np.max(np.abs(root.imag)))
        if largest_imag > IMAGINARY_TOLERANCE * max(float(np.max(np.abs(root.real))), 1e-300):
            raise ArithmeticError(f"frechet_distance: sqrtm(C_a C_b) has an imaginary part of "
                                  f"{largest_imag:.3g}, not rounding; the covariances are "
                                  "not both positive semi-definite")
        root = root.real
    gap = mean_a - mean_b
    return float(gap @ gap + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


def frechet_distance(features_a, features_b) -> float:
    """FD between two sets of features (N_a, F) and (N_b, F): `frechet_distance_gaussians`
    of their sample means and unbiased (1/(N-1)) covariances. Biased upwards at finite N
    (two draws of one law score about tr(C)/N_a + tr(C)/N_b plus a root term, not 0);
    compare samplers at equal N, beside the data's own score (e.g. train vs test split).
    Needs N >= 2 in each set."""
    a, b = _pair(features_a, features_b)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"frechet_distance: need at least 2 items per set ({len(a)}, {len(b)})")
    return frechet_distance_gaussians(a.mean(axis=0), np.cov(a, rowvar=False),
                                      b.mean(axis=0), np.cov(b, rowvar=False))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x . y / F + 1)^3 for rows of x (n, F), y (m, F): (n, m)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD^2 U-statistic of equal-sized sets x, y (m, F) (Gretton et al.
    2012, eq. 3), kernel `polynomial_kernel`:

        1/(m (m-1)) sum_{i != j} [k(x_i, x_j) + k(y_i, y_j)] - 2/m^2 sum_{i, j} k(x_i, y_j).

    Its expectation is exactly MMD^2 (the cross term's pairs are all independent); it is
    the "unbiased" estimate of KID's reference code."""
    m = len(x)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.mean())


def kid(features_a, features_b, subsets: int = 10, subset_size: int | None = None,
        seed: int = 0) -> tuple[float, float]:
    """(mean, stderr) of a KID-style kernel MMD^2 between features (N_a, F) and (N_b, F).

    With np.random.default_rng(seed), each set is shuffled and its first
    subsets x subset_size rows cut into `subsets` DISJOINT blocks (KID's code draws
    overlapping subsets instead); `mmd2_unbiased` of each pair of blocks is an unbiased,
    independent estimate of MMD^2, so mean = their average (exactly 0 in expectation
    when the laws agree; it can be negative) and stderr = std(ddof=1) / sqrt(subsets).
    subset_size defaults to min(N_a, N_b) // subsets; ValueError when the sets hold fewer
    than subsets x subset_size rows, or subsets < 2, or subset_size < 2.
    """
    a, b = _pair(features_a, features_b)
    if subset_size is None:
        subset_size = min(len(a), len(b)) // max(subsets, 1)
    if subsets < 2 or subset_size < 2:
        raise ValueError(f"kid: need subsets >= 2 and subset_size >= 2 (got {subsets} and "
                         f"{subset_size}, from {len(a)} and {len(b)} items)")
    if subsets * subset_size > min(len(a), len(b)):
        raise ValueError(f"kid: {subsets} disjoint subsets of {subset_size} need "
                         f"{subsets * subset_size} items per set; got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    a = a[rng.permutation(len(a))[: subsets * subset_size]]
    b = b[rng.permutation(len(b))[: subsets * subset_size]]
    values = np.array([mmd2_unbiased(a[i * subset_size:(i + 1) * subset_size],
                                     b[i * subset_size:(i + 1) * subset_size])
                       for i in range(subsets)])
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(subsets))


def image_scores(samples, reference, extractor: FeatureExtractor, *, subsets: int = 10,
                 seed: int = 0) -> dict:
    """FD and KID of sample images against reference images (both (N, C, H, W) in
    [-1, 1]) in `extractor`'s features: dict(fd, fd_label, kid (mean, stderr), kid_label,
    count, reference_count). The data's own floor is the same call with two disjoint
    real sets of the same sizes (e.g. test split vs as many training images)."""
    features_a, features_b = extractor(samples), extractor(reference)
    return {
        "fd": frechet_distance(features_a, features_b), "fd_label": fd_label(extractor),
        "kid": kid(features_a, features_b, subsets=subsets, seed=seed),
        "kid_label": kid_label(extractor),
        "count": len(features_a), "reference_count": len(features_b),
    }
