"""Sample quality of point clouds (N, D), D small (the 2-D toys), against true samples or an
exact density. Every score is float64 numpy; distances are Euclidean in the data's own
coordinates and logarithms are natural (nats).

- `knn_kl`: KL(P_samples || P_reference) by k-nearest-neighbour distances (sees the shape
  of each mode), with a batch-means standard error.
- `moment_kl`: per mixture component, the KL of the Gaussian fitted to the samples nearest
  that component's mean to the true component, plus the KL of the weights.
- `energy_distance`: the squared energy distance as an unbiased U-statistic, with a
  two-sample jackknife standard error.
- `precision_recall`: Kynkäänniemi et al.'s k-NN manifold precision and recall.
- `mean_log_density`: the mean exact log-density of the samples (never a ranking alone).
- `score_points` runs them all; `data_vs_data` runs them on two independent sets of true
  samples: the floor that a perfect sampler reaches with the same number of points.

Inputs must be finite (the functions raise ValueError otherwise), except in
`mean_log_density` and `score_points`, which drop non-finite rows and report the share kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from core.data.toys import GaussianMixture

DEFAULT_K = 5
DEFAULT_BATCHES = 20
_CHUNK = 1024   # rows of a pairwise-distance block: 1024 x m float64


def as_cloud(x, name: str = "samples", finite: bool = True) -> np.ndarray:
    """A float64 (N, D) copy of x (numpy or torch); ValueError for another shape or, when
    `finite`, for NaN/inf entries (naming how many rows hold them)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    array = np.array(x, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty array of shape (N, D), got {array.shape}")
    if finite and not np.isfinite(array).all():
        bad = int((~np.isfinite(array).all(axis=1)).sum())
        raise ValueError(f"{name}: {bad} of {len(array)} rows hold NaN or infinity; "
                         "drop them first (score_points does) and report the share dropped")
    return array


def _pair(samples, reference) -> tuple[np.ndarray, np.ndarray]:
    x, y = as_cloud(samples, "samples"), as_cloud(reference, "reference")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"samples are {x.shape[1]}-D but reference is {y.shape[1]}-D")
    return x, y


# ---------------------------------------------------------------- k-NN KL divergence

def _knn_kl_once(x: np.ndarray, y: np.ndarray, k: int) -> float:
    n, d = x.shape
    rho = cKDTree(x).query(x, k=k + 1)[0][:, k]          # k-th neighbour, self excluded
    nu_all = cKDTree(y).query(x, k=k)[0].reshape(n, k)   # 1st to k-th reference neighbour
    nu = nu_all[:, k - 1]
    if np.any(nu_all[:, 0] == 0):
        raise ValueError("knn_kl: a sample coincides with a reference point; the two sets "
                         "must be independent draws")
    if np.any(rho == 0):
        return math.inf        # repeated samples: an atom, infinitely far from a density
    return float(d * np.mean(np.log(nu / rho)) + math.log(len(y) / (n - 1)))


def knn_kl(samples, reference, k: int = DEFAULT_K, *, batches: int = DEFAULT_BATCHES,
           seed: int = 0) -> tuple[float, float]:
    """(estimate, stderr) of KL(P || Q) in nats, P the law of `samples` (n, D), Q that of
    `reference` (m, D) (Wang, Kulkarni & Verdú 2009, "Divergence estimation for
    multidimensional densities via k-nearest-neighbor distances", eq. 5):

        D_hat = D/n sum_i log(nu_k(i) / rho_k(i)) + log(m / (n - 1)),

    rho_k(i): distance from x_i to its k-th nearest neighbour among the other samples,
    nu_k(i): to its k-th nearest neighbour among the reference points. It is consistent
    (asymptotically unbiased) for continuous densities; at finite n it is biased by a few
    hundredths of a nat in 2-D (see `data_vs_data` for the floor at a given n) where the
    reference is dense wherever the samples lie. Where it is not (samples in regions the
    reference barely reaches, e.g. a reference narrower than the samples) nu_k is
    inflated less than the density ratio says and D_hat falls short: about 0.39 for a true
    0.51 with n = m = 2,000, P = N(0, I), Q = N((0.5, 0.5), 0.64 I).

    stderr: batch means. With a generator seeded by `seed`, the samples and the reference
    are each shuffled and cut into `batches` disjoint blocks; D_hat on the b-th pair of
    blocks is an independent estimate from n/B and m/B points, so
    stderr = std_b(D_hat_b) / sqrt(B) (noise of both sets included; the blocks' larger
    bias does not enter a spread). Needs n >= B (k + 1) and m >= B k, else B shrinks
    (stderr NaN below 2 blocks). Repeated samples (rho = 0) make the estimate +inf.
    """
    x, y = _pair(samples, reference)
    if not (isinstance(k, int) and k >= 1) or len(x) < k + 1 or len(y) < k:
        raise ValueError(f"knn_kl: need k >= 1, more than k samples and at least k reference "
                         f"points (k={k}, n={len(x)}, m={len(y)})")
    estimate = _knn_kl_once(x, y, k)
    blocks = min(batches, len(x) // (k + 1), len(y) // k)
    if blocks < 2:
        return estimate, math.nan
    rng = np.random.default_rng(seed)
    x_blocks = np.array_split(x[rng.permutation(len(x))], blocks)
    y_blocks = np.array_split(y[rng.permutation(len(y))], blocks)
    values = np.array([_knn_kl_once(a, b, k) for a, b in zip(x_blocks, y_blocks, strict=True)])
    return estimate, float(np.std(values, ddof=1) / math.sqrt(blocks))


# ---------------------------------------------------------------- per-component moments

def gaussian_kl(mean0: np.ndarray, cov0: np.ndarray, mean1: np.ndarray, variance1: float) -> float:
    """KL(N(mean0, cov0) || N(mean1, variance1 I)) in nats, D-dimensional:

        1/2 [tr(cov0) / v1 + |mean1 - mean0|^2 / v1 - D + D log v1 - log det cov0].

    +inf when cov0 is singular (the fitted Gaussian has no density)."""
    dim = len(mean0)
    sign, log_det = np.linalg.slogdet(cov0)
    if sign <= 0:
        return math.inf
    gap = float(np.sum((mean1 - mean0) ** 2))
    return 0.5 * (float(np.trace(cov0)) / variance1 + gap / variance1 - dim
                  + dim * math.log(variance1) - log_det)


def moment_kl(samples, mixture: GaussianMixture) -> dict:
    """Moment match of the samples (n, D) to a well-separated isotropic mixture
    sum_k pi_k N(m_k, s^2 I), component by component.

    Each sample goes to its nearest mean m_k (so tail points of overlapping components are
    misassigned: only meaningful when the components are many s apart, as in the toys;
    `data_vs_data` shows the floor). For component k with n_k samples: weight
    w_k = n_k / n, mean mu_k, covariance C_k (unbiased, 1/(n_k - 1)), and

        kl_k   = KL(N(mu_k, C_k) || N(m_k, s^2 I))         (see `gaussian_kl`)
        weight = KL(w || pi) = sum_k w_k log(w_k / pi_k)
        total  = sum_k pi_k kl_k + weight.

    (The chain rule for the joint (k, x) would weight kl_k by w_k; weighting by the true
    pi_k makes a starved or dropped mode count in full instead of vanishing with its
    weight.) A component with fewer than D + 1 samples has no full-rank covariance: its
    kl_k is +inf, so is the total, and it is listed in "sparse".

    Returns dict(total, weight_kl, components (K,) kl_k, counts (K,) int64, weights (K,)
    w_k, means (K, D) and covariances (K, D, D) (NaN where n_k < 2), sparse: tuple of k).
    """
    x = as_cloud(samples, "samples")
    means = mixture.means
    if x.shape[1] != mixture.dim:
        raise ValueError(f"samples are {x.shape[1]}-D but the mixture is {mixture.dim}-D")
    count_k, dim = mixture.num_components, mixture.dim
    nearest = cKDTree(means).query(x, k=1)[1]
    counts = np.bincount(nearest, minlength=count_k).astype(np.int64)
    weights = counts / len(x)
    fitted_means = np.full((count_k, dim), np.nan)
    covariances = np.full((count_k, dim, dim), np.nan)
    components = np.full(count_k, np.inf)
    variance = mixture.std**2
    for k in range(count_k):
        members = x[nearest == k]
        if len(members) >= 1:
            fitted_means[k] = members.mean(axis=0)
        if len(members) >= 2:
            covariances[k] = np.atleast_2d(np.cov(members, rowvar=False))
        if len(members) >= dim + 1:
            components[k] = gaussian_kl(fitted_means[k], covariances[k], means[k], variance)
    kept = weights > 0
    with np.errstate(divide="ignore"):
        weight_kl = float(np.sum(weights[kept] * np.log(weights[kept] / mixture.weights[kept])))
    with np.errstate(invalid="ignore"):      # 0 * inf for a component of true weight 0
        weighted = float(np.sum(np.where(mixture.weights > 0, mixture.weights * components, 0.0)))
    return {
        "total": weighted + weight_kl, "weight_kl": weight_kl, "components": components,
        "counts": counts, "weights": weights, "means": fitted_means,
        "covariances": covariances,
        "sparse": tuple(int(k) for k in np.flatnonzero(counts < dim + 1)),
    }


# ---------------------------------------------------------------- energy distance

def _distance_sums(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row sums (len(a),) and column sums (len(b),) of |a_i - b_j|, in row blocks."""
    rows, cols = np.empty(len(a)), np.zeros(len(b))
    for start in range(0, len(a), _CHUNK):
        block = cdist(a[start:start + _CHUNK], b)
        rows[start:start + _CHUNK] = block.sum(axis=1)
        cols += block.sum(axis=0)
    return rows, cols


def energy_distance(samples, reference) -> tuple[float, float]:
    """(value, stderr) of the squared energy distance (Székely & Rizzo 2013, "Energy
    statistics"), in the data's units:

        E^2 = 2 E|X - Y| - E|X - X'| - E|Y - Y'|   (>= 0, = 0 iff the laws agree),

    estimated by the unbiased U-statistic on x (n, D), y (m, D):

        2/(n m) sum_{i,j} |x_i - y_j| - 1/(n (n-1)) sum_{i != i'} |x_i - x_i'|
                                     - 1/(m (m-1)) sum_{j != j'} |y_j - y_j'|,

    so it can be slightly negative when the laws agree. stderr: the two-sample jackknife
    (Arvesen 1969): with E_(i) the statistic without x_i and E_(j) without y_j,
    var = (n-1)/n sum_i (E_(i) - mean)^2 + (m-1)/m sum_j (E_(j) - mean)^2, computed in
    closed form from the row sums of the three distance matrices (O(n m D) time, O(n + m)
    memory beyond a block of rows). The jackknife is conservative (Efron & Stein 1981).
    Needs n, m >= 3.
    """
    x, y = _pair(samples, reference)
    n, m = len(x), len(y)
    if n < 3 or m < 3:
        raise ValueError(f"energy_distance: need at least 3 points in each set (n={n}, m={m})")
    cross_rows, cross_cols = _distance_sums(x, y)
    x_rows, _ = _distance_sums(x, x)
    y_rows, _ = _distance_sums(y, y)
    s_xy, s_xx, s_yy = cross_rows.sum(), x_rows.sum(), y_rows.sum()
    value = 2 * s_xy / (n * m) - s_xx / (n * (n - 1)) - s_yy / (m * (m - 1))
    drop_x = (2 * (s_xy - cross_rows) / ((n - 1) * m) - (s_xx - 2 * x_rows) / ((n - 1) * (n - 2))
              - s_yy / (m * (m - 1)))
    drop_y = (2 * (s_xy - cross_cols) / (n * (m - 1)) - s_xx / (n * (n - 1))
              - (s_yy - 2 * y_rows) / ((m - 1) * (m - 2)))
    variance = ((n - 1) / n * np.sum((drop_x - drop_x.mean()) ** 2)
                + (m - 1) / m * np.sum((drop_y - drop_y.mean()) ** 2))
    return float(value), float(math.sqrt(variance))


# ---------------------------------------------------------------- precision and recall

def _kth_neighbour_radii(points: np.ndarray, k: int) -> np.ndarray:
    return cKDTree(points).query(points, k=k + 1)[0][:, k]


def _share_inside(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    """Share of `points` within radii[j] of some centre j (|p - c_j| <= r_j)."""
    inside = 0
    for start in range(0, len(points), _CHUNK):
        block = cdist(points[start:start + _CHUNK], centres)
        inside += int(np.any(block <= radii[None, :], axis=1).sum())
    return inside / len(points)


def precision_recall(samples, reference, k: int = DEFAULT_K) -> tuple[float, float]:
    """(precision, recall) in [0, 1] (Kynkäänniemi et al. 2019, "Improved precision and
    recall metric for assessing generative models").

    The manifold of a set is the union of the balls B(p, r_k(p)) around its points, r_k(p)
    the distance to p's k-th nearest neighbour in the same set (itself excluded):

        precision = share of samples inside the reference manifold   (are they realistic?)
        recall    = share of reference points inside the sample manifold  (is all covered?)

    Two sets of the same law score near 1 on both (not exactly: a fresh point can fall
    outside every ball); samples away from the data score precision 0; samples on part of
    the data score recall about the share of the data they cover. Exact (pairwise
    distances in row blocks): O(n m D) time. Needs more than k points in each set.
    """
    x, y = _pair(samples, reference)
    if not (isinstance(k, int) and k >= 1) or len(x) <= k or len(y) <= k:
        raise ValueError(f"precision_recall: need k >= 1 and more than k points in each set "
                         f"(k={k}, n={len(x)}, m={len(y)})")
    precision = _share_inside(x, y, _kth_neighbour_radii(y, k))
    recall = _share_inside(y, x, _kth_neighbour_radii(x, k))
    return precision, recall


# ---------------------------------------------------------------- exact log-density

def mean_log_density(samples, log_prob: Callable[[np.ndarray], np.ndarray]
                     ) -> tuple[float, float, float]:
    """(mean, stderr, finite_fraction): the mean of log p(x_i) in nats over the samples
    (n, D) whose coordinates and log-density are finite, its standard error
    std(ddof=1) / sqrt(count), and count / n. log_prob: (N, D) float64 -> (N,) nats (e.g.
    GaussianMixture.log_prob; -inf off the support, as the checkerboard's).

    This REWARDS OVER-CONCENTRATION: E_q[log p] is largest for q a point mass at the mode
    of p, so a sampler that shrinks every mode towards its centre (too little noise, a
    deterministic sampler at few steps) scores above the data itself (whose mean is
    -H(p)). Never rank samplers by it alone; read it beside knn_kl and recall, and against
    `data_vs_data`. Samples off the support are not averaged but counted in
    finite_fraction. With no finite value the mean and stderr are NaN.
    """
    x = as_cloud(samples, "samples", finite=False)
    rows = np.isfinite(x).all(axis=1)
    values = np.full(len(x), -np.inf)
    if rows.any():
        values[rows] = np.asarray(log_prob(x[rows]), dtype=np.float64).reshape(-1)
    finite = values[np.isfinite(values)]
    fraction = len(finite) / len(x)
    if len(finite) == 0:
        return math.nan, math.nan, fraction
    stderr = float(np.std(finite, ddof=1) / math.sqrt(len(finite))) if len(finite) > 1 else math.nan
    return float(finite.mean()), stderr, fraction


# ---------------------------------------------------------------- everything, and the floor

def score_points(samples, reference, *, mixture: GaussianMixture | None = None,
                 log_prob: Callable[[np.ndarray], np.ndarray] | None = None,
                 k: int = DEFAULT_K, seed: int = 0) -> dict:
    """Every score of samples (n, D) against true reference points (m, D).

    Rows of `samples` holding NaN/inf are dropped first ("finite_fraction" says how many
    were kept). moment_kl needs `mixture`; mean_log_density needs `log_prob` (taken from
    the mixture when it is given). Returns dict(finite_fraction, knn_kl (est, stderr),
    energy_distance (value, stderr), precision, recall, moment_kl (dict or None),
    mean_log_density ((mean, stderr, finite_fraction) or None)).
    """
    raw = as_cloud(samples, "samples", finite=False)
    finite_rows = np.isfinite(raw).all(axis=1)
    x = raw[finite_rows]
    if len(x) <= k:
        raise ValueError(f"score_points: only {len(x)} of {len(raw)} samples are finite")
    y = as_cloud(reference, "reference")
    if log_prob is None and mixture is not None:
        log_prob = mixture.log_prob
    precision, recall = precision_recall(x, y, k)
    return {
        "finite_fraction": float(finite_rows.mean()),
        "knn_kl": knn_kl(x, y, k, seed=seed),
        "energy_distance": energy_distance(x, y),
        "precision": precision,
        "recall": recall,
        "moment_kl": moment_kl(x, mixture) if mixture is not None else None,
        "mean_log_density": mean_log_density(raw, log_prob) if log_prob is not None else None,
    }


def _draw(source, n: int, rng: np.random.Generator) -> np.ndarray:
    drawn = source.sample(n, rng) if isinstance(source, GaussianMixture) else source(n, rng)
    if isinstance(drawn, tuple):
        drawn = drawn[0]
    return as_cloud(getattr(drawn, "points", drawn), "true samples")


def data_vs_data(source, n: int, seed: int = 0, *,
                 log_prob: Callable[[np.ndarray], np.ndarray] | None = None,
                 k: int = DEFAULT_K) -> dict:
    """The data-vs-data floor: `score_points` of n true samples against n other true
    samples, i.e. what a perfect sampler scores with n points against a reference of n.

    source: a GaussianMixture, or a callable (n, rng) -> points (n, D) (a tuple or an
    object with `.points`, as core.data.toys' generators return, is accepted). Both sets
    come from np.random.default_rng(seed), one after the other. A mixture also gives
    moment_kl and the mean log-density (log_prob overrides the latter).
    """
    rng = np.random.default_rng(seed)
    samples, reference = _draw(source, n, rng), _draw(source, n, rng)
    mixture = source if isinstance(source, GaussianMixture) else None
    return score_points(samples, reference, mixture=mixture, log_prob=log_prob, k=k, seed=seed)
