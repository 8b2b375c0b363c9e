"""2-D toy distributions drawn with numpy from a seed, with exact log-densities.

Every toy lives at roughly unit scale (coordinates within about [-3, 3]) so a diffusion
with a standard-normal prior fits it without standardisation. The points are returned in
exactly the coordinates the model trains on, so `log_density` needs no Jacobian term.

Each generator is (n, rng) -> ToySample; core.data.registry gives them their names.
Toys with a closed-form density:
- "gaussian":     N(mu, s^2 I), mu = (1, -0.5), s = 0.5 (a one-component mixture).
- "8gaussians":   (1/8) sum_k N(2 (cos k pi/4, sin k pi/4), 0.2^2 I), labels k.
- "grid25":       (1/25) sum_{i,j} N((i, j), 0.1^2 I), i, j in {-2..2}, labels 5 (i+2) + (j+2).
- "checkerboard": uniform on the 8 dark unit squares of a 4x4 board on [-2, 2]^2, the
                  squares with floor(x) + floor(y) even; log p = -log 8 there, -inf elsewhere.
Toys without one (log_density None): "moons" (two noisy half circles, labels = moon),
"swissroll" (noisy 2-D swiss roll), "spiral" (two noisy interleaved spiral arms, labels = arm).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.data.formats import DataError


def as_points(x, dim: int, field: str = "points") -> np.ndarray:
    """A float64 numpy copy of x, checked to be of shape (N, dim). Accepts torch tensors."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    try:
        array = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DataError(f"{field}: expected numbers of shape (N, {dim}): {error}") from error
    if array.ndim != 2 or array.shape[1] != dim:
        raise DataError(f"{field}: expected an array of shape (N, {dim}), got {array.shape}")
    return array


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """p(x) = sum_k w_k N(x; mu_k, std^2 I): isotropic components with one shared std.

    means: (K, D) float64; std: float > 0; weights: (K,) float64, non-negative, summing to 1.
    """

    means: np.ndarray
    std: float
    weights: np.ndarray

    def __post_init__(self) -> None:
        means = np.array(self.means, dtype=np.float64)
        weights = np.array(self.weights, dtype=np.float64)
        if means.ndim != 2 or means.shape[0] < 1:
            raise DataError(f"mixture.means: expected shape (K, D) with K >= 1, got {means.shape}")
        if weights.shape != (means.shape[0],):
            raise DataError(f"mixture.weights: expected shape ({means.shape[0]},), got {weights.shape}")
        if np.any(weights < 0) or not math.isclose(weights.sum(), 1.0, rel_tol=1e-9):
            raise DataError("mixture.weights: must be non-negative and sum to 1")
        if not (math.isfinite(self.std) and self.std > 0):
            raise DataError(f"mixture.std: must be a positive finite number, got {self.std}")
        means.setflags(write=False)
        weights.setflags(write=False)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "std", float(self.std))

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    def log_prob(self, x) -> np.ndarray:
        """log p(x) in nats for x (N, D): logsumexp_k [log w_k - D/2 log(2 pi std^2)
        - |x - mu_k|^2 / (2 std^2)]. Returns (N,) float64."""
        points = as_points(x, self.dim)
        variance = self.std**2
        sq_dist = ((points[:, None, :] - self.means[None, :, :]) ** 2).sum(axis=-1)  # (N, K)
        with np.errstate(divide="ignore"):
            log_weights = np.log(self.weights)
        log_terms = log_weights - 0.5 * self.dim * math.log(2 * math.pi * variance) - sq_dist / (2 * variance)
        peak = log_terms.max(axis=1, keepdims=True)
        return (peak + np.log(np.exp(log_terms - peak).sum(axis=1, keepdims=True)))[:, 0]

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n draws: (points (n, D) float64, component index (n,) int64)."""
        components = rng.choice(self.num_components, size=n, p=self.weights).astype(np.int64)
        points = self.means[components] + self.std * rng.standard_normal((n, self.dim))
        return points, components


@dataclass
class ToySample:
    """What a toy generator returns: float64 points (N, 2), optional labels, and the exact
    density (log_density: (N, 2) -> (N,) nats) and mixture where they exist."""

    points: np.ndarray
    labels: np.ndarray | None = None
    num_classes: int | None = None
    log_density: Callable[[np.ndarray], np.ndarray] | None = None
    mixture: GaussianMixture | None = None


def _from_mixture(mixture: GaussianMixture, n: int, rng: np.random.Generator, labelled: bool) -> ToySample:
    points, components = mixture.sample(n, rng)
    return ToySample(
        points=points,
        labels=components if labelled else None,
        num_classes=mixture.num_components if labelled else None,
        log_density=mixture.log_prob,
        mixture=mixture,
    )


GAUSSIAN = GaussianMixture(means=[[1.0, -0.5]], std=0.5, weights=[1.0])
EIGHT_GAUSSIANS = GaussianMixture(
    means=[[2 * math.cos(k * math.pi / 4), 2 * math.sin(k * math.pi / 4)] for k in range(8)],
    std=0.2,
    weights=np.full(8, 1 / 8),
)
GRID25 = GaussianMixture(
    means=[[float(i), float(j)] for i in range(-2, 3) for j in range(-2, 3)],
    std=0.1,
    weights=np.full(25, 1 / 25),
)

CHECKERBOARD_HALF_WIDTH = 2  # the board covers [-2, 2]^2 in unit squares
CHECKERBOARD_DARK_AREA = 8.0


def checkerboard_log_density(x) -> np.ndarray:
    """-log 8 on the dark squares (floor(x) + floor(y) even, inside [-2, 2]^2), -inf elsewhere."""
    points = as_points(x, 2)
    cells = np.floor(points)
    inside = np.all((cells >= -CHECKERBOARD_HALF_WIDTH) & (cells < CHECKERBOARD_HALF_WIDTH), axis=1)
    dark = inside & ((cells.sum(axis=1) % 2) == 0)
    return np.where(dark, -math.log(CHECKERBOARD_DARK_AREA), -np.inf)


def checkerboard(n: int, rng: np.random.Generator) -> ToySample:
    corners = np.array(
        [(i, j) for i in range(-2, 2) for j in range(-2, 2) if (i + j) % 2 == 0], dtype=np.float64
    )
    points = corners[rng.integers(0, len(corners), size=n)] + rng.uniform(0.0, 1.0, size=(n, 2))
    return ToySample(points=points, log_density=checkerboard_log_density)


def moons(n: int, rng: np.random.Generator) -> ToySample:
    """sklearn's two moons, centred at the origin, scaled by 1.5, noise std 0.12."""
    labels = (rng.uniform(size=n) < 0.5).astype(np.int64)
    angle = rng.uniform(0.0, math.pi, size=n)
    upper = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    lower = np.stack([1 - np.cos(angle), 0.5 - np.sin(angle)], axis=1)
    points = np.where(labels[:, None] == 0, upper, lower)
    points = 1.5 * (points - np.array([0.5, 0.25])) + 0.12 * rng.standard_normal((n, 2))
    return ToySample(points=points, labels=labels, num_classes=2)


def swissroll(n: int, rng: np.random.Generator) -> ToySample:
    """(t cos t, t sin t) / 5 for t ~ U[1.5 pi, 4.5 pi], plus noise of std 0.1."""
    t = 1.5 * math.pi * (1 + 2 * rng.uniform(size=n))
    points = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / 5 + 0.1 * rng.standard_normal((n, 2))
    return ToySample(points=points)


def spiral(n: int, rng: np.random.Generator) -> ToySample:
    """Two arms r(-cos r, sin r) / 3.5 and its negation, r = 3 pi sqrt(u), noise std 0.08."""
    labels = (rng.uniform(size=n) < 0.5).astype(np.int64)
    r = 3 * math.pi * np.sqrt(rng.uniform(size=n))
    arm = np.stack([-np.cos(r) * r, np.sin(r) * r], axis=1) / 3.5
    points = np.where(labels[:, None] == 0, arm, -arm) + 0.08 * rng.standard_normal((n, 2))
    return ToySample(points=points, labels=labels, num_classes=2)


def gaussian(n: int, rng: np.random.Generator) -> ToySample:
    """The one-component mixture GAUSSIAN, unlabelled."""
    return _from_mixture(GAUSSIAN, n, rng, labelled=False)


def eight_gaussians(n: int, rng: np.random.Generator) -> ToySample:
    """EIGHT_GAUSSIANS, labelled by component."""
    return _from_mixture(EIGHT_GAUSSIANS, n, rng, labelled=True)


def grid25(n: int, rng: np.random.Generator) -> ToySample:
    """GRID25, labelled by component."""
    return _from_mixture(GRID25, n, rng, labelled=True)
