"""Sample quality: scores of generated samples against the data they imitate.

- `points`: point clouds (N, D), D small (the 2-D toys): knn_kl, moment_kl,
  energy_distance, precision_recall, mean_log_density, score_points, and data_vs_data (the
  same scores for two sets of true samples: the floor a perfect sampler reaches).
"""

from core.quality.points import (
    data_vs_data,
    energy_distance,
    gaussian_kl,
    knn_kl,
    mean_log_density,
    moment_kl,
    precision_recall,
    score_points,
)

__all__ = [
    "data_vs_data",
    "energy_distance",
    "gaussian_kl",
    "knn_kl",
    "mean_log_density",
    "moment_kl",
    "precision_recall",
    "score_points",
]
