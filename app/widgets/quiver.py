"""Arrows over a plane for pyqtgraph, which has no quiver: every arrow is three line
segments (shaft and two head strokes) of one PlotCurveItem drawn with connect="pairs", so a
field of a thousand arrows is one item and one setData.

Lengths are for reading, not measuring: an arrow's length is its vector's norm relative to
a reference norm (`reference_norm`: a high percentile of the field's norms, shared by the
fields drawn together so they compare), times the grid spacing, clipped at one spacing, so
arrows never overlap and the few huge vectors near the data do not shrink all others to
dots. The direction is exact.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

HEAD_FRACTION = 0.35     # head strokes, as a share of the arrow's length
HEAD_ANGLE = np.deg2rad(28.0)
REFERENCE_PERCENTILE = 90.0
MIN_FRACTION = 0.12      # the shortest drawn arrow, in spacings (shorter ones still point)


def reference_norm(*vector_sets: np.ndarray | None) -> float:
    """The norm that draws as one full spacing: the REFERENCE_PERCENTILE-th percentile of
    the finite norms of every given (N, 2) set (1 if there are none)."""
    norms = [np.linalg.norm(np.asarray(v, dtype=np.float64), axis=1) for v in vector_sets
             if v is not None and len(v)]
    norms = np.concatenate(norms) if norms else np.zeros(0)
    norms = norms[np.isfinite(norms) & (norms > 0)]
    return float(np.percentile(norms, REFERENCE_PERCENTILE)) if len(norms) else 1.0


def arrow_segments(points: np.ndarray, vectors: np.ndarray, spacing: float,
                   reference: float) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the segment end points, pairs in order, for arrows from points (N, 2) along
    vectors (N, 2): length spacing * clip(|v| / reference, MIN_FRACTION, 1). Arrows with a
    zero or non-finite vector are left out."""
    points = np.asarray(points, dtype=np.float64)
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1)
    keep = np.isfinite(norms) & (norms > 0) & np.all(np.isfinite(points), axis=1)
    points, vectors, norms = points[keep], vectors[keep], norms[keep]
    if len(points) == 0:
        return np.zeros(0), np.zeros(0)
    unit = vectors / norms[:, None]
    length = spacing * np.clip(norms / max(reference, 1e-300), MIN_FRACTION, 1.0)
    tip = points + unit * length[:, None]
    head = HEAD_FRACTION * length[:, None]
    cos, sin = np.cos(HEAD_ANGLE), np.sin(HEAD_ANGLE)
    back = -unit
    left = np.stack([cos * back[:, 0] - sin * back[:, 1], sin * back[:, 0] + cos * back[:, 1]], 1)
    right = np.stack([cos * back[:, 0] + sin * back[:, 1], -sin * back[:, 0] + cos * back[:, 1]],
                     1)
    ends = np.stack([points, tip, tip, tip + head * left, tip, tip + head * right], axis=1)
    ends = ends.reshape(-1, 2)                                          # (6 N, 2)
    return ends[:, 0], ends[:, 1]


class QuiverItem(pg.PlotCurveItem):
    """One item holding a field of arrows; `set_arrows(points, vectors, spacing,
    reference)` replaces them, `clear_arrows()` removes them. `arrow_count` says how many
    are drawn (tests)."""

    def __init__(self, color, width: float = 1.3, name: str | None = None):
        super().__init__(pen=pg.mkPen(color, width=width), connect="pairs", name=name,
                         antialias=True)
        self.arrow_count = 0

    def set_arrows(self, points: np.ndarray, vectors: np.ndarray, spacing: float,
                   reference: float) -> None:
        x, y = arrow_segments(points, vectors, spacing, reference)
        self.arrow_count = len(x) // 6
        self.setData(x, y, connect="pairs")

    def clear_arrows(self) -> None:
        self.arrow_count = 0
        self.setData([], [])
